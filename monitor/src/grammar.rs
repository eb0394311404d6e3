//! The HMP argument grammar: turns the text after a command name into typed
//! values according to the command's [`ArgSpec`]s, reproducing QEMU 7.2's
//! behaviour and error messages (see `monitor_parse_arguments` in QEMU).
//!
//! The value parsers (words, quoted strings, `on`/`off`, flags) are nom
//! parsers; the driver walks the specification in order with a cursor, as
//! QEMU does, because flag handling needs to look ahead in the specification
//! and back up in the input.

use nom::branch::alt;
use nom::bytes::complete::take_while1;
use nom::character::complete::{anychar, char, none_of};
use nom::combinator::{map, map_opt, opt, peek};
use nom::multi::fold_many0;
use nom::sequence::{delimited, preceded};
use nom::{IResult, Parser};
use thiserror::Error;

use crate::argtype::{ArgSpec, ArgType, StringKind};
use crate::expr::{self, ExprError, is_space};
use crate::size::{SizeUnit, parse_size_prefix};

/// A parsed argument value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Str(String),
    Bool(bool),
    Int(i64),
    Size(u64),
    Float(f64),
}

/// The values of one command line, by key. Absent optional arguments and
/// flags that were not given are simply missing.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Args {
    items: Vec<(&'static str, Value)>,
}

impl Args {
    fn get(&self, key: &str) -> Option<&Value> {
        self.items.iter().find(|(k, _)| *k == key).map(|(_, v)| v)
    }

    /// True if flag `key` was given (or boolean `key` is `on`).
    pub fn flag(&self, key: &str) -> bool {
        matches!(self.get(key), Some(Value::Bool(true)))
    }

    /// The string argument `key`, if present.
    pub fn opt_string(&self, key: &str) -> Option<String> {
        match self.get(key) {
            Some(Value::Str(s)) => Some(s.clone()),
            _ => None,
        }
    }

    /// The string argument `key`; empty if absent (the grammar guarantees
    /// that mandatory strings are present).
    pub fn string(&self, key: &str) -> String {
        self.opt_string(key).unwrap_or_default()
    }

    /// The integer argument `key`, if present.
    pub fn int(&self, key: &str) -> Option<i64> {
        match self.get(key) {
            Some(Value::Int(v)) => Some(*v),
            _ => None,
        }
    }

    /// The size argument `key`, if present.
    pub fn size(&self, key: &str) -> Option<u64> {
        match self.get(key) {
            Some(Value::Size(v)) => Some(*v),
            _ => None,
        }
    }

    /// The floating-point argument `key`, if present.
    pub fn float(&self, key: &str) -> Option<f64> {
        match self.get(key) {
            Some(Value::Float(v)) => Some(*v),
            _ => None,
        }
    }
}

/// Why a quoted string was rejected. QEMU prints these on its own stdout,
/// not on the monitor; the monitor only shows "string expected".
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum QuoteError {
    #[error("unterminated string")]
    Unterminated,
    #[error("unsupported escape code: '\\{0}'")]
    BadEscape(char),
}

/// An argument error. `Display` gives the exact line QEMU prints (without
/// the newline); the caller adds the `Try "help ..."` hint.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum ArgError {
    #[error("{command}: string expected")]
    StringExpected { command: String, detail: Option<QuoteError> },
    #[error("{command}: filename expected")]
    FilenameExpected { command: String, detail: Option<QuoteError> },
    #[error("{command}: block device name expected")]
    BlockDeviceExpected { command: String, detail: Option<QuoteError> },
    #[error("{command}: extraneous characters at the end of line")]
    Extraneous { command: String },
    /// `option` is `None` for a lone `-` at the end of the line.
    #[error("{command}: unsupported option -{}", option.map(String::from).unwrap_or_default())]
    UnsupportedOption { command: String, option: Option<char> },
    #[error("Expected 'on' or 'off'")]
    ExpectedOnOff,
    #[error("invalid size")]
    InvalidSize,
    #[error("Number expected")]
    NumberExpected,
    #[error("Bad number")]
    BadNumber,
    #[error("Unknown unit suffix")]
    UnknownUnitSuffix,
    #[error(transparent)]
    Expr(#[from] ExprError),
    #[error("'{command}' has failed: integer is for 32-bit values")]
    IntegerTooWide { command: String },
}

