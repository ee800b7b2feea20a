//! Writing messages. One growable buffer, reused across messages.

use super::{ALIGN, HEADER_LEN, Header, Scalar, Version};
use crate::error::EncodeError;

/// The largest message a [`Builder`] writes: `i32::MAX` bytes, so that
/// every signed pointer fits.
pub const MAX_MESSAGE: usize = i32::MAX as usize;

/// Writes ZAP messages into one reusable buffer.
///
/// Objects are written whole: [`Builder::object`] reserves the fixed
/// section and returns an [`ObjectWriter`] that sets slots. `bytes`/`text`
/// payloads are appended where the buffer ends (right after the fixed
/// section when they are set before any child is written, which is how the
/// Go reference lays them out). Children (objects, lists) may be written
/// before or after the object that points at them: pointers are signed.
///
/// After [`Builder::finish`], [`Builder::reset`] starts the next message in
/// the same allocation: a warm builder does not allocate.
///
/// ```
/// use zap::wire::{Builder, Message};
///
/// let mut b = Builder::new();
/// let mut root = b.object(24);
/// root.set(0, 0xDEAD_BEEFu32);
/// root.set_text(8, "zap");
/// root.set_bytes(16, &[1, 2, 3, 4]);
/// let root = root.finish();
/// let bytes = b.finish(root).unwrap();
/// assert_eq!(bytes.len(), 47);
///
/// let msg = Message::parse(bytes).unwrap();
/// assert_eq!(msg.root().unwrap().text(8).unwrap(), "zap");
/// ```
#[derive(Clone, Debug)]
pub struct Builder {
    buf: Vec<u8>,
    version: Version,
    flags: u16,
}

/// Where a finished object starts (absolute offset in the message).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ObjectRef(pub(crate) usize);

/// Where a finished list starts and how many elements it has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListRef {
    pub(crate) start: usize,
    pub(crate) count: usize,
}

impl ObjectRef {
    /// Absolute offset of the object.
    pub fn offset(self) -> usize {
        self.0
    }
}

impl ListRef {
    /// Absolute offset of the first element.
    pub fn offset(self) -> usize {
        self.start
    }
    /// Number of elements.
    pub fn count(self) -> usize {
        self.count
    }
}

impl Default for Builder {
    fn default() -> Self {
        Self::new()
    }
}

impl Builder {
    /// An empty builder writing version 1 headers.
    pub fn new() -> Self {
        Self::with_capacity(256)
    }

    /// An empty builder whose buffer holds `cap` bytes before it grows.
    pub fn with_capacity(cap: usize) -> Self {
        let mut buf = Vec::with_capacity(cap.max(HEADER_LEN));
        buf.resize(HEADER_LEN, 0);
        Self {
            buf,
            version: Version::V1,
            flags: 0,
        }
    }

    /// Sets the header version of the messages written from now on.
    pub fn set_version(&mut self, version: Version) -> &mut Self {
        self.version = version;
        self
    }

    /// Sets the header flags of the messages written from now on.
    pub fn set_flags(&mut self, flags: u16) -> &mut Self {
        self.flags = flags;
        self
    }

    /// Forgets the message being written, keeping the allocation.
    #[inline]
    pub fn reset(&mut self) {
        self.buf.truncate(HEADER_LEN);
    }

    /// Bytes written so far, header included.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// Whether nothing but the header space has been written.
    pub fn is_empty(&self) -> bool {
        self.buf.len() == HEADER_LEN
    }

    /// Makes room for `additional` more bytes.
    pub fn reserve(&mut self, additional: usize) {
        self.buf.reserve(additional);
    }

    /// Writes the header for `root` and returns the whole message.
    ///
    /// Fails only when the message is larger than [`MAX_MESSAGE`]: object
    /// and list pointers are signed 32-bit, and since every offset is below
    /// the size, one check here covers them all.
    pub fn finish(&mut self, root: ObjectRef) -> Result<&[u8], EncodeError> {
        let size = self.buf.len();
        if size > MAX_MESSAGE {
            return Err(EncodeError::TooLarge { size });
        }
        let h = Header {
            version: self.version,
            flags: self.flags,
            root: root.0 as u32,
            size: size as u32,
        };
        self.buf[..HEADER_LEN].copy_from_slice(&h.to_bytes());
        Ok(&self.buf)
    }

    /// The finished message as an owned buffer.
    pub fn into_vec(mut self, root: ObjectRef) -> Result<Vec<u8>, EncodeError> {
        self.finish(root)?;
        Ok(self.buf)
    }

