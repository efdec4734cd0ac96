//! Per-record ordering on sled: a delivery with an order key (`Delivery::order_key`, of a
//! subscription not ordered as a whole) goes only while it is the first of its key not yet
//! delivered or dead, so one record's changes arrive in publish order, through retries, while
//! other records go on in parallel.
//!
//! The `K` index (`keys::ORDER_KEY`) lists each key's due, in-flight and held deliveries in id
//! (publish) order, each with its due time. Records stay under their due keys, so every reader
//! of the queue sees them as before; what changes is what the due index hands out:
//! - a lease checks the key of the delivery it is about to take, and one that is not its key's
//!   first goes out of the due index, to be filed again when the one before it leaves. This
//!   check is the rule; the others save leases the work;
//! - an enqueued or resumed delivery behind another of its key is not filed;
//! - when a key's first is delivered or dead, its entry goes and the next one is filed.
//!
//! An entry whose delivery is nowhere (its record moved aside as corrupt) is passed over and
//! removed, so a damaged record never stalls its key. A store written before this index has
//! no entries for its deliveries: they go as if they had no key.

use std::time::Instant;

use crate::error::StoreError;
use crate::model::Delivery;

use super::book::Book;
use super::due::Entry;
use super::keys::{key, order_entry, order_prefix, part, DUE, HELD, ORDER_KEY};
use super::ops::Ops;
use super::{OrStoreError, SledStore};

/// The order key of a delivery ordered per record. A subscription ordered as a whole sends one
/// at a time anyway: its deliveries need none.
pub(super) fn order_key(delivery: &Delivery) -> Option<&str> {
    delivery.order_key.as_deref().filter(|_| !delivery.ordered)
}

/// The `K` range of a delivery's order key, if it has one (see [`order_key`]).
pub(super) fn order_range(delivery: &Delivery) -> Option<Vec<u8>> {
    order_key(delivery).map(|k| order_prefix(delivery.subscription_id, k))
}

/// The `K` entry of a delivery ordered per record, valued with its due time: written with
/// every due or held record of it, so the due time is always that of its due key.
pub(super) fn order_record(delivery: &Delivery) -> Option<(Vec<u8>, [u8; 8])> {
    let range = order_range(delivery)?;
    Some((
        order_entry(&range, delivery.id),
        delivery.due_at.to_be_bytes(),
    ))
}

/// Writes (or rewrites) the `K` entry of `delivery` into `batch` (see [`order_record`]).
pub(super) fn file_order_key(batch: &mut Ops, delivery: &Delivery) {
    if let Some((k, v)) = order_record(delivery) {
        batch.insert(k, v);
    }
}

impl SledStore {
    /// Whether `delivery` may go as far as its key is concerned: no earlier delivery of its key
    /// is due, in flight or held (always, for one without a key).
    pub(super) fn first_of_key(
        &self,
        book: &mut Book,
        delivery: &Delivery,
    ) -> Result<bool, StoreError> {
        let Some(range) = order_range(delivery) else {
            return Ok(true);
        };
        Ok(self
            .key_head(book, &range, delivery.id)?
            .is_none_or(|(id, _)| id > delivery.id))
    }

    /// Takes delivery `left` (delivered, dead, or its record gone) out of its key's range
    /// `range`, in `batch`, and files the key's next delivery in the due index, unless it is in
    /// flight, held, or not filed by its group commit yet (`file_applied` files it then).
    pub(super) fn leave_key(
        &self,
        book: &mut Book,
        batch: &mut Ops,
        range: &[u8],
        left: u64,
    ) -> Result<(), StoreError> {
        batch.remove(order_entry(range, left));
        book.key_gone.insert(left);
        let sub = part(range, 1);
        let Some((id, due_at)) = self.key_head(book, range, left)? else {
            return Ok(());
        };
        if book.leased.contains_key(&id)
            || book.buffered(id)
            || id >= book.filed_below
            || book.held.contains(&sub)
        {
            return Ok(());
        }
        book.due.insert(
            sub,
            Entry {
                due_at,
                id,
                ordered: false,
            },
        );
        Ok(())
    }

