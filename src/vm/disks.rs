//! Disks: each `-drive` becomes a virtio-blk device on the PCI bus, its image opened (and
//! locked, as QEMU does) through the block layer.
//!
//! A disk is *active* while this process owns its image. A migration destination opens its
//! images inactive (read-only, no locks: the source still writes them) and activates them
//! once the source has flushed and let go; a source inactivates its disks at switch-over
//! (flush, then close, which drops the locks) and activates them again if the migration
//! fails late or the user runs `cont`. Activating reopens the image, so every piece of
//! metadata is read fresh. `snapshot=on` disks are private temporary files: never handed over.

use super::device_list::DeviceList;
use crate::config::DriveConfig;
use crate::memory::GuestRam;
use devices::block::dirty::DirtyMap;
use devices::block::inactive::Inactive;
use devices::block::{BlockBackend, BlockError, Format, ImageOptions, Qcow2, open_image, open_image_with};
use devices::bus::lock;
use devices::pci::PciRoot;
use devices::virtio::blk::stats::BlkStats;
use devices::virtio::blk::{BlkConfig, BlkError, VirtioBlk};
use kvm_ioctls::VmFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use thiserror::Error;

/// Why a disk could not be attached, handed over or taken back. `spec` is the option as
/// given (`-drive SPEC`, or the file node's `-blockdev`), which QEMU's messages start with.
#[derive(Debug, Error)]
pub enum DiskError {
    /// The image (with `snapshot=on`: its base, or the temporary overlay) could not be
    /// opened: missing, locked by another process, not a valid image, ...
    #[error("{spec}: {}", one_line(err))]
    Open {
        spec: String,
        #[source]
        err: BlockError,
    },
    /// `snapshot=on`: the temporary overlay could not be created.
    #[error("{spec}: {}", one_line(err))]
    Overlay {
        spec: String,
        #[source]
        err: BlockError,
    },
    /// `snapshot=on`: the image's absolute path (the overlay's backing file) is unknown.
    #[error("{spec}: {}", crate::errtext::io(err))]
    Resolve {
        spec: String,
        #[source]
        err: std::io::Error,
    },
    /// The virtio-blk device refused its configuration.
    #[error("{spec}: {err}")]
    Device {
        spec: String,
        #[source]
        err: BlkError,
    },
    /// The device could not be put on the PCI bus.
    #[error("{spec}: {err}")]
    Plug {
        spec: String,
        #[source]
        err: super::virtio::PlugError,
    },
    /// Handing the image over: what the image caches could not be written back.
    #[error("cannot flush '{}': {}", path.display(), one_line(err))]
    Flush {
        path: PathBuf,
        #[source]
        err: BlockError,
    },
    /// `-blockdev` nodes name a backing chain other than the one the images hold.
    #[error("{spec}: {why}")]
    Backing { spec: String, why: String },
    /// Taking the image back: it no longer has the size the guest was told.
    #[error("{spec}: the image's size changed from {was} to {now} bytes")]
    SizeChanged { spec: String, was: u64, now: u64 },
}

/// A disk attached to the VM.
pub struct Disk {
    pub cfg: DriveConfig,
    pub backend: Arc<Mutex<Box<dyn BlockBackend>>>,
    /// Guest writes, recorded while a block migration runs.
    pub dirty: Arc<DirtyMap>,
    /// The device's request counters (`query-blockstats`).
    pub stats: Arc<BlkStats>,
    /// Virtual size in bytes (fixed: the guest was told).
    pub size: u64,
    active: AtomicBool,
}

impl Disk {
    pub fn is_active(&self) -> bool {
        self.active.load(Ordering::SeqCst)
    }

    /// Flushes the image and closes it, releasing its locks for another process. The
    /// device must be paused. A no-op for an inactive or `snapshot=on` disk.
    pub fn inactivate(&self) -> Result<(), DiskError> {
        if self.cfg.snapshot || !self.is_active() {
            return Ok(());
        }
        let mut b = lock(&self.backend);
        b.flush().map_err(|err| DiskError::Flush {
            path: self.cfg.file.clone(),
            err,
        })?;
        let stand_in = Inactive::replacing(b.as_ref());
        // Dropping the image closes its files, which releases the locks.
        *b = Box::new(stand_in);
        self.active.store(false, Ordering::SeqCst);
        Ok(())
    }

    /// Reopens the image with its locks and fresh metadata. The device must be paused.
    pub fn activate(&self) -> Result<(), DiskError> {
        if self.is_active() {
            return Ok(());
        }
        let image = open(&self.cfg, false)?;
        if image.virtual_size() != self.size {
            return Err(DiskError::SizeChanged {
                spec: self.cfg.origin(),
                was: self.size,
                now: image.virtual_size(),
            });
        }
        *lock(&self.backend) = image;
        self.active.store(true, Ordering::SeqCst);
        Ok(())
    }
}

