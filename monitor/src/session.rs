//! One monitor session, sans-IO: banner, prompt, line editing, parsing,
//! `help`, `info history` and error display. Everything that needs the VMM
//! is handed back to the caller as a [`Command`].
//!
//! ```text
//! session.open(&mut out);                     // banner + "(qemu) "
//! loop {
//!     let (used, command) = session.feed(&input, &mut out);
//!     input.drain(..used);
//!     if let Some(command) = command {
//!         // run it, then one of:
//!         session.finish(&mut out);           // prompt again
//!         session.fail("msg", &mut out);      // "Error: msg" + prompt
//!         session.quit();                     // no prompt; session over
//!     }
//! }
//! ```
//!
//! All output is in wire form (`\r\n` line ends).

use crate::command::{Command, InfoCommand, parse_line};
use crate::complete::TableCompleter;
use crate::editor::LineEditor;
use crate::help::help_text;
use crate::output::push_crlf;

/// The monitor prompt.
pub const PROMPT: &str = "(qemu) ";

/// The banner shown when a session opens.
pub fn banner(version: &str) -> String {
    format!("godwit {version} monitor - type 'help' for more information\n")
}

/// Whether the session goes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionStatus {
    /// Not opened yet (no banner shown).
    New,
    /// Reading commands.
    Ready,
    /// A command returned by [`Session::feed`] is running; input is held.
    Busy,
    /// `quit` ran: nothing more is read.
    Closed,
}

/// A monitor session.
pub struct Session {
    version: String,
    editor: LineEditor,
    status: SessionStatus,
}

impl Session {
    pub fn new(version: &str) -> Self {
        Session {
            version: version.to_string(),
            editor: LineEditor::new(),
            status: SessionStatus::New,
        }
    }

    pub fn status(&self) -> SessionStatus {
        self.status
    }

    /// Prints the banner and the first prompt.
    pub fn open(&mut self, out: &mut Vec<u8>) {
        push_crlf(out, banner(&self.version).as_bytes());
        self.status = SessionStatus::Ready;
        self.editor.show_prompt(PROMPT, out);
    }

    /// Forgets the line being typed and prints a fresh prompt (when a
    /// multiplexed terminal switches back to the monitor).
    pub fn reprompt(&mut self, out: &mut Vec<u8>) {
        self.editor.restart();
        self.editor.show_prompt(PROMPT, out);
    }

    /// Bytes of the line being typed (at most [`MAX_LINE`](crate::editor::MAX_LINE)).
    pub fn held(&self) -> usize {
        self.editor.line().len()
    }

    /// The command history, oldest first.
    pub fn history(&self) -> Vec<String> {
        self.editor
            .history()
            .iter()
            .map(|h| String::from_utf8_lossy(h).into_owned())
            .collect()
    }

