//! QEMU-style argument specifications (`args_type`), such as
//! `detach:-d,blk:-b,inc:-i,resume:-r,uri:s`, parsed with nom.
//!
//! Each comma-separated item is `key:type`. The types used by godwit:
//!
//! | type | meaning |
//! |---|---|
//! | `s` / `s?` | a word or a double-quoted string (optional with `?`) |
//! | `F`, `B` / `B?` | the same, named "filename" / "block device name" in errors |
//! | `S` / `S?` | the rest of the line |
//! | `b` | `on` or `off` |
//! | `o` / `o?` | a size, default unit MiB |
//! | `T` / `T?` | a number of seconds, optionally suffixed `ms`, `us` or `ns` |
//! | `i` / `i?`, `l` / `l?` | an integer expression (32-bit or 64-bit) |
//! | `-x` | a flag `-x`; flags must be given in declaration order |

use nom::branch::alt;
use nom::bytes::complete::take_while1;
use nom::character::complete::{anychar, char, one_of};
use nom::combinator::{all_consuming, map, opt};
use nom::multi::separated_list0;
use nom::sequence::{preceded, separated_pair};
use nom::{IResult, Parser};
use thiserror::Error;

/// Which noun a string argument's "expected" error uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StringKind {
    Plain,
    Filename,
    BlockDevice,
}

/// The type of one argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArgType {
    String { optional: bool, kind: StringKind },
    Rest { optional: bool },
    OnOff,
    Size { optional: bool },
    Seconds { optional: bool },
    Int { optional: bool, wide: bool },
    Flag(char),
}

/// One `key:type` item of an argument specification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArgSpec {
    pub key: &'static str,
    pub ty: ArgType,
}

/// A malformed specification (a bug in a command table).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("malformed argument specification {0:?}")]
pub struct ArgTypeError(pub &'static str);

/// Parses a whole specification; the empty string means "no arguments".
pub fn parse_arg_types(spec: &'static str) -> Result<Vec<ArgSpec>, ArgTypeError> {
    all_consuming(separated_list0(char(','), item))
        .parse(spec)
        .map(|(_, items)| items)
        .map_err(|_| ArgTypeError(spec))
}

fn item(input: &'static str) -> IResult<&'static str, ArgSpec> {
    map(
        separated_pair(take_while1(|c: char| c != ':' && c != ','), char(':'), arg_type),
        |(key, ty)| ArgSpec { key, ty },
    )
    .parse(input)
}

fn arg_type(input: &'static str) -> IResult<&'static str, ArgType> {
    alt((
        map(preceded(char('-'), anychar), ArgType::Flag),
        map(char('b'), |_| ArgType::OnOff),
        map((one_of("sFBSoTil"), opt(char('?'))), |(c, q)| {
            let optional = q.is_some();
            match c {
                's' => ArgType::String {
                    optional,
                    kind: StringKind::Plain,
                },
                'F' => ArgType::String {
                    optional,
                    kind: StringKind::Filename,
                },
                'B' => ArgType::String {
                    optional,
                    kind: StringKind::BlockDevice,
                },
                'S' => ArgType::Rest { optional },
                'o' => ArgType::Size { optional },
                'T' => ArgType::Seconds { optional },
                'i' => ArgType::Int { optional, wide: false },
                _ => ArgType::Int { optional, wide: true },
            }
        }),
    ))
    .parse(input)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_migrate_spec() {
        let spec = parse_arg_types("detach:-d,blk:-b,inc:-i,resume:-r,uri:s").unwrap();
        assert_eq!(spec.len(), 5);
        assert_eq!(
            spec[0],
            ArgSpec {
                key: "detach",
                ty: ArgType::Flag('d')
            }
        );
        assert_eq!(
            spec[4],
            ArgSpec {
                key: "uri",
                ty: ArgType::String {
                    optional: false,
                    kind: StringKind::Plain
                }
            }
        );
    }

    #[test]
    fn parses_optional_and_empty() {
        assert!(parse_arg_types("").unwrap().is_empty());
        let spec = parse_arg_types("cpustate_all:-a,vcpu:i?").unwrap();
        assert_eq!(
            spec[1].ty,
            ArgType::Int {
                optional: true,
                wide: false
            }
        );
        assert_eq!(parse_arg_types("value:T").unwrap()[0].ty, ArgType::Seconds { optional: false });
    }

    #[test]
    fn rejects_garbage() {
        assert!(parse_arg_types("uri").is_err());
        assert!(parse_arg_types("uri:z").is_err());
        assert!(parse_arg_types("uri:s,").is_err());
    }
}
