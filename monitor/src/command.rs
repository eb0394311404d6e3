//! The typed commands the VMM executes, and the parser that turns a command
//! line into one of them using the command tables.

use thiserror::Error;

use crate::argtype::parse_arg_types;
use crate::expr::is_space;
use crate::grammar::{ArgError, parse_args};
use crate::table::{Action, COMMANDS, CommandDef, find};

/// A parsed monitor command.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// `help [cmd]`, `? [cmd]`, and a bare `info` (topic `info`). The session
    /// answers it from the tables; the VMM never needs to.
    Help {
        topic: Option<String>,
    },
    Info(InfoCommand),
    Stop,
    Cont,
    Quit,
    SystemReset,
    SystemPowerdown,
    /// `savevm [tag]`; without a tag the VMM picks `vm-%Y%m%d%H%M%S`.
    SaveVm {
        tag: Option<String>,
    },
    LoadVm {
        tag: String,
    },
    DelVm {
        tag: String,
    },
    /// `migrate [-d] [-b] [-i] [-r] uri`.
    Migrate {
        detach: bool,
        blk: bool,
        inc: bool,
        resume: bool,
        uri: String,
    },
    MigrateCancel,
    MigrateIncoming {
        uri: String,
    },
    /// `migrate_recover uri`: a paused post-copy's destination listens for the source.
    MigrateRecover {
        uri: String,
    },
    /// `migrate_set_speed value` (QEMU <= 5.2): bytes per second, a plain
    /// number meaning MiB.
    MigrateSetSpeed {
        bytes_per_second: u64,
    },
    /// `migrate_set_downtime value` (QEMU <= 5.2): seconds (already scaled
    /// when the user wrote `ms`, `us` or `ns`).
    MigrateSetDowntime {
        seconds: f64,
    },
    /// `migrate_set_parameter name value`; the value is raw text because
    /// its syntax depends on the parameter (see [`crate::parse_size`]).
    MigrateSetParameter {
        parameter: String,
        value: String,
    },
    MigrateSetCapability {
        capability: String,
        state: bool,
    },
    MigrateStartPostcopy,
    /// `set_link NAME on|off`.
    SetLink {
        name: String,
        up: bool,
    },
    /// `announce_self [interfaces] [id]`: `interfaces` is a comma-separated list of NICs.
    AnnounceSelf {
        interfaces: Option<String>,
        id: Option<String>,
    },
}

/// An `info` subcommand.
#[derive(Debug, Clone, PartialEq)]
pub enum InfoCommand {
    Block {
        nodes: bool,
        verbose: bool,
        device: Option<String>,
    },
    Blockstats,
    Chardev,
    Cpus,
    /// Answered by the session from its own history.
    History,
    Kvm,
    Migrate,
    MigrateCapabilities,
    MigrateParameters,
    Mtree {
        flatview: bool,
        dispatch_tree: bool,
        owner: bool,
        disabled: bool,
    },
    Name,
    Network,
    Pci,
    Qtree,
    /// `info registers [-a|vcpu]`: `all` for every CPU, else `vcpu` or the
    /// monitor's current CPU.
    Registers {
        all: bool,
        vcpu: Option<i64>,
    },
    Roots,
    Snapshots,
    Status,
    Uuid,
    Version,
}

/// Why a command line was rejected.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum ParseError {
    /// The text is what QEMU quotes: the line up to the end of the name that
    /// failed, leading whitespace included (`info foo`, `  foo`).
    #[error("unknown command: '{0}'")]
    UnknownCommand(String),
    /// An argument error; `typed` is what the user typed up to the end of
    /// the command name, for the `Try "help ..."` hint.
    #[error("{error}")]
    Args { error: ArgError, typed: String },
    /// A command table entry has a malformed argument specification.
    #[error("{command}: unknown type in argument specification")]
    BadSpec { command: String },
}

impl ParseError {
    /// The full text the monitor prints for this error, `\n` line ends.
    pub fn render(&self) -> String {
        match self {
            ParseError::Args { error, typed } => {
                let end = if error.ends_line() { "\n" } else { "" };
                format!("{error}{end}Try \"help {typed}\" for more information\n")
            }
            other => format!("{other}\n"),
        }
    }
}

fn skip_space(line: &str, mut pos: usize) -> usize {
    let b = line.as_bytes();
    while pos < b.len() && is_space(b[pos]) {
        pos += 1;
    }
    pos
}

/// Parses one command line. `Ok(None)` for a blank line.
pub fn parse_line(line: &str) -> Result<Option<Command>, ParseError> {
    let start = skip_space(line, 0);
    if start == line.len() {
        return Ok(None);
    }
    parse_in(COMMANDS, line, start).map(Some)
}

