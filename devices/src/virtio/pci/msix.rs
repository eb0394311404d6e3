//! The MSI-X table and pending-bit array (PCI 3.0 §6.8.2).
//!
//! A message is delivered only while MSI-X is enabled, the function is unmasked and the
//! vector's entry is unmasked; otherwise its pending bit is set and the message goes out as
//! soon as the mask that held it back is cleared, as hardware does.

use super::super::MsiSink;
use crate::state::{StateError, StateReader, StateWriter, VersionedState};
use thiserror::Error;

pub const ENTRY_SIZE: usize = 16;
/// Vector-control bit 0: the entry is masked.
const CTRL_MASKED: u32 = 1;
/// The largest table the capability can describe.
pub const MAX_VECTORS: u16 = 2048;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum MsixError {
    #[error("an MSI-X table needs 1 to {MAX_VECTORS} vectors, not {0}")]
    BadVectorCount(u16),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Msix {
    /// `n * 16` bytes: address low, address high, data, vector control (little-endian).
    table: Vec<u8>,
    pba: Vec<u64>,
    enabled: bool,
    function_masked: bool,
}

impl Msix {
    /// A table of `vectors` entries, all masked, as after PCI reset.
    pub fn new(vectors: u16) -> Result<Self, MsixError> {
        if vectors == 0 || vectors > MAX_VECTORS {
            return Err(MsixError::BadVectorCount(vectors));
        }
        let n = usize::from(vectors);
        let mut table = vec![0u8; n * ENTRY_SIZE];
        for e in table.chunks_mut(ENTRY_SIZE) {
            e[12..16].copy_from_slice(&CTRL_MASKED.to_le_bytes());
        }
        Ok(Msix {
            table,
            pba: vec![0; n.div_ceil(64)],
            enabled: false,
            function_masked: false,
        })
    }

    pub fn vectors(&self) -> u16 {
        (self.table.len() / ENTRY_SIZE) as u16
    }

    pub fn table_len(&self) -> u64 {
        self.table.len() as u64
    }

    pub fn pba_len(&self) -> u64 {
        (self.pba.len() * 8) as u64
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    pub fn function_masked(&self) -> bool {
        self.function_masked
    }

    fn word(&self, v: usize, i: usize) -> u32 {
        let o = v * ENTRY_SIZE + i * 4;
        u32::from_le_bytes(self.table[o..o + 4].try_into().expect("4-byte slice"))
    }

    /// (address, data, masked) of entry `v`.
    pub fn entry(&self, v: u16) -> Option<(u64, u32, bool)> {
        let v = usize::from(v);
        if v * ENTRY_SIZE >= self.table.len() {
            return None;
        }
        let addr = (u64::from(self.word(v, 1)) << 32) | u64::from(self.word(v, 0));
        Some((addr, self.word(v, 2), self.word(v, 3) & CTRL_MASKED != 0))
    }

    pub fn pending(&self, v: u16) -> bool {
        let v = usize::from(v);
        self.pba.get(v / 64).is_some_and(|w| w >> (v % 64) & 1 != 0)
    }

    fn set_pending(&mut self, v: u16, on: bool) {
        let v = usize::from(v);
        if let Some(w) = self.pba.get_mut(v / 64) {
            if on {
                *w |= 1 << (v % 64);
            } else {
                *w &= !(1 << (v % 64));
            }
        }
    }

    /// Raises vector `v`: delivers it, or marks it pending while masked.
    pub fn trigger(&mut self, v: u16, sink: &dyn MsiSink) {
        let Some((addr, data, masked)) = self.entry(v) else {
            return;
        };
        if !self.enabled {
            return;
        }
        if masked || self.function_masked {
            self.set_pending(v, true);
        } else {
            sink.signal(addr, data);
        }
    }

    /// Sends every pending message whose masks are now clear.
    fn flush_pending(&mut self, sink: &dyn MsiSink) {
        if !self.enabled || self.function_masked {
            return;
        }
        for v in 0..self.vectors() {
            if self.pending(v) {
                let (addr, data, masked) = self.entry(v).expect("vector in range");
                if !masked {
                    self.set_pending(v, false);
                    sink.signal(addr, data);
                }
            }
        }
    }

    /// Follows the Message Control register of the capability (enable and function mask).
    pub fn set_control(&mut self, enabled: bool, function_masked: bool, sink: &dyn MsiSink) {
        self.enabled = enabled;
        self.function_masked = function_masked;
        self.flush_pending(sink);
    }

    /// Guest read of the table; out-of-range bytes read as zero.
    pub fn read_table(&self, offset: u64, data: &mut [u8]) {
        read_bytes(&self.table, offset, data);
    }

    /// Guest write of the table: dword or qword, naturally aligned (others are ignored, as
    /// the PCI spec leaves them undefined).
    pub fn write_table(&mut self, offset: u64, data: &[u8], sink: &dyn MsiSink) {
        let len = data.len() as u64;
        if !(len == 4 || len == 8) || !offset.is_multiple_of(len) || offset.saturating_add(len) > self.table_len() {
            return;
        }
        let o = offset as usize;
        self.table[o..o + data.len()].copy_from_slice(data);
        // Unmasking an entry releases its pending message.
        self.flush_pending(sink);
    }

    /// Guest read of the PBA (the PBA is read-only).
    pub fn read_pba(&self, offset: u64, data: &mut [u8]) {
        let bytes: Vec<u8> = self.pba.iter().flat_map(|w| w.to_le_bytes()).collect();
        read_bytes(&bytes, offset, data);
    }
}

fn read_bytes(src: &[u8], offset: u64, data: &mut [u8]) {
    for (i, d) in data.iter_mut().enumerate() {
        *d = usize::try_from(offset)
            .ok()
            .and_then(|o| o.checked_add(i))
            .and_then(|o| src.get(o))
            .copied()
            .unwrap_or(0);
    }
}

impl VersionedState for Msix {
    const NAME: &'static str = "msix";
    const VERSION: u16 = 1;
    fn encode(&self, w: &mut StateWriter) {
        w.bytes(&self.table);
        w.u32(self.pba.len() as u32);
        for p in &self.pba {
            w.u64(*p);
        }
        w.bool(self.enabled);
        w.bool(self.function_masked);
    }
    fn decode(r: &mut StateReader<'_>, _version: u16) -> Result<Self, StateError> {
        let table = r.bytes()?.to_vec();
        let n = table.len() / ENTRY_SIZE;
        let pba_len = r.u32()? as usize;
        if table.is_empty() || table.len() % ENTRY_SIZE != 0 || n > usize::from(MAX_VECTORS) || pba_len != n.div_ceil(64) {
            return Err(StateError::Invalid {
                name: Self::NAME,
                why: "table and PBA sizes disagree".into(),
            });
        }
        let pba = (0..pba_len).map(|_| r.u64()).collect::<Result<_, _>>()?;
        Ok(Msix {
            table,
            pba,
            enabled: r.bool()?,
            function_masked: r.bool()?,
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::sync::Mutex;

    #[derive(Default)]
    pub(crate) struct Recorder(pub Mutex<Vec<(u64, u32)>>);
    impl MsiSink for Recorder {
        fn signal(&self, addr: u64, data: u32) {
            self.0.lock().unwrap().push((addr, data));
        }
    }

    fn program(m: &mut Msix, v: u64, addr: u64, data: u32, masked: bool, sink: &Recorder) {
        let base = v * ENTRY_SIZE as u64;
        m.write_table(base, &addr.to_le_bytes(), sink);
        m.write_table(base + 8, &data.to_le_bytes(), sink);
        m.write_table(base + 12, &u32::from(masked).to_le_bytes(), sink);
    }

    #[test]
    fn masks_and_pending() {
        let sink = Recorder::default();
        let mut m = Msix::new(3).unwrap();
        assert_eq!(m.entry(0), Some((0, 0, true)), "entries start masked");
        m.trigger(0, &sink);
        assert!(!m.pending(0), "disabled MSI-X neither delivers nor latches");
        m.set_control(true, false, &sink);
        program(&mut m, 1, 0xfee0_0000, 0x41, false, &sink);
        m.trigger(1, &sink);
        assert_eq!(*sink.0.lock().unwrap(), vec![(0xfee0_0000, 0x41)]);

        // Entry mask: pending, then delivered on unmask.
        program(&mut m, 2, 0xfee0_1000, 0x42, true, &sink);
        m.trigger(2, &sink);
        assert!(m.pending(2));
        let mut pba = [0u8; 8];
        m.read_pba(0, &mut pba);
        assert_eq!(u64::from_le_bytes(pba), 0b100);
        m.write_table(2 * 16 + 12, &0u32.to_le_bytes(), &sink);
        assert!(!m.pending(2));
        assert_eq!(sink.0.lock().unwrap().last(), Some(&(0xfee0_1000, 0x42)));

        // Function mask holds everything back until cleared.
        m.set_control(true, true, &sink);
        m.trigger(1, &sink);
        assert_eq!(sink.0.lock().unwrap().len(), 2);
        m.set_control(true, false, &sink);
        assert_eq!(sink.0.lock().unwrap().len(), 3);

        // Bad accesses are ignored; out-of-range vectors do nothing.
        m.write_table(3, &[1, 2, 3, 4], &sink);
        m.write_table(48, &[0; 4], &sink);
        m.write_table(0, &[0; 2], &sink);
        m.trigger(7, &sink);
        let mut d = [0u8; 4];
        m.read_table(16, &mut d);
        assert_eq!(u32::from_le_bytes(d), 0xfee0_0000);
        m.read_table(1000, &mut d);
        assert_eq!(d, [0; 4]);
        assert_eq!(Msix::from_bytes(&m.to_bytes()).unwrap(), m);
        assert_eq!(Msix::new(0), Err(MsixError::BadVectorCount(0)));
    }
}
