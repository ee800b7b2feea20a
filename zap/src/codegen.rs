//! Support for generated code. Not a public API: items here change without
//! notice. `#[derive(zap::Message)]` (and later `zap-build`) reach the
//! runtime only through this module.
//!
//! The model: a message type is a fixed section of slots laid out by
//! [`Field::WIDTH`]/[`Field::ALIGN`] (computed in `const` items by the
//! derive), plus payloads and children reached through pointers.
//! Validation ([`Validator`]) walks everything a type can reach once and
//! yields an [`Obj`]; reads through an `Obj` are then infallible: a slot
//! beyond the object's fixed size reads as the default (schema evolution),
//! and every read still goes through bounds-checked `get`, so even a bug in
//! validation could only produce a wrong value, never a panic or an
//! out-of-bounds read.

use std::fmt;
use std::marker::PhantomData;

pub use bytes::Bytes;

pub use crate::error::{DecodeError, DecodeErrorKind, EncodeError};
pub use crate::message::{Message, Text};
pub use crate::wire::{Builder, ListRef, ObjectRef, Scalar};

pub use crate::message::Owned;
pub use crate::payload::Payload;
/// What generated services use from the runtime.
#[cfg(feature = "runtime")]
pub use crate::rt::service::{
    box_responses, call_client_streaming, call_server_streaming, call_streaming, call_unary,
    forward_client_streaming, forward_streaming, route_client_streaming, route_server_streaming,
    route_streaming, route_unary,
};
#[cfg(feature = "runtime")]
pub use crate::rt::{
    BoxStream, CallChannel, Channel, IntoRequest, NamedService, Request, Response, Router,
    Streaming,
};
/// What `zap-build --features grpc` output uses.
#[cfg(feature = "grpc")]
pub mod grpc {
    pub use crate::rt::grpc::{Convert, GrpcChannel, ProtoMethod, Protobuf, prost, tonic};
}
pub use crate::status::{Code, Status};
/// `Field`/`ListElem` impls for a message and for an open enum.
pub use crate::{__enum_impls as enum_impls, __message_impls as message_impls};
#[cfg(feature = "runtime")]
pub use futures_core::Stream;

use crate::wire::reader::{bytes_slot, list_slot, object_slot, var_element};
use crate::wire::{HEADER_LEN, Header, u32_at};

/// Objects nest at most this deep (recursive types, pointer cycles).
pub const MAX_DEPTH: u32 = 64;

/// The fixed-section layout of a message type.
#[derive(Clone, Copy, Debug)]
pub struct Layout {
    /// Bytes of the fixed section this version of the type writes.
    pub fixed: usize,
    /// Whether the object starts with a `u32` size word giving the fixed
    /// size its writer used (derived layouts), or has the static size
    /// `fixed` (explicit `#[zap(offset = N)]` layouts matching a Go schema).
    pub size_word: bool,
}

/// Width of the size word that starts evolvable objects.
pub const SIZE_WORD: usize = 4;

/// Rounds `off` up to a multiple of `align` (for layout `const`s).
pub const fn align_up(off: usize, align: usize) -> usize {
    off.next_multiple_of(align)
}

/// The larger of two sizes (for layout `const`s).
pub const fn max(a: usize, b: usize) -> usize {
    if a > b { a } else { b }
}

/// A validated object: reads inside it cannot fail.
#[derive(Clone, Copy)]
pub struct Obj<'a> {
    buf: &'a [u8],
    start: usize,
    fixed: usize,
}

impl fmt::Debug for Obj<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Obj@{}+{}", self.start, self.fixed)
    }
}

impl<'a> Obj<'a> {
    /// An object with no fields present: every read gives the default.
    /// Null nested-object pointers read as this.
    pub fn empty(buf: &'a [u8]) -> Self {
        Obj {
            buf,
            start: 0,
            fixed: 0,
        }
    }

    /// Where the object starts and its fixed size, to rebuild it later with
    /// [`Obj::from_parts`].
    pub(crate) fn parts(&self) -> (usize, usize) {
        (self.start, self.fixed)
    }

    /// Rebuilds an object from [`Obj::parts`] over the same buffer. Reads
    /// stay bounds-checked whatever the parts are.
    pub(crate) fn from_parts(buf: &'a [u8], (start, fixed): (usize, usize)) -> Self {
        Obj { buf, start, fixed }
    }

    /// Opens the object at `start` of an already validated buffer.
    #[inline(always)]
    fn trusted(buf: &'a [u8], start: usize, layout: Layout) -> Self {
        let fixed = if layout.size_word {
            u32_at(buf, start).unwrap_or(0) as usize
        } else {
            layout.fixed
        };
        let fixed = fixed.min(buf.len().saturating_sub(start));
        Obj { buf, start, fixed }
    }

    /// Checks the object at `start` against `layout`.
    #[inline(always)]
    fn checked(
        buf: &'a [u8],
        start: usize,
        layout: Layout,
        cx: &mut Validator,
    ) -> Result<Self, DecodeError> {
        let fixed = if layout.size_word {
            let Some(w) = u32_at(buf, start) else {
                return Err(DecodeError::new(
                    DecodeErrorKind::OutOfBounds {
                        needed: SIZE_WORD as u64,
                        size: buf.len(),
                    },
                    start,
                ));
            };
            if (w as usize) < SIZE_WORD {
                return Err(DecodeError::new(DecodeErrorKind::BadObjectSize(w), start));
            }
            w as usize
        } else {
            layout.fixed
        };
        if start as u64 + fixed as u64 > buf.len() as u64 {
            return Err(DecodeError::new(
                DecodeErrorKind::OutOfBounds {
                    needed: fixed as u64,
                    size: buf.len(),
                },
                start,
            ));
        }
        cx.charge(fixed.max(8), start)?;
        Ok(Obj { buf, start, fixed })
    }

