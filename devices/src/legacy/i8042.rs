//! The i8042 keyboard controller at 0x60/0x64.
//!
//! Guests use it mostly to reset the machine (command 0xFE, or clearing bit 0 of the output
//! port) and Linux probes it at boot. There is no keyboard behind it: keyboard commands are
//! acknowledged so drivers finish probing, and no scancodes are ever produced.

use crate::bus::BusDevice;
use crate::irq::IrqEvent;
use crate::state::{Persist, StateError, StateReader, StateWriter, VersionedState};
use std::collections::VecDeque;

pub const I8042_DATA_PORT: u64 = 0x60;
/// The status/command port; the device sees it as offset 4 from the data port.
pub const I8042_COMMAND_PORT: u64 = 0x64;
pub const KBD_IRQ: u32 = 1;

const STATUS_OUT_FULL: u8 = 0x01;
const STATUS_SYS: u8 = 0x04;
const STATUS_CMD: u8 = 0x08;
const STATUS_UNLOCKED: u8 = 0x10;
const STATUS_AUX_DATA: u8 = 0x20;

const CMD_BYTE_KBD_INT: u8 = 0x01;
const CMD_BYTE_SYS: u8 = 0x04;
const CMD_BYTE_KBD_DISABLED: u8 = 0x10;
const CMD_BYTE_AUX_DISABLED: u8 = 0x20;
const CMD_BYTE_XLATE: u8 = 0x40;

/// Output queue bound: a guest issuing commands without reading answers cannot grow it.
const QUEUE_MAX: usize = 16;

/// Called when the guest asks for a system reset.
pub type ResetHandler = Box<dyn FnMut() + Send>;

pub struct I8042 {
    status: u8,
    cmd_byte: u8,
    /// A controller command waiting for its data byte (0x60, 0xD1, 0xD2, 0xD3, 0xD4).
    pending: Option<u8>,
    /// Bytes waiting at the data port, with a flag marking aux (mouse) bytes.
    out: VecDeque<(u8, bool)>,
    irq: IrqEvent,
    on_reset: ResetHandler,
}

impl I8042 {
    pub fn new(irq: IrqEvent, on_reset: ResetHandler) -> Self {
        I8042 {
            status: STATUS_SYS | STATUS_UNLOCKED,
            cmd_byte: CMD_BYTE_KBD_INT | CMD_BYTE_SYS | CMD_BYTE_XLATE,
            pending: None,
            out: VecDeque::new(),
            irq,
            on_reset,
        }
    }

    fn push(&mut self, byte: u8, aux: bool) {
        if self.out.len() < QUEUE_MAX {
            self.out.push_back((byte, aux));
        }
        self.update_status();
        if !aux && self.cmd_byte & CMD_BYTE_KBD_INT != 0 {
            // A lost interrupt only delays the guest's poll; nothing to do on failure.
            let _ = self.irq.raise();
        }
    }

    fn update_status(&mut self) {
        self.status &= !(STATUS_OUT_FULL | STATUS_AUX_DATA);
        if let Some((_, aux)) = self.out.front() {
            self.status |= STATUS_OUT_FULL;
            if *aux {
                self.status |= STATUS_AUX_DATA;
            }
        }
    }

    fn command(&mut self, cmd: u8) {
        match cmd {
            0x20 => self.push(self.cmd_byte, false),
            0x60 | 0xD1 | 0xD2 | 0xD3 | 0xD4 => self.pending = Some(cmd),
            0xA7 => self.cmd_byte |= CMD_BYTE_AUX_DISABLED,
            0xA8 => self.cmd_byte &= !CMD_BYTE_AUX_DISABLED,
            0xA9 | 0xAB => self.push(0x00, false), // port tests pass
            0xAA => {
                self.status |= STATUS_SYS;
                self.push(0x55, false); // controller self-test passed
            }
            0xAD => self.cmd_byte |= CMD_BYTE_KBD_DISABLED,
            0xAE => self.cmd_byte &= !CMD_BYTE_KBD_DISABLED,
            0xC0 => self.push(0x00, false), // input port
            0xD0 => self.push(0x01, false), // output port: reset line not asserted
            0xFE => (self.on_reset)(),
            // 0xF0..=0xFF pulse output lines; only bit 0 (reset) matters, handled above.
            _ => {}
        }
    }

    fn data(&mut self, byte: u8) {
        match self.pending.take() {
            Some(0x60) => {
                self.cmd_byte = byte;
                self.status = (self.status & !STATUS_SYS) | (byte & CMD_BYTE_SYS);
            }
            Some(0xD1) => {
                if byte & 0x01 == 0 {
                    (self.on_reset)();
                }
            }
            Some(0xD2) => self.push(byte, false),
            Some(0xD3) => self.push(byte, true),
            // No mouse: aux commands get no answer, which is what "no device" looks like.
            Some(_) => {}
            None => self.keyboard_command(byte),
        }
    }

