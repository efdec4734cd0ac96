//! How attempts are kept: a settle batch's attempts of one subscription go whole into one
//! record of the subscription's attempt index (`A sub at id n`, named by its newest attempt),
//! with one pointer (`b bucket sub at id n`) per bucket of 64 delivery ids it holds, so a
//! delivery's history is found without reading its subscription's.
//!
//! sled's cost is per key written (FACTS.md), and a record per attempt was a third of what a
//! delivered delivery cost: these records make it a few writes per batch instead.
//!
//! Older builds kept each attempt under `a id at n` and an index record naming them (its value:
//! further `(at, id, n)`, 24 bytes each). Those still read; a record that holds its attempts
//! says so with its first byte, [`WHOLE`], which an index record never starts with (its
//! first byte is the top byte of a time in Unix ms, 0 for the next two million years).

use std::collections::BTreeSet;
use std::ops::Range;

use super::keys::{key, part, BY_SUB, POINTER, WHOLE};

/// Ids per bucket: a delivery's lookup reads the records its bucket points to.
const BUCKET_BITS: u32 = 6;
/// A record grows to about this many bytes, then the batch's further attempts of the same
/// subscription start another: sled rewrites a leaf whole now and then, and a leaf of a few
/// huge values is slow to rewrite (an attempt's excerpt may take up to 4 KiB).
const RECORD_BYTES: usize = 16 * 1024;
/// `at`, `id`, `n` and the length of the attempt's bytes, before them.
const ENTRY_HEAD: usize = 28;

/// One attempt to file: its subscription, (at, id, n), and its encoded record.
pub(super) struct Filed {
    pub sub: u64,
    pub at: u64,
    pub id: u64,
    pub n: u64,
    pub bytes: Vec<u8>,
}

/// The bucket of delivery `id`, as the start of its pointer keys.
pub(super) fn bucket_prefix(id: u64) -> Vec<u8> {
    key(POINTER, &[id >> BUCKET_BITS])
}

/// The record a pointer names.
pub(super) fn pointed(pointer: &[u8]) -> Vec<u8> {
    [&[BY_SUB], pointer.get(9..).unwrap_or_default()].concat()
}

/// The records (key, value) and pointer keys (empty values) that file `attempts`: sorted,
/// one subscription's attempts in as few records as [`RECORD_BYTES`] allows.
pub(super) fn records(mut attempts: Vec<Filed>) -> Vec<(Vec<u8>, Vec<u8>)> {
    attempts.sort_unstable_by_key(|f| (f.sub, f.at, f.id, f.n));
    let mut out = Vec::new();
    for sub in attempts.chunk_by(|a, b| a.sub == b.sub) {
        let mut rest = sub;
        while !rest.is_empty() {
            let mut size = 1;
            let count = rest
                .iter()
                .take_while(|f| {
                    let fits = size == 1 || size + ENTRY_HEAD + f.bytes.len() <= RECORD_BYTES;
                    size += ENTRY_HEAD + f.bytes.len();
                    fits
                })
                .count();
            let (record, later) = rest.split_at(count);
            rest = later;
            out.extend(record_of(record));
        }
    }
    out
}

/// One record of `attempts` (one subscription's, sorted, at least one), and its pointers.
fn record_of(attempts: &[Filed]) -> Vec<(Vec<u8>, Vec<u8>)> {
    let Some(newest) = attempts.last() else {
        return Vec::new();
    };
    let record_key = key(BY_SUB, &[newest.sub, newest.at, newest.id, newest.n]);
    let size: usize = attempts.iter().map(|f| ENTRY_HEAD + f.bytes.len()).sum();
    let mut value = Vec::with_capacity(1 + size);
    value.push(WHOLE);
    for f in attempts {
        value.extend_from_slice(&f.at.to_be_bytes());
        value.extend_from_slice(&f.id.to_be_bytes());
        value.extend_from_slice(&f.n.to_be_bytes());
        value.extend_from_slice(&(f.bytes.len() as u32).to_be_bytes());
        value.extend_from_slice(&f.bytes);
    }
    let buckets: BTreeSet<u64> = attempts.iter().map(|f| f.id >> BUCKET_BITS).collect();
    let mut out = Vec::with_capacity(1 + buckets.len());
    for bucket in buckets {
        out.push((pointer(bucket, &record_key), Vec::new()));
    }
    out.push((record_key, value));
    out
}

fn pointer(bucket: u64, record_key: &[u8]) -> Vec<u8> {
    [
        key(POINTER, &[bucket]).as_slice(),
        record_key.get(1..).unwrap_or_default(),
    ]
    .concat()
}

/// The newest attempt of an attempt-index record, named by its key, as (at, id, n).
pub(super) fn named(key: &[u8]) -> (u64, u64, u64) {
    (part(key, 9), part(key, 17), part(key, 25))
}

/// An attempt an index record holds or names.
pub(super) struct Entry {
    pub at: u64,
    pub id: u64,
    pub n: u64,
    /// Where its encoded attempt is in the record's value; `None` for an older build's record,
    /// which only names it (its attempt is under `a id at n`).
    pub bytes: Option<Range<usize>>,
}

