//! The VM configuration the command line produces.

use std::path::PathBuf;

pub use devices::net::slirp::UserNetConfig;
pub use devices::net::tap::TapConfig;
pub use devices::virtio::net::MacAddr;

/// Where a serial port's bytes go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SerialBackend {
    /// The terminal godwit runs in; `mux` shares it with a monitor (`mon:stdio`, the
    /// `-nographic` default), switched with Ctrl-A c.
    Stdio { mux: bool },
    /// A fresh pseudo-terminal whose path is printed at start-up.
    Pty,
    /// Output appended to a file; no input.
    File(PathBuf),
    /// Output appended to a descriptor the caller passed (`-add-fd` with
    /// `-chardev file,path=/dev/fdset/N`, as libvirt writes it); no input.
    Fd(i32),
    /// Nowhere.
    Null,
}

/// One `-drive` (or `-hda`..`-hdd`, or a bare image path).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DriveConfig {
    pub file: PathBuf,
    /// `raw` or `qcow2`; None = probe the image.
    pub format: Option<String>,
    pub read_only: bool,
    /// `snapshot=on`: writes go to a temporary overlay, the image stays untouched.
    pub snapshot: bool,
    /// `cache=unsafe` ignores the guest's flushes.
    pub ignore_flush: bool,
    /// The block device name `info block` shows (`virtio0`, `ide0-hd0`, or `id=`).
    pub id: String,
    /// The original `-drive` argument, for error messages in QEMU's form.
    pub spec: String,
    /// Made from `-blockdev` nodes and `-device virtio-blk-pci,drive=NODE` (`id` is then
    /// the format node's name).
    pub blockdev: Option<BlockdevDisk>,
}

/// A disk libvirt's way: a format node over a protocol node, and the device on them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockdevDisk {
    /// The protocol node (`file` or `host_device`): its name, driver and `-blockdev` text.
    pub storage_node: String,
    pub storage_driver: String,
    pub storage_spec: String,
    /// The device's `id` (`/machine/peripheral/ID`), if it has one.
    pub qdev_id: Option<String>,
    /// The device's `serial=` (what GET_ID reports), empty without one.
    pub serial: String,
    /// The backing files the nodes name, top down, and whether the chain must end there
    /// (`backing: null`) or may go on as the last image's header says (no `backing`).
    pub backing: Vec<PathBuf>,
    pub backing_ends: bool,
}

impl DriveConfig {
    /// The option the drive came from, as QEMU's messages start (`-drive SPEC`, or the
    /// protocol node's `-blockdev` whose file could not be opened).
    pub fn origin(&self) -> String {
        match &self.blockdev {
            Some(b) => format!("-blockdev {}", b.storage_spec),
            None => format!("-drive {}", self.spec),
        }
    }
}

/// What a network back end is.
#[derive(Debug, Clone, PartialEq)]
pub enum NetdevKind {
    Tap(TapConfig),
    User(UserNetConfig),
    /// Nothing: a `-net` hub without host network.
    Null,
}

/// One network back end (QEMU's netdev).
#[derive(Debug, Clone, PartialEq)]
pub struct NetdevConfig {
    /// `id=`, or the `#netN` QEMU makes up for the back ends of `-net` and `-nic`.
    pub id: String,
    pub kind: NetdevKind,
    /// The option as written (`-netdev tap,id=t0,...`), for error messages.
    pub spec: String,
    /// On the legacy `-net` hub 0.
    pub hub: bool,
}

/// One NIC: a virtio-net PCI function.
#[derive(Debug, Clone, PartialEq)]
pub struct NicConfig {
    /// The name `info network` and `set_link` use: `id=`, else `virtio-net-pci.N`.
    pub name: String,
    /// `-device ...,id=` (what `info pci` shows as its id).
    pub qdev_id: String,
    /// The address; set for every NIC once the command line is read.
    pub mac: Option<MacAddr>,
    /// The back end's id.
    pub netdev: Option<String>,
    /// On the legacy `-net` hub 0.
    pub hub: bool,
    /// The option as written, for error messages.
    pub spec: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Guest RAM in bytes.
    pub mem_size: u64,
    /// `-m` was given (a memory back end must then be as large).
    pub mem_given: bool,
    pub vcpus: u8,
    pub kernel: Option<PathBuf>,
    pub initrd: Option<PathBuf>,
    pub append: String,
    pub bios: Option<PathBuf>,
    pub serial: SerialBackend,
    pub name: Option<String>,
    /// `-S`: do not start the vCPUs until told to.
    pub start_paused: bool,
    pub pidfile: Option<PathBuf>,
    pub daemonize: bool,
    pub no_reboot: bool,
    /// `-nographic`: the serial console (and later the monitor) use this terminal.
    pub nographic: bool,
    /// The CPU model named with `-cpu` (godwit always exposes what KVM supports).
    pub cpu_model: String,
    /// The machine type named with `-machine` (godwit has one machine; see `-machine help`).
    pub machine: String,
    /// Notes for the user about options godwit accepted but treats differently from QEMU.
    pub warnings: Vec<String>,
    /// `-incoming URI`: wait for a migration stream instead of booting.
    pub incoming: Option<String>,
    /// `-monitor` devices, in order (a multiplexed stdio monitor is implied by
    /// `SerialBackend::Stdio { mux: true }` and not listed here).
    pub monitors: Vec<String>,
    /// Disks, attached as virtio-blk devices in order.
    pub drives: Vec<DriveConfig>,
    /// `-blockdev` nodes, in order (disks are made of them by `-device virtio-blk-pci`).
    pub blockdevs: Vec<crate::cli::blockdev::Node>,
    /// `-loadvm TAG`: load this snapshot before the guest runs.
    pub loadvm: Option<String>,
    /// Network back ends and NICs (`-netdev`, `-device virtio-net-pci`, `-net`, `-nic`).
    pub netdevs: Vec<NetdevConfig>,
    pub nics: Vec<NicConfig>,
    /// A network option was given (`-net none` included): no default NIC.
    pub net_given: bool,
    /// `-qmp`, `-qmp-pretty` and `-mon` monitors, in order.
    pub extra_monitors: Vec<MonConfig>,
    /// `-chardev` devices by ID, for `-mon`.
    pub chardevs: Vec<(String, monitor::ChardevSpec)>,
    /// `-chardev file` devices by ID, for `-device isa-serial`.
    pub file_chardevs: Vec<(String, SerialBackend)>,
    /// `-device isa-serial,chardev=ID`: the chardev COM1 uses.
    pub isa_serial: Option<String>,
    /// That device's own `id`.
    pub serial_device_id: Option<String>,
    /// The serial port's label in `query-chardev` (`serial0`, or its `-chardev` ID).
    pub serial_label: String,
    /// `-uuid`: what `query-uuid` and `info uuid` answer.
    pub uuid: Option<String>,
    /// `-no-shutdown`: a guest power-off stops the guest in state `shutdown` instead of
    /// ending the process.
    pub no_shutdown: bool,
    /// `-machine memory-backend=ID`: the guest RAM is that `-object memory-backend-ram`.
    pub memory_backend: Option<String>,
    /// `-add-fd`: descriptor sets (set, descriptor, opaque).
    pub fdsets: Vec<(u64, i32, String)>,
    /// `-msg timestamp=on`: messages on stderr start with the time, as QEMU's do.
    pub msg_timestamp: bool,
    /// `-object` instances, in order.
    pub objects: Vec<ObjectConfig>,
}