    /// Whether a slot of `width` bytes at `off` is inside this object.
    #[inline(always)]
    pub fn has(&self, off: usize, width: usize) -> bool {
        off + width <= self.fixed
    }

    /// Absolute position of the slot at `off`.
    #[inline(always)]
    pub fn slot(&self, off: usize) -> usize {
        self.start + off
    }

    /// The message bytes.
    #[inline(always)]
    pub fn buf(&self) -> &'a [u8] {
        self.buf
    }

    /// The scalar at `off`, or its default if the object is too short.
    #[inline(always)]
    pub fn read<T: Scalar>(&self, off: usize) -> T {
        if self.has(off, T::WIDTH) {
            T::read_le(self.buf.get(self.start + off..).unwrap_or(&[]))
        } else {
            T::default()
        }
    }

    #[inline(always)]
    fn bytes_range(&self, off: usize) -> Option<(usize, usize)> {
        if !self.has(off, 8) {
            return None;
        }
        bytes_slot(self.buf, self.start + off).ok().flatten()
    }

    #[inline(always)]
    fn bytes(&self, off: usize) -> &'a [u8] {
        match self.bytes_range(off) {
            Some((at, len)) => self.buf.get(at..at + len).unwrap_or(&[]),
            None => &[],
        }
    }

    #[inline(always)]
    fn child(&self, off: usize, layout: Layout) -> Obj<'a> {
        if !self.has(off, 4) {
            return Obj::empty(self.buf);
        }
        match object_slot(self.buf, self.start + off) {
            Ok(Some(t)) => Obj::trusted(self.buf, t, layout),
            _ => Obj::empty(self.buf),
        }
    }

    #[inline(always)]
    fn list(&self, off: usize, stride: usize) -> (usize, usize) {
        if !self.has(off, 8) {
            return (0, 0);
        }
        list_slot(self.buf, self.start + off, stride).unwrap_or((0, 0))
    }
}

/// Walks a buffer once, with limits on depth and total work.
#[derive(Debug)]
pub struct Validator {
    budget: usize,
    depth: u32,
}

impl Validator {
    fn new(size: usize) -> Self {
        // Like Cap'n Proto's traversal limit: aliased pointers may make a
        // walk revisit data, and decoding allocates per element, but both
        // stay within 16x the message size (plus 64 KiB for tiny messages).
        Validator {
            budget: size.saturating_mul(16).saturating_add(64 << 10),
            depth: 0,
        }
    }

    #[inline(always)]
    fn charge(&mut self, n: usize, at: usize) -> Result<(), DecodeError> {
        match self.budget.checked_sub(n) {
            Some(b) => {
                self.budget = b;
                Ok(())
            }
            None => Err(DecodeError::new(DecodeErrorKind::TraversalLimit, at)),
        }
    }

    #[inline(always)]
    fn enter(&mut self, at: usize) -> Result<(), DecodeError> {
        if self.depth >= MAX_DEPTH {
            return Err(DecodeError::new(DecodeErrorKind::TooDeep, at));
        }
        self.depth += 1;
        Ok(())
    }

    #[inline(always)]
    fn leave(&mut self) {
        self.depth -= 1;
    }
}

/// Labels an error with the field it came from (innermost field wins).
#[inline]
pub fn in_field(field: &'static str) -> impl FnOnce(DecodeError) -> DecodeError {
    move |e| e.at_field(field)
}

/// Decoding state: the source buffer, and which zero-copy field will own it.
///
/// Slicing `Bytes` costs an atomic increment now and a decrement when the
/// slice drops. The first `Bytes`/`Text` field decoded does not slice:
/// `Message::decode` later moves the input buffer itself into it (see
/// [`Adopt`]), so a message with one such field decodes with no refcount
/// traffic beyond the input's own.
#[derive(Debug)]
pub struct Src<'a> {
    bytes: &'a Bytes,
    seq: u64,
    owner: Option<(u64, usize, usize)>,
}

impl<'a> Src<'a> {
    fn new(bytes: &'a Bytes) -> Self {
        Src {
            bytes,
            seq: 0,
            owner: None,
        }
    }

    /// The bytes `at..at + len` of the source (`buf` is the source trimmed
    /// to the message size). Called exactly once per zero-copy value decoded.
    #[inline(always)]
    fn slice(&mut self, buf: &[u8], at: usize, len: usize) -> Bytes {
        self.seq += 1;
        if at + len > buf.len() || at + len > self.bytes.len() {
            return Bytes::new();
        }
        if self.owner.is_none() {
            self.owner = Some((self.seq, at, len));
            return Bytes::new();
        }
        self.bytes.slice(at..at + len)
    }

    /// Counts a zero-copy value that had no payload (null pointer).
    #[inline(always)]
    fn skip(&mut self) {
        self.seq += 1;
    }
}

/// Second decoding pass: walks the decoded value in the same order as the
/// first and places the input buffer in the field that deferred its slice.
#[derive(Debug)]
pub struct Adopt {
    seq: u64,
    target: u64,
    bytes: Option<Bytes>,
}

impl Adopt {
    /// Called exactly once per zero-copy value, in decoding order; returns
    /// the buffer to the one that deferred.
    #[inline(always)]
    fn offer(&mut self) -> Option<Bytes> {
        self.seq += 1;
        if self.seq == self.target {
            self.bytes.take()
        } else {
            None
        }
    }
}

/// Validates `buf` as an `M` and decodes it (`Message::decode`).
#[inline]
pub fn decode<M: Message>(buf: Bytes) -> Result<M, DecodeError> {
    let obj = validate_root::<M>(&buf)?;
    let mut src = Src::new(&buf);
    let mut value = M::decode_fields(&obj, &mut src);
    // `obj` and `src` borrow `buf` until here; now it can move.
    if let Some((target, at, len)) = src.owner {
        let mut bytes = buf;
        bytes.truncate(at + len);
        bytes::Buf::advance(&mut bytes, at);
        let mut adopt = Adopt {
            seq: 0,
            target,
            bytes: Some(bytes),
        };
        value.adopt_fields(&mut adopt);
    }
    Ok(value)
}

