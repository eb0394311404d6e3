//! The user network's saved state: libslirp's own stream (`slirp_state_save`, what QEMU
//! migrates as its "slirp" section) and the libslirp state version it was written with.

use crate::state::{StateError, StateReader, StateWriter, VersionedState};

/// libslirp's saved state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlirpState {
    /// `slirp_state_version()` of the libslirp that saved it (4 for libslirp 4.x).
    pub slirp_version: u32,
    /// The bytes `slirp_state_save` wrote.
    pub data: Vec<u8>,
}

impl VersionedState for SlirpState {
    const NAME: &'static str = "slirp";
    const VERSION: u16 = 1;

    fn encode(&self, w: &mut StateWriter) {
        w.u32(self.slirp_version);
        w.bytes(&self.data);
    }

    fn decode(r: &mut StateReader<'_>, _version: u16) -> Result<Self, StateError> {
        let slirp_version = r.u32()?;
        let data = r.bytes()?.to_vec();
        Ok(SlirpState { slirp_version, data })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let state = SlirpState {
            slirp_version: 4,
            data: vec![1, 2, 3],
        };
        assert_eq!(SlirpState::from_bytes(&state.to_bytes()).unwrap(), state);
    }
}
