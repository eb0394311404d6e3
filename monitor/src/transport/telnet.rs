//! The little telnet a `telnet:` monitor speaks: the server's opening
//! negotiation, and removal of the client's commands from the input.

/// Sent on connect before the banner: WILL ECHO, WILL SUPPRESS-GO-AHEAD,
/// WILL BINARY, DO BINARY (what QEMU sends).
pub const NEGOTIATION: [u8; 12] = [0xff, 0xfb, 0x01, 0xff, 0xfb, 0x03, 0xff, 0xfb, 0x00, 0xff, 0xfd, 0x00];

const IAC: u8 = 0xff;
const SB: u8 = 250;
const SE: u8 = 240;
const WILL: u8 = 251;
const DONT: u8 = 254;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum State {
    #[default]
    Data,
    Iac,
    /// After WILL/WONT/DO/DONT: one option byte follows.
    Option,
    Subnegotiation,
    SubnegotiationIac,
}

/// Strips telnet commands from a byte stream (sans-IO; state carries over
/// between calls). `IAC IAC` is a data byte 0xFF; option negotiation (three
/// bytes), subnegotiation (`IAC SB ... IAC SE`) and two-byte commands such
/// as NOP or BREAK are dropped.
#[derive(Debug, Clone, Default)]
pub struct TelnetFilter {
    state: State,
}

impl TelnetFilter {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends the data bytes of `input` to `out`.
    pub fn filter(&mut self, input: &[u8], out: &mut Vec<u8>) {
        for &b in input {
            self.state = match (self.state, b) {
                (State::Data, IAC) => State::Iac,
                (State::Data, _) => {
                    out.push(b);
                    State::Data
                }
                (State::Iac, IAC) => {
                    out.push(IAC);
                    State::Data
                }
                (State::Iac, WILL..=DONT) => State::Option,
                (State::Iac, SB) => State::Subnegotiation,
                (State::Iac, _) | (State::Option, _) => State::Data,
                (State::Subnegotiation, IAC) => State::SubnegotiationIac,
                (State::Subnegotiation, _) => State::Subnegotiation,
                (State::SubnegotiationIac, SE) => State::Data,
                (State::SubnegotiationIac, _) => State::Subnegotiation,
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(chunks: &[&[u8]]) -> Vec<u8> {
        let mut f = TelnetFilter::new();
        let mut out = Vec::new();
        for c in chunks {
            f.filter(c, &mut out);
        }
        out
    }

    #[test]
    fn strips_negotiation() {
        // A Linux telnet client's answers, then a command.
        let input = [
            &[0xff, 0xfd, 0x01, 0xff, 0xfd, 0x03, 0xff, 0xfd, 0x00, 0xff, 0xfb, 0x00][..],
            b"info status\r",
        ];
        assert_eq!(run(&input), b"info status\r".to_vec());
    }

    #[test]
    fn split_sequences_and_escapes() {
        assert_eq!(run(&[b"a\xff", b"\xfb", b"\x18b"]), b"ab".to_vec());
        assert_eq!(run(&[b"a\xff\xffb"]), b"a\xffb".to_vec());
        assert_eq!(run(&[b"a\xff\xfa\x1f\x00\x50\x00\x18\xff\xf0b"]), b"ab".to_vec());
        assert_eq!(run(&[b"a\xff\xf1b\xff\xf3c"]), b"abc".to_vec());
    }
}