    #[inline(always)]
    fn align(&mut self) {
        let len = self.buf.len();
        let padded = len.next_multiple_of(ALIGN);
        self.buf.resize(padded, 0);
    }

    /// Reserves `len` zero bytes at the next 8-aligned offset.
    #[inline(always)]
    pub(crate) fn reserve_aligned(&mut self, len: usize) -> usize {
        self.align();
        let start = self.buf.len();
        self.buf.resize(start + len, 0);
        start
    }

    /// Starts an object whose fixed section is `fixed_size` bytes (zeroed).
    #[inline]
    pub fn object(&mut self, fixed_size: usize) -> ObjectWriter<'_> {
        let start = self.reserve_aligned(fixed_size);
        ObjectWriter {
            b: self,
            start,
            size: fixed_size,
        }
    }

    /// Writes a packed list of scalars.
    pub fn scalar_list<T: Scalar>(&mut self, items: &[T]) -> ListRef {
        let start = self.reserve_aligned(items.len() * T::WIDTH);
        for (chunk, v) in self.buf[start..].chunks_exact_mut(T::WIDTH).zip(items) {
            v.write_le(chunk);
        }
        ListRef {
            start,
            count: items.len(),
        }
    }

    /// Writes a list of raw bytes (`list<u8>`; the count is the byte count).
    pub fn byte_list(&mut self, bytes: &[u8]) -> ListRef {
        self.align();
        let start = self.buf.len();
        self.buf.extend_from_slice(bytes);
        ListRef {
            start,
            count: bytes.len(),
        }
    }

    /// Writes a list of fixed-width elements of `N` bytes each (hashes, ids).
    pub fn fixed_list<const N: usize>(&mut self, items: &[[u8; N]]) -> ListRef {
        self.align();
        let start = self.buf.len();
        self.buf.extend_from_slice(items.as_flattened());
        ListRef {
            start,
            count: items.len(),
        }
    }

    /// Writes a variable-element list (zapgen's `list<bytes>`/`list<text>`):
    /// each element is `[u32 len][len bytes]`, unaligned, back to back.
    pub fn bytes_list<'i, I>(&mut self, items: I) -> ListRef
    where
        I: IntoIterator<Item = &'i [u8]>,
    {
        self.align();
        let start = self.buf.len();
        let mut count = 0;
        for item in items {
            self.buf
                .extend_from_slice(&(item.len() as u32).to_le_bytes());
            self.buf.extend_from_slice(item);
            count += 1;
        }
        ListRef { start, count }
    }

    /// Starts a list of `count` inline structs of `elem_size` bytes each.
    pub fn inline_list(&mut self, elem_size: usize, count: usize) -> InlineListWriter<'_> {
        let start = self.reserve_aligned(elem_size * count);
        InlineListWriter {
            b: self,
            start,
            elem_size,
            count,
        }
    }

    /// Starts a list of `count` object pointers (`i32 rel` each, relative to
    /// the element's own position). Elements start null.
    pub fn ptr_list(&mut self, count: usize) -> PtrListWriter<'_> {
        let start = self.reserve_aligned(4 * count);
        PtrListWriter {
            b: self,
            start,
            count,
        }
    }

    // Slot writers on absolute positions, shared by the writers below and
    // by generated code (through `zap::codegen`).

    #[inline(always)]
    pub(crate) fn put<T: Scalar>(&mut self, pos: usize, v: T) {
        v.write_le(&mut self.buf[pos..pos + T::WIDTH]);
    }

    #[inline(always)]
    pub(crate) fn put_fixed(&mut self, pos: usize, v: &[u8]) {
        self.buf[pos..pos + v.len()].copy_from_slice(v);
    }

    /// Appends `data` where the buffer ends and points the `bytes` slot at
    /// `slot` to it. The pointer is always non-null, also for empty data.
    #[inline(always)]
    pub(crate) fn put_bytes(&mut self, slot: usize, data: &[u8]) {
        let at = self.buf.len();
        self.buf.extend_from_slice(data);
        self.put(slot, (at - slot) as u32);
        self.put(slot + 4, data.len() as u32);
    }

    #[inline(always)]
    pub(crate) fn put_object(&mut self, slot: usize, target: ObjectRef) {
        self.put(slot, (target.0 as i64 - slot as i64) as i32);
    }

    #[inline(always)]
    pub(crate) fn put_list(&mut self, slot: usize, list: ListRef) {
        self.put(slot, (list.start as i64 - slot as i64) as i32);
        self.put(slot + 4, list.count as u32);
    }

    /// An empty list placed at the (aligned) end: non-null, zero elements.
    #[inline(always)]
    pub(crate) fn empty_list(&mut self) -> ListRef {
        self.align();
        ListRef {
            start: self.buf.len(),
            count: 0,
        }
    }
}

