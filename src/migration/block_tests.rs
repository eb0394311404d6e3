//! Block migration between two VMs in one process, with a source image that lets a test
//! place a guest write at the worst moment of the disk copy.

use super::disks::Mode;
use super::recv;
use super::send::{self, Shared};
use crate::config::Config;
use crate::testutil::probe;
use crate::vm::{Vm, VmEvent};
use devices::block::dirty::DirtyMap;
use devices::block::inactive::Inactive;
use devices::block::{BlockBackend, Extent, Format, Result};
use devices::bus::lock;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::Arc;

const MIB: u64 = 1 << 20;

/// The source's image: right after it answers its first allocation query, a "guest"
/// write lands in what it just reported as a hole, and is marked dirty as virtio-blk
/// marks its writes (after completing them, under the image's lock).
struct WriteAfterStatus {
    inner: Box<dyn BlockBackend>,
    dirty: Arc<DirtyMap>,
    at: u64,
    done: bool,
}

impl BlockBackend for WriteAfterStatus {
    fn format(&self) -> Format {
        self.inner.format()
    }
    fn path(&self) -> &Path {
        self.inner.path()
    }
    fn virtual_size(&self) -> u64 {
        self.inner.virtual_size()
    }
    fn read_only(&self) -> bool {
        self.inner.read_only()
    }
    fn read_at(&mut self, buf: &mut [u8], offset: u64) -> Result<()> {
        self.inner.read_at(buf, offset)
    }
    fn write_at(&mut self, buf: &[u8], offset: u64) -> Result<()> {
        self.inner.write_at(buf, offset)
    }
    fn write_zeroes(&mut self, offset: u64, len: u64, may_unmap: bool) -> Result<()> {
        self.inner.write_zeroes(offset, len, may_unmap)
    }
    fn discard(&mut self, offset: u64, len: u64) -> Result<()> {
        self.inner.discard(offset, len)
    }
    fn flush(&mut self) -> Result<()> {
        self.inner.flush()
    }
    fn block_status(&mut self, offset: u64, len: u64) -> Result<Vec<Extent>> {
        let status = self.inner.block_status(offset, len)?;
        if !self.done {
            self.done = true;
            assert!(status.iter().any(|e| !e.data && e.start <= self.at && self.at < e.start + e.length));
            self.inner.write_at(&[0xab; 4096], self.at)?;
            self.dirty.mark(self.at, 4096);
        }
        Ok(status)
    }
}

fn config(img: &Path, incoming: bool) -> Config {
    config_with(img, incoming, "")
}

fn config_with(img: &Path, incoming: bool, append: &str) -> Config {
    Config {
        mem_size: 64 << 20,
        vcpus: 1,
        kernel: Some(probe()),
        append: append.into(),
        incoming: incoming.then(|| "unix:test".into()),
        start_paused: incoming,
        drives: vec![super::tests::raw_drive(img)],
        ..Config::default()
    }
}

/// Runs a `-b` migration of `src` into `dst` over a socket pair; panics unless it completes.
fn migrate_full(src: &Vm, dst: Vm) -> Vm {
    let (a, b) = UnixStream::pair().unwrap();
    let back = a.try_clone().unwrap();
    let answer = b.try_clone().unwrap();
    let shared = Arc::new(Shared::default());
    let receiver = std::thread::spawn(move || {
        let r = recv::run(&dst, Box::new(b), Some(Box::new(answer)));
        (dst, r)
    });
    let sent = send::run(src, Box::new(a), Some(Box::new(back)), &shared, Mode::Full, &|_| {});
    assert!(sent.is_ok(), "sender failed: {:?}", lock(&shared.stats).error);
    let (dst, r) = receiver.join().unwrap();
    r.unwrap();
    dst
}

fn temp_images(name: &str) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("godwit-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (src_img, dst_img) = (dir.join("src.raw"), dir.join("dst.raw"));
    for img in [&src_img, &dst_img] {
        std::fs::File::create(img).unwrap().set_len(16 * MIB).unwrap();
    }
    (dir, src_img, dst_img)
}

/// A write the allocation query just missed must still reach the destination: the bulk
/// pass may not forget the dirty bits of a range it sent as a hole.
#[test]
fn a_write_just_after_the_allocation_query_reaches_the_destination() {
    let (dir, src_img, dst_img) = temp_images("blkrace");
    let kvm = crate::vm::kvm::open().expect("/dev/kvm");
    let (tx, _rx) = crossbeam_channel::unbounded::<VmEvent>();
    let src = Vm::build(&kvm, &config(&src_img, false), Box::new(std::io::sink()), tx.clone()).unwrap();
    {
        let d = &src.disks()[0];
        let mut backend = lock(&d.backend);
        let stand_in = Box::new(Inactive::replacing(backend.as_ref()));
        let inner = std::mem::replace(&mut *backend, stand_in);
        *backend = Box::new(WriteAfterStatus {
            inner,
            dirty: d.dirty.clone(),
            at: 5 * MIB,
            done: false,
        });
    }
    src.start().unwrap();
    let dst = Vm::build(&kvm, &config(&dst_img, true), Box::new(std::io::sink()), tx).unwrap();
    dst.start().unwrap();

    let dst = migrate_full(&src, dst);

    let mut got = vec![0u8; 4096];
    lock(&dst.disks()[0].backend).read_at(&mut got, 5 * MIB).unwrap();
    assert!(got.iter().all(|b| *b == 0xab), "the write was lost on the way");
    src.teardown();
    dst.teardown();
    let _ = std::fs::remove_dir_all(&dir);
}

/// Requests the guest queued but the source never started travel in guest RAM and are the
/// destination's to run, but only once its guest runs: a destination that loaded the
/// migration and waits paused (`-S`, or `stop`) leaves its disks exactly as the source
/// left them.
#[test]
fn queued_requests_wait_for_the_destination_to_run() {
    let (dir, src_img, dst_img) = temp_images("blkqueued");
    let kvm = crate::vm::kvm::open().expect("/dev/kvm");
    let (tx, _rx) = crossbeam_channel::unbounded::<VmEvent>();
    let append = "probe.disk=8 probe.diskrate=1024 probe.diskverify=0";
    let out = crate::testutil::Capture::default();
    let src = Vm::build(&kvm, &config_with(&src_img, false, append), Box::new(out.clone()), tx.clone()).unwrap();
    src.start().unwrap();
    out.wait_for("DISKVERIFY 1 ok", std::time::Duration::from_secs(30));
    // Park the source's I/O thread while its guest runs on: the guest's next request
    // stays queued in the ring, unstarted, and goes over with RAM.
    src.pause();
    std::thread::sleep(std::time::Duration::from_millis(100));
    let dst = Vm::build(&kvm, &config_with(&dst_img, true, append), Box::new(std::io::sink()), tx).unwrap();
    dst.start().unwrap();
    let dst = migrate_full(&src, dst);
    src.teardown();

    let first_8m = |d: &Vm| {
        let mut v = vec![0u8; (8 * MIB) as usize];
        lock(&d.disks()[0].backend).read_at(&mut v, 0).unwrap();
        v
    };
    let source = std::fs::read(&src_img).unwrap()[..(8 * MIB) as usize].to_vec();
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(first_8m(&dst) == source, "the paused destination ran the guest's queued request");
    // Once it runs, the queued request completes there (and the guest writes on).
    dst.resume();
    let end = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while first_8m(&dst) == source {
        assert!(std::time::Instant::now() < end, "the destination never ran the queued request");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    dst.teardown();
    let _ = std::fs::remove_dir_all(&dir);
}
