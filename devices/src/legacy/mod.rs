//! The legacy PC devices every guest expects at fixed ports.
pub mod cmos;
pub mod i8042;
pub mod port80;
pub mod serial;
pub mod speaker;