/// Decodes the struct from an [`Owned`](crate::Owned)'s parts (already
/// validated); every zero-copy field slices `buf`.
pub(crate) fn decode_trusted<M: Message>(buf: &Bytes, size: usize, root: (usize, usize)) -> M {
    let trimmed = buf.get(..size).unwrap_or(&[]);
    let obj = Obj::from_parts(trimmed, root);
    let mut src = Src::new(buf);
    // Mark the owner slot as taken so every field slices.
    src.owner = Some((0, 0, 0));
    M::decode_fields(&obj, &mut src)
}

/// Writes `msg` as an object and returns where it starts.
#[inline]
pub fn write_object<M: Message>(msg: &M, b: &mut Builder) -> ObjectRef {
    let layout = M::LAYOUT;
    let start = b.object(layout.fixed).finish();
    if layout.size_word {
        b.put(start.0, layout.fixed as u32);
    }
    msg.write_fields(b, start.0);
    start
}

/// Checks the header of `buf` and everything `M` can reach from the root.
#[inline]
pub fn validate_root<M: Message>(buf: &[u8]) -> Result<Obj<'_>, DecodeError> {
    let header = Header::parse(buf)?;
    let buf = &buf[..header.size as usize];
    let root = header.root as usize;
    if root < HEADER_LEN || root >= buf.len() {
        return Err(DecodeError::new(
            DecodeErrorKind::PointerOutOfBounds {
                target: Some(root as u64),
            },
            8,
        ));
    }
    let mut cx = Validator::new(buf.len());
    let obj = Obj::checked(buf, root, M::LAYOUT, &mut cx)?;
    M::validate_fields(&obj, &mut cx)?;
    Ok(obj)
}

/// A type that can be a field of a message.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be a field of a zap message",
    label = "unsupported field type",
    note = "supported: bool, u8..u64, i8..i64, f32, f64, [u8; N], bytes::Bytes, String, zap::Text, \
            Vec<T> of those or of messages, Option<T>, and #[derive(zap::Message)] types"
)]
pub trait Field: Sized {
    /// Slot width in the fixed section.
    const WIDTH: usize;
    /// Slot alignment within the fixed section (for derived layouts).
    const ALIGN: usize;
    /// Whether an all-zero pointer slot means "absent" (pointer kinds).
    const NULLABLE: bool = false;
    /// What the borrowed view returns for this field.
    type View<'a>;

    /// Phase 1: fill the slot in the fixed section.
    #[inline(always)]
    fn write_fixed(&self, _b: &mut Builder, _slot: usize) {}
    /// Phase 2: append `bytes`/`text` payloads, right after the fixed section.
    #[inline(always)]
    fn write_tail(&self, _b: &mut Builder, _slot: usize) {}
    /// Phase 3: write lists and nested objects.
    #[inline(always)]
    fn write_child(&self, _b: &mut Builder, _slot: usize) {}
    /// Bytes this value appends outside its slot (an upper bound).
    #[inline(always)]
    fn extra_len(&self) -> usize {
        0
    }

    /// Checks what the slot at `off` points to.
    #[inline(always)]
    fn validate(_obj: &Obj<'_>, _off: usize, _cx: &mut Validator) -> Result<(), DecodeError> {
        Ok(())
    }
    /// Whether values hold slices of the input (`Bytes`, `Text`, or types
    /// containing them).
    const SLICES: bool = false;
    /// Reads an owned value; `src` is the buffer `obj` reads from.
    fn decode(obj: &Obj<'_>, off: usize, src: &mut Src<'_>) -> Self;
    /// Second decoding pass (see [`Adopt`]); `true` once the buffer is placed.
    #[inline(always)]
    fn adopt(&mut self, _a: &mut Adopt) -> bool {
        false
    }
    /// Reads a borrowed value.
    fn view<'a>(obj: &Obj<'a>, off: usize) -> Self::View<'a>;
    /// For `NULLABLE` kinds: whether the slot's pointer is null.
    #[inline(always)]
    fn is_null(obj: &Obj<'_>, off: usize) -> bool {
        obj.read::<u32>(off) == 0
    }
}

macro_rules! scalar_field {
    ($($t:ty),*) => {$(
        impl Field for $t {
            const WIDTH: usize = <$t as Scalar>::WIDTH;
            const ALIGN: usize = <$t as Scalar>::WIDTH;
            type View<'a> = $t;
            #[inline(always)]
            fn write_fixed(&self, b: &mut Builder, slot: usize) {
                b.put(slot, *self);
            }
            #[inline(always)]
            fn decode(obj: &Obj<'_>, off: usize, _: &mut Src<'_>) -> Self {
                obj.read(off)
            }
            #[inline(always)]
            fn view<'a>(obj: &Obj<'a>, off: usize) -> $t {
                obj.read(off)
            }
        }
        impl ListElem for $t {
            const STRIDE: usize = <$t as Scalar>::WIDTH;
            type ElemView<'a> = $t;
            #[inline]
            fn write_list(items: &[Self], b: &mut Builder) -> ListRef {
                b.scalar_list(items)
            }
            #[inline(always)]
            fn elem_at(buf: &[u8], pos: usize) -> ($t, usize) {
                (<$t as Scalar>::read_le(buf.get(pos..).unwrap_or(&[])), pos + Self::STRIDE)
            }
            #[inline(always)]
            fn decode_elem(buf: &[u8], _: &mut Src<'_>, pos: usize) -> (Self, usize) {
                Self::elem_at(buf, pos)
            }
        }
    )*};
}
scalar_field!(bool, u8, u16, u32, u64, i8, i16, i32, i64, f32, f64);

