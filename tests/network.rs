//! Guests on the network: virtio-net over a tap in a network namespace the test makes (a
//! bridge with the host's address, one tap per VM) and over user-mode networking, with
//! the probe answering ARP, ping and UDP echo; links switched off and on; a live migration
//! between two taps of one bridge while the test pings; snapshots; the seed-style command
//! line with the default ifup script; and bad input.

mod common;

use common::hmp::info_field;
use common::migrate::wait_migration;
use common::net::{GUEST_IP, Netns};
use common::{Guest, free_port, heartbeats, probe, tmpdir, vm_lock};
use std::net::UdpSocket;
use std::process::Command;
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(30);
const MAC: &str = "52:54:00:12:34:56";

fn append() -> String {
    format!("probe.ip={GUEST_IP}/24")
}

fn tap_nic(tap: &str) -> Vec<String> {
    vec![
        "-netdev".into(),
        format!("tap,id=n0,ifname={tap},script=no,downscript=no"),
        "-device".into(),
        "virtio-net-pci,netdev=n0".into(),
    ]
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

#[test]
fn ping_through_a_bridge_and_set_link() {
    let _l = vm_lock();
    let dir = tmpdir("net-ping");
    let ns = Netns::with_bridge("ping", &["tap0"]);
    let qmp = dir.join("qmp.sock");
    let mut args = tap_nic("tap0");
    args.extend(["-qmp".to_string(), format!("unix:{},server,nowait", qmp.display())]);
    let mut n = ns.node(&dir, "vm", &append(), &strs(&args));
    n.g.wait_for(&format!("NET eth0 mac={MAC} ip={GUEST_IP}/24"), T);
    // The gratuitous ARP at start taught the bridge where the guest is.
    let end = Instant::now() + T;
    while ns.port_of(MAC).as_deref() != Some("tap0") {
        assert!(Instant::now() < end, "the bridge never learnt {MAC}");
        std::thread::sleep(Duration::from_millis(50));
    }
    ns.wait_reachable(T);
    let p = ns.ping(50, Duration::from_millis(10));
    assert_eq!(p.lost(), 0, "{p:?}");

    assert_eq!(
        n.mon.cmd("info network"),
        format!(
            "virtio-net-pci.0: index=0,type=nic,model=virtio-net-pci,macaddr={MAC}\n \\ n0: index=0,type=tap,ifname=tap0,script=no,downscript=no\n"
        )
    );
    assert!(n.mon.cmd("info pci").contains("Ethernet controller: PCI device 1af4:1041"));
    // Link down: no answers; up again: answers.
    assert_eq!(n.mon.cmd("set_link n0 off"), "");
    let down = ns.ping(20, Duration::from_millis(10));
    assert_eq!(down.replies.len(), 0, "answers with the link down: {down:?}");
    assert_eq!(n.mon.cmd("set_link virtio-net-pci.0 on"), "");
    let up = ns.ping(20, Duration::from_millis(10));
    assert_eq!(up.lost(), 0, "{up:?}");
    assert_eq!(n.mon.cmd("set_link bogus off"), "Error: Device 'bogus' not found\n");
    // The same through QMP, with the real client's shell.
    let out = common::qmp::qmp_shell(qmp.to_str().unwrap(), "set_link name=n0 up=false\n");
    assert!(out.contains("{\"return\": {}}"), "{out}");
    assert_eq!(ns.ping(20, Duration::from_millis(10)).replies.len(), 0);
    let out = common::qmp::qmp_shell(
        qmp.to_str().unwrap(),
        "set_link name=n0 up=true\nannounce-self initial=50 max=550 rounds=2 step=100\nset_link name=nope up=true\n",
    );
    assert!(out.contains("\"class\": \"DeviceNotFound\""), "{out}");
    assert_eq!(ns.ping(20, Duration::from_millis(10)).lost(), 0);
    assert!(!n.g.seen.iter().any(|l| l.text.contains("FAULT") || l.text.contains("NET ERROR")));
    n.mon.quit();
    assert_eq!(n.g.wait_exit(T).code(), Some(0));
}

/// UDP echo through a user-mode host forward, in each of QEMU's spellings.
#[test]
fn user_networking_host_forward() {
    let _l = vm_lock();
    let dir = tmpdir("net-user");
    for spelling in ["netdev", "nic", "net"] {
        let port = free_port();
        let fwd = format!("hostfwd=udp:127.0.0.1:{port}-:7");
        let args: Vec<String> = match spelling {
            "netdev" => vec![
                "-netdev".into(),
                format!("user,id=u0,{fwd}"),
                "-device".into(),
                "virtio-net-pci,netdev=u0".into(),
            ],
            "nic" => vec!["-nic".into(), format!("user,model=virtio,{fwd}")],
            _ => vec!["-net".into(), "nic,model=virtio".into(), "-net".into(), format!("user,{fwd}")],
        };
        let mut n = common::migrate::node(&dir, spelling, "128", "1", "probe.ip=10.0.2.15/24", &strs(&args));
        n.g.wait_for("NET eth0 mac=52:54:00:12:34:56 ip=10.0.2.15/24", T);
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let mut echoed = 0;
        for i in 0..50u32 {
            let msg = format!("{spelling} {i} {}", "x".repeat((i * 29) as usize % 1400));
            s.send_to(msg.as_bytes(), ("127.0.0.1", port)).unwrap();
            let mut buf = [0u8; 2048];
            if let Ok((len, _)) = s.recv_from(&mut buf) {
                echoed += usize::from(&buf[..len] == msg.as_bytes());
            }
        }
        assert!(echoed >= 49, "{spelling}: {echoed} of 50 echoed");
        let net = n.mon.cmd("info network");
        assert!(net.contains("type=user,net=10.0.2.0,restrict=off"), "{net}");
        n.mon.quit();
        assert_eq!(n.g.wait_exit(T).code(), Some(0));
    }
}

/// Pings every 10 ms across a live migration between two taps of one bridge: the guest
/// answers from the destination, the bridge sends its MAC to the destination's port, and
/// the gap stays short.
#[test]
fn live_migration_keeps_the_guest_reachable() {
    let _l = vm_lock();
    let dir = tmpdir("net-mig");
    let ns = Netns::with_bridge("mig", &["tap0", "tap1"]);
    let (mut src, mut dst, inc) = pair(&ns, &dir, "a", ("tap0", "tap1"));
    let pinger = ns.ping_started(400, Duration::from_millis(10));
    std::thread::sleep(Duration::from_millis(800));
    migrate(&mut src, &inc);
    let p = pinger.finish();
    assert!(
        p.lost() < 30 && p.longest_gap() < 0.3,
        "{} lost, longest gap {:.3} s",
        p.lost(),
        p.longest_gap()
    );
    // Answers after the switch-over come from the destination: the source is paused.
    assert_eq!(src.mon.cmd("info status"), "VM status: paused (postmigrate)\n");
    assert_eq!(ns.port_of(MAC).as_deref(), Some("tap1"), "the bridge still sends to the source");
    assert_eq!(ns.ping(20, Duration::from_millis(10)).lost(), 0);
    dst.g.wait_for("HB", T);
    assert!(!dst.g.seen.iter().any(|l| l.text.contains("FAULT")));
}

/// Without traffic across the switch-over, only the destination's announcements tell the
/// bridge where the guest went (the probe itself sends nothing unasked). With them, the
/// first pings afterwards are answered; with `announce-rounds 0` the bridge keeps sending
/// to the source's port and the guest stays unreachable.
#[test]
fn announcements_move_the_guest_on_the_bridge() {
    let _l = vm_lock();
    let dir = tmpdir("net-announce");
    for (tag, announce) in [("a", true), ("b", false)] {
        // A bridge of its own each time, which knows nothing of the other run.
        let ns = Netns::with_bridge(&format!("ann{tag}"), &["tap0", "tap1"]);
        let taps = ("tap0", "tap1");
        let (mut src, mut dst, inc) = pair(&ns, &dir, tag, taps);
        if !announce {
            assert_eq!(dst.mon.cmd("migrate_set_parameter announce-rounds 0"), "");
        }
        migrate(&mut src, &inc);
        dst.g.wait_for("HB", T);
        std::thread::sleep(Duration::from_millis(100));
        let port = ns.port_of(MAC);
        let p = ns.ping(100, Duration::from_millis(10));
        if announce {
            assert!(p.lost() <= 2, "with announcements: {} of 100 lost", p.lost());
            assert_eq!(ns.port_of(MAC).as_deref(), Some(taps.1));
        } else {
            assert_eq!(
                p.replies.len(),
                0,
                "without announcements the bridge still found the guest (port {port:?})"
            );
            assert_eq!(ns.port_of(MAC).as_deref(), Some(taps.0));
        }
        drop((src, dst));
    }
}

/// A source on one tap and a destination waiting on another, the bridge knowing the
/// source's port.
fn pair(ns: &Netns, dir: &std::path::Path, tag: &str, taps: (&str, &str)) -> (common::migrate::Node, common::migrate::Node, String) {
    let mut src = ns.node(dir, &format!("src{tag}"), &append(), &strs(&tap_nic(taps.0)));
    src.g.wait_for("NET eth0", T);
    ns.wait_reachable(T);
    assert_eq!(ns.ping(10, Duration::from_millis(10)).lost(), 0);
    assert_eq!(ns.port_of(MAC).as_deref(), Some(taps.0));
    // Started only now: broadcasts from before (the probe's gratuitous ARP, the host's ARP
    // request) would wait in its tap and be answered by the guest after the switch-over,
    // which would tell the bridge where the guest went without any announcement.
    let inc = format!("tcp:127.0.0.1:{}", free_port());
    let mut dst_args = tap_nic(taps.1);
    dst_args.extend(["-incoming".to_string(), inc.clone()]);
    let mut dst = ns.node(dir, &format!("dst{tag}"), &append(), &strs(&dst_args));
    dst.mon.cmd("info status");
    (src, dst, inc)
}

fn migrate(src: &mut common::migrate::Node, inc: &str) {
    assert_eq!(src.mon.cmd(&format!("migrate -d {inc}")), "");
    let info = wait_migration(&mut src.mon, T);
    assert_eq!(info_field(&info, "Migration status"), Some("completed"), "{info}");
}

#[test]
fn snapshots_with_a_nic() {
    let _l = vm_lock();
    let dir = tmpdir("net-snap");
    let ns = Netns::with_bridge("snap", &["tap0"]);
    let img = dir.join("vm.qcow2");
    assert!(
        Command::new("qemu-img")
            .args(["create", "-q", "-f", "qcow2", img.to_str().unwrap(), "64M"])
            .status()
            .unwrap()
            .success()
    );
    let mut args = tap_nic("tap0");
    args.extend(["-drive".to_string(), format!("file={},if=virtio", img.display())]);
    let mut n = ns.node(&dir, "vm", &append(), &strs(&args));
    n.g.wait_for("NET eth0", T);
    ns.wait_reachable(T);
    assert_eq!(ns.ping(20, Duration::from_millis(10)).lost(), 0);
    assert_eq!(n.mon.cmd_timeout("savevm s1", Duration::from_secs(60)), "");
    assert_eq!(ns.ping(20, Duration::from_millis(10)).lost(), 0);
    let before = *heartbeats(&n.g.collect_for(Duration::from_millis(300))).last().expect("heartbeats");
    assert_eq!(n.mon.cmd_timeout("loadvm s1", Duration::from_secs(60)), "");
    assert_eq!(ns.ping(20, Duration::from_millis(10)).lost(), 0, "no answers after loadvm");
    let after = heartbeats(&n.g.collect_for(Duration::from_millis(300)));
    // A line or two printed before the load paused the guest may come first.
    assert!(
        after.iter().take(5).any(|hb| *hb < before),
        "the guest did not go back: {before} then {after:?}"
    );
    assert!(!n.g.seen.iter().any(|l| l.text.contains("FAULT")));
    n.mon.quit();
    assert_eq!(n.g.wait_exit(T).code(), Some(0));
}

/// `godwit IMG -smp 2 -m 2048 -net nic -net tap`, as migration guides write it: the tap
/// gets a name from the kernel, QEMU's default /etc/qemu-ifup puts it on the bridge (here
/// a script the test bind-mounts over it, in a mount namespace of its own), and
/// /etc/qemu-ifdown runs at exit.
#[test]
fn seed_style_command_line() {
    let _l = vm_lock();
    let dir = tmpdir("net-seed");
    let ns = Netns::with_bridge("seed", &[]);
    let up = dir.join("ifup");
    let down = dir.join("ifdown");
    let mark = dir.join("down-ran");
    std::fs::write(&up, "#!/bin/sh\nip link set \"$1\" master br0\nip link set \"$1\" up\n").unwrap();
    std::fs::write(&down, format!("#!/bin/sh\necho \"$1\" > {}\n", mark.display())).unwrap();
    for f in [&up, &down] {
        assert!(Command::new("chmod").args(["755", f.to_str().unwrap()]).status().unwrap().success());
    }
    let img = dir.join("disk.img");
    std::fs::File::create(&img).unwrap().set_len(16 << 20).unwrap();
    let script = format!(
        "mount --bind {} /etc/qemu-ifup && mount --bind {} /etc/qemu-ifdown && exec \"$@\"",
        up.display(),
        down.display()
    );
    let p = probe();
    let appendix = format!("{} probe.cpus=2", append());
    let mut g = Guest::spawn(
        "ip",
        &[
            "netns",
            "exec",
            &ns.name,
            "unshare",
            "-m",
            "sh",
            "-c",
            &script,
            "sh",
            common::godwit_bin(),
            img.to_str().unwrap(),
            "-smp",
            "2",
            "-m",
            "2048",
            "-net",
            "nic",
            "-net",
            "tap",
            "-display",
            "none",
            "-serial",
            "stdio",
            "-kernel",
            p.to_str().unwrap(),
            "-append",
            &appendix,
        ],
    );
    g.wait_for("NET eth0", T);
    ns.wait_reachable(T);
    assert_eq!(ns.ping(20, Duration::from_millis(10)).lost(), 0);
    assert!(g.stderr().contains("no NIC model given"), "{}", g.stderr());
    let _ = Command::new("kill").arg(g.child.id().to_string()).status();
    g.wait_exit(T);
    let ran = std::fs::read_to_string(&mark).unwrap_or_default();
    assert!(
        ran.trim().starts_with("tap"),
        "the down script did not run with the tap's name: {ran:?}"
    );
}

/// Bad input: one line naming the problem, exit status 1, nothing left behind.
#[test]
fn bad_network_options() {
    let _l = vm_lock();
    let dir = tmpdir("net-bad");
    let ns = Netns::with_bridge("bad", &[]);
    let p = probe();
    let fail = |extra: &[&str]| {
        let mut args = vec![
            "netns",
            "exec",
            ns.name.as_str(),
            common::godwit_bin(),
            "-display",
            "none",
            "-kernel",
            p.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        let o = run_briefly(&args);
        assert_eq!(o.status.code(), Some(1), "{extra:?}");
        let err = String::from_utf8_lossy(&o.stderr).to_string();
        assert_eq!(err.lines().count(), 1, "{extra:?}: {err}");
        err
    };
    assert!(fail(&["-device", "virtio-net-pci,netdev=nope"]).contains("can't find value 'nope'"));
    assert!(fail(&["-netdev", "user,id=a", "-netdev", "user,id=a"]).contains("Duplicate ID 'a' for netdev"));
    assert!(fail(&["-netdev", "user,id=a,hostfwd=tcp:1"]).contains("Invalid host forwarding rule"));
    assert!(fail(&["-nic", "user,mac=zz"]).contains("doesn't take value 'zz'"));
    assert!(fail(&["-netdev", "tap,id=t,vhost=on", "-device", "virtio-net-pci,netdev=t"]).contains("vhost"));
    // A busy port for a host forward (on this side's loopback: outside the namespace).
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let fwd = format!("user,id=u,hostfwd=tcp:127.0.0.1:{}-:22", busy.local_addr().unwrap().port());
    let kernel = p.to_str().unwrap();
    let o = run_briefly_program(common::godwit_bin(), &["-display", "none", "-kernel", kernel, "-netdev", &fwd]);
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        o.status.code() == Some(1) && e.contains("Could not set up host forwarding rule"),
        "{e}"
    );
    // An up script that fails: no tap is left in the namespace, and no down script ran.
    let bad_up = dir.join("bad-up");
    std::fs::write(&bad_up, "#!/bin/sh\nexit 3\n").unwrap();
    assert!(
        Command::new("chmod")
            .args(["755", bad_up.to_str().unwrap()])
            .status()
            .unwrap()
            .success()
    );
    let e = fail(&[
        "-netdev",
        &format!("tap,id=t,ifname=gwtap9,script={}", bad_up.display()),
        "-device",
        "virtio-net-pci,netdev=t",
    ]);
    assert!(e.contains("failed with status 768"), "{e}");
    let links = ns.exec("ip", &["link", "show"]);
    assert!(
        !String::from_utf8_lossy(&links.stdout).contains("gwtap9"),
        "the tap was left behind"
    );
    // A tap already in use by another godwit.
    ns.add_tap("busy0");
    let mut holder = ns.node(&dir, "holder", "", &strs(&tap_nic("busy0")));
    holder.mon.cmd("info status");
    let e = fail(&[
        "-netdev",
        "tap,id=t,ifname=busy0,script=no,downscript=no",
        "-device",
        "virtio-net-pci,netdev=t",
    ]);
    assert!(e.contains("Device or resource busy"), "{e}");
    holder.mon.quit();
    holder.g.wait_exit(T);
    // Without the right to administer the network (as a user other than root), a tap
    // cannot be made.
    let mut args = vec![
        "netns",
        "exec",
        ns.name.as_str(),
        "setpriv",
        "--bounding-set=-net_admin",
        "--inh-caps=-net_admin",
        common::godwit_bin(),
    ];
    args.extend_from_slice(&[
        "-display",
        "none",
        "-kernel",
        p.to_str().unwrap(),
        "-netdev",
        "tap,id=t,script=no",
        "-device",
        "virtio-net-pci,netdev=t",
    ]);
    let o = run_briefly(&args);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.code() == Some(1) && err.contains("Operation not permitted"), "{err}");
}

