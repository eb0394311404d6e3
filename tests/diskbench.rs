//! The probe's disk benchmark (`probe.diskbench=1`, docs/probe.md) through godwit's virtio-blk,
//! on a qcow2 overlay whose base holds data everywhere (first writes copy data up): every phase
//! reports, the read phases find what the write phases wrote, and afterwards the image holds
//! each block at the generation the run implies (2 from the benchmark, then the workload's).

mod common;

use common::disk::{verify_exact, writes};
use common::{Guest, field, probe, tmpdir, vm_lock};
use std::process::Command;
use std::time::Duration;

const MIB: u64 = 8;

fn qemu_img(args: &[&str]) {
    let o = Command::new("qemu-img")
        .args(args)
        .output()
        .expect("qemu-img (scripts/setup.sh installs qemu-utils)");
    assert!(o.status.success(), "qemu-img {args:?}: {}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn diskbench_on_a_copy_on_write_overlay() {
    let _l = vm_lock();
    let d = tmpdir("diskbench");
    let (base, top, out) = (d.join("base.raw"), d.join("top.qcow2"), d.join("contents.raw"));
    std::fs::write(&base, vec![0xa5u8; (MIB << 20) as usize]).unwrap();
    qemu_img(&[
        "create",
        "-q",
        "-f",
        "qcow2",
        "-o",
        "backing_file=base.raw,backing_fmt=raw",
        top.to_str().unwrap(),
    ]);
    let p = probe();
    let mut g = Guest::godwit(&[
        "-m",
        "256",
        "-nographic",
        "-no-reboot",
        "-drive",
        &format!("file={},format=qcow2,if=virtio", top.display()),
        "-kernel",
        p.to_str().unwrap(),
        "-append",
        &format!("probe.disk={MIB} probe.diskbench=1 probe.diskflush=1 probe.diskrate=2048 probe.diskverify=0 probe.exit=400"),
    ]);
    g.wait_for("PROBE EXIT", Duration::from_secs(120));
    assert_eq!(g.wait_exit(Duration::from_secs(30)).code(), Some(0), "{}", g.stderr());
    for bad in ["DISK MISMATCH", "DISK ERROR", "DISK NONE", "DISKVERIFY 1 bad"] {
        assert!(!g.seen.iter().any(|l| l.text.contains(bad)), "{bad}: {:#?}", g.seen);
    }
    let phases: Vec<&str> = g
        .seen
        .iter()
        .filter_map(|l| l.text.strip_prefix("DISKBENCH "))
        .inspect(|rest| {
            assert_eq!(field(rest, "ops"), Some(&*(MIB * 128).to_string()), "{rest}");
            assert_eq!(field(rest, "bad"), Some("0"), "{rest}");
            assert!(field(rest, "us").is_some_and(|v| v.parse::<u64>().is_ok_and(|us| us > 0)), "{rest}");
        })
        .map(|rest| rest.split_whitespace().next().unwrap_or(""))
        .collect();
    assert_eq!(
        phases,
        ["seqwrite", "randwrite", "seqrewrite", "randrewrite", "seqread", "randread"]
    );
    let flushed = g
        .seen
        .iter()
        .filter(|l| l.text.starts_with("DISKBENCH") && !l.text.contains("flush_us=0 "));
    assert_eq!(flushed.count(), 4, "a flush after each write phase: {:#?}", g.seen);
    assert!(
        g.seen.iter().any(|l| l.text == "DISKVERIFY 1 ok"),
        "the workload's verifier did not pass"
    );

    qemu_img(&["check", "-q", top.to_str().unwrap()]);
    qemu_img(&["convert", "-f", "qcow2", "-O", "raw", top.to_str().unwrap(), out.to_str().unwrap()]);
    // Two benchmark writes per block, then the workload's writes round-robin.
    let w = writes(&g.seen) + 2 * MIB * 256;
    verify_exact(&std::fs::read(&out).unwrap(), MIB, w).unwrap();
    let _ = std::fs::remove_dir_all(&d);
}
