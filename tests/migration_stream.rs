//! Migration through a file (`exec:`), what a destination does with damaged streams, the
//! deferred destination, and the speed and downtime limits checked against what this test
//! measures itself.

mod common;

use common::hmp::{info_field, info_num};
use common::migrate::{node, wait_migration};
use common::{Guest, free_port, heartbeats, probe, tmpdir, vm_lock};
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(30);

/// (offset, length) of each record after the 16-byte header.
fn records(stream: &[u8]) -> Vec<(usize, usize)> {
    let mut v = Vec::new();
    let mut at = 16;
    while at + 8 <= stream.len() {
        let len = u32::from_le_bytes(stream[at + 4..at + 8].try_into().unwrap()) as usize;
        v.push((at, 12 + len));
        at += 12 + len;
    }
    assert_eq!(at, stream.len(), "the stream does not parse as records");
    v
}

fn load(path: &std::path::Path) -> (Option<i32>, String) {
    let p = probe();
    let spec = format!("exec:cat {}", path.display());
    let out = std::process::Command::new(common::godwit_bin())
        .args([
            "-m",
            "256",
            "-smp",
            "2",
            "-display",
            "none",
            "-serial",
            "null",
            "-kernel",
            p.to_str().unwrap(),
            "-incoming",
            &spec,
        ])
        .output()
        .unwrap();
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn save_to_a_file_restore_and_refuse_damage() {
    let _l = vm_lock();
    let dir = tmpdir("mig-file");
    let file = dir.join("state.bin");
    let append = "probe.ws=16 probe.rate=10";
    let mut src = node(&dir, "src", "256", "2", append, &[]);
    src.g.wait_for("VERIFY 2 ok", T);
    assert_eq!(src.mon.cmd(&format!("migrate \"exec:cat > {}\"", file.display())), "");
    let info = src.mon.cmd("info migrate");
    assert_eq!(info_field(&info, "Migration status"), Some("completed"), "{info}");
    let size = std::fs::metadata(&file).unwrap().len();
    assert_eq!(
        info_num(&info, "transferred ram"),
        Some(size >> 10),
        "info migrate counts every byte the file holds: {info}"
    );
    src.g.collect_for(Duration::from_millis(200));
    let last = *heartbeats(&src.g.seen).last().unwrap();
    src.mon.quit();

    // Restore on a fresh process from the file: the guest carries on.
    let p = probe();
    let spec = format!("exec:cat {}", file.display());
    let mut dst = Guest::godwit(&[
        "-m",
        "256",
        "-smp",
        "2",
        "-display",
        "none",
        "-serial",
        "stdio",
        "-kernel",
        p.to_str().unwrap(),
        "-incoming",
        &spec,
    ]);
    dst.wait_for("VERIFY", T);
    let hb = heartbeats(&dst.seen);
    assert!(
        hb[0] == last + 1 || hb[0] == last + 2,
        "restored guest starts at HB {} after HB {last}",
        hb[0]
    );
    assert!(
        !dst.seen
            .iter()
            .any(|l| l.text.contains("MISMATCH") || l.text.contains("PROBE READY"))
    );
    drop(dst);

    // Damage: cut at every record boundary, flip bytes, lie about a length or the version.
    let good = std::fs::read(&file).unwrap();
    let bad = dir.join("bad.bin");
    let mut cases: Vec<(Vec<u8>, &str)> = Vec::new();
    let recs = records(&good);
    for (at, _) in &recs {
        cases.push((good[..*at].to_vec(), "truncated"));
    }
    let (state_at, state_len) = *recs.iter().find(|(at, _)| good[*at] == 5).expect("a STATE record");
    for off in [17, recs[1].0 + 20, state_at + state_len / 2, good.len() - 6] {
        let mut b = good.clone();
        b[off] ^= 0x40;
        cases.push((b, "load of migration failed"));
    }
    let mut huge = good.clone();
    huge[recs[1].0 + 4..recs[1].0 + 8].copy_from_slice(&u32::MAX.to_le_bytes());
    cases.push((huge, "length"));
    let mut version = good.clone();
    version[8] = 7;
    cases.push((version, "migration stream version 7 is not supported"));
    let mut other_size = good.clone();
    other_size[16 + 8..16 + 16].copy_from_slice(&(512u64 << 20).to_le_bytes());
    cases.push((other_size, "load of migration failed"));
    for (i, (bytes, want)) in cases.iter().enumerate() {
        std::fs::write(&bad, bytes).unwrap();
        let (code, err) = load(&bad);
        assert_eq!(code, Some(1), "case {i}: {err}");
        assert!(
            err.contains("godwit: load of migration failed: ") && err.contains(want),
            "case {i}: {err}"
        );
        assert_eq!(err.lines().count(), 1, "case {i}: {err}");
        assert!(!err.contains("panicked"), "case {i}: {err}");
    }
}

#[test]
fn deferred_destination() {
    let _l = vm_lock();
    let dir = tmpdir("mig-defer");
    let mut src = node(&dir, "src", "256", "1", "", &[]);
    src.g.wait_for("HB 10", T);
    let mut dst = node(&dir, "dst", "256", "1", "", &["-incoming", "defer"]);
    assert_eq!(dst.mon.cmd("info status"), "VM status: paused (inmigrate)\n");
    assert_eq!(
        dst.mon.cmd("migrate_incoming bogus:1"),
        "Error: unknown migration protocol: bogus:1\n"
    );
    // The IPv6 form, over the loopback.
    let port = free_port();
    assert_eq!(dst.mon.cmd(&format!("migrate_incoming tcp:[::1]:{port}")), "");
    assert!(
        dst.mon
            .cmd("info migrate")
            .contains(&format!("socket address: [\n\ttcp:::1:{port}\n]\n"))
    );
    assert_eq!(
        dst.mon.cmd(&format!("migrate_incoming tcp:[::1]:{port}")),
        "Error: The incoming migration has already been started\n"
    );
    assert_eq!(
        src.mon.cmd("migrate_incoming tcp:0:1"),
        "Error: '-incoming' was not specified on the command line\n"
    );
    assert_eq!(
        dst.mon.cmd(&format!("migrate tcp:127.0.0.1:{port}")),
        "Error: Guest is waiting for an incoming migration\n"
    );
    src.mon.cmd(&format!("migrate -d tcp:[::1]:{port}"));
    let info = wait_migration(&mut src.mon, T);
    assert_eq!(info_field(&info, "Migration status"), Some("completed"), "{info}");
    dst.g.wait_for("HB", T);
    assert_eq!(dst.mon.cmd("info status"), "VM status: running\n");
}

#[test]
fn speed_limit_is_honoured_and_reported() {
    let _l = vm_lock();
    let dir = tmpdir("mig-speed");
    let file = dir.join("state.bin");
    // 96 MiB written slowly: pass 0 dominates, so the stream takes ~3 s at 32 MiB/s.
    let mut src = node(&dir, "src", "512", "1", "probe.ws=96 probe.rate=1", &[]);
    src.g.wait_for("VERIFY 1 ok", Duration::from_secs(60));
    assert_eq!(src.mon.cmd("migrate_set_speed 32m"), "");
    assert!(
        src.mon
            .cmd("info migrate_parameters")
            .contains("max-bandwidth: 33554432 bytes/second\n")
    );
    let start = Instant::now();
    src.mon.cmd(&format!("migrate -d \"exec:cat > {}\"", file.display()));
    let info = wait_migration(&mut src.mon, Duration::from_secs(60));
    let wall = start.elapsed().as_secs_f64();
    assert_eq!(info_field(&info, "Migration status"), Some("completed"), "{info}");
    let bytes = std::fs::metadata(&file).unwrap().len() as f64;
    let measured = bytes / wall;
    let limit = 32.0 * 1048576.0;
    assert!(bytes > 90.0 * 1048576.0, "{bytes} bytes");
    assert!(
        (measured - limit).abs() / limit < 0.10,
        "measured {:.1} MiB/s against a 32 MiB/s limit",
        measured / 1048576.0
    );
    // What info migrate reports agrees with the file and the clock.
    let total_ms = info_num(&info, "total time").unwrap() as f64;
    assert!(
        (total_ms / 1000.0 - wall).abs() < 0.3,
        "reported {total_ms} ms, measured {wall:.3} s"
    );
    let mbps: f64 = info_field(&info, "throughput")
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let reported = mbps * 1e6 / 8.0;
    assert!(
        (reported - measured).abs() / measured < 0.10,
        "reported {mbps} mbps, measured {:.1} MiB/s",
        measured / 1048576.0
    );
}

#[test]
fn downtime_reported_matches_the_pause_the_guest_saw() {
    let _l = vm_lock();
    let dir = tmpdir("mig-downtime");
    let append = "probe.ws=64 probe.rate=50";
    let mut src = node(&dir, "src", "1G", "2", append, &[]);
    src.g.wait_for("VERIFY 2 ok", T);
    let port = free_port();
    let inc = format!("tcp:127.0.0.1:{port}");
    let mut dst = node(&dir, "dst", "1G", "2", append, &["-incoming", &inc]);
    src.mon.cmd("migrate_set_downtime 0.05");
    assert!(src.mon.cmd("info migrate_parameters").contains("downtime-limit: 50 ms\n"));
    src.mon.cmd("migrate_set_speed 0");
    src.mon.cmd(&format!("migrate -d {inc}"));
    let info = wait_migration(&mut src.mon, T);
    assert_eq!(info_field(&info, "Migration status"), Some("completed"), "{info}");
    let reported = info_num(&info, "downtime").unwrap();
    dst.g.wait_for("VERIFY", T);
    src.g.collect_for(Duration::from_millis(300));
    // The pause the guest saw: from the source's last heartbeat to the destination's first.
    let last_src = src.g.seen.iter().rev().find(|l| l.text.starts_with("HB ")).unwrap().at;
    let first_dst = dst.g.seen.iter().find(|l| l.text.starts_with("HB ")).unwrap().at;
    let gap = first_dst.duration_since(last_src).as_millis() as u64;
    // The guest's pause includes the destination loading the state, so it is at least
    // the reported downtime, and not much more.
    assert!(gap + 15 >= reported, "guest paused {gap} ms, godwit reported {reported} ms");
    assert!(gap < reported + 500, "guest paused {gap} ms, godwit reported {reported} ms");
    assert!(reported <= 250, "downtime {reported} ms with a 50 ms limit on an unlimited link");
}

#[test]
fn stalled_destination_fails_and_paused_destination_waits() {
    let _l = vm_lock();
    let dir = tmpdir("mig-stall");
    let append = "probe.ws=128 probe.rate=10";
    let mut src = node(&dir, "src", "512", "1", append, &[]);
    src.g.wait_for("VERIFY 1 ok", Duration::from_secs(60));
    src.mon.cmd("migrate_set_speed 20m");
    // A destination that stops reading: the source gives up after its stall timeout.
    let port = free_port();
    let inc = format!("tcp:127.0.0.1:{port}");
    let dst = node(&dir, "dst1", "512", "1", append, &["-incoming", &inc]);
    src.mon.cmd(&format!("migrate -d {inc}"));
    common::migrate::wait_active(&mut src.mon);
    // SAFETY: plain kill(2) on our child.
    unsafe { libc::kill(dst.g.child.id() as i32, libc::SIGSTOP) };
    let info = wait_migration(&mut src.mon, Duration::from_secs(60));
    assert!(
        info_field(&info, "Migration status")
            .unwrap()
            .starts_with("failed (Unable to write to socket: "),
        "{info}"
    );
    assert_eq!(src.mon.cmd("info status"), "VM status: running\n");
    // SAFETY: as above.
    unsafe { libc::kill(dst.g.child.id() as i32, libc::SIGKILL) };
    drop(dst);

    // A destination started with -S loads the guest over a unix socket and waits for cont.
    let sock = dir.join("mig.sock");
    let inc = format!("unix:{}", sock.display());
    let mut dst = node(&dir, "dst2", "512", "1", append, &["-incoming", &inc, "-S"]);
    src.mon.cmd("migrate_set_speed 0");
    src.mon.cmd(&format!("migrate -d {inc}"));
    let info = wait_migration(&mut src.mon, T);
    assert_eq!(info_field(&info, "Migration status"), Some("completed"), "{info}");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(dst.mon.cmd("info status"), "VM status: paused\n");
    assert!(
        heartbeats(&dst.g.collect_for(Duration::from_millis(300))).is_empty(),
        "the destination ran before cont"
    );
    dst.mon.cmd("cont");
    dst.g.wait_for("VERIFY", T);
    assert!(!dst.g.seen.iter().any(|l| l.text.contains("MISMATCH") || l.text.contains("bad=")));
}
