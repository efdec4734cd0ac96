//! The delivery queue on sled: enqueue (through the group commit), lease from the in-memory
//! due index, settle into the write-behind buffer, hold and resume, counts.

use std::collections::HashSet;
use std::time::Instant;

use sled::{Batch, IVec};

use crate::backend::Queue;
use crate::error::StoreError;
use crate::model::{
    Attempt, Counts, Delivery, DeliveryState, EnqueueReceipt, LeaseLimits, LeaseToken, Leased,
    NewDelivery,
};

use super::attempts::Filed;
use super::book::{Book, Finish, Lease};
use super::codec;
use super::config::Durability;
use super::due::{Entry, WINDOW};
use super::group_commit::Writing;
use super::ids::{IdMap, IdSet};
use super::keys::part;
use super::keys::{
    due_key, due_key_of, due_value, entry_of, id_in_key, key, key_str, DEAD, DELIVERED, DUE, HELD,
    HELD_SUB, ID_BLOCK, NEXT_DELIVERY, ORDERED, SEEN,
};
use super::ops::Ops;
use super::order::{file_order_key, order_range};
use super::write_behind::{BEHIND_AGE, BEHIND_MAX};
use super::{OrStoreError, SledStore};

impl Queue for SledStore {
    fn enqueue(
        &self,
        dedup_event_ids: &[String],
        deliveries: Vec<NewDelivery>,
        now_ms: u64,
    ) -> Result<EnqueueReceipt, StoreError> {
        let _pass = self.pass()?;
        let mut receipt = EnqueueReceipt::default();
        let mut writing = Writing(None);
        if self.config.durability != Durability::Relaxed {
            self.flusher
                .state
                .lock()
                .map_err(|_| StoreError::Poisoned)?
                .writing += 1;
            writing.0 = Some(&self.flusher);
        }
        let ticket = {
            let mut book = self.book()?;
            let mut batch = Ops::default();
            let mut duplicates = HashSet::new();
            let mut fresh_ids = Vec::new();
            for event_id in dedup_event_ids {
                let seen = key_str(SEEN, event_id);
                if book.pending_seen.contains(event_id) {
                    duplicates.insert(event_id.clone());
                    continue;
                }
                match self.queue().get(&seen).db()? {
                    Some(at)
                        if part(&at, 0) + (self.config.dedup_retention.as_millis() as u64)
                            > now_ms =>
                    {
                        duplicates.insert(event_id.clone());
                    }
                    _ => {
                        batch.insert(seen, now_ms.to_be_bytes());
                        fresh_ids.push((event_id.clone(), now_ms));
                    }
                }
            }
            let mut entered = Vec::new();
            let mut per_sub: IdMap<u64> = IdMap::default();
            let mut due = Vec::new();
            for new in deliveries {
                if new.event_ids.iter().any(|e| duplicates.contains(e)) {
                    continue;
                }
                let id = book.next_delivery;
                book.next_delivery += 1;
                let delivery = Delivery {
                    id,
                    subscription_id: new.subscription_id,
                    event_ids: new.event_ids,
                    event_type: new.event_type,
                    body: new.body,
                    attempts: 0,
                    due_at: new.due_at,
                    created_at: now_ms,
                    ordered: new.ordered,
                    message_id: new.message_id,
                    order_key: new.order_key,
                    // Filed as due even for a held subscription: whether it is held is decided
                    // once the batch is applied (`file_applied`), since a hold or resume can
                    // come in between.
                    state: DeliveryState::Due,
                };
                batch.insert(due_key_of(&delivery), due_value(&delivery));
                file_order_key(&mut batch, &delivery);
                *per_sub.entry(delivery.subscription_id).or_default() += 1;
                entered.push((delivery.subscription_id, delivery.state));
                receipt.delivery_ids.push(id);
                due.push(delivery);
            }
            if book.next_delivery > book.reserved_until {
                book.reserved_until = book.next_delivery + ID_BLOCK;
                batch.insert(NEXT_DELIVERY, book.reserved_until.to_be_bytes());
            }
            for (sub, state) in entered {
                book.enter(sub, state);
            }
            for (sub, more) in per_sub {
                let (k, v) = book.enqueued(sub, more);
                batch.insert(k, v);
            }
            let mut dups: Vec<String> = duplicates.into_iter().collect();
            dups.sort();
            receipt.duplicate_event_ids = dups;
            if self.config.durability == Durability::Relaxed {
                let remembered = self.remember(&mut batch, &fresh_ids);
                let mut sled_batch = Batch::default();
                batch.into_batch(&mut sled_batch);
                if let Err(error) = self.queue().apply_batch(sled_batch) {
                    self.unremember(remembered);
                    book.reserved_until = 0;
                    for delivery in due {
                        book.leave(delivery.subscription_id, DeliveryState::Due);
                    }
                    return Err(super::sled_error(error));
                }
                self.file_applied(&mut book, due);
                return Ok(receipt);
            }
            // Queued under the book lock, so batches apply in id order.
            book.pending_seen
                .extend(fresh_ids.iter().map(|(id, _)| id.clone()));
            let mut state = self
                .flusher
                .state
                .lock()
                .map_err(|_| StoreError::Poisoned)?;
            state.pending.push(batch);
            state.pending_ids.extend(fresh_ids);
            state.pending_due.extend(due);
            state.written += 1;
            state.writing = state.writing.saturating_sub(1);
            writing.0 = None;
            // Only once the group is whole: a leader woken per arrival went back to sleep as
            // often as there were writers (a thread switch each, on 2 cores).
            if state.gathered() {
                self.flusher.arrived.notify_one();
            }
            state.written
        };
        self.durable(ticket)?;
        Ok(receipt)
    }

