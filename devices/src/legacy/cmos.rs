//! The MC146818 CMOS RTC and NVRAM at 0x70/0x71.
//!
//! The clock reads the host's UTC time (QEMU's default `-rtc base=utc`) plus an offset that
//! changes when the guest sets the clock. The NVRAM holds the memory-size bytes PC firmware
//! reads. Periodic, alarm and update interrupts are not generated.

use crate::bus::BusDevice;
use crate::state::{Persist, StateError, StateReader, StateWriter, VersionedState};
use std::time::{SystemTime, UNIX_EPOCH};

pub const CMOS_PORT: u64 = 0x70;
pub const CMOS_PORTS: u64 = 2;

const REG_SECONDS: u8 = 0x00;
const REG_MINUTES: u8 = 0x02;
const REG_HOURS: u8 = 0x04;
const REG_WEEKDAY: u8 = 0x06;
const REG_DAY: u8 = 0x07;
const REG_MONTH: u8 = 0x08;
const REG_YEAR: u8 = 0x09;
const REG_A: u8 = 0x0a;
const REG_B: u8 = 0x0b;
const REG_C: u8 = 0x0c;
const REG_D: u8 = 0x0d;
const REG_CENTURY: u8 = 0x32;

const B_SET: u8 = 0x80;
const B_BINARY: u8 = 0x04;
const B_24H: u8 = 0x02;

/// Source of "now" in seconds since the Unix epoch (a parameter so tests can pin it).
pub type Clock = fn() -> i64;

fn host_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

pub struct Cmos {
    index: u8,
    ram: [u8; 128],
    /// Guest time minus host time, in seconds.
    offset: i64,
    clock: Clock,
}

impl Cmos {
    /// `below_4g` and `above_4g` are the guest RAM sizes in bytes, stored where firmware looks.
    pub fn new(below_4g: u64, above_4g: u64) -> Self {
        Self::with_clock(below_4g, above_4g, host_now)
    }

    pub fn with_clock(below_4g: u64, above_4g: u64, clock: Clock) -> Self {
        let mut ram = [0u8; 128];
        ram[REG_A as usize] = 0x26;
        ram[REG_B as usize] = B_24H;
        ram[REG_D as usize] = 0x80;
        // Base memory in KiB (640), extended memory in KiB above 1 MiB (capped at 63 MiB),
        // memory between 16 MiB and 4 GiB in 64 KiB units, memory above 4 GiB in 64 KiB units.
        ram[0x15..0x17].copy_from_slice(&640u16.to_le_bytes());
        let ext_kib = (below_4g.saturating_sub(1 << 20) >> 10).min(0xfc00) as u16;
        ram[0x17..0x19].copy_from_slice(&ext_kib.to_le_bytes());
        ram[0x30..0x32].copy_from_slice(&ext_kib.to_le_bytes());
        let above_16m = (below_4g.saturating_sub(16 << 20) >> 16).min(0xffff) as u16;
        ram[0x34..0x36].copy_from_slice(&above_16m.to_le_bytes());
        let high = (above_4g >> 16).min(0xff_ffff) as u32;
        ram[0x5b..0x5e].copy_from_slice(&high.to_le_bytes()[..3]);
        Cmos {
            index: 0,
            ram,
            offset: 0,
            clock,
        }
    }

    fn bcd(&self) -> bool {
        self.ram[REG_B as usize] & B_BINARY == 0
    }

    fn encode(&self, v: u32) -> u8 {
        if self.bcd() { (((v / 10) << 4) | (v % 10)) as u8 } else { v as u8 }
    }

    fn decode(&self, v: u8) -> u32 {
        if self.bcd() {
            u32::from(v >> 4) * 10 + u32::from(v & 0xf)
        } else {
            u32::from(v)
        }
    }

