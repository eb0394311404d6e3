//! The command tables: the single source for parsing, `help`, `help info`,
//! a bare `info`, completion and error messages.
//!
//! Each entry gives the name (aliases joined with `|`, as QEMU displays
//! them), the QEMU-style argument specification (see [`crate::argtype`]),
//! the parameter text shown by `help`, the help text, and what the entry
//! produces. Entries are kept in `strcmp` order of their names, the order
//! QEMU lists them in.

use crate::argtype::{ArgSpec, ArgTypeError, parse_arg_types};
use crate::command::{Command, InfoCommand};
use crate::grammar::Args;

/// What a table entry produces once its arguments are parsed.
#[derive(Clone, Copy)]
pub enum Action {
    Build(fn(&Args) -> Command),
    /// The entry takes a subcommand from another table (`info`).
    SubTable(&'static [CommandDef]),
}

/// One command table entry.
#[derive(Clone, Copy)]
pub struct CommandDef {
    pub name: &'static str,
    pub args_type: &'static str,
    pub params: &'static str,
    pub help: &'static str,
    pub action: Action,
}

impl CommandDef {
    /// True if `name` is the command's name or one of its aliases.
    pub fn matches(&self, name: &str) -> bool {
        self.name.split('|').any(|n| n == name)
    }

    /// The first name (`cont` for `cont|c`).
    pub fn primary_name(&self) -> &'static str {
        self.name.split('|').next().unwrap_or(self.name)
    }

    /// The parsed argument specification.
    pub fn arg_specs(&self) -> Result<Vec<ArgSpec>, ArgTypeError> {
        parse_arg_types(self.args_type)
    }

    /// The help line, `NAME PARAMS -- HELP\n`; two spaces when there are no
    /// parameters, as QEMU prints it.
    pub fn help_line(&self) -> String {
        format!("{} {} -- {}\n", self.name, self.params, self.help)
    }
}

