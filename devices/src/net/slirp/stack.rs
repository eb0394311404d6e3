//! One libslirp instance (`Slirp *`), driven by the slirp thread that created it.
//!
//! libslirp is single-threaded and keeps a little process-wide state (its DNS resolver
//! cache), so every call into any stack is made under [`LIBSLIRP`]; a stack is used only on
//! the thread that created it (it is not `Send`).

use std::ffi::{CString, c_char, c_int, c_void};
use std::net::Ipv4Addr;
use std::os::fd::RawFd;
use std::ptr::{self, NonNull};
use std::sync::{Mutex, MutexGuard, PoisonError};

use libslirp_sys as sys;

use super::callbacks::{CALLBACKS, Ctx, guard};
use super::hostfwd::{HostFwd, HostFwdKey};
use super::options::UserNetConfig;

/// Serialises all calls into libslirp, whichever stack and thread.
static LIBSLIRP: Mutex<()> = Mutex::new(());

fn libslirp_lock() -> MutexGuard<'static, ()> {
    LIBSLIRP.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The `SlirpConfig` version used: 3, the newest whose fields libslirp-sys's `SlirpCb`
/// covers (version 4 makes libslirp read callbacks past the end of that table).
const CONFIG_VERSION: u32 = 3;

/// The C strings a `SlirpConfig` points into, kept for the stack's life.
#[derive(Default)]
struct CStrings {
    hostname: Option<CString>,
    domainname: Option<CString>,
    tftp: Option<CString>,
    bootfile: Option<CString>,
    tftp_server_name: Option<CString>,
    dnssearch: Vec<CString>,
    /// Pointers into `dnssearch`, then NULL.
    dnssearch_ptrs: Vec<*const c_char>,
}

/// A C string of an option (the options parser refused NULs; one that slipped through
/// becomes an empty string rather than a panic).
fn c_string(value: &Option<String>) -> Option<CString> {
    value.as_ref().map(|v| CString::new(v.as_str()).unwrap_or_default())
}

fn c_ptr(value: &Option<CString>) -> *const c_char {
    value.as_ref().map_or(ptr::null(), |s| s.as_ptr())
}

impl CStrings {
    fn new(config: &UserNetConfig) -> Self {
        let dnssearch: Vec<CString> = config
            .dnssearch
            .iter()
            .map(|d| CString::new(d.as_str()).unwrap_or_default())
            .collect();
        let mut dnssearch_ptrs: Vec<*const c_char> = dnssearch.iter().map(|d| d.as_ptr()).collect();
        dnssearch_ptrs.push(ptr::null());
        CStrings {
            hostname: c_string(&config.hostname),
            domainname: c_string(&config.domainname),
            tftp: c_string(&config.tftp),
            bootfile: c_string(&config.bootfile),
            tftp_server_name: c_string(&config.tftp_server_name),
            dnssearch,
            dnssearch_ptrs,
        }
    }

    /// The `SlirpConfig` for `config`, pointing into `self`.
    fn slirp_config(&mut self, config: &UserNetConfig) -> sys::SlirpConfig {
        let dnssearch = if self.dnssearch.is_empty() {
            ptr::null_mut()
        } else {
            self.dnssearch_ptrs.as_mut_ptr()
        };
        sys::SlirpConfig {
            version: CONFIG_VERSION,
            restricted: c_int::from(config.restrict),
            in_enabled: config.ipv4,
            vnetwork: config.net.into(),
            vnetmask: config.mask.into(),
            vhost: config.host.into(),
            in6_enabled: config.ipv6,
            vprefix_addr6: config.ipv6_prefix.into(),
            vprefix_len: config.ipv6_prefix_len,
            vhost6: config.ipv6_host.into(),
            vhostname: c_ptr(&self.hostname),
            tftp_server_name: c_ptr(&self.tftp_server_name),
            tftp_path: c_ptr(&self.tftp),
            bootfile: c_ptr(&self.bootfile),
            vdhcp_start: config.dhcp_start.into(),
            vnameserver: config.dns.into(),
            vnameserver6: config.ipv6_dns.into(),
            vdnssearch: dnssearch,
            vdomainname: c_ptr(&self.domainname),
            if_mtu: 0,
            if_mru: 0,
            disable_host_loopback: false,
            enable_emu: false,
            outbound_addr: ptr::null(),
            outbound_addr6: ptr::null(),
            disable_dns: false,
            disable_dhcp: false,
        }
    }
}

/// A libslirp stack and the context its callbacks use.
pub struct Stack {
    slirp: NonNull<sys::Slirp>,
    /// From `Box::into_raw`; freed in `drop` after `slirp_cleanup`.
    ctx: *const Ctx,
    _strings: CStrings,
}

