//! Process-level plumbing: termination signals, `-daemonize` and `-pidfile`.

use crate::events::VmEvent;
use crossbeam_channel::Sender;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd};
use std::path::{Path, PathBuf};

const TERMINATING: [libc::c_int; 3] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];

fn sigset(signals: &[libc::c_int]) -> libc::sigset_t {
    // SAFETY: sigset_t is plain data initialised by sigemptyset before use.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in signals {
            libc::sigaddset(&mut set, *s);
        }
        set
    }
}

/// Blocks SIGINT/SIGTERM/SIGHUP in this thread (and every thread spawned after), and turns
/// them into `VmEvent::Signal` from a dedicated thread, so the VM can stop cleanly.
pub fn catch_termination(events: Sender<VmEvent>) -> io::Result<()> {
    let set = sigset(&TERMINATING);
    // SAFETY: valid sigset; only changes this thread's mask.
    unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    std::thread::Builder::new().name("signals".into()).spawn(move || {
        loop {
            // SAFETY: siginfo_t is plain data filled by sigwaitinfo.
            let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
            // SAFETY: waits for one of the blocked signals in `set`.
            let signo = unsafe { libc::sigwaitinfo(&set, &mut info) };
            if signo < 0 {
                continue;
            }
            // SAFETY: for signals sent with kill(2) the kernel fills si_pid.
            let pid = unsafe { info.si_pid() };
            if events.send(VmEvent::Signal { signo, pid }).is_err() {
                return;
            }
        }
    })?;
    Ok(())
}

/// The parent's end of `-daemonize`: told by the child whether start-up worked.
pub struct Daemon {
    notify: File,
}

/// Forks; the parent waits for the child's start-up verdict and exits with it. Must run
/// before any thread is started. Returns (in the child) the handle to report success.
pub fn daemonize() -> io::Result<Daemon> {
    let mut fds = [0; 2];
    // SAFETY: pipe writes two descriptors into the array.
    if unsafe { libc::pipe(fds.as_mut_ptr()) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fresh descriptors from pipe, owned by these Files.
    let (mut rd, wr) = unsafe { (File::from_raw_fd(fds[0]), File::from_raw_fd(fds[1])) };
    // SAFETY: single-threaded at this point (checked by the caller's ordering).
    match unsafe { libc::fork() } {
        -1 => Err(io::Error::last_os_error()),
        0 => {
            drop(rd);
            // SAFETY: plain syscall in the child.
            unsafe { libc::setsid() };
            Ok(Daemon { notify: wr })
        }
        _ => {
            drop(wr);
            let mut b = [0u8; 1];
            // EOF without a byte means the child failed (it printed why on stderr).
            let ok = matches!(rd.read(&mut b), Ok(1)) && b[0] == 0;
            std::process::exit(if ok { 0 } else { 1 });
        }
    }
}

impl Daemon {
    /// Start-up succeeded: release the parent and detach from the terminal.
    pub fn ready(mut self) {
        let _ = self.notify.write_all(&[0]);
        if let Ok(null) = File::options().read(true).write(true).open("/dev/null") {
            for fd in 0..3 {
                // SAFETY: dup2 onto the standard descriptors.
                unsafe { libc::dup2(null.as_raw_fd(), fd) };
            }
        }
    }
}

/// A locked pidfile, removed when dropped.
pub struct Pidfile {
    path: PathBuf,
    _file: File,
}

impl Pidfile {
    pub fn create(path: &Path) -> Result<Pidfile, String> {
        let fail = |e: io::Error| format!("cannot create PID file: {e}");
        let mut f = File::options().create(true).truncate(false).write(true).open(path).map_err(fail)?;
        // SAFETY: flock on a descriptor we own.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } < 0 {
            return Err(format!(
                "cannot create PID file: Cannot lock pid file: {}",
                io::Error::last_os_error()
            ));
        }
        f.set_len(0).map_err(fail)?;
        writeln!(f, "{}", std::process::id()).map_err(fail)?;
        Ok(Pidfile {
            path: path.to_path_buf(),
            _file: f,
        })
    }
}

impl Drop for Pidfile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}
