//! Live migration: the stream format, the sender and the receiver.
#[cfg(test)]
mod block_tests;
pub mod crc;
pub mod dirty;
pub mod dirtylog;
pub mod disks;
pub mod fd;
pub mod info;
mod manual;
pub mod multifd;
mod pagemap;
pub mod params;
pub mod postcopy;
pub mod recv;
mod recv_block;
mod recv_multifd;
pub mod send;
mod send_block;
pub mod stream;
#[cfg(test)]
mod tests;
pub mod tls;
pub mod uri;
mod warm;
pub mod xbzrle;
