//! The delivery queue on PostgreSQL: leases claimed in batches with `FOR UPDATE SKIP LOCKED`,
//! each with a token and a deadline; settles by token; hold and resume; counts from
//! `queue_state`.
//!
//! A lease first returns expired leases to the queue, then claims subscriptions: their
//! `queue_state` rows, least recently served first, `FOR UPDATE SKIP LOCKED`, so two
//! instances never lease for one subscription at once, and what each has in flight (counted
//! in that row, cluster-wide) bounds what it takes. Work is dealt round-robin among the
//! claimed subscriptions, one delivery each per round, so one subscription's backlog never
//! starves another's due work; within a subscription deliveries go in due order (ordered ones
//! in id order, one in flight). The deliveries themselves are then claimed
//! `FOR UPDATE SKIP LOCKED` and marked in flight in one statement.

use std::time::Duration;

use callout_store::{
    Attempt, Change, Counts, EnqueueReceipt, LeaseLimits, LeaseToken, Leased, NewDelivery, Queue,
    StoreError,
};

use crate::changes::notify;
use crate::conn::{Fail, Tx};
use crate::rows::{
    decode, delivery_columns, int, lock_subscriptions, millis, move_aside, uint, Deltas, DUE, HELD,
    IN_FLIGHT,
};
use crate::PgStore;

/// The most expired leases one lease call returns to the queue (the next call takes more).
const RECLAIM_BATCH: i64 = 1_000;

/// A subscription that may get deliveries in this lease.
struct Candidate {
    sub: i64,
    /// How many more it may have in flight (its bound less what it has).
    room: u64,
    /// Its due deliveries (an upper bound of those due now).
    due: u64,
    unordered_due: bool,
    /// Its ordered head, when it may go now.
    head: Option<i64>,
    shares: bool,
    /// What this lease gives it.
    take_head: bool,
    unordered: i64,
}

impl Queue for PgStore {
    fn enqueue(
        &self,
        dedup_event_ids: &[String],
        deliveries: Vec<NewDelivery>,
        now_ms: u64,
    ) -> Result<EnqueueReceipt, StoreError> {
        if deliveries.is_empty() && dedup_event_ids.is_empty() {
            return Ok(EnqueueReceipt::default());
        }
        self.writer.enqueue(dedup_event_ids, deliveries, now_ms)
    }

