//! Port 0x61 (PC speaker and PIT channel 2 gate). Guests poll its OUT2 bit to time short
//! intervals against PIT channel 2, e.g. to calibrate the TSC.
//!
//! The PIT itself is in the kernel; this port reads channel 2's programmed mode, count and
//! load time through [`Pit2`] and computes OUT2 from the elapsed time, as an 8254 would.

use crate::bus::BusDevice;
use crate::state::{Persist, StateError, StateReader, StateWriter, VersionedState};

pub const SPEAKER_PORT: u64 = 0x61;
/// The 8254's input clock.
pub const PIT_HZ: u64 = 1_193_182;

/// Channel 2 as the PIT reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Channel2 {
    pub mode: u8,
    /// Reload value; 0 means 65536.
    pub count: u32,
    pub gate: bool,
    /// When the count was loaded, in CLOCK_MONOTONIC nanoseconds.
    pub load_time_ns: i64,
}

/// Access to the PIT's channel 2.
pub trait Pit2: Send {
    fn channel2(&self) -> Option<Channel2>;
    fn set_gate2(&self, gate: bool);
    fn now_ns(&self) -> i64;
}

pub struct Speaker {
    data_on: bool,
    refresh: bool,
    pit: Box<dyn Pit2>,
}

impl Speaker {
    pub fn new(pit: Box<dyn Pit2>) -> Self {
        Speaker {
            data_on: false,
            refresh: false,
            pit,
        }
    }
}

/// OUT of an 8254 channel `ticks` input-clock periods after its count was loaded.
pub fn out_level(mode: u8, count: u32, ticks: u64) -> bool {
    let count = u64::from(if count == 0 { 0x10000 } else { count });
    match mode {
        0 => ticks >= count,
        1 => ticks >= count,
        2 | 6 => ticks % count != count - 1,
        3 | 7 => ticks % count < count.div_ceil(2),
        4 | 5 => ticks != count,
        _ => true,
    }
}

impl BusDevice for Speaker {
    fn read(&mut self, _offset: u64, data: &mut [u8]) {
        // Bit 4 toggles on every read like DRAM refresh, which some code waits on.
        self.refresh = !self.refresh;
        let (gate, out) = match self.pit.channel2() {
            Some(c) => {
                let elapsed = (self.pit.now_ns() - c.load_time_ns).max(0) as u128;
                let ticks = (elapsed * u128::from(PIT_HZ) / 1_000_000_000) as u64;
                (c.gate, out_level(c.mode, c.count, ticks))
            }
            None => (false, false),
        };
        let v = u8::from(gate) | (u8::from(self.data_on) << 1) | (u8::from(self.refresh) << 4) | (u8::from(out) << 5);
        data.fill(v);
    }

    fn write(&mut self, _offset: u64, data: &[u8]) {
        let Some(&v) = data.first() else { return };
        self.data_on = v & 2 != 0;
        let gate = v & 1 != 0;
        if self.pit.channel2().is_some_and(|c| c.gate != gate) {
            self.pit.set_gate2(gate);
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpeakerState {
    pub data_on: bool,
}

impl VersionedState for SpeakerState {
    const NAME: &'static str = "pc-speaker";
    const VERSION: u16 = 1;
    fn encode(&self, w: &mut StateWriter) {
        w.bool(self.data_on);
    }
    fn decode(r: &mut StateReader<'_>, _version: u16) -> Result<Self, StateError> {
        Ok(SpeakerState { data_on: r.bool()? })
    }
}

impl Persist for Speaker {
    type State = SpeakerState;
    fn save(&self) -> SpeakerState {
        SpeakerState { data_on: self.data_on }
    }
    fn restore(&mut self, s: &SpeakerState) -> Result<(), StateError> {
        self.data_on = s.data_on;
        Ok(())
    }
}

impl crate::device::PlainDevice for Speaker {}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    struct FakePit {
        ch: Arc<Mutex<Channel2>>,
        now: Arc<Mutex<i64>>,
    }
    impl Pit2 for FakePit {
        fn channel2(&self) -> Option<Channel2> {
            Some(*self.ch.lock().unwrap())
        }
        fn set_gate2(&self, gate: bool) {
            let mut c = self.ch.lock().unwrap();
            c.gate = gate;
            c.load_time_ns = *self.now.lock().unwrap();
        }
        fn now_ns(&self) -> i64 {
            *self.now.lock().unwrap()
        }
    }

    #[test]
    fn out2_goes_high_at_terminal_count() {
        let ch = Arc::new(Mutex::new(Channel2 {
            mode: 0,
            count: 11932,
            gate: false,
            load_time_ns: 0,
        }));
        let now = Arc::new(Mutex::new(0));
        let mut s = Speaker::new(Box::new(FakePit {
            ch: ch.clone(),
            now: now.clone(),
        }));
        s.write(0, &[1]);
        assert!(ch.lock().unwrap().gate);
        let mut b = [0u8];
        *now.lock().unwrap() = 9_000_000; // 9 ms: still counting
        s.read(0, &mut b);
        assert_eq!(b[0] & 0x21, 0x01);
        *now.lock().unwrap() = 10_001_000; // just past 10 ms
        s.read(0, &mut b);
        assert_eq!(b[0] & 0x21, 0x21);
    }

    #[test]
    fn modes() {
        assert!(!out_level(0, 100, 99) && out_level(0, 100, 100));
        assert!(out_level(3, 100, 10) && !out_level(3, 100, 60));
        assert!(out_level(2, 100, 5) && !out_level(2, 100, 99));
        assert!(!out_level(4, 100, 100) && out_level(4, 100, 101));
    }
}
