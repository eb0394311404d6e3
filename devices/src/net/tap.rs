//! A tap back end, opened as QEMU 7.2 opens one (`-netdev tap`): a new or existing
//! interface through `/dev/net/tun` (`ifname=`, default template `tap%d`), or a tap the
//! caller opened (`fd=`), with the virtio-net header when the kernel offers it, and the
//! `script=`/`downscript=` hooks. Error texts are QEMU's where QEMU has one.
//!
//! Nothing is left behind on failure: the descriptor is closed (which removes an interface
//! the open created, taps being non-persistent) and an up script only runs as the last
//! step, so no down script is owed when opening fails. The down script runs when the
//! back end is closed or dropped, before the descriptor is closed.

mod script;
mod sys;

#[cfg(test)]
pub(crate) mod tests;

use super::{NetBackend, Offloads, VNET_HDR_LEN};
use std::fs::{File, OpenOptions};
use std::io::{self, IoSlice, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use sys::{IFF_NO_PI, IFF_TAP, IFF_VNET_HDR, IfReq};
use thiserror::Error;

pub use script::{DEFAULT_DOWN, DEFAULT_UP};

const TUN_PATH: &str = "/dev/net/tun";
/// QEMU's name template for a tap without `ifname=`.
pub const DEFAULT_IFNAME: &str = "tap%d";

#[derive(Debug, Error)]
pub enum TapError {
    #[error("ifname=, script=, downscript=, vnet_hdr=, helper=, queues=, fds=, and vhostfds= are invalid with fd=")]
    OptionsWithFd,
    #[error("Invalid file descriptor number '{0}'")]
    BadFdNumber(String),
    #[error("{id}: Can't use file descriptor {fd}: {}", errno_text(.source))]
    UnusableFd { id: String, fd: RawFd, source: io::Error },
    #[error("Unable to query TUNGETIFF on FD {fd}: {}", errno_text(.source))]
    NotTunTap { fd: RawFd, source: io::Error },
    #[error("FD {0} is a tun device, not a tap")]
    NotTap(RawFd),
    #[error("cannot set the virtio-net header size of {ifname} to {VNET_HDR_LEN}: {}", errno_text(.source))]
    VnetHdrSize { ifname: String, source: io::Error },
    #[error("could not open {TUN_PATH}: {}", errno_text(.0))]
    OpenTun(io::Error),
    #[error("vnet_hdr=1 requested, but no kernel support for IFF_VNET_HDR available")]
    NoVnetHdr,
    #[error("could not configure {TUN_PATH} ({ifname}): {}", errno_text(.source))]
    ConfigureNamed { ifname: String, source: io::Error },
    #[error("could not configure {TUN_PATH}: {}", errno_text(.0))]
    Configure(io::Error),
    #[error("network script {script} failed with status {status}")]
    Script { script: String, status: i32 },
}

/// An OS error as QEMU prints it (`strerror`), without Rust's " (os error N)".
fn errno_text(e: &io::Error) -> String {
    let text = e.to_string();
    match text.find(" (os error ") {
        Some(at) => text[..at].to_string(),
        None => text,
    }
}

/// `-netdev tap` options, as given on the command line (None where absent).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TapConfig {
    /// The netdev's `id=` (some errors name it).
    pub id: String,
    /// An interface name, or a template with `%d`; [`DEFAULT_IFNAME`] when absent.
    pub ifname: Option<String>,
    /// Run with the interface name once the tap is open; [`DEFAULT_UP`] when absent,
    /// none when `no` or empty.
    pub script: Option<String>,
    /// Run when the back end goes away; [`DEFAULT_DOWN`] when absent.
    pub downscript: Option<String>,
    /// `vnet_hdr=`: absent, use the header if the kernel can; on, require it; off, never.
    pub vnet_hdr: Option<bool>,
    /// `fd=`: a tap descriptor the process inherited for this netdev alone; godwit takes it
    /// over (and closes it when done). No scripts run then.
    pub fd: Option<String>,
}

pub struct Tap {
    file: File,
    ifname: String,
    vnet_hdr: bool,
    info: String,
    /// The down script still owed, if any.
    down: Option<String>,
}

impl Tap {
    pub fn open(config: &TapConfig) -> Result<Tap, TapError> {
        match &config.fd {
            Some(fd) => Tap::adopt(config, fd),
            None => Tap::create(config),
        }
    }

    /// The interface's name.
    pub fn ifname(&self) -> &str {
        &self.ifname
    }

    /// Runs the down script now (if any) and reports how it went; then closes the tap.
    pub fn close(mut self) -> Result<(), TapError> {
        self.run_down()
    }

    fn run_down(&mut self) -> Result<(), TapError> {
        match self.down.take() {
            Some(s) => script::run(&s, &self.ifname),
            None => Ok(()),
        }
    }

