//! The channels end to end inside one process: senders and receivers over socket pairs,
//! between two guest RAMs, and hostile packets refused before anything is written.

use super::compress::Compression;
use super::recv::{ChannelError, Incoming, MultifdReceiver};
use super::send::{Channel, MultifdSender};
use super::wire::{self, Header, Kind, ZERO_BIT};
use super::{Settings, wire::WireError};
use crate::memory::GuestRam;
use std::io::Write;
use std::os::unix::net::UnixStream;
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryRegion};

const MIB: u64 = 1 << 20;

fn ram() -> GuestRam {
    crate::memory::create(16 * MIB, 40).unwrap()
}

fn regions(r: &GuestRam) -> Vec<(u64, u64)> {
    r.iter().map(|g| (g.start_addr().0, g.len())).collect()
}

/// `n` connected channel pairs: the sender's ends and the receiver's.
fn pairs(n: u32) -> (Vec<Channel>, Vec<Incoming>) {
    let (mut out, mut inc) = (Vec::new(), Vec::new());
    for id in 0..n {
        let (a, b) = UnixStream::pair().unwrap();
        let k = a.try_clone().unwrap();
        out.push(Channel {
            writer: Box::new(a),
            abort: Box::new(move || {
                let _ = k.shutdown(std::net::Shutdown::Both);
            }),
        });
        let socket = Some(crate::migration::uri::socket_file(&b).unwrap());
        inc.push(Incoming {
            id,
            input: Box::new(b),
            socket,
        });
    }
    (out, inc)
}

/// Page `p`'s contents in version `v` (0: a zero page).
fn fill(r: &GuestRam, p: u64, v: u8) {
    let page: Vec<u8> = (0..4096u32)
        .map(|i| if v == 0 { 0 } else { (i as u8).wrapping_mul(v) ^ (p as u8) })
        .collect();
    r.write_slice(&page, GuestAddress(p * 4096)).unwrap();
}

fn page(r: &GuestRam, p: u64) -> Vec<u8> {
    let mut b = vec![0u8; 4096];
    r.read_slice(&mut b, GuestAddress(p * 4096)).unwrap();
    b
}

#[test]
fn rounds_arrive_in_order_over_every_compression() {
    for (channels, compression) in [(1, Compression::None), (3, Compression::Zlib), (4, Compression::Zstd)] {
        let (a, b) = (ram(), ram());
        let (out, inc) = pairs(channels);
        let s = Settings {
            channels: channels as u8,
            compression,
            zlib_level: 1,
            zstd_level: 1,
        };
        let mut rx = MultifdReceiver::start(inc, &b, regions(&b), compression).unwrap();
        let mut tx = MultifdSender::start(out, &a, &s).unwrap();
        // Round 1: pages 0..512 (one in 7 zero); round 2 rewrites every third page (some
        // to zero) on whatever channels it lands on. The later copy must win.
        for p in 0..512 {
            fill(&a, p, if p % 7 == 0 { 0 } else { 1 });
        }
        for first in (0..512).step_by(64) {
            tx.send(first * 4096, 64).unwrap();
        }
        tx.sync().unwrap();
        for p in (0..512).step_by(3) {
            fill(&a, p, if p % 2 == 0 { 0 } else { 9 });
        }
        for p in (0..512).step_by(3) {
            tx.send(p * 4096, 1).unwrap();
        }
        tx.finish().unwrap();
        assert_eq!(rx.finish().unwrap(), 512 + 171, "{compression:?}");
        for p in 0..512 {
            assert_eq!(page(&a, p), page(&b, p), "page {p} with {compression:?}");
        }
        let c = &tx.counters;
        let bytes = c.bytes.load(std::sync::atomic::Ordering::Relaxed);
        assert!(bytes > 0);
        if compression != Compression::None {
            assert!(bytes < 400 * 4096, "{compression:?} sent {bytes}");
        }
    }
}

/// Writes one raw packet (`crc` None: the right one).
fn packet(w: &mut UnixStream, kind: Kind, compression: Compression, entries: &[u64], payload: &[u8], arg: u64, crc: Option<u32>) {
    let e: Vec<u8> = entries.iter().flat_map(|v| v.to_le_bytes()).collect();
    let mut h = Header {
        kind,
        compression,
        count: entries.len() as u32,
        len: payload.len() as u32,
        crc: 0,
        arg,
    };
    h.crc = crc.unwrap_or_else(|| wire::packet_crc(&h, &e, payload));
    w.write_all(&h.encode()).unwrap();
    w.write_all(&e).unwrap();
    w.write_all(payload).unwrap();
}

