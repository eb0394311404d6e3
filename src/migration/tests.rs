//! A live migration between two VMs in one process, over a socket pair: the probe guest
//! keeps counting and its working set verifies on the destination, and the figures the
//! sender reports add up.

use super::disks::{Announce, DiskDesc, DisksError, Mode};
use super::info::Status;
use super::recv::RecvError;
use super::recv_block::RecvBlockError;
use super::send::{self, Shared};
use super::xbzrle::Caps;
use super::{recv, stream};
use crate::config::Config;
use crate::testutil::{Capture, heartbeats, probe};
use crate::vm::{Vm, VmEvent};
use devices::bus::lock;
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::time::Duration;

fn config(append: &str) -> Config {
    Config {
        mem_size: 512 << 20,
        vcpus: 2,
        kernel: Some(probe()),
        append: append.into(),
        ..Config::default()
    }
}

fn migrate(append: &str, max_bandwidth: u64) -> (super::info::Stats, String, String) {
    migrate_with(append, max_bandwidth, false)
}

/// [`migrate`], with the `xbzrle` capability on both sides or on neither.
fn migrate_with(append: &str, max_bandwidth: u64, xbzrle: bool) -> (super::info::Stats, String, String) {
    let kvm = crate::vm::kvm::open().expect("/dev/kvm");
    let (tx, _rx) = crossbeam_channel::unbounded::<VmEvent>();
    let out1 = Capture::default();
    let src = Vm::build(&kvm, &config(append), Box::new(out1.clone()), tx.clone()).unwrap();
    src.start().unwrap();
    let busy = append.contains("probe.ws=");
    out1.wait_for(if busy { "VERIFY 2 ok" } else { "HB 30" }, Duration::from_secs(30));

    let dst_cfg = Config {
        incoming: Some("unix:test".into()),
        start_paused: true,
        ..config(append)
    };
    let out2 = Capture::default();
    let dst = Vm::build(&kvm, &dst_cfg, Box::new(out2.clone()), tx).unwrap();
    dst.start().unwrap();

    let (a, b) = UnixStream::pair().unwrap();
    let shared = Arc::new(Shared::default());
    lock(&shared.params).max_bandwidth = max_bandwidth;
    lock(&shared.params).xbzrle = xbzrle;
    let receiver = std::thread::spawn(move || {
        let r = recv::run_with(&dst, Box::new(b), None, Caps { xbzrle, ..Caps::default() }, &recv::NO_EVENTS);
        (dst, r)
    });
    let result = send::run(&src, Box::new(a), None, &shared, super::disks::Mode::Shared, &|_| {});
    assert!(result.is_ok(), "sender failed: {:?}", lock(&shared.stats).error);
    let (dst, r) = receiver.join().unwrap();
    r.unwrap();
    let src_text = out1.text();
    dst.resume();
    if busy {
        out2.wait_for("VERIFY", Duration::from_secs(30));
    }
    let dst_text = out2.wait_for_heartbeats(30, Duration::from_secs(30));
    src.teardown();
    dst.teardown();
    let stats = lock(&shared.stats).clone();
    (stats, src_text, dst_text)
}

/// `-drive file=IMG,format=raw,if=virtio` as the command line would give it.
pub(super) fn raw_drive(img: &std::path::Path) -> crate::config::DriveConfig {
    crate::config::DriveConfig {
        file: img.to_path_buf(),
        format: Some("raw".into()),
        read_only: false,
        snapshot: false,
        ignore_flush: false,
        id: "virtio0".into(),
        spec: format!("file={},format=raw", img.display()),
        blockdev: None,
    }
}

fn check_continuity(src: &str, dst: &str) {
    // The switch-over may fall mid-line, so judge both outputs joined: one unbroken run of
    // heartbeats across the move, without a restart or a repeat.
    let joined = format!("{src}{dst}");
    let hb = heartbeats(&joined);
    assert!(hb.windows(2).all(|w| w[1] == w[0] + 1), "{hb:?}");
    assert!(heartbeats(dst).len() >= 20, "{dst}");
    assert!(
        !dst.contains("MISMATCH") && !dst.contains("bad=") && !dst.contains("PROBE READY") && !dst.contains("FAULT"),
        "{dst}"
    );
}

