//! Migrating VMs with disks, between godwit processes driven through the monitor: shared
//! storage (both on one image file), `migrate -b` (whole disk) and `migrate -i` (the top
//! layer over a shared base), with the probe writing its disk throughout. `qemu-img` is
//! the oracle: the images compare identical, check clean, and hold what the guest wrote.

mod common;

use common::disk::{verify_exact, writes};
use common::hmp::{Hmp, info_field, info_num};
use common::migrate::{Node, Relay, node, wait_migration};
use common::{free_port, heartbeats, tmpdir, vm_lock};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(30);
/// The probe writes and re-verifies the first 8 MiB of its disk; it exits after 4 s.
const APPEND: &str = "probe.disk=8 probe.diskrate=1024 probe.diskverify=0 probe.exit=400";
const MIB: u64 = 1 << 20;

fn qemu_img(args: &[&str]) -> Output {
    Command::new("qemu-img")
        .args(args)
        .output()
        .expect("qemu-img (scripts/setup.sh installs qemu-utils)")
}

fn ok(o: Output) -> Output {
    assert!(
        o.status.success(),
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn create(fmt: &str, path: &Path, size: &str, base: Option<&str>) {
    let mut args = vec!["create", "-q", "-f", fmt];
    let opt;
    if let Some(b) = base {
        opt = format!("backing_file={b},backing_fmt=raw");
        args.extend(["-o", &opt]);
    }
    args.push(s(path));
    if base.is_none() {
        args.push(size);
    }
    ok(qemu_img(&args));
}

fn qemu_io(fmt: &str, path: &Path, cmd: &str) {
    ok(Command::new("qemu-io")
        .args(["-f", fmt, "-c", cmd, s(path)])
        .output()
        .expect("qemu-io"));
}

fn drive(path: &Path, fmt: &str) -> String {
    format!("file={},format={fmt},if=virtio", path.display())
}

/// `qemu-img check` passes (exit 0: no corruption, no leaks).
fn check_clean(img: &Path) {
    let o = qemu_img(&["check", "-U", s(img)]);
    assert!(
        o.status.success(),
        "qemu-img check {}: {}",
        img.display(),
        String::from_utf8_lossy(&o.stdout)
    );
}

fn identical(a: &Path, afmt: &str, b: &Path, bfmt: &str) -> bool {
    let o = qemu_img(&["compare", "-U", "-f", afmt, "-F", bfmt, s(a), s(b)]);
    o.status.code() == Some(0)
}

fn contents(img: &Path, fmt: &str) -> Vec<u8> {
    let out = PathBuf::from(format!("{}.contents", img.display()));
    ok(qemu_img(&["convert", "-U", "-f", fmt, "-O", "raw", s(img), s(&out)]));
    let v = std::fs::read(&out).unwrap();
    let _ = std::fs::remove_file(out);
    v
}

/// Bytes the top layer of `img` stores as data (`qemu-img map`, depth 0).
fn allocated_in_top(img: &Path) -> u64 {
    let o = ok(qemu_img(&["map", "-U", "--output=json", s(img)]));
    let text = String::from_utf8(o.stdout).unwrap();
    let mut total = 0;
    for line in text.lines() {
        let num = |key: &str| -> Option<u64> {
            let rest = &line[line.find(&format!("\"{key}\": "))? + key.len() + 4..];
            rest.split([',', '}']).next()?.trim().parse().ok()
        };
        if num("depth") == Some(0) && line.contains("\"data\": true") {
            total += num("length").unwrap();
        }
    }
    total
}

/// The destination runs the guest to its exit; nothing went wrong on its disk. Returns the
/// number of writes the guest made in all (before and after the move).
fn run_to_exit(dst: &mut Node) -> u64 {
    common::migrate::run_disk_guest_to_exit(dst);
    writes(&dst.g.seen)
}

/// The number of the last `DISKVERIFY n ok` seen.
fn last_verify(n: &Node) -> u64 {
    n.g.seen
        .iter()
        .rev()
        .find_map(|l| l.text.strip_prefix("DISKVERIFY ")?.strip_suffix(" ok")?.parse().ok())
        .unwrap_or(0)
}

fn incoming() -> String {
    format!("tcp:127.0.0.1:{}", free_port())
}

/// Starts the source with the probe's disk workload and waits for its first verify pass.
fn source(dir: &Path, extra: &[&str]) -> Node {
    source_with(dir, APPEND, extra)
}

fn source_with(dir: &Path, append: &str, extra: &[&str]) -> Node {
    let mut n = node(dir, "src", "256M", "1", append, extra);
    n.g.wait_for("DISKVERIFY 1 ok", T);
    n
}

/// Starts a destination and waits until it listens (its monitor comes up a moment before).
fn destination(dir: &Path, name: &str, append: &str, extra: &[&str]) -> Node {
    let mut n = node(dir, name, "256M", "1", append, extra);
    let end = Instant::now() + T;
    while !n.mon.cmd("info migrate").contains("socket address") {
        assert!(Instant::now() < end, "{name} never listened");
        std::thread::sleep(Duration::from_millis(10));
    }
    n
}

fn completed(src: &mut Node) -> String {
    let info = wait_migration(&mut src.mon, Duration::from_secs(120));
    assert_eq!(info_field(&info, "Migration status"), Some("completed"), "{info}");
    assert_eq!(src.mon.cmd("info status"), "VM status: paused (postmigrate)\n");
    info
}

#[test]
fn shared_storage_hands_the_image_over() {
    let _l = vm_lock();
    let dir = tmpdir("bmig-shared");
    let img = dir.join("vm.qcow2");
    create("qcow2", &img, "64M", None);
    let d = drive(&img, "qcow2");
    // Runs 8 s: a cancelled hand-over first, then the real one.
    let append = APPEND.replace("probe.exit=400", "probe.exit=800");
    let mut src = source_with(&dir, &append, &["-no-reboot", "-drive", &d]);
    // A cancelled hand-over leaves the image with the source, which writes on.
    src.mon.cmd("migrate_set_speed 16k");
    let inc = incoming();
    let mut gone = destination(&dir, "dst0", &append, &["-drive", &d, "-incoming", &inc]);
    assert_eq!(src.mon.cmd(&format!("migrate -d {inc}")), "");
    let end = Instant::now() + T;
    while info_num(&src.mon.cmd("info migrate"), "transferred ram").unwrap_or(0) < 32 {
        assert!(Instant::now() < end, "the migration never got going");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(src.mon.cmd("migrate_cancel"), "");
    let info = wait_migration(&mut src.mon, T);
    assert_eq!(info_field(&info, "Migration status"), Some("cancelled"), "{info}");
    assert_eq!(gone.g.wait_exit(T).code(), Some(1));
    assert_eq!(src.mon.cmd("info status"), "VM status: running\n");
    src.g.wait_for(&format!("DISKVERIFY {} ok", last_verify(&src) + 1), T);
    src.mon.cmd("migrate_set_speed 10g");
    // The destination opens the image the source is writing, without taking it over.
    let inc = incoming();
    let mut dst = destination(&dir, "dst", APPEND, &["-no-reboot", "-drive", &d, "-incoming", &inc]);
    assert!(
        dst.mon
            .cmd("info block")
            .contains(&format!("virtio0 (#block100): {} (qcow2)", img.display()))
    );
    assert_eq!(src.mon.cmd_timeout(&format!("migrate {inc}"), Duration::from_secs(60)), "");
    let info = completed(&mut src);
    assert!(!info.contains("disk"), "no disk data moves with shared storage: {info}");
    destination_keeps_the_image(&mut src, &mut dst, &img);
}

/// The destination owns the shared image and runs: the paused source's `cont` is refused
/// by the image lock. Once the destination's guest has exited, every write of both
/// processes is in the image, none lost or doubled.
fn destination_keeps_the_image(src: &mut Node, dst: &mut Node, img: &Path) {
    let refused = src.mon.cmd("cont");
    assert!(
        refused.starts_with("Error: ") && refused.contains("Failed to get \"write\" lock"),
        "{refused}"
    );
    assert_eq!(src.mon.cmd("info status"), "VM status: paused (postmigrate)\n");
    let w = run_to_exit(dst);
    src.mon.send_raw(b"quit\n");
    assert_eq!(src.g.wait_exit(T).code(), Some(0));
    check_clean(img);
    verify_exact(&contents(img, "qcow2"), 8, w).unwrap();
}

#[test]
fn full_copy_to_an_empty_raw_image() {
    let _l = vm_lock();
    let dir = tmpdir("bmig-full");
    let (src_img, dst_img) = (dir.join("src.qcow2"), dir.join("dst.raw"));
    create("qcow2", &src_img, "64M", None);
    qemu_io("qcow2", &src_img, "write -P 0x5a 24M 24M");
    create("raw", &dst_img, "64M", None);
    let mut src = source(&dir, &["-no-reboot", "-drive", &drive(&src_img, "qcow2")]);
    let inc = incoming();
    let dd = drive(&dst_img, "raw");
    let mut dst = destination(&dir, "dst", APPEND, &["-no-reboot", "-S", "-drive", &dd, "-incoming", &inc]);
    // Slow enough that the synchronous command shows its progress at least once.
    src.mon.cmd("migrate_set_speed 16m");
    let out = src.mon.cmd_timeout(&format!("migrate -b {inc}"), Duration::from_secs(60));
    assert!(out.contains("Completed ") && out.ends_with("\n"), "{out:?}");
    let info = completed(&mut src);
    assert_eq!(info_field(&info, "remaining ram"), Some("0 kbytes"), "{info}");
    // The destination shows its own progress on stdout, as QEMU did: a line, then
    // `Completed N %` each ended by a carriage return, the last one by a newline.
    dst.g.wait_for("Receiving block device images", T);
    let progress = dst.g.wait_for("Completed ", T).text;
    assert!(
        progress.starts_with("Completed ") && progress.ends_with("Completed 100 %"),
        "{progress:?}"
    );
    // Both sides frozen: the destination's disk is the source's, byte for byte.
    assert!(identical(&src_img, "qcow2", &dst_img, "raw"), "images differ after -b");
    // Unallocated regions were not written out as data.
    let map = String::from_utf8(ok(qemu_img(&["map", "--output=json", "-f", "raw", "-U", s(&dst_img)])).stdout).unwrap();
    assert!(map.contains("\"data\": false"), "{map}");
    assert_eq!(dst.mon.cmd("cont"), "");
    let w = run_to_exit(&mut dst);
    src.mon.send_raw(b"quit\n");
    check_clean(&src_img);
    let raw = std::fs::read(&dst_img).unwrap();
    verify_exact(&raw, 8, w).unwrap();
    assert!(raw[(24 * MIB) as usize..(48 * MIB) as usize].iter().all(|b| *b == 0x5a));
}

#[test]
fn incremental_copy_of_an_overlay_over_a_shared_base() {
    let _l = vm_lock();
    let dir = tmpdir("bmig-inc");
    let base = dir.join("base.raw");
    create("raw", &base, "64M", None);
    qemu_io("raw", &base, "write -P 0x11 16M 32M");
    let base_bytes = std::fs::read(&base).unwrap();
    let (src_img, dst_img) = (dir.join("src.qcow2"), dir.join("dst.qcow2"));
    create("qcow2", &src_img, "", Some("base.raw"));
    qemu_io("qcow2", &src_img, "write -P 0x5a 20M 4M");
    qemu_io("qcow2", &src_img, "write -z 40M 1M");
    create("qcow2", &dst_img, "", Some("base.raw"));
    let mut src = source(&dir, &["-no-reboot", "-drive", &drive(&src_img, "qcow2")]);
    let inc = incoming();
    let dd = drive(&dst_img, "qcow2");
    let mut dst = destination(&dir, "dst", APPEND, &["-no-reboot", "-S", "-drive", &dd, "-incoming", &inc]);
    assert!(
        src.mon
            .cmd_timeout(&format!("migrate -i {inc}"), Duration::from_secs(60))
            .ends_with('\n')
    );
    completed(&mut src);
    assert!(identical(&src_img, "qcow2", &dst_img, "qcow2"), "images differ after -i");
    assert_eq!(dst.mon.cmd("cont"), "");
    let w = run_to_exit(&mut dst);
    src.mon.send_raw(b"quit\n");
    check_clean(&src_img);
    check_clean(&dst_img);
    let raw = contents(&dst_img, "qcow2");
    verify_exact(&raw, 8, w).unwrap();
    assert!(raw[(20 * MIB) as usize..(24 * MIB) as usize].iter().all(|b| *b == 0x5a));
    assert!(raw[(40 * MIB) as usize..(41 * MIB) as usize].iter().all(|b| *b == 0));
    assert!(raw[(41 * MIB) as usize..(48 * MIB) as usize].iter().all(|b| *b == 0x11));
    assert_eq!(std::fs::read(&base).unwrap(), base_bytes, "the shared base was written");
}

#[test]
fn incremental_sends_only_the_top_layer_and_refuses_another_base() {
    let _l = vm_lock();
    let dir = tmpdir("bmig-wire");
    let (base, other) = (dir.join("base.raw"), dir.join("other.raw"));
    create("raw", &base, "256M", None);
    qemu_io("raw", &base, "write -P 0x11 0 128M");
    create("raw", &other, "256M", None);
    qemu_io("raw", &other, "write -P 0x22 0 1M");
    let (src_img, wrong, dst_img) = (dir.join("src.qcow2"), dir.join("wrong.qcow2"), dir.join("dst.qcow2"));
    create("qcow2", &src_img, "", Some("base.raw"));
    qemu_io("qcow2", &src_img, "write -P 0x5a 4M 16M");
    qemu_io("qcow2", &src_img, "write -P 0x5b 200M 8M");
    create("qcow2", &wrong, "", Some("other.raw"));
    create("qcow2", &dst_img, "", Some("base.raw"));
    // A quiet guest: only what qemu-io put in the overlay is there to send.
    let quiet = "probe.disk=0";
    let mut src = node(&dir, "src", "256M", "1", quiet, &["-drive", &drive(&src_img, "qcow2")]);
    src.g.wait_for("HB 20", T);

    // A destination whose overlay sits on another base is refused before any data moves.
    let inc = incoming();
    let mut bad = destination(&dir, "bad", quiet, &["-drive", &drive(&wrong, "qcow2"), "-incoming", &inc]);
    assert_eq!(src.mon.cmd(&format!("migrate -d -i {inc}")), "");
    let info = wait_migration(&mut src.mon, T);
    let status = info_field(&info, "Migration status").unwrap();
    assert!(
        status.starts_with("failed (the destination refused: disk 'virtio0': the source's image has a base of 268435456 bytes"),
        "{info}"
    );
    assert_eq!(src.mon.cmd("info status"), "VM status: running\n");
    assert_eq!(bad.g.wait_exit(T).code(), Some(1));
    assert!(bad.g.stderr().contains("load of migration failed: "), "{}", bad.g.stderr());
    assert_eq!(allocated_in_top(&wrong), 0, "the refused destination's image was written");

    let inc = incoming();
    let mut dst = destination(&dir, "dst", quiet, &["-S", "-drive", &drive(&dst_img, "qcow2"), "-incoming", &inc]);
    let port: u16 = inc.rsplit(':').next().unwrap().parse().unwrap();
    let relay = Relay::start(port);
    src.mon
        .cmd_timeout(&format!("migrate -i tcp:127.0.0.1:{}", relay.port), Duration::from_secs(60));
    let info = completed(&mut src);
    let ram = info_num(&info, "transferred ram").unwrap() << 10;
    let top = allocated_in_top(&src_img);
    assert_eq!(top, 24 * MIB);
    let expect = top + ram;
    let sent = relay.sent();
    assert!(
        sent.abs_diff(expect) * 20 <= expect,
        "{sent} bytes on the wire, expected {top} (top layer) + {ram} (RAM) within 5%"
    );
    assert!(identical(&src_img, "qcow2", &dst_img, "qcow2"));
    assert_eq!(
        allocated_in_top(&dst_img),
        top,
        "the destination's overlay holds exactly the top layer"
    );
    dst.mon.send_raw(b"quit\n");
    src.mon.send_raw(b"quit\n");
    check_clean(&dst_img);
}

/// Waits until the disk copy has moved some data.
fn wait_disk_progress(src: &mut Node) {
    let end = Instant::now() + T;
    loop {
        let t = src.mon.cmd("info migrate");
        if info_num(&t, "transferred disk").unwrap_or(0) > 1024 {
            assert_eq!(info_num(&t, "total disk"), Some(64 << 10), "{t}");
            return;
        }
        assert!(Instant::now() < end, "the disk copy never started: {t}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn cancel_and_a_dead_destination_leave_the_source_and_its_disk_intact() {
    let _l = vm_lock();
    let dir = tmpdir("bmig-cancel");
    let src_img = dir.join("src.qcow2");
    create("qcow2", &src_img, "64M", None);
    qemu_io("qcow2", &src_img, "write -P 0x5a 16M 48M");
    let append = "probe.disk=8 probe.diskrate=1024 probe.diskverify=0 probe.exit=600";
    let mut src = node(
        &dir,
        "src",
        "256M",
        "1",
        append,
        &["-no-reboot", "-drive", &drive(&src_img, "qcow2")],
    );
    src.g.wait_for("DISKVERIFY 1 ok", T);
    src.mon.cmd("migrate_set_speed 4m");

    let (d1, d2) = (dir.join("d1.raw"), dir.join("d2.raw"));
    create("raw", &d1, "64M", None);
    create("raw", &d2, "64M", None);
    let inc = incoming();
    let mut dst = destination(&dir, "dst1", append, &["-drive", &drive(&d1, "raw"), "-incoming", &inc]);
    assert_eq!(src.mon.cmd(&format!("migrate -d -b {inc}")), "");
    wait_disk_progress(&mut src);
    assert_eq!(src.mon.cmd("migrate_cancel"), "");
    let info = wait_migration(&mut src.mon, T);
    assert_eq!(info_field(&info, "Migration status"), Some("cancelled"), "{info}");
    assert_eq!(src.mon.cmd("info status"), "VM status: running\n");
    assert_eq!(dst.g.wait_exit(T).code(), Some(1));

    let inc = incoming();
    let mut dst = destination(&dir, "dst2", append, &["-drive", &drive(&d2, "raw"), "-incoming", &inc]);
    assert_eq!(src.mon.cmd(&format!("migrate -d -b {inc}")), "");
    wait_disk_progress(&mut src);
    dst.g.child.kill().unwrap();
    let info = wait_migration(&mut src.mon, T);
    assert!(info_field(&info, "Migration status").unwrap().starts_with("failed ("), "{info}");
    assert_eq!(src.mon.cmd("info status"), "VM status: running\n");

    // The guest ran on throughout, and its disk holds everything it wrote.
    let raw = source_ran_on(&mut src, &src_img);
    assert!(raw[(16 * MIB) as usize..].iter().all(|b| *b == 0x5a));
}

/// The source's guest runs to its exit with no disk error, and its qcow2 image checks
/// clean and holds exactly what the guest wrote; returns the image's contents.
fn source_ran_on(src: &mut Node, img: &Path) -> Vec<u8> {
    src.g.wait_for("PROBE EXIT", Duration::from_secs(60));
    assert_eq!(src.g.wait_exit(T).code(), Some(0), "{}", src.g.stderr());
    assert!(
        !src.g
            .seen
            .iter()
            .any(|l| ["MISMATCH", "bad=", "DISK ERROR"].iter().any(|b| l.text.contains(b)))
    );
    check_clean(img);
    let raw = contents(img, "qcow2");
    verify_exact(&raw, 8, writes(&src.g.seen)).unwrap();
    raw
}

/// The destination's answer to END never reaches the source (a relay drops it). The source
/// cannot know whether the destination runs the guest, so it stays paused after its stall
/// timeout and says so; the image lock keeps its `cont` from running a second copy of the
/// guest, while the destination, which did load, runs on.
#[test]
fn a_lost_answer_leaves_the_source_paused_and_the_image_with_the_destination() {
    let _l = vm_lock();
    let dir = tmpdir("bmig-lost");
    let img = dir.join("vm.qcow2");
    create("qcow2", &img, "64M", None);
    let d = drive(&img, "qcow2");
    let append = APPEND.replace("probe.exit=400", "probe.exit=1600");
    let second = dir.join("src2.sock");
    let second_spec = format!("unix:{},server,nowait", second.display());
    let mut src = source_with(&dir, &append, &["-no-reboot", "-drive", &d, "-monitor", &second_spec]);
    let port = free_port();
    let inc = format!("tcp:127.0.0.1:{port}");
    let mut dst = destination(&dir, "dst", &append, &["-no-reboot", "-drive", &d, "-incoming", &inc]);
    let relay = Relay::start_with(port, false);
    assert_eq!(src.mon.cmd(&format!("migrate -d tcp:127.0.0.1:{}", relay.port)), "");
    // The destination loads and runs while the source waits for an answer. Its passes
    // go on from the source's count, which may be past the lines read from it so far.
    let floor = last_verify(&src);
    let first = dst.g.wait_for("DISKVERIFY ", T);
    let n: u64 = first
        .text
        .strip_prefix("DISKVERIFY ")
        .and_then(|t| t.strip_suffix(" ok")?.parse().ok())
        .unwrap_or(0);
    assert!(n > floor, "the destination's first disk pass: {:?} (source at {floor})", first.text);
    // A `stop` on another monitor waits for the outcome, but queries do not wait behind it.
    let stopper = std::thread::spawn(move || Hmp::unix(&second).cmd_timeout("stop", Duration::from_secs(30)));
    std::thread::sleep(Duration::from_millis(300));
    let asked = Instant::now();
    let info = src.mon.cmd("info migrate");
    assert!(asked.elapsed() < Duration::from_secs(2), "info migrate took {:?}", asked.elapsed());
    assert_eq!(info_field(&info, "Migration status"), Some("active"), "{info}");
    assert!(!stopper.is_finished(), "the stop did not wait for the switch-over");
    // A monitor command that pauses the VM and lets it run again (`info registers`) waits
    // for the outcome: it must not run the source's guest in the middle of a switch-over.
    let regs = src.mon.cmd_timeout("info registers", Duration::from_secs(30));
    assert!(regs.contains("RIP="), "{regs}");
    let status = src.mon.cmd("info status");
    src.g.collect_for(Duration::from_millis(200));
    let ran = heartbeats(&src.g.collect_for(Duration::from_millis(500)));
    assert!(status == "VM status: paused (postmigrate)\n" && ran.is_empty(), "{status} {ran:?}");
    let info = wait_migration(&mut src.mon, T);
    let status = info_field(&info, "Migration status").unwrap();
    assert!(
        status.starts_with("failed (the destination did not confirm the switch-over within 10 s; the VM stays paused"),
        "{info}"
    );
    assert_eq!(src.mon.cmd("info status"), "VM status: paused (postmigrate)\n");
    assert_eq!(stopper.join().unwrap(), "");
    destination_keeps_the_image(&mut src, &mut dst, &img);
}

/// An interactive qemu-io on `img`, once it holds the image's write lock (`qemu-img info`
/// is then refused). `qemu-img info` locks the image for a moment itself: a qemu-io that
/// starts in that moment gives up, so it is started again.
fn hold_with_qemu_io(img: &Path) -> std::process::Child {
    use std::process::Stdio;
    let spawn = || {
        Command::new("qemu-io")
            .args(["-f", "qcow2", s(img)])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn qemu-io")
    };
    let mut child = spawn();
    let end = Instant::now() + T;
    loop {
        assert!(Instant::now() < end, "qemu-io never locked {}", img.display());
        let held = || !qemu_img(&["info", s(img)]).status.success();
        if held() {
            std::thread::sleep(Duration::from_millis(100));
            if matches!(child.try_wait(), Ok(None)) && held() {
                return child;
            }
        }
        if matches!(child.try_wait(), Ok(Some(_))) {
            child = spawn();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The destination answers END with the outcome of its load; one that cannot take its
/// images over at the switch-over (another process holds one) makes the migration fail,
/// and the source's guest runs on with its own images, as if nothing had been tried. The
/// destination had already taken the first, truly shared image: it lets go of it before
/// it answers, or the source could not take it back and would have to stay paused.
#[test]
fn a_destination_failing_at_the_switch_over_leaves_the_source_running() {
    let _l = vm_lock();
    let dir = tmpdir("bmig-late");
    let shared = dir.join("shared.qcow2");
    let (src_img, dst_img) = (dir.join("src.qcow2"), dir.join("dst.qcow2"));
    for img in [&shared, &src_img, &dst_img] {
        create("qcow2", img, "64M", None);
    }
    let append = APPEND.replace("probe.exit=400", "probe.exit=600");
    let on_shared = drive(&shared, "qcow2");
    let mut src = source_with(
        &dir,
        &append,
        &["-no-reboot", "-drive", &on_shared, "-drive", &drive(&src_img, "qcow2")],
    );
    let inc = incoming();
    // The second disk is shared storage as far as the source knows: the destination opens
    // its image without locks, so a qemu-io can take it meanwhile and refuse it the
    // hand-over at END, after the first disk's.
    let mut dst = destination(
        &dir,
        "dst",
        &append,
        &["-drive", &on_shared, "-drive", &drive(&dst_img, "qcow2"), "-incoming", &inc],
    );
    let mut holder = hold_with_qemu_io(&dst_img);
    src.mon.cmd_timeout(&format!("migrate {inc}"), Duration::from_secs(60));
    let info = wait_migration(&mut src.mon, T);
    let status = info_field(&info, "Migration status").unwrap();
    assert!(
        status.starts_with("failed (the destination could not load the migration: ")
            && status.contains("Failed to get \"write\" lock")
            && status.contains("dst.qcow2"),
        "{info}"
    );
    assert_eq!(src.mon.cmd("info status"), "VM status: running\n");
    assert_eq!(dst.g.wait_exit(T).code(), Some(1));
    drop(holder.stdin.take());
    let _ = holder.wait();

    // The source took its images back and wrote on: every write is there.
    src.g.wait_for(&format!("DISKVERIFY {} ok", last_verify(&src) + 1), T);
    source_ran_on(&mut src, &shared);
    // The destination's own image was never written.
    check_clean(&dst_img);
    assert!(contents(&dst_img, "qcow2").iter().all(|b| *b == 0));
}

#[test]
fn two_disks_at_once_and_a_sparse_raw_source_costs_only_its_data() {
    let _l = vm_lock();
    let dir = tmpdir("bmig-two");
    let (a_src, a_dst) = (dir.join("a.qcow2"), dir.join("a-dst.qcow2"));
    let (b_src, b_dst) = (dir.join("b.raw"), dir.join("b-dst.qcow2"));
    create("qcow2", &a_src, "64M", None);
    create("qcow2", &a_dst, "64M", None);
    // 1 GiB of raw image, 8 MiB of it data: the holes must cost nothing.
    create("raw", &b_src, "1G", None);
    qemu_io("raw", &b_src, "write -P 0x77 512M 8M");
    create("qcow2", &b_dst, "1G", None);
    let data_a = format!("file={},if=virtio,id=data", b_src.display());
    let mut src = source(&dir, &["-no-reboot", "-drive", &drive(&a_src, "qcow2"), "-drive", &data_a]);
    let inc = incoming();
    let (da, db) = (drive(&a_dst, "qcow2"), format!("file={},if=virtio,id=data", b_dst.display()));
    let mut dst = destination(
        &dir,
        "dst",
        APPEND,
        &["-no-reboot", "-S", "-drive", &da, "-drive", &db, "-incoming", &inc],
    );
    let port: u16 = inc.rsplit(':').next().unwrap().parse().unwrap();
    let relay = Relay::start(port);
    // The `block` capability instead of -b (as QEMU 7.2 has it); the two do not mix.
    assert_eq!(src.mon.cmd("migrate_set_capability block on"), "");
    assert!(src.mon.cmd("info migrate_capabilities").contains("\nblock: on\n"));
    let target = format!("tcp:127.0.0.1:{}", relay.port);
    assert_eq!(
        src.mon.cmd(&format!("migrate -b {target}")),
        "Error: Command options are incompatible with current migration capabilities\n"
    );
    src.mon.cmd_timeout(&format!("migrate {target}"), Duration::from_secs(60));
    let info = completed(&mut src);
    let ram = info_num(&info, "transferred ram").unwrap() << 10;
    // The qcow2 disk holds at most the probe's 8 MiB; resent granules and records add little.
    let sent = relay.sent();
    assert!(
        sent < ram + 8 * MIB + 8 * MIB + 2 * MIB,
        "{sent} bytes on the wire for ~16 MiB of disk data"
    );
    assert!(identical(&a_src, "qcow2", &a_dst, "qcow2"), "first disk differs");
    assert!(identical(&b_src, "raw", &b_dst, "qcow2"), "second disk differs");
    assert_eq!(allocated_in_top(&b_dst), 8 * MIB, "the sparse disk's holes were written");
    assert_eq!(dst.mon.cmd("cont"), "");
    let w = run_to_exit(&mut dst);
    src.mon.send_raw(b"quit\n");
    check_clean(&a_dst);
    check_clean(&b_dst);
    verify_exact(&contents(&a_dst, "qcow2"), 8, w).unwrap();
}

/// Polls the source's `info migrate` (up to a minute) until the migration leaves
/// setup/active/postcopy-active; asserts that it completed with pages sent in post-copy.
fn postcopy_completed(src: &mut Node) {
    let end = Instant::now() + Duration::from_secs(60);
    let info = loop {
        let t = src.mon.cmd("info migrate");
        let st = info_field(&t, "Migration status").unwrap_or("").to_string();
        if !["setup", "active", "postcopy-active"].contains(&st.as_str()) {
            break t;
        }
        assert!(Instant::now() < end, "{t}");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(info_field(&info, "Migration status"), Some("completed"), "{info}");
    assert!(info_num(&info, "postcopy ram").unwrap_or(0) > 0, "{info}");
}

/// Post-copy with shared storage: the image is handed over at the switch, RAM follows on
/// demand; the guest's writes before and after all land in the image, none lost or
/// doubled, and its RAM working set checks on the destination.
#[test]
fn postcopy_with_shared_storage_hands_the_image_over() {
    let _l = vm_lock();
    let dir = tmpdir("bmig-postcopy");
    let append = format!("{APPEND} probe.ws=32 probe.rate=32");
    let img = dir.join("vm.qcow2");
    create("qcow2", &img, "64M", None);
    let d = drive(&img, "qcow2");
    let mut src = source_with(&dir, &append, &["-no-reboot", "-drive", &d]);
    let inc = incoming();
    let mut dst = destination(&dir, "dst", &append, &["-no-reboot", "-drive", &d, "-incoming", &inc]);
    for n in [&mut src, &mut dst] {
        assert_eq!(n.mon.cmd("migrate_set_capability postcopy-ram on"), "");
    }
    src.mon.cmd("migrate_set_speed 8m");
    assert_eq!(src.mon.cmd(&format!("migrate -d {inc}")), "");
    assert_eq!(src.mon.cmd("migrate_start_postcopy"), "");
    postcopy_completed(&mut src);
    assert_eq!(src.mon.cmd("info status"), "VM status: paused (postmigrate)\n");
    destination_keeps_the_image(&mut src, &mut dst, &img);
}

/// `migrate -b` with post-copy: the disk copy stays in pre-copy and is complete at the
/// switch (its last writes go in the pause); the images compare identical while both
/// sides are frozen, and the guest then runs on with every block and page right.
#[test]
fn postcopy_after_a_full_disk_copy() {
    let _l = vm_lock();
    let dir = tmpdir("bmig-postcopy-full");
    let append = format!("{APPEND} probe.ws=32 probe.rate=32");
    let (src_img, dst_img) = (dir.join("src.qcow2"), dir.join("dst.raw"));
    create("qcow2", &src_img, "64M", None);
    create("raw", &dst_img, "64M", None);
    let mut src = source_with(&dir, &append, &["-no-reboot", "-drive", &drive(&src_img, "qcow2")]);
    let inc = incoming();
    let dd = drive(&dst_img, "raw");
    let mut dst = destination(&dir, "dst", &append, &["-no-reboot", "-S", "-drive", &dd, "-incoming", &inc]);
    for n in [&mut src, &mut dst] {
        assert_eq!(n.mon.cmd("migrate_set_capability postcopy-ram on"), "");
    }
    assert_eq!(src.mon.cmd(&format!("migrate -d -b {inc}")), "");
    assert_eq!(src.mon.cmd("migrate_start_postcopy"), "");
    postcopy_completed(&mut src);
    assert!(
        identical(&src_img, "qcow2", &dst_img, "raw"),
        "images differ after -b with post-copy"
    );
    assert_eq!(dst.mon.cmd("cont"), "");
    let w = run_to_exit(&mut dst);
    src.mon.send_raw(b"quit\n");
    check_clean(&src_img);
    verify_exact(&std::fs::read(&dst_img).unwrap(), 8, w).unwrap();
}