    fn clock_reg(&self, reg: u8) -> u8 {
        let t = (self.clock)() + self.offset;
        let (days, secs) = (t.div_euclid(86400), t.rem_euclid(86400) as u32);
        let (year, month, day) = civil_from_days(days);
        let hour = secs / 3600;
        match reg {
            REG_SECONDS => self.encode(secs % 60),
            REG_MINUTES => self.encode(secs / 60 % 60),
            REG_HOURS if self.ram[REG_B as usize] & B_24H != 0 => self.encode(hour),
            REG_HOURS => {
                let h12 = if hour % 12 == 0 { 12 } else { hour % 12 };
                self.encode(h12) | if hour >= 12 { 0x80 } else { 0 }
            }
            REG_WEEKDAY => self.encode(((days + 4).rem_euclid(7) + 1) as u32), // 1970-01-01 was a Thursday
            REG_DAY => self.encode(day),
            REG_MONTH => self.encode(month),
            REG_YEAR => self.encode((year.rem_euclid(100)) as u32),
            _ => self.encode((year.div_euclid(100)) as u32),
        }
    }

    /// Takes the time the guest wrote into the clock registers as the new guest time.
    fn latch_guest_time(&mut self) {
        let r = |s: &Self, reg: u8| s.decode(s.ram[reg as usize]);
        let mut hour = self.decode(self.ram[REG_HOURS as usize] & 0x7f);
        if self.ram[REG_B as usize] & B_24H == 0 {
            hour %= 12;
            if self.ram[REG_HOURS as usize] & 0x80 != 0 {
                hour += 12;
            }
        }
        let year = i64::from(r(self, REG_CENTURY)) * 100 + i64::from(r(self, REG_YEAR));
        let (month, day) = (r(self, REG_MONTH), r(self, REG_DAY));
        if !(1..=12).contains(&month) || !(1..=31).contains(&day) {
            return;
        }
        let days = days_from_civil(year, month, day);
        let t = days * 86400 + i64::from(hour) * 3600 + i64::from(r(self, REG_MINUTES)) * 60 + i64::from(r(self, REG_SECONDS));
        self.offset = t - (self.clock)();
    }

    fn is_clock(reg: u8) -> bool {
        matches!(
            reg,
            REG_SECONDS | REG_MINUTES | REG_HOURS | REG_WEEKDAY | REG_DAY | REG_MONTH | REG_YEAR | REG_CENTURY
        )
    }
}

impl BusDevice for Cmos {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        let v = match offset {
            0 => self.index,
            _ => {
                let reg = self.index & 0x7f;
                let set = self.ram[REG_B as usize] & B_SET != 0;
                if Self::is_clock(reg) && !set {
                    self.clock_reg(reg)
                } else if reg == REG_C {
                    0
                } else {
                    self.ram[reg as usize]
                }
            }
        };
        data.fill(v);
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        let Some(&b) = data.first() else { return };
        if offset == 0 {
            self.index = b;
            return;
        }
        let reg = self.index & 0x7f;
        match reg {
            REG_C | REG_D => {}                         // read-only
            REG_A => self.ram[reg as usize] = b & 0x7f, // UIP is read-only
            REG_B => {
                let was_set = self.ram[REG_B as usize] & B_SET != 0;
                if !was_set && b & B_SET != 0 {
                    // Freeze the current time into the registers so the guest edits it.
                    for r in [
                        REG_SECONDS,
                        REG_MINUTES,
                        REG_HOURS,
                        REG_WEEKDAY,
                        REG_DAY,
                        REG_MONTH,
                        REG_YEAR,
                        REG_CENTURY,
                    ] {
                        self.ram[r as usize] = self.clock_reg(r);
                    }
                }
                self.ram[REG_B as usize] = b;
                if was_set && b & B_SET == 0 {
                    self.latch_guest_time();
                }
            }
            _ => {
                self.ram[reg as usize] = b;
                if Self::is_clock(reg) && self.ram[REG_B as usize] & B_SET == 0 {
                    // Without SET, a write changes the running clock at once.
                    for r in [REG_SECONDS, REG_MINUTES, REG_HOURS, REG_DAY, REG_MONTH, REG_YEAR, REG_CENTURY] {
                        if r != reg {
                            self.ram[r as usize] = self.clock_reg(r);
                        }
                    }
                    self.latch_guest_time();
                }
            }
        }
    }
}