#[test]
fn migrates_a_busy_guest_and_reports_real_figures() {
    let (s, src, dst) = migrate("probe.ws=64 probe.rate=50", 0);
    check_continuity(&src, &dst);
    assert_eq!(s.status, Status::Completed);
    assert!(s.normal >= 64 * 256, "the 64 MiB working set was sent: {} normal pages", s.normal);
    assert!(s.duplicate > 0 && s.dirty_sync_count >= 2, "{s:?}");
    assert!(s.transferred >= s.normal * 4096, "{s:?}");
    assert_eq!(s.remaining, 0);
    assert!(
        s.precopy_bytes > 0 && s.downtime_bytes > 0 && s.precopy_bytes + s.downtime_bytes == s.transferred,
        "{s:?}"
    );
    // An untouched page is never read: far less than all of RAM went as data.
    assert!(s.normal + s.duplicate >= (512 << 20) / 4096, "{s:?}");
}

#[test]
fn xbzrle_migrates_a_busy_guest_with_real_figures() {
    let (s, src, dst) = migrate_with("probe.ws=32 probe.rate=20", 20 << 20, true);
    check_continuity(&src, &dst);
    assert_eq!(s.status, Status::Completed);
    let x = s.xbzrle.expect("xbzrle figures");
    assert_eq!(x.cache_size, 64 << 20);
    assert!(x.pages > 0 && x.bytes > 0 && x.overflow <= x.pages, "{x:?}");
    assert!(x.bytes < (x.pages - x.overflow) * 4096, "deltas are smaller than pages: {x:?}");
    assert!(s.transferred > x.bytes, "{s:?}");
}

/// A destination with xbzrle on: a malformed delta or entry fails the load, and writes
/// neither the page it names nor any other.
#[test]
fn bad_xbzrle_records_are_refused_and_write_nothing() {
    use super::xbzrle::record::RecordError;
    let dst = small_destination(Vec::new());
    let on = Caps {
        xbzrle: true,
        ..Caps::default()
    };
    let load = |bytes: Vec<u8>, caps: Caps| recv::run_with(&dst, Box::new(std::io::Cursor::new(bytes)), None, caps, &recv::NO_EVENTS);
    let with = |f: &dyn Fn(&mut stream::Writer<&mut Vec<u8>>)| {
        after_config(&|w| {
            w.caps(1).unwrap();
            w.pages(0x10000, &[5u8; 4096]).unwrap();
            f(w);
        })
    };
    let page = |gpa: u64| {
        let mut b = vec![0u8; 4096];
        vm_memory::Bytes::read_slice(dst.ram(), &mut b, vm_memory::GuestAddress(gpa)).unwrap();
        b
    };
    // skip 0, a delta of 3 bytes (kind 5): 4095 unchanged bytes, then a run of 2.
    let past_page = with(&|w| w.xbzrle(0x10000, &[0, 5, 0xff, 0x1f, 2]).unwrap());
    let e = load(past_page, on).unwrap_err();
    assert!(matches!(e, RecvError::Delta { gpa: 0x10000, .. }), "{e:?}");
    assert!(!e.to_string().contains('\n'), "one line: {e}");
    assert!(page(0x10000).iter().all(|b| *b == 5) && page(0x11000).iter().all(|b| *b == 0));
    let short = with(&|w| w.xbzrle(0x11000, &[0, 1, 7, 7]).unwrap());
    let e = load(short, on).unwrap_err();
    assert!(
        matches!(
            e,
            RecvError::Xbzrle {
                why: RecordError::Short { .. },
                ..
            }
        ),
        "{e:?}"
    );
    assert!(page(0x11000).iter().all(|b| *b == 0));
    let outside = with(&|w| w.xbzrle((64 << 20) - 4096, &[0, 0, 0, 0]).unwrap());
    let e = load(outside, on).unwrap_err();
    assert!(matches!(e, RecvError::OutsideRam { .. }), "{e:?}");
    let mismatch = with(&|_| {});
    let e = load(mismatch, Caps::default()).unwrap_err();
    assert_eq!(e.to_string(), "capability 'xbzrle' is on at the source but off here");
    let e = load(after_config(&|w| w.xbzrle(0, &[0, 0]).unwrap()), Caps::default()).unwrap_err();
    assert!(matches!(e, RecvError::XbzrleOff), "{e:?}");
    let e = load(after_config(&|w| w.sync(1).unwrap()), on).unwrap_err();
    assert_eq!(e.to_string(), "capability 'xbzrle' is off at the source but on here");
    let e = load(after_config(&|w| w.caps(8).unwrap()), on).unwrap_err();
    assert!(matches!(e, RecvError::UnknownCaps(8)), "{e:?}");
}

