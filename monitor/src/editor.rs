//! A sans-IO line editor with QEMU readline's exact echo.
//!
//! Feed it bytes; it appends what the terminal should show to an output
//! buffer and returns a completed line on Enter. After every byte the
//! visible line is redrawn QEMU's way: if the text changed, move the cursor
//! back to the start of the line with one `ESC [ D` per character before
//! the old cursor position, print the whole line, print `ESC [ K`; then
//! move the cursor with `ESC [ C` / `ESC [ D` to where it belongs.
//!
//! Keys: printable bytes (and every byte >= 0x80) insert; Backspace (^H,
//! DEL); ^A / Home, ^E / End; ^D / Delete; ^W deletes a word; ^U deletes
//! back to the start of the line (QEMU 7.2 ignores ^U; later versions
//! behave like this); ^L clears the screen; left/right arrows; up/down
//! arrows browse the history; Tab completes; CR or LF ends the line (so CR
//! LF is two lines, as in QEMU). The line holds at most [`MAX_LINE`] bytes;
//! more input is dropped, so memory stays bounded.

/// Longest line kept (QEMU's `READLINE_CMD_BUF_SIZE`).
pub const MAX_LINE: usize = 4095;
/// History entries kept (QEMU's `READLINE_MAX_CMDS`).
pub const MAX_HISTORY: usize = 64;

const CURSOR_LEFT: &[u8] = b"\x1b[D";
const CURSOR_RIGHT: &[u8] = b"\x1b[C";
const CLEAR_TO_EOL: &[u8] = b"\x1b[K";

/// Candidates for Tab completion.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Completion {
    /// Full words that could complete the word under the cursor.
    pub candidates: Vec<String>,
    /// How many bytes of that word were already typed.
    pub typed_len: usize,
}

/// Supplies completions for the text before the cursor.
pub trait Completer {
    fn complete(&self, before_cursor: &str) -> Completion;
}

/// A completer that never completes anything.
pub struct NoCompletion;