impl ArgError {
    /// QEMU formats a lone trailing `-` with `%c` of a NUL byte, which cuts
    /// its message short *including the newline*; the hint then follows on
    /// the same line. We reproduce that.
    pub fn ends_line(&self) -> bool {
        !matches!(self, ArgError::UnsupportedOption { option: None, .. })
    }
}

fn skip_space(p: &str) -> &str {
    p.trim_start_matches(|c: char| c.is_ascii() && is_space(c as u8))
}

fn is_space_char(c: char) -> bool {
    c.is_ascii() && is_space(c as u8)
}

/// A word: everything up to the next whitespace.
fn bare_word(input: &str) -> IResult<&str, String> {
    map(take_while1(|c| !is_space_char(c)), String::from).parse(input)
}

/// One escape after a backslash inside quotes: `\n`, `\r`, `\\`, `\'`, `\"`.
fn escape(input: &str) -> IResult<&str, char> {
    map_opt(anychar, |c| match c {
        'n' => Some('\n'),
        'r' => Some('\r'),
        '\\' | '\'' | '"' => Some(c),
        _ => None,
    })
    .parse(input)
}

/// A double-quoted string with backslash escapes.
fn quoted(input: &str) -> IResult<&str, String> {
    delimited(
        char('"'),
        fold_many0(alt((none_of("\"\\"), preceded(char('\\'), escape))), String::new, |mut s, c| {
            s.push(c);
            s
        }),
        char('"'),
    )
    .parse(input)
}

/// QEMU's `get_str`: skip whitespace, then a quoted string or a bare word.
/// Returns the rest of the input and the string.
pub fn get_str(input: &str) -> Result<(&str, String), Option<QuoteError>> {
    let p = skip_space(input);
    if p.is_empty() {
        return Err(None);
    }
    if p.starts_with('"') {
        return quoted(p).map_err(|_| Some(quote_failure(p)));
    }
    bare_word(p).map_err(|_| None)
}

/// Works out why `quoted` failed on `p` (which starts with a quote).
fn quote_failure(p: &str) -> QuoteError {
    let mut chars = p.chars().skip(1);
    while let Some(c) = chars.next() {
        match c {
            '"' => break,
            '\\' => match chars.next() {
                Some('n' | 'r' | '\\' | '\'' | '"') => {}
                Some(other) => return QuoteError::BadEscape(other),
                None => return QuoteError::BadEscape('\0'),
            },
            _ => {}
        }
    }
    QuoteError::Unterminated
}

/// Splits a line into words the way `help` does (QEMU's `parse_cmdline`):
/// at most 16 words; `None` if a quoted word is malformed or there are more.
pub fn split_words(line: &str) -> Option<Vec<String>> {
    const MAX_ARGS: usize = 16;
    let mut words = Vec::new();
    let mut p = skip_space(line);
    while !p.is_empty() {
        if words.len() >= MAX_ARGS {
            return None;
        }
        let (rest, word) = get_str(p).ok()?;
        words.push(word);
        p = skip_space(rest);
    }
    Some(words)
}

/// A flag such as `-d`: returns the character after the dash, or `None`
/// when the dash ends the line.
fn dash_option(input: &str) -> IResult<&str, Option<char>> {
    preceded(char('-'), peek(opt(anychar))).parse(input)
}

/// `on` or `off`, delimited by the first non-graphic character.
fn on_off(input: &str) -> Result<(&str, bool), ArgError> {
    let end = input.find(|c: char| !c.is_ascii_graphic()).unwrap_or(input.len());
    match &input[..end] {
        "on" => Ok((&input[end..], true)),
        "off" => Ok((&input[end..], false)),
        _ => Err(ArgError::ExpectedOnOff),
    }
}

