//! `-no-shutdown` (what libvirt always writes) with `-no-reboot`: the probe's reset at
//! `probe.exit` becomes a shutdown, and the VM stops in `shutdown` with the process still
//! there, as QEMU 7.2 does. The same QMP conversation runs against godwit and against
//! QEMU 7.2 and must read the same.

mod common;

use common::{godwit_bin, probe, tmpdir, vm_lock};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const QEMU: &str = "/usr/bin/qemu-system-x86_64";

struct Qmp {
    out: UnixStream,
    inp: BufReader<UnixStream>,
    /// What was said, events and answers, without timestamps.
    transcript: Vec<Value>,
}

impl Qmp {
    fn connect(sock: &Path) -> Qmp {
        let deadline = Instant::now() + Duration::from_secs(10);
        let s = loop {
            match UnixStream::connect(sock) {
                Ok(s) => break s,
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(e) => panic!("no QMP at {}: {e}", sock.display()),
            }
        };
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut q = Qmp {
            out: s.try_clone().unwrap(),
            inp: BufReader::new(s),
            transcript: Vec::new(),
        };
        assert!(q.read().get("QMP").is_some());
        q.cmd("qmp_capabilities", json!({}));
        q.transcript.clear();
        q
    }

    fn read(&mut self) -> Value {
        let mut line = String::new();
        if let Err(e) = self.inp.read_line(&mut line) {
            panic!("read QMP: {e}; so far: {:?}", self.transcript);
        }
        let mut v: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"));
        if let Some(o) = v.as_object_mut() {
            o.remove("timestamp");
        }
        v
    }

    /// Reads until the event `name` (unless it came already), keeping everything.
    fn event(&mut self, name: &str) {
        let seen = |t: &[Value]| t.iter().rev().take_while(|v| v.get("sent").is_none()).any(|v| v["event"] == name);
        if seen(&self.transcript) {
            return;
        }
        loop {
            let v = self.read();
            let done = v["event"] == name;
            self.transcript.push(v);
            if done {
                return;
            }
        }
    }

    fn cmd(&mut self, execute: &str, arguments: Value) -> Value {
        let req = json!({"execute": execute, "arguments": arguments});
        writeln!(self.out, "{req}").unwrap();
        self.transcript.push(json!({"sent": execute}));
        loop {
            let v = self.read();
            self.transcript.push(v.clone());
            if v.get("return").is_some() || v.get("error").is_some() {
                return v;
            }
        }
    }
}

/// Runs the conversation against `emulator`; returns its transcript.
fn conversation(emulator: &str, dir: &Path) -> Vec<Value> {
    let sock = dir.join(format!("{}.qmp", Path::new(emulator).file_name().unwrap().to_str().unwrap()));
    let serial = dir.join("serial.log");
    let _ = std::fs::remove_file(&serial);
    let mut child = Command::new(emulator)
        .args(["-m", "256", "-display", "none", "-nodefaults", "-no-reboot", "-no-shutdown"])
        .arg("-serial")
        .arg(format!("file:{}", serial.display()))
        .arg("-kernel")
        .arg(probe())
        .args(["-append", "console=ttyS0 probe.rate=20 probe.exit=10"])
        .arg("-qmp")
        .arg(format!("unix:{},server=on,wait=off", sock.display()))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the emulator");
    let mut q = Qmp::connect(&sock);
    q.event("STOP");
    q.cmd("query-status", json!({}));
    q.cmd("cont", json!({}));
    q.cmd("system_reset", json!({}));
    q.event("SHUTDOWN");
    q.cmd("query-status", json!({}));
    q.cmd("human-monitor-command", json!({"command-line": "info status"}));
    let log = std::fs::read_to_string(&serial).unwrap_or_default();
    std::thread::sleep(Duration::from_millis(500));
    assert!(child.try_wait().unwrap().is_none(), "{emulator} exited after the shutdown");
    assert_eq!(std::fs::read_to_string(&serial).unwrap_or_default(), log, "the guest ran on");
    assert_eq!(log.matches("PROBE READY").count(), 1, "{log}");
    assert!(log.contains("PROBE EXIT"), "{log}");
    q.cmd("quit", json!({}));
    let status = child.wait().unwrap();
    assert!(status.success(), "{emulator}: {status}");
    q.transcript
}

#[test]
fn a_guest_reset_with_no_reboot_and_no_shutdown_stops_in_shutdown_as_qemu_does() {
    let _l = vm_lock();
    let dir = tmpdir("no-shutdown");
    let godwit = conversation(godwit_bin(), &dir);
    let expected = [
        json!({"event": "SHUTDOWN", "data": {"guest": true, "reason": "guest-reset"}}),
        json!({"event": "STOP"}),
        json!({"sent": "query-status"}),
        json!({"return": {"status": "shutdown", "singlestep": false, "running": false}}),
        json!({"sent": "cont"}),
        json!({"error": {"class": "GenericError", "desc": "Resetting the Virtual Machine is required"}}),
        json!({"sent": "system_reset"}),
    ];
    assert_eq!(godwit[..expected.len()], expected, "{godwit:#?}");
    assert!(
        godwit.contains(&json!({"return": "VM status: paused (shutdown)\r\n"})),
        "{godwit:#?}"
    );
    // Debian's qemu-system-x86 (scripts/setup.sh installs it) as the oracle.
    let qemu = conversation(QEMU, &dir);
    assert_eq!(godwit, qemu);
}
