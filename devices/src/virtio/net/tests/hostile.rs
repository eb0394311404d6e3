//! A driver that hands the device broken buffers: the device must not read or write
//! outside guest RAM, must not panic, marks itself NEEDS_RESET with a config interrupt,
//! and does nothing more until reset. Other NICs go on as before.

use super::*;
use crate::device::Device;
use crate::net::MAX_FRAME;
use crate::virtio::net::features as f;

const END: u64 = MEM_SIZE as u64;

type Setup = fn(&mut Nic);

/// Each way of breaking the device, as the driver does it, and what the device says of it.
const CASES: &[(&str, &str, Setup)] = &[
    ("tx buffer outside RAM", "not readable guest memory", |n| {
        tx_chain(n, &[(END + 0x1000, 100, false)])
    }),
    ("tx buffer across the end of RAM", "not readable guest memory", |n| {
        tx_chain(n, &[(END - 50, 100, false)])
    }),
    ("tx descriptor loop", "does not end", |n| {
        n.tx.write_desc(&n.g.mem, 5, TX_BUF, 12, VRING_DESC_F_NEXT, 6);
        n.tx.write_desc(&n.g.mem, 6, TX_BUF, 12, VRING_DESC_F_NEXT, 5);
        n.tx.publish(&n.g.mem, 5);
        n.g.notify(1);
    }),
    ("tx chain longer than the queue", "more than the queue's 16", |n| {
        let table = TX_BUF + 0x10000;
        let ind = Ring::new(table, 20);
        for i in 0..20 {
            ind.write_desc(&n.g.mem, i, TX_BUF, 12, if i < 19 { VRING_DESC_F_NEXT } else { 0 }, i + 1);
        }
        n.tx.write_desc(&n.g.mem, 3, table, 20 * 16, VRING_DESC_F_INDIRECT, 0);
        n.tx.publish(&n.g.mem, 3);
        n.g.notify(1);
    }),
    ("tx lengths overflowing 4 GiB", "does not end", |n| {
        tx_chain(
            n,
            &[(TX_BUF, 0x8000_0000, false), (TX_BUF, 0x8000_0000, false), (TX_BUF, 12, false)],
        )
    }),
    ("tx frame over MAX_FRAME", "65563 bytes", |n| {
        tx_chain(n, &[(TX_BUF, MAX_FRAME as u32 + 1, false)])
    }),
    ("tx chain shorter than a header", "less than a virtio-net header", |n| {
        tx_chain(n, &[(TX_BUF, 8, false)])
    }),
    ("tx head index past the ring", "chain 500 does not end", |n| {
        n.tx.publish(&n.g.mem, 500);
        n.g.notify(1);
    }),
    ("tx avail index far past the ring", "invalid available ring index", |n| {
        n.g.mem
            .write_obj(n.tx.avail_idx.wrapping_add(1000), GuestAddress(n.tx.avail + 2))
            .unwrap();
        n.g.notify(1);
    }),
    ("rx buffer across the end of RAM", "not writable guest memory", |n| {
        n.rx.push(&n.g.mem, &[(END - 100, 1526, true)]);
        n.g.notify(0);
        n.wire.inject(&frame(OWN, 60, 0));
    }),
    ("rx buffer smaller than a header", "8 writable bytes", |n| {
        n.rx.push(&n.g.mem, &[(RX_BUFS, 8, true)]);
        n.g.notify(0);
        n.wire.inject(&frame(OWN, 60, 0));
    }),
    ("rx buffer only device-readable", "0 writable bytes", |n| {
        n.rx.push(&n.g.mem, &[(RX_BUFS, 1526, false)]);
        n.g.notify(0);
        n.wire.inject(&frame(OWN, 60, 0));
    }),
    ("rx descriptor loop", "does not end", |n| {
        n.rx.write_desc(&n.g.mem, 7, RX_BUFS, 100, VRING_DESC_F_NEXT | VRING_DESC_F_WRITE, 7);
        n.rx.publish(&n.g.mem, 7);
        n.g.notify(0);
        n.wire.inject(&frame(OWN, 60, 0));
    }),
    ("ctrl command without an ack byte", "no room for the ack", |n| {
        n.ctrl.push(&n.g.mem, &[(CTRL_BUF, 2, false), (CTRL_BUF + 0x10, 1, false)]);
        n.g.notify(2);
    }),
    ("ctrl command without a header", "no room for the 2-byte command header", |n| {
        n.ctrl.push(&n.g.mem, &[(CTRL_BUF, 1, false), (CTRL_BUF + 0xff0, 1, true)]);
        n.g.notify(2);
    }),
    ("ctrl header outside RAM", "not guest memory", |n| {
        n.ctrl.push(&n.g.mem, &[(END, 2, false), (CTRL_BUF + 0xff0, 1, true)]);
        n.g.notify(2);
    }),
];

