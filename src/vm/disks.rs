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
use devices::block::{BlockBackend, Format, ImageOptions, Qcow2, open_image, open_image_with};
use devices::bus::lock;
use devices::pci::PciRoot;
use devices::virtio::blk::{BlkConfig, VirtioBlk};
use kvm_ioctls::VmFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// A disk attached to the VM.
pub struct Disk {
    pub cfg: DriveConfig,
    pub backend: Arc<Mutex<Box<dyn BlockBackend>>>,
    /// Guest writes, recorded while a block migration runs.
    pub dirty: Arc<DirtyMap>,
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
    pub fn inactivate(&self) -> Result<(), String> {
        if self.cfg.snapshot || !self.is_active() {
            return Ok(());
        }
        let mut b = lock(&self.backend);
        b.flush()
            .map_err(|e| format!("cannot flush '{}': {}", self.cfg.file.display(), one_line(e)))?;
        let stand_in = Inactive::replacing(b.as_ref());
        // Dropping the image closes its files, which releases the locks.
        *b = Box::new(stand_in);
        self.active.store(false, Ordering::SeqCst);
        Ok(())
    }

    /// Reopens the image with its locks and fresh metadata. The device must be paused.
    pub fn activate(&self) -> Result<(), String> {
        if self.is_active() {
            return Ok(());
        }
        let image = open(&self.cfg, false)?;
        if image.virtual_size() != self.size {
            return Err(format!(
                "-drive {}: the image's size changed from {} to {} bytes",
                self.cfg.spec,
                self.size,
                image.virtual_size()
            ));
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
fn open(d: &DriveConfig, inactive: bool) -> Result<Box<dyn BlockBackend>, String> {
    let err = |e: String| format!("-drive {}: {e}", d.spec);
    if inactive && !d.snapshot {
        let opts = ImageOptions {
            format: format_of(d),
            read_only: true,
            lock: false,
            ..ImageOptions::default()
        };
        return open_image_with(&d.file, &opts).map_err(|e| err(one_line(e)));
    }
    if !d.snapshot {
        return open_image(&d.file, format_of(d), d.read_only).map_err(|e| err(one_line(e)));
    }
    let base = open_image(&d.file, format_of(d), true).map_err(|e| err(one_line(e)))?;
    let (size, fmt) = (base.virtual_size(), base.format());
    drop(base);
    let abs = std::fs::canonicalize(&d.file).map_err(|e| err(crate::errtext::io(&e)))?;
    let overlay = std::env::temp_dir().join(format!("godwit-snapshot-{}-{}.qcow2", std::process::id(), d.id));
    Qcow2::create(&overlay, size, 16, Some((abs.as_path(), fmt))).map_err(|e| err(one_line(e)))?;
    let opened = open_image(&overlay, Some(Format::Qcow2), false);
    let _ = std::fs::remove_file(&overlay);
    opened.map_err(|e| err(one_line(e)))
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
) -> Result<Vec<Disk>, String> {
    let mut disks = Vec::new();
    for d in drives {
        let image = open(d, inactive)?;
        let size = image.virtual_size();
        let cfg = BlkConfig {
            serial: d.id.clone(),
            read_only: d.read_only,
            backend_ro_for_now: inactive,
            ..BlkConfig::default()
        };
        let blk = VirtioBlk::new(image, cfg).map_err(|e| format!("-drive {}: {e}", d.spec))?;
        let backend = blk.backend();
        let dirty = blk.dirty_map();
        super::virtio::plug(vm, ram, pci, list, Box::new(blk)).map_err(|e| format!("-drive {}: {e}", d.spec))?;
        disks.push(Disk {
            cfg: d.clone(),
            backend,
            dirty,
            size,
            active: AtomicBool::new(!inactive || d.snapshot),
        });
    }
    Ok(disks)
}
