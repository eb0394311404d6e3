//! Guest pages into stream records: runs of zero pages as ZERO ranges, the rest as PAGES.

use super::{Failure, Stop};
use crate::migration::dirty::PAGE;
use crate::migration::stream::Writer;
use crate::migration::xbzrle::{Sent, XbzrleSender};
use std::io::Write;
use vm_memory::{Bytes, GuestAddress};

pub fn is_zero(page: &[u8]) -> bool {
    let (pre, words, post) = {
        // SAFETY: u64 has no invalid bit patterns; align_to only reinterprets.
        unsafe { page.align_to::<u64>() }
    };
    pre.iter().all(|b| *b == 0) && words.iter().all(|w| *w == 0) && post.iter().all(|b| *b == 0)
}

/// Writes `count` guest pages from `gpa` as records: runs of zero pages as ZERO ranges,
/// the rest as PAGES. Returns (zero pages, data pages). The pages are copied into `buf`
/// first, since a running guest may be writing them meanwhile.
pub fn write_pages<W: Write>(
    w: &mut Writer<W>,
    ram: &crate::memory::GuestRam,
    gpa: u64,
    count: u64,
    buf: &mut Vec<u8>,
) -> Result<(u64, u64), Stop> {
    buf.resize((count * PAGE) as usize, 0);
    ram.read_slice(buf, GuestAddress(gpa)).map_err(Failure::ReadRam)?;
    write_page_data(w, gpa, buf)
}

/// Encodes whole pages `data` that belong at `gpa` (see [`write_pages`]).
pub fn write_page_data<W: Write>(w: &mut Writer<W>, gpa: u64, data: &[u8]) -> Result<(u64, u64), Stop> {
    let page = PAGE as usize;
    let (mut zero, mut normal) = (0u64, 0u64);
    let n = data.len() / page;
    let mut i = 0usize;
    while i < n {
        let page_zero = is_zero(&data[i * page..(i + 1) * page]);
        let mut j = i + 1;
        while j < n && is_zero(&data[j * page..(j + 1) * page]) == page_zero {
            j += 1;
        }
        let at = gpa + i as u64 * PAGE;
        if page_zero {
            w.zero(at, (j - i) as u64).map_err(Stop::Io)?;
            zero += (j - i) as u64;
        } else {
            w.pages(at, &data[i * page..j * page]).map_err(Stop::Io)?;
            normal += (j - i) as u64;
        }
        i = j;
    }
    Ok((zero, normal))
}

/// With xbzrle: `count` guest pages from `gpa` into the xbzrle batch, each as a zero
/// page, a delta against its cached copy, or whole; the batch is written out whenever the
/// next page cannot join it. Returns (zero pages, whole pages).
pub fn write_pages_xbzrle<W: Write>(
    w: &mut Writer<W>,
    xb: &mut XbzrleSender,
    ram: &crate::memory::GuestRam,
    gpa: u64,
    count: u64,
    buf: &mut Vec<u8>,
) -> Result<(u64, u64), Stop> {
    buf.resize((count * PAGE) as usize, 0);
    ram.read_slice(buf, GuestAddress(gpa)).map_err(Failure::ReadRam)?;
    let (mut zero, mut whole) = (0u64, 0u64);
    for (i, page) in buf.chunks_exact(PAGE as usize).enumerate() {
        let at = gpa + i as u64 * PAGE;
        if xb.must_flush_before(at) {
            flush_xbzrle(w, xb)?;
        }
        match xb.page(at, page, is_zero(page)) {
            Sent::Zero => zero += 1,
            Sent::Whole => whole += 1,
            Sent::Delta => {}
        }
    }
    Ok((zero, whole))
}

/// Writes the xbzrle batch as a record, if it holds anything.
pub fn flush_xbzrle<W: Write>(w: &mut Writer<W>, xb: &mut XbzrleSender) -> Result<(), Stop> {
    if let Some((gpa, body)) = xb.take() {
        w.xbzrle(gpa, &body).map_err(Stop::Io)?;
        xb.recycle(body);
    }
    Ok(())
}
