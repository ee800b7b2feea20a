//! Typed messages: the trait `#[derive(zap::Message)]` implements, and the
//! zero-copy text type.

use std::fmt;
use std::marker::PhantomData;
use std::ops::Deref;

use bytes::Bytes;

use crate::codegen::{self, Adopt, Layout, Obj, Src, Validator};
use crate::error::{DecodeError, EncodeError};
use crate::wire::{Builder, ObjectRef};

/// A message type with a fixed layout in the ZAP object format.
///
/// Implemented by `#[derive(zap::Message)]`; the hidden items are the
/// contract with generated code and not meant to be called directly.
///
/// - [`encode`](Message::encode) writes into a reused [`Builder`]: no
///   allocation once the builder has grown to the message size.
/// - [`decode`](Message::decode) validates a buffer and builds the owned
///   struct; `Bytes` and [`Text`] fields are slices of the input (no copy).
/// - [`view`](Message::view) validates a `&[u8]` and returns the borrowed
///   view type, whose accessors read fields in place and cannot fail.
pub trait Message: Sized {
    /// The borrowed view: `{Name}View<'a>` for derived types.
    type View<'a>: Copy;

    #[doc(hidden)]
    const LAYOUT: Layout;
    #[doc(hidden)]
    fn write_fields(&self, b: &mut Builder, start: usize);
    #[doc(hidden)]
    fn validate_fields(obj: &Obj<'_>, cx: &mut Validator) -> Result<(), DecodeError>;
    #[doc(hidden)]
    fn decode_fields(obj: &Obj<'_>, src: &mut Src<'_>) -> Self;
    #[doc(hidden)]
    fn adopt_fields(&mut self, a: &mut Adopt) -> bool;
    #[doc(hidden)]
    fn view_fields(obj: Obj<'_>) -> Self::View<'_>;
    #[doc(hidden)]
    fn extra_len(&self) -> usize;

    /// An upper bound of the encoded size (header excluded), to size
    /// buffers in one allocation.
    fn encoded_len_hint(&self) -> usize {
        Self::LAYOUT.fixed + 7 + self.extra_len()
    }

    /// Writes this message as an object into `b` (which may hold other
    /// objects already) and returns where it starts.
    fn write(&self, b: &mut Builder) -> ObjectRef {
        codegen::write_object(self, b)
    }

    /// Resets `b`, writes this message as its root and returns the bytes.
    fn encode<'b>(&self, b: &'b mut Builder) -> Result<&'b [u8], EncodeError> {
        b.reset();
        let root = self.write(b);
        b.finish(root)
    }

    /// Encodes into a new buffer of the right size.
    fn to_bytes(&self) -> Result<Bytes, EncodeError> {
        let mut b = Builder::with_capacity(16 + self.encoded_len_hint());
        let root = self.write(&mut b);
        b.into_vec(root).map(Bytes::from)
    }

    /// Validates `buf` and decodes it; `Bytes`/`Text` fields share `buf`.
    fn decode(buf: Bytes) -> Result<Self, DecodeError> {
        codegen::decode(buf)
    }

    /// Validates `buf` and returns a view that reads fields in place.
    fn view(buf: &[u8]) -> Result<Self::View<'_>, DecodeError> {
        codegen::validate_root::<Self>(buf).map(Self::view_fields)
    }

    /// Checks that `buf` is a valid message of this type.
    fn validate(buf: &[u8]) -> Result<(), DecodeError> {
        codegen::validate_root::<Self>(buf).map(drop)
    }
}

/// A validated message that keeps its buffer and reads fields in place.
///
/// This is the zero-copy owned form: `'static + Send + Sync`, so it crosses
/// `.await` points and threads, and costs one validation pass to make
/// (no field is copied, no allocation). [`view`](Owned::view) gives the
/// typed accessors; [`slice`](Owned::slice) turns a borrowed `bytes` field
/// into a `Bytes` sharing the buffer. [`to_message`](Owned::to_message)
/// builds the derived struct when owned fields are more convenient.
///
/// ```
/// # use bytes::Bytes;
/// # use zap::{Message, Owned};
/// #[derive(zap::Message)]
/// struct Ping { seq: u64, payload: Bytes }
///
/// let bytes = Ping { seq: 1, payload: Bytes::from_static(b"hi") }.to_bytes()?;
/// let ping = Owned::<Ping>::decode(bytes)?;
/// assert_eq!(ping.view().seq(), 1);
/// let payload: Bytes = ping.slice(ping.view().payload());
/// assert_eq!(payload, "hi");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Owned<M> {
    buf: Bytes,
    size: usize,
    root: (usize, usize),
    _m: PhantomData<fn() -> M>,
}

