//! Checking, from the host, a disk the probe wrote (block format in docs/probe.md).
#![allow(dead_code)]

const MAGIC: u64 = 0x4b4c4245424f5250;
const K: u64 = 0xd6e8feb86659fd93;

fn splitmix(mut z: u64) -> u64 {
    z ^= z >> 30;
    z = z.wrapping_mul(0xbf58476d1ce4e5b9);
    z ^= z >> 27;
    z = z.wrapping_mul(0x94d049bb133111eb);
    z ^ (z >> 31)
}

/// The generation block `b` holds, or why it is bad.
pub fn block_gen(block: &[u8], b: u64) -> Result<u64, String> {
    let w = |i: usize| u64::from_le_bytes(block[i * 8..i * 8 + 8].try_into().unwrap());
    if block.iter().all(|x| *x == 0) {
        return Ok(0);
    }
    if w(0) != MAGIC || w(1) != b || w(2) == 0 {
        return Err(format!("block {b}: bad header {:#x} {} {}", w(0), w(1), w(2)));
    }
    let g = w(2);
    let seed = splitmix(b.wrapping_mul(0x9e3779b97f4a7c15).wrapping_add(g));
    for i in 3..512 {
        if w(i) != seed.wrapping_add((i as u64).wrapping_mul(K)) {
            return Err(format!("block {b} gen {g}: word {i} wrong"));
        }
    }
    Ok(g)
}

/// Checks a raw image after a run that printed `DISK END writes=W` over `mib` MiB: the
/// writer went round-robin, so block b holds generation W/N + (b < W%N).
pub fn verify_exact(raw: &[u8], mib: u64, writes: u64) -> Result<(), String> {
    let n = mib * 256;
    for b in 0..n {
        let want = writes / n + u64::from(b < writes % n);
        let got = block_gen(&raw[(b * 4096) as usize..((b + 1) * 4096) as usize], b)?;
        if got != want {
            return Err(format!("block {b}: generation {got}, expected {want} after {writes} writes"));
        }
    }
    Ok(())
}

/// `DISK END writes=N` from a run's lines.
pub fn writes(lines: &[super::Line]) -> u64 {
    lines
        .iter()
        .find_map(|l| l.text.strip_prefix("DISK END writes=")?.split_whitespace().next()?.parse().ok())
        .expect("no DISK END line")
}
