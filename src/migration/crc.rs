//! CRC-32C (Castagnoli) over migration records, using the SSE4.2 instruction when the host
//! has it (it runs at memory speed) and a table otherwise.

const POLY: u32 = 0x82f6_3b78;

fn table() -> &'static [u32; 256] {
    static T: std::sync::OnceLock<[u32; 256]> = std::sync::OnceLock::new();
    T.get_or_init(|| {
        let mut t = [0u32; 256];
        for (i, e) in t.iter_mut().enumerate() {
            let mut c = i as u32;
            for _ in 0..8 {
                c = if c & 1 != 0 { (c >> 1) ^ POLY } else { c >> 1 };
            }
            *e = c;
        }
        t
    })
}

/// Continues a CRC-32C over `data` (start with `crc = 0`).
pub fn crc32c(crc: u32, data: &[u8]) -> u32 {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("sse4.2") {
            // SAFETY: the CPU supports SSE4.2, checked just above.
            return unsafe { crc32c_sse42(crc, data) };
        }
    }
    let t = table();
    let mut c = !crc;
    for b in data {
        c = t[((c ^ u32::from(*b)) & 0xff) as usize] ^ (c >> 8);
    }
    !c
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sse4.2")]
unsafe fn crc32c_sse42(crc: u32, data: &[u8]) -> u32 {
    use std::arch::x86_64::{_mm_crc32_u8, _mm_crc32_u64};
    let mut c = u64::from(!crc);
    let mut chunks = data.chunks_exact(8);
    for ch in &mut chunks {
        c = _mm_crc32_u64(c, u64::from_le_bytes(ch.try_into().expect("8 bytes")));
    }
    let mut c = c as u32;
    for b in chunks.remainder() {
        c = _mm_crc32_u8(c, *b);
    }
    !c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_values_and_paths_agree() {
        assert_eq!(crc32c(0, b"123456789"), 0xe306_9283);
        let data: Vec<u8> = (0..10_000u32).map(|i| (i * 31 % 251) as u8).collect();
        let t = table();
        let mut c = !0u32;
        for b in &data {
            c = t[((c ^ u32::from(*b)) & 0xff) as usize] ^ (c >> 8);
        }
        assert_eq!(crc32c(0, &data), !c);
        assert_eq!(crc32c(crc32c(0, &data[..777]), &data[777..]), !c);
    }
}
