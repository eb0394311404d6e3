//! The QEMU human monitor (HMP) language for godwit.
//!
//! The crate knows nothing of KVM. It provides:
//! - the command tables ([`table`]) and the typed [`Command`]s they produce,
//! - the argument grammar ([`grammar`], [`size`], [`expr`]) with QEMU 7.2's
//!   error messages,
//! - `help` rendered from the tables ([`help_text`]),
//! - the [`Vmm`] trait the hypervisor implements,
//! - a sans-IO readline ([`editor`]) and monitor [`Session`],
//! - a sans-IO serial/monitor multiplexer for stdio ([`mux`]),
//! - QMP on the same engine ([`qmp`]),
//! - transports that run sessions on stdio, ptys and sockets ([`transport`]).

pub mod argtype;
pub mod command;
pub mod complete;
pub mod editor;
pub mod engine;
pub mod expr;
#[cfg(any(test, feature = "fuzzing"))]
pub mod fake;
#[cfg(any(test, feature = "fuzzing"))]
pub mod fuzz;
pub mod grammar;
pub mod help;
pub mod hmp;
pub mod mux;
pub mod output;
pub mod qmp;
pub mod session;
pub mod size;
pub mod table;
pub mod transport;
pub mod vmm;

pub use command::{Command, InfoCommand, ParseError, parse_line};
pub use help::help_text;
pub use mux::{Focus, Mux, MuxEvent, MuxItem};
pub use session::{Session, SessionStatus};
pub use size::{SizeError, SizeUnit, parse_size};
pub use transport::{
    ChardevInfo, ChardevSpec, Monitor, MonitorBuilder, MonitorError, MonitorHandle, SerialFrontend, SerialWriter, compat_label,
    restore_terminal,
};
pub use vmm::{Outcome, Pending, SharedVmm, Vmm, execute_line};
