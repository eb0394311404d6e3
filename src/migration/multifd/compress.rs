//! Per-packet compression of the multifd channels: none, zlib (flate2) or zstd. Each
//! channel thread owns one compressor (or decompressor) and reuses its context.

use thiserror::Error;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(u8)]
pub enum Compression {
    #[default]
    None = 0,
    Zlib = 1,
    Zstd = 2,
}

impl Compression {
    pub fn from_u8(v: u8) -> Option<Compression> {
        Some(match v {
            0 => Compression::None,
            1 => Compression::Zlib,
            2 => Compression::Zstd,
            _ => return None,
        })
    }

    /// QEMU's names, as `multifd-compression` takes them.
    pub fn from_name(s: &str) -> Option<Compression> {
        Some(match s {
            "none" => Compression::None,
            "zlib" => Compression::Zlib,
            "zstd" => Compression::Zstd,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Zlib => "zlib",
            Compression::Zstd => "zstd",
        }
    }
}

#[derive(Debug, Error)]
pub enum CompressError {
    #[error("{0} compression failed: {1}")]
    Compress(&'static str, String),
    #[error("{0} data does not decompress: {1}")]
    Decompress(&'static str, String),
    #[error("{what} data decompresses to {got} bytes, not the {want} its pages need")]
    Length { what: &'static str, got: usize, want: usize },
}

/// A channel's compressor.
pub enum Compressor {
    None,
    Zlib(flate2::Compress),
    Zstd(Box<zstd::bulk::Compressor<'static>>),
}

impl Compressor {
    pub fn new(c: Compression, zlib_level: u8, zstd_level: u8) -> Result<Compressor, CompressError> {
        Ok(match c {
            Compression::None => Compressor::None,
            Compression::Zlib => Compressor::Zlib(flate2::Compress::new(flate2::Compression::new(u32::from(zlib_level)), true)),
            Compression::Zstd => Compressor::Zstd(Box::new(
                zstd::bulk::Compressor::new(i32::from(zstd_level)).map_err(|e| CompressError::Compress("zstd", e.to_string()))?,
            )),
        })
    }

    /// Compresses `data` into `out` (replacing its contents). `None` copies nothing and
    /// leaves `out` empty: the caller sends `data` itself.
    pub fn compress(&mut self, data: &[u8], out: &mut Vec<u8>) -> Result<(), CompressError> {
        out.clear();
        match self {
            Compressor::None => Ok(()),
            Compressor::Zlib(z) => {
                z.reset();
                out.reserve(data.len() + data.len() / 1000 + 64);
                let st = z
                    .compress_vec(data, out, flate2::FlushCompress::Finish)
                    .map_err(|e| CompressError::Compress("zlib", e.to_string()))?;
                if st != flate2::Status::StreamEnd {
                    return Err(CompressError::Compress("zlib", "output buffer too small".into()));
                }
                Ok(())
            }
            Compressor::Zstd(z) => {
                out.resize(zstd::zstd_safe::compress_bound(data.len()), 0);
                let n = z
                    .compress_to_buffer(data, out.as_mut_slice())
                    .map_err(|e| CompressError::Compress("zstd", e.to_string()))?;
                out.truncate(n);
                Ok(())
            }
        }
    }
}

/// A channel's decompressor.
pub enum Decompressor {
    Zlib(flate2::Decompress),
    Zstd(Box<zstd::bulk::Decompressor<'static>>),
}

impl Decompressor {
    pub fn new(c: Compression) -> Result<Option<Decompressor>, CompressError> {
        Ok(match c {
            Compression::None => None,
            Compression::Zlib => Some(Decompressor::Zlib(flate2::Decompress::new(true))),
            Compression::Zstd => Some(Decompressor::Zstd(Box::new(
                zstd::bulk::Decompressor::new().map_err(|e| CompressError::Decompress("zstd", e.to_string()))?,
            ))),
        })
    }

    /// Decompresses `data` into `out`, which must come out exactly `want` bytes long.
    pub fn decompress(&mut self, data: &[u8], out: &mut Vec<u8>, want: usize) -> Result<(), CompressError> {
        out.clear();
        out.reserve(want);
        let what = match self {
            Decompressor::Zlib(z) => {
                z.reset(true);
                let st = z
                    .decompress_vec(data, out, flate2::FlushDecompress::Finish)
                    .map_err(|e| CompressError::Decompress("zlib", e.to_string()))?;
                if st != flate2::Status::StreamEnd || z.total_in() != data.len() as u64 {
                    return Err(CompressError::Decompress(
                        "zlib",
                        "the stream does not end where the packet does".into(),
                    ));
                }
                "zlib"
            }
            Decompressor::Zstd(z) => {
                out.resize(want, 0);
                let n = z
                    .decompress_to_buffer(data, out.as_mut_slice())
                    .map_err(|e| CompressError::Decompress("zstd", e.to_string()))?;
                out.truncate(n);
                "zstd"
            }
        };
        if out.len() != want {
            return Err(CompressError::Length {
                what,
                got: out.len(),
                want,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_compression_round_trips_and_checks_the_length() {
        let data: Vec<u8> = (0..3 * 4096u32).map(|i| (i / 7 % 251) as u8).collect();
        for c in [Compression::Zlib, Compression::Zstd] {
            let mut comp = Compressor::new(c, 1, 1).unwrap();
            let mut packed = Vec::new();
            comp.compress(&data, &mut packed).unwrap();
            assert!(packed.len() < data.len() / 4, "{c:?} {}", packed.len());
            let mut d = Decompressor::new(c).unwrap().unwrap();
            let mut out = Vec::new();
            d.decompress(&packed, &mut out, data.len()).unwrap();
            assert_eq!(out, data);
            // Twice with the same contexts.
            comp.compress(&data[..4096], &mut packed).unwrap();
            d.decompress(&packed, &mut out, 4096).unwrap();
            assert_eq!(out, &data[..4096]);
            assert!(d.decompress(&packed, &mut out, 8192).is_err(), "{c:?}");
            assert!(d.decompress(&packed[..packed.len() / 2], &mut out, 4096).is_err(), "{c:?}");
            assert!(d.decompress(b"garbage garbage", &mut out, 4096).is_err(), "{c:?}");
        }
        assert_eq!(Compression::from_name("zstd"), Some(Compression::Zstd));
        assert_eq!(Compression::from_name("lz4"), None);
        assert!(Decompressor::new(Compression::None).unwrap().is_none());
    }
}