    fn lease_within(
        &self,
        now_ms: u64,
        max: usize,
        limits: &LeaseLimits,
    ) -> Result<Vec<Leased>, StoreError> {
        self.compact_when_due();
        let _pass = self.pass()?;
        let mut book = self.book()?;
        // The due index is in memory, so leasing reads sled only for the records it takes: the
        // write-behind buffer is applied when one of them is in it, or when it is due by age.
        if book
            .behind_since
            .is_some_and(|since| since.elapsed() >= BEHIND_AGE)
        {
            self.apply_behind(&mut book)?;
        }
        self.reclaim_expired(&mut book, now_ms)?;
        let until = now_ms.saturating_add(self.config.lease.as_millis() as u64);
        let mut leased = Vec::new();
        // One delivery at a time from the subscription whose turn it is (`due.rs`); one that
        // may not give one more (at its bound, or its ordered head in flight) is passed over
        // for the rest of the call, whatever its backlog.
        let mut passed = IdSet::default();
        let mut behind_their_key = 0;
        let in_flight_of = |book: &Book, sub: u64| book.counts.get(&sub).map_or(0, |c| c.in_flight);
        let mut shared_in_flight: u64 = limits
            .shared_members()
            .map(|sub| in_flight_of(&book, sub))
            .sum();
        while leased.len() < max {
            let Some(sub) = book.due.next_subscription(now_ms, &passed) else {
                break;
            };
            let shares = limits.shares(sub);
            if in_flight_of(&book, sub) >= limits.bound(sub) as u64
                || (shares && shared_in_flight >= limits.shared_bound() as u64)
            {
                passed.insert(sub);
                continue;
            }
            let ordered_may_go = !book.ordered_in_flight.contains(&sub);
            let Some(entry) = book.due.next_for(sub, now_ms, ordered_may_go) else {
                passed.insert(sub);
                continue;
            };
            // A read error ends the call with what it has leased so far, which would otherwise
            // stay in flight, unseen, until the lease ends.
            let due_key = IVec::from(due_key(sub, entry));
            let read = if let Some(delivery) = book.fresh.take(&entry) {
                Ok(Some(delivery))
            } else if book.buffered(entry.id) {
                // Rescheduled or released a moment ago: its new record is still buffered.
                self.apply_behind(&mut book)
                    .and_then(|()| self.stored_due(&due_key))
            } else {
                self.stored_due(&due_key)
            };
            let mut delivery = match read {
                Ok(Some(delivery)) => delivery,
                Ok(None) => {
                    // Moved aside as corrupt, or gone: nothing to send.
                    book.due.remove(sub, entry);
                    book.leave(sub, DeliveryState::Due);
                    if let Err(error) = self.forget_in_keys(&mut book, sub, entry.id) {
                        tracing::error!(%error, delivery = entry.id, "could not free its key");
                    }
                    if let Err(error) = self.top_up(&mut book, sub) {
                        if leased.is_empty() {
                            return Err(error);
                        }
                        tracing::error!(%error, "lease stopped early");
                        break;
                    }
                    continue;
                }
                Err(error) if leased.is_empty() => return Err(error),
                Err(error) => {
                    tracing::error!(%error, "lease stopped early");
                    break;
                }
            };
            // The rule of per-record ordering (`order.rs`): one that is not its key's first goes
            // out of the index until the one before it leaves. Each costs a read, so a call
            // passes over a bounded number before it lets the subscription be.
            if delivery.order_key.is_some() {
                match self.first_of_key(&mut book, &delivery) {
                    Ok(true) => {}
                    Ok(false) => {
                        book.due.remove(sub, entry);
                        behind_their_key += 1;
                        if behind_their_key >= max.saturating_add(WINDOW) {
                            passed.insert(sub);
                        }
                        if let Err(error) = self.top_up(&mut book, sub) {
                            tracing::error!(%error, "lease stopped early");
                            break;
                        }
                        continue;
                    }
                    Err(error) if leased.is_empty() => return Err(error),
                    Err(error) => {
                        tracing::error!(%error, "lease stopped early");
                        break;
                    }
                }
            }
            book.due.lease(sub, entry);
            if delivery.ordered {
                book.ordered_in_flight.insert(sub);
            }
            if delivery.attempts > 0 {
                book.disk.entry(sub).or_default().retrying_in_flight += 1;
            }
            // Nothing is written: the lease lives in memory (see `DUE`).
            delivery.state = DeliveryState::InFlight { until };
            book.next_lease += 1;
            let token = LeaseToken::new(entry.id, book.next_lease);
            book.deadlines.insert((until, entry.id));
            book.leased.insert(
                entry.id,
                Lease {
                    token: token.lease(),
                    until,
                    attempts: delivery.attempts,
                    due_key,
                    entry,
                    sub,
                    ordered: delivery.ordered,
                    order: order_range(&delivery),
                },
            );
            book.leave(sub, DeliveryState::Due);
            book.retrying(sub, delivery.attempts, false);
            book.enter(sub, delivery.state);
            if shares {
                shared_in_flight += 1;
            }
            leased.push(Leased { token, delivery });
            // Read on from disk once the window runs low; what was leased stands.
            if let Err(error) = self.top_up(&mut book, sub) {
                tracing::error!(%error, "lease stopped early");
                break;
            }
        }
        Ok(leased)
    }