/// `ip ARGS`, killed if it is still running after 10 s (a start that should have failed
/// but did not must fail the test, not hang it).
fn run_briefly(args: &[&str]) -> std::process::Output {
    run_briefly_program("ip", args)
}

fn run_briefly_program(program: &str, args: &[&str]) -> std::process::Output {
    let mut child = Command::new(program)
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let end = Instant::now() + Duration::from_secs(10);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > end {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

/// `-netdev tap,fd=N`: a tap the caller opened and left to godwit (as libvirt passes its
/// taps). No scripts run; the guest answers through it.
#[test]
fn tap_given_as_a_descriptor() {
    let _l = vm_lock();
    let dir = tmpdir("net-fd");
    let ns = Netns::with_bridge("fd", &["tap0"]);
    // Opens tap0 (IFF_TAP | IFF_NO_PI | IFF_VNET_HDR), keeps the descriptor across exec,
    // and runs godwit with fd=N.
    let opener = r#"
import fcntl, os, struct, sys
fd = os.open("/dev/net/tun", os.O_RDWR)
fcntl.ioctl(fd, 0x400454ca, struct.pack("16sH", b"tap0", 0x0002 | 0x1000 | 0x4000))
os.set_inheritable(fd, True)
args = [a.replace("FD", str(fd)) for a in sys.argv[1:]]
os.execv(args[0], args)
"#;
    let sock = dir.join("vm.sock");
    let mon = format!("unix:{},server,nowait", sock.display());
    let p = probe();
    let appendix = append();
    let mut g = Guest::spawn(
        "ip",
        &[
            "netns",
            "exec",
            &ns.name,
            "python3",
            "-c",
            opener,
            common::godwit_bin(),
            "-enable-kvm",
            "-m",
            "256",
            "-display",
            "none",
            "-serial",
            "stdio",
            "-monitor",
            &mon,
            "-kernel",
            p.to_str().unwrap(),
            "-append",
            &appendix,
            "-netdev",
            "tap,id=n0,fd=FD",
            "-device",
            "virtio-net-pci,netdev=n0",
        ],
    );
    g.wait_for("NET eth0", T);
    ns.wait_reachable(T);
    assert_eq!(ns.ping(20, Duration::from_millis(10)).lost(), 0);
    let mut m = common::hmp::Hmp::unix(&sock);
    let info = m.cmd("info network");
    assert!(info.contains("n0: index=0,type=tap,"), "{info}");
    m.quit();
    assert_eq!(g.wait_exit(T).code(), Some(0));
}