impl<const N: usize> Field for [u8; N] {
    const WIDTH: usize = N;
    const ALIGN: usize = 1;
    type View<'a> = &'a [u8; N];
    #[inline(always)]
    fn write_fixed(&self, b: &mut Builder, slot: usize) {
        b.put_fixed(slot, self);
    }
    #[inline(always)]
    fn decode(obj: &Obj<'_>, off: usize, _: &mut Src<'_>) -> Self {
        *Self::view(obj, off)
    }
    #[inline(always)]
    fn view<'a>(obj: &Obj<'a>, off: usize) -> &'a [u8; N] {
        if obj.has(off, N)
            && let Some(a) = obj
                .buf
                .get(obj.start + off..)
                .and_then(|s| s.first_chunk::<N>())
        {
            return a;
        }
        const { &[0u8; N] }
    }
}

impl<const N: usize> ListElem for [u8; N] {
    const STRIDE: usize = N;
    type ElemView<'a> = &'a [u8; N];
    fn write_list(items: &[Self], b: &mut Builder) -> ListRef {
        b.fixed_list(items)
    }
    #[inline(always)]
    fn elem_at(buf: &[u8], pos: usize) -> (&[u8; N], usize) {
        let a = buf
            .get(pos..)
            .and_then(|s| s.first_chunk::<N>())
            .unwrap_or(const { &[0u8; N] });
        (a, pos + N)
    }
    #[inline(always)]
    fn decode_elem(buf: &[u8], _: &mut Src<'_>, pos: usize) -> (Self, usize) {
        let (a, next) = Self::elem_at(buf, pos);
        (*a, next)
    }
}

/// Shared by the three `bytes`-slot kinds.
#[inline(always)]
fn validate_bytes(
    obj: &Obj<'_>,
    off: usize,
    utf8: bool,
    cx: &mut Validator,
) -> Result<Option<(usize, usize)>, DecodeError> {
    if !obj.has(off, 8) {
        return Ok(None);
    }
    let r = bytes_slot(obj.buf, obj.start + off)?;
    if utf8 && let Some((at, len)) = r {
        // Checking (and, for `String`, copying) costs the payload's length:
        // charge it, or aliased text could be re-scanned without bound.
        cx.charge(len, obj.start + off)?;
        check_utf8(&obj.buf[at..at + len], obj.start + off)?;
    }
    Ok(r)
}

#[inline(always)]
fn check_utf8(b: &[u8], at: usize) -> Result<(), DecodeError> {
    match std::str::from_utf8(b) {
        Ok(_) => Ok(()),
        Err(_) => Err(DecodeError::new(DecodeErrorKind::InvalidUtf8, at)),
    }
}

#[inline(always)]
fn decode_slice(obj: &Obj<'_>, off: usize, src: &mut Src<'_>) -> Bytes {
    match obj.bytes_range(off) {
        Some((at, len)) => src.slice(obj.buf, at, len),
        None => {
            src.skip();
            Bytes::new()
        }
    }
}

/// The three `bytes`-slot kinds: `{u32 rel, u32 len}`, payload appended in
/// phase 2. They differ in UTF-8 checking, the view, and whether decoding
/// shares the input (`Bytes`, `Text`) or copies (`String`).
macro_rules! bytes_field {
    ($t:ty, utf8: $utf8:expr, view: $view:ty, |$vb:ident| $to_view:expr,
     slices: $slices:expr, |$obj:ident, $off:ident, $src:ident| $decode:expr,
     |$me:ident, $a:ident| $adopt:expr) => {
        impl Field for $t {
            const WIDTH: usize = 8;
            const ALIGN: usize = 4;
            const NULLABLE: bool = true;
            const SLICES: bool = $slices;
            type View<'a> = $view;
            #[inline(always)]
            fn write_tail(&self, b: &mut Builder, slot: usize) {
                b.put_bytes(slot, AsRef::<[u8]>::as_ref(self));
            }
            #[inline(always)]
            fn extra_len(&self) -> usize {
                AsRef::<[u8]>::as_ref(self).len()
            }
            #[inline(always)]
            fn validate(obj: &Obj<'_>, off: usize, cx: &mut Validator) -> Result<(), DecodeError> {
                validate_bytes(obj, off, $utf8, cx).map(drop)
            }
            #[inline(always)]
            fn decode($obj: &Obj<'_>, $off: usize, $src: &mut Src<'_>) -> Self {
                $decode
            }
            #[inline(always)]
            fn adopt(&mut self, a: &mut Adopt) -> bool {
                let ($me, $a) = (self, a);
                $adopt
            }
            #[inline(always)]
            fn view<'a>(obj: &Obj<'a>, off: usize) -> $view {
                let $vb = obj.bytes(off);
                $to_view
            }
        }
    };
}

bytes_field!(
    Bytes,
    utf8: false,
    view: &'a [u8],
    |b| b,
    slices: true,
    |obj, off, src| decode_slice(obj, off, src),
    |me, a| a.offer().map(|b| *me = b).is_some()
);
bytes_field!(
    String,
    utf8: true,
    view: &'a str,
    |b| std::str::from_utf8(b).unwrap_or(""),
    slices: false,
    |obj, off, src| {
        let _ = src;
        Self::view(obj, off).to_owned()
    },
    |me, a| {
        let _ = (me, a);
        false
    }
);
bytes_field!(
    Text,
    utf8: true,
    view: &'a str,
    |b| std::str::from_utf8(b).unwrap_or(""),
    slices: true,
    |obj, off, src| Text::validated(decode_slice(obj, off, src)),
    |me, a| a.offer().map(|b| *me = Text::validated(b)).is_some()
);

