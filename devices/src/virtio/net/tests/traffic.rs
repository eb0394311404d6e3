//! Frames both ways, with and without a back-end header and merged receive buffers.

use super::*;
use crate::virtio::net::features::{self as f, MRG_RXBUF};

#[test]
fn identity_features_and_config() {
    let (mut g, _wire, control) = Nic::plugged(false);
    assert_eq!(g.cfg_read(0x00, 4), 0x1041_1af4, "virtio-net, modern");
    assert_eq!(g.cfg_read(0x08, 4) >> 8, 0x020000, "Ethernet controller");
    assert_eq!(g.common_read(0x12, 2), 3, "rx, tx, ctrl");
    let offered = g.device_features();
    for bit in [
        f::MAC,
        f::STATUS,
        f::MRG_RXBUF,
        f::CTRL_VQ,
        f::CTRL_RX,
        f::CTRL_RX_EXTRA,
        f::CTRL_MAC_ADDR,
        f::GUEST_ANNOUNCE,
    ] {
        assert_ne!(offered & bit, 0, "{bit:#x}");
    }
    assert_eq!(offered & f::OFFLOADS, 0, "no offloads without a back-end header");
    let (mut gv, _w, _c) = Nic::plugged(true);
    assert_eq!(gv.device_features() & f::OFFLOADS, f::OFFLOADS);
    let dev = g.caps.device;
    let mac: Vec<u8> = (0..6).map(|i| g.read(dev + i, 1) as u8).collect();
    assert_eq!(mac, OWN.0);
    assert_eq!(g.read(dev + 6, 2), 1, "link up");
    assert_eq!(g.read(dev + 8, 2), 1, "one queue pair");
    assert_eq!(control.info(), "model=virtio-net-pci,macaddr=52:54:00:12:34:56");
    assert_eq!(control.backend_info(), "fake");
    assert_eq!(control.mac(), OWN);
    assert!(control.link());
}

#[test]
fn transmit_strips_or_keeps_the_header() {
    let mut n = Nic::start(false, ALL);
    let f1 = frame(OTHER, 60, 1);
    n.transmit(&header(), &f1);
    assert_eq!(n.wire.sent(), f1, "header stripped");
    // The header and the frame in separate descriptors, and through an indirect table.
    let f2 = frame(OTHER, 1514, 2);
    n.g.mem.write_slice(&header(), GuestAddress(TX_BUF)).unwrap();
    n.g.mem.write_slice(&f2, GuestAddress(TX_BUF + 0x1000)).unwrap();
    n.tx.push(&n.g.mem, &[(TX_BUF, 12, false), (TX_BUF + 0x1000, 1514, false)]);
    n.g.notify(1);
    n.tx.wait_used(&n.g.mem, 1);
    assert_eq!(n.wire.sent(), f2);
    let table = TX_BUF + 0x3000;
    let ind = Ring::new(table, 2);
    ind.write_desc(&n.g.mem, 0, TX_BUF, 12, VRING_DESC_F_NEXT, 1);
    ind.write_desc(&n.g.mem, 1, TX_BUF + 0x1000, 1514, 0, 0);
    n.tx.write_desc(&n.g.mem, 9, table, 32, VRING_DESC_F_INDIRECT, 0);
    n.tx.publish(&n.g.mem, 9);
    n.g.notify(1);
    assert_eq!(n.tx.wait_used(&n.g.mem, 1), vec![(9, 0)]);
    assert_eq!(n.wire.sent(), f2);
    assert!(n.g.msi.wait().is_some(), "tx interrupt");

    let mut v = Nic::start(true, ALL);
    assert_ne!(v.acked & f::HOST_TSO4, 0);
    let big = frame(OTHER, 30000, 3);
    v.transmit(&header(), &big);
    assert_eq!(v.wire.sent(), [&header()[..], &big].concat(), "header passed on");
}

#[test]
fn receive_into_single_buffers() {
    let mut n = Nic::start(false, ALL & !MRG_RXBUF);
    let bufs = n.post_rx(&[1526, 1526]);
    let f1 = frame(OWN, 64, 5);
    n.wire.inject(&f1);
    assert_eq!(n.received(1), vec![(0, 12 + 64)]);
    let mut hdr = [0u8; 12];
    hdr[10] = 1; // num_buffers
    assert_eq!(n.get(bufs[0], 76), [&hdr[..], &f1].concat());
    // A frame larger than the driver's buffers can ever take is dropped; the next fits.
    n.wire.inject(&frame(OWN, 2000, 6));
    let f3 = frame(OWN, 1514, 7);
    n.wire.inject(&f3);
    assert_eq!(n.received(1), vec![(1, 12 + 1514)]);
    assert_eq!(n.get(bufs[1] + 12, 1514), f3);

    // A back end with a header: its header goes to the guest, num_buffers filled in.
    let mut v = Nic::start(true, ALL & !MRG_RXBUF & !f::GUEST_TSO4 & !f::GUEST_TSO6 & !f::GUEST_UFO);
    let b = v.post_rx(&[1526]);
    let f4 = frame(OWN, 100, 8);
    let mut from_host = header().to_vec();
    from_host[10] = 0x77; // whatever the back end left there
    v.wire.inject(&[&from_host[..], &f4].concat());
    assert_eq!(v.received(1)[0].1, 112);
    let mut expected = header();
    expected[10] = 1;
    assert_eq!(v.get(b[0], 112), [&expected[..], &f4].concat());
}

