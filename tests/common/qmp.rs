//! Running the QMP test scripts (tests/qmp/*.py) with the real client, qemu.qmp, from the
//! project's virtualenv (scripts/setup.sh makes it).
#![allow(dead_code)]

use super::root;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

pub fn venv_bin(name: &str) -> PathBuf {
    let p = root().join("build/qmp-venv/bin").join(name);
    assert!(
        p.exists(),
        "{} is missing: run scripts/setup.sh (it installs qemu.qmp)",
        p.display()
    );
    p
}

/// Runs `tests/qmp/SCRIPT` with `args`; panics with its output unless it passed.
pub fn run_script(script: &str, args: &[&str]) -> String {
    let out = Command::new(venv_bin("python3"))
        .arg(root().join("tests/qmp").join(script))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run python");
    let text = report(&out);
    assert!(out.status.success() && text.contains("PASS"), "{script} failed:\n{text}");
    println!("{text}");
    text
}

fn report(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// A scripted `qmp-shell` session: the lines go in on its standard input.
pub fn qmp_shell(socket: &str, lines: &str) -> String {
    use std::io::Write;
    let mut child = Command::new(venv_bin("qmp-shell"))
        .arg(socket)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run qmp-shell");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(lines.as_bytes())
        .expect("write to qmp-shell");
    report(&child.wait_with_output().expect("qmp-shell output"))
}