fn one_line(e: impl std::fmt::Display) -> String {
    e.to_string().replace('\n', ". ")
}

fn format_of(d: &DriveConfig) -> Option<Format> {
    d.format.as_deref().map(|f| if f == "qcow2" { Format::Qcow2 } else { Format::Raw })
}

/// Opens the drive's image; with `snapshot=on`, a temporary qcow2 overlay over it (unlinked
/// at once, so it vanishes when godwit exits) takes the writes. `inactive`: read-only and
/// without locks, for a migration destination whose source still owns the image.
fn open(d: &DriveConfig, inactive: bool) -> Result<Box<dyn BlockBackend>, DiskError> {
    let spec = || d.origin();
    let opening = |err| DiskError::Open { spec: spec(), err };
    if inactive && !d.snapshot {
        let opts = ImageOptions {
            format: format_of(d),
            read_only: true,
            lock: false,
            ..ImageOptions::default()
        };
        return open_image_with(&d.file, &opts).map_err(opening);
    }
    if !d.snapshot {
        return open_image(&d.file, format_of(d), d.read_only).map_err(opening);
    }
    let base = open_image(&d.file, format_of(d), true).map_err(opening)?;
    let (size, fmt) = (base.virtual_size(), base.format());
    drop(base);
    let abs = std::fs::canonicalize(&d.file).map_err(|err| DiskError::Resolve { spec: spec(), err })?;
    let overlay = std::env::temp_dir().join(format!("godwit-snapshot-{}-{}.qcow2", std::process::id(), d.id));
    Qcow2::create(&overlay, size, 16, Some((abs.as_path(), fmt))).map_err(|err| DiskError::Overlay { spec: spec(), err })?;
    let opened = open_image(&overlay, Some(Format::Qcow2), false);
    let _ = std::fs::remove_file(&overlay);
    opened.map_err(opening)
}

/// A `-blockdev` disk: its image's backing chain must be the one its nodes name (godwit
/// opens the chain the image headers give, so a node chain that differs is refused).
fn check_backing(d: &DriveConfig, image: &mut dyn BlockBackend) -> Result<(), DiskError> {
    let Some(b) = &d.blockdev else { return Ok(()) };
    let fail = |why: String| DiskError::Backing { spec: d.origin(), why };
    let mut layer = image.as_qcow2().and_then(|q| q.backing());
    for want in &b.backing {
        let Some(l) = layer else {
            return Err(fail(format!(
                "the image has no backing file, but a backing node names '{}'",
                want.display()
            )));
        };
        let same = std::fs::canonicalize(want).ok() == std::fs::canonicalize(l.path()).ok();
        if !same {
            return Err(fail(format!(
                "the image's backing file is '{}', but its backing node names '{}'",
                l.path().display(),
                want.display()
            )));
        }
        layer = l.as_qcow2().and_then(|q| q.backing());
    }
    match layer {
        Some(l) if b.backing_ends => Err(fail(format!(
            "'backing: null' on an image whose backing file is '{}' is not supported: godwit opens the backing chain the image names",
            l.path().display()
        ))),
        _ => Ok(()),
    }
}

