//! The protocol against a fake engine: negotiation, request checks and their texts, ids,
//! events, descriptors, and answers of the declared shapes.

use super::commands::{COMMANDS, Ctx};
use super::lexer::MAX_BYTES;
use super::schema::conforms;
use super::{Session, encode};
use crate::engine::*;
use crate::fake::Fake;
use crate::hmp::Hmp;
use serde_json::{Value, json};
use std::os::fd::OwnedFd;
use std::sync::Arc;

struct Client {
    engine: Arc<Fake>,
    hmp: Hmp,
    fds: FdStore,
    session: Session,
}

impl Client {
    fn new() -> Client {
        let engine = Fake::running();
        let hmp = Hmp::new(engine.clone());
        Client {
            engine,
            hmp,
            fds: FdStore::default(),
            session: Session::new(),
        }
    }

    /// Sends raw text; returns every reply it produced.
    fn send_with(&mut self, text: &str, received: &mut Vec<OwnedFd>) -> Vec<Value> {
        let mut ctx = Ctx {
            engine: &*self.engine,
            hmp: &self.hmp,
            fds: &self.fds,
            received,
        };
        let frames = self.session.frames(text.as_bytes());
        frames.into_iter().map(|f| self.session.handle(f, &mut ctx).message).collect()
    }

    fn send(&mut self, text: &str) -> Vec<Value> {
        self.send_with(text, &mut Vec::new())
    }

    fn one(&mut self, text: &str) -> Value {
        let mut r = self.send(text);
        assert_eq!(r.len(), 1, "{text}: {r:?}");
        r.remove(0)
    }

    fn exec(&mut self, cmd: &str, args: Value) -> Value {
        self.one(&json!({"execute": cmd, "arguments": args}).to_string())
    }