/// `Option<T>`: a null pointer for pointer kinds; otherwise the value's
/// slot followed by one presence byte (0 = `None`).
impl<T: Field> Field for Option<T> {
    const WIDTH: usize = if T::NULLABLE { T::WIDTH } else { T::WIDTH + 1 };
    const ALIGN: usize = T::ALIGN;
    type View<'a> = Option<T::View<'a>>;
    #[inline(always)]
    fn write_fixed(&self, b: &mut Builder, slot: usize) {
        if let Some(v) = self {
            v.write_fixed(b, slot);
            if !T::NULLABLE {
                b.put(slot + T::WIDTH, 1u8);
            }
        }
    }
    #[inline(always)]
    fn write_tail(&self, b: &mut Builder, slot: usize) {
        if let Some(v) = self {
            v.write_tail(b, slot);
        }
    }
    #[inline(always)]
    fn write_child(&self, b: &mut Builder, slot: usize) {
        if let Some(v) = self {
            v.write_child(b, slot);
        }
    }
    #[inline(always)]
    fn extra_len(&self) -> usize {
        self.as_ref().map_or(0, T::extra_len)
    }
    #[inline(always)]
    fn validate(obj: &Obj<'_>, off: usize, cx: &mut Validator) -> Result<(), DecodeError> {
        if present::<T>(obj, off) {
            T::validate(obj, off, cx)
        } else {
            Ok(())
        }
    }
    const SLICES: bool = T::SLICES;
    #[inline(always)]
    fn decode(obj: &Obj<'_>, off: usize, src: &mut Src<'_>) -> Self {
        present::<T>(obj, off).then(|| T::decode(obj, off, src))
    }
    #[inline(always)]
    fn adopt(&mut self, a: &mut Adopt) -> bool {
        self.as_mut().is_some_and(|v| v.adopt(a))
    }
    #[inline(always)]
    fn view<'a>(obj: &Obj<'a>, off: usize) -> Self::View<'a> {
        present::<T>(obj, off).then(|| T::view(obj, off))
    }
    #[inline(always)]
    fn is_null(obj: &Obj<'_>, off: usize) -> bool {
        !present::<T>(obj, off)
    }
}

/// `Box<T>`: the same slot as `T` (recursive messages box their field).
impl<T: Field> Field for Box<T> {
    const WIDTH: usize = T::WIDTH;
    const ALIGN: usize = T::ALIGN;
    const NULLABLE: bool = T::NULLABLE;
    const SLICES: bool = T::SLICES;
    type View<'a> = T::View<'a>;
    #[inline(always)]
    fn write_fixed(&self, b: &mut Builder, slot: usize) {
        (**self).write_fixed(b, slot)
    }
    #[inline(always)]
    fn write_tail(&self, b: &mut Builder, slot: usize) {
        (**self).write_tail(b, slot)
    }
    #[inline(always)]
    fn write_child(&self, b: &mut Builder, slot: usize) {
        (**self).write_child(b, slot)
    }
    #[inline(always)]
    fn extra_len(&self) -> usize {
        (**self).extra_len()
    }
    #[inline(always)]
    fn validate(obj: &Obj<'_>, off: usize, cx: &mut Validator) -> Result<(), DecodeError> {
        T::validate(obj, off, cx)
    }
    #[inline(always)]
    fn decode(obj: &Obj<'_>, off: usize, src: &mut Src<'_>) -> Self {
        Box::new(T::decode(obj, off, src))
    }
    #[inline(always)]
    fn adopt(&mut self, a: &mut Adopt) -> bool {
        (**self).adopt(a)
    }
    #[inline(always)]
    fn view<'a>(obj: &Obj<'a>, off: usize) -> Self::View<'a> {
        T::view(obj, off)
    }
    #[inline(always)]
    fn is_null(obj: &Obj<'_>, off: usize) -> bool {
        T::is_null(obj, off)
    }
}

#[inline(always)]
fn present<T: Field>(obj: &Obj<'_>, off: usize) -> bool {
    if T::NULLABLE {
        obj.has(off, T::WIDTH) && !T::is_null(obj, off)
    } else {
        obj.has(off, T::WIDTH + 1) && obj.read::<u8>(off + T::WIDTH) != 0
    }
}

// Nested messages: an `i32 rel` to the child object; a null pointer reads
// as a message with every field at its default. The derive implements
// `Field` and `ListElem` for each message through `__message_impls!`, which
// calls these (a blanket impl over `Message` would work too, but makes
// rustc explain every unsupported field type through `Message`).

/// `Field::write_child` of a message.
#[inline(always)]
pub fn msg_write_child<M: Message>(m: &M, b: &mut Builder, slot: usize) {
    let child = write_object(m, b);
    b.put_object(slot, child);
}

/// `Field::validate` of a message.
pub fn msg_validate<M: Message>(
    obj: &Obj<'_>,
    off: usize,
    cx: &mut Validator,
) -> Result<(), DecodeError> {
    if !obj.has(off, 4) {
        return Ok(());
    }
    match object_slot(obj.buf, obj.start + off)? {
        Some(target) => validate_child::<M>(obj.buf, target, cx),
        None => Ok(()),
    }
}

/// `Field::decode` of a message.
#[inline(always)]
pub fn msg_decode<M: Message>(obj: &Obj<'_>, off: usize, src: &mut Src<'_>) -> M {
    M::decode_fields(&obj.child(off, M::LAYOUT), src)
}

/// `Field::view` of a message.
#[inline(always)]
pub fn msg_view<'a, M: Message>(obj: &Obj<'a>, off: usize) -> M::View<'a> {
    M::view_fields(obj.child(off, M::LAYOUT))
}

