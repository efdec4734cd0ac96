//! The key layout of a sled store: the one home of key tags and record shapes. Keys are a
//! one-byte tag and big-endian parts, so they sort; values are `codec` records.

use crate::error::StoreError;
use crate::model::Delivery;

use super::codec;
use super::due::Entry;

// Key prefixes of the `queue` tree. Big-endian parts after the tag.
//
// A due delivery's value starts with its subscription and whether it is ordered (`due_value`).
// Due keys lead with the subscription, so each subscription's due order (publish order for
// ordered deliveries, under their own tag) is one range: the in-memory due index keeps only
// the first few of each (`due.rs`) and reads on from there. Leases live in memory only
// (`Book::leased`): a crash voids every lease anyway (they return to due on open); a delivery
// in flight stays under its due key.
//
// Layouts up to 4 filed due deliveries under `q due_at id`, in one due order over all
// subscriptions; opening such a store moves them under these keys. Layout 1 (earlier builds)
// kept each delivery under `d id` with value-less index entries, leases under `f`, and ordered
// subscriptions' publish order under `p`; opening such a store moves them into this layout.
pub(super) const DUE: u8 = b'q'; // q sub due_at id -> sub, ordered, Delivery (unordered ones)
pub(super) const ORDERED: u8 = b'o'; // o sub id due_at -> sub, ordered, Delivery (ordered ones)
pub(super) const HELD: u8 = b'h'; // h sub id -> Delivery
pub(super) const DEAD: u8 = b'x'; // x sub id -> Delivery
pub(super) const LEGACY_DELIVERY: u8 = b'd'; // d id -> Delivery (layout 1)
pub(super) const LEGACY_LEASED: u8 = b'f'; // f until id -> () (layout 1)
pub(super) const LEGACY_PENDING: u8 = b'p'; // p sub id -> () (layout 1 and early layout 2)

// Attempts are named by time as well as number: a replayed dead letter starts again at attempt
// 1, and its new attempts must add to the history, not overwrite it. A settle batch's attempts
// of one subscription are one record, `A sub at id n` (see `attempts.rs`); older builds kept
// each under `a id at n`, which still reads and is pruned.
pub(super) const ATTEMPT: u8 = b'a'; // a id at n -> Attempt (older builds)
/// The attempt-index tag (`A sub at id n` -> a settle batch's attempts; `attempts.rs`).
pub(super) const BY_SUB: u8 = b'A';
/// The pointer tag (`b bucket sub at id n` -> ()): a record of `BY_SUB` per 64-id bucket.
pub(super) const POINTER: u8 = b'b';
/// The first byte of a `BY_SUB` record that holds its attempts (older ones name them).
pub(super) const WHOLE: u8 = 0xA7;
pub(super) const DELIVERED: u8 = b'n'; // n sub -> u64 delivered count
/// Counts on disk, so that opening reads them instead of every record. Enqueues and the other
/// changes commit apart (group commit, write-behind), so each writes its own: `E sub` the
/// deliveries ever enqueued, written by enqueues; `C sub` the rest (`DiskCounts`), written by
/// every other change with the records it moves.
pub(super) const ENQUEUED: u8 = b'E'; // E sub -> u64 deliveries ever enqueued
pub(super) const COUNTS: u8 = b'C'; // C sub -> due beyond enqueued, retrying, held, dead, attempts
pub(super) const HELD_SUB: u8 = b'H'; // H sub -> ()
/// Per-record ordering (`Delivery::order_key`, `order.rs`): every due, in-flight or held
/// delivery of a key, in id (publish) order, valued with its due time; only a key's first may
/// be leased. Dead and delivered ones leave it.
pub(super) const ORDER_KEY: u8 = b'K'; // K sub len key id -> due_at
pub(super) const SEEN: u8 = b'e'; // e event_id -> at
/// One expiry record per group commit, not per id: it names the first id in its key and the
/// others in its value (`expiry_record`), so a publish's event ids cost one write each plus a
/// share of one.
pub(super) const SEEN_AT: u8 = b't'; // t at event_id -> further event ids
/// Host event ids ever remembered and ever forgotten, as entries of expiry records, so that
/// prune knows how many are remembered without reading them (`StoreConfig::dedup_kept`). Each
/// has one writer (group commits; prune) and only grows.
pub(super) const REMEMBERED: &[u8] = b"R"; // R -> u64 event ids ever remembered
pub(super) const FORGOTTEN: &[u8] = b"U"; // U -> u64 event ids ever forgotten
pub(super) const NEXT_DELIVERY: &[u8] = b"N"; // N -> the next id not yet reserved
/// A group commit's writes as one record (`Ops::encode`), flushed, then written out as plain
/// inserts and removed (`SledStore::write_out`); one a crash left is written out on open.
pub(super) const JOURNAL: u8 = b'j'; // j ticket -> Ops
/// Delivery ids are reserved in blocks: `N` is written once per block, not once per enqueue. A
/// crash skips at most the rest of a block; an id is never reused.
pub(super) const ID_BLOCK: u64 = 1024;
// Keys of the `subs` tree.
pub(super) const SUB: u8 = b'S';
pub(super) const NEXT_SUB: &[u8] = b"#";
pub(super) const SEQUENCE: u8 = b'Q'; // Q sub -> next sequence number
pub(super) const FAILING: u8 = b'F'; // F sub -> failure streak (`tallies.rs`)