    fn complete(&self, lease: LeaseToken, attempt: Attempt) -> Result<(), StoreError> {
        let _pass = self.pass()?;
        let sub = self.settle(lease, Some(attempt), Finish::Delivered)?;
        self.streak_ended(sub)
    }

    fn reschedule(
        &self,
        lease: LeaseToken,
        due_at: u64,
        attempt: Attempt,
    ) -> Result<(), StoreError> {
        let _pass = self.pass()?;
        self.settle(lease, Some(attempt), Finish::Due(due_at))
            .map(drop)
    }

    fn release(&self, lease: LeaseToken, due_at: u64) -> Result<(), StoreError> {
        let _pass = self.pass()?;
        self.settle(lease, None, Finish::Due(due_at)).map(drop)
    }

    fn dead_letter(&self, lease: LeaseToken, attempt: Attempt) -> Result<(), StoreError> {
        let _pass = self.pass()?;
        let at = attempt.at;
        self.settle(lease, Some(attempt), Finish::Dead(at))
            .map(drop)
    }

    fn hold_subscription(&self, sub: u64) -> Result<(), StoreError> {
        let _pass = self.pass()?;
        let mut book = self.book()?;
        self.apply_behind(&mut book)?;
        book.held.insert(sub);
        let mut batch = Ops::default();
        batch.insert(key(HELD_SUB, &[sub]), []);
        let moved = self.hold_due(&mut batch, &mut book, sub);
        self.write_now(&mut book, batch)?;
        drop(book);
        moved?;
        self.flush()
    }

    fn resume_subscription(&self, sub: u64, now_ms: u64) -> Result<u64, StoreError> {
        let _pass = self.pass()?;
        let mut book = self.book()?;
        self.apply_behind(&mut book)?;
        book.held.remove(&sub);
        let mut batch = Ops::default();
        batch.remove(key(HELD_SUB, &[sub]));
        let mut moved = 0;
        for item in self.queue().scan_prefix(key(HELD, &[sub])) {
            let (hk, v) = item.db()?;
            let Some(mut d) = self.record(&hk, &v)? else {
                continue;
            };
            batch.remove(hk);
            d.state = DeliveryState::Due;
            d.due_at = d.due_at.min(now_ms);
            batch.insert(due_key_of(&d), due_value(&d));
            file_order_key(&mut batch, &d);
            // Its key's earlier ones are still held on disk until the batch applies.
            if self.first_of_key(&mut book, &d).unwrap_or(true) {
                book.due.insert(sub, entry_of(&d));
            }
            book.retrying(sub, d.attempts, true);
            moved += 1;
        }
        let c = book.counts(sub);
        c.held -= moved.min(c.held);
        c.due += moved;
        book.dirty.insert(sub);
        self.write_now(&mut book, batch)?;
        drop(book);
        self.flush()?;
        Ok(moved)
    }

