//! Untyped, strict readers. Every access is checked and returns a
//! `Result`; nothing here panics or reads out of bounds, whatever the bytes.
//!
//! The Go reference reads bad pointers as zero values. Call
//! `.unwrap_or_default()` for that behaviour; the error says what was wrong.

use super::{HEADER_LEN, Header, Scalar, resolve, u32_at};
use crate::error::{DecodeError, DecodeErrorKind};

/// A parsed message: a checked header over a buffer trimmed to its size.
#[derive(Clone, Copy, Debug)]
pub struct Message<'a> {
    buf: &'a [u8],
    header: Header,
}

impl<'a> Message<'a> {
    /// Checks the header (see [`Header::parse`]); bytes past `size` are
    /// ignored, as in the Go reference.
    pub fn parse(buf: &'a [u8]) -> Result<Self, DecodeError> {
        let header = Header::parse(buf)?;
        Ok(Self {
            buf: &buf[..header.size as usize],
            header,
        })
    }

    /// The header.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The message bytes (exactly `size` long).
    pub fn as_bytes(&self) -> &'a [u8] {
        self.buf
    }

    /// The root object. Fails if the root offset is inside the header or
    /// past the end.
    pub fn root(&self) -> Result<Object<'a>, DecodeError> {
        let root = self.header.root as usize;
        if root < HEADER_LEN || root >= self.buf.len() {
            return Err(DecodeError::new(
                DecodeErrorKind::PointerOutOfBounds {
                    target: Some(root as u64),
                },
                8,
            ));
        }
        Ok(Object {
            buf: self.buf,
            start: root,
        })
    }
}

/// An object inside a message. Fields are read at byte offsets.
#[derive(Clone, Copy, Debug)]
pub struct Object<'a> {
    buf: &'a [u8],
    start: usize,
}

/// A list inside a message. The element type is not on the wire: the
/// reader picks the accessor that matches its schema.
#[derive(Clone, Copy, Debug)]
pub struct List<'a> {
    buf: &'a [u8],
    start: usize,
    count: usize,
}

#[inline]
fn slice_at(buf: &[u8], pos: usize, len: usize) -> Result<&[u8], DecodeError> {
    pos.checked_add(len)
        .and_then(|end| buf.get(pos..end))
        .ok_or_else(|| out_of_bounds(buf, pos, len as u64))
}

#[cold]
fn out_of_bounds(buf: &[u8], pos: usize, needed: u64) -> DecodeError {
    DecodeError::new(
        DecodeErrorKind::OutOfBounds {
            needed,
            size: buf.len(),
        },
        pos,
    )
}

#[cold]
fn bad_pointer(slot: usize, target: Option<u64>) -> DecodeError {
    DecodeError::new(DecodeErrorKind::PointerOutOfBounds { target }, slot)
}

/// Checks the `bytes`/`text` slot at `slot`: `{u32 rel, u32 len}` with the
/// payload inside `[16, size)`. `None` for a null pointer.
#[inline]
pub(crate) fn bytes_slot(buf: &[u8], slot: usize) -> Result<Option<(usize, usize)>, DecodeError> {
    let s = slice_at(buf, slot, 8)?;
    let rel = u32::from_le_bytes([s[0], s[1], s[2], s[3]]);
    let len = u32::from_le_bytes([s[4], s[5], s[6], s[7]]) as usize;
    if rel == 0 {
        return Ok(None);
    }
    // Unsigned rel: payloads always follow their slot.
    let target = slot as u64 + rel as u64;
    if target < HEADER_LEN as u64 || target > buf.len() as u64 {
        return Err(bad_pointer(slot, Some(target)));
    }
    if target + len as u64 > buf.len() as u64 {
        return Err(out_of_bounds(buf, slot, len as u64));
    }
    Ok(Some((target as usize, len)))
}

