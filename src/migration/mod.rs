//! Live migration: the stream format, the sender and the receiver.
pub mod crc;
pub mod dirty;
pub mod info;
pub mod params;
pub mod stream;
