//! One QMP client's conversation, without I/O: the greeting, capabilities negotiation,
//! each request checked and run as QEMU 7.2 does (member checks, command lookup, argument
//! checks, then the command), and the replies and events as JSON.

use super::commands::{self, Ctx};
use super::lexer::{Framed, Framer};
use super::parser;
use super::schema::check_args;
use crate::engine::events::Stamped;
use crate::engine::{EngineError, ErrorClass, VersionInfo};
use serde_json::{Map, Value, json};

/// A reply to one input; `quit` when the command was `quit` (the caller flushes, since
/// the process is about to end).
#[derive(Debug)]
pub struct Reply {
    pub message: Value,
    pub quit: bool,
}

#[derive(Default)]
pub struct Session {
    framer: Framer,
    negotiated: bool,
    oob: bool,
}

/// `{"QMP": {"version": ..., "capabilities": ["oob"]}}`.
pub fn greeting(version: &VersionInfo) -> Value {
    json!({"QMP": {"version": version, "capabilities": ["oob"]}})
}

fn error_reply(e: &EngineError, id: Option<&Value>) -> Value {
    let mut v = json!({"error": {"class": e.class, "desc": e.desc}});
    if let Some(id) = id {
        v["id"] = id.clone();
    }
    v
}

fn generic(desc: impl Into<String>) -> EngineError {
    EngineError::generic(desc)
}

impl Session {
    pub fn new() -> Self {
        Session::default()
    }

    pub fn negotiated(&self) -> bool {
        self.negotiated
    }

    /// Bytes held for a value not complete yet.
    pub fn held(&self) -> usize {
        self.framer.held()
    }

    /// Cuts input into values (and errors).
    pub fn frames(&mut self, input: &[u8]) -> Vec<Framed> {
        self.framer.feed(input)
    }

    /// Answers one framed input.
    pub fn handle(&mut self, input: Framed, ctx: &mut Ctx<'_>) -> Reply {
        let msg = match input {
            Framed::Error(desc) => return self.reply(Err(generic(desc)), None, false),
            Framed::Value(tokens) => match parser::parse(&tokens) {
                Ok(v) => v,
                Err(desc) => return self.reply(Err(generic(desc)), None, false),
            },
        };
        let Value::Object(msg) = msg else {
            return self.reply(Err(generic("QMP input must be a JSON object")), None, false);
        };
        let id = msg.get("id").cloned();
        let (result, quit) = self.request(&msg, ctx);
        self.reply(result, id.as_ref(), quit)
    }

    fn reply(&self, result: Result<Value, EngineError>, id: Option<&Value>, quit: bool) -> Reply {
        let message = match result {
            Ok(v) => {
                let mut m = json!({"return": v});
                if let Some(id) = id {
                    m["id"] = id.clone();
                }
                m
            }
            Err(e) => error_reply(&e, id),
        };
        Reply { message, quit }
    }

    /// The request's members, then the command.
    fn request(&mut self, msg: &Map<String, Value>, ctx: &mut Ctx<'_>) -> (Result<Value, EngineError>, bool) {
        let name = match self.check_members(msg) {
            Ok(n) => n,
            Err(e) => return (Err(e), false),
        };
        let empty = Map::new();
        let args = msg.get("arguments").and_then(Value::as_object).unwrap_or(&empty);
        if !self.negotiated {
            return (self.negotiate(name, args), false);
        }
        let Some(cmd) = commands::find(name) else {
            return (Err(not_found(format!("The command {name} has not been found"))), false);
        };
        if msg.contains_key("exec-oob") {
            return (Err(generic(format!("The command {name} does not support OOB"))), false);
        }
        if let Err(desc) = check_args(cmd.args, args) {
            return (Err(generic(desc)), false);
        }
        ((cmd.run)(ctx, args), name == "quit")
    }

    /// QEMU's checks of the request object; returns the command's name.
    fn check_members<'m>(&self, msg: &'m Map<String, Value>) -> Result<&'m str, EngineError> {
        for (k, v) in msg {
            match k.as_str() {
                "execute" | "exec-oob" if !v.is_string() => return Err(generic(format!("QMP input member '{k}' must be a string"))),
                "exec-oob" if !self.oob => return Err(generic("QMP input member 'exec-oob' is unexpected")),
                "arguments" if !v.is_object() => return Err(generic("QMP input member 'arguments' must be an object")),
                "execute" | "exec-oob" | "arguments" | "id" => {}
                _ => return Err(generic(format!("QMP input member '{k}' is unexpected"))),
            }
        }
        if msg.contains_key("execute") && msg.contains_key("exec-oob") {
            return Err(generic("QMP input must not have both 'execute' and 'exec-oob'"));
        }
        msg.get("execute")
            .or_else(|| msg.get("exec-oob"))
            .and_then(Value::as_str)
            .ok_or_else(|| generic("QMP input lacks member 'execute'"))
    }

    /// Before negotiation only `qmp_capabilities` exists; any other command is refused
    /// with QEMU's hint.
    fn negotiate(&mut self, name: &str, args: &Map<String, Value>) -> Result<Value, EngineError> {
        if name != "qmp_capabilities" {
            return Err(not_found("Expecting capabilities negotiation with 'qmp_capabilities'"));
        }
        let cmd = commands::find(name).ok_or_else(|| generic("no qmp_capabilities"))?;
        check_args(cmd.args, args).map_err(generic)?;
        self.oob = args
            .get("enable")
            .and_then(Value::as_array)
            .is_some_and(|l| l.iter().any(|c| c == "oob"));
        self.negotiated = true;
        Ok(json!({}))
    }

    /// An event as this client sees it: none before negotiation.
    pub fn event(&self, e: &Stamped) -> Option<Value> {
        self.negotiated.then(|| e.to_json())
    }
}

fn not_found(desc: impl Into<String>) -> EngineError {
    EngineError {
        class: ErrorClass::CommandNotFound,
        desc: desc.into(),
    }
}

/// QEMU's compact layout: `{"a": 1, "b": [1, 2]}`.
struct Spaced;

impl serde_json::ser::Formatter for Spaced {
    fn begin_array_value<W: ?Sized + std::io::Write>(&mut self, w: &mut W, first: bool) -> std::io::Result<()> {
        if first { Ok(()) } else { w.write_all(b", ") }
    }

    fn begin_object_key<W: ?Sized + std::io::Write>(&mut self, w: &mut W, first: bool) -> std::io::Result<()> {
        if first { Ok(()) } else { w.write_all(b", ") }
    }

    fn begin_object_value<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        w.write_all(b": ")
    }
}

/// The wire form of one message: JSON laid out as QEMU lays it out, then CR LF (or the
/// pretty form, one member a line, when the monitor was asked for `pretty=on`).
pub fn encode(v: &Value, pretty: bool) -> Vec<u8> {
    use serde::Serialize;
    let mut out = Vec::new();
    let written = if pretty {
        v.serialize(&mut serde_json::Serializer::with_formatter(
            &mut out,
            serde_json::ser::PrettyFormatter::with_indent(b"    "),
        ))
    } else {
        v.serialize(&mut serde_json::Serializer::with_formatter(&mut out, Spaced))
    };
    if written.is_err() {
        out.clear();
    }
    let mut wire = Vec::with_capacity(out.len() + 2);
    crate::output::push_crlf(&mut wire, &out);
    wire.extend_from_slice(b"\r\n");
    wire
}
