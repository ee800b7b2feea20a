//! The ZAP object format (wire B of the Go reference), byte for byte.
//!
//! ```text
//! 0  [4]  magic "ZAP\0"
//! 4  u16  version (1 or 2)
//! 6  u16  flags (high byte: message type used by routers)
//! 8  u32  root: absolute offset of the root object
//! 12 u32  size: total message size, header included
//! 16 ...  objects, lists and payloads; objects and lists start 8-aligned
//! ```
//!
//! All integers are little-endian. Slots inside an object sit at fixed
//! offsets: scalars inline, `bytes`/`text` as `{u32 rel, u32 len}`, lists as
//! `{i32 rel, u32 count}`, nested objects as `{i32 rel}`. A `rel` is relative
//! to the slot's own absolute position and `0` means null. See
//! `docs/FORMAT.md` for the full rules and what this crate adds to them.

mod builder;
pub(crate) mod reader;

pub use builder::{
    Builder, InlineListWriter, ListRef, MAX_MESSAGE, ObjectRef, ObjectWriter, PtrListWriter,
};
pub use reader::{List, Message, Object};

use crate::error::{DecodeError, DecodeErrorKind};

/// Length of the message header.
pub const HEADER_LEN: usize = 16;
/// The four magic bytes every message starts with.
pub const MAGIC: [u8; 4] = *b"ZAP\0";
/// Objects, lists and blobs start on multiples of this.
pub const ALIGN: usize = 8;

/// Header version. The two differ only in this number (the Go reference's
/// v2 marks a platform-VM schema convention, not a different encoding).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Version {
    /// Version 1, the default of `zap-proto/go` and of this crate.
    #[default]
    V1,
    /// Version 2, the default of `luxfi/zap` ≥ 0.7.
    V2,
}

impl Version {
    /// The number written in the header.
    pub fn as_u16(self) -> u16 {
        match self {
            Version::V1 => 1,
            Version::V2 => 2,
        }
    }
}

/// The 16-byte message header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// Format version.
    pub version: Version,
    /// Flags; the high byte is the message type of the Go node router.
    pub flags: u16,
    /// Absolute offset of the root object.
    pub root: u32,
    /// Total size of the message, header included.
    pub size: u32,
}

impl Header {
    /// Parses and checks the header of `buf`: length, magic, version, and
    /// `16 <= size <= buf.len()`. The root offset is checked by whoever
    /// reads the root, against the layout it expects.
    pub fn parse(buf: &[u8]) -> Result<Header, DecodeError> {
        let Some(h) = buf.first_chunk::<HEADER_LEN>() else {
            return Err(DecodeError::new(
                DecodeErrorKind::TooShort { len: buf.len() },
                0,
            ));
        };
        if h[0..4] != MAGIC {
            return Err(DecodeError::new(DecodeErrorKind::BadMagic, 0));
        }
        let version = match u16::from_le_bytes([h[4], h[5]]) {
            1 => Version::V1,
            2 => Version::V2,
            v => return Err(DecodeError::new(DecodeErrorKind::UnsupportedVersion(v), 4)),
        };
        let flags = u16::from_le_bytes([h[6], h[7]]);
        let root = u32::from_le_bytes([h[8], h[9], h[10], h[11]]);
        let size = u32::from_le_bytes([h[12], h[13], h[14], h[15]]);
        if (size as usize) < HEADER_LEN || size as usize > buf.len() {
            return Err(DecodeError::new(
                DecodeErrorKind::BadSize {
                    size,
                    len: buf.len(),
                },
                12,
            ));
        }
        Ok(Header {
            version,
            flags,
            root,
            size,
        })
    }

    /// The message type carried in the high byte of the flags.
    pub fn msg_type(&self) -> u8 {
        (self.flags >> 8) as u8
    }