/// Checks the nested-object slot at `slot`: `{i32 rel}` with the target in
/// `[16, size)`. `None` for a null pointer.
#[inline]
pub(crate) fn object_slot(buf: &[u8], slot: usize) -> Result<Option<usize>, DecodeError> {
    let s = slice_at(buf, slot, 4)?;
    let rel = i32::from_le_bytes([s[0], s[1], s[2], s[3]]);
    if rel == 0 {
        return Ok(None);
    }
    match resolve(slot, rel as i64) {
        Some(t) if t >= HEADER_LEN as u64 && t < buf.len() as u64 => Ok(Some(t as usize)),
        t => Err(bad_pointer(slot, t)),
    }
}

/// Checks the list slot at `slot`: `{i32 rel, u32 count}` whose body of
/// `count * stride` bytes lies inside `[16, size]`. For variable-element
/// lists pass the minimum element size as `stride`. A null pointer is an
/// empty list and must have count 0.
#[inline]
pub(crate) fn list_slot(
    buf: &[u8],
    slot: usize,
    stride: usize,
) -> Result<(usize, usize), DecodeError> {
    let s = slice_at(buf, slot, 8)?;
    let rel = i32::from_le_bytes([s[0], s[1], s[2], s[3]]);
    let count = u32::from_le_bytes([s[4], s[5], s[6], s[7]]);
    if rel == 0 {
        if count != 0 {
            return Err(DecodeError::new(
                DecodeErrorKind::NullListWithCount(count),
                slot,
            ));
        }
        return Ok((0, 0));
    }
    let target = match resolve(slot, rel as i64) {
        Some(t) if t >= HEADER_LEN as u64 && t <= buf.len() as u64 => t,
        t => return Err(bad_pointer(slot, t)),
    };
    let body = (count as u64).checked_mul(stride as u64);
    match body.and_then(|b| b.checked_add(target)) {
        Some(end) if end <= buf.len() as u64 => {}
        _ => {
            return Err(out_of_bounds(
                buf,
                target as usize,
                body.unwrap_or(u64::MAX),
            ));
        }
    }
    Ok((target as usize, count as usize))
}

/// Walks one element of a variable-element list at `pos`: `[u32 len][len
/// bytes]`. Returns the element and the position after it.
#[inline]
pub(crate) fn var_element(buf: &[u8], pos: usize) -> Result<(&[u8], usize), DecodeError> {
    let len = u32_at(buf, pos).ok_or_else(|| out_of_bounds(buf, pos, 4))? as usize;
    let data = slice_at(buf, pos + 4, len)?;
    Ok((data, pos + 4 + len))
}

impl<'a> Object<'a> {
    /// Absolute offset of the object in the message.
    pub fn offset(&self) -> usize {
        self.start
    }

    /// Reads a scalar (`bool`, integer, float) at `off`.
    pub fn get<T: Scalar>(&self, off: usize) -> Result<T, DecodeError> {
        let pos = self.start.saturating_add(off);
        slice_at(self.buf, pos, T::WIDTH).map(T::read_le)
    }

    /// Reads an inline `bytes_fixed[N]` at `off`.
    pub fn fixed<const N: usize>(&self, off: usize) -> Result<&'a [u8; N], DecodeError> {
        let pos = self.start.saturating_add(off);
        slice_at(self.buf, pos, N).map(|s| s.first_chunk::<N>().unwrap_or(&[0; N]))
    }

    /// Reads a `bytes` field at `off`; a null pointer reads as empty.
    pub fn bytes(&self, off: usize) -> Result<&'a [u8], DecodeError> {
        let slot = self.start.saturating_add(off);
        Ok(match bytes_slot(self.buf, slot)? {
            Some((at, len)) => &self.buf[at..at + len],
            None => &[],
        })
    }

    /// Reads a `text` field at `off`; must be valid UTF-8.
    pub fn text(&self, off: usize) -> Result<&'a str, DecodeError> {
        let b = self.bytes(off)?;
        std::str::from_utf8(b).map_err(|_| {
            DecodeError::new(DecodeErrorKind::InvalidUtf8, self.start.saturating_add(off))
        })
    }

    /// Follows the nested-object pointer at `off`; `None` when null.
    pub fn object(&self, off: usize) -> Result<Option<Object<'a>>, DecodeError> {
        let slot = self.start.saturating_add(off);
        Ok(object_slot(self.buf, slot)?.map(|start| Object {
            buf: self.buf,
            start,
        }))
    }

    /// Follows the list pointer at `off`, checking that `count` elements of
    /// at least `min_stride` bytes fit (use 1 when unsure; element
    /// accessors check again).
    pub fn list(&self, off: usize, min_stride: usize) -> Result<List<'a>, DecodeError> {
        let slot = self.start.saturating_add(off);
        let (start, count) = list_slot(self.buf, slot, min_stride)?;
        Ok(List {
            buf: self.buf,
            start,
            count,
        })
    }
}