impl Stack {
    /// Creates the stack; `None` if libslirp refuses the configuration.
    pub fn new(config: &UserNetConfig, ctx: Ctx) -> Option<Self> {
        let mut strings = CStrings::new(config);
        let cfg = strings.slirp_config(config);
        let ctx = Box::into_raw(Box::new(ctx)) as *const Ctx;
        let _lock = libslirp_lock();
        // SAFETY: `cfg` and the strings it points to are valid for the call (libslirp copies
        // what it keeps, and the strings live as long as the stack anyway); CALLBACKS is
        // static; `ctx` stays valid until after slirp_cleanup (see callbacks.rs).
        let slirp = unsafe { sys::slirp_new(&cfg, &CALLBACKS, ctx as *mut c_void) };
        match NonNull::new(slirp) {
            Some(slirp) => Some(Stack {
                slirp,
                ctx,
                _strings: strings,
            }),
            None => {
                // SAFETY: `ctx` came from Box::into_raw above and libslirp kept no stack.
                drop(unsafe { Box::from_raw(ctx as *mut Ctx) });
                None
            }
        }
    }

    fn ctx(&self) -> &Ctx {
        // SAFETY: `ctx` is valid from `new` until `drop`, and only borrowed shared.
        unsafe { &*self.ctx }
    }

    /// Hands slirp a frame from the guest.
    pub fn input(&self, frame: &[u8]) {
        let Ok(len) = c_int::try_from(frame.len()) else { return };
        let _lock = libslirp_lock();
        // SAFETY: the stack is alive, `frame` is `len` readable bytes for the call.
        unsafe { sys::slirp_input(self.slirp.as_ptr(), frame.as_ptr(), len) };
    }

    /// Opens a host forward's listening socket; false if it cannot be bound.
    pub fn add_hostfwd(&self, rule: &HostFwd) -> bool {
        let guest = rule.guest_addr.unwrap_or(Ipv4Addr::UNSPECIFIED);
        let _lock = libslirp_lock();
        // SAFETY: the stack is alive; plain values. A zero guest address makes libslirp use
        // its DHCP start address.
        let r = unsafe {
            sys::slirp_add_hostfwd(
                self.slirp.as_ptr(),
                c_int::from(rule.udp),
                rule.host_addr.into(),
                c_int::from(rule.host_port),
                guest.into(),
                c_int::from(rule.guest_port),
            )
        };
        r >= 0
    }

    /// Closes a host forward's listening socket; false if there was none.
    pub fn remove_hostfwd(&self, key: HostFwdKey) -> bool {
        let _lock = libslirp_lock();
        // SAFETY: the stack is alive; plain values.
        let r = unsafe {
            sys::slirp_remove_hostfwd(
                self.slirp.as_ptr(),
                c_int::from(key.udp),
                key.host_addr.into(),
                c_int::from(key.host_port),
            )
        };
        r == 0
    }

    /// libslirp's connection table, as `info usernet` prints it.
    pub fn connection_info(&self) -> String {
        let _lock = libslirp_lock();
        // SAFETY: the stack is alive; the result is a NUL-terminated string we now own.
        let text = unsafe { sys::slirp_connection_info(self.slirp.as_ptr()) };
        if text.is_null() {
            return String::new();
        }
        // SAFETY: non-NULL and NUL-terminated, as libslirp returns it.
        let info = unsafe { std::ffi::CStr::from_ptr(text) }.to_string_lossy().into_owned();
        // SAFETY: allocated with g_malloc, which is malloc since GLib 2.46 (g_free == free).
        unsafe { libc::free(text as *mut c_void) };
        info
    }

