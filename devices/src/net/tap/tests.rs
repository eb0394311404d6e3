//! Real taps, created only inside a network namespace each test makes for itself (a thread
//! that unshares its network namespace; scripts it runs inherit it), so nothing ever
//! appears on the host. These tests need root and /dev/net/tun, and fail without them.

use super::sys::{self, IFF_TUN, IfReq};
use super::*;
use std::ffi::CString;
use std::io::ErrorKind;
use std::os::fd::{AsFd, IntoRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A local experimental ethertype, so the kernel's own IPv6 chatter is told apart.
const ETHERTYPE: u16 = 0x88b5;

/// Runs `f` on a thread in a network namespace of its own.
pub(crate) fn in_netns<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    assert!(
        root && Path::new(TUN_PATH).exists(),
        "the tap tests need root and {TUN_PATH} (run `cargo test` as root on a host with the tun module)"
    );
    std::thread::spawn(move || {
        // SAFETY: unshare(CLONE_NEWNET) only moves this thread into a new namespace.
        let r = unsafe { libc::unshare(libc::CLONE_NEWNET) };
        assert_eq!(r, 0, "unshare(CLONE_NEWNET): {}", io::Error::last_os_error());
        f()
    })
    .join()
    .unwrap_or_else(|e| std::panic::resume_unwind(e))
}

fn exists(ifname: &str) -> bool {
    let name = CString::new(ifname).unwrap();
    // SAFETY: `name` is a valid NUL-terminated string.
    unsafe { libc::if_nametoindex(name.as_ptr()) != 0 }
}

fn ifindex(ifname: &str) -> i32 {
    let name = CString::new(ifname).unwrap();
    // SAFETY: `name` is a valid NUL-terminated string.
    unsafe { libc::if_nametoindex(name.as_ptr()) as i32 }
}

pub(crate) fn socket(domain: i32, ty: i32, proto: i32) -> OwnedFd {
    // SAFETY: socket() has no memory arguments; the result is checked before use.
    let fd = unsafe { libc::socket(domain, ty | libc::SOCK_CLOEXEC, proto) };
    assert!(fd >= 0, "socket: {}", io::Error::last_os_error());
    // SAFETY: `fd` was just created and nothing else owns it.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// Brings the interface up (SIOCSIFFLAGS), as `ip link set up` would.
pub(crate) fn set_up(ifname: &str) {
    let s = socket(libc::AF_INET, libc::SOCK_DGRAM, 0);
    let mut req = IfReq::new(ifname, 0);
    // SAFETY: SIOCGIFFLAGS/SIOCSIFFLAGS read and write one `struct ifreq`, which `req` is.
    unsafe {
        assert_eq!(libc::ioctl(s.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req), 0);
        req.flags |= libc::IFF_UP as i16;
        assert_eq!(
            libc::ioctl(s.as_raw_fd(), libc::SIOCSIFFLAGS, &req),
            0,
            "{}",
            io::Error::last_os_error()
        );
    }
}

/// An AF_PACKET socket on the interface: it sees what the tap back end sends, and what it
/// sends reaches the back end.
struct Packets(OwnedFd);

impl Packets {
    fn on(ifname: &str) -> Packets {
        let proto = (libc::ETH_P_ALL as u16).to_be();
        let s = socket(libc::AF_PACKET, libc::SOCK_RAW, i32::from(proto));
        // SAFETY: sockaddr_ll is plain data; zeroed is a valid value.
        let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_protocol = proto;
        addr.sll_ifindex = ifindex(ifname);
        let len = std::mem::size_of::<libc::sockaddr_ll>() as u32;
        // SAFETY: `addr` is a valid sockaddr_ll of `len` bytes.
        let r = unsafe { libc::bind(s.as_raw_fd(), (&raw const addr).cast(), len) };
        assert_eq!(r, 0, "bind AF_PACKET: {}", io::Error::last_os_error());
        Packets(s)
    }

    fn send(&self, frame: &[u8]) {
        // SAFETY: `frame` is valid for its length.
        let n = unsafe { libc::send(self.0.as_raw_fd(), frame.as_ptr().cast(), frame.len(), 0) };
        assert_eq!(n, frame.len() as isize, "{}", io::Error::last_os_error());
    }

    /// The next frame of ours (our ethertype) seen on the interface.
    fn ours(&self) -> Vec<u8> {
        let end = Instant::now() + Duration::from_secs(5);
        let mut buf = vec![0u8; 70000];
        while Instant::now() < end {
            // SAFETY: `buf` is valid for its length.
            let n = unsafe { libc::recv(self.0.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), libc::MSG_DONTWAIT) };
            if n >= 14 && buf[12..14] == ETHERTYPE.to_be_bytes() {
                return buf[..n as usize].to_vec();
            }
            if n < 0 {
                std::thread::sleep(Duration::from_millis(2));
            }
        }
        panic!("no frame of ours on the interface");
    }
}

