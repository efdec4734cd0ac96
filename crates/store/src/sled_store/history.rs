//! What happened to deliveries, on sled: single deliveries, attempts (`attempts.rs`), dead
//! letters and their replay and purge.

use std::collections::BTreeMap;

use crate::backend::{History, Queue};
use crate::error::StoreError;
use crate::model::{Attempt, DeadFilter, Delivery, DeliveryState};

use super::attempts::{self};
use super::codec;
use super::keys::{decode_due, id_in_key, key, ATTEMPT, BY_SUB, DEAD, DUE, HELD, ORDERED};
use super::ops::Ops;
use super::{OrStoreError, SledStore};

impl History for SledStore {
    fn delivery(&self, id: u64) -> Result<Option<Delivery>, StoreError> {
        let _pass = self.pass()?;
        let mut book = self.book()?;
        self.apply_behind(&mut book)?;
        if let Some(lease) = book.leased.get(&id) {
            let until = lease.until;
            let due_key = lease.due_key.clone();
            drop(book);
            return Ok(self.stored_due(&due_key)?.map(|mut delivery| {
                delivery.state = DeliveryState::InFlight { until };
                delivery
            }));
        }
        drop(book);
        for tag in [DUE, ORDERED, HELD, DEAD] {
            for item in self.queue().scan_prefix([tag]).keys() {
                let k = item.db()?;
                if id_in_key(&k) != Some(id) {
                    continue;
                }
                let Some(bytes) = self.queue().get(&k).db()? else {
                    continue;
                };
                let delivery = match tag {
                    DUE | ORDERED => decode_due(&k, &bytes)?,
                    _ => codec::decode_delivery(&k, &bytes)?,
                };
                return Ok(Some(delivery));
            }
        }
        Ok(None)
    }

    fn attempts_for_delivery(&self, id: u64) -> Result<Vec<Attempt>, StoreError> {
        let _pass = self.pass()?;
        self.catch_up()?;
        let mut out: Vec<Attempt> = Vec::new();
        for item in self.queue().scan_prefix(key(ATTEMPT, &[id])) {
            let (k, v) = item.db()?;
            out.push(codec::decode(&k, &v)?);
        }
        for pointer in self.queue().scan_prefix(attempts::bucket_prefix(id)).keys() {
            let pointer = pointer.db()?;
            let record_key = attempts::pointed(&pointer);
            let Some(record) = self.queue().get(&record_key).db()? else {
                // A record goes with its pointers, all those it can name: one cut short named
                // fewer. A pointer is never written without its record, so this one is left over.
                self.queue().remove(&pointer).db()?;
                continue;
            };
            for entry in attempts::entries(&record_key, &record) {
                match entry.bytes {
                    Some(bytes) if entry.id == id => {
                        out.push(codec::decode(&record_key, &record[bytes])?);
                    }
                    _ => {}
                }
            }
        }
        out.sort_by_key(|a| (a.at, a.number));
        Ok(out)
    }

    fn attempts_for_subscription(
        &self,
        sub: u64,
        limit: usize,
    ) -> Result<Vec<(u64, Attempt)>, StoreError> {
        let _pass = self.pass()?;
        if limit == 0 {
            return Ok(Vec::new());
        }
        self.catch_up()?;
        // The newest `limit` as (at, id, n), smallest first. A record's key names its newest
        // attempt and records come newest key first, so once `limit` are newer than the next
        // record's key, neither it nor any after it holds a newer one.
        // Each with where it is: in the record (its key, value and place) or, from an older
        // build, under its own key.
        let mut newest = BTreeMap::new();
        for item in self.queue().scan_prefix(key(BY_SUB, &[sub])).rev() {
            let (k, record) = item.db()?;
            let named = attempts::named(&k);
            if newest.len() >= limit
                && newest
                    .first_key_value()
                    .is_some_and(|(first, _)| *first > named)
            {
                break;
            }
            for entry in attempts::entries(&k, &record) {
                let place = entry.bytes.map(|bytes| (k.clone(), record.clone(), bytes));
                newest.insert((entry.at, entry.id, entry.n), place);
                if newest.len() > limit {
                    newest.pop_first();
                }
            }
        }
        let mut out = Vec::with_capacity(newest.len());
        for ((at, id, n), place) in newest.into_iter().rev() {
            if let Some((k, record, bytes)) = place {
                out.push((id, codec::decode(&k, &record[bytes])?));
            } else {
                let ak = key(ATTEMPT, &[id, at, n]);
                if let Some(v) = self.queue().get(&ak).db()? {
                    out.push((id, codec::decode(&ak, &v)?));
                }
            }
        }
        Ok(out)
    }

