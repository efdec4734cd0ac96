//! Reading a whole tree, for a compaction or a repair, without keeping it all resident.

use std::ops::Bound;

use crate::error::StoreError;

use super::OrStoreError;

/// Every record of `tree` in key order, each found by a lookup of its own rather than by one
/// long scan. sled 0.34 counts a page against its cache only once 64 accesses have queued in
/// that page's shard (of 256), so one scan, which touches each page once, evicts nothing: the
/// whole tree stays resident until the database is dropped. A lookup per record touches the
/// tree's upper pages every time, which lets the cache evict as it goes (docs/BENCHMARKS.md,
/// Compaction that lets sled's cache evict).
pub(super) fn whole(
    tree: &sled::Tree,
) -> impl Iterator<Item = Result<(sled::IVec, sled::IVec), StoreError>> + '_ {
    let mut after: Option<sled::IVec> = None;
    let mut done = false;
    std::iter::from_fn(move || {
        if done {
            return None;
        }
        let next = match &after {
            None => tree.iter().next(),
            Some(key) => tree
                .range::<&[u8], _>((Bound::Excluded(&key[..]), Bound::Unbounded))
                .next(),
        };
        match next {
            Some(Ok((key, value))) => {
                after = Some(key.clone());
                Some(Ok((key, value)))
            }
            Some(Err(error)) => {
                done = true;
                Some(Err(error).db())
            }
            None => {
                done = true;
                None
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_yields_every_record_in_order_even_keys_that_prefix_others() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::Config::new().path(dir.path()).open().unwrap();
        let tree = db.open_tree("t").unwrap();
        let keys: [&[u8]; 6] = [b"", b"a", b"a\x00", b"a\x00\x00", b"ab", b"b"];
        for (n, key) in keys.iter().enumerate() {
            tree.insert(key, vec![n as u8; 300]).unwrap();
        }
        let read: Vec<(Vec<u8>, Vec<u8>)> = whole(&tree)
            .map(|item| item.map(|(k, v)| (k.to_vec(), v.to_vec())))
            .collect::<Result<_, _>>()
            .unwrap();
        let expected: Vec<(Vec<u8>, Vec<u8>)> = keys
            .iter()
            .enumerate()
            .map(|(n, key)| (key.to_vec(), vec![n as u8; 300]))
            .collect();
        assert_eq!(read, expected);
        assert_eq!(whole(&db.open_tree("empty").unwrap()).count(), 0);
    }
}