/// Post-copy records are refused without the capability, out of order, or outside RAM,
/// each with one line, before the guest could run.
#[test]
fn bad_postcopy_records_are_refused() {
    let dst = small_destination(Vec::new());
    let on = Caps {
        postcopy: true,
        ..Caps::default()
    };
    let load = |bytes: Vec<u8>, caps: Caps| recv::run_with(&dst, Box::new(std::io::Cursor::new(bytes)), None, caps, &recv::NO_EVENTS);
    let e = load(after_config(&|w| w.discard(0x10000, 1).unwrap()), Caps::default()).unwrap_err();
    assert_eq!(e.to_string(), "unexpected DISCARD record");
    let e = load(after_config(&|w| w.postcopy().unwrap()), Caps::default()).unwrap_err();
    assert_eq!(e.to_string(), "unexpected POSTCOPY record");
    let e = load(after_config(&|w| w.caps(2).unwrap()), Caps::default()).unwrap_err();
    assert_eq!(e.to_string(), "capability 'postcopy-ram' is on at the source but off here");
    let e = load(after_config(&|w| w.sync(1).unwrap()), on).unwrap_err();
    assert_eq!(e.to_string(), "capability 'postcopy-ram' is off at the source but on here");
    let with = |f: &dyn Fn(&mut stream::Writer<&mut Vec<u8>>)| {
        after_config(&|w| {
            w.caps(2).unwrap();
            f(w);
        })
    };
    let e = load(with(&|w| w.postcopy().unwrap()), on).unwrap_err();
    assert!(matches!(e, RecvError::NoState), "POSTCOPY needs the state first: {e:?}");
    let e = load(with(&|w| w.discard((64 << 20) - 4096, 2).unwrap()), on).unwrap_err();
    assert!(matches!(e, RecvError::OutsideRam { .. }), "{e:?}");
    let e = load(with(&|w| w.discard(0x10000, u64::MAX).unwrap()), on).unwrap_err();
    assert!(matches!(e, RecvError::OutsideRam { .. }), "{e:?}");
    let e = load(with(&|w| w.discard(0x10001, 1).unwrap()), on).unwrap_err();
    assert!(matches!(e, RecvError::Unaligned(0x10001)), "{e:?}");
}

#[test]
fn idle_guest_sends_only_what_it_touched() {
    let (s, src, dst) = migrate("", 0);
    check_continuity(&src, &dst);
    assert!(s.transferred < 8 << 20, "an idle 512 MiB guest sent {} bytes", s.transferred);
}

type IsRecv = fn(&RecvError) -> bool;
type IsDisk = fn(&RecvBlockError) -> bool;

/// A stream: the header, then what `f` writes.
fn stream_of(f: &dyn Fn(&mut stream::Writer<&mut Vec<u8>>)) -> Vec<u8> {
    let mut v = Vec::new();
    let mut w = stream::Writer::new(&mut v).unwrap();
    f(&mut w);
    v
}

/// A stream with the configuration of `small_destination`, then what `f` writes.
fn after_config(f: &dyn Fn(&mut stream::Writer<&mut Vec<u8>>)) -> Vec<u8> {
    stream_of(&|w| {
        w.config(64 << 20, 1, "pc").unwrap();
        f(w);
    })
}

