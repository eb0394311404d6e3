//! User-mode networking (QEMU's `-netdev user`) on libslirp.

mod addresses;
mod cparse;
mod hostfwd;
mod options;
mod qemu_opts;

pub use addresses::AddressError;
pub use hostfwd::{HostFwd, HostFwdError, HostFwdKey};
pub use options::{OptionsError, Spelling, UserNetConfig, parse_user_options};