    fn next_due_at(&self) -> Result<Option<u64>, StoreError> {
        let _pass = self.pass()?;
        let book = self.book()?;
        let due = book.due.earliest();
        let lease = book.deadlines.first().map(|(until, _)| *until);
        Ok(match (due, lease) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        })
    }

    fn counts(&self) -> Result<Counts, StoreError> {
        let _pass = self.pass()?;
        let book = self.book()?;
        Ok(book
            .counts
            .values()
            .fold(Counts::default(), |mut total, c| {
                total.due += c.due;
                total.retrying += c.retrying;
                total.in_flight += c.in_flight;
                total.held += c.held;
                total.delivered += c.delivered;
                total.dead += c.dead;
                total
            }))
    }

    fn subscription_counts(&self, sub: u64) -> Result<Counts, StoreError> {
        let _pass = self.pass()?;
        Ok(self.book()?.counts.get(&sub).copied().unwrap_or_default())
    }

    fn flush(&self) -> Result<(), StoreError> {
        let _pass = self.pass()?;
        self.catch_up()?;
        self.flush_files()
    }
}

impl SledStore {
    /// Voids leases whose deadline has passed: their deliveries are due again (still in the due
    /// index on disk), or held when their subscription was held meanwhile.
    pub(super) fn reclaim_expired(&self, book: &mut Book, now_ms: u64) -> Result<(), StoreError> {
        let mut batch = Ops::default();
        while let Some(&(until, id)) = book.deadlines.first() {
            if until > now_ms {
                break;
            }
            book.deadlines.remove(&(until, id));
            let Some(lease) = book.leased.remove(&id) else {
                continue;
            };
            tracing::warn!(
                subscription = lease.sub,
                delivery = id,
                "lease expired; delivery returns to the queue"
            );
            book.leave(lease.sub, DeliveryState::InFlight { until });
            if lease.ordered {
                book.ordered_in_flight.remove(&lease.sub);
            }
            if lease.attempts > 0 {
                let d = book.disk.entry(lease.sub).or_default();
                d.retrying_in_flight = d.retrying_in_flight.saturating_sub(1);
            }
            if !book.held.contains(&lease.sub) {
                // Its record never left its due key.
                book.due.insert(lease.sub, lease.entry);
                book.enter(lease.sub, DeliveryState::Due);
                book.retrying(lease.sub, lease.attempts, true);
                continue;
            }
            let Some(mut delivery) = self.stored_due(&lease.due_key)? else {
                continue;
            };
            batch.remove(lease.due_key);
            let due_at = delivery.due_at;
            let target = self.requeue(&mut batch, &mut delivery, book, due_at);
            book.enter(lease.sub, target);
        }
        self.write_now(book, batch)
    }

    /// Files a delivery (its old key already removed) as due at `due_at`, or held when its
    /// subscription is held; returns the new state.
    pub(super) fn requeue(
        &self,
        batch: &mut Ops,
        delivery: &mut Delivery,
        book: &mut Book,
        due_at: u64,
    ) -> DeliveryState {
        delivery.due_at = due_at;
        file_order_key(batch, delivery);
        if book.held.contains(&delivery.subscription_id) {
            delivery.state = DeliveryState::Held;
            batch.insert(
                key(HELD, &[delivery.subscription_id, delivery.id]),
                codec::encode_delivery(delivery),
            );
        } else {
            delivery.state = DeliveryState::Due;
            batch.insert(due_key_of(delivery), due_value(delivery));
            // Every reader of the index applies the write-behind buffer first, so it may know
            // of this before sled does. Past the window, only the buffer has it: a read on
            // from disk must apply the buffer first (`top_up`).
            let sub = delivery.subscription_id;
            if !book.due.insert(sub, entry_of(delivery)) {
                book.behind_beyond.insert(sub);
            }
            book.retrying(delivery.subscription_id, delivery.attempts, true);
        }
        delivery.state
    }