/// A destination of 64 MiB and one vCPU with `drives`, paused, waiting for a stream.
fn small_destination(drives: Vec<crate::config::DriveConfig>) -> Vm {
    let kvm = crate::vm::kvm::open().expect("/dev/kvm");
    let (tx, _rx) = crossbeam_channel::unbounded::<VmEvent>();
    let cfg = Config {
        incoming: Some("unix:test".into()),
        start_paused: true,
        mem_size: 64 << 20,
        vcpus: 1,
        kernel: Some(probe()),
        drives,
        ..Config::default()
    };
    Vm::build(&kvm, &cfg, Box::new(std::io::sink()), tx).unwrap()
}

/// Streams `small_destination` refuses: a piece of the reason, and the variant it is.
fn bad_streams() -> Vec<(Vec<u8>, &'static str, IsRecv)> {
    vec![
        (
            stream_of(&|w| w.config(128 << 20, 1, "pc").unwrap()),
            "RAM size mismatch: the source has 128 MiB, this VM 64 MiB",
            |e| {
                matches!(
                    e,
                    RecvError::RamSize {
                        theirs: 0x800_0000,
                        mine: 0x400_0000
                    }
                )
            },
        ),
        (stream_of(&|w| w.config(64 << 20, 2, "pc").unwrap()), "vCPU count mismatch", |e| {
            matches!(e, RecvError::VcpuCount { theirs: 2, mine: 1 })
        }),
        (
            after_config(&|w| w.pages(64 << 20, &[1u8; 4096]).unwrap()),
            "page data at guest address 0x4000000+0x1000 lies outside guest RAM",
            |e| matches!(e, RecvError::OutsideRam { what: "page data", .. }),
        ),
        (after_config(&|w| w.zero((64 << 20) - 4096, 2).unwrap()), "outside guest RAM", |e| {
            matches!(
                e,
                RecvError::OutsideRam {
                    what: "zero range",
                    len: 0x2000,
                    ..
                }
            )
        }),
        (after_config(&|w| w.zero(0, u64::MAX).unwrap()), "outside guest RAM", |e| {
            matches!(e, RecvError::OutsideRam { len: u64::MAX, .. })
        }),
        (after_config(&|w| w.end(0).unwrap()), "without the machine state", |e| {
            matches!(e, RecvError::NoState)
        }),
        (after_config(&|w| w.state(b"garbage").unwrap()), "truncated", |e| {
            matches!(e, RecvError::State(_))
        }),
        (after_config(&|w| w.sync(1).unwrap()), "truncated", |e| {
            matches!(e, RecvError::Stream(stream::StreamError::Truncated(_)))
        }),
        (b"QEVM\0\0\0\x03\0\0\0\0\0\0\0\0".to_vec(), "bad magic", |e| {
            matches!(e, RecvError::Stream(stream::StreamError::BadMagic))
        }),
    ]
}

#[test]
fn bad_streams_are_refused_with_a_reason() {
    let dst = small_destination(Vec::new());
    for (bytes, want, is) in bad_streams() {
        let err = recv::run(&dst, Box::new(std::io::Cursor::new(bytes)), None).unwrap_err();
        assert!(err.to_string().contains(want), "expected {want:?} in {err}");
        assert!(is(&err), "{err:?}");
    }
}

/// A DISKS record in `mode`, of disks (name, size, copied).
fn disk_list(mode: Mode, disks: &[(&str, u64, bool)]) -> Vec<u8> {
    let disks = disks
        .iter()
        .map(|(id, size, copied)| DiskDesc {
            id: id.to_string(),
            size: *size,
            copied: *copied,
            base: None,
        })
        .collect();
    Announce { mode, disks }.encode()
}

