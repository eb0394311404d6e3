//! The callbacks libslirp calls (`SlirpCb`) and the context they work on.
//!
//! Ownership of the opaque pointer: the slirp thread creates one [`Ctx`] per stack, keeps it
//! alive (boxed, never moved) from before `slirp_new` until after `slirp_cleanup`, and hands
//! `*const Ctx` to libslirp as the stack's opaque pointer. libslirp passes it back only to
//! these callbacks, only on that thread and only while the stack exists, so each callback
//! may borrow it as a shared `&Ctx`; every mutable part of `Ctx` is in a `Cell`/`RefCell`
//! borrowed for no longer than one callback body. No callback lets a panic unwind into C.

use std::cell::{Cell, RefCell};
use std::ffi::{c_char, c_int, c_void};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::Instant;

use libslirp_sys::{SlirpCb, SlirpTimerCb};
use vmm_sys_util::eventfd::EventFd;

use super::rxqueue::RxQueue;

/// A libslirp timer: its callback and when (ms on the [`Ctx`] clock) it is due.
struct Timer {
    cb: SlirpTimerCb,
    cb_opaque: *mut c_void,
    expire_ms: Cell<Option<i64>>,
}

/// What the callbacks of one stack share.
pub struct Ctx {
    rx: Arc<RxQueue>,
    /// Wakes the slirp thread's poll (`notify`).
    wake: Arc<EventFd>,
    epoch: Instant,
    /// Timers libslirp created; the boxes give each a stable address, the handle C holds.
    #[allow(clippy::vec_box, reason = "a timer's address is the handle libslirp holds: it must not move")]
    timers: RefCell<Vec<Box<Timer>>>,
}

impl Ctx {
    pub fn new(rx: Arc<RxQueue>, wake: Arc<EventFd>) -> Self {
        Ctx {
            rx,
            wake,
            epoch: Instant::now(),
            timers: RefCell::new(Vec::new()),
        }
    }

    fn now_ns(&self) -> i64 {
        i64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(i64::MAX)
    }

    fn now_ms(&self) -> i64 {
        self.now_ns() / 1_000_000
    }

    /// Milliseconds until the next timer is due (0 if one is), `u32::MAX` if none is armed.
    pub fn ms_to_next_timer(&self) -> u32 {
        let now = self.now_ms();
        let next = self.timers.borrow().iter().filter_map(|t| t.expire_ms.get()).min();
        next.map_or(u32::MAX, |at| u32::try_from((at - now).max(0)).unwrap_or(u32::MAX))
    }

    /// Runs the callbacks of the timers that are due, each once. A callback may re-arm or
    /// free any timer: none is borrowed while one runs.
    ///
    /// # Safety
    /// Timer callbacks are libslirp code: the caller must be allowed to call into the stack
    /// that created them (its thread, holding the libslirp lock, the stack alive).
    pub unsafe fn fire_due_timers(&self) {
        let now = self.now_ms();
        loop {
            let due = self
                .timers
                .borrow()
                .iter()
                .find(|t| t.expire_ms.get().is_some_and(|at| at <= now))
                .map(|t| {
                    t.expire_ms.set(None);
                    (t.cb, t.cb_opaque)
                });
            let Some((Some(cb), cb_opaque)) = due else { break };
            // SAFETY: libslirp gave this callback and its argument together to timer_new;
            // the caller guarantees the stack may be entered (see above).
            unsafe { cb(cb_opaque) };
        }
    }
}

/// Runs a callback body, turning a panic into `fallback` instead of unwinding into C.
pub fn guard<R>(fallback: R, body: impl FnOnce() -> R) -> R {
    catch_unwind(AssertUnwindSafe(body)).unwrap_or(fallback)
}

/// The context behind libslirp's opaque pointer.
///
/// # Safety
/// `opaque` must be the pointer given to `slirp_new` (see the module documentation).
unsafe fn ctx<'a>(opaque: *mut c_void) -> &'a Ctx {
    // SAFETY: per the contract above, a live `Ctx` only ever borrowed shared.
    unsafe { &*(opaque as *const Ctx) }
}

unsafe extern "C" fn send_packet(buf: *const c_void, len: usize, opaque: *mut c_void) -> isize {
    guard(-1, || {
        if buf.is_null() {
            return 0;
        }
        // SAFETY: libslirp passes a frame of `len` readable bytes, valid for this call.
        let frame = unsafe { std::slice::from_raw_parts(buf as *const u8, len) };
        // SAFETY: `opaque` is this stack's `Ctx`.
        let ctx = unsafe { ctx(opaque) };
        // A full queue drops the frame like a busy link; TCP retransmits.
        ctx.rx.push(frame);
        isize::try_from(len).unwrap_or(isize::MAX)
    })
}

unsafe extern "C" fn guest_error(_msg: *const c_char, _opaque: *mut c_void) {
    // QEMU shows these only with `-d guest_errors`; godwit has no such log.
}

unsafe extern "C" fn clock_get_ns(opaque: *mut c_void) -> i64 {
    // SAFETY: `opaque` is this stack's `Ctx`.
    guard(0, || unsafe { ctx(opaque) }.now_ns())
}

