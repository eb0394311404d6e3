//! virtio-net driven the way a guest driver drives it (config cycles, BAR0 MMIO, split rings
//! in real guest memory), against a fake back end: a datagram socket pair whose far end
//! the test holds as the "wire".

mod hostile;
mod lifecycle;
mod settings;
mod traffic;
mod watch;
mod with_tap;

use super::*;
use crate::net::{NetBackend, Offloads, VNET_HDR_LEN};
use crate::virtio::testing::*;
use crate::virtio::{GuestMem, status};
use std::io::IoSlice;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixDatagram;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use vm_memory::{Bytes, GuestAddress};

pub const RX_RING: u64 = 0x10000;
pub const TX_RING: u64 = 0x20000;
pub const CTRL_RING: u64 = 0x30000;
/// Receive buffers go from here, transmit frames and control commands at their own pages.
pub const RX_BUFS: u64 = 0x100000;
pub const TX_BUF: u64 = 0x200000;
pub const CTRL_BUF: u64 = 0x300000;
pub const QSIZE: u16 = 16;
/// The config vector's message, as `enable_msix` programs vector 0.
pub const CONFIG_MSI: (u64, u32) = (0xfee0_0000, 0x40);
pub const OWN: MacAddr = MacAddr::QEMU_DEFAULT;
pub const OTHER: MacAddr = MacAddr([0x52, 0x54, 0, 0xaa, 0xbb, 0xcc]);

/// The back end under test: frames go to and come from the wire end of a socket pair.
pub struct FakeBackend {
    sock: UnixDatagram,
    vnet_hdr: bool,
    offloads: Arc<Mutex<Vec<Offloads>>>,
    recvs: Arc<AtomicUsize>,
}

impl NetBackend for FakeBackend {
    fn vnet_hdr(&self) -> bool {
        self.vnet_hdr
    }
    fn send(&mut self, frame: &[IoSlice<'_>]) -> std::io::Result<()> {
        let bytes: Vec<u8> = frame.iter().flat_map(|s| s.iter().copied()).collect();
        self.sock.send(&bytes).map(|_| ())
    }
    fn recv(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.recvs.fetch_add(1, Ordering::SeqCst);
        self.sock.recv(buf)
    }
    fn rx_fd(&self) -> RawFd {
        self.sock.as_raw_fd()
    }
    fn set_offloads(&mut self, offloads: Offloads) -> std::io::Result<()> {
        lock(&self.offloads).push(offloads);
        Ok(())
    }
    fn info(&self) -> String {
        "fake".into()
    }
}

/// The test's end of the wire.
pub struct Wire {
    pub sock: UnixDatagram,
    pub offloads: Arc<Mutex<Vec<Offloads>>>,
    /// Calls of the back end's `recv`.
    pub recvs: Arc<AtomicUsize>,
}

impl Wire {
    pub fn new(vnet_hdr: bool) -> (Wire, FakeBackend) {
        let (a, b) = UnixDatagram::pair().unwrap();
        a.set_nonblocking(true).unwrap();
        b.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let offloads = Arc::new(Mutex::new(Vec::new()));
        let recvs = Arc::new(AtomicUsize::new(0));
        let backend = FakeBackend {
            sock: a,
            vnet_hdr,
            offloads: offloads.clone(),
            recvs: recvs.clone(),
        };
        (Wire { sock: b, offloads, recvs }, backend)
    }

    /// A frame from the outside world towards the guest.
    pub fn inject(&self, frame: &[u8]) {
        self.sock.send(frame).unwrap();
    }

    /// The next frame the NIC sent (waits up to 5 s).
    pub fn sent(&self) -> Vec<u8> {
        let mut buf = vec![0u8; 70000];
        let n = self.sock.recv(&mut buf).expect("no frame on the wire");
        buf.truncate(n);
        buf
    }

    pub fn quiet_for(&self, ms: u64) -> bool {
        self.sock.set_read_timeout(Some(Duration::from_millis(ms.max(1)))).unwrap();
        let quiet = self.sock.recv(&mut [0u8; 70000]).is_err();
        self.sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        quiet
    }
}

/// An Ethernet frame of `len` bytes to `dest`, its payload a pattern from `seed`.
pub fn frame(dest: MacAddr, len: usize, seed: u8) -> Vec<u8> {
    let mut f: Vec<u8> = (0..len).map(|i| (i as u8).wrapping_mul(7).wrapping_add(seed)).collect();
    f[..6].copy_from_slice(&dest.0);
    f[6..12].copy_from_slice(&OTHER.0);
    f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    f
}

/// A virtio-net header with distinctive fields (flags, gso type, lengths), num_buffers 0.
pub fn header() -> [u8; VNET_HDR_LEN] {
    [1, 1, 0x36, 0x00, 0xa8, 0x05, 0x22, 0x00, 0x10, 0x00, 0, 0]
}

/// A NIC plugged in and started by the "driver".
pub struct Nic {
    pub g: Guest,
    pub rx: Ring,
    pub tx: Ring,
    pub ctrl: Ring,
    pub wire: Wire,
    pub control: Arc<NetControl>,
    pub acked: u64,
    /// Where the next receive buffer goes.
    next_buf: u64,
}

impl Nic {
    /// A NIC plugged in, not yet started by the driver.
    pub fn plugged(vnet_hdr: bool) -> (Guest, Wire, Arc<NetControl>) {
        Nic::on_memory(vnet_hdr, guest_memory())
    }

    pub fn on_memory(vnet_hdr: bool, mem: GuestMem) -> (Guest, Wire, Arc<NetControl>) {
        let (wire, backend) = Wire::new(vnet_hdr);
        let net = VirtioNet::new(Box::new(backend), NetConfig::default()).unwrap();
        let control = net.control();
        (Guest::new(Box::new(net), mem), wire, control)
    }