fn tx_chain(n: &mut Nic, bufs: &[(u64, u32, bool)]) {
    n.g.mem
        .write_slice(&[&header()[..], &frame(OTHER, 60, 0)].concat(), GuestAddress(TX_BUF))
        .unwrap();
    n.tx.push(&n.g.mem, bufs);
    n.g.notify(1);
}

/// The last page of RAM, which the straddling buffers point into, filled with a marker.
fn mark_last_page(mem: &GuestMem) {
    mem.write_slice(&[0xab; 0x1000], GuestAddress(END - 0x1000)).unwrap();
}

fn last_page_untouched(mem: &GuestMem) -> bool {
    let mut page = [0u8; 0x1000];
    mem.read_slice(&mut page, GuestAddress(END - 0x1000)).unwrap();
    page.iter().all(|&b| b == 0xab)
}

#[test]
fn broken_buffers_need_reset_and_harm_nothing() {
    let mut bystander = Nic::start(false, ALL);
    for (what, why, setup) in CASES {
        let mut n = Nic::start(false, ALL);
        mark_last_page(n.mem());
        setup(&mut n);
        assert!(n.config_irq(), "{what}: no config interrupt");
        assert!(n.needs_reset(), "{what}: NEEDS_RESET not set");
        let error = n.control.error().unwrap_or_default();
        assert!(error.contains(why), "{what}: the device says '{error}'");
        assert!(last_page_untouched(n.mem()), "{what}: wrote outside its buffers");
        // Stopped: a good frame now is not sent, a received one not delivered.
        let used = n.tx.used_idx(&n.g.mem);
        n.g.mem
            .write_slice(&[&header()[..], &frame(OTHER, 60, 1)].concat(), GuestAddress(TX_BUF))
            .unwrap();
        n.tx.push(&n.g.mem, &[(TX_BUF, 72, false)]);
        n.g.notify(1);
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(n.tx.used_idx(&n.g.mem), used, "{what}: still transmitting");
        assert!(n.wire.quiet_for(0), "{what}: sent after breaking");
        // The neighbour is unaffected.
        let f1 = frame(OTHER, 60, 7);
        bystander.transmit(&header(), &f1);
        assert_eq!(bystander.wire.sent(), f1, "{what}: the other NIC stopped");
        // A reset brings the device back.
        n.g.set_status(0);
        assert!(!n.needs_reset() && n.control.error().is_none(), "{what}: reset kept the error");
        n.g.mem.write_slice(&[0u8; 0x30000], GuestAddress(RX_RING)).unwrap();
        let mut n = Nic::init(n.g, n.wire, n.control, ALL);
        let f2 = frame(OTHER, 60, 2);
        n.transmit(&header(), &f2);
        assert_eq!(n.wire.sent(), f2, "{what}: not working after reset");
    }
}

#[test]
fn rx_buffer_too_small_for_a_driver_that_does_not_merge() {
    let mut n = Nic::start(false, ALL & !f::MRG_RXBUF);
    n.post_rx(&[100]);
    n.wire.inject(&frame(OWN, 60, 0));
    assert_eq!(n.received(1)[0].1, 72, "a small frame into a small buffer is fine");
    n.post_rx(&[100]);
    n.wire.inject(&frame(OWN, 200, 0));
    assert!(n.config_irq());
    assert!(n.needs_reset());
}

