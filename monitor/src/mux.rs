//! A sans-IO serial/monitor multiplexer for one terminal, like QEMU's `mux`
//! chardev (`-nographic`, `mon:stdio`).
//!
//! Input is split into bytes for the focused front end (serial port or
//! monitor) and escape events. The escape character (Ctrl-A by default)
//! followed by:
//! - `h` or `?`: print the help ([`Mux::help_text`]);
//! - `x`: print [`TERMINATED`] and exit;
//! - `s`: commit `-snapshot` disks; `b`: send a break to the serial port;
//! - `c`: switch focus between serial port and monitor;
//! - `t`: toggle timestamps on output ([`Mux::filter_output`]);
//! - the escape character again: send it to the focused front end;
//! - anything else: ignored.

/// What Ctrl-A x prints before exiting (QEMU's exact bytes, `\n\r`).
pub const TERMINATED: &[u8] = b"QEMU: Terminated\n\r";

/// The default escape character, Ctrl-A.
pub const DEFAULT_ESCAPE: u8 = 0x01;

/// Which front end receives typed bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Focus {
    Serial,
    Monitor,
}

/// An escape sequence the terminal user typed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MuxEvent {
    Help,
    Exit,
    SaveDisk,
    Break,
    /// Focus moved; the new focus is given.
    Switch(Focus),
    ToggleTimestamps,
}

/// One piece of split input, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MuxItem {
    Serial(Vec<u8>),
    Monitor(Vec<u8>),
    Event(MuxEvent),
}

/// The multiplexer state.
#[derive(Debug, Clone)]
pub struct Mux {
    escape: u8,
    got_escape: bool,
    focus: Focus,
    /// Whether a monitor is attached (`c` only switches when there are two
    /// front ends).
    has_serial: bool,
    timestamps: bool,
    timestamp_start: Option<u64>,
    line_start: bool,
}

impl Mux {
    /// `has_serial`: whether a serial port shares the terminal. With one, it
    /// has the focus first (as with `-nographic`); without, the monitor has.
    pub fn new(escape: u8, has_serial: bool) -> Self {
        Mux {
            escape,
            got_escape: false,
            focus: if has_serial { Focus::Serial } else { Focus::Monitor },
            has_serial,
            timestamps: false,
            timestamp_start: None,
            line_start: false,
        }
    }

    pub fn focus(&self) -> Focus {
        self.focus
    }

    /// Splits `input`. Consecutive bytes for the same front end come out as
    /// one item.
    pub fn feed(&mut self, input: &[u8]) -> Vec<MuxItem> {
        let mut items = Vec::new();
        for &byte in input {
            if self.got_escape {
                self.got_escape = false;
                if byte == self.escape {
                    self.push_data(&mut items, byte);
                    continue;
                }
                let event = match byte {
                    b'h' | b'?' => MuxEvent::Help,
                    b'x' => MuxEvent::Exit,
                    b's' => MuxEvent::SaveDisk,
                    b'b' => MuxEvent::Break,
                    b'c' => {
                        if self.has_serial {
                            self.focus = match self.focus {
                                Focus::Serial => Focus::Monitor,
                                Focus::Monitor => Focus::Serial,
                            };
                        }
                        MuxEvent::Switch(self.focus)
                    }
                    b't' => {
                        self.timestamps = !self.timestamps;
                        self.timestamp_start = None;
                        self.line_start = false;
                        MuxEvent::ToggleTimestamps
                    }
                    _ => continue,
                };
                items.push(MuxItem::Event(event));
            } else if byte == self.escape {
                self.got_escape = true;
            } else {
                self.push_data(&mut items, byte);
            }
        }
        items
    }

    fn push_data(&self, items: &mut Vec<MuxItem>, byte: u8) {
        match (self.focus, items.last_mut()) {
            (Focus::Serial, Some(MuxItem::Serial(bytes))) | (Focus::Monitor, Some(MuxItem::Monitor(bytes))) => bytes.push(byte),
            (Focus::Serial, _) => items.push(MuxItem::Serial(vec![byte])),
            (Focus::Monitor, _) => items.push(MuxItem::Monitor(vec![byte])),
        }
    }

    /// The escape help, in QEMU's layout (lines end in `\n\r`).
    pub fn help_text(&self) -> Vec<u8> {
        let (name, mut text) = if (1..26).contains(&self.escape) {
            (format!("C-{}", char::from(b'a' + self.escape - 1)), String::from("\n\r"))
        } else {
            (
                String::from("Escape-Char"),
                format!("\n\rEscape-Char set to Ascii: 0x{:02x}\n\r\n\r", self.escape),
            )
        };
        for (key, what) in [
            ("h", "print this help"),
            ("x", "exit emulator"),
            ("s", "save disk data back to file (if -snapshot)"),
            ("t", "toggle console timestamps"),
            ("b", "send break (magic sysrq)"),
            ("c", "switch between console and monitor"),
        ] {
            text.push_str(&format!("{name} {key}    {what}\n\r"));
        }
        text.push_str(&format!("{name} {name}  sends {name}\n\r"));
        text.into_bytes()
    }