    /// Processes input until a command needs the VMM or the input runs out.
    /// Returns how many bytes were used and the command, if any; the bytes
    /// after the command stay with the caller until the command finishes.
    /// Nothing is consumed unless the session is ready.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> (usize, Option<Command>) {
        if self.status != SessionStatus::Ready {
            return (0, None);
        }
        for (i, &byte) in input.iter().enumerate() {
            let Some(line) = self.editor.feed(byte, out, &TableCompleter) else {
                continue;
            };
            if let Some(command) = self.line(&line, out) {
                self.status = SessionStatus::Busy;
                return (i + 1, Some(command));
            }
        }
        (input.len(), None)
    }

    /// Handles an entered line; returns a command for the VMM, or answers it
    /// here and prints the next prompt.
    fn line(&mut self, line: &[u8], out: &mut Vec<u8>) -> Option<Command> {
        let text = String::from_utf8_lossy(line);
        match parse_line(&text) {
            Ok(None) => {}
            Err(e) => push_crlf(out, e.render().as_bytes()),
            Ok(Some(Command::Help { topic })) => push_crlf(out, help_text(topic.as_deref()).as_bytes()),
            Ok(Some(Command::Info(InfoCommand::History))) => {
                for (i, entry) in self.history().iter().enumerate() {
                    push_crlf(out, format!("{i}: '{entry}'\n").as_bytes());
                }
            }
            Ok(Some(command)) => return Some(command),
        }
        self.editor.show_prompt(PROMPT, out);
        None
    }

    /// The command finished: prints the prompt.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if self.status == SessionStatus::Busy {
            self.status = SessionStatus::Ready;
            self.editor.show_prompt(PROMPT, out);
        }
    }

    /// The command failed: prints `Error: message` and the prompt.
    pub fn fail(&mut self, message: &str, out: &mut Vec<u8>) {
        push_crlf(out, format!("Error: {message}\n").as_bytes());
        self.finish(out);
    }

    /// The command was `quit` (or the VMM is going away): the session ends.
    pub fn quit(&mut self) {
        self.status = SessionStatus::Closed;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strip_echo(out: &[u8]) -> String {
        // What follows the echo's CRLF.
        let text = String::from_utf8_lossy(out).into_owned();
        text.split_once("\r\n").map(|(_, rest)| rest.to_string()).unwrap_or(text)
    }

    #[test]
    fn banner_and_prompt() {
        let mut s = Session::new("1.2.3");
        let mut out = Vec::new();
        s.open(&mut out);
        assert_eq!(out, b"godwit 1.2.3 monitor - type 'help' for more information\r\n(qemu) ".to_vec());
    }

    #[test]
    fn commands_are_returned_and_prompt_follows() {
        let mut s = Session::new("1");
        let mut out = Vec::new();
        s.open(&mut out);
        out.clear();
        let input = b"info status\nstop\n";
        let (used, cmd) = s.feed(input, &mut out);
        assert_eq!(cmd, Some(Command::Info(InfoCommand::Status)));
        assert_eq!(used, 12);
        assert!(out.ends_with(b"info status\x1b[K\r\n"));
        assert_eq!(s.status(), SessionStatus::Busy);
        // Input is held while busy.
        assert_eq!(s.feed(&input[used..], &mut out), (0, None));
        out.clear();
        s.finish(&mut out);
        assert_eq!(out, b"(qemu) ".to_vec());
        out.clear();
        let (_, cmd) = s.feed(&input[used..], &mut out);
        assert_eq!(cmd, Some(Command::Stop));
        out.clear();
        s.fail("Resetting the Virtual Machine is required", &mut out);
        assert_eq!(out, b"Error: Resetting the Virtual Machine is required\r\n(qemu) ".to_vec());
    }

    #[test]
    fn help_and_errors_are_answered_locally() {
        let mut s = Session::new("1");
        let mut out = Vec::new();
        s.open(&mut out);
        out.clear();
        assert_eq!(s.feed(b"foo\n", &mut out), (4, None));
        assert_eq!(strip_echo(&out), "unknown command: 'foo'\r\n(qemu) ");
        out.clear();
        s.feed(b"stop x\n", &mut out);
        assert_eq!(
            strip_echo(&out),
            "stop|s: extraneous characters at the end of line\r\nTry \"help stop\" for more information\r\n(qemu) "
        );
        out.clear();
        s.feed(b"help migrate\n", &mut out);
        assert!(strip_echo(&out).starts_with("migrate [-d] [-b] [-i] [-r] uri -- "));
        assert!(strip_echo(&out).contains("\r\n\t\t\t -b "));
        out.clear();
        s.feed(b"\n", &mut out);
        assert_eq!(out, b"\r\n(qemu) ".to_vec());
        out.clear();
        // CR LF: the LF is a second, empty command, hence a second prompt.
        s.feed(b"foo\r\n", &mut out);
        assert!(out.ends_with(b"unknown command: 'foo'\r\n(qemu) \r\n(qemu) "));
        out.clear();
        s.feed(b"info history\n", &mut out);
        assert_eq!(
            strip_echo(&out),
            // "foo" was entered again (by "foo\r\n"), so it moved to the end.
            "0: 'stop x'\r\n1: 'help migrate'\r\n2: 'foo'\r\n3: 'info history'\r\n(qemu) "
        );
    }

    #[test]
    fn bare_info_lists_subcommands() {
        let mut s = Session::new("1");
        let mut out = Vec::new();
        s.open(&mut out);
        out.clear();
        s.feed(b"info\n", &mut out);
        let text = strip_echo(&out);
        assert_eq!(text, push(&help_text(Some("info"))) + "(qemu) ");
    }

    fn push(text: &str) -> String {
        let mut out = Vec::new();
        push_crlf(&mut out, text.as_bytes());
        String::from_utf8(out).unwrap_or_default()
    }

    #[test]
    fn quit_closes() {
        let mut s = Session::new("1");
        let mut out = Vec::new();
        s.open(&mut out);
        let (_, cmd) = s.feed(b"q\n", &mut out);
        assert_eq!(cmd, Some(Command::Quit));
        s.quit();
        assert_eq!(s.status(), SessionStatus::Closed);
        assert_eq!(s.feed(b"stop\n", &mut out), (0, None));
    }

    #[test]
    fn garbage_does_not_grow_memory() {
        let mut s = Session::new("1");
        let mut out = Vec::new();
        s.open(&mut out);
        let garbage: Vec<u8> = (0..20_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
        for chunk in garbage.chunks(256) {
            out.clear();
            let mut rest = chunk;
            while !rest.is_empty() {
                let (used, cmd) = s.feed(rest, &mut out);
                rest = &rest[used..];
                if cmd.is_some() {
                    s.finish(&mut out);
                }
            }
        }
        assert!(s.editor.line().len() <= crate::editor::MAX_LINE);
        assert!(s.history().len() <= crate::editor::MAX_HISTORY);
    }
}