    fn lease_within(
        &self,
        now_ms: u64,
        max: usize,
        limits: &LeaseLimits,
    ) -> Result<Vec<Leased>, StoreError> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let limits = limits.clone();
        let until = now_ms.saturating_add(millis(self.config.lease));
        self.pool.run(move |conn| {
            conn.transact(|tx| {
                reclaim_expired(tx, now_ms)?;
                lease(tx, now_ms, until, max, &limits)
            })
        })
    }

    fn complete(&self, lease: LeaseToken, attempt: Attempt) -> Result<(), StoreError> {
        self.settle(lease, Some(attempt), Finish::Delivered)
    }

    fn reschedule(
        &self,
        lease: LeaseToken,
        due_at: u64,
        attempt: Attempt,
    ) -> Result<(), StoreError> {
        self.settle(lease, Some(attempt), Finish::Due(due_at))
    }

    fn release(&self, lease: LeaseToken, due_at: u64) -> Result<(), StoreError> {
        self.settle(lease, None, Finish::Due(due_at))
    }

    fn dead_letter(&self, lease: LeaseToken, attempt: Attempt) -> Result<(), StoreError> {
        let at = attempt.at;
        self.settle(lease, Some(attempt), Finish::Dead(at))
    }

    fn hold_subscription(&self, sub: u64) -> Result<(), StoreError> {
        let sub = int(sub);
        self.pool.run(move |conn| {
            conn.transact_durably(|tx| {
                tx.execute(
                    "INSERT INTO queue_state (subscription, held_sub) VALUES ($1, true) \
                     ON CONFLICT (subscription) DO UPDATE SET held_sub = true",
                    &[&sub],
                )?;
                let moved = tx.query(
                    "UPDATE deliveries SET state = 2 WHERE state = 0 AND subscription = $1 \
                     RETURNING attempts",
                    &[&sub],
                )?;
                let mut deltas = Deltas::default();
                for row in &moved {
                    deltas.state(sub, DUE, row.get(0), false, -1);
                    deltas.state(sub, HELD, 0, false, 1);
                }
                deltas.apply(tx)?;
                Ok(())
            })
        })
    }

    fn resume_subscription(&self, sub: u64, now_ms: u64) -> Result<u64, StoreError> {
        let (sub, now) = (int(sub), int(now_ms));
        self.pool.run(move |conn| {
            conn.transact_durably(|tx| {
                tx.execute(
                    "UPDATE queue_state SET held_sub = false WHERE subscription = $1",
                    &[&sub],
                )?;
                let moved = tx.query(
                    "UPDATE deliveries SET state = 0, due_at = LEAST(due_at, $2) \
                     WHERE state = 2 AND subscription = $1 RETURNING attempts",
                    &[&sub, &now],
                )?;
                let mut deltas = Deltas::default();
                for row in &moved {
                    deltas.state(sub, HELD, 0, false, -1);
                    deltas.state(sub, DUE, row.get(0), false, 1);
                }
                deltas.apply(tx)?;
                if !moved.is_empty() {
                    notify(tx, Change::Due)?;
                }
                Ok(moved.len() as u64)
            })
        })
    }

    fn next_due_at(&self) -> Result<Option<u64>, StoreError> {
        self.pool.run(|conn| {
            conn.transact(|tx| {
                let row = tx.query_opt(
                    "SELECT LEAST((SELECT min(due_at) FROM deliveries WHERE state = 0), \
                                  (SELECT min(lease_until) FROM deliveries WHERE state = 1))",
                    &[],
                )?;
                Ok(row.and_then(|row| row.get::<_, Option<i64>>(0)).map(uint))
            })
        })
    }

    fn counts(&self) -> Result<Counts, StoreError> {
        self.pool.run(|conn| {
            conn.transact(|tx| {
                let row = tx.query_opt(
                    "SELECT COALESCE(sum(due), 0)::int8, COALESCE(sum(retrying), 0)::int8, \
                            COALESCE(sum(in_flight), 0)::int8, COALESCE(sum(held), 0)::int8, \
                            COALESCE(sum(delivered), 0)::int8, COALESCE(sum(dead), 0)::int8 \
                     FROM queue_state",
                    &[],
                )?;
                Ok(row.map(|row| counts_of(&row)).unwrap_or_default())
            })
        })
    }

    fn subscription_counts(&self, sub: u64) -> Result<Counts, StoreError> {
        let sub = int(sub);
        self.pool.run(move |conn| {
            conn.transact(|tx| {
                let row = tx.query_opt(
                    "SELECT due, retrying, in_flight, held, delivered, dead FROM queue_state \
                     WHERE subscription = $1",
                    &[&sub],
                )?;
                Ok(row.map(|row| counts_of(&row)).unwrap_or_default())
            })
        })
    }

    fn flush(&self) -> Result<(), StoreError> {
        // A commit that waits for the WAL flush makes every earlier commit durable too (the
        // settles, committed without waiting): the WAL is flushed in order.
        self.pool.run(|conn| {
            conn.transact_durably(|tx| {
                tx.query("SELECT txid_current()", &[])?;
                Ok(())
            })
        })
    }

    fn lease_duration(&self) -> Option<Duration> {
        Some(self.config.lease)
    }
}

fn counts_of(row: &postgres::Row) -> Counts {
    let get = |n: usize| uint(row.get(n));
    Counts {
        due: get(0),
        retrying: get(1),
        in_flight: get(2),
        held: get(3),
        delivered: get(4),
        dead: get(5),
    }
}