/// A key: a one-byte keyspace tag followed by big-endian parts.
pub(super) fn key(tag: u8, parts: &[u64]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + parts.len() * 8);
    out.push(tag);
    for part in parts {
        out.extend_from_slice(&part.to_be_bytes());
    }
    out
}

/// The big-endian u64 at `offset` of a key.
pub(super) fn part(key: &[u8], offset: usize) -> u64 {
    key.get(offset..offset + 8)
        .and_then(|b| b.try_into().ok())
        .map_or(0, u64::from_be_bytes)
}

// Keys of the `meta` tree.
pub(super) const FORMAT_KEY: &[u8] = b"format";
/// The key layout this build writes: 5, one record per delivery under the key of its state,
/// due ones by subscription (`DUE`, `ORDERED`), counts on disk (`ENQUEUED`, `COUNTS`), a settle
/// batch's attempts in their index records (`attempts.rs`), and delivery records that carry
/// their message id (`codec::DELIVERY_FORMAT`). Layout 4 filed due deliveries under `q due_at id`
/// and kept no counts: opening one moves its due records and counts them, once. Layout 3 differs
/// from 4 only in delivery records without a message id, and layout 2 in also keeping a record
/// per attempt; both still read. Layout 1 is migrated on open. A newer one is refused, so that
/// an older build never misreads this one's records.
pub(super) const LAYOUT: u8 = 5;
/// The first layout with due records under `q sub due_at id` and counts on disk.
pub(super) const LAYOUT_BY_SUBSCRIPTION: u8 = 5;
/// A due delivery's value: its subscription and whether it is ordered, then the record, so
/// that leasing can pass over deliveries it will not take without decoding them.
pub(super) fn due_value(delivery: &Delivery) -> Vec<u8> {
    let mut value = Vec::with_capacity(9 + 64 + delivery.body.len());
    value.extend_from_slice(&delivery.subscription_id.to_be_bytes());
    value.push(u8::from(delivery.ordered));
    codec::encode_delivery_into(delivery, &mut value);
    value
}

/// A due delivery as the due index files it.
pub(super) fn entry_of(delivery: &Delivery) -> Entry {
    Entry {
        due_at: delivery.due_at,
        id: delivery.id,
        ordered: delivery.ordered,
    }
}

/// The key of a due delivery of `sub`: `q sub due_at id`, or `o sub id due_at` for an ordered
/// one (publish order first).
pub(super) fn due_key(sub: u64, entry: Entry) -> Vec<u8> {
    if entry.ordered {
        key(ORDERED, &[sub, entry.id, entry.due_at])
    } else {
        key(DUE, &[sub, entry.due_at, entry.id])
    }
}

/// [`due_key`] of a delivery.
pub(super) fn due_key_of(delivery: &Delivery) -> Vec<u8> {
    due_key(delivery.subscription_id, entry_of(delivery))
}

