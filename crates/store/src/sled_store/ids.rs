//! Maps and sets keyed by our own ids (deliveries, subscriptions), hashed cheaply.
//!
//! The ids are handed out by the store, in sequence; nobody outside chooses them. SipHash, the
//! standard maps' default, guards against keys chosen to collide, which these cannot be, and
//! costs more than the rest of a lookup: leases and settles look ids up several times each.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

/// A map keyed by an id.
pub(super) type IdMap<V> = HashMap<u64, V, BuildHasherDefault<IdHasher>>;

/// A set of ids.
pub(super) type IdSet = HashSet<u64, BuildHasherDefault<IdHasher>>;

/// Multiplies by a large odd constant (Fibonacci hashing), then folds the high half into the
/// low: the table indexes with the low bits, which in a bare product depend only on the id's low
/// bits (ids 2^16 apart would collide), and tags entries with the high bits.
#[derive(Default, Clone, Copy)]
pub(super) struct IdHasher(u64);

const SPREAD: u64 = 0x9e37_79b9_7f4a_7c15;

impl Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(byte)).wrapping_mul(SPREAD);
        }
    }

    fn write_u64(&mut self, id: u64) {
        self.0 = (self.0 ^ id).wrapping_mul(SPREAD);
    }

    fn finish(&self) -> u64 {
        self.0 ^ (self.0 >> 32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::BuildHasher;

    #[test]
    fn ids_fill_a_table_evenly() {
        let build = BuildHasherDefault::<IdHasher>::default();
        // 4,096 ids into 1,024 buckets by the low bits, as a table indexes: consecutive ones,
        // and ones 2^16 apart (sharing their low bits). Evenly means no bucket holds more than a
        // random spread would (4 on average; at most about 11).
        for stride in [1u64, 1 << 16] {
            let mut buckets = [0u32; 1024];
            for n in 0..4096u64 {
                buckets[(build.hash_one(1_000_000 + n * stride) & 1023) as usize] += 1;
            }
            let fullest = buckets.iter().max().copied().unwrap_or_default();
            assert!(
                fullest <= 12,
                "stride {stride}: {fullest} ids in one bucket"
            );
        }
        // The high 7 bits tag entries: consecutive ids must not share them all.
        let tags: HashSet<u64> = (0..256u64).map(|id| build.hash_one(id) >> 57).collect();
        assert!(tags.len() > 64, "{} distinct tags", tags.len());
    }

    #[test]
    fn maps_and_sets_behave_as_usual() {
        let mut map: IdMap<&str> = IdMap::default();
        let mut set = IdSet::default();
        for id in 0..10_000u64 {
            map.insert(id * 3, "x");
            set.insert(id * 7);
        }
        assert_eq!(map.len(), 10_000);
        assert!(map.contains_key(&29_997) && !map.contains_key(&29_998));
        assert!(set.remove(&69_993) && !set.contains(&69_993));
        assert_eq!(set.len(), 9_999);
    }
}