fn frame(seed: u8) -> Vec<u8> {
    let mut f: Vec<u8> = (0..100u8).map(|i| i.wrapping_mul(3).wrapping_add(seed)).collect();
    f[..6].copy_from_slice(&[0x52, 0x54, 0, 0x12, 0x34, 0x56]);
    f[6..12].copy_from_slice(&[0x52, 0x54, 0, 0xaa, 0xbb, seed]);
    f[12..14].copy_from_slice(&ETHERTYPE.to_be_bytes());
    f
}

/// Waits for a frame of ours from the back end, skipping the kernel's own traffic.
fn recv_ours(tap: &mut Tap) -> Vec<u8> {
    let end = Instant::now() + Duration::from_secs(5);
    let mut buf = vec![0u8; 70000];
    let skip = if tap.vnet_hdr() { VNET_HDR_LEN } else { 0 };
    while Instant::now() < end {
        match tap.recv(&mut buf) {
            Ok(n) if n >= skip + 14 && buf[skip + 12..skip + 14] == ETHERTYPE.to_be_bytes() => return buf[..n].to_vec(),
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::WouldBlock => std::thread::sleep(Duration::from_millis(2)),
            Err(e) => panic!("tap recv: {e}"),
        }
    }
    panic!("no frame of ours from the tap");
}

pub(crate) fn no_scripts(ifname: Option<&str>) -> TapConfig {
    TapConfig {
        id: "n0".into(),
        ifname: ifname.map(String::from),
        script: Some("no".into()),
        downscript: Some("no".into()),
        ..TapConfig::default()
    }
}

#[test]
fn frames_both_ways_with_the_vnet_header() {
    in_netns(|| {
        let mut tap = Tap::open(&no_scripts(Some("gw%d"))).unwrap();
        assert_eq!(tap.ifname(), "gw0");
        assert!(tap.vnet_hdr(), "this kernel offers IFF_VNET_HDR");
        assert_eq!(tap.info(), "ifname=gw0,script=no,downscript=no");
        set_up("gw0");
        let wire = Packets::on("gw0");
        let f = frame(1);
        tap.send(&[IoSlice::new(&[0; VNET_HDR_LEN]), IoSlice::new(&f)]).unwrap();
        assert_eq!(wire.ours(), f, "the header is the tap's, not on the wire");
        let g = frame(2);
        wire.send(&g);
        let got = recv_ours(&mut tap);
        assert_eq!(&got[..VNET_HDR_LEN - 2], &[0; 10], "a plain frame's header");
        assert_eq!(&got[VNET_HDR_LEN..], &g[..], "12-byte header, then the frame");
        drop(tap);
        assert!(!exists("gw0"), "the interface goes with the back end");
    });
}

#[test]
fn frames_both_ways_without_the_header() {
    in_netns(|| {
        let mut tap = Tap::open(&TapConfig {
            vnet_hdr: Some(false),
            ..no_scripts(Some("plain0"))
        })
        .unwrap();
        assert!(!tap.vnet_hdr());
        set_up("plain0");
        let wire = Packets::on("plain0");
        let f = frame(3);
        tap.send(&[IoSlice::new(&f)]).unwrap();
        assert_eq!(wire.ours(), f);
        let g = frame(4);
        wire.send(&g);
        assert_eq!(recv_ours(&mut tap), g);
        assert_eq!(
            tap.recv(&mut [0u8; 2048]).map_err(|e| e.kind()).err(),
            Some(ErrorKind::WouldBlock),
            "non-blocking"
        );
    });
}

