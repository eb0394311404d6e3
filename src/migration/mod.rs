//! Live migration: the stream format, the sender and the receiver.
pub mod crc;
pub mod dirty;
pub mod info;
pub mod params;
pub mod recv;
pub mod send;
pub mod stream;
#[cfg(test)]
mod tests;
pub mod uri;
