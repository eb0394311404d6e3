//! The virtio fuzz target's body driven from a fixed seed: random rings, mostly close to
//! well formed (descriptors chained in order, buffers in RAM), some wholly random.
//! `GODWIT_FUZZ_ITERS=N` changes the number of inputs.

use super::layout::Target;
use super::virtio_input;

/// xorshift64*: the same inputs on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// One descriptor as the layout decodes it (addresses below 2^63 are taken modulo a
/// little more than RAM, which leaves these as they are).
fn desc(v: &mut Vec<u8>, addr: u64, len: u32, flags: u16, next: u16) {
    v.extend_from_slice(&addr.to_le_bytes());
    v.extend_from_slice(&len.to_le_bytes());
    v.extend_from_slice(&flags.to_le_bytes());
    v.extend_from_slice(&next.to_le_bytes());
}

/// The buffers of one well-formed chain for `dev`: (address, length, device-writable).
fn chain(rng: &mut Rng, dev: u8, k: u64) -> Vec<(u64, u32, bool)> {
    let data = 0x20000 + 2048 * (k % 32);
    match dev {
        0 => {
            let mut c = vec![(0x3000 + 16 * (k % 64), 16, false)];
            for j in 0..rng.below(3) {
                c.push((data + 512 * j, 512, rng.below(2) == 0));
            }
            c.push((0x8000 + k % 256, 1, true));
            c
        }
        1 => vec![(data, 2048, true)],
        2 => vec![(0x3000 + 16 * (k % 64), 12, false), (data, 60 + rng.below(1400) as u32, false)],
        _ => vec![
            (0x3000 + 16 * (k % 64), 2 + rng.below(14) as u32, false),
            (0x8000 + k % 256, 1, true),
        ],
    }
}

/// Breaks one field of a descriptor.
fn spoil(rng: &mut Rng, d: &mut (u64, u32, u16, u16)) {
    match rng.below(5) {
        0 => d.0 = rng.next(),
        1 => d.1 = rng.next() as u32,
        2 => d.2 = rng.next() as u16,
        3 => d.3 = rng.next() as u16,
        _ => d.0 = 0x10000 - u64::from(d.1 / 2),
    }
}

/// An input whose ring mostly makes sense: well-formed chains for the device one after
/// another, their heads published, and sometimes one descriptor spoiled (then true).
fn input(rng: &mut Rng, dev: u8) -> (Vec<u8>, bool) {
    let size_bits = 1 + rng.below(8) as u8;
    let size = 1u16 << size_bits;
    let mut descs = Vec::new();
    let mut heads = Vec::new();
    for k in 0.. {
        let c = chain(rng, dev, k);
        if descs.len() + c.len() > usize::from(size) {
            break;
        }
        heads.push(descs.len() as u16);
        for (j, &(addr, len, w)) in c.iter().enumerate() {
            let more = j + 1 < c.len();
            let flags = u16::from(more) | if w { 2 } else { 0 };
            descs.push((addr, len, flags, descs.len() as u16 + 1));
        }
    }
    let spoiled = rng.below(3) == 0 && !descs.is_empty();
    if spoiled {
        let at = rng.below(descs.len() as u64) as usize;
        spoil(rng, &mut descs[at]);
    }
    let mut v = vec![dev | (rng.below(2) as u8) << 4, size_bits, heads.len().min(127) as u8];
    for i in 0..usize::from(size) {
        let (a, l, f, n) = descs.get(i).copied().unwrap_or_default();
        desc(&mut v, a, l, f, n);
    }
    for i in 0..usize::from(size) {
        v.extend_from_slice(&heads.get(i).copied().unwrap_or_default().to_le_bytes());
    }
    if dev == 1 {
        v.push(rng.below(3) as u8);
        for _ in 0..3 {
            v.extend_from_slice(&(60 + rng.below(1600) as u16).to_le_bytes());
        }
    }
    v.extend_from_slice(&filler(rng, dev));
    (v, spoiled)
}

/// 16 bytes repeated over RAM: a request header (small type, sector on the disk), or a
/// control command (class, command, data), or a frame's first bytes.
fn filler(rng: &mut Rng, dev: u8) -> [u8; 16] {
    let mut f = [0u8; 16];
    for b in &mut f {
        *b = rng.next() as u8;
    }
    match dev {
        0 => {
            f[..4].copy_from_slice(&(rng.below(12) as u32).to_le_bytes());
            f[8..].copy_from_slice(&rng.below(140).to_le_bytes());
        }
        3 => {
            f[0] = rng.below(5) as u8;
            f[1] = rng.below(6) as u8;
        }
        _ => {}
    }
    f
}

fn random(rng: &mut Rng) -> Vec<u8> {
    (0..rng.below(6000)).map(|_| rng.next() as u8).collect()
}

#[test]
fn virtio_fuzz_corpus() {
    let iters: u64 = std::env::var("GODWIT_FUZZ_ITERS").ok().and_then(|v| v.parse().ok()).unwrap_or(4000);
    let mut rng = Rng(0x5eed_1e55);
    let mut per = [(0u64, 0u64, 0u64); 4];
    for i in 0..iters {
        let dev = (i % 4) as u8;
        let (data, spoiled) = if i % 5 == 4 {
            (random(&mut rng), true)
        } else {
            input(&mut rng, dev)
        };
        let out = virtio_input(&data);
        assert!(spoiled || !out.broken, "input {i}: well-formed chains broke the device");
        let t = match super::layout::Layout::decode(&data).device {
            Target::Blk => 0,
            Target::NetRx => 1,
            Target::NetTx => 2,
            Target::NetCtrl => 3,
        };
        per[t].0 += u64::from(out.used);
        per[t].1 += u64::from(out.broken);
        per[t].2 += u64::from(out.refused);
    }
    eprintln!(
        "virtio fuzz: {iters} inputs; (used, broken, refused) blk {:?} rx {:?} tx {:?} ctrl {:?}",
        per[0], per[1], per[2], per[3]
    );
    for (name, (used, broken, _)) in ["blk", "rx", "tx", "ctrl"].iter().zip(per) {
        assert!(used > 0, "{name}: no chain ever completed: the corpus tests little");
        assert!(broken > 0, "{name}: no input ever broke the device: the corpus tests little");
    }
}
