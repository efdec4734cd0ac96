//! The writes of one state change before they become one sled batch, and their journal form.

use sled::{Batch, IVec};

use crate::error::StoreError;

use super::codec;
use super::keys::{part_u32, take};

#[derive(Default)]
pub(super) struct Ops {
    pub(super) writes: Vec<(IVec, Option<IVec>)>,
}

impl Ops {
    pub(super) fn insert(&mut self, key: impl Into<IVec>, value: impl AsRef<[u8]>) {
        self.writes
            .push((key.into(), Some(IVec::from(value.as_ref()))));
    }

    pub(super) fn remove(&mut self, key: impl Into<IVec>) {
        self.writes.push((key.into(), None));
    }

    pub(super) fn is_empty(&self) -> bool {
        self.writes.is_empty()
    }

    pub(super) fn append(&mut self, other: Ops) {
        self.writes.extend(other.writes);
    }

    /// Drops the writes to keys under `tag` that a later write to the same key replaces.
    pub(super) fn keep_last_of(&mut self, tag: u8) {
        let mut seen = std::collections::HashSet::new();
        let mut keep: Vec<bool> = self
            .writes
            .iter()
            .rev()
            .map(|(k, _)| k.first() != Some(&tag) || seen.insert(k.clone()))
            .collect();
        keep.reverse();
        let mut keep = keep.into_iter();
        self.writes.retain(|_| keep.next().unwrap_or(true));
    }

    /// The writes as one journal record: the format byte, the number of writes (big-endian
    /// u32), then per write a u32 key length, the key, and for an insert `1`, a u32 value
    /// length and the value (`0` for a remove).
    pub(super) fn encode(&self) -> Vec<u8> {
        let size: usize = self
            .writes
            .iter()
            .map(|(k, v)| 9 + k.len() + v.as_ref().map_or(0, |v| v.len()))
            .sum();
        let mut out = Vec::with_capacity(5 + size);
        out.push(codec::FORMAT);
        out.extend_from_slice(&(self.writes.len() as u32).to_be_bytes());
        for (k, v) in &self.writes {
            out.extend_from_slice(&(k.len() as u32).to_be_bytes());
            out.extend_from_slice(k);
            match v {
                Some(v) => {
                    out.push(1);
                    out.extend_from_slice(&(v.len() as u32).to_be_bytes());
                    out.extend_from_slice(v);
                }
                None => out.push(0),
            }
        }
        out
    }

    /// Reads a journal record written by [`Ops::encode`].
    pub(super) fn decode(key: &[u8], bytes: &[u8]) -> Result<Ops, StoreError> {
        let corrupt = |reason: &str| StoreError::Corrupt {
            key: codec::hex(key),
            reason: reason.into(),
        };
        let mut rest = match bytes.split_first() {
            Some((&codec::FORMAT, rest)) => rest,
            Some(_) => return Err(corrupt("unknown journal version")),
            None => return Err(corrupt("empty journal")),
        };
        let cut = || corrupt("journal cut short");
        let count = take(&mut rest, 4).map(part_u32).ok_or_else(cut)?;
        let mut ops = Ops::default();
        for _ in 0..count {
            let len = take(&mut rest, 4).map(part_u32).ok_or_else(cut)?;
            let k = take(&mut rest, len).ok_or_else(cut)?.to_vec();
            match take(&mut rest, 1).ok_or_else(cut)? {
                [1] => {
                    let len = take(&mut rest, 4).map(part_u32).ok_or_else(cut)?;
                    ops.insert(k, take(&mut rest, len).ok_or_else(cut)?);
                }
                [0] => ops.remove(k),
                _ => return Err(corrupt("unknown journal write")),
            }
        }
        if !rest.is_empty() {
            return Err(corrupt("journal longer than its writes"));
        }
        Ok(ops)
    }

    pub(super) fn into_batch(self, batch: &mut Batch) {
        for (key, value) in self.writes {
            match value {
                Some(value) => batch.insert(key, value),
                None => batch.remove(key),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn later_write_to_a_key_wins_within_one_batch() {
        // `settle` removes a due entry and `requeue` may insert the very same key again.
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        let mut ops = Ops::default();
        ops.insert(b"k".as_slice(), b"old");
        ops.remove(b"k".as_slice());
        ops.insert(b"k".as_slice(), b"new");
        ops.insert(b"gone".as_slice(), b"x");
        ops.remove(b"gone".as_slice());
        let mut batch = Batch::default();
        ops.into_batch(&mut batch);
        db.apply_batch(batch).unwrap();
        assert_eq!(db.get("k").unwrap().as_deref(), Some(&b"new"[..]));
        assert_eq!(db.get("gone").unwrap(), None);
    }

    #[test]
    fn only_the_last_write_to_a_key_of_the_tag_is_kept() {
        let mut ops = Ops::default();
        ops.insert(b"E1".as_slice(), b"1");
        ops.insert(b"q1".as_slice(), b"a");
        ops.insert(b"E2".as_slice(), b"1");
        ops.insert(b"E1".as_slice(), b"2");
        ops.insert(b"q1".as_slice(), b"b");
        ops.keep_last_of(b'E');
        let kept: Vec<(&[u8], &[u8])> = ops
            .writes
            .iter()
            .map(|(k, v)| (&k[..], v.as_deref().unwrap_or_default()))
            .collect();
        let expected: [(&[u8], &[u8]); 4] =
            [(b"q1", b"a"), (b"E2", b"1"), (b"E1", b"2"), (b"q1", b"b")];
        assert_eq!(kept, expected);
    }

    #[test]
    fn journal_records_round_trip_and_a_cut_one_is_corrupt() {
        let mut ops = Ops::default();
        ops.insert(b"k1".as_slice(), b"v1");
        ops.remove(b"gone".as_slice());
        ops.insert(b"k2".as_slice(), b"");
        let bytes = ops.encode();
        let back = Ops::decode(b"j", &bytes).unwrap();
        assert_eq!(back.writes, ops.writes);
        for cut in 0..bytes.len() {
            assert!(Ops::decode(b"j", &bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(Ops::decode(b"j", &longer).is_err());
        let mut newer = bytes;
        newer[0] = codec::FORMAT + 1;
        assert!(Ops::decode(b"j", &newer).is_err());
        let unknown_write = [codec::FORMAT, 0, 0, 0, 1, 0, 0, 0, 1, b'k', 7];
        assert!(Ops::decode(b"j", &unknown_write).is_err());
    }
}