/// Looks `name` up in `table` (names and aliases, case-sensitive).
pub fn find(table: &'static [CommandDef], name: &str) -> Option<&'static CommandDef> {
    table.iter().find(|def| def.matches(name))
}

const fn cmd(
    name: &'static str,
    args_type: &'static str,
    params: &'static str,
    help: &'static str,
    build: fn(&Args) -> Command,
) -> CommandDef {
    CommandDef {
        name,
        args_type,
        params,
        help,
        action: Action::Build(build),
    }
}

/// The top-level commands.
pub static COMMANDS: &[CommandDef] = &[
    cmd(
        "announce_self",
        "interfaces:s?,id:s?",
        "[interfaces] [id]",
        "announce the NICs to the network now (RARP frames, and the guest asked to announce itself), on the announce-* schedule",
        |a| Command::AnnounceSelf {
            interfaces: a.opt_string("interfaces"),
            id: a.opt_string("id"),
        },
    ),
    cmd("cont|c", "", "", "resume guest execution", |_| Command::Cont),
    cmd("delvm", "name:s", "tag", "delete the VM snapshot that has this tag", |a| {
        Command::DelVm { tag: a.string("name") }
    }),
    cmd("help|?", "name:S?", "[cmd]", "list the commands, or describe one of them", |a| {
        Command::Help {
            topic: a.opt_string("name"),
        }
    }),
    CommandDef {
        name: "info",
        args_type: "item:s?",
        params: "[subcommand]",
        help: "print information about the state of the machine",
        action: Action::SubTable(INFO_COMMANDS),
    },
    cmd("loadvm", "name:s", "tag", "go back to the VM snapshot that has this tag", |a| {
        Command::LoadVm { tag: a.string("name") }
    }),
    cmd(
        "migrate",
        "detach:-d,blk:-b,inc:-i,resume:-r,uri:s",
        "[-d] [-b] [-i] [-r] uri",
        "move the VM to URI (-d returns at once instead of waiting until it ends)\n\
         \t\t\t -b also copies the whole disk contents (no shared storage)\n\
         \t\t\t -i also copies the disks, only what lies above a base image both sides share\n\
         \t\t\t -r resumes a paused migration",
        |a| Command::Migrate {
            detach: a.flag("detach"),
            blk: a.flag("blk"),
            inc: a.flag("inc"),
            resume: a.flag("resume"),
            uri: a.string("uri"),
        },
    ),
    cmd("migrate_cancel", "", "", "abort the migration in progress", |_| {
        Command::MigrateCancel
    }),
    cmd(
        "migrate_incoming",
        "uri:s",
        "uri",
        "start receiving a migration on a VM started with -incoming defer",
        |a| Command::MigrateIncoming { uri: a.string("uri") },
    ),
    cmd(
        "migrate_recover",
        "uri:s",
        "uri",
        "on the destination of a paused post-copy, listen on uri for the source's 'migrate -r uri'",
        |a| Command::MigrateRecover { uri: a.string("uri") },
    ),
    cmd(
        "migrate_set_capability",
        "capability:s,state:b",
        "capability state",
        "turn a migration capability on or off",
        |a| Command::MigrateSetCapability {
            capability: a.string("capability"),
            state: a.flag("state"),
        },
    ),
    cmd(
        "migrate_set_downtime",
        "value:T",
        "value",
        "set the longest pause of the VM accepted at the end of a migration, in seconds",
        |a| Command::MigrateSetDowntime {
            seconds: a.float("value").unwrap_or_default(),
        },
    ),
    cmd(
        "migrate_set_parameter",
        "parameter:s,value:s",
        "parameter value",
        "change one migration parameter",
        |a| Command::MigrateSetParameter {
            parameter: a.string("parameter"),
            value: a.string("value"),
        },
    ),
    cmd(
        "migrate_set_speed",
        "value:o",
        "value",
        "cap the migration bandwidth in bytes per second; a bare number means MB, or add a suffix (B/K/M/G/T)",
        |a| Command::MigrateSetSpeed {
            bytes_per_second: a.size("value").unwrap_or_default(),
        },
    ),
    cmd(
        "migrate_start_postcopy",
        "",
        "",
        "switch the running migration to postcopy (enable the postcopy-ram capability on both sides before migrating)",
        |_| Command::MigrateStartPostcopy,
    ),
    cmd("quit|q", "", "", "exit the emulator", |_| Command::Quit),
    cmd(
        "savevm",
        "name:s?",
        "tag",
        "take a VM snapshot under this tag (a new tag is generated when none is given)",
        |a| Command::SaveVm { tag: a.opt_string("name") },
    ),
    cmd(
        "set_link",
        "name:s,up:b",
        "name on|off",
        "connect or disconnect a NIC (or its back end) from the network",
        |a| Command::SetLink {
            name: a.string("name"),
            up: a.flag("up"),
        },
    ),
    cmd("stop|s", "", "", "pause guest execution", |_| Command::Stop),
    cmd(
        "system_powerdown",
        "",
        "",
        "press the virtual power button (ACPI power down request)",
        |_| Command::SystemPowerdown,
    ),
    cmd("system_reset", "", "", "reset the machine", |_| Command::SystemReset),
];

const fn info(
    name: &'static str,
    args_type: &'static str,
    params: &'static str,
    help: &'static str,
    build: fn(&Args) -> Command,
) -> CommandDef {
    cmd(name, args_type, params, help, build)
}

/// The `info` subcommands.
pub static INFO_COMMANDS: &[CommandDef] = &[
    info(
        "block",
        "nodes:-n,verbose:-v,device:B?",
        "[-n] [-v] [device]",
        "describe one block device or all of them (-n: list named nodes; -v: more detail)",
        |a| {
            Command::Info(InfoCommand::Block {
                nodes: a.flag("nodes"),
                verbose: a.flag("verbose"),
                device: a.opt_string("device"),
            })
        },
    ),
    info("blockstats", "", "", "show the block devices' I/O statistics", |_| {
        Command::Info(InfoCommand::Blockstats)
    }),
    info("chardev", "", "", "list the character devices", |_| {
        Command::Info(InfoCommand::Chardev)
    }),
    info("cpus", "", "", "list the virtual CPUs", |_| Command::Info(InfoCommand::Cpus)),
    info("history", "", "", "list the commands entered so far", |_| {
        Command::Info(InfoCommand::History)
    }),
    info("kvm", "", "", "tell whether KVM acceleration is in use", |_| {
        Command::Info(InfoCommand::Kvm)
    }),
    info("migrate", "", "", "show the state of the migration", |_| {
        Command::Info(InfoCommand::Migrate)
    }),
    info("migrate_capabilities", "", "", "show the migration capabilities", |_| {
        Command::Info(InfoCommand::MigrateCapabilities)
    }),
    info("migrate_parameters", "", "", "show the migration parameters", |_| {
        Command::Info(InfoCommand::MigrateParameters)
    }),
    info(
        "mtree",
        "flatview:-f,dispatch_tree:-d,owner:-o,disabled:-D",
        "[-f][-d][-o][-D]",
        "print the memory region tree (-f: flattened view of each address space; -d: dispatch tree, with -f only; -o: show owners; -D: include disabled regions)",
        |a| {
            Command::Info(InfoCommand::Mtree {
                flatview: a.flag("flatview"),
                dispatch_tree: a.flag("dispatch_tree"),
                owner: a.flag("owner"),
                disabled: a.flag("disabled"),
            })
        },
    ),
    info("name", "", "", "print the name of the VM", |_| Command::Info(InfoCommand::Name)),
    info("network", "", "", "show the NICs and their back ends", |_| {
        Command::Info(InfoCommand::Network)
    }),
    info("pci", "", "", "list the PCI devices", |_| Command::Info(InfoCommand::Pci)),
    info("qtree", "", "", "print the device tree", |_| Command::Info(InfoCommand::Qtree)),
    info(
        "registers",
        "cpustate_all:-a,vcpu:i?",
        "[-a|vcpu]",
        "dump CPU registers (-a: every CPU; vcpu: that CPU index; default: the monitor's current CPU)",
        |a| {
            Command::Info(InfoCommand::Registers {
                all: a.flag("cpustate_all"),
                vcpu: a.int("vcpu"),
            })
        },
    ),
    info("roots", "", "", "list the root memory regions", |_| {
        Command::Info(InfoCommand::Roots)
    }),
    info("snapshots", "", "", "list the VM snapshots", |_| {
        Command::Info(InfoCommand::Snapshots)
    }),
    info("status", "", "", "tell whether the VM is running or paused", |_| {
        Command::Info(InfoCommand::Status)
    }),
    info("uuid", "", "", "print the UUID of the VM", |_| Command::Info(InfoCommand::Uuid)),
    info("version", "", "", "print the emulator version", |_| {
        Command::Info(InfoCommand::Version)
    }),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_are_sorted_and_specs_parse() {
        for table in [COMMANDS, INFO_COMMANDS] {
            for pair in table.windows(2) {
                assert!(pair[0].name < pair[1].name, "{} before {}", pair[0].name, pair[1].name);
            }
            for def in table {
                def.arg_specs().unwrap_or_else(|e| panic!("{}: {e}", def.name));
            }
        }
    }

    #[test]
    fn aliases() {
        assert_eq!(find(COMMANDS, "c").map(|d| d.name), Some("cont|c"));
        assert_eq!(find(COMMANDS, "?").map(|d| d.name), Some("help|?"));
        assert!(find(COMMANDS, "cont|c").is_none());
        assert!(find(COMMANDS, "").is_none());
        assert_eq!(find(COMMANDS, "quit").map(|d| d.primary_name()), Some("quit"));
    }

    #[test]
    fn help_line_layout() {
        let line = |name| find(COMMANDS, name).map(|d| d.help_line()).unwrap_or_default();
        assert!(line("migrate_cancel").starts_with("migrate_cancel  -- "));
        assert!(line("c").starts_with("cont|c  -- "));
        assert!(line("migrate").starts_with("migrate [-d] [-b] [-i] [-r] uri -- "));
        assert_eq!(line("migrate").matches("\n\t\t\t -").count(), 3);
        assert!(line("savevm").starts_with("savevm tag -- "));
        assert!(line("migrate_set_capability").starts_with("migrate_set_capability capability state -- "));
    }
}