    /// Takes delivery `id` of `sub`, found gone at its lease (its record moved aside as
    /// corrupt), out of its key's range, if it is in one, so the next of the key may go.
    /// Without the record its key is unknown: the subscription's ranges are searched, which a
    /// damaged record, being rare, can afford.
    pub(super) fn forget_in_keys(
        &self,
        book: &mut Book,
        sub: u64,
        id: u64,
    ) -> Result<(), StoreError> {
        let mut found = None;
        for k in self.queue().scan_prefix(key(ORDER_KEY, &[sub])).keys() {
            let k = k.db()?;
            if part(&k, k.len().saturating_sub(8)) == id {
                found = Some(k);
                break;
            }
        }
        let Some(k) = found else {
            return Ok(());
        };
        let mut batch = Ops::default();
        self.leave_key(book, &mut batch, &k[..k.len() - 8], id)?;
        book.behind.append(batch);
        book.behind_since.get_or_insert_with(Instant::now);
        Ok(())
    }

    /// The first delivery of a key's range `range` but `except` that is still due, in flight or
    /// held: (id, due time). Entries of deliveries that are nowhere are removed on the way.
    fn key_head(
        &self,
        book: &mut Book,
        range: &[u8],
        except: u64,
    ) -> Result<Option<(u64, u64)>, StoreError> {
        let sub = part(range, 1);
        for item in self.queue().scan_prefix(range) {
            let (k, v) = item.db()?;
            let id = part(&k, k.len().saturating_sub(8));
            if id == except || book.key_gone.contains(&id) || book.key_gone_handed_off.contains(&id)
            {
                continue;
            }
            let due_at = part(&v, 0);
            if self.undelivered(book, sub, id, due_at)? {
                return Ok(Some((id, due_at)));
            }
            tracing::warn!(
                subscription = sub,
                delivery = id,
                "an order key named a delivery that is gone; passed over"
            );
            book.behind.remove(k);
            book.key_gone.insert(id);
            book.behind_since.get_or_insert_with(Instant::now);
        }
        Ok(None)
    }