    /// Takes a delivery out of flight and files it as `finish` says, with its attempt; only
    /// buffered when it returns (see `write_behind.rs`). Like every settle, it fails with
    /// [`StoreError::UnknownDelivery`] when `token` is not the delivery's current lease.
    /// Returns the delivery's subscription.
    fn settle(
        &self,
        token: LeaseToken,
        attempt: Option<Attempt>,
        finish: Finish,
    ) -> Result<u64, StoreError> {
        let id = token.delivery_id();
        let sub = {
            let mut book = self.book()?;
            if book.buffered(id) {
                self.apply_behind(&mut book)?;
            }
            // A settle of a lease that expired (its worker was stuck past it) must not settle
            // the delivery's new lease, which another worker holds.
            let current = book
                .leased
                .get(&id)
                .is_some_and(|lease| lease.token == token.lease());
            if !current {
                return Err(StoreError::UnknownDelivery(id));
            }
            let lease = book
                .leased
                .remove(&id)
                .ok_or(StoreError::UnknownDelivery(id))?;
            book.deadlines.remove(&(lease.until, id));
            let sub = lease.sub;
            if lease.attempts > 0 {
                let d = book.disk.entry(sub).or_default();
                d.retrying_in_flight = d.retrying_in_flight.saturating_sub(1);
            }
            // A delivered one needs no read: its record just goes. The others are filed anew
            // from their record, which stays under the due key while in flight.
            let record = match finish {
                Finish::Delivered => None,
                Finish::Due(_) | Finish::Dead(_) => match self.stored_due(&lease.due_key) {
                    Ok(Some(delivery)) => Some(delivery),
                    Ok(None) => None,
                    Err(error) => {
                        if lease.attempts > 0 {
                            book.disk.entry(sub).or_default().retrying_in_flight += 1;
                        }
                        book.deadlines.insert((lease.until, id));
                        book.leased.insert(id, lease);
                        return Err(error);
                    }
                },
            };
            let mut batch = Ops::default();
            batch.remove(lease.due_key.clone());
            let mut number = 0;
            if let Some(mut attempt) = attempt {
                // Within 1,024 bytes, it is within 1,024 characters.
                if attempt.excerpt.len() > 1024 {
                    attempt.excerpt = attempt.excerpt.chars().take(1024).collect();
                }
                number = attempt.number;
                book.behind_attempts.push(Filed {
                    sub,
                    at: attempt.at,
                    id,
                    n: u64::from(attempt.number),
                    bytes: codec::encode(&attempt),
                });
            }
            let next = match (finish, record) {
                (Finish::Delivered, _) => {
                    let counts = book.counts(sub);
                    counts.delivered += 1;
                    batch.insert(key(DELIVERED, &[sub]), counts.delivered.to_be_bytes());
                    None
                }
                // The record vanished (moved aside as corrupt): nothing to file.
                (_, None) => None,
                (Finish::Due(due_at), Some(mut delivery)) => {
                    delivery.attempts = delivery.attempts.max(number);
                    Some(self.requeue(&mut batch, &mut delivery, &mut book, due_at))
                }
                (Finish::Dead(at), Some(mut delivery)) => {
                    delivery.attempts = delivery.attempts.max(number);
                    delivery.state = DeliveryState::Dead { at };
                    batch.insert(key(DEAD, &[sub, id]), codec::encode_delivery(&delivery));
                    Some(delivery.state)
                }
            };
            // Delivered, dead or gone: the next of its key may go.
            let left = !matches!(next, Some(DeliveryState::Due | DeliveryState::Held));
            if let (Some(range), true) = (&lease.order, left) {
                if let Err(error) = self.leave_key(&mut book, &mut batch, range, id) {
                    // Its entry goes all the same; the next of its key is filed on open.
                    tracing::error!(%error, delivery = id, "could not file the next of its key");
                }
            }
            book.behind.append(batch);
            book.behind_ids.insert(id);
            let since = *book.behind_since.get_or_insert_with(Instant::now);
            book.leave(sub, DeliveryState::InFlight { until: lease.until });
            if let Some(state) = next {
                book.enter(sub, state);
            }
            if lease.ordered {
                book.ordered_in_flight.remove(&sub);
            }
            if book.behind_ids.len() >= BEHIND_MAX || since.elapsed() >= BEHIND_AGE {
                self.hand_off_behind(book)?;
            }
            sub
        };
        // Not flushed here, and only buffered (see `Book::behind`): an outcome lost in a crash
        // leaves the delivery in flight, and reopening returns it to the queue, so it is sent
        // again (at least once). Waiting for a flush per attempt would make the workers, not
        // the receivers, the bottleneck.
        Ok(sub)
    }

    /// Files enqueued deliveries once their batch is applied: into the due index, or held when
    /// their subscription is held now (whatever it was when they were enqueued).
    pub(super) fn file_applied(&self, book: &mut Book, applied: Vec<Delivery>) {
        let mut moves = Ops::default();
        if let Some(last) = applied.iter().map(|d| d.id).max() {
            book.filed_below = book.filed_below.max(last + 1);
        }
        for delivery in applied {
            let (sub, entry) = (delivery.subscription_id, entry_of(&delivery));
            if !book.held.contains(&sub) {
                // One behind another of its key is filed when that one leaves; a failed check
                // leaves it to the lease's.
                if !self.first_of_key(book, &delivery).unwrap_or(true) {
                    continue;
                }
                // Kept even past the window (within the bytes allowed): it is leased once the
                // window gets there, and a lease that reads from sled waits behind its writes.
                book.due.insert(sub, entry);
                book.fresh.keep(delivery);
            } else if let Err(error) = self.move_to_held(&mut moves, book, sub, entry) {
                // Left due: the engine holds what it leases for a switched-off subscription.
                tracing::error!(%error, subscription = sub, "could not hold an enqueued delivery");
                book.due.insert(sub, entry);
            }
        }
        if let Err(error) = self.write_now(book, moves) {
            tracing::error!(%error, "could not hold deliveries enqueued meanwhile");
        }
    }