#[test]
fn receive_merges_buffers() {
    let mut n = Nic::start(false, ALL);
    assert_ne!(n.acked & MRG_RXBUF, 0);
    let bufs = n.post_rx(&[100, 100, 100, 100]);
    let f1 = frame(OWN, 250, 9);
    n.wire.inject(&f1);
    let used = n.received(3);
    assert_eq!(used, vec![(0, 100), (1, 100), (2, 62)]);
    let mut got = n.get(bufs[0], 100);
    got.extend(n.get(bufs[1], 100));
    got.extend(n.get(bufs[2], 62));
    assert_eq!(&got[..12], &[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 3, 0], "num_buffers 3");
    assert_eq!(&got[12..], &f1[..]);
    assert_eq!(n.get(bufs[2] + 62, 4), vec![0xee; 4], "nothing past the frame");
    // The fourth buffer takes the next small frame.
    n.wire.inject(&frame(OWN, 60, 10));
    assert_eq!(n.received(1), vec![(3, 72)]);
}

#[test]
fn receive_waits_for_buffers_and_resumes_on_notify() {
    let mut n = Nic::start(false, ALL);
    let frames: Vec<Vec<u8>> = (0..5).map(|i| frame(OWN, 200 + i * 100, i as u8)).collect();
    for f in &frames {
        n.wire.inject(f);
    }
    assert!(n.rx.idle_for(&n.g.mem, 50), "no buffers, nothing received");
    // The back end is level triggered: while the guest has no room, the I/O thread does not
    // wait on it (nor read it in a loop).
    let recvs = n.wire.recvs.load(Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(30));
    assert_eq!(n.wire.recvs.load(Ordering::SeqCst), recvs, "the back end is left alone");
    // A frame spread over two buffers needs both: with one posted, it still waits.
    let b = n.post_rx(&[200]);
    assert!(n.rx.idle_for(&n.g.mem, 50), "one buffer is not enough for 212 bytes");
    let b2 = n.post_rx(&[1526]);
    assert_eq!(n.received(2), vec![(0, 200), (1, 12)]);
    assert_eq!([n.get(b[0] + 12, 188), n.get(b2[0], 12)].concat(), frames[0]);
    let mut bufs = Vec::new();
    for _ in 0..4 {
        bufs.extend(n.post_rx(&[1526]));
    }
    let used = n.received(4);
    for (i, (head, len)) in used.iter().enumerate() {
        assert_eq!(*len as usize, 12 + frames[i + 1].len());
        assert_eq!(n.get(bufs[i] + 12, frames[i + 1].len()), frames[i + 1], "in order, head {head}");
    }
}

#[test]
fn offloads_follow_the_guest() {
    let n = Nic::start(true, ALL & !f::GUEST_UFO & !f::GUEST_TSO6);
    assert_eq!(
        lock(&n.wire.offloads).last().copied(),
        Some(Offloads {
            csum: true,
            tso4: true,
            tso6: false,
            ecn: true,
            ufo: false,
        })
    );
    let mut n = n;
    n.g.set_status(0);
    assert_eq!(
        lock(&n.wire.offloads).last().copied(),
        Some(Offloads::default()),
        "reset turns them off"
    );
    let plain = Nic::start(false, ALL);
    assert!(lock(&plain.wire.offloads).is_empty(), "never asked of a back end without a header");
}

/// As QEMU: while the driver has receive buffers, it need not notify the rx queue (without
/// EVENT_IDX the device sets VIRTQ_USED_F_NO_NOTIFY); once they run out, it must.
#[test]
fn rx_notifies_are_off_while_the_guest_has_buffers() {
    let mut n = Nic::start(false, ALL & !crate::virtio::VIRTIO_F_RING_EVENT_IDX);
    let no_notify = |n: &Nic| n.get(n.rx.used, 2)[0] & 1 != 0;
    assert!(!no_notify(&n), "a fresh ring asks for notifies");
    n.post_rx(&[1526, 1526]);
    n.wire.inject(&frame(OWN, 60, 1));
    assert_eq!(n.received(1)[0].1, 72);
    assert!(no_notify(&n), "buffers left: no notify needed");
    n.wire.inject(&frame(OWN, 60, 2));
    n.wire.inject(&frame(OWN, 60, 3));
    assert_eq!(n.received(1)[0].1, 72);
    assert!(n.rx.idle_for(&n.g.mem, 30));
    assert!(!no_notify(&n), "out of buffers: the driver must notify");
    n.post_rx(&[1526]);
    assert_eq!(n.received(1)[0].1, 72, "the waiting frame arrives");
}