/// Returns deliveries whose lease expired to the queue (held, if their subscription is now),
/// a bounded batch per call.
fn reclaim_expired(tx: &mut Tx<'_>, now_ms: u64) -> Result<(), Fail> {
    let now = int(now_ms);
    let subs: Vec<i64> = tx
        .query(
            "SELECT DISTINCT subscription FROM \
               (SELECT subscription FROM deliveries WHERE state = 1 AND lease_until <= $1 \
                ORDER BY lease_until LIMIT $2) expired",
            &[&now, &RECLAIM_BATCH],
        )?
        .iter()
        .map(|row| row.get(0))
        .collect();
    if subs.is_empty() {
        return Ok(());
    }
    lock_subscriptions(tx, &subs)?;
    let moved = tx.query(
        "UPDATE deliveries d SET state = CASE WHEN q.held_sub THEN 2 ELSE 0 END, \
                                 lease = NULL, lease_until = NULL \
         FROM queue_state q \
         WHERE d.state = 1 AND d.lease_until <= $1 AND d.subscription = ANY($2) \
           AND q.subscription = d.subscription \
         RETURNING d.id, d.subscription, d.state, d.attempts, d.ordered",
        &[&now, &subs],
    )?;
    let mut deltas = Deltas::default();
    for row in &moved {
        let (id, sub): (i64, i64) = (row.get(0), row.get(1));
        let (state, attempts, ordered): (i16, i32, bool) = (row.get(2), row.get(3), row.get(4));
        tracing::warn!(
            subscription = sub,
            delivery = id,
            "lease expired; delivery returns to the queue"
        );
        deltas.state(sub, IN_FLIGHT, attempts, ordered, -1);
        deltas.state(sub, state, attempts, ordered, 1);
    }
    deltas.apply(tx)?;
    Ok(())
}

/// The condition on a due delivery `d` that its order key (if any) lets it go now: no earlier
/// delivery of its subscription and key is due, in flight or held (dead ones no longer
/// count). Only the key's head passes, so one statement never picks two of one key, and a
/// rescheduled head keeps the later ones waiting. The subscription's `queue_state` row, locked
/// by the lease, makes this hold across instances.
macro_rules! key_is_free {
    () => {
        "(d.order_key IS NULL OR NOT EXISTS ( \
           SELECT 1 FROM deliveries e \
           WHERE e.subscription = d.subscription AND e.order_key = d.order_key \
             AND e.state < 3 AND e.id < d.id))"
    };
}

