//! Running, pausing and stopping all vCPUs together.
//!
//! A controller sets the wanted state and kicks every vCPU thread with a real-time signal,
//! which makes `KVM_RUN` return `EINTR`. Each vCPU, once out of the guest, finishes any
//! half-done I/O and parks. The kick is repeated until every vCPU has parked, so a signal
//! that lands just before a thread enters `KVM_RUN` cannot be lost.

use std::sync::atomic::AtomicU8;
use std::sync::{Condvar, Mutex, MutexGuard, Once};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Want {
    Run,
    Pause,
    Stop,
}

struct Inner {
    want: Want,
    /// vCPU threads currently parked.
    parked: usize,
    /// vCPU threads still alive.
    live: usize,
    threads: Vec<libc::pthread_t>,
    /// (vCPU index, kernel thread id) for `info cpus`.
    tids: Vec<(usize, i32)>,
}

pub struct RunControl {
    inner: Mutex<Inner>,
    cv: Condvar,
    /// The throttle in percent, read by every vCPU at every exit (see `super::throttle`).
    pub(super) throttle: AtomicU8,
    /// The thread that kicks the vCPUs once per timeslice while a throttle is set.
    kicker: Mutex<Option<JoinHandle<()>>>,
}

/// The signal used to kick vCPU threads out of `KVM_RUN`.
pub fn kick_signal() -> libc::c_int {
    vmm_sys_util::signal::SIGRTMIN()
}

extern "C" fn on_kick(_: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {}

/// Installs the (empty) kick handler once per process. Without SA_RESTART, so the
/// interrupted `KVM_RUN` returns `EINTR` instead of being restarted.
pub fn install_kick_handler() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // Failure here would only make pause slower (no kick), never unsafe.
        let _ = vmm_sys_util::signal::register_signal_handler(kick_signal(), on_kick);
    });
}

impl RunControl {
    pub fn new(vcpus: usize, start_paused: bool) -> Self {
        install_kick_handler();
        RunControl {
            inner: Mutex::new(Inner {
                want: if start_paused { Want::Pause } else { Want::Run },
                parked: 0,
                live: vcpus,
                threads: Vec::new(),
                tids: Vec::new(),
            }),
            cv: Condvar::new(),
            throttle: AtomicU8::new(0),
            kicker: Mutex::new(None),
        }
    }

    pub(super) fn kicker(&self) -> MutexGuard<'_, Option<JoinHandle<()>>> {
        self.kicker.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Ends every throttle sleep early, for a pause, a stop or a new throttle.
    pub(super) fn wake_sleepers(&self) {
        let _g = self.lock();
        self.cv.notify_all();
    }

    /// vCPU side: sleeps `d` unless the VM is paused or stopped, or the throttle changes
    /// from `pct`, meanwhile.
    pub(super) fn throttle_sleep(&self, d: Duration, pct: u8) {
        let deadline = Instant::now() + d;
        let mut g = self.lock();
        while g.want == Want::Run && self.throttle() == pct {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            g = self.cv.wait_timeout(g, deadline - now).unwrap_or_else(|e| e.into_inner()).0;
        }
    }

    /// Kicks every vCPU thread out of `KVM_RUN` (the throttle's timeslice).
    pub(super) fn kick_running(&self) {
        let g = self.lock();
        self.kick_all(&g);
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Called by each vCPU thread when it starts, so it can be kicked.
    pub fn register_current_thread(&self, index: usize) {
        // SAFETY: pthread_self and gettid have no preconditions.
        let (me, tid) = unsafe { (libc::pthread_self(), libc::gettid()) };
        let mut g = self.lock();
        g.threads.push(me);
        g.tids.push((index, tid));
    }

    /// Kernel thread ids of the vCPU threads, by vCPU index.
    pub fn thread_ids(&self) -> Vec<(usize, i32)> {
        let mut t = self.lock().tids.clone();
        t.sort_unstable();
        t
    }

    /// Called by a vCPU thread that is leaving for good.
    pub fn retire(&self) {
        let mut g = self.lock();
        g.live -= 1;
        self.cv.notify_all();
    }

    pub fn want(&self) -> Want {
        self.lock().want
    }

    /// vCPU side: returns at once while running; otherwise calls `before_park` (to finish
    /// pending I/O), parks until resumed, and returns false if the vCPU must stop.
    pub fn checkpoint(&self, before_park: &mut dyn FnMut()) -> bool {
        match self.lock().want {
            Want::Run => return true,
            Want::Stop => return false,
            Want::Pause => {}
        }
        before_park();
        let mut g = self.lock();
        g.parked += 1;
        self.cv.notify_all();
        while g.want == Want::Pause {
            g = self.cv.wait(g).unwrap_or_else(|e| e.into_inner());
        }
        g.parked -= 1;
        g.want == Want::Run
    }

    fn kick_all(&self, g: &Inner) {
        for t in &g.threads {
            // SAFETY: every registered thread is joined only after `stop`, so `t` is valid.
            unsafe { libc::pthread_kill(*t, kick_signal()) };
        }
    }

    /// Pauses every vCPU and returns once all are parked (or have exited).
    pub fn pause(&self) {
        let mut g = self.lock();
        if g.want == Want::Stop {
            return;
        }
        g.want = Want::Pause;
        // A vCPU in a throttle sleep parks at once rather than when its sleep ends.
        self.cv.notify_all();
        while g.parked < g.live {
            self.kick_all(&g);
            g = self
                .cv
                .wait_timeout(g, Duration::from_millis(2))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Asks for a pause without waiting for it: for a VM whose vCPU threads have not been
    /// started (they would park at once; waiting for them would never end).
    pub fn request_pause(&self) {
        let mut g = self.lock();
        if g.want == Want::Run {
            g.want = Want::Pause;
        }
    }

    /// Lets parked vCPUs run again.
    pub fn resume(&self) {
        let mut g = self.lock();
        if g.want == Want::Pause {
            g.want = Want::Run;
            self.cv.notify_all();
        }
    }

    /// Makes every vCPU thread leave its loop; returns once none is left running.
    pub fn stop(&self) {
        let mut g = self.lock();
        g.want = Want::Stop;
        self.cv.notify_all();
        while g.live > 0 {
            self.kick_all(&g);
            g = self
                .cv
                .wait_timeout(g, Duration::from_millis(2))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    pub fn is_paused(&self) -> bool {
        let g = self.lock();
        g.want == Want::Pause && g.parked == g.live
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    /// Threads that spin through checkpoints stand in for vCPUs.
    #[test]
    fn pause_resume_stop() {
        let ctl = Arc::new(RunControl::new(2, false));
        let work = Arc::new(AtomicU64::new(0));
        let handles: Vec<_> = (0..2)
            .map(|i| {
                let (ctl, work) = (ctl.clone(), work.clone());
                std::thread::spawn(move || {
                    ctl.register_current_thread(i);
                    while ctl.checkpoint(&mut || {}) {
                        work.fetch_add(1, Ordering::SeqCst);
                        std::thread::sleep(Duration::from_micros(100));
                    }
                    ctl.retire();
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(20));
        ctl.pause();
        assert!(ctl.is_paused());
        let frozen = work.load(Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(work.load(Ordering::SeqCst), frozen, "no progress while paused");
        ctl.resume();
        std::thread::sleep(Duration::from_millis(20));
        assert!(work.load(Ordering::SeqCst) > frozen);
        ctl.stop();
        for h in handles {
            h.join().unwrap();
        }
    }
}