#[test]
fn a_broken_state_survives_save_and_restore() {
    let mut a = Nic::start(false, ALL);
    tx_chain(&mut a, &[(TX_BUF, 8, false)]);
    assert!(a.config_irq());
    lock(&a.g.dev).pause();
    let state = lock(&a.g.dev).save_state();
    let mem = a.g.mem.clone();
    let (g, wire, control) = Nic::on_memory(false, mem);
    lock(&g.dev).restore_state(&state).unwrap();
    let mut b = Nic {
        g,
        rx: a.rx,
        tx: a.tx,
        ctrl: a.ctrl,
        wire,
        control,
        acked: ALL,
        next_buf: RX_BUFS,
    };
    assert!(b.needs_reset());
    assert!(b.control.error().is_some());
    let used = b.tx.used_idx(&b.g.mem);
    tx_chain(&mut b, &[(TX_BUF, 72, false)]);
    assert!(b.tx.idle_for(&b.g.mem, 30) && b.tx.used_idx(&b.g.mem) == used);
}

static WORKER_PANICS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Random descriptors on all three queues, random frames from the wire, link flaps and
/// pauses must never panic the I/O thread; after a reset the NIC works.
#[test]
fn random_rings_and_frames() {
    use std::sync::atomic::Ordering;
    let prev = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if std::thread::current().name().is_some_and(|n| n.starts_with("virtio-net")) {
            WORKER_PANICS.fetch_add(1, Ordering::SeqCst);
        }
        prev(info);
    }));
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let mut rnd = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut n = Nic::start(false, ALL);
    // A broken NIC stops reading: the wire must not block on a full socket.
    n.wire.sock.set_nonblocking(true).unwrap();
    let mut broke = 0;
    for episode in 0..100 {
        for _ in 0..60 {
            let q = (rnd() % 3) as u16;
            let ring = match q {
                0 => &mut n.rx,
                1 => &mut n.tx,
                _ => &mut n.ctrl,
            };
            for i in 0..3 {
                let addr = if rnd() % 4 == 0 { rnd() } else { rnd() % END };
                let len = if rnd() % 4 == 0 { rnd() as u32 } else { (rnd() % 0x2000) as u32 };
                let idx = (rnd() % u64::from(QSIZE)) as u16 ^ i;
                ring.write_desc(&n.g.mem, idx % QSIZE, addr, len, rnd() as u16 & 7, rnd() as u16 % (QSIZE + 2));
            }
            ring.publish(&n.g.mem, (rnd() % u64::from(QSIZE + 2)) as u16);
            n.g.notify(q);
            let len = (rnd() % 1600) as usize;
            let mut f: Vec<u8> = (0..len).map(|_| rnd() as u8).collect();
            if len >= 6 && rnd() % 2 == 0 {
                f[..6].copy_from_slice(&OWN.0);
            }
            let _ = n.wire.sock.send(&f);
            match rnd() % 40 {
                0 => n.control.set_link(rnd() % 2 == 0),
                1 => n.control.announce(),
                2 => {
                    lock(&n.g.dev).pause();
                    let _ = lock(&n.g.dev).save_state();
                    lock(&n.g.dev).resume();
                }
                _ => {}
            }
        }
        broke += usize::from(n.control.error().is_some());
        n.control.set_link(true);
        // Start over, as a driver that found NEEDS_RESET would.
        n.g.set_status(0);
        n.g.mem.write_slice(&[0u8; 0x30000], GuestAddress(RX_RING)).unwrap();
        while n.wire.sock.recv(&mut [0u8; 70000]).is_ok() {}
        n = Nic::init(n.g, n.wire, n.control, if episode % 2 == 0 { ALL } else { ALL & !f::MRG_RXBUF });
    }
    n.wire.sock.set_nonblocking(false).unwrap();
    let f1 = frame(OTHER, 60, 1);
    n.transmit(&header(), &f1);
    let mut got = n.wire.sent();
    while got != f1 {
        got = n.wire.sent();
    }
    assert_eq!(WORKER_PANICS.load(Ordering::SeqCst), 0);
    assert!(broke > 0, "the random rings never broke the device: the test tests nothing");
}