impl Completer for NoCompletion {
    fn complete(&self, _: &str) -> Completion {
        Completion::default()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Escape {
    Normal,
    Esc,
    Csi,
    Ss3,
}

/// The editor state: the line, what the terminal currently shows, and the
/// history.
#[derive(Debug, Clone)]
pub struct LineEditor {
    line: Vec<u8>,
    cursor: usize,
    shown: Vec<u8>,
    shown_cursor: usize,
    escape: Escape,
    escape_param: u32,
    prompt: String,
    history: Vec<Vec<u8>>,
    /// Index of the history entry being shown, if browsing.
    history_pos: Option<usize>,
}

impl Default for LineEditor {
    fn default() -> Self {
        Self::new()
    }
}

impl LineEditor {
    pub fn new() -> Self {
        LineEditor {
            line: Vec::new(),
            cursor: 0,
            shown: Vec::new(),
            shown_cursor: 0,
            escape: Escape::Normal,
            escape_param: 0,
            prompt: String::new(),
            history: Vec::new(),
            history_pos: None,
        }
    }

    /// Prints `prompt`; the line being edited is redrawn after it by the
    /// next key.
    pub fn show_prompt(&mut self, prompt: &str, out: &mut Vec<u8>) {
        self.prompt = prompt.to_string();
        out.extend_from_slice(prompt.as_bytes());
        self.shown.clear();
        self.shown_cursor = 0;
        self.escape = Escape::Normal;
    }

    /// Forgets the line being edited (not the history).
    pub fn restart(&mut self) {
        self.line.clear();
        self.cursor = 0;
    }

    /// The history, oldest first.
    pub fn history(&self) -> &[Vec<u8>] {
        &self.history
    }

    /// The line being edited.
    pub fn line(&self) -> &[u8] {
        &self.line
    }

    /// Handles one input byte. Returns the line when Enter is pressed.
    pub fn feed(&mut self, byte: u8, out: &mut Vec<u8>, completer: &dyn Completer) -> Option<Vec<u8>> {
        let mut entered = None;
        match self.escape {
            Escape::Normal => match byte {
                1 => self.cursor = 0,
                4 => self.delete_char(),
                5 => self.cursor = self.line.len(),
                9 => self.complete(out, completer),
                12 => {
                    out.extend_from_slice(b"\x1b[2J\x1b[1;1H");
                    let prompt = std::mem::take(&mut self.prompt);
                    self.show_prompt(&prompt, out);
                }
                b'\n' | b'\r' => {
                    let line = std::mem::take(&mut self.line);
                    self.add_history(&line);
                    out.extend_from_slice(b"\r\n");
                    self.cursor = 0;
                    self.shown.clear();
                    self.shown_cursor = 0;
                    entered = Some(line);
                }
                21 => {
                    self.line.drain(..self.cursor);
                    self.cursor = 0;
                }
                23 => self.delete_word(),
                27 => self.escape = Escape::Esc,
                8 | 127 if self.cursor > 0 => {
                    self.cursor -= 1;
                    self.delete_char();
                }
                8 | 127 => {}
                155 => {
                    self.escape = Escape::Csi;
                    self.escape_param = 0;
                }
                b if b >= 32 => self.insert(b),
                _ => {}
            },
            Escape::Esc => {
                self.escape = match byte {
                    b'[' => Escape::Csi,
                    b'O' => Escape::Ss3,
                    _ => Escape::Normal,
                };
                self.escape_param = 0;
            }
            Escape::Csi => {
                self.escape = Escape::Normal;
                match byte {
                    b'A' | b'F' => self.history_up(),
                    b'B' | b'E' => self.history_down(),
                    b'D' => self.cursor = self.cursor.saturating_sub(1),
                    b'C' => self.cursor = (self.cursor + 1).min(self.line.len()),
                    b'0'..=b'9' => {
                        self.escape_param = self.escape_param.saturating_mul(10).saturating_add(u32::from(byte - b'0'));
                        self.escape = Escape::Csi;
                    }
                    b'~' => match self.escape_param {
                        1 => self.cursor = 0,
                        3 => self.delete_char(),
                        4 => self.cursor = self.line.len(),
                        _ => {}
                    },
                    _ => {}
                }
            }
            Escape::Ss3 => {
                self.escape = Escape::Normal;
                match byte {
                    b'F' => self.cursor = self.line.len(),
                    b'H' => self.cursor = 0,
                    _ => {}
                }
            }
        }
        self.redraw(out);
        entered
    }

    fn insert(&mut self, byte: u8) {
        if self.line.len() < MAX_LINE {
            self.line.insert(self.cursor, byte);
            self.cursor += 1;
        }
    }

    fn delete_char(&mut self) {
        if self.cursor < self.line.len() {
            self.line.remove(self.cursor);
        }
    }

    /// ^W: delete the word before the cursor and the spaces after it.
    fn delete_word(&mut self) {
        if self.cursor == 0 {
            return;
        }
        let is_space = |b: u8| crate::expr::is_space(b);
        let mut start = self.cursor - 1;
        while start > 0 && is_space(self.line[start]) {
            start -= 1;
        }
        while start > 0 {
            if is_space(self.line[start]) {
                start += 1;
                break;
            }
            start -= 1;
        }
        self.line.drain(start..self.cursor);
        self.cursor = start;
    }

    fn redraw(&mut self, out: &mut Vec<u8>) {
        if self.line != self.shown {
            for _ in 0..self.shown_cursor {
                out.extend_from_slice(CURSOR_LEFT);
            }
            out.extend_from_slice(&self.line);
            out.extend_from_slice(CLEAR_TO_EOL);
            self.shown.clone_from(&self.line);
            self.shown_cursor = self.line.len();
        }
        let (step, count) = if self.cursor > self.shown_cursor {
            (CURSOR_RIGHT, self.cursor - self.shown_cursor)
        } else {
            (CURSOR_LEFT, self.shown_cursor - self.cursor)
        };
        for _ in 0..count {
            out.extend_from_slice(step);
        }
        self.shown_cursor = self.cursor;
    }

    /// QEMU's history rules: empty lines are not kept, a repeated line moves
    /// to the end, and the oldest entry goes when the history is full.
    fn add_history(&mut self, line: &[u8]) {
        if line.is_empty() {
            return;
        }
        if let Some(i) = self.history.iter().position(|h| h == line) {
            let entry = self.history.remove(i);
            self.history.push(entry);
        } else {
            if self.history.len() == MAX_HISTORY {
                self.history.remove(0);
            }
            self.history.push(line.to_vec());
        }
        self.history_pos = None;
    }

    fn history_up(&mut self) {
        let pos = match self.history_pos {
            Some(0) => return,
            Some(p) => p - 1,
            None if self.history.is_empty() => return,
            None => self.history.len() - 1,
        };
        self.history_pos = Some(pos);
        self.load_history(pos);
    }

    fn history_down(&mut self) {
        let Some(pos) = self.history_pos else {
            return;
        };
        if pos + 1 < self.history.len() {
            self.history_pos = Some(pos + 1);
            self.load_history(pos + 1);
        } else {
            self.history_pos = None;
            self.line.clear();
            self.cursor = 0;
        }
    }

    fn load_history(&mut self, pos: usize) {
        self.line.clone_from(&self.history[pos]);
        self.cursor = self.line.len();
    }

    fn complete(&mut self, out: &mut Vec<u8>, completer: &dyn Completer) {
        let before = String::from_utf8_lossy(&self.line[..self.cursor]).into_owned();
        let Completion { mut candidates, typed_len } = completer.complete(&before);
        candidates.sort();
        match candidates.as_slice() {
            [] => {}
            [only] => {
                for &b in only.as_bytes().get(typed_len..).unwrap_or_default() {
                    self.insert(b);
                }
                if !only.is_empty() && !only.ends_with('/') {
                    self.insert(b' ');
                }
            }
            [first, ..] => {
                out.extend_from_slice(b"\r\n");
                let common = candidates.iter().fold(first.len(), |n, c| {
                    first.bytes().zip(c.bytes()).take(n).take_while(|(a, b)| a == b).count()
                });
                for &b in first.as_bytes().get(typed_len..common).unwrap_or_default() {
                    self.insert(b);
                }
                let width = (candidates.iter().map(String::len).max().unwrap_or(0) + 2).clamp(10, 80);
                let columns = 80 / width;
                for (i, candidate) in candidates.iter().enumerate() {
                    out.extend_from_slice(format!("{candidate:<width$}").as_bytes());
                    if (i + 1) % columns == 0 || i + 1 == candidates.len() {
                        out.extend_from_slice(b"\r\n");
                    }
                }
                let prompt = std::mem::take(&mut self.prompt);
                self.show_prompt(&prompt, out);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn type_bytes(ed: &mut LineEditor, input: &[u8]) -> (Vec<u8>, Vec<Vec<u8>>) {
        let mut out = Vec::new();
        let mut lines = Vec::new();
        for &b in input {
            if let Some(line) = ed.feed(b, &mut out, &NoCompletion) {
                lines.push(line);
            }
        }
        (out, lines)
    }

    #[test]
    fn echo_matches_qemu_bytes() {
        let mut ed = LineEditor::new();
        let (out, lines) = type_bytes(&mut ed, b"info\n");
        assert_eq!(
            out,
            b"i\x1b[K\x1b[Din\x1b[K\x1b[D\x1b[Dinf\x1b[K\x1b[D\x1b[D\x1b[Dinfo\x1b[K\r\n".to_vec()
        );
        assert_eq!(lines, vec![b"info".to_vec()]);
    }

    #[test]
    fn cursor_movement_and_editing() {
        // Observed on QEMU 7.2: "ab", left, "c", right, right, DEL.
        let mut ed = LineEditor::new();
        let (out, lines) = type_bytes(&mut ed, b"ab\x1b[Dc\x1b[C\x1b[C\x7f\n");
        assert_eq!(
            out,
            b"a\x1b[K\x1b[Dab\x1b[K\x1b[D\x1b[Dacb\x1b[K\x1b[D\x1b[C\x1b[D\x1b[D\x1b[Dac\x1b[K\r\n".to_vec()
        );
        assert_eq!(lines, vec![b"ac".to_vec()]);
        // "abc", left, left, backspace.
        let (out, lines) = type_bytes(&mut ed, b"abc\x1b[D\x1b[D\x08\n");
        assert_eq!(
            out,
            b"a\x1b[K\x1b[Dab\x1b[K\x1b[D\x1b[Dabc\x1b[K\x1b[D\x1b[D\x1b[Dbc\x1b[K\x1b[D\x1b[D\r\n".to_vec()
        );
        assert_eq!(lines, vec![b"bc".to_vec()]);
    }

    #[test]
    fn home_end_delete_and_csi_forms() {
        let mut ed = LineEditor::new();
        let (out, _) = type_bytes(&mut ed, b"ab cd\x17");
        assert!(out.ends_with(b"\x1b[D\x1b[D\x1b[D\x1b[D\x1b[Dab \x1b[K"));
        let (out, _) = type_bytes(&mut ed, b"\x01");
        assert_eq!(out, b"\x1b[D\x1b[D\x1b[D".to_vec());
        let (out, _) = type_bytes(&mut ed, b"\x05");
        assert_eq!(out, b"\x1b[C\x1b[C\x1b[C".to_vec());
        let (out, _) = type_bytes(&mut ed, b"\x01\x04");
        assert_eq!(out, b"\x1b[D\x1b[D\x1b[Db \x1b[K\x1b[D\x1b[D".to_vec());
        let (out, _) = type_bytes(&mut ed, b"\x1bOF");
        assert_eq!(out, b"\x1b[C\x1b[C".to_vec());
        let (out, _) = type_bytes(&mut ed, b"\x1bOH\x1b[3~");
        assert_eq!(out, b"\x1b[D\x1b[D \x1b[K\x1b[D".to_vec());
        let (out, _) = type_bytes(&mut ed, b"\x1b[4~");
        assert_eq!(out, b"\x1b[C".to_vec());
        let (out, _) = type_bytes(&mut ed, b"\x1b[1~");
        assert_eq!(out, b"\x1b[D".to_vec());
        let (out, _) = type_bytes(&mut ed, b"\x9bC");
        assert_eq!(out, b"\x1b[C".to_vec());
        let (out, _) = type_bytes(&mut ed, "é".as_bytes());
        assert_eq!(out, b"\x1b[D \xc3\x1b[K\x1b[D\x1b[D \xc3\xa9\x1b[K".to_vec());
        // ^P, ^N, ^K and NUL are ignored, as in QEMU 7.2.
        let (out, _) = type_bytes(&mut ed, b"\x10\x0e\x0b\x00");
        assert!(out.is_empty());
    }

    #[test]
    fn ctrl_u_kills_to_start_of_line() {
        let mut ed = LineEditor::new();
        let (_, _) = type_bytes(&mut ed, b"abcd\x1b[D");
        let (out, _) = type_bytes(&mut ed, b"\x15");
        assert_eq!(out, b"\x1b[D\x1b[D\x1b[Dd\x1b[K\x1b[D".to_vec());
        assert_eq!(ed.line(), b"d");
    }

    #[test]
    fn clear_screen_redraws_prompt_and_line() {
        let mut ed = LineEditor::new();
        let mut out = Vec::new();
        ed.show_prompt("(qemu) ", &mut out);
        let (out, _) = type_bytes(&mut ed, b"xy\x0cz");
        assert_eq!(
            out,
            b"x\x1b[K\x1b[Dxy\x1b[K\x1b[2J\x1b[1;1H(qemu) xy\x1b[K\x1b[D\x1b[Dxyz\x1b[K".to_vec()
        );
    }

    #[test]
    fn history_browsing_matches_qemu() {
        let mut ed = LineEditor::new();
        for line in [&b"abc\n"[..], b"info status\n", b"\n", b"xyz\n", b"ac\n", b"bc\n"] {
            type_bytes(&mut ed, line);
        }
        assert_eq!(ed.history().len(), 5);
        let (out, _) = type_bytes(&mut ed, b"\x1b[A");
        assert_eq!(out, b"bc\x1b[K".to_vec());
        let (out, _) = type_bytes(&mut ed, b"\x1b[A");
        assert_eq!(out, b"\x1b[D\x1b[Dac\x1b[K".to_vec());
        let (out, _) = type_bytes(&mut ed, b"\x1b[B");
        assert_eq!(out, b"\x1b[D\x1b[Dbc\x1b[K".to_vec());
        let (out, lines) = type_bytes(&mut ed, b"\x1b[B\n");
        assert_eq!(out, b"\x1b[D\x1b[D\x1b[K\r\n".to_vec());
        assert_eq!(lines, vec![Vec::<u8>::new()]);
        // Re-entering a line moves it to the end instead of duplicating it.
        type_bytes(&mut ed, b"abc\n");
        assert_eq!(ed.history().len(), 5);
        assert_eq!(ed.history().last().map(Vec::as_slice), Some(&b"abc"[..]));
    }

    #[test]
    fn history_is_bounded() {
        let mut ed = LineEditor::new();
        for i in 0..200 {
            type_bytes(&mut ed, format!("cmd{i}\n").as_bytes());
        }
        assert_eq!(ed.history().len(), MAX_HISTORY);
        assert_eq!(ed.history()[0], b"cmd136".to_vec());
    }

    #[test]
    fn cr_lf_is_two_lines() {
        let mut ed = LineEditor::new();
        let (_, lines) = type_bytes(&mut ed, b"stop\r\n");
        assert_eq!(lines, vec![b"stop".to_vec(), Vec::new()]);
    }

    #[test]
    fn long_lines_are_capped() {
        let mut ed = LineEditor::new();
        let mut out = Vec::new();
        for _ in 0..10_000 {
            out.clear();
            ed.feed(b'x', &mut out, &NoCompletion);
        }
        assert_eq!(ed.line().len(), MAX_LINE);
        // Once full, more input changes nothing and prints nothing.
        assert!(out.is_empty());
        let (_, lines) = type_bytes(&mut ed, b"\n");
        assert_eq!(lines[0].len(), MAX_LINE);
    }

    struct Fixed(Vec<&'static str>, usize);

    impl Completer for Fixed {
        fn complete(&self, _: &str) -> Completion {
            Completion {
                candidates: self.0.iter().map(|s| s.to_string()).collect(),
                typed_len: self.1,
            }
        }
    }

    #[test]
    fn completion_layout() {
        let mut ed = LineEditor::new();
        let mut out = Vec::new();
        ed.show_prompt("(qemu) ", &mut out);
        for &b in b"sto" {
            ed.feed(b, &mut out, &NoCompletion);
        }
        out.clear();
        ed.feed(b'\t', &mut out, &Fixed(vec!["stopcapture", "stop"], 3));
        assert_eq!(out, b"\r\nstop         stopcapture  \r\n(qemu) stop\x1b[K".to_vec());
        out.clear();
        ed.feed(b'\t', &mut out, &Fixed(vec!["stop"], 4));
        assert_eq!(out, b"\x1b[D\x1b[D\x1b[D\x1b[Dstop \x1b[K".to_vec());
    }
}
