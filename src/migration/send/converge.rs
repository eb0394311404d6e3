//! Making a pre-copy end: auto-converge (QEMU's vCPU throttle schedule) and godwit's
//! convergence guarantee (`x-godwit-converge-deadline`).
//!
//! **Auto-converge.** Each sync closes a *period* once [`PERIOD`] has passed since the last
//! one. A period is *over the threshold* when the guest dirtied more bytes in it than
//! `throttle-trigger-threshold` percent of the bytes sent in it. Every over-threshold period
//! takes one step: the first to `cpu-throttle-initial`, each later one by
//! `cpu-throttle-increment` (with `cpu-throttle-tailslow`, by no more than brings the dirty
//! rate down to the threshold), up to `max-cpu-throttle`. QEMU looks once a second and steps
//! on every second period over; godwit looks every quarter second and steps on each, so the
//! same schedule reaches its ceiling eight times sooner.
//!
//! **The guarantee.** With a deadline of `D` seconds, once half of it has passed and the
//! pre-copy still does not fit the downtime limit, godwit escalates on its own. The first
//! step is post-copy when `postcopy-ram` is on ([`Guarantee::escalation`]), which ends the
//! pre-copy at once; without it, the vCPU throttle, raised
//! from `cpu-throttle-initial` at `D/2` to `max-cpu-throttle` at `0.8 D` (or auto-converge's
//! own figure if that is higher). The last step is a stop-and-copy whatever is left: from
//! `0.8 D` on, as soon as sending what is dirty at the measured pre-copy bandwidth (the
//! stop-and-copy goes unlimited, so no slower), plus one sync period, would end past `D`,
//! and at `0.9 D` at the latest. The step taken shows in `info migrate`
//! (`x-godwit-converge-step`), and the pause it cost in `downtime`.

use crate::migration::params::{Params, Throttle};
use std::time::{Duration, Instant};

/// How long a period of the auto-converge check lasts at least.
pub const PERIOD: Duration = Duration::from_millis(250);

/// The escalation steps of the guarantee, as `info migrate` names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Postcopy,
    Throttle,
    StopAndCopy,
}

impl Step {
    pub fn name(self) -> &'static str {
        match self {
            Step::Postcopy => "postcopy",
            Step::Throttle => "throttle",
            Step::StopAndCopy => "stop-and-copy",
        }
    }
}

/// Auto-converge's state over one migration.
#[derive(Debug)]
pub struct AutoConverge {
    period_start: Instant,
    /// Bytes sent when the period started.
    sent_at_start: u64,
    /// Bytes the guest dirtied in the period so far.
    dirtied: u64,
    /// The throttle auto-converge asks for (0: none yet).
    pub pct: u8,
}

impl AutoConverge {
    pub fn new(now: Instant, sent: u64) -> Self {
        AutoConverge {
            period_start: now,
            sent_at_start: sent,
            dirtied: 0,
            pct: 0,
        }
    }

    /// One sync's figures: `dirtied` bytes found dirty, `sent` bytes sent in all so far.
    /// Closes the period once it is long enough, and steps the throttle if it was over.
    pub fn sync(&mut self, now: Instant, dirtied: u64, sent: u64, t: &Throttle) {
        self.dirtied += dirtied;
        if now.duration_since(self.period_start) < PERIOD {
            return;
        }
        let xfer = sent.saturating_sub(self.sent_at_start);
        if self.dirtied as f64 > xfer as f64 * f64::from(t.trigger_threshold) / 100.0 {
            self.pct = step(self.pct, t, xfer, self.dirtied);
        }
        *self = AutoConverge {
            pct: self.pct,
            ..AutoConverge::new(now, sent)
        };
    }
}

/// The throttle after one over-threshold period (QEMU's `mig_throttle_guest_down`): the
/// first step to `initial`, then up by `increment` (with tailslow, at most by what would
/// bring the dirty rate to the threshold), never above `max`.
pub fn step(pct: u8, t: &Throttle, xfer: u64, dirtied: u64) -> u8 {
    if pct == 0 {
        return t.initial.min(t.max);
    }
    let mut inc = f64::from(t.increment);
    if t.tailslow && dirtied > 0 {
        let cpu_now = 100.0 - f64::from(pct);
        let cpu_ideal = cpu_now * (xfer as f64 * f64::from(t.trigger_threshold) / 100.0 / dirtied as f64);
        inc = inc.min(cpu_now - cpu_ideal).max(0.0);
    }
    (f64::from(pct) + inc).min(f64::from(t.max)) as u8
}

/// The convergence guarantee over one migration.
#[derive(Debug)]
pub struct Guarantee {
    start: Instant,
    deadline: Duration,
    /// `postcopy-ram` is on: the first step is post-copy.
    postcopy: bool,
    /// The step it took, if any.
    pub step: Option<Step>,
}

impl Guarantee {
    /// None when `x-godwit-converge-deadline` is 0 (off).
    pub fn new(start: Instant, p: &Params) -> Option<Self> {
        (p.converge_deadline_s > 0).then(|| Guarantee {
            start,
            deadline: Duration::from_secs(p.converge_deadline_s),
            postcopy: p.postcopy_ram,
            step: None,
        })
    }