    fn dead_letters(&self, filter: &DeadFilter) -> Result<Vec<Delivery>, StoreError> {
        let _pass = self.pass()?;
        self.catch_up()?;
        self.scan_dead(filter)
    }

    fn replay_dead(&self, filter: &DeadFilter, now_ms: u64) -> Result<usize, StoreError> {
        let _pass = self.pass()?;
        let mut book = self.book()?;
        self.apply_behind(&mut book)?;
        let dead = self.scan_dead(filter)?;
        let mut batch = Ops::default();
        let mut moved = Vec::new();
        for mut d in dead {
            let state = d.state;
            batch.remove(key(DEAD, &[d.subscription_id, d.id]));
            d.attempts = 0;
            let target = self.requeue(&mut batch, &mut d, &mut book, now_ms);
            moved.push((d.subscription_id, state, target));
        }
        for (sub, from, to) in &moved {
            book.leave(*sub, *from);
            book.enter(*sub, *to);
        }
        self.write_now(&mut book, batch)?;
        drop(book);
        Queue::flush(self)?;
        Ok(moved.len())
    }

    // Their attempts go with the retention.
    fn purge_dead(&self, filter: &DeadFilter) -> Result<usize, StoreError> {
        let _pass = self.pass()?;
        let mut book = self.book()?;
        self.apply_behind(&mut book)?;
        let dead = self.scan_dead(filter)?;
        if dead.is_empty() {
            // Nothing to write: no flush (the engine asks periodically).
            return Ok(0);
        }
        let mut batch = Ops::default();
        for d in &dead {
            batch.remove(key(DEAD, &[d.subscription_id, d.id]));
        }
        for d in &dead {
            book.leave(d.subscription_id, d.state);
        }
        self.write_now(&mut book, batch)?;
        drop(book);
        Queue::flush(self)?;
        Ok(dead.len())
    }

    fn prune(&self, now_ms: u64, max: usize) -> Result<usize, StoreError> {
        let pruned = {
            let _pass = self.pass()?;
            self.prune_history(now_ms, max)?
        };
        self.compact_when_due();
        Ok(pruned)
    }
}

