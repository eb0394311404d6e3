//! `help`, `help CMD`, `help info [SUB]` and a bare `info`, all rendered
//! from the command tables.

use crate::grammar::split_words;
use crate::table::{Action, COMMANDS, CommandDef, find};

/// The text `help [topic]` prints (with `\n` line ends).
///
/// Like QEMU, the topic is split into words (quotes allowed); `help info`
/// lists the info subcommands, `help info status` describes one, extra
/// words after a plain command are ignored, and an unknown word gives
/// `unknown command: '...'`. A topic that cannot be split (an unterminated
/// quote, more than 16 words) prints nothing.
pub fn help_text(topic: Option<&str>) -> String {
    let words = match topic {
        None => Vec::new(),
        Some(t) => match split_words(t) {
            Some(words) => words,
            None => return String::new(),
        },
    };
    let mut out = String::new();
    dump(&mut out, COMMANDS, &words, 0);
    out
}

fn sorted(table: &'static [CommandDef]) -> Vec<&'static CommandDef> {
    let mut entries: Vec<_> = table.iter().collect();
    entries.sort_by(|a, b| a.name.cmp(b.name));
    entries
}

fn dump_one(out: &mut String, def: &CommandDef, prefix: &[String]) {
    for word in prefix {
        out.push_str(word);
        out.push(' ');
    }
    out.push_str(&def.help_line());
}

fn dump(out: &mut String, table: &'static [CommandDef], words: &[String], index: usize) {
    let Some(word) = words.get(index) else {
        for def in sorted(table) {
            dump_one(out, def, &words[..index]);
        }
        return;
    };
    match find(table, word) {
        Some(CommandDef {
            action: Action::SubTable(sub),
            ..
        }) => dump(out, sub, words, index + 1),
        Some(def) => dump_one(out, def, &words[..index]),
        None => {
            out.push_str("unknown command: '");
            out.push_str(&words[..=index].join(" "));
            out.push_str("'\n");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::INFO_COMMANDS;

    #[test]
    fn full_help_lists_every_command_from_the_table() {
        let text = help_text(None);
        let lines: Vec<&str> = text.lines().filter(|l| !l.starts_with('\t')).collect();
        assert_eq!(lines.len(), COMMANDS.len());
        for (line, def) in lines.iter().zip(COMMANDS) {
            assert!(line.starts_with(&format!("{} {} -- ", def.name, def.params)), "{line}");
        }
        assert!(text.starts_with("announce_self [interfaces] [id] -- "));
        assert!(text.contains("\ncont|c  -- "));
        assert!(text.contains("\nhelp|? [cmd] -- "));
        assert!(text.contains("\ninfo [subcommand] -- "));
    }

    #[test]
    fn help_for_one_command() {
        assert_eq!(help_text(Some("stop")), find(COMMANDS, "stop").unwrap().help_line());
        assert_eq!(help_text(Some("q")), find(COMMANDS, "quit").unwrap().help_line());
        assert_eq!(help_text(Some("stop extra")), find(COMMANDS, "stop").unwrap().help_line());
        assert_eq!(help_text(Some("  \"stop\"")), find(COMMANDS, "stop").unwrap().help_line());
        assert_eq!(help_text(Some("nosuch")), "unknown command: 'nosuch'\n");
        assert_eq!(help_text(Some("stop|s")), "unknown command: 'stop|s'\n");
        assert_eq!(help_text(Some("\"unterminated")), "");
    }

    #[test]
    fn help_info() {
        let text = help_text(Some("info"));
        assert_eq!(text.lines().count(), INFO_COMMANDS.len());
        for line in text.lines() {
            assert!(line.starts_with("info "), "{line}");
        }
        assert!(text.contains("info status  -- "));
        assert!(text.contains("info registers [-a|vcpu] -- "));
        assert_eq!(
            help_text(Some("info status extra")),
            format!("info {}", find(INFO_COMMANDS, "status").unwrap().help_line())
        );
        assert_eq!(help_text(Some("info nosuch")), "unknown command: 'info nosuch'\n");
    }
}
