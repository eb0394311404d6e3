//! userfaultfd on guest RAM, MISSING mode: a page the destination does not have yet
//! stops whoever touches it (a vCPU inside KVM, a device thread) until it is placed with
//! UFFDIO_COPY (or UFFDIO_ZEROPAGE). The kernel's ABI (linux/userfaultfd.h), which the
//! `libc` crate does not carry.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

const UFFD_API: u64 = 0xAA;
const UFFDIO_REGISTER_MODE_MISSING: u64 = 1;
const UFFD_EVENT_PAGEFAULT: u8 = 0x12;

const fn iowr(nr: u64, size: u64) -> u64 {
    (3 << 30) | (size << 16) | (0xAA << 8) | nr
}
const fn ior(nr: u64, size: u64) -> u64 {
    (2 << 30) | (size << 16) | (0xAA << 8) | nr
}
const UFFDIO_API: u64 = iowr(0x3F, 24);
const UFFDIO_REGISTER: u64 = iowr(0x00, 32);
const UFFDIO_UNREGISTER: u64 = ior(0x01, 16);
const UFFDIO_COPY: u64 = iowr(0x03, 40);
const UFFDIO_ZEROPAGE: u64 = iowr(0x04, 32);

#[repr(C)]
struct Api {
    api: u64,
    features: u64,
    ioctls: u64,
}

#[repr(C)]
struct Range {
    start: u64,
    len: u64,
}

#[repr(C)]
struct Register {
    range: Range,
    mode: u64,
    ioctls: u64,
}

#[repr(C)]
struct Copy {
    dst: u64,
    src: u64,
    len: u64,
    mode: u64,
    copy: i64,
}

#[repr(C)]
struct ZeroPage {
    range: Range,
    mode: u64,
    zeropage: i64,
}

/// One userfaultfd, non-blocking.
pub struct Uffd {
    fd: OwnedFd,
}

fn ioctl<T>(fd: &OwnedFd, req: u64, arg: &mut T) -> io::Result<()> {
    // SAFETY: `arg` is the structure this request takes, alive for the call.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), req as libc::c_ulong, arg as *mut T) };
    if rc < 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
}

impl Uffd {
    /// A new userfaultfd, its API handshake done. Kernel faults (KVM's) are included.
    pub fn new() -> io::Result<Uffd> {
        // SAFETY: a plain system call; it returns a new descriptor or -1.
        let rc = unsafe { libc::syscall(libc::SYS_userfaultfd, libc::O_CLOEXEC | libc::O_NONBLOCK) };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: the descriptor was just created and is owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(rc as i32) };
        let mut api = Api {
            api: UFFD_API,
            features: 0,
            ioctls: 0,
        };
        ioctl(&fd, UFFDIO_API, &mut api)?;
        Ok(Uffd { fd })
    }

    /// Registers `len` bytes at host address `start` (page aligned) in MISSING mode.
    pub fn register(&self, start: u64, len: u64) -> io::Result<()> {
        let mut r = Register {
            range: Range { start, len },
            mode: UFFDIO_REGISTER_MODE_MISSING,
            ioctls: 0,
        };
        ioctl(&self.fd, UFFDIO_REGISTER, &mut r)
    }

    /// Unregisters a range: whoever waits on a page there is woken and faults normally.
    pub fn unregister(&self, start: u64, len: u64) -> io::Result<()> {
        let mut r = Range { start, len };
        ioctl(&self.fd, UFFDIO_UNREGISTER, &mut r)
    }

    /// Places `src` (whole pages) at host address `dst` and wakes who waits for them.
    /// Pages already present are left as they are (`EEXIST`): returns whether all were
    /// placed by this call.
    pub fn copy(&self, dst: u64, src: &[u8]) -> io::Result<bool> {
        let mut c = Copy {
            dst,
            src: src.as_ptr() as u64,
            len: src.len() as u64,
            mode: 0,
            copy: 0,
        };
        match ioctl(&self.fd, UFFDIO_COPY, &mut c) {
            Ok(()) => Ok(true),
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Places zero pages over `len` bytes at `dst`; pages present are left alone.
    pub fn zero(&self, dst: u64, len: u64) -> io::Result<bool> {
        let mut z = ZeroPage {
            range: Range { start: dst, len },
            mode: 0,
            zeropage: 0,
        };
        match ioctl(&self.fd, UFFDIO_ZEROPAGE, &mut z) {
            Ok(()) => Ok(true),
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Waits up to `timeout_ms` for the next page fault; its host address, if one came.
    pub fn next_fault(&self, timeout_ms: i32) -> io::Result<Option<u64>> {
        let mut p = libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one pollfd, alive for the call.
        let rc = unsafe { libc::poll(&mut p, 1, timeout_ms) };
        if rc <= 0 {
            return Ok(None);
        }
        let mut msg = [0u8; 32];
        // SAFETY: reads at most 32 bytes into `msg`.
        let n = unsafe { libc::read(self.fd.as_raw_fd(), msg.as_mut_ptr().cast(), msg.len()) };
        if n < 0 {
            let e = io::Error::last_os_error();
            return if e.kind() == io::ErrorKind::WouldBlock { Ok(None) } else { Err(e) };
        }
        // uffd_msg: u8 event, 7 reserved bytes, then for a page fault u64 flags, u64 address.
        if n as usize != msg.len() || msg[0] != UFFD_EVENT_PAGEFAULT {
            return Ok(None);
        }
        Ok(Some(u64::from_le_bytes(msg[16..24].try_into().unwrap_or([0; 8]))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fault_waits_for_its_page() {
        const LEN: usize = 4 * 4096;
        // SAFETY: a fresh private anonymous mapping, unmapped at the end.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                LEN,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        } as u64;
        let u = Uffd::new().expect("userfaultfd");
        u.register(base, LEN as u64).unwrap();
        let reader = std::thread::spawn(move || {
            // SAFETY: inside the mapping; the read waits until the page is placed.
            unsafe { std::ptr::read_volatile((base + 4096 + 8) as *const u8) }
        });
        let fault = loop {
            if let Some(a) = u.next_fault(5000).unwrap() {
                break a;
            }
        };
        assert_eq!(fault & !4095, base + 4096);
        assert!(u.copy(base + 4096, &[7u8; 4096]).unwrap());
        assert!(!u.copy(base + 4096, &[9u8; 4096]).unwrap(), "a page placed stays");
        assert_eq!(reader.join().unwrap(), 7);
        assert!(u.zero(base, 4096).unwrap());
        u.unregister(base, LEN as u64).unwrap();
        // SAFETY: the mapping made above.
        unsafe { libc::munmap(base as *mut libc::c_void, LEN) };
    }
}
