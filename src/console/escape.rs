//! QEMU's Ctrl-A escapes on a console shared with the terminal: `C-a x` quits, `C-a h`
//! lists the escapes, `C-a C-a` sends a literal Ctrl-A.

const CTRL_A: u8 = 0x01;

pub enum Action {
    None,
    Guest(Bytes),
    Print(&'static str),
    Quit,
}

/// One or two bytes for the guest.
pub struct Bytes {
    buf: [u8; 2],
    len: usize,
}

impl Bytes {
    fn one(b: u8) -> Self {
        Bytes { buf: [b, 0], len: 1 }
    }
    fn two(a: u8, b: u8) -> Self {
        Bytes { buf: [a, b], len: 2 }
    }
    pub fn as_slice(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

pub const HELP: &str = "\r\nC-a h    print this help\r\nC-a x    exit emulator\r\nC-a c    switch between console and monitor\r\nC-a C-a  sends C-a\r\n";
const NO_MONITOR: &str = "\r\ngodwit: no monitor on this console (the monitor arrives with -monitor support)\r\n";
pub const TERMINATED: &str = "\r\ngodwit: Terminated\r\n";

#[derive(Default)]
pub struct Escapes {
    pending: bool,
}

impl Escapes {
    pub fn feed(&mut self, b: u8) -> Action {
        if !self.pending {
            if b == CTRL_A {
                self.pending = true;
                return Action::None;
            }
            return Action::Guest(Bytes::one(b));
        }
        self.pending = false;
        match b {
            b'x' | b'X' => Action::Quit,
            b'h' | b'H' | b'?' => Action::Print(HELP),
            b'c' | b'C' => Action::Print(NO_MONITOR),
            CTRL_A => Action::Guest(Bytes::one(CTRL_A)),
            // Unknown escapes pass both bytes through, as QEMU does.
            other => Action::Guest(Bytes::two(CTRL_A, other)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(input: &[u8]) -> (Vec<u8>, bool, usize) {
        let mut e = Escapes::default();
        let (mut guest, mut quit, mut printed) = (Vec::new(), false, 0);
        for b in input {
            match e.feed(*b) {
                Action::Guest(b) => guest.extend_from_slice(b.as_slice()),
                Action::Quit => quit = true,
                Action::Print(_) => printed += 1,
                Action::None => {}
            }
        }
        (guest, quit, printed)
    }

    #[test]
    fn escapes() {
        assert_eq!(run(b"ls\r"), (b"ls\r".to_vec(), false, 0));
        assert_eq!(run(&[1, b'x']), (vec![], true, 0));
        assert_eq!(run(&[1, b'h', b'a']), (b"a".to_vec(), false, 1));
        assert_eq!(run(&[1, 1, b'q']), (vec![1, b'q'], false, 0));
        assert_eq!(run(&[1, b'z']), (vec![1, b'z'], false, 0));
    }
}