/// Implements `Field` and `ListElem` for a derived message.
#[doc(hidden)]
#[macro_export]
macro_rules! __message_impls {
    ($name:ident, $view:ident) => {
        #[automatically_derived]
        impl $crate::codegen::Field for $name {
            const WIDTH: usize = 4;
            const ALIGN: usize = 4;
            const NULLABLE: bool = true;
            // Conservatively true: a per-type answer would be a cycle for
            // recursive types. `adopt` stops at the first hit anyway.
            const SLICES: bool = true;
            type View<'a> = $view<'a>;
            #[inline(always)]
            fn write_child(&self, b: &mut $crate::codegen::Builder, slot: usize) {
                $crate::codegen::msg_write_child(self, b, slot)
            }
            #[inline(always)]
            fn extra_len(&self) -> usize {
                $crate::Message::encoded_len_hint(self)
            }
            fn validate(
                obj: &$crate::codegen::Obj<'_>,
                off: usize,
                cx: &mut $crate::codegen::Validator,
            ) -> ::core::result::Result<(), $crate::DecodeError> {
                $crate::codegen::msg_validate::<Self>(obj, off, cx)
            }
            #[inline(always)]
            fn decode(
                obj: &$crate::codegen::Obj<'_>,
                off: usize,
                src: &mut $crate::codegen::Src<'_>,
            ) -> Self {
                $crate::codegen::msg_decode(obj, off, src)
            }
            #[inline(always)]
            fn adopt(&mut self, a: &mut $crate::codegen::Adopt) -> bool {
                $crate::Message::adopt_fields(self, a)
            }
            #[inline(always)]
            fn view<'a>(obj: &$crate::codegen::Obj<'a>, off: usize) -> $view<'a> {
                $crate::codegen::msg_view::<Self>(obj, off)
            }
        }

        #[automatically_derived]
        impl $crate::codegen::ListElem for $name {
            const STRIDE: usize = 4;
            const ELEM_SLICES: bool = true;
            type ElemView<'a> = $view<'a>;
            fn write_list(
                items: &[Self],
                b: &mut $crate::codegen::Builder,
            ) -> $crate::codegen::ListRef {
                $crate::codegen::msg_write_list(items, b)
            }
            fn list_extra_len(items: &[Self]) -> usize {
                $crate::codegen::msg_list_extra_len(items)
            }
            fn validate_elems(
                buf: &[u8],
                start: usize,
                count: usize,
                cx: &mut $crate::codegen::Validator,
            ) -> ::core::result::Result<(), $crate::DecodeError> {
                $crate::codegen::msg_validate_elems::<Self>(buf, start, count, cx)
            }
            #[inline(always)]
            fn elem_at<'a>(buf: &'a [u8], pos: usize) -> ($view<'a>, usize) {
                $crate::codegen::msg_elem_at::<Self>(buf, pos)
            }
            #[inline(always)]
            fn decode_elem(
                buf: &[u8],
                src: &mut $crate::codegen::Src<'_>,
                pos: usize,
            ) -> (Self, usize) {
                $crate::codegen::msg_decode_elem(buf, src, pos)
            }
            #[inline(always)]
            fn adopt_elem(&mut self, a: &mut $crate::codegen::Adopt) -> bool {
                $crate::Message::adopt_fields(self, a)
            }
        }
    };
}

fn validate_child<M: Message>(
    buf: &[u8],
    target: usize,
    cx: &mut Validator,
) -> Result<(), DecodeError> {
    cx.enter(target)?;
    let child = Obj::checked(buf, target, M::LAYOUT, cx)?;
    M::validate_fields(&child, cx)?;
    cx.leave();
    Ok(())
}