/// Parses the arguments in `input` for the command called `command` (its
/// table name, aliases included, as QEMU names it in errors).
pub fn parse_args(command: &str, specs: &[ArgSpec], input: &str) -> Result<Args, ArgError> {
    let mut args = Args::default();
    let mut p = input;
    for index in 0..specs.len() {
        p = parse_one(command, specs, index, p, &mut args)?;
    }
    if !skip_space(p).is_empty() {
        return Err(ArgError::Extraneous {
            command: command.to_string(),
        });
    }
    Ok(args)
}

/// Parses argument `index` of `specs` from `p` into `args`; returns what is left. An
/// optional argument that is absent leaves `p` as it was (flags) or past the spaces.
fn parse_one<'a>(command: &str, specs: &[ArgSpec], index: usize, p: &'a str, args: &mut Args) -> Result<&'a str, ArgError> {
    let spec = &specs[index];
    let p_trimmed = skip_space(p);
    let absent = p_trimmed.is_empty();
    match spec.ty {
        ArgType::String { optional, kind } => {
            if optional && absent {
                return Ok(p_trimmed);
            }
            let (rest, s) = get_str(p_trimmed).map_err(|detail| {
                let command = command.to_string();
                match kind {
                    StringKind::Plain => ArgError::StringExpected { command, detail },
                    StringKind::Filename => ArgError::FilenameExpected { command, detail },
                    StringKind::BlockDevice => ArgError::BlockDeviceExpected { command, detail },
                }
            })?;
            args.items.push((spec.key, Value::Str(s)));
            Ok(rest)
        }
        ArgType::Rest { optional } => {
            if absent {
                if optional {
                    return Ok(p_trimmed);
                }
                return Err(ArgError::StringExpected {
                    command: command.to_string(),
                    detail: None,
                });
            }
            args.items.push((spec.key, Value::Str(p_trimmed.to_string())));
            Ok("")
        }
        ArgType::OnOff => {
            let (rest, value) = on_off(p_trimmed)?;
            args.items.push((spec.key, Value::Bool(value)));
            Ok(rest)
        }
        ArgType::Size { optional } => {
            if optional && absent {
                return Ok(p_trimmed);
            }
            let (value, used) = parse_size_prefix(p_trimmed, SizeUnit::MiB).map_err(|_| ArgError::InvalidSize)?;
            if value > i64::MAX as u64 {
                return Err(ArgError::InvalidSize);
            }
            args.items.push((spec.key, Value::Size(value)));
            Ok(&p_trimmed[used..])
        }
        ArgType::Seconds { optional } => {
            if optional && absent {
                return Ok(p_trimmed);
            }
            let (rest, value) = seconds(p_trimmed)?;
            args.items.push((spec.key, Value::Float(value)));
            Ok(rest)
        }
        ArgType::Int { optional, wide } => {
            if optional && absent {
                return Ok(p_trimmed);
            }
            let (value, used) = expr::eval_prefix(p_trimmed)?;
            if !wide && (value >> 32) != 0 {
                return Err(ArgError::IntegerTooWide {
                    command: command.to_string(),
                });
            }
            args.items.push((spec.key, Value::Int(value)));
            Ok(&p_trimmed[used..])
        }
        ArgType::Flag(letter) => flag(command, specs, index, letter, p, args),
    }
}

/// A `-x` flag argument: present, or absent when the next word is a flag declared later
/// (flags must come in declaration order) or no flag at all.
fn flag<'a>(command: &str, specs: &[ArgSpec], index: usize, letter: char, p: &'a str, args: &mut Args) -> Result<&'a str, ArgError> {
    let trimmed = skip_space(p);
    let Ok((rest, option)) = dash_option(trimmed) else {
        return Ok(trimmed);
    };
    if option == Some(letter) {
        args.items.push((specs[index].key, Value::Bool(true)));
        return Ok(&rest[letter.len_utf8()..]);
    }
    let declared_later = specs[index + 1..].iter().any(|s| match (s.ty, option) {
        (ArgType::Flag(l), Some(o)) => l == o,
        // A lone "-" matches any later flag, as QEMU's strstr does.
        (ArgType::Flag(_), None) => true,
        _ => false,
    });
    if !declared_later {
        return Err(ArgError::UnsupportedOption {
            command: command.to_string(),
            option,
        });
    }
    Ok(p)
}

