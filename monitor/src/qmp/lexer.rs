//! QMP's input stream cut into JSON values, as QEMU's JSON streamer cuts it: no
//! delimiters, a value ends when its brackets balance (or, at top level, when a scalar
//! ends). QEMU's dialect is accepted: single-quoted strings with `\'`. A lexical error is
//! reported at once and whatever was collected is dropped.
//!
//! Memory is bounded: a value may hold at most [`MAX_BYTES`] bytes of tokens, [`MAX_TOKENS`]
//! tokens and [`MAX_DEPTH`] levels of nesting. Past a limit the value is refused with
//! QEMU's message and the rest of it is skipped without being stored (QEMU instead parses
//! the rest token by token, answering an error for each).

/// The most token bytes one value may have (QEMU allows 64 MiB, and takes minutes on it).
pub const MAX_BYTES: usize = 1 << 20;
/// The most tokens one value may have.
pub const MAX_TOKENS: usize = 128 << 10;
/// The deepest nesting of objects and arrays, as in QEMU.
pub const MAX_DEPTH: usize = 1024;

/// One lexical token.
#[derive(Debug, Clone, PartialEq)]
pub enum Token {
    LCurly,
    RCurly,
    LSquare,
    RSquare,
    Colon,
    Comma,
    /// A string, already unescaped.
    Str(String),
    /// A number as written.
    Num(String),
    /// A bare word (`true`, `false`, `null` or an invalid one).
    Word(String),
    /// A string whose escapes are invalid: the parser reports `0`.
    BadStr(&'static str),
}

/// What the framer hands on: the tokens of one complete value, or an error text (the
/// `desc` of QEMU's reply).
#[derive(Debug, PartialEq)]
pub enum Framed {
    Value(Vec<Token>),
    Error(String),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum State {
    Between,
    /// In a string opened by this quote; `escape` after a backslash.
    Str {
        quote: u8,
        escape: bool,
    },
    Num,
    Word,
}

/// The streaming lexer and framer.
pub struct Framer {
    state: State,
    /// The token being read (raw bytes).
    current: Vec<u8>,
    tokens: Vec<Token>,
    bytes: usize,
    depth: isize,
    /// A limit was exceeded: the rest of this value is read but not stored.
    skipping: bool,
}

impl Default for Framer {
    fn default() -> Self {
        Framer::new()
    }
}

impl Framer {
    pub fn new() -> Self {
        Framer {
            state: State::Between,
            current: Vec::new(),
            tokens: Vec::new(),
            bytes: 0,
            depth: 0,
            skipping: false,
        }
    }

    /// Bytes held for the value in progress.
    pub fn held(&self) -> usize {
        self.bytes + self.current.len()
    }

    /// Takes input; returns the values (and errors) it completed, in order.
    pub fn feed(&mut self, input: &[u8]) -> Vec<Framed> {
        let mut out = Vec::new();
        let mut i = 0;
        while i < input.len() {
            let b = input[i];
            match self.state {
                State::Str { quote, escape } => {
                    i += 1;
                    let done = !escape && b == quote;
                    self.state = State::Str {
                        quote,
                        escape: !escape && b == b'\\',
                    };
                    if !self.skipping {
                        self.current.push(b);
                        if self.held() > MAX_BYTES {
                            self.limit(&mut out, "JSON token size limit exceeded");
                        }
                    }
                    if done {
                        self.state = State::Between;
                        let raw = std::mem::take(&mut self.current);
                        if !self.skipping {
                            self.push(string_token(&raw), &mut out);
                        } else if self.depth <= 0 {
                            self.skipping = false;
                        }
                    }
                }
                State::Num | State::Word => {
                    let num = self.state == State::Num;
                    let continues = if num {
                        b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'+' | b'-')
                    } else {
                        b.is_ascii_alphabetic()
                    };
                    if continues {
                        i += 1;
                        if !self.skipping {
                            self.current.push(b);
                            if self.held() > MAX_BYTES {
                                self.limit(&mut out, "JSON token size limit exceeded");
                            }
                        }
                        continue;
                    }
                    self.end_scalar(num, &mut out);
                }
                State::Between => {
                    i += 1;
                    self.between(b, &mut out);
                }
            }
        }
        out
    }

    /// A number or word ended (the byte after it is read next).
    fn end_scalar(&mut self, num: bool, out: &mut Vec<Framed>) {
        self.state = State::Between;
        let raw = String::from_utf8_lossy(&std::mem::take(&mut self.current)).into_owned();
        if self.skipping {
            if self.depth <= 0 {
                self.skipping = false;
            }
            return;
        }
        self.push(if num { Token::Num(raw) } else { Token::Word(raw) }, out);
    }