/// A type that can be an element of a `Vec` field.
///
/// Scalars and `[u8; N]` are packed lists; `Bytes`, `String` and `Text` are
/// variable-element lists (`[u32 len][bytes]` each, zapgen's `list<bytes>`);
/// messages are pointer lists (`i32 rel` each, relative to the element).
#[diagnostic::on_unimplemented(
    message = "`Vec<{Self}>` cannot be a field of a zap message",
    note = "list elements may be scalars, [u8; N], Bytes, String, zap::Text or messages"
)]
pub trait ListElem: Sized {
    /// Element size; for variable elements, the minimum (the length word).
    const STRIDE: usize;
    /// Whether elements vary in size (index access walks the list).
    const VARIABLE: bool = false;
    /// What the view yields per element.
    type ElemView<'a>;
    /// Writes the list body.
    fn write_list(items: &[Self], b: &mut Builder) -> ListRef;
    /// Bytes the list appends (an upper bound).
    #[inline(always)]
    fn list_extra_len(items: &[Self]) -> usize {
        items.len() * Self::STRIDE + 8
    }
    /// Checks every element, after the list's bounds were checked.
    #[inline(always)]
    fn validate_elems(
        _buf: &[u8],
        _start: usize,
        _count: usize,
        _cx: &mut Validator,
    ) -> Result<(), DecodeError> {
        Ok(())
    }
    /// The element at `pos` and the position of the next one.
    fn elem_at<'a>(buf: &'a [u8], pos: usize) -> (Self::ElemView<'a>, usize);
    /// Whether elements hold slices of the input.
    const ELEM_SLICES: bool = false;
    /// The owned element at `pos` and the position of the next one.
    fn decode_elem(buf: &[u8], src: &mut Src<'_>, pos: usize) -> (Self, usize);
    /// Second decoding pass for one element (see [`Adopt`]).
    #[inline(always)]
    fn adopt_elem(&mut self, _a: &mut Adopt) -> bool {
        false
    }
}

fn validate_var_elems(
    buf: &[u8],
    start: usize,
    count: usize,
    utf8: bool,
    cx: &mut Validator,
) -> Result<(), DecodeError> {
    let mut pos = start;
    for _ in 0..count {
        let (data, next) = var_element(buf, pos)?;
        if utf8 {
            cx.charge(data.len(), pos)?;
            check_utf8(data, pos)?;
        }
        cx.charge(4, pos)?;
        pos = next;
    }
    Ok(())
}

#[inline(always)]
fn var_elem_at(buf: &[u8], pos: usize) -> (&[u8], usize) {
    var_element(buf, pos).unwrap_or((&[], usize::MAX))
}

macro_rules! var_elem {
    ($t:ty, $utf8:expr, $slices:expr, $view:ty, |$d:ident| $to_view:expr,
     |$src:ident, $buf:ident, $at:ident, $len:ident| $decode:expr,
     |$me:ident, $a:ident| $adopt:expr) => {
        impl ListElem for $t {
            const STRIDE: usize = 4;
            const VARIABLE: bool = true;
            type ElemView<'a> = $view;
            fn write_list(items: &[Self], b: &mut Builder) -> ListRef {
                b.bytes_list(items.iter().map(|i| i.as_ref()))
            }
            fn list_extra_len(items: &[Self]) -> usize {
                items.iter().map(|i| 4 + i.len()).sum::<usize>() + 8
            }
            fn validate_elems(
                buf: &[u8],
                start: usize,
                count: usize,
                cx: &mut Validator,
            ) -> Result<(), DecodeError> {
                validate_var_elems(buf, start, count, $utf8, cx)
            }
            #[inline(always)]
            fn elem_at<'a>(buf: &'a [u8], pos: usize) -> ($view, usize) {
                let ($d, next) = var_elem_at(buf, pos);
                ($to_view, next)
            }
            const ELEM_SLICES: bool = $slices;
            #[inline(always)]
            fn decode_elem($buf: &[u8], $src: &mut Src<'_>, pos: usize) -> (Self, usize) {
                let (d, next) = var_elem_at($buf, pos);
                let $at = pos.saturating_add(4);
                let $len = d.len();
                ($decode, next)
            }
            #[inline(always)]
            fn adopt_elem(&mut self, a: &mut Adopt) -> bool {
                let ($me, $a) = (self, a);
                $adopt
            }
        }
    };
}
var_elem!(
    Bytes,
    false,
    true,
    &'a [u8],
    |d| d,
    |src, buf, at, len| src.slice(buf, at, len),
    |me, a| a.offer().map(|b| *me = b).is_some()
);
var_elem!(
    String,
    true,
    false,
    &'a str,
    |d| std::str::from_utf8(d).unwrap_or(""),
    |src, buf, at, len| {
        let _ = src;
        std::str::from_utf8(buf.get(at..at + len).unwrap_or(&[]))
            .unwrap_or("")
            .to_owned()
    },
    |me, a| {
        let _ = (me, a);
        false
    }
);
var_elem!(
    Text,
    true,
    true,
    &'a str,
    |d| std::str::from_utf8(d).unwrap_or(""),
    |src, buf, at, len| Text::validated(src.slice(buf, at, len)),
    |me, a| a.offer().map(|b| *me = Text::validated(b)).is_some()
);

/// `ListElem::write_list` of a message: a pointer list.
pub fn msg_write_list<M: Message>(items: &[M], b: &mut Builder) -> ListRef {
    let mut list = b.ptr_list(items.len());
    for (i, item) in items.iter().enumerate() {
        let obj = write_object(item, list.builder());
        list.set(i, obj);
    }
    list.finish()
}

/// `ListElem::list_extra_len` of a message.
pub fn msg_list_extra_len<M: Message>(items: &[M]) -> usize {
    items
        .iter()
        .map(|i| 4 + i.encoded_len_hint())
        .sum::<usize>()
        + 8
}

/// `ListElem::validate_elems` of a message.
pub fn msg_validate_elems<M: Message>(
    buf: &[u8],
    start: usize,
    count: usize,
    cx: &mut Validator,
) -> Result<(), DecodeError> {
    for i in 0..count {
        if let Some(target) = object_slot(buf, start + 4 * i)? {
            validate_child::<M>(buf, target, cx)?;
        }
    }
    Ok(())
}

#[inline(always)]
fn ptr_elem<'a>(buf: &'a [u8], pos: usize, layout: Layout) -> Obj<'a> {
    match object_slot(buf, pos) {
        Ok(Some(t)) => Obj::trusted(buf, t, layout),
        _ => Obj::empty(buf),
    }
}

/// `ListElem::elem_at` of a message.
#[inline(always)]
pub fn msg_elem_at<M: Message>(buf: &[u8], pos: usize) -> (M::View<'_>, usize) {
    (M::view_fields(ptr_elem(buf, pos, M::LAYOUT)), pos + 4)
}

/// `ListElem::decode_elem` of a message.
#[inline(always)]
pub fn msg_decode_elem<M: Message>(buf: &[u8], src: &mut Src<'_>, pos: usize) -> (M, usize) {
    (
        M::decode_fields(&ptr_elem(buf, pos, M::LAYOUT), src),
        pos + 4,
    )
}

