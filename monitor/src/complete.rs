//! Tab completion from the command tables, following QEMU: the first word
//! completes command names (aliases separately), `info` and `help` complete
//! from the right table, and `migrate_set_capability` /
//! `migrate_set_parameter` complete their names (and `on`/`off`).

use crate::editor::{Completer, Completion};
use crate::engine::MigrationCapability;
use crate::expr::is_space;
use crate::grammar::split_words;
use crate::table::{Action, COMMANDS, CommandDef, find};

/// Migration parameters of QEMU 7.2 (and godwit's own, last), for completion.
pub const MIGRATION_PARAMETERS: &[&str] = &[
    "announce-initial",
    "announce-max",
    "announce-rounds",
    "announce-step",
    "compress-level",
    "compress-threads",
    "decompress-threads",
    "compress-wait-thread",
    "throttle-trigger-threshold",
    "cpu-throttle-initial",
    "cpu-throttle-increment",
    "cpu-throttle-tailslow",
    "tls-creds",
    "tls-hostname",
    "tls-authz",
    "max-bandwidth",
    "downtime-limit",
    "x-checkpoint-delay",
    "block-incremental",
    "multifd-channels",
    "xbzrle-cache-size",
    "max-cpu-throttle",
    "multifd-compression",
    "multifd-zlib-level",
    "multifd-zstd-level",
    "block-bitmap-mapping",
    "x-godwit-converge-deadline",
];

/// Completes from the built-in command tables.
pub struct TableCompleter;

impl Completer for TableCompleter {
    fn complete(&self, before_cursor: &str) -> Completion {
        let Some(mut words) = split_words(before_cursor) else {
            return Completion::default();
        };
        if before_cursor.bytes().last().is_some_and(is_space) {
            words.push(String::new());
        }
        let mut completion = Completion::default();
        complete_in(COMMANDS, &words, &mut completion);
        completion
    }
}

fn prefixed<'a>(words: impl IntoIterator<Item = &'a str>, typed: &str) -> Vec<String> {
    words.into_iter().filter(|w| w.starts_with(typed)).map(String::from).collect()
}

fn complete_in(table: &'static [CommandDef], words: &[String], completion: &mut Completion) {
    if words.len() <= 1 {
        let typed = words.first().map_or("", String::as_str);
        completion.typed_len = typed.len();
        completion.candidates = prefixed(table.iter().flat_map(|d| d.name.split('|')), typed);
        return;
    }
    let Some(def) = find(table, &words[0]) else {
        return;
    };
    if let Action::SubTable(sub) = def.action {
        return complete_in(sub, &words[1..], completion);
    }
    let last = words.last().map_or("", String::as_str);
    let fixed: &[&str] = match (def.primary_name(), words.len()) {
        ("help", _) => return complete_in(table, &words[1..], completion),
        ("migrate_set_capability", 2) => &MigrationCapability::NAMES,
        ("migrate_set_capability", 3) => &["on", "off"],
        ("migrate_set_parameter", 2) => MIGRATION_PARAMETERS,
        _ => return,
    };
    completion.typed_len = last.len();
    completion.candidates = prefixed(fixed.iter().copied(), last);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sorted(line: &str) -> (Vec<String>, usize) {
        let mut c = TableCompleter.complete(line);
        c.candidates.sort();
        (c.candidates, c.typed_len)
    }

    #[test]
    fn command_names() {
        let (c, n) = sorted("migrate_s");
        assert_eq!(
            c,
            [
                "migrate_set_capability",
                "migrate_set_downtime",
                "migrate_set_parameter",
                "migrate_set_speed",
                "migrate_start_postcopy"
            ]
        );
        assert_eq!(n, 9);
        assert_eq!(sorted("sto").0, ["stop"]);
        let (all, _) = sorted("");
        assert!(all.contains(&"?".to_string()) && all.contains(&"c".to_string()) && all.contains(&"cont".to_string()));
    }

    #[test]
    fn subcommands_and_arguments() {
        assert_eq!(sorted("info st").0, ["status"]);
        assert_eq!(sorted("info ").0.len(), crate::table::INFO_COMMANDS.len());
        assert_eq!(sorted("help mig").0.len(), 9);
        assert_eq!(sorted("migrate_set_capability x").0, ["x-colo", "x-ignore-shared", "xbzrle"]);
        assert_eq!(sorted("migrate_set_capability xbzrle o").0, ["off", "on"]);
        assert_eq!(sorted("migrate_set_parameter max-b").0, ["max-bandwidth"]);
        assert!(sorted("stop ").0.is_empty());
        assert!(sorted("nosuch x").0.is_empty());
    }
}