    /// Writes a change's batch now, after the write-behind buffer and in the same sled batch
    /// as the counts it changed (see [`Book::take_behind`]); nothing for no writes.
    pub(super) fn write_now(&self, book: &mut Book, mut ops: Ops) -> Result<(), StoreError> {
        if ops.is_empty() {
            return Ok(());
        }
        ops.append(book.counts_ops());
        book.behind.append(ops);
        self.apply_behind(book)
    }

    /// Moves every due record of `sub` on disk to held, but those in flight (held when they
    /// come back) and those of group commits not filed yet (`file_applied` holds them): the
    /// writes go into `batch`. Reads them from disk, since the due index has only the first
    /// few; the write-behind buffer must be applied.
    pub(super) fn hold_due(
        &self,
        batch: &mut Ops,
        book: &mut Book,
        sub: u64,
    ) -> Result<(), StoreError> {
        book.due.drop_subscription(sub);
        let mut failed = None;
        for tag in [DUE, ORDERED] {
            for k in self.queue().scan_prefix(key(tag, &[sub])).keys() {
                let k = k.db()?;
                let Some(id) = id_in_key(&k).filter(|_| k.len() == 25) else {
                    continue;
                };
                if book.leased.contains_key(&id) || id >= book.filed_below {
                    continue;
                }
                let entry = match tag {
                    DUE => Entry {
                        due_at: part(&k, 9),
                        id,
                        ordered: false,
                    },
                    _ => Entry {
                        due_at: part(&k, 17),
                        id,
                        ordered: true,
                    },
                };
                if let Err(error) = self.move_to_held(batch, book, sub, entry) {
                    // Left due (the engine holds what it leases for a held subscription); the
                    // caller hears of the first error.
                    failed.get_or_insert(error);
                }
            }
        }
        failed.map_or(Ok(()), Err)
    }

    /// Reads on from disk into `sub`'s windows of the due index when one runs low (see
    /// `due.rs`): each read takes up to [`WINDOW`] records from where the window ends,
    /// passing over deliveries in flight (on disk they stay under their due key) and ones
    /// whose group commit is not filed yet.
    pub(super) fn top_up(&self, book: &mut Book, sub: u64) -> Result<(), StoreError> {
        let Some(short) = book.due.short(sub) else {
            return Ok(());
        };
        // A delivery requeued past the window is in the write-behind buffer only: apply it
        // first, or the read would pass its key. Other settles not on disk yet are passed over
        // (`read_due`), without the wait for the buffer under the book lock.
        if book.behind_beyond.contains(&sub) || book.handed_off_beyond.contains(&sub) {
            self.apply_behind(book)?;
        }
        if let Some(after) = short.unordered {
            let after = after.map(|(due_at, id)| key(DUE, &[sub, due_at, id]));
            let (found, end) = self.read_due(book, key(DUE, &[sub]), after)?;
            let found: Vec<(u64, u64)> = found.iter().map(|k| (part(k, 9), part(k, 17))).collect();
            let end = end.map(|k| (part(&k, 9), part(&k, 17)));
            book.due.fill_unordered(sub, &found, end);
        }
        if let Some(after) = short.ordered {
            let after = after.map(|id| key(ORDERED, &[sub, id, u64::MAX]));
            let (found, end) = self.read_due(book, key(ORDERED, &[sub]), after)?;
            let found: Vec<(u64, u64)> = found.iter().map(|k| (part(k, 9), part(k, 17))).collect();
            book.due.fill_ordered(sub, &found, end.map(|k| part(&k, 9)));
        }
        Ok(())
    }

    /// Up to [`WINDOW`] due keys under `prefix` after the key `after` (from the start for
    /// `None`) that the due index may file, and the last key read if the read stopped before
    /// the end of the range.
    fn read_due(
        &self,
        book: &Book,
        prefix: Vec<u8>,
        after: Option<Vec<u8>>,
    ) -> Result<(Vec<IVec>, Option<IVec>), StoreError> {
        let start = match after {
            Some(mut k) => {
                // The first key after it: due keys are all of one length.
                k.push(0);
                k
            }
            None => prefix.clone(),
        };
        let mut found = Vec::new();
        for k in self.queue().range(start..).keys() {
            let k = k.db()?;
            if !k.starts_with(&prefix) {
                return Ok((found, None));
            }
            let Some(id) = id_in_key(&k).filter(|_| k.len() == 25) else {
                continue;
            };
            // In flight, settled but not on disk yet, or not filed by its group commit yet.
            if book.leased.contains_key(&id) || book.buffered(id) || id >= book.filed_below {
                continue;
            }
            found.push(k.clone());
            if found.len() >= WINDOW {
                return Ok((found, Some(k)));
            }
        }
        Ok((found, None))
    }