/// `Vec<T>`: a list slot `{i32 rel, u32 count}`.
impl<T: ListElem> Field for Vec<T> {
    const WIDTH: usize = 8;
    const ALIGN: usize = 4;
    const NULLABLE: bool = true;
    type View<'a> = ListView<'a, T>;
    #[inline]
    fn write_child(&self, b: &mut Builder, slot: usize) {
        let list = if self.is_empty() {
            b.empty_list()
        } else {
            T::write_list(self, b)
        };
        b.put_list(slot, list);
    }
    #[inline]
    fn extra_len(&self) -> usize {
        T::list_extra_len(self)
    }
    fn validate(obj: &Obj<'_>, off: usize, cx: &mut Validator) -> Result<(), DecodeError> {
        if !obj.has(off, 8) {
            return Ok(());
        }
        let slot = obj.start + off;
        let (start, count) = list_slot(obj.buf, slot, T::STRIDE)?;
        // Charge what decoding will allocate per element, not only the wire
        // stride: a list of null pointers or empty elements is small on the
        // wire but not in memory (and a zero stride must still cost).
        let per_elem = T::STRIDE.max(std::mem::size_of::<T>()).max(1);
        cx.charge(count.saturating_mul(per_elem), slot)?;
        T::validate_elems(obj.buf, start, count, cx)
    }
    const SLICES: bool = T::ELEM_SLICES;
    #[inline]
    fn adopt(&mut self, a: &mut Adopt) -> bool {
        T::ELEM_SLICES && self.iter_mut().any(|e| e.adopt_elem(a))
    }
    fn decode(obj: &Obj<'_>, off: usize, src: &mut Src<'_>) -> Self {
        let (start, count) = obj.list(off, T::STRIDE);
        // `count * STRIDE` bytes were checked to be in the message, so this
        // allocation is bounded by the message size.
        let mut out = Vec::with_capacity(count);
        let mut pos = start;
        for _ in 0..count {
            let (v, next) = T::decode_elem(obj.buf, src, pos);
            out.push(v);
            pos = next;
        }
        out
    }
    #[inline(always)]
    fn view<'a>(obj: &Obj<'a>, off: usize) -> ListView<'a, T> {
        let (start, count) = obj.list(off, T::STRIDE);
        ListView {
            buf: obj.buf,
            start,
            count,
            _t: PhantomData,
        }
    }
}

/// A validated list inside a message, read in place.
pub struct ListView<'a, T> {
    buf: &'a [u8],
    start: usize,
    count: usize,
    _t: PhantomData<fn() -> T>,
}

impl<T> Clone for ListView<'_, T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for ListView<'_, T> {}

impl<'a, T: ListElem> ListView<'a, T> {
    /// Number of elements.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether the list is empty.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Element `i`. O(1), except for `bytes`/`text` elements, which are
    /// found by walking the list (O(i)); iterate instead.
    pub fn get(&self, i: usize) -> Option<T::ElemView<'a>> {
        if i >= self.count {
            return None;
        }
        if T::VARIABLE {
            self.iter().nth(i)
        } else {
            Some(T::elem_at(self.buf, self.start + i * T::STRIDE).0)
        }
    }

    /// The elements in order.
    pub fn iter(&self) -> ListIter<'a, T> {
        ListIter {
            buf: self.buf,
            pos: self.start,
            left: self.count,
            _t: PhantomData,
        }
    }
}

impl<'a, T: ListElem> IntoIterator for ListView<'a, T> {
    type Item = T::ElemView<'a>;
    type IntoIter = ListIter<'a, T>;
    fn into_iter(self) -> ListIter<'a, T> {
        self.iter()
    }
}

impl<'a, T: ListElem> fmt::Debug for ListView<'a, T>
where
    T::ElemView<'a>: fmt::Debug,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

/// Iterator over a [`ListView`].
pub struct ListIter<'a, T> {
    buf: &'a [u8],
    pos: usize,
    left: usize,
    _t: PhantomData<fn() -> T>,
}

impl<'a, T: ListElem> Iterator for ListIter<'a, T> {
    type Item = T::ElemView<'a>;
    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let (v, next) = T::elem_at(self.buf, self.pos);
        self.pos = next;
        Some(v)
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

impl<T: ListElem> ExactSizeIterator for ListIter<'_, T> {}

/// Writes a list of enum values as `i32`s.
pub fn enum_list<E: Copy>(items: &[E], b: &mut Builder, to_i32: fn(E) -> i32) -> ListRef {
    let start = b.reserve_aligned(items.len() * 4);
    for (i, v) in items.iter().enumerate() {
        b.put(start + 4 * i, to_i32(*v));
    }
    ListRef {
        start,
        count: items.len(),
    }
}

/// `Field` and `ListElem` for a generated enum, a `struct $name(pub i32)`
/// newtype: stored as its `i32`, so unknown values survive a round trip.
#[doc(hidden)]
#[macro_export]
macro_rules! __enum_impls {
    ($name:ident) => {
        #[automatically_derived]
        impl $crate::codegen::Field for $name {
            const WIDTH: usize = 4;
            const ALIGN: usize = 4;
            type View<'a> = $name;
            #[inline(always)]
            fn write_fixed(&self, b: &mut $crate::codegen::Builder, slot: usize) {
                $crate::codegen::Field::write_fixed(&self.0, b, slot)
            }
            #[inline(always)]
            fn decode(
                obj: &$crate::codegen::Obj<'_>,
                off: usize,
                _: &mut $crate::codegen::Src<'_>,
            ) -> Self {
                $name(obj.read::<i32>(off))
            }
            #[inline(always)]
            fn view<'a>(obj: &$crate::codegen::Obj<'a>, off: usize) -> $name {
                $name(obj.read::<i32>(off))
            }
        }

        #[automatically_derived]
        impl $crate::codegen::ListElem for $name {
            const STRIDE: usize = 4;
            type ElemView<'a> = $name;
            fn write_list(
                items: &[Self],
                b: &mut $crate::codegen::Builder,
            ) -> $crate::codegen::ListRef {
                $crate::codegen::enum_list(items, b, |e: $name| e.0)
            }
            #[inline(always)]
            fn elem_at(buf: &[u8], pos: usize) -> ($name, usize) {
                let (v, next) = <i32 as $crate::codegen::ListElem>::elem_at(buf, pos);
                ($name(v), next)
            }
            #[inline(always)]
            fn decode_elem(
                buf: &[u8],
                _: &mut $crate::codegen::Src<'_>,
                pos: usize,
            ) -> (Self, usize) {
                Self::elem_at(buf, pos)
            }
        }
    };
}
