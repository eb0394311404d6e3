//! Versioned device state values.
//!
//! Every device owns a `FooState` type that implements [`VersionedState`]. A state is encoded
//! as `name`, `version`, then the device's own little-endian fields, so a reader can refuse a
//! state it does not know by name and version instead of misreading it. The migration stream
//! and savevm both carry these values unchanged.

use thiserror::Error;

/// Errors while decoding a device state.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum StateError {
    #[error("device state truncated: wanted {wanted} more bytes, {left} left")]
    Truncated { wanted: usize, left: usize },
    #[error("state is for device '{found}', expected '{expected}'")]
    WrongDevice { expected: &'static str, found: String },
    #[error("'{name}' state version {found} is newer than the supported version {supported}")]
    UnsupportedVersion { name: &'static str, found: u16, supported: u16 },
    #[error("invalid '{name}' state: {why}")]
    Invalid { name: &'static str, why: String },
    #[error("{0} trailing bytes after device state")]
    Trailing(usize),
}

/// A state type with a stable name and a version number.
pub trait VersionedState: Sized {
    /// Name written into the encoded value (unique per device type).
    const NAME: &'static str;
    /// Current encoding version; decoders accept this and any older version they still know.
    const VERSION: u16;
    fn encode(&self, w: &mut StateWriter);
    fn decode(r: &mut StateReader<'_>, version: u16) -> Result<Self, StateError>;

    /// Encodes the state with its name and version header.
    fn to_bytes(&self) -> Vec<u8> {
        let mut w = StateWriter::default();
        w.str(Self::NAME);
        w.u16(Self::VERSION);
        self.encode(&mut w);
        w.into_bytes()
    }

    /// Decodes a value written by [`VersionedState::to_bytes`], checking name and version.
    fn from_bytes(bytes: &[u8]) -> Result<Self, StateError> {
        let mut r = StateReader::new(bytes);
        let name = r.string()?;
        if name != Self::NAME {
            return Err(StateError::WrongDevice {
                expected: Self::NAME,
                found: name,
            });
        }
        let version = r.u16()?;
        if version > Self::VERSION {
            return Err(StateError::UnsupportedVersion {
                name: Self::NAME,
                found: version,
                supported: Self::VERSION,
            });
        }
        let state = Self::decode(&mut r, version)?;
        r.finish()?;
        Ok(state)
    }
}

/// A device whose state can be saved and restored.
pub trait Persist {
    type State: VersionedState;
    fn save(&self) -> Self::State;
    fn restore(&mut self, state: &Self::State) -> Result<(), StateError>;
}

/// Little-endian field writer.
#[derive(Default)]
pub struct StateWriter {
    buf: Vec<u8>,
}

impl StateWriter {
    pub fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }
    pub fn bool(&mut self, v: bool) {
        self.buf.push(u8::from(v));
    }
    pub fn u16(&mut self, v: u16) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    pub fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    pub fn u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    pub fn i64(&mut self, v: i64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    /// A byte string prefixed with its u32 length.
    pub fn bytes(&mut self, v: &[u8]) {
        let len = u32::try_from(v.len()).expect("device state field over 4 GiB");
        self.u32(len);
        self.buf.extend_from_slice(v);
    }
    pub fn str(&mut self, v: &str) {
        self.bytes(v.as_bytes());
    }
    pub fn into_bytes(self) -> Vec<u8> {
        self.buf
    }
}

/// Little-endian field reader; every read is bounds-checked.
pub struct StateReader<'a> {
    buf: &'a [u8],
}

impl<'a> StateReader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        StateReader { buf }
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8], StateError> {
        if self.buf.len() < n {
            return Err(StateError::Truncated {
                wanted: n,
                left: self.buf.len(),
            });
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], StateError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }
    pub fn u8(&mut self) -> Result<u8, StateError> {
        Ok(self.take(1)?[0])
    }
    pub fn bool(&mut self) -> Result<bool, StateError> {
        Ok(self.u8()? != 0)
    }
    pub fn u16(&mut self) -> Result<u16, StateError> {
        Ok(u16::from_le_bytes(self.array()?))
    }
    pub fn u32(&mut self) -> Result<u32, StateError> {
        Ok(u32::from_le_bytes(self.array()?))
    }
    pub fn u64(&mut self) -> Result<u64, StateError> {
        Ok(u64::from_le_bytes(self.array()?))
    }
    pub fn i64(&mut self) -> Result<i64, StateError> {
        Ok(i64::from_le_bytes(self.array()?))
    }
    /// A length-prefixed byte string; the length is checked against what is left.
    pub fn bytes(&mut self) -> Result<&'a [u8], StateError> {
        let len = self.u32()? as usize;
        self.take(len)
    }
    pub fn string(&mut self) -> Result<String, StateError> {
        let b = self.bytes()?;
        Ok(String::from_utf8_lossy(b).into_owned())
    }
    /// Fails if bytes are left over.
    pub fn finish(&self) -> Result<(), StateError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(StateError::Trailing(self.buf.len()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq)]
    struct Demo {
        a: u8,
        b: u64,
        c: Vec<u8>,
    }
    impl VersionedState for Demo {
        const NAME: &'static str = "demo";
        const VERSION: u16 = 2;
        fn encode(&self, w: &mut StateWriter) {
            w.u8(self.a);
            w.u64(self.b);
            w.bytes(&self.c);
        }
        fn decode(r: &mut StateReader<'_>, _version: u16) -> Result<Self, StateError> {
            Ok(Demo {
                a: r.u8()?,
                b: r.u64()?,
                c: r.bytes()?.to_vec(),
            })
        }
    }

    #[test]
    fn round_trip() {
        let d = Demo {
            a: 7,
            b: u64::MAX - 3,
            c: vec![1, 2, 3],
        };
        assert_eq!(Demo::from_bytes(&d.to_bytes()).unwrap(), d);
    }

    #[test]
    fn refuses_bad_input() {
        let bytes = Demo {
            a: 1,
            b: 2,
            c: vec![9; 10],
        }
        .to_bytes();
        for cut in 0..bytes.len() {
            assert!(Demo::from_bytes(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut newer = bytes.clone();
        newer[8] = 3; // version field follows the 4-byte length and "demo"
        assert!(matches!(Demo::from_bytes(&newer), Err(StateError::UnsupportedVersion { .. })));
        let mut huge = bytes.clone();
        huge[19..23].copy_from_slice(&u32::MAX.to_le_bytes()); // length of `c`
        assert!(matches!(Demo::from_bytes(&huge), Err(StateError::Truncated { .. })));
        let mut extra = bytes;
        extra.push(0);
        assert_eq!(Demo::from_bytes(&extra), Err(StateError::Trailing(1)));
    }
}
