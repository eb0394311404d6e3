//! Pause, resume, reset, and save/restore into a fresh device in the middle of traffic.

use super::*;
use crate::device::Device;
use crate::virtio::net::features as f;

#[test]
fn pause_stops_all_guest_memory_traffic() {
    let mut n = Nic::start(false, ALL);
    lock(&n.g.dev).pause();
    let f1 = frame(OTHER, 60, 1);
    n.g.mem.write_slice(&[&header()[..], &f1].concat(), GuestAddress(TX_BUF)).unwrap();
    n.tx.push(&n.g.mem, &[(TX_BUF, 72, false)]);
    n.g.notify(1);
    n.post_rx(&[1526]);
    let f2 = frame(OWN, 60, 2);
    n.wire.inject(&f2);
    let mem = n.g.mem.clone();
    let map = bitmap(&mem);
    map.reset();
    assert!(n.tx.idle_for(&n.g.mem, 50) && n.rx.idle_for(&n.g.mem, 0));
    assert!(n.wire.quiet_for(0));
    assert!(
        !map.is_addr_set(RX_BUFS as usize) && !map.is_addr_set(n.rx.used as usize),
        "nothing written while paused"
    );
    lock(&n.g.dev).resume();
    assert_eq!(n.tx.wait_used(&n.g.mem, 1), vec![(0, 0)]);
    assert_eq!(n.wire.sent(), f1);
    assert_eq!(n.received(1), vec![(0, 72)]);
    assert_eq!(n.get(RX_BUFS + 12, 60), f2);
    assert!(map.is_addr_set(RX_BUFS as usize), "received data is logged for migration");
}

#[test]
fn reset_forgets_what_the_driver_set() {
    let mut n = Nic::start(false, ALL);
    assert_eq!(n.command(0, 0, &[0]), 0, "promisc off");
    assert_eq!(n.command(1, 1, &OTHER.0), 0);
    assert_eq!(n.config_mac(), OTHER);
    n.control.announce();
    assert!(n.config_irq());
    n.control.set_link(false);
    n.g.set_status(0);
    assert_eq!(n.g.status(), 0);
    assert_eq!(n.config_mac(), OWN, "the configured address is back");
    assert_eq!(n.config_status(), 0, "announce cleared, the link stays the VMM's");
    n.control.set_link(true);
    n.g.mem.write_slice(&[0u8; 0x30000], GuestAddress(RX_RING)).unwrap();
    let (g, wire, control) = (n.g, n.wire, n.control);
    let mut n = Nic::init(g, wire, control, ALL & !f::MRG_RXBUF);
    let b = n.post_rx(&[1526]);
    n.wire.inject(&frame(OTHER, 60, 1));
    assert_eq!(n.received(1)[0].1, 72, "promiscuous again");
    assert_eq!(n.get(b[0] + 10, 2), [1, 0]);
}

/// The guest's traffic goes on across a save into a fresh device with a fresh back end:
/// a frame held for the guest, frames queued by the driver, filter, address, link and
/// announce state all come along.
#[test]
fn save_restore_mid_traffic() {
    let mut a = Nic::start(true, ALL);
    let new_mac = MacAddr([0x52, 0x54, 0, 9, 9, 9]);
    assert_eq!(a.command(0, 0, &[0]), 0, "promisc off");
    assert_eq!(a.command(1, 1, &new_mac.0), 0);
    a.control.announce();
    assert!(a.config_irq());
    let _ = a.wire.sent();
    // Traffic in flight: one frame received, the next held for lack of buffers.
    a.post_rx(&[1526]);
    let held = frame(new_mac, 300, 1);
    a.wire.inject(&[&header()[..], &frame(new_mac, 100, 0)].concat());
    a.wire.inject(&[&header()[..], &held].concat());
    assert_eq!(a.received(1)[0].1, 112);
    assert!(a.rx.idle_for(&a.g.mem, 30));
    lock(&a.g.dev).pause();
    // The driver queues a frame to send before the snapshot is taken.
    let out = frame(OTHER, 80, 2);
    a.g.mem.write_slice(&[&header()[..], &out].concat(), GuestAddress(TX_BUF)).unwrap();
    a.tx.push(&a.g.mem, &[(TX_BUF, 92, false)]);
    a.g.notify(1);
    let state = lock(&a.g.dev).save_state();
    let (mem, rx, tx, ctrl) = (a.g.mem.clone(), a.rx, a.tx, a.ctrl);
    lock(&a.g.dev).shutdown();
    drop(a.g);

    let (g, wire, control) = Nic::on_memory(true, mem);
    lock(&g.dev).pause();
    lock(&g.dev).restore_state(&state).unwrap();
    lock(&g.dev).resume();
    let mut b = Nic {
        g,
        rx,
        tx,
        ctrl,
        wire,
        control,
        acked: ALL,
        next_buf: RX_BUFS + 0x10000,
    };
    assert_eq!(b.tx.wait_used(&b.g.mem, 1)[0].1, 0, "the queued frame goes out");
    assert_eq!(b.wire.sent(), [&header()[..], &out].concat());
    assert_eq!(b.config_mac(), new_mac);
    assert_eq!(b.control.mac(), new_mac);
    assert_eq!(b.config_status(), 3, "link up, announce pending");
    assert_eq!(
        lock(&b.wire.offloads).last().map(|o| o.csum && o.tso4),
        Some(true),
        "the fresh back end gets the guest's offloads"
    );
    let bufs = b.post_rx(&[1526, 1526]);
    assert_eq!(b.received(1)[0].1, 312, "the held frame arrives first");
    assert_eq!(b.get(bufs[0] + 12, 300), held);
    b.wire.inject(&[&header()[..], &frame(OWN, 60, 3)].concat());
    let last = frame(new_mac, 60, 4);
    b.wire.inject(&[&header()[..], &last].concat());
    assert_eq!(b.received(1)[0].1, 72, "the old address is filtered out, the new one passes");
    assert_eq!(b.get(bufs[1] + 12, 60), last);
    assert_eq!(b.command(3, 0, &[]), 0, "the announce ack finds the bit");
    assert_eq!(b.config_status(), 1);

    // A state from a NIC whose back end had no header (no offloads) is refused.
    let (wire, backend) = Wire::new(false);
    let plain = VirtioNet::new(Box::new(backend), NetConfig::default()).unwrap();
    let mut c = crate::virtio::pci::VirtioPciDevice::new(Box::new(plain), b.g.mem.clone(), FakeMsi::new()).unwrap();
    assert!(c.check_state(&state).is_err());
    assert!(c.restore_state(&state).is_err());
    drop(wire);
}