fn parse_in(table: &'static [CommandDef], line: &str, pos: usize) -> Result<Command, ParseError> {
    let pos = skip_space(line, pos);
    // A name runs to whitespace or '/' (the start of a format, as in x/10x).
    let name_end = line[pos..]
        .find(|c: char| c == '/' || (c.is_ascii() && is_space(c as u8)))
        .map_or(line.len(), |i| pos + i);
    let name = &line[pos..name_end];
    let def = find(table, name).ok_or_else(|| ParseError::UnknownCommand(line[..name_end].to_string()))?;
    let after = skip_space(line, name_end);
    match def.action {
        Action::SubTable(sub) if after < line.len() => parse_in(sub, line, after),
        Action::SubTable(_) => Ok(Command::Help {
            topic: Some(def.primary_name().to_string()),
        }),
        Action::Build(build) => {
            let specs = parse_arg_types(def.args_type).map_err(|_| ParseError::BadSpec { command: def.name.into() })?;
            let args = parse_args(def.name, &specs, &line[after..]).map_err(|error| ParseError::Args {
                error,
                typed: line[..after]
                    .trim_end_matches(|c: char| c.is_ascii() && is_space(c as u8))
                    .to_string(),
            })?;
            Ok(build(&args))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(line: &str) -> String {
        parse_line(line).unwrap_err().render()
    }

    fn cmd(line: &str) -> Command {
        parse_line(line).unwrap().unwrap()
    }

    #[test]
    fn typed_commands() {
        assert_eq!(parse_line("   "), Ok(None));
        assert_eq!(cmd("stop"), Command::Stop);
        assert_eq!(cmd("s"), Command::Stop);
        assert_eq!(cmd("  c  "), Command::Cont);
        assert_eq!(cmd("q"), Command::Quit);
        assert_eq!(cmd("info status"), Command::Info(InfoCommand::Status));
        assert_eq!(
            cmd("info"),
            Command::Help {
                topic: Some("info".into())
            }
        );
        assert_eq!(cmd("? c"), Command::Help { topic: Some("c".into()) });
        assert_eq!(cmd("help"), Command::Help { topic: None });
        assert_eq!(
            cmd("migrate -d -i \"exec:cat > /tmp/x\""),
            Command::Migrate {
                detach: true,
                blk: false,
                inc: true,
                resume: false,
                uri: "exec:cat > /tmp/x".into()
            }
        );
        assert_eq!(cmd("savevm"), Command::SaveVm { tag: None });
        assert_eq!(cmd("savevm \"a b\""), Command::SaveVm { tag: Some("a b".into()) });
        assert_eq!(cmd("loadvm snap1"), Command::LoadVm { tag: "snap1".into() });
        assert_eq!(cmd("delvm snap1"), Command::DelVm { tag: "snap1".into() });
        assert_eq!(
            cmd("migrate_set_speed 1.5m"),
            Command::MigrateSetSpeed {
                bytes_per_second: 1_572_864
            }
        );
        assert_eq!(
            cmd("migrate_set_speed 100"),
            Command::MigrateSetSpeed {
                bytes_per_second: 100 << 20
            }
        );
        assert_eq!(cmd("migrate_set_downtime 0.5"), Command::MigrateSetDowntime { seconds: 0.5 });
        assert_eq!(cmd("migrate_set_downtime 300ms"), Command::MigrateSetDowntime { seconds: 0.3 });
        assert_eq!(
            cmd("migrate_set_capability xbzrle on"),
            Command::MigrateSetCapability {
                capability: "xbzrle".into(),
                state: true
            }
        );
        assert_eq!(
            cmd("migrate_set_parameter max-bandwidth 1.5m"),
            Command::MigrateSetParameter {
                parameter: "max-bandwidth".into(),
                value: "1.5m".into()
            }
        );
        assert_eq!(
            cmd("migrate_incoming tcp:0:4444"),
            Command::MigrateIncoming { uri: "tcp:0:4444".into() }
        );
        assert_eq!(cmd("migrate_cancel"), Command::MigrateCancel);
        assert_eq!(cmd("migrate_start_postcopy"), Command::MigrateStartPostcopy);
        assert_eq!(cmd("system_reset"), Command::SystemReset);
        assert_eq!(cmd("system_powerdown"), Command::SystemPowerdown);
        assert_eq!(
            cmd("info registers -a"),
            Command::Info(InfoCommand::Registers { all: true, vcpu: None })
        );
        assert_eq!(
            cmd("info registers 1"),
            Command::Info(InfoCommand::Registers { all: false, vcpu: Some(1) })
        );
        assert_eq!(
            cmd("info mtree -f -o"),
            Command::Info(InfoCommand::Mtree {
                flatview: true,
                dispatch_tree: false,
                owner: true,
                disabled: false
            })
        );
        assert_eq!(
            cmd("info block -v vd0"),
            Command::Info(InfoCommand::Block {
                nodes: false,
                verbose: true,
                device: Some("vd0".into())
            })
        );
    }

    #[test]
    fn every_info_subcommand_parses() {
        for def in crate::table::INFO_COMMANDS {
            for alias in def.name.split('|') {
                assert!(matches!(cmd(&format!("info {alias}")), Command::Info(_)), "{alias}");
            }
        }
    }

    #[test]
    fn error_texts_match_qemu() {
        assert_eq!(err("foo"), "unknown command: 'foo'\n");
        assert_eq!(err("STOP"), "unknown command: 'STOP'\n");
        assert_eq!(err("info foo"), "unknown command: 'info foo'\n");
        assert_eq!(err("info  foo bar"), "unknown command: 'info  foo'\n");
        assert_eq!(err("  foo"), "unknown command: '  foo'\n");
        assert_eq!(err("info/status"), "unknown command: 'info'\n");
        assert_eq!(
            err("migrate"),
            "migrate: string expected\nTry \"help migrate\" for more information\n"
        );
        assert_eq!(err("loadvm"), "loadvm: string expected\nTry \"help loadvm\" for more information\n");
        assert_eq!(
            err("migrate_set_capability xbzrle"),
            "Expected 'on' or 'off'\nTry \"help migrate_set_capability\" for more information\n"
        );
        assert_eq!(
            err("migrate_set_capability xbzrle maybe"),
            "Expected 'on' or 'off'\nTry \"help migrate_set_capability\" for more information\n"
        );
        assert_eq!(
            err("stop extra"),
            "stop|s: extraneous characters at the end of line\nTry \"help stop\" for more information\n"
        );
        assert_eq!(
            err("stop/x"),
            "stop|s: extraneous characters at the end of line\nTry \"help stop\" for more information\n"
        );
        assert_eq!(
            err("q extra"),
            "quit|q: extraneous characters at the end of line\nTry \"help q\" for more information\n"
        );
        assert_eq!(
            err("c x"),
            "cont|c: extraneous characters at the end of line\nTry \"help c\" for more information\n"
        );
        assert_eq!(
            err("info snapshots extra"),
            "snapshots: extraneous characters at the end of line\nTry \"help info snapshots\" for more information\n"
        );
        assert_eq!(
            err("info   snapshots x"),
            "snapshots: extraneous characters at the end of line\nTry \"help info   snapshots\" for more information\n"
        );
        assert_eq!(
            err("  stop x"),
            "stop|s: extraneous characters at the end of line\nTry \"help   stop\" for more information\n"
        );
        assert_eq!(
            err("savevm a b"),
            "savevm: extraneous characters at the end of line\nTry \"help savevm\" for more information\n"
        );
        assert_eq!(
            err("migrate -z tcp:1"),
            "migrate: unsupported option -z\nTry \"help migrate\" for more information\n"
        );
        assert_eq!(
            err("migrate -b -d tcp:1"),
            "migrate: unsupported option -d\nTry \"help migrate\" for more information\n"
        );
        assert_eq!(
            err("migrate -i -b tcp:1"),
            "migrate: unsupported option -b\nTry \"help migrate\" for more information\n"
        );
        assert_eq!(
            err("migrate -db tcp:1"),
            "migrate: extraneous characters at the end of line\nTry \"help migrate\" for more information\n"
        );
        assert_eq!(
            err("migrate tcp:1 -d"),
            "migrate: extraneous characters at the end of line\nTry \"help migrate\" for more information\n"
        );
        // QEMU loses the newline here (it formats a NUL with %c).
        assert_eq!(
            err("migrate -"),
            "migrate: unsupported option -Try \"help migrate\" for more information\n"
        );
        assert_eq!(
            err("migrate_set_speed -1"),
            "invalid size\nTry \"help migrate_set_speed\" for more information\n"
        );
        assert_eq!(
            err("migrate_set_downtime 5x"),
            "Unknown unit suffix\nTry \"help migrate_set_downtime\" for more information\n"
        );
        assert_eq!(
            err("info registers x"),
            "invalid char 'x' in expression\nTry \"help info registers\" for more information\n"
        );
        assert_eq!(
            err("info registers -1"),
            "registers: unsupported option -1\nTry \"help info registers\" for more information\n"
        );
        assert_eq!(
            err("info mtree -d -f"),
            "mtree: unsupported option -f\nTry \"help info mtree\" for more information\n"
        );
    }
}