/// The `K` range of one subscription's order key: `K sub len key` (the length keeps one key's
/// range from running into a longer key's).
pub(super) fn order_prefix(sub: u64, order_key: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(13 + order_key.len() + 8);
    out.push(ORDER_KEY);
    out.extend_from_slice(&sub.to_be_bytes());
    out.extend_from_slice(&(order_key.len() as u32).to_be_bytes());
    out.extend_from_slice(order_key.as_bytes());
    out
}

/// The `K` entry of delivery `id` in the range `prefix` (see [`order_prefix`]).
pub(super) fn order_entry(prefix: &[u8], id: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(prefix.len() + 8);
    out.extend_from_slice(prefix);
    out.extend_from_slice(&id.to_be_bytes());
    out
}

/// The delivery id a record's key names, for a record of any state (and layout 4's due keys,
/// `q due_at id`, 17 bytes); `None` for a key that names none.
pub(super) fn id_in_key(k: &[u8]) -> Option<u64> {
    match (k.first().copied()?, k.len()) {
        (DUE, 25) => Some(part(k, 17)),
        (ORDERED, 25) | (DUE | HELD | DEAD, 17) => Some(part(k, 9)),
        (LEGACY_DELIVERY, 9) => Some(part(k, 1)),
        _ => None,
    }
}

/// The record in a due value (see [`due_value`]).
pub(super) fn decode_due(key: &[u8], value: &[u8]) -> Result<Delivery, StoreError> {
    codec::decode_delivery(key, value.get(9..).unwrap_or_default())
}

/// The expiry record of remembered event ids `(id, remembered at)`: keyed by the latest time
/// among them (so none is forgotten early) and the first id, with the others in the value,
/// each as a big-endian u32 length and its bytes.
pub(super) fn expiry_record(ids: &[(String, u64)]) -> Option<(Vec<u8>, Vec<u8>)> {
    let ((first, _), rest) = ids.split_first()?;
    let at = ids.iter().map(|(_, at)| *at).max().unwrap_or_default();
    let mut k = key(SEEN_AT, &[at]);
    k.extend_from_slice(first.as_bytes());
    let mut v = Vec::new();
    for (id, _) in rest {
        v.extend_from_slice(&(id.len() as u32).to_be_bytes());
        v.extend_from_slice(id.as_bytes());
    }
    Some((k, v))
}

/// The further event ids in an expiry record's value (see [`expiry_record`]); a value cut
/// short yields what it holds whole.
pub(super) fn expiry_ids(mut value: &[u8]) -> impl Iterator<Item = &[u8]> {
    std::iter::from_fn(move || {
        let len = part_u32(take(&mut value, 4)?);
        take(&mut value, len)
    })
}

/// The first `len` bytes of `rest`, which moves past them.
pub(super) fn take<'a>(rest: &mut &'a [u8], len: usize) -> Option<&'a [u8]> {
    let (head, tail) = rest.split_at_checked(len)?;
    *rest = tail;
    Some(head)
}

pub(super) fn part_u32(bytes: &[u8]) -> usize {
    bytes
        .try_into()
        .map_or(0, |b: [u8; 4]| u32::from_be_bytes(b) as usize)
}

pub(super) fn key_str(tag: u8, text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + text.len());
    out.push(tag);
    out.extend_from_slice(text.as_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sled_store::test_support::*;

    #[test]
    fn keys_sort_by_their_big_endian_parts() {
        let mut keys = [key(DUE, &[256, 1]), key(DUE, &[1, 9]), key(DUE, &[255, 0])];
        keys.sort();
        let parts: Vec<u64> = keys.iter().map(|k| part(k, 1)).collect();
        assert_eq!(parts, [1, 255, 256]);
    }

    #[test]
    fn due_value_names_subscription_and_order_then_the_record() {
        let delivery = sample(7, 300, true);
        let value = due_value(&delivery);
        assert_eq!((part(&value, 0), value[8]), (300, 1));
        assert_eq!(decode_due(b"q", &value).unwrap(), delivery);
        assert!(
            decode_due(b"q", &value[..9]).is_err(),
            "a header alone is corrupt"
        );
    }
}
