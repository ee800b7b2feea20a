//! Call metadata: request metadata, response headers and trailers.
//!
//! As in gRPC: keys are lowercase ASCII (`a-z 0-9 - _ .`); keys ending in
//! `-bin` carry binary values, all others printable ASCII values
//! (`0x20..=0x7E`). Keys starting with `zap-` are reserved.

use std::fmt;

use bytes::Bytes;

/// Ordered key/value pairs; a key may repeat.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Metadata {
    entries: Vec<(Bytes, Bytes)>,
}

/// A key or value that breaks the rules above.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvalidMetadata {
    reason: &'static str,
}

impl fmt::Display for InvalidMetadata {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid metadata: {}", self.reason)
    }
}

impl std::error::Error for InvalidMetadata {}

/// Longest key accepted.
const MAX_KEY: usize = 256;

pub(crate) fn check_key(key: &[u8]) -> Result<(), InvalidMetadata> {
    let bad = |reason| Err(InvalidMetadata { reason });
    if key.is_empty() || key.len() > MAX_KEY {
        return bad("key length must be 1..=256");
    }
    if !key
        .iter()
        .all(|&c| matches!(c, b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.'))
    {
        return bad("key must be lowercase a-z, 0-9, '-', '_' or '.'");
    }
    Ok(())
}

pub(crate) fn is_binary_key(key: &[u8]) -> bool {
    key.ends_with(b"-bin")
}

pub(crate) fn check_ascii_value(v: &[u8]) -> Result<(), InvalidMetadata> {
    if v.iter().all(|&c| (0x20..=0x7E).contains(&c)) {
        Ok(())
    } else {
        Err(InvalidMetadata {
            reason: "ASCII values must be printable (0x20..=0x7E); use a `-bin` key",
        })
    }
}

impl Metadata {
    /// No entries.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds an ASCII entry. The key must not end in `-bin`.
    pub fn insert(
        &mut self,
        key: impl Into<Bytes>,
        value: impl Into<Bytes>,
    ) -> Result<&mut Self, InvalidMetadata> {
        let (key, value) = (key.into(), value.into());
        check_key(&key)?;
        if is_binary_key(&key) {
            return Err(InvalidMetadata {
                reason: "`-bin` keys take binary values: use insert_bin",
            });
        }
        check_ascii_value(&value)?;
        self.entries.push((key, value));
        Ok(self)
    }

    /// Adds a binary entry. The key must end in `-bin`.
    pub fn insert_bin(
        &mut self,
        key: impl Into<Bytes>,
        value: impl Into<Bytes>,
    ) -> Result<&mut Self, InvalidMetadata> {
        let key = key.into();
        check_key(&key)?;
        if !is_binary_key(&key) {
            return Err(InvalidMetadata {
                reason: "binary values need a key ending in `-bin`",
            });
        }
        self.entries.push((key, value.into()));
        Ok(self)
    }

    /// Adds an entry already checked by the wire decoder.
    pub(crate) fn push_checked(&mut self, key: Bytes, value: Bytes) {
        self.entries.push((key, value));
    }

    /// The first ASCII value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|(k, _)| k == key.as_bytes())
            .and_then(|(_, v)| std::str::from_utf8(v).ok())
            .filter(|_| !key.ends_with("-bin"))
    }

    /// The first binary value of `key` (which ends in `-bin`).
    pub fn get_bin(&self, key: &str) -> Option<&Bytes> {
        self.entries
            .iter()
            .find(|(k, _)| k == key.as_bytes())
            .map(|(_, v)| v)
            .filter(|_| key.ends_with("-bin"))
    }

    /// Every value of `key`, in order.
    pub fn get_all<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a Bytes> + 'a {
        self.entries
            .iter()
            .filter(move |(k, _)| k == key.as_bytes())
            .map(|(_, v)| v)
    }

    /// Removes every entry of `key`; returns how many there were.
    pub fn remove(&mut self, key: &str) -> usize {
        let before = self.entries.len();
        self.entries.retain(|(k, _)| k != key.as_bytes());
        before - self.entries.len()
    }

    /// Entries in order: key (ASCII) and raw value.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Bytes)> {
        self.entries
            .iter()
            .map(|(k, v)| (std::str::from_utf8(k).unwrap_or(""), v))
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Bytes of memory these entries take as stored: their bookkeeping
    /// (a fixed size per entry slot, whether used or not) plus their keys
    /// and values. Limits on metadata a peer can make a receiver hold count
    /// this, not the wire size, which is ten times smaller for empty
    /// entries.
    pub fn memory_size(&self) -> usize {
        self.entries.capacity() * std::mem::size_of::<(Bytes, Bytes)>()
            + self
                .entries
                .iter()
                .map(|(k, v)| k.len() + v.len())
                .sum::<usize>()
    }

    pub(crate) fn entries(&self) -> &[(Bytes, Bytes)] {
        &self.entries
    }
}

impl fmt::Debug for Metadata {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut m = f.debug_map();
        for (k, v) in self.iter() {
            if k.ends_with("-bin") {
                m.entry(&k, v);
            } else {
                m.entry(&k, &std::str::from_utf8(v).unwrap_or("?"));
            }
        }
        m.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules() {
        let mut m = Metadata::new();
        m.insert("x-user", "alice").unwrap();
        m.insert_bin("trace-bin", vec![0u8, 255]).unwrap();
        assert_eq!(m.get("x-user"), Some("alice"));
        assert_eq!(m.get_bin("trace-bin").unwrap().as_ref(), &[0, 255]);
        assert!(m.get("trace-bin").is_none());
        assert!(m.insert("Upper", "v").is_err());
        assert!(m.insert("k", "\n").is_err());
        assert!(m.insert("k-bin", "v").is_err());
        assert!(m.insert_bin("k", "v").is_err());
        assert!(m.insert("", "v").is_err());
        assert_eq!(m.remove("x-user"), 1);
        assert_eq!(m.len(), 1);
    }
}
