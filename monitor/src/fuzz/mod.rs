//! The bodies of the monitor fuzz targets (`tests/fuzz/fuzz_targets/{hmp,qmp}.rs`), also
//! run by the test suite from fixed inputs: arbitrary bytes from a client, in chunks, to
//! an HMP session behind a telnet filter and to a QMP session, each over an engine with no
//! machine behind it ([`Fake`]). Commands the bytes happen to spell run. What is held for
//! an unfinished line or value must stay within the limits, and every QMP answer must be
//! one JSON object with `return` or `error` that fits on one line.

use crate::editor::MAX_LINE;
use crate::engine::FdStore;
use crate::fake::Fake;
use crate::hmp::Hmp;
use crate::qmp::commands::Ctx;
use crate::qmp::lexer::MAX_BYTES;
use crate::qmp::{Session as QmpSession, encode};
use crate::transport::telnet::TelnetFilter;
use crate::vmm::Vmm;
use crate::{Session, SessionStatus};
use serde_json::Value;

#[cfg(test)]
mod tests;

/// Chunk boundaries come from the input's first byte, so a line or value split anywhere
/// is tried.
fn chunks(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    let (n, rest) = data.split_first().map_or((1, data), |(&n, r)| (usize::from(n) % 64 + 1, r));
    rest.chunks(n)
}

/// What one HMP input did.
#[derive(Debug, Default, Clone, Copy)]
pub struct HmpOutcome {
    pub commands: u32,
    pub output: usize,
}

/// Feeds `data` to a telnet HMP session; returns how many commands ran.
pub fn hmp_input(data: &[u8]) -> HmpOutcome {
    let hmp = Hmp::new(Fake::running());
    let mut session = Session::new("fuzz");
    let mut telnet = TelnetFilter::new();
    let mut out = Vec::new();
    let mut outcome = HmpOutcome::default();
    session.open(&mut out);
    for chunk in chunks(data) {
        let mut plain = Vec::new();
        telnet.filter(chunk, &mut plain);
        let mut at = 0;
        while at < plain.len() && session.status() == SessionStatus::Ready {
            let (used, command) = session.feed(&plain[at..], &mut out);
            at += used;
            if let Some(c) = command {
                // A command that waits (`migrate` without -d) is simply not waited for.
                if let Err(e) = hmp.execute(&c, &mut out) {
                    session.fail(&e, &mut out);
                }
                outcome.commands += 1;
                session.finish(&mut out);
            }
            assert!(session.held() <= MAX_LINE, "an HMP line grew to {} bytes", session.held());
        }
        outcome.output += out.len();
        out.clear();
    }
    outcome
}

/// What one QMP input did.
#[derive(Debug, Default, Clone, Copy)]
pub struct QmpOutcome {
    pub replies: u32,
    pub errors: u32,
}

/// Feeds `data` to a QMP session and checks every reply.
pub fn qmp_input(data: &[u8]) -> QmpOutcome {
    let engine = Fake::running();
    let hmp = Hmp::new(engine.clone());
    let fds = FdStore::default();
    let mut received = Vec::new();
    let mut session = QmpSession::new();
    let mut outcome = QmpOutcome::default();
    for chunk in chunks(data) {
        for frame in session.frames(chunk) {
            let mut ctx = Ctx {
                engine: &*engine,
                hmp: &hmp,
                fds: &fds,
                received: &mut received,
            };
            let reply = session.handle(frame, &mut ctx).message;
            outcome.replies += 1;
            outcome.errors += u32::from(check_reply(&reply));
        }
        assert!(
            session.held() <= MAX_BYTES,
            "QMP held {} bytes of an unfinished value",
            session.held()
        );
    }
    outcome
}

/// Panics unless `reply` is a well-formed answer; returns whether it is an error.
fn check_reply(reply: &Value) -> bool {
    let Value::Object(m) = reply else {
        panic!("a reply that is not an object: {reply}")
    };
    let line = encode(reply, false);
    let body = line.strip_suffix(b"\r\n").unwrap_or(&line);
    assert!(!body.is_empty() && !body.contains(&b'\n'), "a reply not on one line: {reply}");
    match (m.get("return"), m.get("error")) {
        (Some(_), None) => false,
        (None, Some(Value::Object(e))) => {
            assert!(e.get("class").is_some_and(Value::is_string), "an error without a class: {reply}");
            assert!(e.get("desc").is_some_and(Value::is_string), "an error without a desc: {reply}");
            true
        }
        _ => panic!("neither return nor error: {reply}"),
    }
}