    /// Runs the timers that are due and then one poll round: waits (at most until the next
    /// timer) for slirp's sockets or `wake`, then lets slirp handle what is ready. Returns
    /// whether `wake` became readable.
    pub fn poll_round(&self, wake: RawFd) -> bool {
        {
            let _lock = libslirp_lock();
            // SAFETY: on the stack's thread, under the lock, the stack alive.
            unsafe { self.ctx().fire_due_timers() };
        }
        let mut fds = vec![libc::pollfd {
            fd: wake,
            events: libc::POLLIN,
            revents: 0,
        }];
        let mut timeout = self.ctx().ms_to_next_timer();
        {
            let fds_ptr = &mut fds as *mut Vec<libc::pollfd> as *mut c_void;
            let _lock = libslirp_lock();
            // SAFETY: the stack is alive; `fds_ptr` points to `fds`, untouched by anything else
            // during the call, and add_poll only pushes to it.
            unsafe { sys::slirp_pollfds_fill(self.slirp.as_ptr(), &mut timeout, Some(add_poll), fds_ptr) };
        }
        let timeout = if timeout == u32::MAX {
            -1
        } else {
            c_int::try_from(timeout).unwrap_or(c_int::MAX)
        };
        // SAFETY: `fds` is a valid array of `fds.len()` pollfds for the call.
        let ready = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout) };
        {
            let fds_ptr = &mut fds as *mut Vec<libc::pollfd> as *mut c_void;
            let _lock = libslirp_lock();
            // SAFETY: as for slirp_pollfds_fill; get_revents only reads `fds`.
            unsafe { sys::slirp_pollfds_poll(self.slirp.as_ptr(), c_int::from(ready < 0), Some(get_revents), fds_ptr) };
        }
        fds[0].revents & libc::POLLIN != 0
    }

    /// Saves libslirp's state (its connections) as `slirp_state_save` writes it.
    pub fn save_state(&self) -> Vec<u8> {
        let mut out: Vec<u8> = Vec::new();
        let _lock = libslirp_lock();
        // SAFETY: the stack is alive; the opaque pointer is `out`, only used by write_state
        // during the call.
        unsafe { sys::slirp_state_save(self.slirp.as_ptr(), Some(write_state), &mut out as *mut Vec<u8> as *mut c_void) };
        out
    }

    /// Loads a state saved with `version`; libslirp's negative errno on failure.
    pub fn load_state(&self, version: i32, data: &[u8]) -> Result<(), i32> {
        let mut reader: &[u8] = data;
        let _lock = libslirp_lock();
        // SAFETY: the stack is alive; the opaque pointer is `reader`, only used by
        // read_state during the call.
        let r = unsafe {
            sys::slirp_state_load(
                self.slirp.as_ptr(),
                version,
                Some(read_state),
                &mut reader as *mut &[u8] as *mut c_void,
            )
        };
        if r < 0 { Err(r) } else { Ok(()) }
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        {
            let _lock = libslirp_lock();
            // SAFETY: the stack is alive and not used again; this closes its sockets (host
            // forward listeners included) and frees its timers through the callbacks.
            unsafe { sys::slirp_cleanup(self.slirp.as_ptr()) };
        }
        // SAFETY: from Box::into_raw in `new`; libslirp no longer holds it.
        drop(unsafe { Box::from_raw(self.ctx as *mut Ctx) });
    }
}

/// libslirp's state version, to be saved with the state.
pub fn state_version() -> i32 {
    // SAFETY: a pure query without arguments.
    unsafe { sys::slirp_state_version() }
}

unsafe extern "C" fn add_poll(fd: c_int, events: c_int, opaque: *mut c_void) -> c_int {
    let body = || {
        // SAFETY: `opaque` is the `Vec<pollfd>` poll_round passed, exclusively ours here.
        let fds = unsafe { &mut *(opaque as *mut Vec<libc::pollfd>) };
        let mut want = 0;
        for (slirp, poll) in [
            (sys::SLIRP_POLL_IN, libc::POLLIN),
            (sys::SLIRP_POLL_OUT, libc::POLLOUT),
            (sys::SLIRP_POLL_PRI, libc::POLLPRI),
        ] {
            if events & slirp != 0 {
                want |= poll;
            }
        }
        fds.push(libc::pollfd {
            fd,
            events: want,
            revents: 0,
        });
        c_int::try_from(fds.len() - 1).unwrap_or(-1)
    };
    guard(-1, body)
}

unsafe extern "C" fn get_revents(idx: c_int, opaque: *mut c_void) -> c_int {
    let body = || {
        // SAFETY: `opaque` is the `Vec<pollfd>` poll_round passed, only read here.
        let fds = unsafe { &*(opaque as *const Vec<libc::pollfd>) };
        let Some(fd) = usize::try_from(idx).ok().and_then(|i| fds.get(i)) else {
            return 0;
        };
        let map = [
            (libc::POLLIN, sys::SLIRP_POLL_IN),
            (libc::POLLOUT, sys::SLIRP_POLL_OUT),
            (libc::POLLPRI, sys::SLIRP_POLL_PRI),
            (libc::POLLERR, sys::SLIRP_POLL_ERR),
            (libc::POLLHUP, sys::SLIRP_POLL_HUP),
        ];
        map.iter()
            .filter(|(poll, _)| fd.revents & poll != 0)
            .fold(0, |acc, (_, slirp)| acc | slirp)
    };
    guard(0, body)
}

unsafe extern "C" fn write_state(buf: *const c_void, len: usize, opaque: *mut c_void) -> isize {
    let body = || {
        // SAFETY: `opaque` is save_state's `Vec<u8>`; `buf` holds `len` readable bytes.
        let (out, bytes) = unsafe { (&mut *(opaque as *mut Vec<u8>), std::slice::from_raw_parts(buf as *const u8, len)) };
        out.extend_from_slice(bytes);
        isize::try_from(len).unwrap_or(-1)
    };
    guard(-1, body)
}

unsafe extern "C" fn read_state(buf: *mut c_void, len: usize, opaque: *mut c_void) -> isize {
    let body = || {
        // SAFETY: `opaque` is load_state's reader; `buf` has room for `len` bytes.
        let (reader, out) = unsafe { (&mut *(opaque as *mut &[u8]), std::slice::from_raw_parts_mut(buf as *mut u8, len)) };
        let n = len.min(reader.len());
        out[..n].copy_from_slice(&reader[..n]);
        *reader = &reader[n..];
        isize::try_from(n).unwrap_or(-1)
    };
    guard(-1, body)
}