/// Every attempt of an attempt-index record, oldest first. A value cut short yields the
/// attempts it holds whole.
pub(super) fn entries(key: &[u8], value: &[u8]) -> Vec<Entry> {
    if value.first() == Some(&WHOLE) {
        let mut out = Vec::new();
        let mut at = 1;
        while let Some(head) = value.get(at..at + ENTRY_HEAD) {
            let len = u32::from_be_bytes([head[24], head[25], head[26], head[27]]) as usize;
            let start = at + ENTRY_HEAD;
            let bytes = match start.checked_add(len) {
                Some(end) if end <= value.len() => start..end,
                _ => break,
            };
            out.push(Entry {
                at: part(head, 0),
                id: part(head, 8),
                n: part(head, 16),
                bytes: Some(bytes.clone()),
            });
            at = bytes.end;
        }
        return out;
    }
    let named = named(key);
    let further = value.chunks_exact(24).map(|entry| Entry {
        at: part(entry, 0),
        id: part(entry, 8),
        n: part(entry, 16),
        bytes: None,
    });
    further
        .chain(std::iter::once(Entry {
            at: named.0,
            id: named.1,
            n: named.2,
            bytes: None,
        }))
        .collect()
}

/// The pointers of a record being removed: one per bucket of the attempts it holds (an older
/// build's record has none).
pub(super) fn pointers(key: &[u8], entries: &[Entry]) -> Vec<Vec<u8>> {
    let buckets: BTreeSet<u64> = entries
        .iter()
        .filter(|e| e.bytes.is_some())
        .map(|e| e.id >> BUCKET_BITS)
        .collect();
    buckets.into_iter().map(|b| pointer(b, key)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filed(sub: u64, at: u64, id: u64, size: usize) -> Filed {
        Filed {
            sub,
            at,
            id,
            n: 1,
            bytes: vec![7; size],
        }
    }

    #[test]
    fn a_batch_files_one_record_per_subscription_with_a_pointer_per_bucket() {
        let written = records(vec![
            filed(2, 30, 5, 10),
            filed(1, 20, 64, 10),
            filed(1, 10, 3, 10),
            filed(1, 15, 4, 10),
        ]);
        let (pointers, records): (Vec<_>, Vec<_>) =
            written.iter().partition(|(k, _)| k[0] == POINTER);
        assert_eq!(records.len(), 2);
        // Subscription 1's record is named by its newest attempt and holds all three.
        let (k, v) = records[0];
        assert_eq!(k, &key(BY_SUB, &[1, 20, 64, 1]));
        let held: Vec<(u64, u64)> = entries(k, v).iter().map(|e| (e.at, e.id)).collect();
        assert_eq!(held, [(10, 3), (15, 4), (20, 64)]);
        assert!(entries(k, v)
            .iter()
            .all(|e| v[e.bytes.clone().unwrap()] == [7; 10]));
        // Ids 3 and 4 share bucket 0, id 64 is in bucket 1: two pointers to it, one to 2's.
        let to_first: Vec<u64> = pointers
            .iter()
            .filter(|(p, _)| pointed(p) == *k)
            .map(|(p, _)| part(p, 1))
            .collect();
        assert_eq!(to_first, [0, 1]);
        assert!(pointers.iter().all(|(_, v)| v.is_empty()));
        assert_eq!(super::pointers(k, &entries(k, v)).len(), 2);
    }

    #[test]
    fn a_subscriptions_attempts_past_the_size_go_into_further_records() {
        let written = records((0..10).map(|i| filed(1, i, i, 5000)).collect());
        let records: Vec<_> = written.iter().filter(|(k, _)| k[0] == BY_SUB).collect();
        assert_eq!(
            records.len(),
            4,
            "three 5 KB attempts fit in 16 KiB, not four"
        );
        let held: usize = records.iter().map(|(k, v)| entries(k, v).len()).sum();
        assert_eq!(held, 10);
        assert!(records.iter().all(|(_, v)| v.len() <= RECORD_BYTES));
        // One attempt larger than the limit still gets a record of its own.
        let big = records_of_one(filed(1, 1, 1, 3 * RECORD_BYTES));
        assert_eq!(big, 1);
    }

    fn records_of_one(f: Filed) -> usize {
        records(vec![f])
            .iter()
            .filter(|(k, _)| k[0] == BY_SUB)
            .count()
    }

    #[test]
    fn an_older_builds_index_record_names_its_attempts_and_a_cut_record_yields_whole_ones() {
        let k = key(BY_SUB, &[1, 50, 9, 2]);
        let further: Vec<u8> = [[10u64, 7, 1], [20, 8, 1]]
            .iter()
            .flatten()
            .flat_map(|p| p.to_be_bytes())
            .collect();
        let named: Vec<(u64, u64, u64)> = entries(&k, &further)
            .iter()
            .map(|e| (e.at, e.id, e.n))
            .collect();
        assert_eq!(named, [(10, 7, 1), (20, 8, 1), (50, 9, 2)]);
        assert!(entries(&k, &further).iter().all(|e| e.bytes.is_none()));
        assert!(super::pointers(&k, &entries(&k, &further)).is_empty());

        let written = records(vec![filed(1, 1, 1, 10), filed(1, 2, 2, 10)]);
        let (k, v) = written.iter().find(|(k, _)| k[0] == BY_SUB).unwrap();
        assert_eq!(entries(k, &v[..v.len() - 1]).len(), 1);
        assert_eq!(entries(k, &v[..1]).len(), 0);
    }
}
