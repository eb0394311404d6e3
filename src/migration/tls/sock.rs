//! What the destination does on the raw socket before a handshake: a time limit for a
//! peer that says nothing, and a look at the first bytes for a plaintext godwit stream.

use crate::migration::stream::MAGIC;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::time::Duration;

/// Sets (or clears) the socket's receive timeout.
pub fn set_read_timeout(sock: &File, t: Option<Duration>) {
    let t = t.unwrap_or(Duration::ZERO);
    let tv = libc::timeval {
        tv_sec: t.as_secs() as libc::time_t,
        tv_usec: libc::suseconds_t::from(t.subsec_micros() as i32),
    };
    // SAFETY: setting a timeval socket option from a valid pointer and its size; a
    // descriptor that is not a socket just fails.
    unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&tv as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        );
    }
}

/// Whether the peer opened with a godwit stream header (not a TLS ClientHello). Looks
/// without consuming; a peer that sends fewer bytes and waits is not plaintext.
pub fn plaintext_stream(sock: &File) -> bool {
    let mut head = [0u8; 8];
    // SAFETY: recv(2) writes at most `head.len()` bytes into `head`.
    let n = unsafe {
        libc::recv(
            sock.as_raw_fd(),
            head.as_mut_ptr().cast(),
            head.len(),
            libc::MSG_PEEK | libc::MSG_WAITALL,
        )
    };
    n == head.len() as isize && &head == MAGIC
}