    fn between(&mut self, b: u8, out: &mut Vec<Framed>) {
        let token = match b {
            b' ' | b'\t' | b'\r' | b'\n' => return,
            b'{' => Token::LCurly,
            b'}' => Token::RCurly,
            b'[' => Token::LSquare,
            b']' => Token::RSquare,
            b':' => Token::Colon,
            b',' => Token::Comma,
            b'"' | b'\'' => {
                self.state = State::Str { quote: b, escape: false };
                self.current.push(b);
                return;
            }
            b'-' | b'0'..=b'9' => {
                self.state = State::Num;
                self.current.push(b);
                return;
            }
            b'a'..=b'z' | b'A'..=b'Z' => {
                self.state = State::Word;
                self.current.push(b);
                return;
            }
            _ => {
                if self.skipping {
                    return;
                }
                self.reset();
                out.push(Framed::Error(format!("JSON parse error, stray '{}'", stray(b))));
                return;
            }
        };
        if self.skipping {
            self.track_depth(&token);
            if self.depth <= 0 {
                self.skipping = false;
                self.depth = 0;
            }
            return;
        }
        self.push(token, out);
    }

    fn track_depth(&mut self, t: &Token) {
        match t {
            Token::LCurly | Token::LSquare => self.depth += 1,
            Token::RCurly | Token::RSquare => self.depth -= 1,
            _ => {}
        }
    }

    /// Adds a token; emits the value when its brackets balance.
    fn push(&mut self, t: Token, out: &mut Vec<Framed>) {
        self.track_depth(&t);
        self.bytes += token_size(&t);
        self.tokens.push(t);
        if self.depth > MAX_DEPTH as isize {
            return self.limit(out, "JSON nesting depth limit exceeded");
        }
        if self.tokens.len() > MAX_TOKENS {
            return self.limit(out, "JSON token count limit exceeded");
        }
        if self.bytes > MAX_BYTES {
            return self.limit(out, "JSON token size limit exceeded");
        }
        if self.depth <= 0 {
            // Balanced, or a stray closing bracket (which the parser refuses).
            let tokens = std::mem::take(&mut self.tokens);
            self.reset();
            out.push(Framed::Value(tokens));
        }
    }

    /// Refuses the value in progress; the rest of it is skipped.
    fn limit(&mut self, out: &mut Vec<Framed>, why: &str) {
        let depth = self.depth;
        self.reset();
        self.depth = depth;
        self.skipping = true;
        if matches!(self.state, State::Between) && depth <= 0 {
            self.skipping = false;
            self.depth = 0;
        }
        out.push(Framed::Error(why.to_string()));
    }