impl<'a> List<'a> {
    /// Number of elements (for byte lists, bytes).
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether the list has no elements.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    fn index(&self, i: usize) -> Result<(), DecodeError> {
        if i < self.count {
            Ok(())
        } else {
            Err(DecodeError::new(
                DecodeErrorKind::IndexOutOfRange {
                    index: i,
                    len: self.count,
                },
                self.start,
            ))
        }
    }

    /// Absolute position of element `i` of `stride` bytes.
    fn elem(&self, i: usize, stride: usize) -> Result<usize, DecodeError> {
        self.index(i)?;
        i.checked_mul(stride)
            .and_then(|o| o.checked_add(self.start))
            .ok_or_else(|| out_of_bounds(self.buf, self.start, u64::MAX))
    }

    /// Element `i` of a packed scalar list.
    pub fn get<T: Scalar>(&self, i: usize) -> Result<T, DecodeError> {
        let pos = self.elem(i, T::WIDTH)?;
        slice_at(self.buf, pos, T::WIDTH).map(T::read_le)
    }

    /// Element `i` of a list of `bytes_fixed[N]`.
    pub fn fixed<const N: usize>(&self, i: usize) -> Result<&'a [u8; N], DecodeError> {
        let pos = self.elem(i, N)?;
        slice_at(self.buf, pos, N).map(|s| s.first_chunk::<N>().unwrap_or(&[0; N]))
    }

    /// The whole body of a byte list (`list<u8>`).
    pub fn as_bytes(&self) -> Result<&'a [u8], DecodeError> {
        slice_at(self.buf, self.start, self.count)
    }

    /// Element `i` of a list of inline structs of `elem_size` bytes.
    pub fn object(&self, i: usize, elem_size: usize) -> Result<Object<'a>, DecodeError> {
        let start = self.elem(i, elem_size)?;
        slice_at(self.buf, start, elem_size)?;
        Ok(Object {
            buf: self.buf,
            start,
        })
    }

    /// Element `i` of a pointer list; `None` when that pointer is null.
    pub fn object_ptr(&self, i: usize) -> Result<Option<Object<'a>>, DecodeError> {
        let slot = self.elem(i, 4)?;
        Ok(object_slot(self.buf, slot)?.map(|start| Object {
            buf: self.buf,
            start,
        }))
    }

    /// The elements of a variable-element list (`list<bytes>`/`list<text>`),
    /// in order. Stops after the first error.
    pub fn bytes_iter(&self) -> impl Iterator<Item = Result<&'a [u8], DecodeError>> + 'a {
        let buf = self.buf;
        let mut pos = self.start;
        let mut left = self.count;
        std::iter::from_fn(move || {
            if left == 0 {
                return None;
            }
            match var_element(buf, pos) {
                Ok((data, next)) => {
                    pos = next;
                    left -= 1;
                    Some(Ok(data))
                }
                Err(e) => {
                    left = 0;
                    Some(Err(e))
                }
            }
        })
    }
}
