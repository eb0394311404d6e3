//! The POST diagnostic port 0x80: firmware writes progress codes there and Linux uses it as
//! an I/O delay. Writes are kept (the last code is shown by `info` commands) and reads
//! return the last code.

use crate::bus::BusDevice;

pub const POST_PORT: u64 = 0x80;

#[derive(Default)]
pub struct PostCode {
    pub last: u8,
}

impl BusDevice for PostCode {
    fn read(&mut self, _offset: u64, data: &mut [u8]) {
        data.fill(self.last);
    }
    fn write(&mut self, _offset: u64, data: &[u8]) {
        if let Some(b) = data.first() {
            self.last = *b;
        }
    }
}