/// The tap's transmit features as ethtool shows them (SIOCETHTOOL with `cmd`).
fn ethtool_value(ifname: &str, cmd: u32) -> u32 {
    #[repr(C)]
    struct IfReqData {
        name: [u8; 16],
        data: *mut libc::c_void,
        _pad: [u8; 16],
    }
    let mut value = [cmd, 0u32];
    let mut req = IfReqData {
        name: IfReq::new(ifname, 0).name,
        data: value.as_mut_ptr().cast(),
        _pad: [0; 16],
    };
    let s = socket(libc::AF_INET, libc::SOCK_DGRAM, 0);
    // SAFETY: SIOCETHTOOL reads the ifreq and fills the `struct ethtool_value` it points
    // at; both live through the call.
    let r = unsafe { libc::ioctl(s.as_raw_fd(), libc::SIOCETHTOOL, &mut req) };
    assert_eq!(r, 0, "SIOCETHTOOL: {}", io::Error::last_os_error());
    value[1]
}

#[test]
fn offloads_reach_the_kernel() {
    const GTXCSUM: u32 = 0x16;
    const GTSO: u32 = 0x1e;
    in_netns(|| {
        let mut tap = Tap::open(&no_scripts(Some("off0"))).unwrap();
        assert_eq!((ethtool_value("off0", GTXCSUM), ethtool_value("off0", GTSO)), (0, 0));
        let all = Offloads {
            csum: true,
            tso4: true,
            tso6: true,
            ecn: true,
            ufo: true,
        };
        tap.set_offloads(all).unwrap();
        assert_eq!((ethtool_value("off0", GTXCSUM), ethtool_value("off0", GTSO)), (1, 1));
        tap.set_offloads(Offloads {
            csum: true,
            ..Offloads::default()
        })
        .unwrap();
        assert_eq!((ethtool_value("off0", GTXCSUM), ethtool_value("off0", GTSO)), (1, 0));
        // Segmentation without checksums is not asked of the kernel (it would refuse it).
        tap.set_offloads(Offloads {
            tso4: true,
            ..Offloads::default()
        })
        .unwrap();
        assert_eq!((ethtool_value("off0", GTXCSUM), ethtool_value("off0", GTSO)), (0, 0));
    });
}

/// A tap opened the way a management tool opens one before handing it over.
fn open_foreign(ifname: &str, flags: i16) -> File {
    let file = OpenOptions::new().read(true).write(true).open(TUN_PATH).unwrap();
    let mut req = IfReq::new(ifname, flags);
    sys::set_iff(&file.as_fd(), &mut req).unwrap();
    file
}

#[test]
fn fd_takeover() {
    in_netns(|| {
        let fd = open_foreign("held0", IFF_TAP | sys::IFF_NO_PI | IFF_VNET_HDR).into_raw_fd();
        let mut tap = Tap::open(&TapConfig {
            id: "n0".into(),
            fd: Some(fd.to_string()),
            ..TapConfig::default()
        })
        .unwrap();
        assert_eq!((tap.ifname(), tap.vnet_hdr()), ("held0", true));
        assert_eq!(tap.info(), format!("fd={fd}"));
        set_up("held0");
        let wire = Packets::on("held0");
        let f = frame(5);
        wire.send(&f);
        assert_eq!(recv_ours(&mut tap)[VNET_HDR_LEN..], f[..]);
        drop(tap);
        assert!(!exists("held0"), "taken over: closed with the back end");

        // Without the header, the tap is used without it.
        let fd = open_foreign("held1", IFF_TAP | sys::IFF_NO_PI).into_raw_fd();
        let tap = Tap::open(&TapConfig {
            fd: Some(fd.to_string()),
            ..TapConfig::default()
        })
        .unwrap();
        assert!(!tap.vnet_hdr());

        // A tun device is refused, and closed.
        let fd = open_foreign("tun0", IFF_TUN | sys::IFF_NO_PI).into_raw_fd();
        let err = Tap::open(&TapConfig {
            fd: Some(fd.to_string()),
            ..TapConfig::default()
        })
        .err()
        .unwrap();
        assert_eq!(err.to_string(), format!("FD {fd} is a tun device, not a tap"));
        assert!(!exists("tun0"));
    });
}