/// Which end of a TLS connection credentials are for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Client,
    Server,
}

impl Endpoint {
    pub fn name(self) -> &'static str {
        match self {
            Endpoint::Client => "client",
            Endpoint::Server => "server",
        }
    }
}

/// What an `-object` is (QEMU's `qom-type` and its properties).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ObjectKind {
    /// `tls-creds-x509`: certificates in `dir` under QEMU's file names.
    TlsCredsX509 {
        dir: Option<PathBuf>,
        endpoint: Endpoint,
        verify_peer: bool,
        sanity_check: bool,
    },
    /// `tls-creds-psk`: `dir/keys.psk`, lines of `username:hexkey`.
    TlsCredsPsk {
        dir: Option<PathBuf>,
        endpoint: Endpoint,
        username: String,
    },
    /// `authz-simple`: the one client identity (a certificate's distinguished name) allowed.
    AuthzSimple { identity: String },
    /// `secret`: data other objects name (checked readable; nothing uses it yet).
    Secret,
    /// `memory-backend-ram`: the guest RAM when `-machine memory-backend=ID` names it.
    MemoryBackendRam { size: u64 },
}

/// One `-object`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectConfig {
    pub id: String,
    pub kind: ObjectKind,
    /// The option's value as written, for messages.
    pub spec: String,
}

impl ObjectConfig {
    /// QEMU's `qom-type` of the object.
    pub fn qom_type(&self) -> &'static str {
        match self.kind {
            ObjectKind::TlsCredsX509 { .. } => "tls-creds-x509",
            ObjectKind::TlsCredsPsk { .. } => "tls-creds-psk",
            ObjectKind::AuthzSimple { .. } => "authz-simple",
            ObjectKind::Secret => "secret",
            ObjectKind::MemoryBackendRam { .. } => "memory-backend-ram",
        }
    }
}

/// A monitor from `-qmp` or `-mon`.
#[derive(Debug, Clone, PartialEq)]
pub struct MonConfig {
    /// The device (for `-mon`, filled in from its `-chardev` once every option is read).
    pub spec: Option<monitor::ChardevSpec>,
    /// For `-mon`: the `-chardev` ID.
    pub chardev: Option<String>,
    /// The option's value, for messages.
    pub text: String,
    /// QMP (`-qmp`, `mode=control`) rather than HMP.
    pub control: bool,
    pub pretty: bool,
    /// For `-mon`: the chardev's ID; `-qmp` monitors are `compat_monitorN`.
    pub label: Option<String>,
    /// How many `-monitor` options came before it (monitors are numbered in order).
    pub after: usize,
}

/// QEMU's default RAM size for x86 machines.
pub const DEFAULT_MEM: u64 = 128 << 20;

impl Default for Config {
    fn default() -> Self {
        Config {
            mem_size: DEFAULT_MEM,
            mem_given: false,
            vcpus: 1,
            kernel: None,
            initrd: None,
            append: String::new(),
            bios: None,
            serial: SerialBackend::Null,
            name: None,
            start_paused: false,
            pidfile: None,
            daemonize: false,
            no_reboot: false,
            nographic: false,
            cpu_model: "host".into(),
            machine: "pc".into(),
            warnings: Vec::new(),
            incoming: None,
            monitors: Vec::new(),
            drives: Vec::new(),
            blockdevs: Vec::new(),
            loadvm: None,
            netdevs: Vec::new(),
            nics: Vec::new(),
            net_given: false,
            extra_monitors: Vec::new(),
            chardevs: Vec::new(),
            file_chardevs: Vec::new(),
            isa_serial: None,
            serial_device_id: None,
            serial_label: "serial0".into(),
            uuid: None,
            no_shutdown: false,
            memory_backend: None,
            objects: Vec::new(),
            fdsets: Vec::new(),
            msg_timestamp: false,
        }
    }
}