/// Disk records a `small_destination` with one 1 MiB disk refuses: a piece of the reason,
/// and the variant it is.
fn bad_disk_records() -> Vec<(Vec<u8>, &'static str, IsDisk)> {
    let full = || disk_list(Mode::Full, &[("virtio0", 1 << 20, true)]);
    let shared_two = || disk_list(Mode::Shared, &[("virtio0", 1 << 20, false), ("x", 512, false)]);
    vec![
        (
            after_config(&|w| w.block(0, 0, &[1u8; 512]).unwrap()),
            "disk data before the disk list",
            |e| matches!(e, RecvBlockError::BeforeList),
        ),
        (
            after_config(&|w| w.disks(&shared_two()).unwrap()),
            "the source has 2 disks, this VM 1",
            |e| matches!(e, RecvBlockError::Refused(DisksError::DiskCount { theirs: 2, mine: 1 })),
        ),
        (
            after_config(&|w| w.disks(&disk_list(Mode::Full, &[("disk9", 1 << 20, true)])).unwrap()),
            "the source's disk 'disk9' is not here (this VM has 'virtio0')",
            |e| matches!(e, RecvBlockError::Refused(DisksError::Missing { .. })),
        ),
        (
            after_config(&|w| w.disks(&disk_list(Mode::Full, &[("virtio0", 2 << 20, true)])).unwrap()),
            "disk 'virtio0' has 2097152 bytes on the source, 1048576 here",
            |e| {
                matches!(
                    e,
                    RecvBlockError::Refused(DisksError::Size {
                        theirs: 0x20_0000,
                        mine: 0x10_0000,
                        ..
                    })
                )
            },
        ),
        (after_config(&|w| w.disks(&full()[..full().len() - 1]).unwrap()), "cut short", |e| {
            matches!(e, RecvBlockError::Refused(DisksError::CutShort))
        }),
        (
            after_config(&|w| {
                w.disks(&disk_list(Mode::Shared, &[("virtio0", 1 << 20, false)])).unwrap();
                w.block(0, 0, &[1u8; 512]).unwrap();
            }),
            "disk data for disk 0, which receives none",
            |e| matches!(e, RecvBlockError::NotReceiving(0)),
        ),
        (
            after_config(&|w| {
                w.disks(&full()).unwrap();
                w.block(1, 0, &[1u8; 512]).unwrap();
            }),
            "disk 1, which receives none",
            |e| matches!(e, RecvBlockError::NotReceiving(1)),
        ),
        (
            after_config(&|w| {
                w.disks(&full()).unwrap();
                w.block(0, (1 << 20) - 512, &[1u8; 1024]).unwrap();
            }),
            "disk data at 0xffe00+0x400 lies outside disk 'virtio0' or is not whole sectors",
            |e| {
                matches!(
                    e,
                    RecvBlockError::OutsideDisk {
                        offset: 0xffe00,
                        len: 0x400,
                        ..
                    }
                )
            },
        ),
        (
            after_config(&|w| {
                w.disks(&full()).unwrap();
                w.block(0, 100, &[1u8; 512]).unwrap();
            }),
            "not whole sectors",
            |e| matches!(e, RecvBlockError::OutsideDisk { offset: 100, .. }),
        ),
        (
            after_config(&|w| {
                w.disks(&full()).unwrap();
                w.block_zero(0, 512, u64::MAX).unwrap();
            }),
            "lies outside disk 'virtio0'",
            |e| matches!(e, RecvBlockError::OutsideDisk { len: u64::MAX, .. }),
        ),
        (
            after_config(&|w| {
                w.disks(&full()).unwrap();
                w.disks(&full()).unwrap();
            }),
            "a second disk list",
            |e| matches!(e, RecvBlockError::SecondList),
        ),
    ]
}

