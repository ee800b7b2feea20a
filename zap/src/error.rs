//! Errors of the codec: one for decoding untrusted bytes, one for encoding.

use std::fmt;

/// Why a buffer was rejected while parsing or validating a ZAP message.
///
/// Carries what was wrong ([`DecodeErrorKind`]), the absolute byte offset in
/// the message where it was found, and, for typed messages, the field that
/// led there (`"Block.body"`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecodeError {
    kind: DecodeErrorKind,
    offset: usize,
    field: Option<&'static str>,
}

/// What was wrong with a rejected buffer. See [`DecodeError`].
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DecodeErrorKind {
    /// The buffer is shorter than the 16-byte header.
    TooShort {
        /// Length of the buffer.
        len: usize,
    },
    /// The first four bytes are not `"ZAP\0"`.
    BadMagic,
    /// The header's version is neither 1 nor 2.
    UnsupportedVersion(u16),
    /// The header's size word is below 16 or above the buffer length.
    BadSize {
        /// The size the header announces.
        size: u32,
        /// Length of the buffer.
        len: usize,
    },
    /// A pointer's target lies in the header or past the end of the message.
    PointerOutOfBounds {
        /// Absolute target of the pointer, or `None` if it overflowed.
        target: Option<u64>,
    },
    /// A fixed section, slot, payload or list body would extend past the
    /// end of the message.
    OutOfBounds {
        /// Bytes needed from the offset.
        needed: u64,
        /// Message size.
        size: usize,
    },
    /// An object's size word is smaller than the word itself (4).
    BadObjectSize(u32),
    /// A null list pointer with a non-zero element count.
    NullListWithCount(u32),
    /// A `text` field is not valid UTF-8.
    InvalidUtf8,
    /// Objects nest deeper than [`MAX_DEPTH`](crate::MAX_DEPTH) levels.
    TooDeep,
    /// Validation visited more bytes than the traversal limit allows
    /// (pointers aliasing the same data many times).
    TraversalLimit,
    /// An element index past the end of a list (raw readers only).
    IndexOutOfRange {
        /// The index asked for.
        index: usize,
        /// Elements in the list.
        len: usize,
    },
}

impl DecodeError {
    pub(crate) fn new(kind: DecodeErrorKind, offset: usize) -> Self {
        Self {
            kind,
            offset,
            field: None,
        }
    }

    pub(crate) fn at_field(mut self, field: &'static str) -> Self {
        if self.field.is_none() {
            self.field = Some(field);
        }
        self
    }

    /// What was wrong.
    pub fn kind(&self) -> &DecodeErrorKind {
        &self.kind
    }

    /// Absolute offset in the message of the header, slot or object at fault.
    pub fn offset(&self) -> usize {
        self.offset
    }

    /// The typed field (`"Type.field"`) whose slot was at fault, if known.
    pub fn field(&self) -> Option<&'static str> {
        self.field
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("invalid zap message: ")?;
        match &self.kind {
            DecodeErrorKind::TooShort { len } => {
                write!(f, "{len} bytes is shorter than the 16-byte header")?
            }
            DecodeErrorKind::BadMagic => f.write_str("magic is not \"ZAP\\0\"")?,
            DecodeErrorKind::UnsupportedVersion(v) => write!(f, "unsupported version {v}")?,
            DecodeErrorKind::BadSize { size, len } => {
                write!(f, "header size {size} outside 16..={len}")?
            }
            DecodeErrorKind::PointerOutOfBounds { target: Some(t) } => {
                write!(f, "pointer target {t} outside the message body")?
            }
            DecodeErrorKind::PointerOutOfBounds { target: None } => {
                f.write_str("pointer target overflows")?
            }
            DecodeErrorKind::OutOfBounds { needed, size } => {
                write!(f, "{needed} bytes do not fit in a {size}-byte message")?
            }
            DecodeErrorKind::BadObjectSize(s) => write!(f, "object size word {s} is below 4")?,
            DecodeErrorKind::NullListWithCount(c) => write!(f, "null list pointer with count {c}")?,
            DecodeErrorKind::InvalidUtf8 => f.write_str("text is not valid UTF-8")?,
            DecodeErrorKind::TooDeep => write!(f, "nesting deeper than {}", crate::MAX_DEPTH)?,
            DecodeErrorKind::TraversalLimit => {
                f.write_str("traversal limit exceeded (aliased pointers)")?
            }
            DecodeErrorKind::IndexOutOfRange { index, len } => {
                write!(f, "index {index} out of range for a list of {len}")?
            }
        }
        write!(f, " at offset {}", self.offset)?;
        if let Some(field) = self.field {
            write!(f, " (field `{field}`)")?;
        }
        Ok(())
    }
}

impl std::error::Error for DecodeError {}

/// Why a message could not be encoded.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EncodeError {
    /// The message would be larger than `wire::MAX_MESSAGE` (2 GiB - 1:
    /// object and list pointers are signed 32-bit).
    TooLarge {
        /// The size the message would have had.
        size: usize,
    },
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EncodeError::TooLarge { size } => {
                write!(f, "zap message of {size} bytes exceeds the 2 GiB - 1 limit")
            }
        }
    }
}

impl std::error::Error for EncodeError {}
