//! The destination during post-copy: guest RAM registered with userfaultfd before the
//! guest runs, a fault thread that asks the source for each page a fault stops on, and
//! the placing of every page the stream brings (requested or pushed) with UFFDIO_COPY.
//! Nothing here writes guest RAM any other way while it is registered.

use super::uffd::Uffd;
use super::wire::SharedReply;
use crate::memory::GuestRam;
use devices::bus::lock;
use std::collections::HashSet;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use vm_memory::{GuestMemoryBackend, GuestMemoryRegion};

const PAGE: u64 = 4096;

/// One RAM region: guest-physical start, length, host address.
#[derive(Clone, Copy)]
struct Region {
    gpa: u64,
    len: u64,
    host: u64,
}

fn regions(ram: &GuestRam) -> Vec<Region> {
    ram.iter()
        .filter_map(|r| {
            let host = ram.get_host_address(r.start_addr()).ok()? as u64;
            Some(Region {
                gpa: r.start_addr().0,
                len: r.len(),
                host,
            })
        })
        .collect()
}

/// Post-copy on the destination, from the switch until the stream's END.
pub struct Destination {
    uffd: Arc<Uffd>,
    regions: Vec<Region>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    /// Pages the fault thread asked for (asked again after a resume if still missing).
    asked: Arc<Mutex<HashSet<u64>>>,
}

impl Destination {
    /// Registers all of guest RAM and starts the fault thread, which asks over `reply`
    /// (none: an `exec:` stream, whose pages all come pushed).
    pub fn start(ram: &GuestRam, reply: Option<SharedReply>) -> io::Result<Destination> {
        let uffd = Arc::new(Uffd::new()?);
        let regions = regions(ram);
        for r in &regions {
            uffd.register(r.host, r.len)?;
        }
        let stop = Arc::new(AtomicBool::new(false));
        let asked = Arc::new(Mutex::new(HashSet::new()));
        let (u, s, rs, a) = (uffd.clone(), stop.clone(), regions.clone(), asked.clone());
        let thread = std::thread::Builder::new()
            .name("postcopy-faults".into())
            .spawn(move || fault_loop(&u, &rs, &s, &a, reply))?;
        Ok(Destination {
            uffd,
            regions,
            stop,
            thread: Some(thread),
            asked,
        })
    }

    /// The pages asked for that `has` says are still missing (a request, or its answer,
    /// may have been lost with a broken connection).
    pub fn outstanding(&self, mut has: impl FnMut(u64) -> bool) -> Vec<u64> {
        lock(&self.asked).iter().copied().filter(|g| !has(*g)).collect()
    }

    /// The host address of `len` bytes at `gpa`, if they lie inside one region.
    fn host(&self, gpa: u64, len: u64) -> Option<u64> {
        let end = gpa.checked_add(len)?;
        self.regions
            .iter()
            .find(|r| gpa >= r.gpa && end <= r.gpa + r.len)
            .map(|r| r.host + (gpa - r.gpa))
    }

    /// Places whole pages at `gpa` (checked to lie in RAM by the caller); a page already
    /// there (asked for and pushed both) is left as it is: the source no longer changes it.
    pub fn place(&self, gpa: u64, data: &[u8]) -> io::Result<()> {
        let host = self
            .host(gpa, data.len() as u64)
            .ok_or_else(|| io::Error::other("page outside guest RAM"))?;
        // The whole run in one call; if part of it is there already, page by page.
        if data.len() as u64 == PAGE || !self.uffd.copy(host, data)? {
            for (i, page) in data.chunks(PAGE as usize).enumerate() {
                self.uffd.copy(host + i as u64 * PAGE, page)?;
            }
        }
        Ok(())
    }

    /// Places `pages` zero pages at `gpa`.
    pub fn zero(&self, gpa: u64, pages: u64) -> io::Result<()> {
        let len = pages.checked_mul(PAGE).ok_or_else(|| io::Error::other("zero range overflows"))?;
        let host = self
            .host(gpa, len)
            .ok_or_else(|| io::Error::other("zero range outside guest RAM"))?;
        if pages == 1 || !self.uffd.zero(host, len)? {
            for i in 0..pages {
                self.uffd.zero(host + i * PAGE, PAGE)?;
            }
        }
        Ok(())
    }

    /// The end of post-copy: the fault thread stops and RAM is unregistered (waking
    /// anyone still waiting: every page is in place, or was never touched at the source).
    pub fn finish(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        for r in &self.regions {
            if let Err(e) = self.uffd.unregister(r.host, r.len) {
                eprintln!("godwit: cannot unregister guest RAM from userfaultfd: {e}");
            }
        }
    }
}

impl Drop for Destination {
    fn drop(&mut self) {
        if self.thread.is_some() {
            self.shutdown();
        }
    }
}

/// Reads faults until stopped; asks for each page once.
fn fault_loop(u: &Uffd, regions: &[Region], stop: &AtomicBool, asked: &Mutex<HashSet<u64>>, reply: Option<SharedReply>) {
    while !stop.load(Ordering::SeqCst) {
        let addr = match u.next_fault(10) {
            Ok(Some(a)) => a & !(PAGE - 1),
            Ok(None) => continue,
            Err(e) => {
                eprintln!("godwit: post-copy fault thread: {e}");
                return;
            }
        };
        let Some(gpa) = regions
            .iter()
            .find(|r| addr >= r.host && addr < r.host + r.len)
            .map(|r| r.gpa + (addr - r.host))
        else {
            continue;
        };
        if !lock(asked).insert(gpa) {
            continue;
        }
        if let Some(r) = &reply {
            // A broken connection: the loader sees it too, and asks again after a resume.
            let _ = r.request(gpa);
        }
    }
}