/// A `T` argument: a C floating-point number of seconds, optionally
/// followed by `ms`, `us` or `ns`.
fn seconds(p: &str) -> Result<(&str, f64), ArgError> {
    let (mut value, used) = c_strtod(p).ok_or(ArgError::NumberExpected)?;
    if !value.is_finite() {
        return Err(ArgError::BadNumber);
    }
    let mut rest = &p[used..];
    let b = rest.as_bytes();
    if b.len() >= 2 && b[1] == b's' {
        let divisor = match b[0] {
            b'm' => Some(1e3),
            b'u' => Some(1e6),
            b'n' => Some(1e9),
            _ => None,
        };
        if let Some(d) = divisor {
            value /= d;
            rest = &rest[2..];
        }
    }
    if rest.chars().next().is_some_and(|c| !is_space_char(c)) {
        return Err(ArgError::UnknownUnitSuffix);
    }
    Ok((rest, value))
}

/// C `strtod` on the start of `s` (no leading whitespace): decimal or
/// hexadecimal floating point, `inf`, `infinity` and `nan`. Returns the value
/// and the bytes used, or `None` if no number starts here.
pub(crate) fn c_strtod(s: &str) -> Option<(f64, usize)> {
    let b = s.as_bytes();
    let mut pos = 0;
    let negative = match b.first() {
        Some(b'-') => {
            pos = 1;
            true
        }
        Some(b'+') => {
            pos = 1;
            false
        }
        _ => false,
    };
    let sign = if negative { -1.0 } else { 1.0 };
    let lower: String = s[pos..].chars().take(8).collect::<String>().to_ascii_lowercase();
    if lower.starts_with("infinity") {
        return Some((sign * f64::INFINITY, pos + 8));
    }
    if lower.starts_with("inf") {
        return Some((sign * f64::INFINITY, pos + 3));
    }
    if lower.starts_with("nan") {
        return Some((f64::NAN, pos + 3));
    }
    if let Some((v, used)) = lower.starts_with("0x").then(|| hex_float(&b[pos + 2..])).flatten() {
        return Some((sign * v, pos + 2 + used));
    }
    let digits = |from: usize| b[from..].iter().take_while(|c| c.is_ascii_digit()).count();
    let int_len = digits(pos);
    let mut end = pos + int_len;
    let mut frac_len = 0;
    if b.get(end) == Some(&b'.') {
        frac_len = digits(end + 1);
        if int_len + frac_len > 0 {
            end += 1 + frac_len;
        }
    }
    if int_len + frac_len == 0 {
        return None;
    }
    if matches!(b.get(end), Some(b'e' | b'E')) {
        let mut e = end + 1;
        if matches!(b.get(e), Some(b'+' | b'-')) {
            e += 1;
        }
        let exp_len = digits(e);
        if exp_len > 0 {
            end = e + exp_len;
        }
    }
    let value: f64 = s[pos..end].parse().ok()?;
    Some((sign * value, end))
}