#[test]
fn bad_disk_records_are_refused_and_write_nothing() {
    let dir = std::env::temp_dir().join(format!("godwit-diskrec-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let img = dir.join("d.raw");
    std::fs::write(&img, vec![0xa5u8; 1 << 20]).unwrap();
    let dst = small_destination(vec![raw_drive(&img)]);
    for (bytes, want, is) in bad_disk_records() {
        let err = recv::run(&dst, Box::new(std::io::Cursor::new(bytes)), None).unwrap_err();
        assert!(err.to_string().contains(want), "expected {want:?} in {err}");
        assert!(matches!(&err, RecvError::Disks(e) if is(e)), "{err:?}");
    }
    drop(dst);
    assert!(
        std::fs::read(&img).unwrap().iter().all(|b| *b == 0xa5),
        "a refused record wrote the image"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A writer whose every write fails, as a connection the source has dropped.
struct Gone;

impl std::io::Write for Gone {
    fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
        Err(std::io::ErrorKind::BrokenPipe.into())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Err(std::io::ErrorKind::BrokenPipe.into())
    }
}

/// A destination that loaded everything but cannot tell the source so fails: the source,
/// not hearing it, may run the guest on, so the destination must not run it too. Over a
/// way back that works, the same stream loads.
#[test]
fn a_success_that_cannot_be_confirmed_is_a_failure() {
    let kvm = crate::vm::kvm::open().expect("/dev/kvm");
    let (tx, _rx) = crossbeam_channel::unbounded::<VmEvent>();
    let small = |incoming: bool| Config {
        mem_size: 64 << 20,
        vcpus: 1,
        incoming: incoming.then(|| "unix:test".into()),
        start_paused: incoming,
        ..config("")
    };
    let out = Capture::default();
    let src = Vm::build(&kvm, &small(false), Box::new(out.clone()), tx.clone()).unwrap();
    src.start().unwrap();
    out.wait_for("HB 5", Duration::from_secs(30));
    let stream = Capture::default();
    let shared = Arc::new(Shared::default());
    assert!(send::run(&src, Box::new(stream.clone()), None, &shared, super::disks::Mode::Shared, &|_| {}).is_ok());
    src.teardown();
    let bytes = stream.bytes();

    let dst = Vm::build(&kvm, &small(true), Box::new(std::io::sink()), tx.clone()).unwrap();
    let err = recv::run(&dst, Box::new(std::io::Cursor::new(bytes.clone())), Some(Box::new(Gone))).unwrap_err();
    assert!(
        matches!(&err, RecvError::Confirm(e) if e.kind() == std::io::ErrorKind::BrokenPipe),
        "{err:?}"
    );
    assert_eq!(err.to_string(), "cannot confirm the switch-over to the source: broken pipe");

    let dst = Vm::build(&kvm, &small(true), Box::new(std::io::sink()), tx).unwrap();
    let answer = Capture::default();
    recv::run(&dst, Box::new(std::io::Cursor::new(bytes)), Some(Box::new(answer.clone()))).unwrap();
    assert_eq!(answer.bytes(), b"GWOK\0\0\0\0");
}

/// A destination's RAM must start all zero, since a page the source guest zeroed travels as
/// a zero record only: with `-bios`, the firmware copy in low RAM is left to the stream.
#[test]
fn a_zeroed_page_of_the_bios_copy_arrives_zeroed() {
    use vm_memory::{Bytes, GuestAddress};
    let bios = std::env::temp_dir().join(format!("godwit-mig-bios-{}.bin", std::process::id()));
    std::fs::write(&bios, vec![0xaau8; 128 << 10]).unwrap();
    let kvm = crate::vm::kvm::open().expect("/dev/kvm");
    let (tx, _rx) = crossbeam_channel::unbounded::<VmEvent>();
    let cfg = |incoming: bool| Config {
        mem_size: 64 << 20,
        vcpus: 1,
        bios: Some(bios.clone()),
        incoming: incoming.then(|| "unix:test".into()),
        start_paused: true,
        ..Config::default()
    };
    let src = Vm::build(&kvm, &cfg(false), Box::new(std::io::sink()), tx.clone()).unwrap();
    // What SeaBIOS does to the parts of its segment it does not need.
    src.ram().write_slice(&[0u8; 4096], GuestAddress(0xf0000)).unwrap();
    let stream = Capture::default();
    let shared = Arc::new(Shared::default());
    assert!(send::run(&src, Box::new(stream.clone()), None, &shared, super::disks::Mode::Shared, &|_| {}).is_ok());
    let dst = Vm::build(&kvm, &cfg(true), Box::new(std::io::sink()), tx).unwrap();
    recv::run(&dst, Box::new(std::io::Cursor::new(stream.bytes())), None).unwrap();
    let page = |at: u64| {
        let mut p = [0u8; 4096];
        dst.ram().read_slice(&mut p, GuestAddress(at)).unwrap();
        p
    };
    assert!(page(0xf0000).iter().all(|b| *b == 0), "the zeroed page kept the firmware's bytes");
    assert!(page(0xe0000).iter().all(|b| *b == 0xaa) && page(0xff000).iter().all(|b| *b == 0xaa));
    let _ = std::fs::remove_file(&bios);
}