unsafe extern "C" fn timer_new(cb: SlirpTimerCb, cb_opaque: *mut c_void, opaque: *mut c_void) -> *mut c_void {
    guard(std::ptr::null_mut(), || {
        // SAFETY: `opaque` is this stack's `Ctx`.
        let ctx = unsafe { ctx(opaque) };
        let timer = Box::new(Timer {
            cb,
            cb_opaque,
            expire_ms: Cell::new(None),
        });
        let handle = &*timer as *const Timer as *mut c_void;
        ctx.timers.borrow_mut().push(timer);
        handle
    })
}

unsafe extern "C" fn timer_free(timer: *mut c_void, opaque: *mut c_void) {
    guard((), || {
        // SAFETY: `opaque` is this stack's `Ctx`.
        let ctx = unsafe { ctx(opaque) };
        // Found by address, never dereferenced: an unknown handle is ignored.
        ctx.timers.borrow_mut().retain(|t| !std::ptr::eq(&**t, timer as *const Timer));
    })
}

unsafe extern "C" fn timer_mod(timer: *mut c_void, expire_ms: i64, opaque: *mut c_void) {
    guard((), || {
        // SAFETY: `opaque` is this stack's `Ctx`.
        let ctx = unsafe { ctx(opaque) };
        let timers = ctx.timers.borrow();
        if let Some(t) = timers.iter().find(|t| std::ptr::eq(&***t, timer as *const Timer)) {
            t.expire_ms.set(Some(expire_ms));
        }
    })
}

unsafe extern "C" fn register_poll_fd(_fd: c_int, _opaque: *mut c_void) {
    // The slirp thread polls what slirp_pollfds_fill lists on every round.
}

unsafe extern "C" fn unregister_poll_fd(_fd: c_int, _opaque: *mut c_void) {}

unsafe extern "C" fn notify(opaque: *mut c_void) {
    // SAFETY: `opaque` is this stack's `Ctx`.
    guard((), || drop(unsafe { ctx(opaque) }.wake.write(1)))
}

/// The callback table; libslirp keeps a pointer to it for the stack's life, hence static.
/// It has no `init_completed`/`timer_new_opaque` (libslirp-sys binds the 4.2 table), so
/// stacks must be created with a `SlirpConfig` version below 4, which never reads them.
pub static CALLBACKS: SlirpCb = SlirpCb {
    send_packet: Some(send_packet),
    guest_error: Some(guest_error),
    clock_get_ns: Some(clock_get_ns),
    timer_new: Some(timer_new),
    timer_free: Some(timer_free),
    timer_mod: Some(timer_mod),
    register_poll_fd: Some(register_poll_fd),
    unregister_poll_fd: Some(unregister_poll_fd),
    notify: Some(notify),
};

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use vmm_sys_util::eventfd::EFD_NONBLOCK;

    use super::*;

    unsafe extern "C" fn bump(opaque: *mut c_void) {
        // SAFETY: the tests pass a live AtomicUsize.
        unsafe { &*(opaque as *const AtomicUsize) }.fetch_add(1, Ordering::SeqCst);
    }

    fn ctx() -> Ctx {
        Ctx::new(Arc::new(RxQueue::new(4).unwrap()), Arc::new(EventFd::new(EFD_NONBLOCK).unwrap()))
    }

    #[test]
    fn timers_fire_once_when_due_and_never_after_free() {
        let ctx = ctx();
        let opaque = &ctx as *const Ctx as *mut c_void;
        let fired = AtomicUsize::new(0);
        let count = &fired as *const AtomicUsize as *mut c_void;
        // SAFETY: `opaque` is a live Ctx borrowed shared only; `count` outlives the timer.
        unsafe {
            let t = timer_new(Some(bump), count, opaque);
            assert_eq!(ctx.ms_to_next_timer(), u32::MAX, "not armed yet");
            timer_mod(t, 0, opaque);
            assert_eq!(ctx.ms_to_next_timer(), 0);
            ctx.fire_due_timers();
            ctx.fire_due_timers();
            assert_eq!(fired.load(Ordering::SeqCst), 1, "one-shot");
            timer_mod(t, ctx.now_ms() + 10_000, opaque);
            assert!((9_000..=10_000).contains(&ctx.ms_to_next_timer()));
            ctx.fire_due_timers();
            assert_eq!(fired.load(Ordering::SeqCst), 1, "not due");
            timer_free(t, opaque);
            assert_eq!(ctx.ms_to_next_timer(), u32::MAX);
            timer_mod(t, 0, opaque);
            ctx.fire_due_timers();
            assert_eq!(fired.load(Ordering::SeqCst), 1, "a freed handle is ignored");
        }
    }

    #[test]
    fn send_packet_queues_the_frame_for_the_guest() {
        let ctx = ctx();
        let opaque = &ctx as *const Ctx as *mut c_void;
        let frame = [1u8, 2, 3];
        // SAFETY: a live Ctx and a 3-byte buffer.
        let sent = unsafe { send_packet(frame.as_ptr() as *const c_void, frame.len(), opaque) };
        assert_eq!(sent, 3);
        let mut buf = [0u8; 8];
        assert_eq!(ctx.rx.pop(&mut buf).unwrap(), 3);
        // SAFETY: a live Ctx.
        assert!(unsafe { clock_get_ns(opaque) } >= 0);
    }
}