/// What a hostile source writes on a channel.
type Feed<'a> = Box<dyn Fn(&mut UnixStream) + 'a>;

/// One channel fed `feed`; the receiver's verdict and whether page 1 was written.
fn hostile(feed: &dyn Fn(&mut UnixStream)) -> (Result<u64, ChannelError>, bool) {
    let b = ram();
    let (a, s) = UnixStream::pair().unwrap();
    let inc = vec![Incoming {
        id: 0,
        input: Box::new(s),
        socket: None,
    }];
    let mut rx = MultifdReceiver::start(inc, &b, regions(&b), Compression::None).unwrap();
    let mut a = a;
    feed(&mut a);
    drop(a);
    let r = rx.finish();
    (r, page(&b, 1) != vec![0u8; 4096])
}

#[test]
fn hostile_packets_are_refused_before_anything_is_written() {
    let data = vec![7u8; 4096];
    let good = |w: &mut UnixStream| packet(w, Kind::Pages, Compression::None, &[4096], &data, 0, None);
    let (r, written) = hostile(&|w| {
        good(w);
        packet(w, Kind::End, Compression::None, &[], &[], 1, None);
    });
    assert_eq!((r.unwrap(), written), (1, true));
    // Outside RAM (after a good page in the same packet), unaligned, a bad checksum, the
    // wrong compression, short data, a sync out of order, a wrong page count, truncation.
    let cases: Vec<(&str, Feed<'_>)> = vec![
        (
            "outside",
            Box::new(|w| {
                packet(
                    w,
                    Kind::Pages,
                    Compression::None,
                    &[4096, 1 << 40],
                    &[data.clone(), data.clone()].concat(),
                    0,
                    None,
                )
            }),
        ),
        (
            "unaligned",
            Box::new(|w| packet(w, Kind::Pages, Compression::None, &[4096 + 8], &data, 0, None)),
        ),
        (
            "checksum",
            Box::new(|w| packet(w, Kind::Pages, Compression::None, &[4096], &data, 0, Some(1))),
        ),
        (
            "compression",
            Box::new(|w| packet(w, Kind::Pages, Compression::Zstd, &[4096], &data, 0, None)),
        ),
        (
            "short",
            Box::new(|w| packet(w, Kind::Pages, Compression::None, &[4096], &data[..100], 0, None)),
        ),
        (
            "zero with data",
            Box::new(|w| packet(w, Kind::Pages, Compression::None, &[4096 | ZERO_BIT], &data, 0, None)),
        ),
        ("sync", Box::new(|w| packet(w, Kind::Sync, Compression::None, &[], &[], 2, None))),
        ("count", Box::new(|w| packet(w, Kind::End, Compression::None, &[], &[], 5, None))),
        ("truncated", Box::new(|w| w.write_all(&[1, 0, 0]).unwrap())),
    ];
    for (what, feed) in cases {
        let (r, written) = hostile(&*feed);
        let e = r.unwrap_err();
        assert!(!written, "{what}: {e}");
        match what {
            "outside" | "unaligned" => assert!(matches!(e, ChannelError::OutsideRam { .. }), "{what}: {e}"),
            "checksum" => assert!(matches!(e, ChannelError::Wire(WireError::Checksum(0))), "{e}"),
            "sync" => assert_eq!(e.to_string(), "multifd channel 0: sync point 2 follows 0"),
            "count" => assert_eq!(e.to_string(), "multifd channel 0 announces 5 pages but carried 0"),
            _ => {}
        }
    }
}

#[test]
fn a_failing_channel_releases_the_others_waiting_at_a_sync_point() {
    let b = ram();
    let (mut a0, s0) = UnixStream::pair().unwrap();
    let (a1, s1) = UnixStream::pair().unwrap();
    let inc = vec![
        Incoming {
            id: 0,
            input: Box::new(s0),
            socket: None,
        },
        Incoming {
            id: 1,
            input: Box::new(s1),
            socket: None,
        },
    ];
    let mut rx = MultifdReceiver::start(inc, &b, regions(&b), Compression::None).unwrap();
    // Channel 0 waits at sync point 1; channel 1 sends garbage.
    packet(&mut a0, Kind::Sync, Compression::None, &[], &[], 1, None);
    let mut a1 = a1;
    a1.write_all(&[9u8; 24]).unwrap();
    let e = rx.finish().unwrap_err();
    assert!(matches!(e, ChannelError::Wire(WireError::Bad { channel: 1, .. })), "{e}");
    drop(a0);
}
