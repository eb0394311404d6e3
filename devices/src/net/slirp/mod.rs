//! User-mode networking (QEMU's `-netdev user`) on libslirp, the library QEMU uses.
//!
//! [`parse_user_options`] turns the `-netdev user,...` / `-net user,...` text into a
//! [`UserNetConfig`] (QEMU 7.2's defaults and messages); [`SlirpBackend::new`] starts a
//! libslirp stack for it on its own thread and is the NIC's [`NetBackend`](super::NetBackend).
//! See docs/network.md.

mod addresses;
mod backend;
mod callbacks;
mod cparse;
mod hostfwd;
mod options;
mod qemu_opts;
mod rxqueue;
mod stack;
mod state;
mod worker;

pub use addresses::AddressError;
pub use backend::{SlirpBackend, SlirpError, TX_QUEUE_FRAMES};
pub use hostfwd::{HostFwd, HostFwdError, HostFwdKey};
pub use options::{OptionsError, Spelling, UserNetConfig, parse_user_options};
pub use rxqueue::RX_QUEUE_FRAMES;
pub use state::SlirpState;

#[cfg(test)]
mod tests;
