//! vCPU throttling, for auto-converge and the convergence guarantee: at `p` percent each
//! vCPU sleeps `p / (100 - p)` of the time it ran, so it runs `100 - p` percent of the
//! wall time (QEMU's `cpu-throttle` scaling, on 10 ms timeslices).
//!
//! A vCPU in a tight loop leaves `KVM_RUN` only when something kicks it, so while a throttle
//! is set a kicker thread sends every vCPU thread the pause kick once per timeslice. Each
//! vCPU, at the top of its loop ([`RunControl::throttle_point`]), owes a sleep in proportion
//! to how long it ran since its last one. The sleep ends early when the VM is paused or
//! stopped, or the throttle is changed, so a pause is never held up by it.

use super::control::{RunControl, Want};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

/// QEMU's `CPU_THROTTLE_TIMESLICE_NS`.
pub const TIMESLICE: Duration = Duration::from_millis(10);

/// The most running time one sleep makes up for: time a vCPU spent parked, or waiting for
/// a host CPU, is not all guest work.
const MAX_RUN: Duration = Duration::from_millis(40);

/// A vCPU thread's own account: when it last came back from a throttle sleep.
pub struct Slice {
    since: Instant,
}

impl Default for Slice {
    fn default() -> Self {
        Slice { since: Instant::now() }
    }
}

/// The sleep owed after running `ran` at `pct` percent: `ran * pct / (100 - pct)`.
pub fn owed(ran: Duration, pct: u8) -> Duration {
    let pct = u32::from(pct.min(99));
    ran.min(MAX_RUN) * pct / (100 - pct)
}

impl RunControl {
    /// Sets the throttle (0 lifts it, at once: sleeping vCPUs wake). Values above 99 are
    /// taken as 99.
    pub fn set_throttle(self: &Arc<Self>, pct: u8) {
        let pct = pct.min(99);
        let before = self.throttle.swap(pct, Ordering::SeqCst);
        self.wake_sleepers();
        let mut kicker = self.kicker();
        if pct == 0 {
            if let Some(k) = kicker.take() {
                drop(kicker);
                let _ = k.join();
            }
        } else if before == 0 && kicker.is_none() {
            let weak = Arc::downgrade(self);
            *kicker = std::thread::Builder::new()
                .name("vcpu-throttle".into())
                .spawn(move || kick_while_throttled(&weak))
                .ok();
        }
    }

    /// The throttle in percent (0: none).
    pub fn throttle(&self) -> u8 {
        self.throttle.load(Ordering::SeqCst)
    }

    /// vCPU side, once per loop: sleeps the share the throttle asks for, once a timeslice
    /// has been run.
    pub fn throttle_point(&self, slice: &mut Slice) {
        let pct = self.throttle();
        if pct == 0 {
            slice.since = Instant::now();
            return;
        }
        let ran = slice.since.elapsed();
        if ran < TIMESLICE {
            return;
        }
        self.throttle_sleep(owed(ran, pct), pct);
        slice.since = Instant::now();
    }
}

/// The kicker: one kick per timeslice to every vCPU thread while a throttle is set (and
/// the VM exists).
fn kick_while_throttled(control: &Weak<RunControl>) {
    loop {
        std::thread::sleep(TIMESLICE);
        let Some(c) = control.upgrade() else { return };
        if c.throttle() == 0 || c.want() == Want::Stop {
            return;
        }
        c.kick_running();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owed_sleep_follows_qemu_scaling() {
        assert_eq!(owed(TIMESLICE, 50), TIMESLICE);
        assert_eq!(owed(TIMESLICE, 20), Duration::from_micros(2500));
        assert_eq!(owed(TIMESLICE, 99), TIMESLICE * 99);
        assert_eq!(owed(Duration::from_secs(5), 50), MAX_RUN, "parked time is not owed");
        assert_eq!(owed(TIMESLICE, 100), owed(TIMESLICE, 99));
    }

    /// Threads spinning through the vCPU loop's two points stand in for vCPUs: a pause
    /// reaches them in their throttle sleep, and lifting the throttle ends the kicker.
    #[test]
    fn a_pause_ends_a_throttle_sleep_and_lifting_stops_the_kicker() {
        let ctl = Arc::new(RunControl::new(2, false));
        let handles: Vec<_> = (0..2)
            .map(|i| {
                let ctl = ctl.clone();
                std::thread::spawn(move || {
                    ctl.register_current_thread(i);
                    let mut slice = Slice::default();
                    loop {
                        ctl.throttle_point(&mut slice);
                        if !ctl.checkpoint(&mut || {}) {
                            break;
                        }
                        std::thread::sleep(Duration::from_micros(200));
                    }
                    ctl.retire();
                })
            })
            .collect();
        ctl.set_throttle(99);
        assert_eq!(ctl.throttle(), 99);
        assert!(ctl.kicker().is_some());
        std::thread::sleep(TIMESLICE * 3);
        ctl.pause();
        assert!(ctl.is_paused());
        ctl.set_throttle(0);
        assert!(ctl.kicker().is_none(), "the kicker is joined when the throttle is lifted");
        ctl.resume();
        ctl.stop();
        for h in handles {
            h.join().unwrap();
        }
    }
}