/// Creates and plugs every disk (inactive ones for a migration destination); BARs are
/// assigned afterwards by the caller.
pub fn attach(
    vm: &Arc<VmFd>,
    ram: &GuestRam,
    pci: &Mutex<PciRoot>,
    list: &mut DeviceList,
    drives: &[DriveConfig],
    inactive: bool,
) -> Result<Vec<Disk>, DiskError> {
    let mut disks = Vec::new();
    for d in drives {
        let mut image = open(d, inactive)?;
        check_backing(d, image.as_mut())?;
        let size = image.virtual_size();
        let cfg = BlkConfig {
            serial: d.blockdev.as_ref().map_or_else(|| d.id.clone(), |b| b.serial.clone()),
            read_only: d.read_only,
            backend_ro_for_now: inactive,
            ..BlkConfig::default()
        };
        let blk = VirtioBlk::new(image, cfg).map_err(|err| DiskError::Device { spec: d.origin(), err })?;
        let backend = blk.backend();
        let dirty = blk.dirty_map();
        let stats = blk.stats();
        super::virtio::plug(vm, ram, pci, list, Box::new(blk)).map_err(|err| DiskError::Plug { spec: d.origin(), err })?;
        disks.push(Disk {
            cfg: d.clone(),
            backend,
            dirty,
            stats,
            size,
            active: AtomicBool::new(!inactive || d.snapshot),
        });
    }
    Ok(disks)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(file: &std::path::Path) -> DriveConfig {
        DriveConfig {
            file: file.to_path_buf(),
            format: Some("raw".into()),
            read_only: false,
            snapshot: false,
            ignore_flush: false,
            id: "virtio0".into(),
            spec: format!("file={},format=raw", file.display()),
            blockdev: None,
        }
    }

    /// A missing image, one another user holds, and one whose size changed while it was
    /// handed over: each its own variant, each in QEMU's words.
    #[test]
    fn each_cause_is_its_own_variant() {
        let dir = std::env::temp_dir().join(format!("godwit-diskerr-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let missing = raw(&dir.join("none.raw"));
        let e = open(&missing, false).err().unwrap();
        assert!(
            matches!(
                &e,
                DiskError::Open {
                    err: BlockError::Open { .. },
                    ..
                }
            ),
            "{e:?}"
        );
        assert_eq!(
            e.to_string(),
            format!(
                "-drive {}: Could not open '{}': No such file or directory",
                missing.spec,
                missing.file.display()
            )
        );

        let img = dir.join("d.raw");
        std::fs::File::create(&img).unwrap().set_len(1 << 20).unwrap();
        let d = raw(&img);
        let held = open(&d, false).unwrap();
        let e = open(&d, false).err().unwrap();
        assert!(
            matches!(
                &e,
                DiskError::Open {
                    err: BlockError::Locked { .. },
                    ..
                }
            ),
            "{e:?}"
        );
        assert!(e.to_string().contains("lock. Is another process using the image"), "{e}");

        let disk = Disk {
            cfg: d,
            backend: Arc::new(Mutex::new(held)),
            dirty: Arc::new(DirtyMap::new(1 << 20)),
            stats: Arc::default(),
            size: 1 << 20,
            active: AtomicBool::new(true),
        };
        disk.inactivate().unwrap();
        std::fs::File::options().write(true).open(&img).unwrap().set_len(2 << 20).unwrap();
        let e = disk.activate().unwrap_err();
        assert!(
            matches!(
                e,
                DiskError::SizeChanged {
                    was: 0x10_0000,
                    now: 0x20_0000,
                    ..
                }
            ),
            "{e:?}"
        );
        assert!(e.to_string().ends_with(": the image's size changed from 1048576 to 2097152 bytes"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A `-blockdev` disk on an overlay: its nodes must name the chain the image holds.
    #[test]
    fn blockdev_backing_must_be_the_images_chain() {
        let dir = std::env::temp_dir().join(format!("godwit-bdchain-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (base, top, other) = (dir.join("base.raw"), dir.join("top.qcow2"), dir.join("other.raw"));
        for f in [&base, &other] {
            std::fs::File::create(f).unwrap().set_len(1 << 20).unwrap();
        }
        Qcow2::create(&top, 1 << 20, 16, Some((base.as_path(), Format::Raw))).unwrap();
        let disk = |backing: Vec<PathBuf>, ends: bool| DriveConfig {
            file: top.clone(),
            format: Some("qcow2".into()),
            read_only: false,
            snapshot: false,
            ignore_flush: false,
            id: "fmt".into(),
            spec: "driver=qcow2,file=st,node-name=fmt".into(),
            blockdev: Some(crate::config::BlockdevDisk {
                storage_node: "st".into(),
                storage_driver: "file".into(),
                storage_spec: format!("driver=file,filename={},node-name=st", top.display()),
                qdev_id: None,
                serial: String::new(),
                backing,
                backing_ends: ends,
            }),
        };
        let check = |d: &DriveConfig| {
            let mut img = open(d, false).unwrap();
            check_backing(d, img.as_mut())
        };
        // The chain from the header (no `backing`), or named node by node down to `null`.
        check(&disk(Vec::new(), false)).unwrap();
        check(&disk(vec![base.clone()], true)).unwrap();
        check(&disk(vec![base.clone()], false)).unwrap();
        // `backing: null` on an overlay: godwit cannot cut the chain.
        let e = check(&disk(Vec::new(), true)).unwrap_err();
        assert!(matches!(e, DiskError::Backing { .. }), "{e:?}");
        assert!(e.to_string().starts_with("-blockdev driver=file,filename="), "{e}");
        assert!(e.to_string().contains("'backing: null' on an image whose backing file is"), "{e}");
        // A node naming another file than the header, or a layer the chain does not have.
        let e = check(&disk(vec![other.clone()], true)).unwrap_err();
        assert!(e.to_string().contains("but its backing node names"), "{e}");
        let e = check(&disk(vec![base.clone(), other.clone()], true)).unwrap_err();
        assert!(
            e.to_string().contains("the image has no backing file, but a backing node names"),
            "{e}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
