//! Test support: counts the bytes the current thread has allocated, so a test can assert
//! that hostile input (an image, a guest's rings) never makes godwit allocate in proportion
//! to a number it read. Installed as the global allocator of the test binary only.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

struct Counting;

thread_local! {
    /// (bytes live now, peak since the last `reset_peak`), for this thread.
    static USAGE: Cell<(usize, usize)> = const { Cell::new((0, 0)) };
}

fn add(n: usize) {
    let _ = USAGE.try_with(|u| {
        let (live, peak) = u.get();
        let live = live.saturating_add(n);
        u.set((live, peak.max(live)));
    });
}

fn sub(n: usize) {
    let _ = USAGE.try_with(|u| {
        let (live, peak) = u.get();
        u.set((live.saturating_sub(n), peak));
    });
}

// SAFETY: every call is forwarded unchanged to the system allocator; the counting touches
// only a const-initialised thread-local Cell, which never allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        add(layout.size());
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        add(layout.size());
        // SAFETY: same contract as ours.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        sub(layout.size());
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        sub(layout.size());
        add(new_size);
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static COUNTING: Counting = Counting;

/// Starts a measurement: the peak becomes what is live now.
pub fn reset_peak() {
    let _ = USAGE.try_with(|u| {
        let (live, _) = u.get();
        u.set((live, live));
    });
}

/// Bytes allocated by this thread at the peak since [`reset_peak`], above what was live then.
pub fn peak_since(start_live: usize) -> usize {
    USAGE.try_with(|u| u.get().1.saturating_sub(start_live)).unwrap_or(0)
}

/// Bytes live on this thread now.
pub fn live() -> usize {
    USAGE.try_with(|u| u.get().0).unwrap_or(0)
}

/// Runs `f` and returns its result with the most it allocated at once on this thread.
pub fn measure<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let start = live();
    reset_peak();
    let r = f();
    (r, peak_since(start))
}