/// The part of a hexadecimal float after `0x`: digits, optional fraction,
/// optional binary exponent `p[+-]N`.
fn hex_float(b: &[u8]) -> Option<(f64, usize)> {
    let mut value = 0.0f64;
    let mut pos = 0;
    let mut any = false;
    while let Some(d) = b.get(pos).and_then(|c| char::from(*c).to_digit(16)) {
        value = value * 16.0 + f64::from(d);
        pos += 1;
        any = true;
    }
    if b.get(pos) == Some(&b'.') {
        let mut scale = 1.0 / 16.0;
        let mut p = pos + 1;
        while let Some(d) = b.get(p).and_then(|c| char::from(*c).to_digit(16)) {
            value += f64::from(d) * scale;
            scale /= 16.0;
            p += 1;
            any = true;
        }
        if any {
            pos = p;
        }
    }
    if !any {
        return None;
    }
    if matches!(b.get(pos), Some(b'p' | b'P')) {
        let mut e = pos + 1;
        let negative = match b.get(e) {
            Some(b'-') => {
                e += 1;
                true
            }
            Some(b'+') => {
                e += 1;
                false
            }
            _ => false,
        };
        let len = b[e..].iter().take_while(|c| c.is_ascii_digit()).count();
        if len > 0 {
            let text = std::str::from_utf8(&b[e..e + len]).ok()?;
            let exp: i32 = text.parse().unwrap_or(i32::MAX);
            value *= 2f64.powi(if negative { -exp } else { exp });
            pos = e + len;
        }
    }
    Some((value, pos))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::argtype::parse_arg_types;

    fn parse(spec: &'static str, input: &str) -> Result<Args, ArgError> {
        parse_args("migrate", &parse_arg_types(spec).unwrap(), input)
    }

    const MIGRATE: &str = "detach:-d,blk:-b,inc:-i,resume:-r,uri:s";

    #[test]
    fn flags_in_order() {
        let a = parse(MIGRATE, " -d -b tcp:1").unwrap();
        assert!(a.flag("detach") && a.flag("blk") && !a.flag("inc") && !a.flag("resume"));
        assert_eq!(a.string("uri"), "tcp:1");
        let a = parse(MIGRATE, "-i tcp:1").unwrap();
        assert!(a.flag("inc") && !a.flag("detach"));
    }

    #[test]
    fn flag_order_errors() {
        let unsupported = |input, c| {
            assert_eq!(
                parse(MIGRATE, input),
                Err(ArgError::UnsupportedOption {
                    command: "migrate".into(),
                    option: c
                }),
                "{input}"
            )
        };
        unsupported("-b -d tcp:1", Some('d'));
        unsupported("-i -b tcp:1", Some('b'));
        unsupported("-d -d tcp:1", Some('d'));
        unsupported("-z tcp:1", Some('z'));
        unsupported("- tcp:1", Some(' '));
        unsupported("-", None);
        let extraneous = Err(ArgError::Extraneous { command: "migrate".into() });
        assert_eq!(parse(MIGRATE, "-db tcp:1"), extraneous);
        assert_eq!(parse(MIGRATE, "tcp:1 -d"), extraneous);
        // -r is declared after -d, so "-d" becomes the URI here.
        assert_eq!(parse(MIGRATE, "-r -d x"), extraneous);
        assert_eq!(
            parse(MIGRATE, "-d"),
            Err(ArgError::StringExpected {
                command: "migrate".into(),
                detail: None
            })
        );
    }

    #[test]
    fn error_texts() {
        assert_eq!(
            ArgError::UnsupportedOption {
                command: "migrate".into(),
                option: Some('z')
            }
            .to_string(),
            "migrate: unsupported option -z"
        );
        assert_eq!(
            ArgError::UnsupportedOption {
                command: "migrate".into(),
                option: None
            }
            .to_string(),
            "migrate: unsupported option -"
        );
        assert_eq!(ArgError::ExpectedOnOff.to_string(), "Expected 'on' or 'off'");
        assert_eq!(
            ArgError::Extraneous { command: "stop|s".into() }.to_string(),
            "stop|s: extraneous characters at the end of line"
        );
    }

    #[test]
    fn quoting() {
        assert_eq!(get_str("  \"a b\" c"), Ok((" c", "a b".to_string())));
        assert_eq!(get_str(r#""a\"b\\c\n\r\'""#), Ok(("", "a\"b\\c\n\r'".to_string())));
        assert_eq!(get_str("abc\"def x"), Ok((" x", "abc\"def".to_string())));
        assert_eq!(get_str("\"abc"), Err(Some(QuoteError::Unterminated)));
        assert_eq!(get_str(r#""a\qb""#), Err(Some(QuoteError::BadEscape('q'))));
        assert_eq!(get_str("   "), Err(None));
        assert_eq!(
            parse("name:s?", "\"a b\"c"),
            Err(ArgError::Extraneous { command: "migrate".into() })
        );
        assert_eq!(parse("name:s?", "").unwrap().opt_string("name"), None);
        assert_eq!(parse("name:s?", "\"\"").unwrap().opt_string("name"), Some(String::new()));
    }

    #[test]
    fn split_words_like_help() {
        assert_eq!(
            split_words("  info  \"status\" x"),
            Some(vec!["info".into(), "status".into(), "x".into()])
        );
        assert_eq!(split_words("\"unterminated"), None);
        assert_eq!(split_words(&"a ".repeat(17)), None);
        assert_eq!(split_words(""), Some(vec![]));
    }

    #[test]
    fn on_off_values() {
        let spec = "capability:s,state:b";
        assert!(parse(spec, "xbzrle on").unwrap().flag("state"));
        assert!(!parse(spec, "xbzrle  off ").unwrap().flag("state"));
        assert_eq!(parse(spec, "xbzrle"), Err(ArgError::ExpectedOnOff));
        assert_eq!(parse(spec, "xbzrle maybe"), Err(ArgError::ExpectedOnOff));
        assert_eq!(parse(spec, "xbzrle \"on\""), Err(ArgError::ExpectedOnOff));
        assert_eq!(parse(spec, "xbzrle onx"), Err(ArgError::ExpectedOnOff));
    }

    #[test]
    fn sizes() {
        let size = |input| parse("value:o", input).map(|a| a.size("value"));
        assert_eq!(size("100"), Ok(Some(100 << 20)));
        assert_eq!(size("1.5m"), Ok(Some(1_572_864)));
        assert_eq!(size("512k"), Ok(Some(524_288)));
        assert_eq!(size("1000b"), Ok(Some(1000)));
        assert_eq!(size("2G"), Ok(Some(2 << 30)));
        assert_eq!(size("1T"), Ok(Some(1 << 40)));
        assert_eq!(size("-1"), Err(ArgError::InvalidSize));
        assert_eq!(size("abc"), Err(ArgError::InvalidSize));
        assert_eq!(size("8E"), Err(ArgError::InvalidSize));
        assert_eq!(size("10mb"), Err(ArgError::Extraneous { command: "migrate".into() }));
        assert_eq!(size(""), Err(ArgError::InvalidSize));
    }

    #[test]
    fn seconds_values() {
        let secs = |input| parse("value:T", input).map(|a| a.float("value"));
        assert_eq!(secs("0.5"), Ok(Some(0.5)));
        assert_eq!(secs("500ms"), Ok(Some(0.5)));
        assert_eq!(secs("2"), Ok(Some(2.0)));
        assert_eq!(secs("1e3us"), Ok(Some(0.001)));
        assert_eq!(secs("5ns"), Ok(Some(5e-9)));
        assert_eq!(secs("0x10"), Ok(Some(16.0)));
        assert_eq!(secs("abc"), Err(ArgError::NumberExpected));
        assert_eq!(secs(""), Err(ArgError::NumberExpected));
        assert_eq!(secs("inf"), Err(ArgError::BadNumber));
        assert_eq!(secs("nan"), Err(ArgError::BadNumber));
        assert_eq!(secs("5x"), Err(ArgError::UnknownUnitSuffix));
        assert_eq!(secs("5s"), Err(ArgError::UnknownUnitSuffix));
        assert_eq!(secs("5 x"), Err(ArgError::Extraneous { command: "migrate".into() }));
    }

    #[test]
    fn integers() {
        let spec = "cpustate_all:-a,vcpu:i?";
        let a = parse(spec, "-a").unwrap();
        assert!(a.flag("cpustate_all") && a.int("vcpu").is_none());
        assert_eq!(parse(spec, "1 + 1").unwrap().int("vcpu"), Some(2));
        assert_eq!(parse(spec, "'a'").unwrap().int("vcpu"), Some(97));
        assert_eq!(parse(spec, "x"), Err(ArgError::Expr(ExprError::InvalidChar('x'))));
        assert_eq!(
            parse(spec, "0x100000000"),
            Err(ArgError::IntegerTooWide { command: "migrate".into() })
        );
        assert_eq!(
            parse(spec, "-1"),
            Err(ArgError::UnsupportedOption {
                command: "migrate".into(),
                option: Some('1')
            })
        );
        assert_eq!(parse("v:l", "0x100000000").unwrap().int("v"), Some(1 << 32));
    }

    #[test]
    fn rest_of_line() {
        assert_eq!(parse("name:S?", "  info   status ").unwrap().string("name"), "info   status ");
        assert_eq!(parse("name:S?", "  ").unwrap().opt_string("name"), None);
    }
}
