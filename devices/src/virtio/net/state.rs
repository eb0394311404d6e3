//! The saved state of a virtio-net device: what the guest and the VMM set on the NIC.
//! Queues and transport registers are saved by the transport; the back end is not state
//! (the destination opens its own), but a frame the NIC held for the guest is.

use super::control::NicState;
use super::filter::{MAC_TABLE_ENTRIES, MacTable, RxFilter, RxMode, parse_macs};
use super::mac::{MAC_LEN, MacAddr};
use crate::net::{MAX_FRAME, VNET_HDR_LEN};
use crate::state::{StateError, StateReader, StateWriter, VersionedState};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VirtioNetState {
    /// The features the device offered (they depend on the back end's header).
    pub features: u64,
    pub nic: NicState,
}

fn invalid(why: String) -> StateError {
    StateError::Invalid {
        name: VirtioNetState::NAME,
        why,
    }
}

fn write_macs(w: &mut StateWriter, macs: &[MacAddr]) {
    w.u32(macs.len() as u32);
    for m in macs {
        w.bytes(&m.0);
    }
}

/// A counted address list, refused when longer than the table or oddly sized.
fn read_macs(r: &mut StateReader<'_>, what: &str) -> Result<Vec<MacAddr>, StateError> {
    let count = r.u32()? as usize;
    if count > MAC_TABLE_ENTRIES {
        return Err(invalid(format!(
            "{count} {what} filter addresses, the table holds {MAC_TABLE_ENTRIES}"
        )));
    }
    let mut bytes = Vec::with_capacity(count * MAC_LEN);
    for _ in 0..count {
        let m = r.bytes()?;
        if m.len() != MAC_LEN {
            return Err(invalid(format!("a {what} filter address of {} bytes", m.len())));
        }
        bytes.extend_from_slice(m);
    }
    Ok(parse_macs(&bytes))
}

fn read_mac(r: &mut StateReader<'_>) -> Result<MacAddr, StateError> {
    let b = r.bytes()?;
    <[u8; MAC_LEN]>::try_from(b)
        .map(MacAddr)
        .map_err(|_| invalid(format!("MAC address of {} bytes", b.len())))
}

impl VersionedState for VirtioNetState {
    const NAME: &'static str = "virtio-net";
    const VERSION: u16 = 1;

    fn encode(&self, w: &mut StateWriter) {
        let n = &self.nic;
        let (m, t) = (&n.filter.mode, &n.filter.table);
        w.u64(self.features);
        w.bytes(&n.mac.0);
        w.bool(n.link_up);
        w.bool(n.announce);
        for switch in [m.promisc, m.allmulti, m.alluni, m.nomulti, m.nouni, m.nobcast] {
            w.bool(switch);
        }
        w.bool(t.unicast_overflow);
        w.bool(t.multicast_overflow);
        write_macs(w, &t.unicast);
        write_macs(w, &t.multicast);
        w.bool(n.broken.is_some());
        w.str(n.broken.as_deref().unwrap_or(""));
        w.bool(n.pending_rx.is_some());
        w.bytes(n.pending_rx.as_deref().unwrap_or(&[]));
    }

    fn decode(r: &mut StateReader<'_>, _version: u16) -> Result<Self, StateError> {
        let features = r.u64()?;
        let mac = read_mac(r)?;
        let link_up = r.bool()?;
        let announce = r.bool()?;
        let mode = RxMode {
            promisc: r.bool()?,
            allmulti: r.bool()?,
            alluni: r.bool()?,
            nomulti: r.bool()?,
            nouni: r.bool()?,
            nobcast: r.bool()?,
        };
        let (unicast_overflow, multicast_overflow) = (r.bool()?, r.bool()?);
        let unicast = read_macs(r, "unicast")?;
        let multicast = read_macs(r, "multicast")?;
        if unicast.len() + multicast.len() > MAC_TABLE_ENTRIES {
            return Err(invalid(format!(
                "{} filter addresses, the table holds {MAC_TABLE_ENTRIES}",
                unicast.len() + multicast.len()
            )));
        }
        let broken = r.bool()?;
        let why = r.string()?;
        let has_pending = r.bool()?;
        let pending = r.bytes()?;
        if has_pending && !(VNET_HDR_LEN..=MAX_FRAME).contains(&pending.len()) {
            return Err(invalid(format!("held frame of {} bytes", pending.len())));
        }
        Ok(VirtioNetState {
            features,
            nic: NicState {
                mac,
                link_up,
                announce,
                filter: RxFilter {
                    mode,
                    table: MacTable {
                        unicast,
                        multicast,
                        unicast_overflow,
                        multicast_overflow,
                    },
                },
                broken: broken.then_some(why),
                pending_rx: has_pending.then(|| pending.to_vec()),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> VirtioNetState {
        let mut nic = NicState::after_reset(MacAddr([2, 0, 0, 0, 0, 7]), false);
        nic.announce = true;
        nic.filter.mode.promisc = false;
        nic.filter.mode.nobcast = true;
        nic.filter.table = MacTable::from_lists(vec![MacAddr([2; 6])], vec![MacAddr([1, 0, 0x5e, 0, 0, 9]); 3]);
        nic.pending_rx = Some(vec![9; 100]);
        VirtioNetState { features: 0x1234, nic }
    }

    #[test]
    fn round_trip_and_refusals() {
        let s = sample();
        let bytes = s.to_bytes();
        assert_eq!(VirtioNetState::from_bytes(&bytes).unwrap(), s);
        for cut in 0..bytes.len() {
            assert!(VirtioNetState::from_bytes(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let broken = VirtioNetState {
            nic: NicState {
                broken: Some("why".into()),
                pending_rx: None,
                ..s.nic.clone()
            },
            ..s.clone()
        };
        assert_eq!(VirtioNetState::from_bytes(&broken.to_bytes()).unwrap(), broken);

        // Counts and lengths that do not fit are refused, not trusted.
        let mut w = StateWriter::default();
        w.u32(65);
        let mut r_bytes = w.into_bytes();
        r_bytes.extend_from_slice(&[0; 8]);
        assert!(read_macs(&mut StateReader::new(&r_bytes), "unicast").is_err());
        let mut w = StateWriter::default();
        w.u32(1);
        w.bytes(&[1, 2, 3]);
        assert!(read_macs(&mut StateReader::new(&w.into_bytes()), "unicast").is_err());
        let too_many = VirtioNetState {
            nic: NicState {
                filter: RxFilter {
                    table: MacTable {
                        unicast: vec![MacAddr([2; 6]); 40],
                        multicast: vec![MacAddr([1; 6]); 40],
                        ..MacTable::default()
                    },
                    ..RxFilter::default()
                },
                ..s.nic.clone()
            },
            ..s.clone()
        };
        assert!(VirtioNetState::from_bytes(&too_many.to_bytes()).is_err());
        for len in [3, MAX_FRAME + 1] {
            let odd = VirtioNetState {
                nic: NicState {
                    pending_rx: Some(vec![0; len]),
                    ..s.nic.clone()
                },
                ..s.clone()
            };
            assert!(VirtioNetState::from_bytes(&odd.to_bytes()).is_err(), "held frame of {len}");
        }
    }
}
