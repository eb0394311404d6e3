//! KVM's dirty log in manual-protect mode: `KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2` with
//! `KVM_DIRTY_LOG_INITIALLY_SET`. Turning logging on then write-protects nothing (every
//! bit reads as set), `KVM_GET_DIRTY_LOG` only reads the bitmap, and `KVM_CLEAR_DIRTY_LOG`
//! clears the bits it is given and write-protects those pages, so that the next write to
//! one of them sets its bit again. What it costs follows the pages cleared, not the slot.
//! Also `KVM_GET_DIRTY_LOG` into a buffer the caller keeps (either way), as kvm-ioctls
//! allocates a fresh one per call (at 64 GiB, 2 MiB whose first touch is slow).

use super::dirty::Bitmap;
use kvm_bindings::{
    KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2, KVM_DIRTY_LOG_INITIALLY_SET, KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE, KVMIO, kvm_clear_dirty_log,
    kvm_dirty_log, kvm_enable_cap,
};
use kvm_ioctls::VmFd;
use vmm_sys_util::ioctl::ioctl_with_ref;
use vmm_sys_util::{ioctl_iow_nr, ioctl_iowr_nr};

ioctl_iowr_nr!(KVM_CLEAR_DIRTY_LOG, KVMIO, 0xc0, kvm_clear_dirty_log);
ioctl_iow_nr!(KVM_GET_DIRTY_LOG, KVMIO, 0x42, kvm_dirty_log);

/// The options asked for: manual protection, every bit set when logging starts.
const OPTIONS: u64 = (KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE | KVM_DIRTY_LOG_INITIALLY_SET) as u64;

/// Whether this KVM offers manual protection with initially-set bitmaps.
pub fn offered(vm: &VmFd) -> bool {
    let got = vm.check_extension_raw(KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2 as _);
    got > 0 && (got as u64) & OPTIONS == OPTIONS
}

/// Turns manual protection on (for the slots whose logging starts afterwards) or off.
pub fn set(vm: &VmFd, on: bool) -> Result<(), kvm_ioctls::Error> {
    let mut cap = kvm_enable_cap {
        cap: KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2,
        ..Default::default()
    };
    cap.args[0] = if on { OPTIONS } else { 0 };
    vm.enable_cap(&cap)
}

/// Reads slot `slot`'s dirty log into `buf` (one bit per page of the slot, at least).
pub fn get(vm: &VmFd, slot: u32, buf: &mut Bitmap) -> Result<(), kvm_ioctls::Error> {
    let mut arg = kvm_dirty_log {
        slot,
        ..Default::default()
    };
    arg.__bindgen_anon_1.dirty_bitmap = buf.as_mut_ptr().cast();
    // SAFETY: `arg` is a valid kvm_dirty_log whose bitmap points at `buf`, which the
    // caller sized to one bit per page of the slot (KVM writes that many bits, rounded up
    // to 64) and which outlives the call.
    let rc = unsafe { ioctl_with_ref(vm, KVM_GET_DIRTY_LOG(), &arg) };
    if rc < 0 {
        return Err(kvm_ioctls::Error::last());
    }
    Ok(())
}

/// Words per `KVM_CLEAR_DIRTY_LOG` at most (4 Mi pages), so KVM holds its MMU lock briefly.
const MAX_WORDS: usize = 1 << 16;

/// The pages `bits` marks in slot `slot` of `pages` pages: their bits are cleared and they
/// are write-protected. One call covers the words from the first non-zero one to the last
/// (KVM skips zero words itself, and each call ends in a TLB flush), in pieces of at most
/// [`MAX_WORDS`].
pub fn clear(vm: &VmFd, slot: u32, pages: u64, bits: &Bitmap) -> Result<(), kvm_ioctls::Error> {
    let (Some(first), Some(last)) = (bits.iter().position(|&w| w != 0), bits.iter().rposition(|&w| w != 0)) else {
        return Ok(());
    };
    clear_span(vm, slot, pages, bits, first..last + 1)
}

/// [`clear`] when the caller knows the marked pages lie in `words` (clipped to `bits`):
/// the rest of the bitmap is not read, as it may never have been touched.
pub fn clear_span(vm: &VmFd, slot: u32, pages: u64, bits: &Bitmap, words: std::ops::Range<usize>) -> Result<(), kvm_ioctls::Error> {
    let mut w = words.start;
    let last = words.end.min(bits.len());
    while w < last {
        let end = (w + MAX_WORDS).min(last);
        clear_words(vm, slot, pages, w, &bits[w..end])?;
        w = end;
    }
    Ok(())
}

/// One `KVM_CLEAR_DIRTY_LOG` over the words of `bits`, the first being word `word`.
fn clear_words(vm: &VmFd, slot: u32, pages: u64, word: usize, bits: &[u64]) -> Result<(), kvm_ioctls::Error> {
    let first_page = word as u64 * 64;
    // KVM wants whole words, except for the last word of the slot.
    let num_pages = (bits.len() as u64 * 64).min(pages - first_page);
    let mut arg = kvm_clear_dirty_log {
        slot,
        num_pages: num_pages as u32,
        first_page,
        __bindgen_anon_1: Default::default(),
    };
    arg.__bindgen_anon_1.dirty_bitmap = bits.as_ptr() as *mut _;
    // SAFETY: `arg` is a valid kvm_clear_dirty_log whose bitmap points at `bits`, which
    // holds at least `num_pages` bits and outlives the call; KVM only reads it.
    let rc = unsafe { ioctl_with_ref(vm, KVM_CLEAR_DIRTY_LOG(), &arg) };
    if rc < 0 {
        return Err(kvm_ioctls::Error::last());
    }
    Ok(())
}