#[test]
fn fd_errors_as_qemu_words_them() {
    let with = |fd: &str| TapConfig {
        id: "n0".into(),
        fd: Some(fd.into()),
        ..TapConfig::default()
    };
    let err = |c: TapConfig| Tap::open(&c).err().expect("refused").to_string();
    assert_eq!(err(with("abc")), "Invalid file descriptor number 'abc'");
    assert_eq!(
        err(TapConfig {
            ifname: Some("x".into()),
            ..with("3")
        }),
        "ifname=, script=, downscript=, vnet_hdr=, helper=, queues=, fds=, and vhostfds= are invalid with fd="
    );
    // A descriptor number nothing has open (far above any the process allocates, so no
    // other test's file can take it meanwhile).
    let closed = 999_999;
    assert_eq!(
        err(with(&closed.to_string())),
        format!("n0: Can't use file descriptor {closed}: Bad file descriptor")
    );
    // An open descriptor that is not a tap (taken over, so closed afterwards).
    let file = File::open("/dev/null").unwrap().into_raw_fd();
    assert_eq!(
        err(with(&file.to_string())),
        format!("Unable to query TUNGETIFF on FD {file}: Inappropriate ioctl for device")
    );
}

/// A scratch directory for scripts, removed when the test passes.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("godwit-tap-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    /// An executable shell script that logs "`what` <its argument>" and exits `status`.
    fn script(&self, what: &str, status: i32) -> String {
        use std::os::unix::fs::PermissionsExt;
        let path = self.0.join(what);
        let log = self.0.join("log");
        std::fs::write(
            &path,
            format!("#!/bin/sh\necho \"{what} $1\" >> {}\nexit {status}\n", log.display()),
        )
        .unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path.display().to_string()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.0.join("log")).unwrap_or_default()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

#[test]
fn scripts_run_with_the_interface_name() {
    in_netns(|| {
        let dir = Scratch::new("scripts");
        let (up, down) = (dir.script("up", 0), dir.script("down", 0));
        let tap = Tap::open(&TapConfig {
            id: "n0".into(),
            script: Some(up.clone()),
            downscript: Some(down.clone()),
            ..TapConfig::default()
        })
        .unwrap();
        assert_eq!(tap.ifname(), "tap0", "QEMU's default template");
        assert_eq!(dir.log(), "up tap0\n");
        assert_eq!(tap.info(), format!("ifname=tap0,script={up},downscript={down}"));
        drop(tap);
        assert_eq!(dir.log(), "up tap0\ndown tap0\n", "the down script when the back end goes");

        // close() reports the down script's failure.
        let failing_down = dir.script("bad-down", 1);
        let tap = Tap::open(&TapConfig {
            script: Some("no".into()),
            downscript: Some(failing_down.clone()),
            ..no_scripts(Some("t1"))
        })
        .unwrap();
        assert_eq!(
            tap.close().err().unwrap().to_string(),
            format!("network script {failing_down} failed with status 256")
        );
        // Defaults are named in info even when a tap has none of its own.
        let defaults = TapConfig {
            ifname: Some("t2".into()),
            script: None,
            downscript: None,
            ..TapConfig::default()
        };
        assert_eq!(
            script::choose(defaults.script.as_deref(), DEFAULT_UP).as_deref(),
            Some("/etc/qemu-ifup")
        );
        assert_eq!(script::choose(Some(""), DEFAULT_UP), None);
    });
}

#[test]
fn a_failing_up_script_leaves_nothing() {
    in_netns(|| {
        let dir = Scratch::new("failing");
        let (up, down) = (dir.script("up", 3), dir.script("down", 0));
        let err = Tap::open(&TapConfig {
            id: "n0".into(),
            ifname: Some("fail0".into()),
            script: Some(up.clone()),
            downscript: Some(down),
            ..TapConfig::default()
        })
        .err()
        .unwrap();
        assert_eq!(err.to_string(), format!("network script {up} failed with status 768"));
        assert_eq!(dir.log(), "up fail0\n", "no down script for an up script that failed");
        assert!(!exists("fail0"), "the tap is gone");
        let missing = dir.0.join("missing").display().to_string();
        let err = Tap::open(&TapConfig {
            script: Some(missing.clone()),
            ..no_scripts(Some("fail1"))
        })
        .err()
        .unwrap();
        assert_eq!(err.to_string(), format!("network script {missing} failed with status 256"));
        assert!(!exists("fail1"));
    });
}

#[test]
fn bad_names_as_qemu_words_them() {
    in_netns(|| {
        let err = Tap::open(&no_scripts(Some("a/b"))).err().unwrap();
        assert_eq!(err.to_string(), "could not configure /dev/net/tun (a/b): Invalid argument");
        let long = Tap::open(&no_scripts(Some("averyveryverylongname"))).unwrap();
        assert_eq!(long.ifname(), "averyveryverylo", "cut to 15 bytes, as QEMU does");
    });
}