    fn negotiated() -> Client {
        let mut c = Client::new();
        assert_eq!(c.one(r#"{"execute": "qmp_capabilities"}"#), json!({"return": {}}));
        c
    }
}

fn error(class: &str, desc: &str) -> Value {
    json!({"error": {"class": class, "desc": desc}})
}

#[test]
fn negotiation() {
    let mut c = Client::new();
    let expecting = error("CommandNotFound", "Expecting capabilities negotiation with 'qmp_capabilities'");
    assert_eq!(c.one(r#"{"execute": "query-status"}"#), expecting);
    assert_eq!(c.one(r#"{"execute": "bogus"}"#), expecting);
    assert_eq!(
        c.one(r#"{"execute": "qmp_capabilities", "arguments": {"x": 1}}"#),
        error("GenericError", "Parameter 'x' is unexpected")
    );
    let rx = c.engine.bus.subscribe();
    c.engine.bus.emit(Event::stop());
    assert_eq!(c.session.event(&rx.try_recv().unwrap()), None, "no events before negotiation");
    assert_eq!(c.one(r#"{"execute": "qmp_capabilities", "id": 1}"#), json!({"return": {}, "id": 1}));
    assert_eq!(
        c.one(r#"{"execute": "qmp_capabilities"}"#),
        error("CommandNotFound", "Capabilities negotiation is already complete, command ignored")
    );
    c.engine.bus.emit(Event::stop());
    assert_eq!(c.session.event(&rx.try_recv().unwrap()).unwrap()["event"], "STOP");
}

#[test]
fn request_errors_read_like_qemu() {
    let mut c = Client::negotiated();
    let g = |d: &str| error("GenericError", d);
    assert_eq!(
        c.one(r#"{"execute": "bogus", "id": [1, {"a": 2}]}"#),
        json!({"id": [1, {"a": 2}], "error": {"class": "CommandNotFound", "desc": "The command bogus has not been found"}})
    );
    assert_eq!(
        c.one(r#"{"execute": "query-status", "arguments": {"x": 1}}"#),
        g("Parameter 'x' is unexpected")
    );
    assert_eq!(c.one(r#"{"exec": "query-status"}"#), g("QMP input member 'exec' is unexpected"));
    assert_eq!(c.one("[1, 2]"), g("QMP input must be a JSON object"));
    assert_eq!(c.one(r#"{"execute": 1}"#), g("QMP input member 'execute' must be a string"));
    assert_eq!(
        c.one(r#"{"execute": "stop", "arguments": []}"#),
        g("QMP input member 'arguments' must be an object")
    );
    assert_eq!(c.one(r#"{"id": 3}"#)["error"]["desc"], "QMP input lacks member 'execute'");
    assert_eq!(
        c.one(r#"{"exec-oob": "migrate_cancel"}"#),
        g("QMP input member 'exec-oob' is unexpected")
    );
    assert_eq!(c.one("{bad json}"), g("JSON parse error, invalid keyword 'bad'"));
    assert_eq!(c.one("}"), g("JSON parse error, expecting value"));
    assert_eq!(c.exec("migrate", json!({})), g("Parameter 'uri' is missing"));
    assert_eq!(
        c.exec("migrate", json!({"uri": 1})),
        g("Invalid parameter type for 'uri', expected: string")
    );
    assert_eq!(
        c.exec(
            "migrate-set-capabilities",
            json!({"capabilities": [{"capability": "bogus", "state": true}]})
        ),
        g("Parameter 'capability' does not accept value 'bogus'")
    );
    assert_eq!(
        c.exec("migrate-set-parameters", json!({"compress-level": 300})),
        g("Parameter 'compress-level' expects uint8_t")
    );
    assert_eq!(
        c.exec("migrate-set-parameters", json!({"max-bandwidth": -1, "tls-creds": null})),
        json!({"return": {}})
    );
    // The session goes on after all that, and single quotes work as in QEMU.
    assert_eq!(c.one("{'execute': 'query-status', 'id': 'x'}")["id"], "x");
}

#[test]
fn limits_leave_the_session_usable() {
    let mut c = Client::negotiated();
    let deep = format!("{}{}", "[".repeat(2000), "]".repeat(2000));
    let r = c.send(&format!("{deep}{{\"execute\": \"query-kvm\"}}"));
    assert_eq!(r.len(), 2, "{r:?}");
    assert_eq!(r[0]["error"]["desc"], "JSON nesting depth limit exceeded");
    assert_eq!(r[1]["return"]["enabled"], true);
    let huge = format!("{{\"execute\": \"query-kvm\", \"id\": \"{}\"}}", "a".repeat(MAX_BYTES + 10));
    let r = c.send(&huge);
    assert_eq!(r, vec![error("GenericError", "JSON token size limit exceeded")]);
    assert!(c.session.held() < 1024);
    assert_eq!(c.one(r#"{"execute": "query-kvm"}"#)["return"]["present"], true);
}

#[test]
fn commands_events_and_hmp() {
    let mut c = Client::negotiated();
    let rx = c.engine.bus.subscribe();
    assert_eq!(c.exec("stop", json!({})), json!({"return": {}}));
    let e = c.session.event(&rx.try_recv().unwrap()).unwrap();
    assert_eq!(e["event"], "STOP");
    assert!(e["timestamp"]["microseconds"].is_u64());
    assert_eq!(
        c.exec("human-monitor-command", json!({"command-line": "info status"})),
        json!({"return": "VM status: paused\r\n"})
    );
    assert_eq!(
        c.exec("human-monitor-command", json!({"command-line": "info bogus"})),
        json!({"return": "unknown command: 'info bogus'\r\n"})
    );
    assert_eq!(c.exec("query-pci", json!({}))["return"][0]["bus"], 0);
    let m = c.exec("query-migrate", json!({}));
    assert_eq!(
        m["return"]["socket-address"],
        json!([{"type": "inet", "host": "0.0.0.0", "port": "4444", "ipv4": true}, {"type": "unix", "path": "/tmp/m.sock"}])
    );
    assert_eq!(c.exec("query-target", json!({})), json!({"return": {"arch": "x86_64"}}));
    let save = json!({"job-id": "j1", "tag": "t", "vmstate": "d", "devices": ["d"]});
    assert_eq!(c.exec("snapshot-save", save.clone()), json!({"return": {}}));
    assert_eq!(c.exec("snapshot-save", save)["error"]["desc"], "Job ID 'j1' already in use");
    assert_eq!(c.exec("query-jobs", json!({}))["return"][0]["status"], "concluded");
    assert_eq!(c.exec("job-dismiss", json!({"id": "j1"})), json!({"return": {}}));
    let names: Vec<String> = c.exec("query-commands", json!({}))["return"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap().to_string())
        .collect();
    assert!(names.contains(&"snapshot-save".to_string()) && names.contains(&"qmp_capabilities".to_string()));
}

#[test]
fn descriptors_come_with_getfd() {
    let mut c = Client::negotiated();
    let getfd = r#"{"execute": "getfd", "arguments": {"fdname": "mig"}}"#;
    assert_eq!(c.one(getfd), error("GenericError", "No file descriptor supplied via SCM_RIGHTS"));
    let mut fds: Vec<OwnedFd> = (0..2).map(|_| std::fs::File::open("/dev/null").unwrap().into()).collect();
    assert_eq!(c.send_with(getfd, &mut fds), vec![json!({"return": {}})]);
    assert!(fds.is_empty(), "the extra descriptor is closed");
    assert_eq!(c.exec("migrate", json!({"uri": "fd:mig"})), json!({"return": {}}));
    assert_eq!(
        c.exec("migrate", json!({"uri": "fd:mig"}))["error"]["desc"],
        "File descriptor named 'mig' has not been found"
    );
    assert_eq!(
        c.exec("closefd", json!({"fdname": "mig"}))["error"]["desc"],
        "File descriptor named 'mig' not found"
    );
}

/// libvirt sends every parameter back after a job: they all reach the engine, whose check
/// passes the current values and refuses another (godwit's own: src/migration/params.rs).
#[test]
fn parameters_set_to_their_current_values_pass() {
    let mut c = Client::negotiated();
    let now = c.exec("query-migrate-parameters", json!({}))["return"].clone();
    let same = json!({"compress-level": now["compress-level"], "downtime-limit": now["downtime-limit"]});
    assert_eq!(c.exec("migrate-set-parameters", same), json!({"return": {}}));
    let other = c.exec("migrate-set-parameters", json!({"compress-level": 9}));
    assert_eq!(
        other["error"]["desc"],
        "parameter 'compress-level' has no effect in godwit and is not supported"
    );
}

/// Every query's answer has the shape its command declares.
#[test]
fn answers_conform_to_their_declared_types() {
    let mut c = Client::negotiated();
    // query-balloon answers QEMU's error without a balloon device.
    for cmd in COMMANDS
        .iter()
        .filter(|c| c.name.starts_with("query-") && c.name != "query-balloon")
    {
        let args = match cmd.name {
            "query-cpu-model-expansion" => json!({"type": "static", "model": {"name": "host"}}),
            _ => json!({}),
        };
        let r = c.exec(cmd.name, args);
        let v = r.get("return").unwrap_or_else(|| panic!("{}: {r}", cmd.name));
        conforms(cmd.ret, v).unwrap_or_else(|e| panic!("{}: {e}\n{v}", cmd.name));
    }
}

/// A static expansion is named `base`, a full one keeps the model's name; props apply.
#[test]
fn cpu_model_expansion() {
    let mut c = Client::negotiated();
    let exp = |c: &mut Client, ty: &str, model: Value| c.exec("query-cpu-model-expansion", json!({"type": ty, "model": model}));
    let want = json!({"return": {"model": {"name": "base", "props": {"fpu": true, "avx2": false}}}});
    assert_eq!(exp(&mut c, "static", json!({"name": "host"})), want);
    let full = exp(
        &mut c,
        "full",
        json!({"name": "host", "props": {"avx2": true, "migratable": false}}),
    );
    assert_eq!(
        full,
        json!({"return": {"model": {"name": "host", "props": {"fpu": true, "avx2": true}}}})
    );
    assert_eq!(
        exp(&mut c, "full", json!({"name": "foo"}))["error"]["desc"],
        "CPU model 'foo' not found"
    );
    let e = exp(&mut c, "bogus", json!({"name": "host"}));
    assert_eq!(e["error"]["desc"], "Parameter 'type' does not accept value 'bogus'");
    let e = c.exec("query-cpu-model-expansion", json!({"type": "full"}));
    assert_eq!(e["error"]["desc"], "Parameter 'model' is missing");
}

#[test]
fn wire_layout_is_qemus() {
    assert_eq!(encode(&json!({"return": {}}), false), b"{\"return\": {}}\r\n");
    assert_eq!(
        encode(&json!({"a": [1, 2], "b": "x\ny"}), false),
        b"{\"a\": [1, 2], \"b\": \"x\\ny\"}\r\n"
    );
    let g = super::greeting(&Client::new().engine.query_version());
    assert_eq!(g["QMP"]["capabilities"], json!(["oob"]));
    assert_eq!(g["QMP"]["version"]["qemu"]["minor"], 1);
}