impl<M: Message> Owned<M> {
    /// Validates `buf` as an `M` (header and everything `M` reaches).
    #[inline]
    pub fn decode(buf: Bytes) -> Result<Self, DecodeError> {
        let obj = codegen::validate_root::<M>(&buf)?;
        let (size, root) = (obj.buf().len(), obj.parts());
        Ok(Owned {
            buf,
            size,
            root,
            _m: PhantomData,
        })
    }

    /// The typed view; O(1), reads nothing until an accessor is called.
    #[inline]
    pub fn view(&self) -> M::View<'_> {
        let buf = self.buf.get(..self.size).unwrap_or(&[]);
        M::view_fields(Obj::from_parts(buf, self.root))
    }

    /// A `bytes`/`text` value read from [`view`](Owned::view) as a `Bytes`
    /// that shares this message's buffer (no copy). A slice from elsewhere
    /// (for example the static default of an absent `[u8; N]` field) is
    /// copied instead; this never panics.
    pub fn slice(&self, part: &[u8]) -> Bytes {
        if part.is_empty() {
            return Bytes::new();
        }
        let buf = self.buf.as_ptr_range();
        let p = part.as_ptr_range();
        if buf.start <= p.start && p.end <= buf.end {
            self.buf.slice_ref(part)
        } else {
            Bytes::copy_from_slice(part)
        }
    }

    /// Decodes into the derived struct; `Bytes`/`Text` fields share the
    /// buffer.
    pub fn to_message(&self) -> M {
        codegen::decode_trusted(&self.buf, self.size, self.root)
    }

    /// The whole message, as received.
    pub fn as_bytes(&self) -> &Bytes {
        &self.buf
    }

    /// Gives the buffer back.
    pub fn into_bytes(self) -> Bytes {
        self.buf
    }
}

impl<M> Clone for Owned<M> {
    fn clone(&self) -> Self {
        Owned {
            buf: self.buf.clone(),
            size: self.size,
            root: self.root,
            _m: PhantomData,
        }
    }
}

impl<M: Message> fmt::Debug for Owned<M>
where
    for<'a> M::View<'a>: fmt::Debug,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.view(), f)
    }
}

/// UTF-8 text that shares the buffer it was decoded from.
///
/// `String` fields copy on decode; `Text` fields are a refcounted slice of
/// the input, like `Bytes` fields.
#[derive(Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Text(Bytes);

impl Text {
    /// Text from a static string, without copying.
    pub const fn from_static(s: &'static str) -> Self {
        Text(Bytes::from_static(s.as_bytes()))
    }

    /// Checks that `b` is UTF-8.
    pub fn from_utf8(b: Bytes) -> Result<Self, std::str::Utf8Error> {
        std::str::from_utf8(&b)?;
        Ok(Text(b))
    }

    /// Text from bytes validation already checked. A wrong caller gets
    /// `""` from `as_str`, never undefined behaviour.
    pub(crate) fn validated(b: Bytes) -> Self {
        Text(b)
    }

    /// The text. (UTF-8 was checked on construction; this checks again
    /// rather than use `unsafe`, which this crate forbids.)
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or("")
    }

    /// The underlying bytes.
    pub fn as_bytes(&self) -> &Bytes {
        &self.0
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the text is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Deref for Text {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<[u8]> for Text {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl From<String> for Text {
    fn from(s: String) -> Self {
        Text(Bytes::from(s))
    }
}

impl From<&'static str> for Text {
    fn from(s: &'static str) -> Self {
        Text::from_static(s)
    }
}

impl PartialEq<str> for Text {
    fn eq(&self, other: &str) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl PartialEq<&str> for Text {
    fn eq(&self, other: &&str) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl PartialEq<Text> for str {
    fn eq(&self, other: &Text) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl PartialEq<Text> for &str {
    fn eq(&self, other: &Text) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl fmt::Debug for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