    fn reset(&mut self) {
        self.tokens = Vec::new();
        self.current = Vec::new();
        self.bytes = 0;
        self.depth = 0;
        self.skipping = false;
    }
}

/// How a stray byte is shown: printable ASCII as itself, the rest as `\uXXXX` (QEMU puts
/// the raw byte in the message, which its JSON output then escapes).
fn stray(b: u8) -> String {
    if b.is_ascii_graphic() {
        (b as char).to_string()
    } else {
        format!("\\u{b:04x}")
    }
}

fn token_size(t: &Token) -> usize {
    match t {
        Token::Str(s) | Token::Num(s) | Token::Word(s) => s.len() + 2,
        _ => 1,
    }
}

/// Unescapes a quoted string (quotes included in `raw`).
fn string_token(raw: &[u8]) -> Token {
    let body = &raw[1..raw.len() - 1];
    let mut out: Vec<u8> = Vec::with_capacity(body.len());
    let mut i = 0;
    while i < body.len() {
        let b = body[i];
        i += 1;
        if b != b'\\' {
            out.push(b);
            continue;
        }
        let Some(&e) = body.get(i) else {
            return Token::BadStr("invalid escape sequence in string");
        };
        i += 1;
        let c = match e {
            b'"' => '"',
            b'\'' => '\'',
            b'\\' => '\\',
            b'/' => '/',
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'u' => match unicode_escape(body, &mut i) {
                Some(c) => c,
                None => return Token::BadStr("invalid hex escape sequence in string"),
            },
            _ => return Token::BadStr("invalid escape sequence in string"),
        };
        let mut buf = [0u8; 4];
        out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
    }
    match String::from_utf8(out) {
        Ok(s) => Token::Str(s),
        Err(_) => Token::BadStr("invalid UTF-8 sequence in string"),
    }
}

fn hex4(body: &[u8], i: &mut usize) -> Option<u32> {
    let digits = body.get(*i..*i + 4)?;
    let text = std::str::from_utf8(digits).ok()?;
    let v = u32::from_str_radix(text, 16).ok()?;
    *i += 4;
    Some(v)
}

/// `\uXXXX`, with a surrogate pair read as one character.
fn unicode_escape(body: &[u8], i: &mut usize) -> Option<char> {
    let first = hex4(body, i)?;
    if (0xd800..0xdc00).contains(&first) && body.get(*i..*i + 2) == Some(b"\\u") {
        let mut j = *i + 2;
        let second = hex4(body, &mut j)?;
        if (0xdc00..0xe000).contains(&second) {
            *i = j;
            return char::from_u32(0x10000 + ((first - 0xd800) << 10) + (second - 0xdc00));
        }
    }
    char::from_u32(first)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(input: &[u8]) -> Vec<Framed> {
        Framer::new().feed(input)
    }

    #[test]
    fn values_end_when_brackets_balance() {
        let mut f = Framer::new();
        assert!(f.feed(b"{\"execute\": \"stop\"").is_empty());
        let got = f.feed(b"}{'a':[1,2]}");
        assert_eq!(got.len(), 2);
        match &got[1] {
            Framed::Value(t) => assert_eq!(t[1], Token::Str("a".into())),
            other => panic!("{other:?}"),
        }
        // A scalar ends with the byte after it.
        assert!(f.feed(b"12").is_empty());
        assert_eq!(f.feed(b"\n"), vec![Framed::Value(vec![Token::Num("12".into())])]);
    }

    #[test]
    fn stray_bytes_are_reported_and_reset() {
        let got = values(b"{\"a\": \x01 {}");
        assert_eq!(got[0], Framed::Error("JSON parse error, stray '\\u0001'".into()));
        assert_eq!(got[1], Framed::Value(vec![Token::LCurly, Token::RCurly]));
    }

    #[test]
    fn escapes() {
        let got = values(br#"["a\"b\u00e9\ud83d\ude00\n", 'it\'s', "\q"]"#);
        let Framed::Value(t) = &got[0] else { panic!() };
        assert_eq!(t[1], Token::Str("a\"b\u{e9}\u{1f600}\n".into()));
        assert_eq!(t[3], Token::Str("it's".into()));
        assert_eq!(t[5], Token::BadStr("invalid escape sequence in string"));
    }

    #[test]
    fn nesting_limit_skips_the_rest_of_the_value() {
        let mut input = Vec::new();
        input.extend(std::iter::repeat_n(b'[', MAX_DEPTH + 5));
        input.extend(std::iter::repeat_n(b']', MAX_DEPTH + 5));
        input.extend_from_slice(b"{}");
        let got = values(&input);
        assert_eq!(got.len(), 2, "{got:?}");
        assert_eq!(got[0], Framed::Error("JSON nesting depth limit exceeded".into()));
        assert_eq!(got[1], Framed::Value(vec![Token::LCurly, Token::RCurly]));
        // At the limit itself, the value passes.
        let mut ok = Vec::new();
        ok.extend(std::iter::repeat_n(b'[', MAX_DEPTH));
        ok.extend(std::iter::repeat_n(b']', MAX_DEPTH));
        assert!(matches!(&values(&ok)[..], [Framed::Value(_)]));
    }

    #[test]
    fn a_huge_string_is_refused_without_being_kept() {
        let mut f = Framer::new();
        let mut got = f.feed(b"{\"id\": \"");
        let chunk = vec![b'a'; 64 << 10];
        for _ in 0..64 {
            got.extend(f.feed(&chunk));
            assert!(f.held() <= MAX_BYTES + chunk.len());
        }
        got.extend(f.feed(b"\"} {}"));
        assert_eq!(got[0], Framed::Error("JSON token size limit exceeded".into()));
        assert_eq!(got[1..], [Framed::Value(vec![Token::LCurly, Token::RCurly])]);
    }

    #[test]
    fn token_count_limit() {
        let mut input = b"[".to_vec();
        for _ in 0..MAX_TOKENS {
            input.extend_from_slice(b"1,");
        }
        input.extend_from_slice(b"1] {}");
        let got = values(&input);
        assert_eq!(got[0], Framed::Error("JSON token count limit exceeded".into()));
        assert_eq!(got[1..], [Framed::Value(vec![Token::LCurly, Token::RCurly])]);
    }
}
