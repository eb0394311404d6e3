//! The dirty log on a real KVM VM (no vCPU runs: the VMM's writes stand for the guest's
//! first touches), both ways, and the manual way's bookkeeping on its own.

use super::*;
use crate::migration::dirty::{count, listed};
use vm_memory::{Bytes, GuestAddress};

fn vm_with(ram: &GuestRam) -> VmFd {
    let kvm = crate::vm::kvm::open().expect("/dev/kvm");
    let vm = kvm.create_vm().expect("a VM");
    crate::memory::register(&vm, ram, false).expect("slots");
    vm
}

fn sample() -> GuestRam {
    let ram = GuestRam::from_ranges(&[(GuestAddress(0), 32 << 20), (GuestAddress(1 << 32), (4 << 20) + 3 * 4096)]).unwrap();
    for p in [5u64, 6, 900] {
        ram.write_obj(1u64, GuestAddress(p * PAGE)).unwrap();
    }
    ram.write_obj(1u64, GuestAddress((1 << 32) + PAGE)).unwrap();
    ram
}

/// Writes `v` at `gpa` straight into the host mapping, as a guest's write lands there
/// (vm-memory's bitmap of VMM writes does not see it).
fn poke(ram: &GuestRam, gpa: u64, v: u8) {
    let host = ram.get_host_address(GuestAddress(gpa)).unwrap();
    // SAFETY: `host` points into a live mapping of `ram`, one byte of which is written.
    unsafe { host.write_volatile(v) };
}

fn ways() -> Vec<Way> {
    let kvm = crate::vm::kvm::open().expect("/dev/kvm");
    let vm = kvm.create_vm().expect("a VM");
    if manual::offered(&vm) {
        vec![Way::Manual, Way::Classic]
    } else {
        eprintln!("KVM does not offer manual dirty-log protection here: the classic way only");
        vec![Way::Classic]
    }
}

#[test]
fn the_first_round_is_what_was_touched_and_then_nothing_is_dirty() {
    for way in ways() {
        let ram = sample();
        let vm = vm_with(&ram);
        let mut log = DirtyLog::start_as(&vm, &ram, way).unwrap();
        assert_eq!(log.way(), way);
        let first = log.first(&vm, &ram).unwrap();
        assert_eq!(listed(&first, &ram), vec![vec![(5, 2), (900, 1)], vec![(1, 1)]], "{way:?}");
        // Nothing ran: no page is dirty, though every bit of KVM's log was set (manual).
        let next = log.collect(&vm, &ram).unwrap();
        assert_eq!(count(&next), 0, "{way:?}: {:?}", listed(&next, &ram));
        log.stop(&vm, &ram);
    }
}

/// A page first touched after the first round is found at the next sync, once; so is a
/// device's write through the VMM to a page touched before.
#[test]
fn a_page_touched_after_the_first_round_is_sent() {
    for way in ways() {
        let ram = sample();
        let vm = vm_with(&ram);
        let mut log = DirtyLog::start_as(&vm, &ram, way).unwrap();
        log.first(&vm, &ram).unwrap();
        poke(&ram, 3000 * PAGE + 17, 9);
        poke(&ram, (1 << 32) + 1026 * PAGE, 9);
        ram.write_obj(2u64, GuestAddress(900 * PAGE)).unwrap();
        let next = log.collect(&vm, &ram).unwrap();
        let want = match way {
            // The classic way learns of new pages from KVM only, which saw no guest write.
            Way::Classic => vec![vec![(900, 1)], vec![]],
            Way::Manual => vec![vec![(900, 1), (3000, 1)], vec![(1026, 1)]],
        };
        assert_eq!(listed(&next, &ram), want, "{way:?}");
        assert_eq!(count(&log.collect(&vm, &ram).unwrap()), 0, "{way:?}");
        log.stop(&vm, &ram);
    }
}

/// A region the guest never touched has no armed page: its KVM log is skipped until a
/// page there is populated; that page is found once, and from then on the log is read.
#[test]
fn a_region_untouched_at_first_is_followed_from_its_first_page() {
    for way in ways() {
        let ram = GuestRam::from_ranges(&[(GuestAddress(0), 32 << 20), (GuestAddress(1 << 32), 64 << 20)]).unwrap();
        ram.write_obj(1u64, GuestAddress(7 * PAGE)).unwrap();
        let vm = vm_with(&ram);
        let mut log = DirtyLog::start_as(&vm, &ram, way).unwrap();
        assert_eq!(listed(&log.first(&vm, &ram).unwrap(), &ram), vec![vec![(7, 1)], vec![]], "{way:?}");
        assert_eq!(count(&log.collect(&vm, &ram).unwrap()), 0, "{way:?}");
        poke(&ram, (1 << 32) + 5000 * PAGE, 3);
        ram.write_obj(2u64, GuestAddress((1 << 32) + 70 * PAGE)).unwrap();
        let want = match way {
            Way::Classic => vec![vec![], vec![(70, 1)]],
            Way::Manual => vec![vec![], vec![(70, 1), (5000, 1)]],
        };
        assert_eq!(listed(&log.collect(&vm, &ram).unwrap(), &ram), want, "{way:?}");
        assert_eq!(count(&log.collect(&vm, &ram).unwrap()), 0, "{way:?}");
        log.stop(&vm, &ram);
    }
}

#[test]
fn span_covers_the_words_of_the_ranges() {
    assert_eq!(span(&[]), None);
    assert_eq!(span(&[(70, 71)]), Some(1..2));
    assert_eq!(span(&[(130, 200), (3, 64)]), Some(0..4));
}

/// Logging restarts cleanly after a stop (a second migration of the same VM).
#[test]
fn the_log_starts_again_after_a_stop() {
    let ram = sample();
    let vm = vm_with(&ram);
    for way in ways() {
        let mut log = DirtyLog::start_as(&vm, &ram, way).unwrap();
        assert_eq!(count(&log.first(&vm, &ram).unwrap()), 4, "{way:?}");
        assert_eq!(count(&log.collect(&vm, &ram).unwrap()), 0, "{way:?}");
        log.stop(&vm, &ram);
    }
}

#[test]
fn take_keeps_armed_writes_and_arms_new_pages() {
    // Pages 0..4: armed 0 and 1; KVM's bits: 0 (written), 2 and 3 (unarmed: meaningless);
    // populated now: 1, 2.
    let mut log = vec![0b1101u64];
    let mut armed = vec![0b0011u64];
    take(&mut log, &mut armed, Some(&[(1, 3)]));
    assert_eq!(log, vec![0b0101]);
    assert_eq!(armed, vec![0b0111]);
    // Populated ranges across words arm whole words; an armed page's bit stays KVM's.
    let mut log = vec![u64::MAX, u64::MAX, u64::MAX];
    let mut armed = vec![0u64, 1 << 5, 0];
    take(&mut log, &mut armed, Some(&[(60, 140)]));
    assert_eq!(log, vec![0b1111 << 60, u64::MAX, (1 << 12) - 1]);
    assert_eq!(armed, log);
    // Without a scan (every page armed) the log is taken as it is.
    let mut log = vec![0b1001u64];
    let mut armed = vec![u64::MAX];
    take(&mut log, &mut armed, None);
    assert_eq!(log, vec![0b1001]);
}

#[test]
fn all_ones_stops_at_the_last_page() {
    assert_eq!(all_ones(64), vec![u64::MAX]);
    assert_eq!(all_ones(67), vec![u64::MAX, 0b111]);
    assert_eq!(all_ones(0), Vec::<u64>::new());
}