    /// The throttle the guarantee asks for at `now` when the pre-copy does not fit (0:
    /// none yet). With `postcopy-ram` on it asks for none: its step is post-copy (the
    /// caller starts it when `step` says so).
    pub fn escalation(&mut self, now: Instant, t: &Throttle) -> u8 {
        let f = now.duration_since(self.start).as_secs_f64() / self.deadline.as_secs_f64();
        if f < 0.5 {
            return 0;
        }
        if self.postcopy {
            self.step = Some(Step::Postcopy);
            return 0;
        }
        self.step.get_or_insert(Step::Throttle);
        let ramp = ((f - 0.5) / 0.3).min(1.0);
        let (lo, hi) = (f64::from(t.initial.min(t.max)), f64::from(t.max));
        (lo + (hi - lo) * ramp) as u8
    }

    /// Whether the stop-and-copy must start now: from `0.8 D` on, when sending `pending`
    /// bytes at `bandwidth` (bytes per ms; unknown as 0) after one more sync period would
    /// end past the deadline; at `0.9 D` in any case.
    pub fn must_stop(&self, now: Instant, pending: u64, bandwidth: f64) -> bool {
        let elapsed = now.duration_since(self.start);
        let f = elapsed.as_secs_f64() / self.deadline.as_secs_f64();
        let send = if bandwidth > 0.0 {
            Duration::from_secs_f64((pending as f64 / bandwidth / 1000.0).min(1e6))
        } else {
            Duration::ZERO
        };
        f >= 0.9 || (f >= 0.8 && elapsed + send + PERIOD >= self.deadline)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::migration::params::DEFAULT_THROTTLE;

    #[test]
    fn the_schedule_climbs_by_the_increment_to_the_ceiling() {
        let t = DEFAULT_THROTTLE;
        let mut pct = 0;
        let mut seen = Vec::new();
        for _ in 0..12 {
            pct = step(pct, &t, 100, 1000);
            seen.push(pct);
        }
        assert_eq!(seen, [20, 30, 40, 50, 60, 70, 80, 90, 99, 99, 99, 99]);
        let low = Throttle { max: 45, ..t };
        assert_eq!(step(40, &low, 100, 1000), 45);
    }

    #[test]
    fn tailslow_steps_only_as_far_as_the_threshold_needs() {
        let t = Throttle {
            tailslow: true,
            ..DEFAULT_THROTTLE
        };
        // At 50 %, dirtying 60 against 100 sent: the ideal is 50 * 50/60 = 41.7 % of the
        // CPU, a step of 8.3 rather than 10.
        assert_eq!(step(50, &t, 100, 60), 58);
        assert_eq!(step(50, &t, 100, 1000), 60, "far over: the full increment");
    }

    #[test]
    fn a_period_over_the_threshold_steps_once_it_is_long_enough() {
        let t = DEFAULT_THROTTLE;
        let t0 = Instant::now();
        let mut a = AutoConverge::new(t0, 0);
        a.sync(t0 + PERIOD / 2, 10_000, 1000, &t);
        assert_eq!(a.pct, 0, "the period is not over yet");
        a.sync(t0 + PERIOD, 10_000, 2000, &t);
        assert_eq!(a.pct, 20);
        // Dirtying less than half of what was sent: no step.
        a.sync(t0 + PERIOD * 2, 400, 3000, &t);
        assert_eq!(a.pct, 20);
        a.sync(t0 + PERIOD * 3, 600, 4000, &t);
        assert_eq!(a.pct, 30);
    }

    #[test]
    fn the_guarantee_throttles_from_half_the_deadline_then_stops() {
        let p = Params {
            converge_deadline_s: 10,
            ..Params::default()
        };
        let t0 = Instant::now();
        let mut g = Guarantee::new(t0, &p).unwrap();
        assert!(Guarantee::new(t0, &Params::default()).is_none(), "off by default");
        assert_eq!(g.escalation(t0 + Duration::from_secs(4), &p.throttle), 0);
        assert_eq!(g.step, None);
        assert_eq!(g.escalation(t0 + Duration::from_secs(5), &p.throttle), 20);
        assert_eq!(g.step, Some(Step::Throttle));
        assert_eq!(g.escalation(t0 + Duration::from_secs(8), &p.throttle), 99);
        // 100 MB at 100 kB/ms is one second: at 8.5 s there is still time, at 8.8 s not.
        assert!(!g.must_stop(t0 + Duration::from_millis(8500), 100_000_000, 100_000.0));
        assert!(g.must_stop(t0 + Duration::from_millis(8800), 100_000_000, 100_000.0));
        // Never before 0.8 D, however much is left; at 0.9 D whatever is left.
        assert!(!g.must_stop(t0 + Duration::from_secs(7), 1 << 40, 1.0));
        assert!(g.must_stop(t0 + Duration::from_secs(8), 1 << 40, 1.0));
        assert!(g.must_stop(t0 + Duration::from_secs(9), 0, 100_000.0));
    }

    #[test]
    fn with_postcopy_ram_the_first_step_is_postcopy() {
        let p = Params {
            converge_deadline_s: 10,
            postcopy_ram: true,
            ..Params::default()
        };
        let t0 = Instant::now();
        let mut g = Guarantee::new(t0, &p).unwrap();
        assert_eq!(g.escalation(t0 + Duration::from_secs(4), &p.throttle), 0);
        assert_eq!(g.step, None);
        assert_eq!(g.escalation(t0 + Duration::from_secs(5), &p.throttle), 0, "no throttle");
        assert_eq!(g.step.map(Step::name), Some("postcopy"));
    }
}