/// Sets the slots of one object. Offsets are relative to the object start.
///
/// # Panics
/// A slot that does not fit inside the fixed section panics: offsets come
/// from the program's schema, never from the network.
#[derive(Debug)]
pub struct ObjectWriter<'b> {
    b: &'b mut Builder,
    start: usize,
    size: usize,
}

impl ObjectWriter<'_> {
    #[inline(always)]
    fn slot(&self, off: usize, width: usize) -> usize {
        assert!(
            off + width <= self.size,
            "zap: slot {off}+{width} outside a {}-byte object",
            self.size
        );
        self.start + off
    }

    /// Sets a scalar slot (`bool`, integers, floats).
    #[inline]
    pub fn set<T: Scalar>(&mut self, off: usize, v: T) -> &mut Self {
        let pos = self.slot(off, T::WIDTH);
        self.b.put(pos, v);
        self
    }

    /// Sets an inline fixed-size byte array (`bytes_fixed[N]`).
    #[inline]
    pub fn set_fixed(&mut self, off: usize, v: &[u8]) -> &mut Self {
        let pos = self.slot(off, v.len());
        self.b.put_fixed(pos, v);
        self
    }

    /// Sets a `bytes` slot, appending the payload to the message.
    #[inline]
    pub fn set_bytes(&mut self, off: usize, v: &[u8]) -> &mut Self {
        let pos = self.slot(off, 8);
        self.b.put_bytes(pos, v);
        self
    }

    /// Sets a `text` slot, appending the UTF-8 payload to the message.
    #[inline]
    pub fn set_text(&mut self, off: usize, v: &str) -> &mut Self {
        self.set_bytes(off, v.as_bytes())
    }

    /// Points a nested-object slot at `child`.
    #[inline]
    pub fn set_object(&mut self, off: usize, child: ObjectRef) -> &mut Self {
        let pos = self.slot(off, 4);
        self.b.put_object(pos, child);
        self
    }

    /// Points a list slot at `list`.
    #[inline]
    pub fn set_list(&mut self, off: usize, list: ListRef) -> &mut Self {
        let pos = self.slot(off, 8);
        self.b.put_list(pos, list);
        self
    }

    /// The builder, to write children while this object is open.
    pub fn builder(&mut self) -> &mut Builder {
        self.b
    }

    /// Where this object starts.
    pub fn position(&self) -> ObjectRef {
        ObjectRef(self.start)
    }

    /// Ends the object.
    pub fn finish(self) -> ObjectRef {
        ObjectRef(self.start)
    }
}

/// Writes the elements of a list of inline structs.
#[derive(Debug)]
pub struct InlineListWriter<'b> {
    b: &'b mut Builder,
    start: usize,
    elem_size: usize,
    count: usize,
}

impl InlineListWriter<'_> {
    /// A writer for element `i`.
    ///
    /// # Panics
    /// If `i` is not below the list's count.
    pub fn element(&mut self, i: usize) -> ObjectWriter<'_> {
        assert!(i < self.count, "zap: element {i} of {}", self.count);
        ObjectWriter {
            start: self.start + i * self.elem_size,
            size: self.elem_size,
            b: self.b,
        }
    }

    /// Ends the list.
    pub fn finish(self) -> ListRef {
        ListRef {
            start: self.start,
            count: self.count,
        }
    }
}

/// Points the elements of a pointer list at objects.
#[derive(Debug)]
pub struct PtrListWriter<'b> {
    b: &'b mut Builder,
    start: usize,
    count: usize,
}

impl PtrListWriter<'_> {
    /// Points element `i` at `obj`.
    ///
    /// # Panics
    /// If `i` is not below the list's count.
    pub fn set(&mut self, i: usize, obj: ObjectRef) -> &mut Self {
        assert!(i < self.count, "zap: element {i} of {}", self.count);
        self.b.put_object(self.start + 4 * i, obj);
        self
    }

    /// The builder, to write the elements' objects while the list is open.
    pub fn builder(&mut self) -> &mut Builder {
        self.b
    }

    /// Ends the list.
    pub fn finish(self) -> ListRef {
        ListRef {
            start: self.start,
            count: self.count,
        }
    }
}