    /// Writes the moves of a due delivery (out of the due index already) to held into `batch`,
    /// and counts it held.
    pub(super) fn move_to_held(
        &self,
        batch: &mut Ops,
        book: &mut Book,
        sub: u64,
        entry: Entry,
    ) -> Result<(), StoreError> {
        let due_key = due_key(sub, entry);
        book.fresh.take(&entry);
        let Some(mut d) = self.stored_due(&due_key)? else {
            book.leave(sub, DeliveryState::Due);
            return Ok(());
        };
        batch.remove(due_key);
        book.leave(sub, DeliveryState::Due);
        book.retrying(sub, d.attempts, false);
        d.state = DeliveryState::Held;
        batch.insert(key(HELD, &[sub, entry.id]), codec::encode_delivery(&d));
        book.enter(sub, DeliveryState::Held);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sled_store::test_support::*;

    #[test]
    fn the_due_index_holds_a_window_of_each_backlog_and_reads_on_from_disk() {
        use crate::sled_store::due::WINDOW;
        let dir = tempfile::tempdir().unwrap();
        let new = |sub: u64, n: u64, due_at: u64, ordered: bool| NewDelivery {
            subscription_id: sub,
            event_ids: vec![format!("e{sub}-{n}")],
            event_type: "contact.updated".into(),
            body: format!(r#"{{"n":{n}}}"#).into_bytes(),
            due_at,
            ordered,
            message_id: format!("msg_{sub}_{n}"),
            order_key: None,
        };
        let windows = |store: &SledStore| store.book.lock().unwrap().due.len();
        {
            let store = SledStore::open(dir.path(), StoreConfig::default()).unwrap();
            // Subscription 1: 1,000 in any order, due in reverse of publish order; 2: 300
            // ordered, due as published.
            let batch = (0..1000).map(|n| new(1, n, 10_000 - n, false));
            store.enqueue(&[], batch.collect(), 0).unwrap();
            let batch = (0..300).map(|n| new(2, n, n, true));
            store.enqueue(&[], batch.collect(), 0).unwrap();
            assert!(
                windows(&store) <= 4 * WINDOW,
                "{} in memory",
                windows(&store)
            );
            assert_eq!(store.counts().unwrap().due, 1300);
        }
        let store = SledStore::open(dir.path(), StoreConfig::default()).unwrap();
        assert!(
            windows(&store) <= 2 * WINDOW,
            "{} in memory",
            windows(&store)
        );
        assert_eq!(store.subscription_counts(1).unwrap().due, 1000);
        assert_eq!(store.subscription_counts(2).unwrap().due, 300);
        // The head of 2 fails once and is due later: 2 waits for it, in publish order.
        let first = store.lease_within(0, 1, &LeaseLimits::new(0).subscription(2, 1));
        let head = first.unwrap().pop().unwrap();
        assert_eq!(head.delivery.event_ids, ["e2-0"]);
        store
            .reschedule(
                head.token,
                400,
                Attempt {
                    number: 1,
                    at: 1,
                    duration_ms: 1,
                    status: Some(500),
                    outcome: "http 500".into(),
                    excerpt: String::new(),
                },
            )
            .unwrap();
        let (mut of_1, mut of_2) = (Vec::new(), Vec::new());
        let mut now = 0;
        for _ in 0..10_000 {
            now += 5;
            let leased = store.lease(now, 7).unwrap();
            if leased.is_empty() && now > 20_000 {
                break;
            }
            for l in leased {
                let d = &l.delivery;
                match d.subscription_id {
                    1 => of_1.push(d.due_at),
                    _ => of_2.push(d.event_ids[0].clone()),
                }
                store
                    .complete(
                        l.token,
                        Attempt {
                            number: d.attempts + 1,
                            at: now,
                            duration_ms: 1,
                            status: Some(200),
                            outcome: "delivered".into(),
                            excerpt: String::new(),
                        },
                    )
                    .unwrap();
            }
            assert!(
                windows(&store) <= 4 * WINDOW,
                "{} in memory",
                windows(&store)
            );
        }
        assert_eq!(of_1.len(), 1000, "each once");
        assert!(of_1.windows(2).all(|w| w[0] <= w[1]), "in due order");
        let expected: Vec<String> = (0..300).map(|n| format!("e2-{n}")).collect();
        assert_eq!(of_2, expected, "in publish order, the retried head first");
        let counts = store.counts().unwrap();
        assert_eq!(
            (counts.due, counts.in_flight, counts.delivered),
            (0, 0, 1300)
        );
        drop(store);
        let store = SledStore::open(dir.path(), StoreConfig::default()).unwrap();
        let counts = store.counts().unwrap();
        assert_eq!(
            (counts.due, counts.retrying, counts.delivered),
            (0, 0, 1300)
        );
    }

    #[test]
    fn a_layout_4_store_is_filed_by_subscription_and_counted_on_open() {
        let dir = tempfile::tempdir().unwrap();
        {
            // What a layout-4 build left: due records under `q due_at id`, no counts.
            let db = sled::open(dir.path()).unwrap();
            db.open_tree("meta")
                .unwrap()
                .insert(FORMAT_KEY, &[4u8])
                .unwrap();
            let queue = db.open_tree("queue").unwrap();
            for (id, sub, ordered) in [(1, 10, false), (2, 11, true), (3, 10, false)] {
                let mut d = sample(id, sub, ordered);
                d.attempts = u32::from(id == 3);
                queue
                    .insert(key(DUE, &[d.due_at, id]), due_value(&d))
                    .unwrap();
            }
            let mut dead = sample(4, 10, false);
            dead.state = DeliveryState::Dead { at: 7 };
            queue
                .insert(key(DEAD, &[10, 4]), codec::encode_delivery(&dead))
                .unwrap();
            queue
                .insert(NEXT_DELIVERY, &5u64.to_be_bytes()[..])
                .unwrap();
            db.flush().unwrap();
        }
        let store = open_after_raw_sled(dir.path());
        let counts = store.counts().unwrap();
        assert_eq!((counts.due, counts.retrying, counts.dead), (3, 1, 1));
        assert!(
            store
                .test_queue()
                .scan_prefix([DUE])
                .keys()
                .all(|k| k.unwrap().len() == 25),
            "no key of layout 4 left"
        );
        assert_eq!(stored_layout(&store), Some(LAYOUT));
        drop(store);
        let store = open_after_raw_sled(dir.path());
        assert_eq!(store.counts().unwrap().due, 3, "counted on disk");
        let mut ids: Vec<u64> = store
            .lease(10, 10)
            .unwrap()
            .iter()
            .map(|l| l.delivery.id)
            .collect();
        ids.sort();
        assert_eq!(ids, [1, 2, 3]);
        let receipt = store
            .enqueue(
                &[],
                vec![NewDelivery {
                    subscription_id: 10,
                    event_ids: vec![],
                    event_type: "a.b".into(),
                    body: vec![],
                    due_at: 0,
                    ordered: false,
                    message_id: "msg".into(),
                    order_key: None,
                }],
                0,
            )
            .unwrap();
        assert_eq!(receipt.delivery_ids, [5]);
    }

    #[test]
    fn a_lease_hands_out_a_kept_record_exactly_as_it_is_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let new = |n: u64| NewDelivery {
            subscription_id: n % 3 + 1,
            event_ids: vec![format!("e{n}")],
            event_type: "contact.updated".into(),
            body: format!(r#"{{"n":{n}}}"#).into_bytes(),
            due_at: 0,
            ordered: false,
            message_id: format!("msg_{n}"),
            order_key: None,
        };
        // Room for three of the six records (all of one size).
        let one = Fresh::size(&Delivery {
            id: 0,
            subscription_id: 1,
            event_ids: vec!["e0".into()],
            event_type: "contact.updated".into(),
            body: br#"{"n":0}"#.to_vec(),
            attempts: 0,
            due_at: 0,
            created_at: 0,
            ordered: false,
            state: DeliveryState::Due,
            message_id: "msg_0".into(),
            order_key: None,
        });
        let config = StoreConfig {
            fresh_capacity: 3 * one,
            ..StoreConfig::default()
        };
        let store = SledStore::open(dir.path(), config).unwrap();
        let kept = |store: &SledStore| store.book.lock().unwrap().fresh.records.len();
        let ids = store
            .enqueue(&[], (0..6).map(new).collect(), 1)
            .unwrap()
            .delivery_ids;
        assert_eq!(kept(&store), 3, "kept up to the capacity");

        // A hold takes its subscription's records out (they move to another key on disk);
        // the resumed ones are read from disk again.
        store.hold_subscription(1).unwrap();
        let after_hold = kept(&store);
        assert!(after_hold < 3, "subscription 1 had a kept record");
        store.resume_subscription(1, 5).unwrap();
        // A delivery passed over by the limits keeps its kept record.
        let only_one = LeaseLimits::new(0).subscription(1, usize::MAX);
        let mut leased: Vec<Delivery> = store
            .lease_within(10, 10, &only_one)
            .unwrap()
            .into_iter()
            .map(|l| l.delivery)
            .collect();
        assert!(leased.iter().all(|d| d.subscription_id == 1));
        assert_eq!(kept(&store), after_hold);

        leased.extend(store.lease(10, 10).unwrap().into_iter().map(|l| l.delivery));
        assert_eq!(kept(&store), 0, "a lease takes what it hands out");
        assert_eq!(store.book.lock().unwrap().fresh.bytes, 0);
        let mut leased_ids: Vec<u64> = leased.iter().map(|d| d.id).collect();
        leased_ids.sort();
        assert_eq!(leased_ids, ids);
        for delivery in leased {
            assert_eq!(
                Some(&delivery),
                store.delivery(delivery.id).unwrap().as_ref()
            );
        }
    }
}