    /// The header as the 16 bytes written on the wire.
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        out[0..4].copy_from_slice(&MAGIC);
        out[4..6].copy_from_slice(&self.version.as_u16().to_le_bytes());
        out[6..8].copy_from_slice(&self.flags.to_le_bytes());
        out[8..12].copy_from_slice(&self.root.to_le_bytes());
        out[12..16].copy_from_slice(&self.size.to_le_bytes());
        out
    }
}

/// Fixed-width little-endian values that live in slots and packed lists.
///
/// Sealed: implemented for `bool`, the integers `u8`..`u64`/`i8`..`i64`,
/// `f32` and `f64`.
pub trait Scalar: Copy + Default + sealed::Sealed + 'static {
    /// Bytes on the wire.
    const WIDTH: usize;
    #[doc(hidden)]
    fn read_le(b: &[u8]) -> Self;
    #[doc(hidden)]
    fn write_le(self, out: &mut [u8]);
}

mod sealed {
    pub trait Sealed {}
}

macro_rules! scalar {
    ($($t:ty),*) => {$(
        impl sealed::Sealed for $t {}
        impl Scalar for $t {
            const WIDTH: usize = std::mem::size_of::<$t>();
            #[inline(always)]
            fn read_le(b: &[u8]) -> Self {
                match b.first_chunk::<{ std::mem::size_of::<$t>() }>() {
                    Some(a) => <$t>::from_le_bytes(*a),
                    None => <$t>::default(),
                }
            }
            #[inline(always)]
            fn write_le(self, out: &mut [u8]) {
                if let Some(a) = out.first_chunk_mut::<{ std::mem::size_of::<$t>() }>() {
                    *a = self.to_le_bytes();
                }
            }
        }
    )*};
}
scalar!(u8, u16, u32, u64, i8, i16, i32, i64, f32, f64);

impl sealed::Sealed for bool {}
impl Scalar for bool {
    const WIDTH: usize = 1;
    #[inline(always)]
    fn read_le(b: &[u8]) -> Self {
        b.first().is_some_and(|&v| v != 0)
    }
    #[inline(always)]
    fn write_le(self, out: &mut [u8]) {
        if let Some(v) = out.first_mut() {
            *v = self as u8;
        }
    }
}

/// Reads a little-endian `u32` at `pos`; `None` past the end.
#[inline(always)]
pub(crate) fn u32_at(buf: &[u8], pos: usize) -> Option<u32> {
    buf.get(pos..)?
        .first_chunk::<4>()
        .map(|a| u32::from_le_bytes(*a))
}

/// Resolves a pointer `rel` found in the slot at `slot` (absolute). `None`
/// when the arithmetic overflows.
#[inline(always)]
pub(crate) fn resolve(slot: usize, rel: i64) -> Option<u64> {
    (slot as i64)
        .checked_add(rel)
        .and_then(|t| u64::try_from(t).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trip() {
        let h = Header {
            version: Version::V2,
            flags: 0x0301,
            root: 16,
            size: 16,
        };
        let b = h.to_bytes();
        assert_eq!(Header::parse(&b).unwrap(), h);
        assert_eq!(h.msg_type(), 3);
    }

    #[test]
    fn header_rejects() {
        let good = Header {
            version: Version::V1,
            flags: 0,
            root: 16,
            size: 16,
        }
        .to_bytes();
        assert!(matches!(
            Header::parse(&good[..15]).unwrap_err().kind(),
            DecodeErrorKind::TooShort { len: 15 }
        ));
        let mut b = good;
        b[3] = 1;
        assert_eq!(
            Header::parse(&b).unwrap_err().kind(),
            &DecodeErrorKind::BadMagic
        );
        let mut b = good;
        b[4] = 3;
        assert_eq!(
            Header::parse(&b).unwrap_err().kind(),
            &DecodeErrorKind::UnsupportedVersion(3)
        );
        let mut b = good;
        b[12] = 17;
        assert!(matches!(
            Header::parse(&b).unwrap_err().kind(),
            DecodeErrorKind::BadSize { size: 17, len: 16 }
        ));
        let mut b = good;
        b[12] = 15;
        assert!(Header::parse(&b).is_err());
    }
}
