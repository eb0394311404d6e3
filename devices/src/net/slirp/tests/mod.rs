//! The back end against real libslirp, the test playing the guest with hand-built frames.
//! Loopback only: host forwards listen on 127.0.0.1 and the only host the guest reaches is
//! slirp's 10.0.2.2, which is the host's loopback.

mod frames;
mod guest;

mod arp_dhcp;
mod forwarding;
mod ipv6_tftp;
mod lifecycle;
mod restrict;