fn lease(
    tx: &mut Tx<'_>,
    now_ms: u64,
    until_ms: u64,
    max: usize,
    limits: &LeaseLimits,
) -> Result<Vec<Leased>, Fail> {
    let now = int(now_ms);
    // More subscriptions than the call can serve are not needed; a few more than `max` are
    // claimed, since some may be at their bound.
    let claim = i64::try_from(max.saturating_mul(2).saturating_add(8)).unwrap_or(i64::MAX);
    // Least recently served first; among those never served, the one due earliest. The
    // lateral part looks at each subscription's first due delivery (unordered) and its
    // ordered head (when none of its ordered ones is in flight), through the partial
    // indexes: one probe each.
    let rows = tx.query(
        concat!(
            "SELECT q.subscription, q.in_flight, q.due, f.id IS NOT NULL, h.id \
         FROM queue_state q \
         LEFT JOIN LATERAL ( \
           SELECT d.id, d.due_at FROM deliveries d \
           WHERE d.subscription = q.subscription AND d.state = 0 AND NOT d.ordered \
             AND d.due_at <= $1 AND ",
            key_is_free!(),
            " \
           ORDER BY d.due_at, d.id LIMIT 1) f ON true \
         LEFT JOIN LATERAL ( \
           SELECT o.id, o.due_at FROM ( \
             SELECT o.id, o.state, o.due_at FROM deliveries o \
             WHERE o.subscription = q.subscription AND o.ordered AND o.state IN (0, 1) \
             ORDER BY o.id LIMIT 1) o \
           WHERE q.ordered_in_flight = 0 AND o.state = 0 AND o.due_at <= $1) h ON true \
         WHERE q.due > 0 AND NOT q.held_sub AND (f.id IS NOT NULL OR h.id IS NOT NULL) \
         ORDER BY q.served, LEAST(f.due_at, h.due_at), LEAST(f.id, h.id) \
         LIMIT $2 \
         FOR UPDATE OF q SKIP LOCKED"
        ),
        &[&now, &claim],
    )?;
    let mut candidates: Vec<Candidate> = rows
        .iter()
        .map(|row| {
            let sub: i64 = row.get(0);
            let in_flight = uint(row.get(1));
            let bound = limits.bound(uint(sub)) as u64;
            Candidate {
                sub,
                room: bound.saturating_sub(in_flight),
                due: uint(row.get(2)),
                unordered_due: row.get(3),
                head: row.get(4),
                shares: limits.shares(uint(sub)),
                take_head: false,
                unordered: 0,
            }
        })
        .collect();
    if candidates.is_empty() {
        return Ok(Vec::new());
    }
    let shared_room = shared_room(tx, limits)?;
    deal(&mut candidates, max, shared_room);
    let (subs, counts): (Vec<i64>, Vec<i64>) = candidates
        .iter()
        .filter(|c| c.unordered > 0)
        .map(|c| (c.sub, c.unordered))
        .unzip();
    let heads: Vec<i64> = candidates
        .iter()
        .filter(|c| c.take_head)
        .filter_map(|c| c.head)
        .collect();
    if subs.is_empty() && heads.is_empty() {
        return Ok(Vec::new());
    }
    let until = int(until_ms);
    let rows = tx.query(
        concat!(
            "WITH picked AS ( \
               SELECT p.id FROM unnest($1::int8[], $2::int8[]) AS w(subscription, n) \
               CROSS JOIN LATERAL ( \
                 SELECT d.id FROM deliveries d \
                 WHERE d.subscription = w.subscription AND d.state = 0 AND NOT d.ordered \
                   AND d.due_at <= $3 AND ",
            key_is_free!(),
            " \
                 ORDER BY d.due_at, d.id LIMIT w.n \
                 FOR UPDATE SKIP LOCKED) p \
             ) \
             UPDATE deliveries d SET state = 1, lease = nextval('lease_ids'), lease_until = $5 \
             WHERE d.id = ANY(ARRAY(SELECT id FROM picked) || $4::int8[]) \
               AND d.state = 0 AND d.due_at <= $3 \
             RETURNING ",
            delivery_columns!()
        ),
        &[&subs, &counts, &now, &heads, &until],
    )?;
    let mut deltas = Deltas::default();
    let mut by_sub: std::collections::HashMap<i64, Vec<Leased>> = Default::default();
    for row in &rows {
        let (id, sub): (i64, i64) = (row.get(0), row.get(1));
        let attempts: i32 = row.try_get(6).unwrap_or(0);
        let ordered: bool = row.try_get(9).unwrap_or(false);
        deltas.state(sub, DUE, attempts, ordered, -1);
        deltas.state(sub, IN_FLIGHT, attempts, ordered, 1);
        match decode(row) {
            Ok(read) => {
                let lease = read.lease.map(uint).unwrap_or(0);
                by_sub.entry(sub).or_default().push(Leased {
                    token: LeaseToken::new(uint(id), lease),
                    delivery: read.delivery,
                });
            }
            // Counted in flight above; moving it aside takes it out of the counts again.
            Err(reason) => {
                deltas.apply(tx)?;
                deltas = Deltas::default();
                move_aside(tx, id, sub, &reason)?;
            }
        }
    }
    deltas.apply(tx)?;
    let (leased, served) = in_turns(&candidates, by_sub);
    // Each subscription's turn is where its last delivery went in this lease.
    tx.execute(
        "UPDATE queue_state q SET served = s.served \
         FROM (SELECT u.subscription, nextval('serve_order') AS served \
               FROM unnest($1::int8[]) WITH ORDINALITY AS u(subscription, turn) ORDER BY u.turn) s \
         WHERE q.subscription = s.subscription",
        &[&served],
    )?;
    Ok(leased)
}

/// The leased deliveries in the order they were dealt (one per subscription per round, in
/// the candidates' order; within a subscription its ordered head, then due order), and the
/// subscriptions in the order of the last delivery each got.
fn in_turns(
    candidates: &[Candidate],
    mut by_sub: std::collections::HashMap<i64, Vec<Leased>>,
) -> (Vec<Leased>, Vec<i64>) {
    let mut queues: Vec<(i64, std::collections::VecDeque<Leased>)> = candidates
        .iter()
        .filter_map(|c| {
            let mut got = by_sub.remove(&c.sub)?;
            got.sort_by_key(|l| (!l.delivery.ordered, l.delivery.due_at, l.delivery.id));
            Some((c.sub, got.into()))
        })
        .collect();
    let mut leased = Vec::new();
    let mut last_turns: Vec<i64> = Vec::new();
    while queues.iter().any(|(_, q)| !q.is_empty()) {
        for (sub, queue) in &mut queues {
            if let Some(next) = queue.pop_front() {
                leased.push(next);
                last_turns.retain(|s| s != sub);
                last_turns.push(*sub);
            }
        }
    }
    (leased, last_turns)
}