impl SledStore {
    /// The dead letters on disk that `dead_letters` means. Replay and purge call it under the
    /// book lock, so two of them at once never act on the same dead letter twice.
    fn scan_dead(&self, filter: &DeadFilter) -> Result<Vec<Delivery>, StoreError> {
        let prefix = match filter.subscription {
            Some(s) => key(DEAD, &[s]),
            None => vec![DEAD],
        };
        let mut out = Vec::new();
        for item in self.queue().scan_prefix(prefix) {
            let (k, v) = item.db()?;
            let Some(d) = self.record(&k, &v)? else {
                continue;
            };
            if matches!(d.state, DeliveryState::Dead { at } if filter.selects(d.subscription_id, at))
            {
                out.push(d);
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sled_store::test_support::*;

    #[test]
    fn a_settle_batch_indexes_each_subscriptions_attempts_in_one_record() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path(), StoreConfig::default()).unwrap();
        let new = |n: u64| NewDelivery {
            subscription_id: if n < 6 { 1 } else { 2 },
            event_ids: vec![format!("e{n}")],
            event_type: "contact.updated".into(),
            body: b"{}".to_vec(),
            due_at: 0,
            ordered: false,
            message_id: format!("msg_{n}"),
            order_key: None,
        };
        let ids = store
            .enqueue(&[], (0..8).map(new).collect(), 1)
            .unwrap()
            .delivery_ids;
        let tokens: std::collections::HashMap<u64, LeaseToken> = store
            .lease(1, 10)
            .unwrap()
            .into_iter()
            .map(|leased| (leased.delivery.id, leased.token))
            .collect();
        assert_eq!(tokens.len(), 8);
        let attempt = |at: u64| Attempt {
            number: 1,
            at,
            duration_ms: 1,
            status: Some(200),
            outcome: "delivered".into(),
            excerpt: String::new(),
        };
        // Subscription 1: attempts at 10 and 50 in one batch, at 20, 30, 40 and 45 in the
        // next, so the older record holds the newest attempt and one older than all of the
        // newer record's. Subscription 2: two attempts in the first batch.
        for (id, at) in [(ids[0], 10), (ids[1], 50), (ids[6], 12), (ids[7], 13)] {
            store.complete(tokens[&id], attempt(at)).unwrap();
        }
        store.flush().unwrap();
        for (id, at) in [(ids[2], 20), (ids[3], 30), (ids[4], 40), (ids[5], 45)] {
            store.complete(tokens[&id], attempt(at)).unwrap();
        }
        store.flush().unwrap();
        let records: Vec<u64> = store
            .test_queue()
            .scan_prefix([BY_SUB])
            .map(|item| part(&item.unwrap().0, 1))
            .collect();
        assert_eq!(records, [1, 1, 2], "one record per subscription and batch");
        assert_eq!(
            store.test_queue().scan_prefix(key(ATTEMPT, &[])).count(),
            0,
            "no record per attempt"
        );
        for (id, at) in [(ids[0], 10), (ids[5], 45), (ids[7], 13)] {
            assert_eq!(store.attempts_for_delivery(id).unwrap(), [attempt(at)]);
        }

        // A record of one attempt with an empty value, as older builds wrote them.
        store
            .test_queue()
            .insert(key(BY_SUB, &[1, 42, 99, 1]), b"")
            .unwrap();
        store
            .test_queue()
            .insert(key(ATTEMPT, &[99, 42, 1]), codec::encode(&attempt(42)))
            .unwrap();
        assert_eq!(store.attempts_for_delivery(99).unwrap(), [attempt(42)]);

        let newest = |limit: usize| -> Vec<u64> {
            let listed = store.attempts_for_subscription(1, limit).unwrap();
            listed.iter().map(|(_, a)| a.at).collect()
        };
        assert_eq!(newest(10), [50, 45, 42, 40, 30, 20, 10]);
        assert_eq!(newest(3), [50, 45, 42]);
        assert_eq!(newest(1), [50]);
        assert!(newest(0).is_empty());
        let listed = store.attempts_for_subscription(2, 10).unwrap();
        assert_eq!(listed, [(ids[7], attempt(13)), (ids[6], attempt(12))]);

        // A record goes once its newest attempt is past retention, the older ones with it.
        let day = 24 * 3600 * 1000;
        let retention = |at: u64| at + 30 * day + 1;
        assert_eq!(
            store.prune(retention(42), 100).unwrap(),
            3,
            "42, and 12 and 13"
        );
        assert_eq!(newest(10), [50, 45, 40, 30, 20, 10]);
        assert!(store.attempts_for_subscription(2, 10).unwrap().is_empty());
        assert_eq!(store.prune(retention(45), 100).unwrap(), 4, "20 to 45");
        assert_eq!(newest(10), [50, 10]);
        assert_eq!(store.prune(retention(50), 100).unwrap(), 2);
        assert!(newest(10).is_empty());
        assert!(store.attempts_for_delivery(ids[0]).unwrap().is_empty());
        assert!(store.test_queue().scan_prefix([BY_SUB]).next().is_none());
        assert!(
            store.test_queue().scan_prefix([b'b']).next().is_none(),
            "pruned records leave no pointers behind"
        );
    }

    #[test]
    fn a_pointer_left_by_a_record_cut_short_goes_when_a_read_meets_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path(), StoreConfig::default()).unwrap();
        let filed = |id: u64| Filed {
            sub: 1,
            at: id,
            id,
            n: 1,
            bytes: codec::encode(&Attempt {
                number: 1,
                at: id,
                duration_ms: 1,
                status: Some(500),
                outcome: "http 500".into(),
                excerpt: String::new(),
            }),
        };
        // Ids 1 and 100 are in buckets 0 and 1; the record loses id 100's attempt to a cut.
        for (k, mut v) in attempts::records(vec![filed(1), filed(100)]) {
            if k[0] == BY_SUB {
                v.pop();
            }
            store.test_queue().insert(k, v).unwrap();
        }
        assert_eq!(store.attempts_for_delivery(1).unwrap().len(), 1);
        assert!(store.attempts_for_delivery(100).unwrap().is_empty());
        let day = 24 * 3600 * 1000;
        assert_eq!(store.prune(100 + 31 * day, 10).unwrap(), 1);
        let pointers = || store.test_queue().scan_prefix([b'b']).count();
        assert_eq!(pointers(), 1, "id 100's bucket was not named");
        assert!(store.attempts_for_delivery(100).unwrap().is_empty());
        assert_eq!(pointers(), 0);
    }
}