/// Days since 1970-01-01 for a proleptic Gregorian date.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (i64::from(m) + 9) % 12;
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

/// Inverse of [`days_from_civil`]: (year, month 1-12, day 1-31).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// Saved NVRAM, index and clock offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CmosState {
    pub index: u8,
    pub ram: Vec<u8>,
    pub offset: i64,
}

impl VersionedState for CmosState {
    const NAME: &'static str = "cmos-rtc";
    const VERSION: u16 = 1;
    fn encode(&self, w: &mut StateWriter) {
        w.u8(self.index);
        w.bytes(&self.ram);
        w.i64(self.offset);
    }
    fn decode(r: &mut StateReader<'_>, _version: u16) -> Result<Self, StateError> {
        let index = r.u8()?;
        let ram = r.bytes()?.to_vec();
        if ram.len() != 128 {
            return Err(StateError::Invalid {
                name: Self::NAME,
                why: format!("NVRAM of {} bytes", ram.len()),
            });
        }
        Ok(CmosState {
            index,
            ram,
            offset: r.i64()?,
        })
    }
}

impl Persist for Cmos {
    type State = CmosState;
    fn save(&self) -> CmosState {
        CmosState {
            index: self.index,
            ram: self.ram.to_vec(),
            offset: self.offset,
        }
    }
    fn restore(&mut self, s: &CmosState) -> Result<(), StateError> {
        self.ram.copy_from_slice(&s.ram);
        self.index = s.index;
        self.offset = s.offset;
        Ok(())
    }
}

impl crate::device::PlainDevice for Cmos {}

#[cfg(test)]
mod tests {
    use super::*;

    // 2024-02-29 13:45:07 UTC, a Thursday.
    fn fixed() -> i64 {
        1_709_214_307
    }

    fn rd(c: &mut Cmos, reg: u8) -> u8 {
        c.write(0, &[reg]);
        let mut b = [0u8];
        c.read(1, &mut b);
        b[0]
    }

    #[test]
    fn reads_time_in_bcd() {
        let mut c = Cmos::with_clock(256 << 20, 0, fixed);
        let got: Vec<u8> = [0x00, 0x02, 0x04, 0x06, 0x07, 0x08, 0x09, 0x32]
            .iter()
            .map(|r| rd(&mut c, *r))
            .collect();
        assert_eq!(got, vec![0x07, 0x45, 0x13, 0x05, 0x29, 0x02, 0x24, 0x20]);
        assert_eq!(rd(&mut c, REG_D), 0x80);
    }

    #[test]
    fn guest_sets_clock_and_state_keeps_it() {
        let mut c = Cmos::with_clock(256 << 20, 0, fixed);
        c.write(0, &[REG_B]);
        c.write(1, &[B_SET | B_24H]);
        c.write(0, &[REG_YEAR]);
        c.write(1, &[0x30]);
        c.write(0, &[REG_B]);
        c.write(1, &[B_24H]);
        assert_eq!(rd(&mut c, REG_YEAR), 0x30);
        assert_eq!(rd(&mut c, REG_MONTH), 0x03); // 2030 has no Feb 29: it rolls into March 1
        let st = CmosState::from_bytes(&c.save().to_bytes()).unwrap();
        let mut d = Cmos::with_clock(0, 0, fixed);
        d.restore(&st).unwrap();
        assert_eq!(rd(&mut d, REG_YEAR), 0x30);
    }

    #[test]
    fn memory_size_bytes() {
        let mut c = Cmos::with_clock(3 << 30, 1 << 30, fixed);
        assert_eq!((rd(&mut c, 0x5b), rd(&mut c, 0x5c), rd(&mut c, 0x5d)), (0x00, 0x40, 0x00));
        assert_eq!(u16::from_le_bytes([rd(&mut c, 0x34), rd(&mut c, 0x35)]), 0xbf00);
    }

    #[test]
    fn civil_round_trip() {
        for d in [-800_000i64, -1, 0, 59, 60, 10_957, 19_782, 1_000_000] {
            let (y, m, dd) = civil_from_days(d);
            assert_eq!(days_from_civil(y, m, dd), d);
        }
    }
}
