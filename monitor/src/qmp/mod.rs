//! QMP, the QEMU Machine Protocol, on top of the engine: JSON requests framed as QEMU
//! frames them ([`lexer`], [`parser`]), the negotiation and request checks of QEMU 7.2
//! ([`session`]), godwit's command table ([`commands`], with types declared in [`types`]
//! after QEMU's schema, checked by [`schema`], introspected by [`introspect`]) and one
//! handler per command ([`handlers`]) that makes one engine request. Events come from the
//! engine's bus. Transports are in `crate::transport::qmp`.

pub mod catalog;
pub mod catalog_types;
pub mod commands;
pub mod cpu_model;
pub mod handlers;
pub mod introspect;
pub mod lexer;
pub mod parser;
pub mod schema;
pub mod session;
pub mod types;

#[cfg(test)]
pub(crate) mod tests;

pub use session::{Reply, Session, encode, greeting};