    /// A NIC with the features in `want` accepted (those offered).
    pub fn start(vnet_hdr: bool, want: u64) -> Nic {
        let (g, wire, control) = Nic::plugged(vnet_hdr);
        Nic::init(g, wire, control, want)
    }

    /// Linux's order: negotiate, config vector 0, queues on vectors 1-3, DRIVER_OK.
    pub fn init(mut g: Guest, wire: Wire, control: Arc<NetControl>, want: u64) -> Nic {
        g.enable_msix(4);
        let acked = g.negotiate(want);
        g.common_write(0x10, 2, 0);
        let (rx, tx, ctrl) = (Ring::new(RX_RING, QSIZE), Ring::new(TX_RING, QSIZE), Ring::new(CTRL_RING, QSIZE));
        g.setup_queue(0, &rx, 1);
        g.setup_queue(1, &tx, 2);
        g.setup_queue(2, &ctrl, 3);
        g.driver_ok();
        assert_eq!(g.status() & status::NEEDS_RESET, 0);
        Nic {
            g,
            rx,
            tx,
            ctrl,
            wire,
            control,
            acked,
            next_buf: RX_BUFS,
        }
    }

    pub fn mem(&self) -> &GuestMem {
        &self.g.mem
    }

    /// Posts one receive buffer of `len` bytes per entry, each its own chain; returns
    /// their addresses.
    pub fn post_rx(&mut self, lens: &[u32]) -> Vec<u64> {
        let mut addrs = Vec::new();
        for &len in lens {
            let at = self.next_buf;
            self.next_buf += u64::from(len).next_multiple_of(0x1000);
            if self.next_buf > RX_BUFS + 0xf0000 {
                self.next_buf = RX_BUFS;
            }
            self.g.mem.write_slice(&vec![0xee; len as usize], GuestAddress(at)).unwrap();
            self.rx.push(&self.g.mem, &[(at, len, true)]);
            addrs.push(at);
        }
        self.g.notify(0);
        addrs
    }

    /// Waits for `n` received buffers; returns (head, used length) of each.
    pub fn received(&mut self, n: u16) -> Vec<(u32, u32)> {
        self.rx.wait_used(&self.g.mem, n)
    }

    pub fn get(&self, addr: u64, len: usize) -> Vec<u8> {
        let mut v = vec![0u8; len];
        self.g.mem.read_slice(&mut v, GuestAddress(addr)).unwrap();
        v
    }

    /// Transmits header + frame from one descriptor; waits until it is used.
    pub fn transmit(&mut self, hdr: &[u8], frame: &[u8]) {
        let bytes = [hdr, frame].concat();
        self.g.mem.write_slice(&bytes, GuestAddress(TX_BUF)).unwrap();
        self.tx.push(&self.g.mem, &[(TX_BUF, bytes.len() as u32, false)]);
        self.g.notify(1);
        assert_eq!(self.tx.wait_used(&self.g.mem, 1)[0].1, 0);
    }

    /// Sends a control command; returns the ack.
    pub fn command(&mut self, class: u8, cmd: u8, data: &[u8]) -> u8 {
        let (hdr, body, ack) = (CTRL_BUF, CTRL_BUF + 0x10, CTRL_BUF + 0xff0);
        self.g.mem.write_slice(&[class, cmd], GuestAddress(hdr)).unwrap();
        self.g.mem.write_slice(data, GuestAddress(body)).unwrap();
        self.g.mem.write_obj(0xeeu8, GuestAddress(ack)).unwrap();
        let mut bufs = vec![(hdr, 2, false)];
        if !data.is_empty() {
            bufs.push((body, data.len() as u32, false));
        }
        bufs.push((ack, 1, true));
        self.ctrl.push(&self.g.mem, &bufs);
        self.g.notify(2);
        assert_eq!(self.ctrl.wait_used(&self.g.mem, 1)[0].1, 1);
        self.g.mem.read_obj(GuestAddress(ack)).unwrap()
    }

    pub fn config_mac(&mut self) -> MacAddr {
        let d = self.g.caps.device;
        let mut m = [0u8; 6];
        for (i, b) in m.iter_mut().enumerate() {
            *b = self.g.read(d + i as u64, 1) as u8;
        }
        MacAddr(m)
    }

    pub fn config_status(&mut self) -> u16 {
        let d = self.g.caps.device;
        self.g.read(d + 6, 2) as u16
    }

    /// Waits for a config interrupt, skipping queue interrupts.
    pub fn config_irq(&self) -> bool {
        let end = std::time::Instant::now() + Duration::from_secs(5);
        while let Some(left) = end.checked_duration_since(std::time::Instant::now()) {
            match self.g.msi.rx.recv_timeout(left) {
                Ok(m) if m == CONFIG_MSI => return true,
                Ok(_) => {}
                Err(_) => return false,
            }
        }
        false
    }

    /// No config interrupt within `ms` (queue interrupts ignored).
    pub fn no_config_irq(&self, ms: u64) -> bool {
        let end = std::time::Instant::now() + Duration::from_millis(ms);
        while let Some(left) = end.checked_duration_since(std::time::Instant::now()) {
            match self.g.msi.rx.recv_timeout(left) {
                Ok(m) if m == CONFIG_MSI => return false,
                Ok(_) => {}
                Err(_) => return true,
            }
        }
        true
    }

    pub fn needs_reset(&mut self) -> bool {
        self.g.status() & status::NEEDS_RESET != 0
    }
}

/// Every feature the NIC may offer.
pub const ALL: u64 = !0;
