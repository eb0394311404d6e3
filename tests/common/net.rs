//! Network namespaces for the network tests: a bridge with the host's address and taps
//! for the VMs, godwit started inside, pings from inside. Everything stays in the
//! namespace, which is deleted (with whatever still runs in it) when the test ends.
#![allow(dead_code)]

use super::hmp::Hmp;
use super::migrate::Node;
use super::{Guest, godwit_bin, probe, root};
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

/// The host's address on the bridge, and the guest's.
pub const HOST_IP: &str = "10.0.0.1";
pub const GUEST_IP: &str = "10.0.0.2";

pub struct Netns {
    pub name: String,
}

fn run(program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"))
}

fn must(program: &str, args: &[&str]) {
    let o = run(program, args);
    assert!(
        o.status.success(),
        "{program} {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&o.stderr)
    );
}

impl Netns {
    /// A new namespace holding bridge `br0` (up, HOST_IP/24) and the named taps on it.
    /// Needs root: the tests say so plainly rather than pass without checking anything.
    pub fn with_bridge(tag: &str, taps: &[&str]) -> Netns {
        assert!(is_root(), "the network tests need root (network namespaces, taps, raw sockets)");
        let ns = Netns {
            name: format!("gw-{tag}-{}", std::process::id()),
        };
        let _ = run("ip", &["netns", "del", &ns.name]);
        must("ip", &["netns", "add", &ns.name]);
        ns.ip(&["link", "set", "lo", "up"]);
        ns.ip(&["link", "add", "br0", "type", "bridge"]);
        ns.ip(&["addr", "add", &format!("{HOST_IP}/24"), "dev", "br0"]);
        ns.ip(&["link", "set", "br0", "up"]);
        for t in taps {
            ns.add_tap(t);
        }
        ns
    }

    /// A tap on the bridge (godwit opens it by name, with `script=no`).
    pub fn add_tap(&self, tap: &str) {
        self.ip(&["tuntap", "add", tap, "mode", "tap"]);
        self.ip(&["link", "set", tap, "master", "br0"]);
        self.ip(&["link", "set", tap, "up"]);
    }

    /// `ip ARGS` inside the namespace.
    pub fn ip(&self, args: &[&str]) {
        let mut all = vec!["-n", self.name.as_str()];
        all.extend_from_slice(args);
        must("ip", &all);
    }

    /// Runs a program inside the namespace.
    pub fn exec(&self, program: &str, args: &[&str]) -> Output {
        let mut all = vec!["netns", "exec", self.name.as_str(), program];
        all.extend_from_slice(args);
        run("ip", &all)
    }

    /// The bridge port the bridge sends `mac` to, if it knows one.
    pub fn port_of(&self, mac: &str) -> Option<String> {
        let o = self.exec("bridge", &["fdb", "show", "br", "br0"]);
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .find(|l| l.starts_with(mac) && !l.contains("permanent"))
            .and_then(|l| l.split_whitespace().nth(2).map(str::to_string))
    }

    /// Pings until the guest answers (its first answers may wait for the host's ARP
    /// resolution and a busy host), at most `timeout`.
    pub fn wait_reachable(&self, timeout: Duration) {
        let end = std::time::Instant::now() + timeout;
        while self.ping(3, Duration::from_millis(50)).replies.len() < 3 {
            assert!(std::time::Instant::now() < end, "the guest never answered pings");
        }
    }

    /// `count` pings of GUEST_IP, one per `interval`, from inside the namespace.
    pub fn ping(&self, count: u32, interval: Duration) -> Pings {
        self.ping_started(count, interval).finish()
    }

    /// Starts pinging in the background; [`PingRun::finish`] waits for the result.
    pub fn ping_started(&self, count: u32, interval: Duration) -> PingRun {
        let script = root().join("tests/net/pinger.py");
        let child = Command::new("ip")
            .args(["netns", "exec", &self.name, "python3"])
            .arg(script)
            .args([GUEST_IP, &count.to_string(), &format!("{}", interval.as_secs_f64()), "1.0"])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("start pinger");
        PingRun { child }
    }

    /// Starts godwit with the probe inside the namespace: serial on stdout, a unix
    /// monitor at `dir/NAME.sock`.
    pub fn node(&self, dir: &Path, name: &str, append: &str, extra: &[&str]) -> Node {
        let sock = dir.join(format!("{name}.sock"));
        let spec = format!("unix:{},server,nowait", sock.display());
        let p = probe();
        let mut args = vec!["netns", "exec", self.name.as_str(), godwit_bin()];
        args.extend_from_slice(&["-enable-kvm", "-m", "256", "-smp", "1", "-display", "none", "-serial", "stdio"]);
        args.extend_from_slice(&["-monitor", &spec, "-kernel", p.to_str().unwrap(), "-append", append]);
        args.extend_from_slice(extra);
        let g = Guest::spawn("ip", &args);
        let mon = Hmp::unix(&sock);
        Node { g, mon, sock }
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let pids = run("ip", &["netns", "pids", &self.name]);
        for pid in String::from_utf8_lossy(&pids.stdout).split_whitespace() {
            let _ = run("kill", &["-9", pid]);
        }
        let _ = run("ip", &["netns", "del", &self.name]);
    }
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// A pinger at work.
pub struct PingRun {
    child: std::process::Child,
}

impl PingRun {
    pub fn finish(self) -> Pings {
        let out = self.child.wait_with_output().expect("pinger");
        assert!(out.status.success(), "pinger failed");
        Pings::parse(&String::from_utf8_lossy(&out.stdout))
    }
}

/// What a ping run got: requests sent, and (sequence, seconds after start, round trip).
#[derive(Debug)]
pub struct Pings {
    pub sent: u64,
    pub replies: Vec<(u64, f64, f64)>,
}

impl Pings {
    fn parse(json: &str) -> Pings {
        // {"sent": N, "replies": [[seq, t, rtt], ...]}: small enough to read by hand.
        let sent = json
            .split("\"sent\":")
            .nth(1)
            .and_then(|r| r.split(',').next())
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or_else(|| panic!("pinger output: {json}"));
        let list = json.split("\"replies\":").nth(1).unwrap_or("");
        let replies = list
            .split('[')
            .filter_map(|e| {
                let nums: Vec<f64> = e.split(']').next()?.split(',').filter_map(|x| x.trim().parse().ok()).collect();
                (nums.len() == 3).then(|| (nums[0] as u64, nums[1], nums[2]))
            })
            .collect();
        Pings { sent, replies }
    }

    pub fn lost(&self) -> u64 {
        self.sent - self.replies.len() as u64
    }

    /// The longest time without a reply between the first and the last one, in seconds
    /// (measured on the send times of consecutive answered requests).
    pub fn longest_gap(&self) -> f64 {
        self.replies.windows(2).map(|w| w[1].1 - w[0].1).fold(0.0, f64::max)
    }

    /// Round trips in microseconds, sorted.
    pub fn rtts_us(&self) -> Vec<u64> {
        let mut v: Vec<u64> = self.replies.iter().map(|r| (r.2 * 1e6) as u64).collect();
        v.sort_unstable();
        v
    }
}
