//! What the destination does on the raw socket before a handshake: a look at the first
//! bytes for a plaintext godwit stream (the time limit is `uri::set_read_timeout`).

use crate::migration::stream::MAGIC;
use std::fs::File;
use std::os::fd::AsRawFd;

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