    /// Applies timestamps (when toggled on) to bytes on their way to the
    /// terminal: `[HH:MM:SS.mmm] ` before the first byte after each newline,
    /// counted from the first line after the toggle. `now_ms` is any
    /// monotonic clock in milliseconds.
    pub fn filter_output(&mut self, bytes: &[u8], now_ms: u64) -> Vec<u8> {
        if !self.timestamps {
            return bytes.to_vec();
        }
        let mut out = Vec::with_capacity(bytes.len());
        for &b in bytes {
            if self.line_start {
                let start = *self.timestamp_start.get_or_insert(now_ms);
                let t = now_ms.saturating_sub(start);
                let secs = t / 1000;
                out.extend_from_slice(format!("[{:02}:{:02}:{:02}.{:03}] ", secs / 3600, (secs / 60) % 60, secs % 60, t % 1000).as_bytes());
                self.line_start = false;
            }
            out.push(b);
            if b == b'\n' {
                self.line_start = true;
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_by_focus() {
        let mut mux = Mux::new(DEFAULT_ESCAPE, true);
        let items = mux.feed(b"ab\x01cinfo status\r\x01cxy");
        assert_eq!(
            items,
            vec![
                MuxItem::Serial(b"ab".to_vec()),
                MuxItem::Event(MuxEvent::Switch(Focus::Monitor)),
                MuxItem::Monitor(b"info status\r".to_vec()),
                MuxItem::Event(MuxEvent::Switch(Focus::Serial)),
                MuxItem::Serial(b"xy".to_vec()),
            ]
        );
    }

    #[test]
    fn escapes() {
        let mut mux = Mux::new(DEFAULT_ESCAPE, true);
        assert_eq!(mux.feed(b"\x01\x01"), vec![MuxItem::Serial(vec![1])]);
        assert_eq!(mux.feed(b"\x01z"), vec![]);
        assert_eq!(mux.feed(b"\x01"), vec![]);
        // The escape state survives a buffer boundary.
        assert_eq!(mux.feed(b"x"), vec![MuxItem::Event(MuxEvent::Exit)]);
        assert_eq!(
            mux.feed(b"\x01h\x01?\x01s\x01b\x01t"),
            [
                MuxEvent::Help,
                MuxEvent::Help,
                MuxEvent::SaveDisk,
                MuxEvent::Break,
                MuxEvent::ToggleTimestamps
            ]
            .map(MuxItem::Event)
            .to_vec()
        );
    }

    #[test]
    fn monitor_only_keeps_focus() {
        let mut mux = Mux::new(DEFAULT_ESCAPE, false);
        assert_eq!(mux.focus(), Focus::Monitor);
        assert_eq!(
            mux.feed(b"\x01cq"),
            vec![MuxItem::Event(MuxEvent::Switch(Focus::Monitor)), MuxItem::Monitor(b"q".to_vec())]
        );
    }

    #[test]
    fn help_layout_matches_qemu() {
        let mux = Mux::new(DEFAULT_ESCAPE, true);
        assert_eq!(
            String::from_utf8(mux.help_text()).unwrap(),
            "\n\rC-a h    print this help\n\rC-a x    exit emulator\n\rC-a s    save disk data back to file (if -snapshot)\n\r\
             C-a t    toggle console timestamps\n\rC-a b    send break (magic sysrq)\n\r\
             C-a c    switch between console and monitor\n\rC-a C-a  sends C-a\n\r"
        );
        let other = Mux::new(0x02, true);
        assert!(String::from_utf8(other.help_text()).unwrap().starts_with("\n\rC-b h    print"));
        let high = Mux::new(b'~', true);
        let text = String::from_utf8(high.help_text()).unwrap();
        assert!(text.starts_with("\n\rEscape-Char set to Ascii: 0x7e\n\r\n\rEscape-Char h    print this help\n\r"));
        assert!(text.ends_with("Escape-Char Escape-Char  sends Escape-Char\n\r"));
    }

    #[test]
    fn timestamps() {
        let mut mux = Mux::new(DEFAULT_ESCAPE, true);
        assert_eq!(mux.filter_output(b"a\nb", 5), b"a\nb".to_vec());
        mux.feed(b"\x01t");
        assert_eq!(mux.filter_output(b"x\n", 1000), b"x\n".to_vec());
        assert_eq!(mux.filter_output(b"y\nz", 1500), b"[00:00:00.000] y\n[00:00:00.000] z".to_vec());
        assert_eq!(mux.filter_output(b"\nw", 1500 + 3_723_004), b"\n[01:02:03.004] w".to_vec());
    }
}