    /// `fd=`: checks the descriptor is an open tap and takes it over.
    fn adopt(config: &TapConfig, number: &str) -> Result<Tap, TapError> {
        let c = config;
        if c.ifname.is_some() || c.script.is_some() || c.downscript.is_some() || c.vnet_hdr.is_some() {
            return Err(TapError::OptionsWithFd);
        }
        let fd: RawFd = number.parse().map_err(|_| TapError::BadFdNumber(number.to_string()))?;
        set_nonblocking(fd).map_err(|source| TapError::UnusableFd {
            id: config.id.clone(),
            fd,
            source,
        })?;
        // SAFETY: fd= hands this descriptor to the netdev alone (the command line's contract,
        // as in QEMU), and fcntl just showed it is open: from here on this File owns it, and
        // closes it on every failure below, as QEMU does.
        let file = unsafe { File::from_raw_fd(fd) };
        let req = sys::get_iff(&file).map_err(|source| TapError::NotTunTap { fd, source })?;
        if req.flags & IFF_TAP == 0 {
            return Err(TapError::NotTap(fd));
        }
        let ifname = req.name();
        let vnet_hdr = req.flags & IFF_VNET_HDR != 0;
        if vnet_hdr {
            sys::set_vnet_hdr_size(&file, VNET_HDR_LEN as i32).map_err(|source| TapError::VnetHdrSize {
                ifname: ifname.clone(),
                source,
            })?;
        }
        Ok(Tap {
            file,
            ifname,
            vnet_hdr,
            info: format!("fd={fd}"),
            down: None,
        })
    }

    /// `ifname=`: opens (creating if needed) the interface, then runs the up script.
    fn create(config: &TapConfig) -> Result<Tap, TapError> {
        let up = script::choose(config.script.as_deref(), DEFAULT_UP);
        let down = script::choose(config.downscript.as_deref(), DEFAULT_DOWN);
        let (file, ifname, vnet_hdr) = open_tun(config.ifname.as_deref(), config.vnet_hdr)?;
        let shown = |given: &Option<String>, default: &str| given.clone().unwrap_or_else(|| default.to_string());
        let info = format!(
            "ifname={ifname},script={},downscript={}",
            shown(&config.script, DEFAULT_UP),
            shown(&config.downscript, DEFAULT_DOWN)
        );
        if let Some(s) = &up {
            // On failure `file` is dropped here, and the interface with it.
            script::run(s, &ifname)?;
        }
        Ok(Tap {
            file,
            ifname,
            vnet_hdr,
            info,
            down,
        })
    }
}

/// Opens `/dev/net/tun` as a tap named `ifname` (or the default template); returns it, the
/// name the kernel gave, and whether frames carry the virtio-net header.
fn open_tun(ifname: Option<&str>, vnet_hdr: Option<bool>) -> Result<(File, String, bool), TapError> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(TUN_PATH)
        .map_err(TapError::OpenTun)?;
    // An old kernel without TUNGETFEATURES has no IFF_VNET_HDR either.
    let features = sys::features(&file).unwrap_or(0);
    let kernel_has_hdr = features & IFF_VNET_HDR as u32 != 0;
    if vnet_hdr == Some(true) && !kernel_has_hdr {
        return Err(TapError::NoVnetHdr);
    }
    let with_hdr = kernel_has_hdr && vnet_hdr != Some(false);
    let mut flags = IFF_TAP | IFF_NO_PI;
    if with_hdr {
        flags |= IFF_VNET_HDR;
    }
    let mut req = IfReq::new(ifname.unwrap_or(DEFAULT_IFNAME), flags);
    sys::set_iff(&file, &mut req).map_err(|source| match ifname {
        Some(_) => TapError::ConfigureNamed {
            ifname: IfReq::new(ifname.unwrap_or_default(), 0).name(),
            source,
        },
        None => TapError::Configure(source),
    })?;
    let name = req.name();
    if with_hdr && let Err(source) = sys::set_vnet_hdr_size(&file, VNET_HDR_LEN as i32) {
        if vnet_hdr == Some(true) {
            return Err(TapError::VnetHdrSize { ifname: name, source });
        }
        // The kernel takes the header but not at 12 bytes: start over without it (closing
        // the descriptor first removes the interface just made).
        drop(file);
        return open_tun(ifname, Some(false));
    }
    Ok((file, name, with_hdr))
}

fn set_nonblocking(fd: RawFd) -> io::Result<()> {
    // SAFETY: F_GETFL and F_SETFL only read and set the descriptor's status flags; a bad
    // descriptor makes them fail with EBADF, which is reported.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    // SAFETY: as above.
    if flags < 0 || unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

impl NetBackend for Tap {
    fn vnet_hdr(&self) -> bool {
        self.vnet_hdr
    }

    fn send(&mut self, frame: &[IoSlice<'_>]) -> io::Result<()> {
        match self.file.write_vectored(frame) {
            Ok(_) => Ok(()),
            // The interface's queue is full: the frame is dropped, as on a busy wire.
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn recv(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.file.read(buf)
    }

    fn rx_fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }

    /// `TUNSETOFFLOAD`, as QEMU sets it: segmentation offloads only with checksum offload,
    /// ECN only with TSO, and without UFO if the kernel refuses it.
    fn set_offloads(&mut self, o: Offloads) -> io::Result<()> {
        let mut flags = 0;
        if o.csum {
            flags |= sys::TUN_F_CSUM;
            for (on, f) in [(o.tso4, sys::TUN_F_TSO4), (o.tso6, sys::TUN_F_TSO6), (o.ufo, sys::TUN_F_UFO)] {
                if on {
                    flags |= f;
                }
            }
            if o.ecn && (o.tso4 || o.tso6) {
                flags |= sys::TUN_F_TSO_ECN;
            }
        }
        sys::set_offload(&self.file, flags).or_else(|_| sys::set_offload(&self.file, flags & !sys::TUN_F_UFO))
    }

    fn info(&self) -> String {
        self.info.clone()
    }
}

impl Drop for Tap {
    fn drop(&mut self) {
        // Nobody is left to tell of a failing down script (close() reports it).
        let _ = self.run_down();
    }
}
