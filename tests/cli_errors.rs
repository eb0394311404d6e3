//! Bad input on the command line: one line on stderr in QEMU's form, exit status 1, and
//! never a panic.

mod common;

use std::process::Command;

fn run(args: &[&str], env: Option<(&str, &str)>) -> (i32, String) {
    let mut c = Command::new(common::godwit_bin());
    c.args(args);
    if let Some((k, v)) = env {
        c.env(k, v);
    }
    let out = c.output().expect("run godwit");
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).into_owned())
}

fn expect_error(args: &[&str], env: Option<(&str, &str)>, want: &str) {
    let (code, err) = run(args, env);
    assert_eq!(code, 1, "{args:?}: {err}");
    assert!(!err.contains("panicked"), "{args:?} panicked: {err}");
    assert_eq!(err.lines().count(), 1, "{args:?} printed more than one line: {err}");
    assert_eq!(err.trim_end(), want, "{args:?}");
}

#[test]
fn bad_inputs() {
    let tmp = std::env::temp_dir().join(format!("godwit-cli-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    let junk = tmp.join("junk.bin");
    std::fs::write(&junk, b"not a kernel").unwrap();
    let small_bios = tmp.join("small.bin");
    std::fs::write(&small_bios, vec![0u8; 1000]).unwrap();
    let j = junk.to_str().unwrap();

    expect_error(
        &["-kernel", "/nonexistent/bzImage"],
        None,
        "godwit: could not open kernel file '/nonexistent/bzImage': No such file or directory",
    );
    expect_error(&["-kernel", j], None, "godwit: invalid kernel header");
    expect_error(
        &["-bios", "/nonexistent/bios.bin"],
        None,
        "godwit: could not load PC BIOS '/nonexistent/bios.bin'",
    );
    expect_error(
        &["-bios", tmp.to_str().unwrap()],
        None,
        &format!("godwit: could not load PC BIOS '{}'", tmp.display()),
    );
    expect_error(
        &["-bios", small_bios.to_str().unwrap()],
        None,
        &format!("godwit: could not load PC BIOS '{}'", small_bios.display()),
    );
    expect_error(&["-m", "0", "-kernel", j], None, "godwit: -m 0: memory size must be at least 2 MiB");
    expect_error(
        &["-m", "abc", "-kernel", j],
        None,
        "godwit: -m abc: Parameter 'size' expects a non-negative number below 2^64",
    );
    expect_error(&["-foo"], None, "godwit: -foo: invalid option");
    expect_error(&["-kernel", j, "-m"], None, "godwit: -m: requires an argument");
    expect_error(
        &["-kernel", j, "-serial", "bogus"],
        None,
        "godwit: -serial bogus: 'bogus' is not a valid char driver",
    );
    expect_error(
        &["-kernel", j],
        Some(("GODWIT_KVM_DEVICE", "/nonexistent/kvm")),
        "godwit: Could not access KVM kernel module (/nonexistent/kvm): No such file or directory",
    );
    let (code, err) = run(&["-m", "99999999G", "-kernel", j], None);
    assert_eq!(code, 1, "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("godwit: ") && err.contains("guest memory"), "{err}");
    std::fs::remove_dir_all(&tmp).ok();
}

#[test]
fn informational_options_exit_zero() {
    for args in [&["-version"][..], &["-h"], &["-machine", "help"], &["-cpu", "help"]] {
        let out = Command::new(common::godwit_bin()).args(args).output().unwrap();
        assert!(out.status.success(), "{args:?}");
        assert!(!out.stdout.is_empty(), "{args:?}");
    }
    let v = Command::new(common::godwit_bin()).arg("-version").output().unwrap();
    assert!(String::from_utf8_lossy(&v.stdout).starts_with("godwit version "));
}
