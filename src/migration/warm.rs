//! Zeroed bitmaps whose pages are already in memory, made on another thread.
//!
//! A sync reads KVM's dirty log of each RAM slot into a fresh buffer (2 MiB at 64 GiB),
//! and KVM's first write to each of its 4 KiB pages faults (slow where the host is itself
//! a guest: ~1 ms for 2 MiB). The dirty log has them made while logging starts, off the
//! migration thread; a sync takes one only if it is ready, and never waits for it.

use super::dirty::Bitmap;
use std::thread::JoinHandle;

/// Words per 4 KiB page of a bitmap.
const WORDS_PER_PAGE: usize = 4096 / 8;

/// Buffers of given sizes, being made or made.
pub struct Warm {
    making: Option<JoinHandle<Vec<Bitmap>>>,
    made: Vec<Option<Bitmap>>,
}

/// A zeroed bitmap of `words` words, every page of it written.
fn touched(words: usize) -> Bitmap {
    let mut v = vec![0u64; words];
    for w in v.iter_mut().step_by(WORDS_PER_PAGE) {
        // SAFETY: `w` is a valid, aligned element of `v`; the volatile write keeps the
        // store (of the value it already holds) that makes the kernel back the page.
        unsafe { std::ptr::write_volatile(w, 0) };
    }
    v
}

impl Warm {
    /// Starts making one bitmap of each size in `words`; without a thread, none.
    pub fn start(words: Vec<usize>) -> Self {
        let making = std::thread::Builder::new()
            .name("migration-buffers".into())
            .spawn(move || words.into_iter().map(touched).collect())
            .ok();
        Warm { making, made: Vec::new() }
    }

    /// The bitmap made for index `i` if it is ready and `words` long, else a fresh one.
    pub fn take(&mut self, i: usize, words: usize) -> Bitmap {
        if self.making.as_ref().is_some_and(JoinHandle::is_finished)
            && let Some(Ok(made)) = self.making.take().map(JoinHandle::join)
        {
            self.made = made.into_iter().map(Some).collect();
        }
        match self.made.get_mut(i).and_then(Option::take) {
            Some(b) if b.len() == words => b,
            _ => vec![0u64; words],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ready_buffer_is_taken_once_and_then_fresh_ones() {
        let mut w = Warm::start(vec![3, 1000]);
        while !w.making.as_ref().is_some_and(JoinHandle::is_finished) {
            std::thread::yield_now();
        }
        assert_eq!(w.take(1, 1000), vec![0u64; 1000]);
        assert!(w.made[1].is_none() && w.made[0].is_some());
        assert_eq!(w.take(1, 1000).len(), 1000, "a fresh one");
        assert_eq!(w.take(0, 5), vec![0u64; 5], "a size that does not fit");
        assert_eq!(w.take(7, 2), vec![0u64; 2]);
    }
}