    /// Commands sent to the (absent) keyboard: acknowledge enough for drivers to move on.
    fn keyboard_command(&mut self, byte: u8) {
        match byte {
            0xFF => {
                self.push(0xFA, false);
                self.push(0xAA, false);
            }
            0xF2 => {
                self.push(0xFA, false);
                self.push(0xAB, false);
                self.push(0x83, false);
            }
            _ => self.push(0xFA, false),
        }
    }
}

impl BusDevice for I8042 {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        let v = match offset {
            0 => {
                let v = self.out.pop_front().map(|(b, _)| b).unwrap_or(0);
                self.update_status();
                v
            }
            4 => self.status,
            _ => 0xff,
        };
        data.fill(v);
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        let Some(&b) = data.first() else { return };
        match offset {
            0 => {
                self.status &= !STATUS_CMD;
                self.data(b);
            }
            4 => {
                self.status |= STATUS_CMD;
                self.command(b);
            }
            _ => {}
        }
    }
}

/// Saved controller registers and pending output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct I8042State {
    pub status: u8,
    pub cmd_byte: u8,
    pub pending: Option<u8>,
    pub out: Vec<(u8, bool)>,
}

impl VersionedState for I8042State {
    const NAME: &'static str = "i8042";
    const VERSION: u16 = 1;
    fn encode(&self, w: &mut StateWriter) {
        w.u8(self.status);
        w.u8(self.cmd_byte);
        w.bool(self.pending.is_some());
        w.u8(self.pending.unwrap_or(0));
        w.u32(self.out.len() as u32);
        for (b, aux) in &self.out {
            w.u8(*b);
            w.bool(*aux);
        }
    }
    fn decode(r: &mut StateReader<'_>, _version: u16) -> Result<Self, StateError> {
        let status = r.u8()?;
        let cmd_byte = r.u8()?;
        let has_pending = r.bool()?;
        let pending_cmd = r.u8()?;
        let n = r.u32()? as usize;
        if n > QUEUE_MAX {
            return Err(StateError::Invalid {
                name: Self::NAME,
                why: format!("{n} queued bytes"),
            });
        }
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            out.push((r.u8()?, r.bool()?));
        }
        Ok(I8042State {
            status,
            cmd_byte,
            pending: has_pending.then_some(pending_cmd),
            out,
        })
    }
}

impl Persist for I8042 {
    type State = I8042State;
    fn save(&self) -> I8042State {
        I8042State {
            status: self.status,
            cmd_byte: self.cmd_byte,
            pending: self.pending,
            out: self.out.iter().copied().collect(),
        }
    }
    fn restore(&mut self, s: &I8042State) -> Result<(), StateError> {
        self.status = s.status;
        self.cmd_byte = s.cmd_byte;
        self.pending = s.pending;
        self.out = s.out.iter().copied().collect();
        Ok(())
    }
}

impl crate::device::PlainDevice for I8042 {}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn dev() -> (I8042, Arc<AtomicUsize>) {
        let resets = Arc::new(AtomicUsize::new(0));
        let r = resets.clone();
        let d = I8042::new(
            IrqEvent::new().unwrap(),
            Box::new(move || {
                r.fetch_add(1, Ordering::SeqCst);
            }),
        );
        (d, resets)
    }

    fn rd(d: &mut I8042, port: u64) -> u8 {
        let mut b = [0u8];
        d.read(port, &mut b);
        b[0]
    }

    #[test]
    fn reset_paths() {
        let (mut d, resets) = dev();
        d.write(4, &[0xFE]);
        assert_eq!(resets.load(Ordering::SeqCst), 1);
        d.write(4, &[0xD1]);
        d.write(0, &[0xFE]); // output port with bit 0 clear
        assert_eq!(resets.load(Ordering::SeqCst), 2);
        d.write(4, &[0xD1]);
        d.write(0, &[0x01]);
        assert_eq!(resets.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn self_test_and_state() {
        let (mut d, _) = dev();
        d.write(4, &[0xAA]);
        assert_eq!(rd(&mut d, 4) & STATUS_OUT_FULL, STATUS_OUT_FULL);
        assert_eq!(rd(&mut d, 0), 0x55);
        assert_eq!(rd(&mut d, 4) & STATUS_OUT_FULL, 0);
        d.write(4, &[0x60]);
        d.write(0, &[0x45]);
        d.write(0, &[0xFF]); // keyboard reset: ACK, then BAT passed
        let st = I8042State::from_bytes(&d.save().to_bytes()).unwrap();
        let (mut e, _) = dev();
        e.restore(&st).unwrap();
        e.write(4, &[0x20]);
        assert_eq!((rd(&mut e, 0), rd(&mut e, 0), rd(&mut e, 0)), (0xFA, 0xAA, 0x45));
        for _ in 0..100 {
            e.write(0, &[0xEE]);
        }
        assert_eq!(e.out.len(), QUEUE_MAX);
    }
}