    /// Whether delivery `id` of `sub` (due at `due_at` when due) is due, in flight or held, as
    /// far as the book and the disk know.
    fn undelivered(&self, book: &Book, sub: u64, id: u64, due_at: u64) -> Result<bool, StoreError> {
        if book.leased.contains_key(&id) || book.buffered(id) || id >= book.filed_below {
            return Ok(true);
        }
        Ok(self
            .queue()
            .contains_key(key(DUE, &[sub, due_at, id]))
            .db()?
            || self.queue().contains_key(key(HELD, &[sub, id])).db()?)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::model::{Attempt, Leased, NewDelivery};
    use crate::sled_store::due::{Entry, WINDOW};
    use crate::sled_store::keys::due_key;
    use crate::sled_store::test_support::*;
    use crate::Queue;

    fn keyed(event: &str, order_key: &str) -> NewDelivery {
        NewDelivery {
            subscription_id: 1,
            event_ids: vec![event.into()],
            event_type: "account.update".into(),
            body: b"{}".to_vec(),
            due_at: 0,
            ordered: false,
            message_id: format!("msg_{event}"),
            order_key: Some(order_key.into()),
        }
    }

    fn attempt(at: u64, outcome: &str) -> Attempt {
        Attempt {
            number: 1,
            at,
            duration_ms: 1,
            status: Some(if outcome == "delivered" { 200 } else { 500 }),
            outcome: outcome.into(),
            excerpt: String::new(),
        }
    }

    fn events(leased: &[Leased]) -> Vec<&str> {
        leased
            .iter()
            .map(|l| l.delivery.event_ids[0].as_str())
            .collect()
    }

    #[test]
    fn a_retried_first_is_found_behind_the_backlog_of_its_key() {
        // 1,000 changes of one record: its first fails and is due again later than the 999
        // behind it, so in due order the whole backlog comes before it. They must neither go
        // nor hide it, and the due index must stay a window.
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path(), StoreConfig::default()).unwrap();
        for batch in 0..10 {
            let deliveries = (batch * 100..(batch + 1) * 100)
                .map(|n| keyed(&format!("a{n:04}"), "account/1"))
                .collect();
            store.enqueue(&[], deliveries, 0).unwrap();
        }
        store
            .enqueue(&[], vec![keyed("b", "account/2")], 0)
            .unwrap();
        let first = store.lease(0, 10).unwrap();
        assert_eq!(events(&first), ["a0000", "b"]);
        store
            .reschedule(first[0].token, 10, attempt(0, "http 500"))
            .unwrap();
        store
            .complete(first[1].token, attempt(0, "delivered"))
            .unwrap();
        let windows = |store: &SledStore| store.book.lock().unwrap().due.len();
        // Each call passes over a bounded number; 1,000 in all are passed over within these.
        for _ in 0..100 {
            assert!(store.lease(5, 10).unwrap().is_empty(), "a0001 waits");
            assert!(windows(&store) <= 4 * WINDOW);
        }
        let mut sent = Vec::new();
        for round in 0..2_000 {
            let leased = store.lease(10 + round, 10).unwrap();
            assert!(leased.len() <= 1, "one of the key at a time");
            assert!(windows(&store) <= 4 * WINDOW);
            for l in leased {
                sent.push(l.delivery.event_ids[0].clone());
                store
                    .complete(l.token, attempt(round, "delivered"))
                    .unwrap();
            }
            if sent.len() == 1_000 {
                break;
            }
        }
        let expected: Vec<String> = (0..1000).map(|n| format!("a{n:04}")).collect();
        assert_eq!(sent, expected, "in publish order, the retried first first");
    }

    #[test]
    fn a_first_of_its_key_found_corrupt_lets_the_next_go() {
        let dir = tempfile::tempdir().unwrap();
        let config = StoreConfig {
            lease: Duration::from_millis(50),
            ..StoreConfig::default()
        };
        let store = SledStore::open(dir.path(), config).unwrap();
        let receipt = store
            .enqueue(
                &[],
                vec![keyed("a1", "account/1"), keyed("a2", "account/1")],
                0,
            )
            .unwrap();
        let leased = store.lease(0, 10).unwrap();
        assert_eq!(events(&leased), ["a1"], "a2 waits, out of the due index");
        // a1's record is damaged on disk while it is in flight; its lease runs out.
        let entry = Entry {
            due_at: 0,
            id: receipt.delivery_ids[0],
            ordered: false,
        };
        store
            .test_queue()
            .insert(
                due_key(1, entry),
                &b"\x00\x00\x00\x00\x00\x00\x00\x01\x00\xff"[..],
            )
            .unwrap();
        drop(leased);
        let again = store.lease(100, 10).unwrap();
        assert_eq!(events(&again), ["a2"], "a1 is moved aside; a2 is next");
        assert_eq!(store.corrupt_keys().unwrap().len(), 1);
    }

    #[test]
    fn repair_keeps_the_order_of_each_key() {
        let dir = tempfile::tempdir().unwrap();
        let (from, to) = (dir.path().join("from"), dir.path().join("to"));
        {
            let store = SledStore::open(&from, StoreConfig::default()).unwrap();
            let batch = ["a1", "a2", "a3"]
                .iter()
                .map(|e| keyed(e, "account/1"))
                .collect();
            store.enqueue(&[], batch, 0).unwrap();
            store.flush().unwrap();
        }
        SledStore::repair(&from, &to).unwrap();
        let store = SledStore::open(&to, StoreConfig::default()).unwrap();
        for expected in ["a1", "a2", "a3"] {
            let leased = store.lease(0, 10).unwrap();
            assert_eq!(events(&leased), [expected]);
            store
                .complete(leased[0].token, attempt(0, "delivered"))
                .unwrap();
        }
    }
}