/// How many more the shared group may have in flight, counted cluster-wide (not locked: two
/// instances leasing at the same moment may together pass it by their batch).
fn shared_room(tx: &mut Tx<'_>, limits: &LeaseLimits) -> Result<u64, Fail> {
    let members: Vec<i64> = limits.shared_members().map(int).collect();
    if members.is_empty() {
        return Ok(u64::MAX);
    }
    let in_flight: i64 = tx
        .query_opt(
            "SELECT COALESCE(sum(in_flight), 0)::int8 FROM queue_state WHERE subscription = ANY($1)",
            &[&members],
        )?
        .map_or(0, |row| row.get(0));
    Ok((limits.shared_bound() as u64).saturating_sub(uint(in_flight)))
}

/// Deals up to `max` deliveries among the candidates, one each per round in the order given
/// (least recently served first), within each one's room and due count and the shared
/// group's room; an ordered head goes before its subscription's unordered deliveries.
fn deal(candidates: &mut [Candidate], max: usize, mut shared_room: u64) {
    let mut dealt = 0;
    loop {
        let mut progress = false;
        for c in candidates.iter_mut() {
            if dealt >= max {
                return;
            }
            if c.room == 0 || (c.shares && shared_room == 0) {
                continue;
            }
            let given = u64::from(c.take_head) + uint(c.unordered);
            if given >= c.due {
                continue;
            }
            if c.head.is_some() && !c.take_head {
                c.take_head = true;
            } else if c.unordered_due {
                c.unordered += 1;
            } else {
                continue;
            }
            c.room -= 1;
            if c.shares {
                shared_room -= 1;
            }
            dealt += 1;
            progress = true;
        }
        if !progress {
            return;
        }
    }
}

/// The settle statements' common part: the attempt ($3-$8: number, at, duration, status,
/// outcome, excerpt) recorded for the delivery `op` settled, when there is one ($9).
macro_rules! record_attempt {
    () => {
        "a AS (INSERT INTO attempts (delivery, subscription, number, at, duration_ms, status, \
                                     outcome, excerpt) \
               SELECT op.id, op.subscription, $3::int4, $4::int8, $5::int8, $6::int4, $7::text, \
                      $8::text \
               FROM op WHERE $9::bool), "
    };
}

/// Where a settle files its delivery.
#[derive(Clone, Copy)]
enum Finish {
    Delivered,
    Due(u64),
    Dead(u64),
}

impl PgStore {
    /// Takes a delivery out of flight and files it as `finish` says, with its attempt, in one
    /// transaction; [`StoreError::UnknownDelivery`] when `token` is not its current lease.
    /// Committed without waiting for the WAL flush (see the crate docs).
    fn settle(
        &self,
        token: LeaseToken,
        attempt: Option<Attempt>,
        finish: Finish,
    ) -> Result<(), StoreError> {
        let id = int(token.delivery_id());
        let lease = int(token.lease());
        self.pool
            .run(move |conn| conn.transact(|tx| settle(tx, id, lease, attempt.as_ref(), finish)))
    }
}

fn settle(
    tx: &mut Tx<'_>,
    id: i64,
    lease: i64,
    attempt: Option<&Attempt>,
    finish: Finish,
) -> Result<(), Fail> {
    let unknown = || Fail::Store(StoreError::UnknownDelivery(uint(id)));
    // The subscription's row first, as every writer locks it (see schema.rs).
    let held: bool = tx
        .query_opt(
            "SELECT q.held_sub FROM queue_state q \
             WHERE q.subscription = (SELECT subscription FROM deliveries WHERE id = $1) \
             FOR UPDATE",
            &[&id],
        )?
        .ok_or_else(unknown)?
        .get(0);
    let recorded = attempt.is_some();
    let blank = Attempt {
        number: 0,
        at: 0,
        duration_ms: 0,
        status: None,
        outcome: String::new(),
        excerpt: String::new(),
    };
    let attempt = attempt.unwrap_or(&blank);
    let number = i32::try_from(attempt.number).unwrap_or(i32::MAX);
    let at = int(attempt.at);
    let duration = int(attempt.duration_ms);
    let status = attempt.status.map(i32::from);
    // Within 1,024 bytes, it is within 1,024 characters.
    let excerpt: String = if attempt.excerpt.len() > 1024 {
        attempt.excerpt.chars().take(1024).collect()
    } else {
        attempt.excerpt.clone()
    };
    let due_at = match finish {
        Finish::Due(at) | Finish::Dead(at) => int(at),
        Finish::Delivered => 0,
    };
    let mut params: Vec<&(dyn postgres::types::ToSql + Sync)> = vec![
        &id,
        &lease,
        &number,
        &at,
        &duration,
        &status,
        &attempt.outcome,
        &excerpt,
        &recorded,
    ];
    match finish {
        Finish::Delivered => {}
        Finish::Due(_) => {
            params.push(&held);
            params.push(&due_at);
        }
        Finish::Dead(_) => params.push(&due_at),
    }
    let sql = match finish {
        Finish::Delivered => concat!(
            "WITH op AS (DELETE FROM deliveries WHERE id = $1 AND state = 1 AND lease = $2 \
                         RETURNING id, subscription, ordered), ",
            record_attempt!(),
            "c AS (UPDATE queue_state q SET in_flight = q.in_flight - 1, \
                          ordered_in_flight = q.ordered_in_flight - op.ordered::int, \
                          delivered = q.delivered + 1 \
                   FROM op WHERE q.subscription = op.subscription), \
             s AS (DELETE FROM failure_streaks f USING op \
                   WHERE f.subscription = op.subscription) \
             SELECT op.id FROM op"
        ),
        // Due again at $11, or held when the subscription is ($10).
        Finish::Due(_) => concat!(
            "WITH op AS (UPDATE deliveries d \
                         SET state = CASE WHEN $10::bool THEN 2 ELSE 0 END, due_at = $11::int8, \
                             attempts = GREATEST(d.attempts, $3::int4), \
                             lease = NULL, lease_until = NULL \
                         WHERE d.id = $1 AND d.state = 1 AND d.lease = $2 \
                         RETURNING d.id, d.subscription, d.ordered, d.state, d.attempts), ",
            record_attempt!(),
            "c AS (UPDATE queue_state q SET in_flight = q.in_flight - 1, \
                          ordered_in_flight = q.ordered_in_flight - op.ordered::int, \
                          due = q.due + (op.state = 0)::int, \
                          retrying = q.retrying + (op.state = 0 AND op.attempts > 0)::int, \
                          held = q.held + (op.state = 2)::int \
                   FROM op WHERE q.subscription = op.subscription) \
             SELECT op.id FROM op"
        ),
        // Dead since $10.
        Finish::Dead(_) => concat!(
            "WITH op AS (UPDATE deliveries d \
                         SET state = 3, dead_at = $10::int8, \
                             attempts = GREATEST(d.attempts, $3::int4), \
                             lease = NULL, lease_until = NULL \
                         WHERE d.id = $1 AND d.state = 1 AND d.lease = $2 \
                         RETURNING d.id, d.subscription, d.ordered), ",
            record_attempt!(),
            "c AS (UPDATE queue_state q SET in_flight = q.in_flight - 1, \
                          ordered_in_flight = q.ordered_in_flight - op.ordered::int, \
                          dead = q.dead + 1 \
                   FROM op WHERE q.subscription = op.subscription) \
             SELECT op.id FROM op"
        ),
    };
    let row = tx.query_opt(sql, &params)?;
    row.map(|_| ()).ok_or_else(unknown)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn candidate(sub: i64, room: u64, due: u64, head: Option<i64>) -> Candidate {
        Candidate {
            sub,
            room,
            due,
            unordered_due: true,
            head,
            shares: false,
            take_head: false,
            unordered: 0,
        }
    }

    #[test]
    fn work_is_dealt_round_robin_within_room_and_due() {
        let mut candidates = vec![
            candidate(1, 100, 100, None),
            candidate(2, 100, 2, None),
            candidate(3, 1, 50, None),
        ];
        deal(&mut candidates, 8, u64::MAX);
        let dealt: Vec<i64> = candidates.iter().map(|c| c.unordered).collect();
        assert_eq!(dealt, [5, 2, 1], "the backlog of 1 does not starve 2 and 3");
    }

    #[test]
    fn an_ordered_head_goes_once_and_the_shared_room_binds_the_group() {
        let mut ordered = candidate(1, 10, 10, Some(42));
        ordered.unordered_due = false;
        let mut slow = candidate(2, 10, 10, None);
        slow.shares = true;
        let mut candidates = vec![ordered, slow];
        deal(&mut candidates, 10, 1);
        assert!(candidates[0].take_head);
        assert_eq!(candidates[0].unordered, 0);
        assert_eq!(candidates[1].unordered, 1);
    }
}
