//! The delivery queue on PostgreSQL: leases claimed in batches with `FOR UPDATE SKIP LOCKED`,
//! each with a token and a deadline; settles by token; hold and resume; counts from
//! `queue_state`.
//!
//! A lease first returns expired leases to the queue (when one may have expired: see
//! [`ReclaimWatch`]), then reads the subscriptions that have due work, least recently served
//! first, without locks, and deals work among them round-robin, one delivery each per round,
//! so one subscription's backlog never starves another's due work. One statement then claims
//! the dealt subscriptions' `queue_state` rows `FOR UPDATE SKIP LOCKED`, so two instances
//! never lease for one subscription at once, takes again from the rows as claimed what each
//! has in flight (counted there, cluster-wide, and bounding what it takes), claims the
//! deliveries themselves `FOR UPDATE SKIP LOCKED` (in due order within a subscription;
//! ordered ones in id order, one in flight) and marks them in flight. Leases, settles and
//! enqueues are each one statement committed on its own where they can be, so no lock is
//! held across a round trip.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use callout_store::{
    Attempt, Change, Counts, EnqueueReceipt, LeaseLimits, LeaseToken, Leased, NewDelivery, Queue,
    StoreError,
};

use crate::changes::notify;
use crate::combine::{clone_error, Combiner, GROUP_LOCK_WAIT};
use crate::conn::{Conn, Fail, Settings, Tx};
use crate::rows::{
    decode, delivery_columns, int, lock_subscriptions, millis, move_aside, uint, Deltas, DUE, HELD,
    IN_FLIGHT,
};
use crate::settle::Finish;
use crate::PgStore;

/// The most expired leases one lease call returns to the queue (the next call takes more).
const RECLAIM_BATCH: i64 = 1_000;

/// When lease calls next need to look for expired leases: a look finds the earliest lease
/// still running, and a lease taken after it (by any instance with this lease duration) runs
/// at least one duration from then; so until the earlier of the two no lease can have expired,
/// and lease calls skip the look's round trip. A lease can be returned late only by as much as
/// the clock of the instance that took it is behind, or this instance's clock went back, or an
/// instance on the schema has a shorter lease duration (then at most one of this one's
/// durations late); never early, and a settle is checked by its lease number, not the time.
pub(crate) struct ReclaimWatch(AtomicU64);

impl ReclaimWatch {
    /// A watch with no look yet: the first lease looks.
    pub(crate) fn new() -> ReclaimWatch {
        ReclaimWatch(AtomicU64::new(0))
    }

    /// Whether a lease at `now_ms` looks first.
    fn due(&self, now_ms: u64) -> bool {
        now_ms >= self.0.load(Ordering::Relaxed)
    }

    /// A look left `next` as the earliest lease deadline it knows of.
    fn looked(&self, next: u64) {
        self.0.store(next, Ordering::Relaxed);
    }
}

/// The workers an engine on PostgreSQL runs unless the host says: each lease and settle is a
/// round trip, during which a worker only waits, and the workers that finish together share
/// one settle and one lease (see [`Leaser`]), so more of them cost the server less per
/// delivery.
const PREFERRED_WORKERS: usize = 32;

/// The most lease calls one group takes.
const GROUP_LEASES: usize = 64;

/// How far apart the clocks of lease calls may read and still go as one lease: workers that
/// finished together read their clocks a moment apart. Calls further apart (a test's clock,
/// say) go as leases of their own.
const LEASE_NOW_SLACK_MS: u64 = 10;

/// One lease call, for the lease thread.
pub(crate) struct LeaseCall {
    now_ms: u64,
    max: usize,
    limits: LeaseLimits,
}

/// The lease thread: concurrent lease calls with the same limits and about the same clock (the
/// workers a group of settles answered, which call again together, and the dispatcher) go as
/// one lease of all they ask for, and share its statements: so a lease costs a fraction of a
/// statement per delivery when several workers are free, and no delivery is leased for a
/// worker that is not. The deliveries are handed out in the lease's order, each call's share
/// in turn. It also owns the look for expired leases ([`ReclaimWatch`]).
pub(crate) struct Leaser(Combiner<LeaseCall, Vec<Leased>>);

impl Leaser {
    pub(crate) fn start(settings: &Arc<Settings>, lease: Duration) -> Result<Leaser, StoreError> {
        let conn = Conn::new(Arc::clone(settings), false).with_lock_timeout(GROUP_LOCK_WAIT);
        let reclaim = ReclaimWatch::new();
        let lease_ms = millis(lease);
        let work = Box::new(move |conn: &mut Conn, group: &[LeaseCall]| {
            lease_group(conn, group, &reclaim, lease_ms)
        });
        Combiner::start("callout-pg-lease", "lease", conn, GROUP_LEASES, work).map(Leaser)
    }

    /// Up to `max` due deliveries within `limits`, leased at `now_ms`.
    pub(crate) fn lease(
        &self,
        now_ms: u64,
        max: usize,
        limits: &LeaseLimits,
    ) -> Result<Vec<Leased>, StoreError> {
        self.0.call(LeaseCall {
            now_ms,
            max,
            limits: limits.clone(),
        })
    }
}

/// A group's lease calls, each one's answer in order. The earliest clock among the calls not
/// yet served leads: the calls with its limits whose clocks read at most
/// [`LEASE_NOW_SLACK_MS`] after it go as one lease at the latest clock among them, so no call
/// gets a delivery due more than that after its own clock.
fn lease_group(
    conn: &mut Conn,
    group: &[LeaseCall],
    reclaim: &ReclaimWatch,
    lease_ms: u64,
) -> Vec<Result<Vec<Leased>, StoreError>> {
    let mut answers: Vec<Option<Result<Vec<Leased>, StoreError>>> =
        group.iter().map(|_| None).collect();
    while let Some(first) = (0..group.len())
        .filter(|&n| answers[n].is_none())
        .min_by_key(|&n| group[n].now_ms)
    {
        let lead = &group[first];
        let members: Vec<usize> = (0..group.len())
            .filter(|&n| {
                answers[n].is_none()
                    && group[n].limits == lead.limits
                    && group[n].now_ms.saturating_sub(lead.now_ms) <= LEASE_NOW_SLACK_MS
            })
            .collect();
        let now_ms = members.iter().map(|&n| group[n].now_ms).max().unwrap_or(0);
        let max = members.iter().map(|&n| group[n].max).sum();
        match lease_with_look(conn, now_ms, max, &lead.limits, reclaim, lease_ms) {
            Ok(leased) => {
                let mut leased = leased.into_iter();
                for n in members {
                    answers[n] = Some(Ok(leased.by_ref().take(group[n].max).collect()));
                }
            }
            Err(error) => {
                for n in members {
                    answers[n] = Some(Err(clone_error(&error)));
                }
            }
        }
    }
    answers
        .into_iter()
        .map(|answer| answer.unwrap_or_else(|| Ok(Vec::new())))
        .collect()
}

/// A lease of up to `max` at `now_ms`, after returning expired leases when one may have
/// expired.
fn lease_with_look(
    conn: &mut Conn,
    now_ms: u64,
    max: usize,
    limits: &LeaseLimits,
    reclaim: &ReclaimWatch,
    lease_ms: u64,
) -> Result<Vec<Leased>, StoreError> {
    if max == 0 {
        return Ok(Vec::new());
    }
    // A look that fails (a row held past the connection's lock timeout, say) is tried again
    // at the next lease; the lease goes on, so one held row does not stop every lease.
    if reclaim.due(now_ms) {
        match conn.transact(|tx| reclaim_expired(tx, now_ms)) {
            Ok(next) => reclaim.looked(next.min(now_ms.saturating_add(lease_ms))),
            Err(error) => {
                tracing::warn!(%error, "could not return expired leases; next lease tries again")
            }
        }
    }
    let until = now_ms.saturating_add(lease_ms);
    lease(conn, now_ms, until, max, limits)
}

/// A subscription that may get deliveries in this lease.
struct Candidate {
    sub: i64,
    /// Its in-flight bound.
    bound: u64,
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
        self.leaser.lease(now_ms, max, limits)
    }

    fn complete(&self, lease: LeaseToken, attempt: Attempt) -> Result<(), StoreError> {
        self.complete_delivery(lease, attempt)
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

    fn preferred_workers(&self) -> Option<usize> {
        Some(PREFERRED_WORKERS)
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
/// a bounded batch per call, and tells the earliest deadline of the leases still running (one
/// already passed when expired ones remain for the next call).
fn reclaim_expired(tx: &mut Tx<'_>, now_ms: u64) -> Result<u64, Fail> {
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
        return earliest_deadline(tx);
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
    earliest_deadline(tx)
}

/// The earliest deadline of a lease running, or `u64::MAX` when none is.
fn earliest_deadline(tx: &mut Tx<'_>) -> Result<u64, Fail> {
    let row = tx.query_opt(
        "SELECT min(lease_until) FROM deliveries WHERE state = 1",
        &[],
    )?;
    Ok(row
        .and_then(|row| row.get::<_, Option<i64>>(0))
        .map_or(u64::MAX, uint))
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

/// How many times a lease reads and tries again when what it dealt was all taken or held at
/// that moment (see [`lease`]).
const LEASE_TRIES: usize = 3;

/// Leases in two statements, each committed on its own, so no lock is held between round
/// trips: the candidates are read without locks, dealt here, and the second statement locks
/// the dealt subscriptions' `queue_state` rows, takes again from their counts as locked how
/// many each may have, and leases, counts and turns in one go. When that statement gets
/// nothing though it was dealt work (another lease or a settle held the rows for that moment,
/// or took the work first), the lease reads again, a few times: so an empty answer means that
/// nothing may go now, not that a neighbour was busy.
fn lease(
    conn: &mut Conn,
    now_ms: u64,
    until_ms: u64,
    max: usize,
    limits: &LeaseLimits,
) -> Result<Vec<Leased>, StoreError> {
    for _ in 0..LEASE_TRIES {
        let leased = lease_once(conn, now_ms, until_ms, max, limits)?;
        match leased {
            Some(leased) if leased.is_empty() => continue,
            Some(leased) => return Ok(leased),
            None => return Ok(Vec::new()),
        }
    }
    Ok(Vec::new())
}

/// One try of [`lease`]: `None` when nothing may go now (no candidate, or none with room), the
/// deliveries leased otherwise (none when what was dealt was taken or held meanwhile).
fn lease_once(
    conn: &mut Conn,
    now_ms: u64,
    until_ms: u64,
    max: usize,
    limits: &LeaseLimits,
) -> Result<Option<Vec<Leased>>, StoreError> {
    let now = int(now_ms);
    // More subscriptions than the call can serve are not needed; a few more than `max` are
    // read, since some may be at their bound.
    let claim = i64::try_from(max.saturating_mul(2).saturating_add(8)).unwrap_or(i64::MAX);
    let rows = conn.query_alone(CANDIDATES, &[&now, &claim])?;
    let mut candidates: Vec<Candidate> = rows
        .iter()
        .map(|row| {
            let sub: i64 = row.get(0);
            let in_flight = uint(row.get(1));
            let bound = limits.bound(uint(sub)) as u64;
            Candidate {
                sub,
                bound,
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
        return Ok(None);
    }
    let shared_room = shared_room(conn, limits)?;
    deal(&mut candidates, max, shared_room);
    let dealt: Vec<&Candidate> = candidates
        .iter()
        .filter(|c| c.unordered > 0 || (c.take_head && c.head.is_some()))
        .collect();
    if dealt.is_empty() {
        return Ok(None);
    }
    let subs: Vec<i64> = dealt.iter().map(|c| c.sub).collect();
    let counts: Vec<i64> = dealt.iter().map(|c| c.unordered).collect();
    let heads: Vec<i64> = dealt
        .iter()
        .map(|c| if c.take_head { c.head.unwrap_or(0) } else { 0 })
        .collect();
    let bounds: Vec<i64> = dealt.iter().map(|c| int(c.bound)).collect();
    let until = int(until_ms);
    let turns = last_turns(&candidates);
    let rows = conn.query_alone(
        LEASE,
        &[&subs, &counts, &heads, &bounds, &now, &until, &turns],
    )?;
    let mut by_sub: std::collections::HashMap<i64, Vec<Leased>> = Default::default();
    for row in &rows {
        let (id, sub): (i64, i64) = (row.get(0), row.get(1));
        match decode(row) {
            Ok(read) => {
                let lease = read.lease.map(uint).unwrap_or(0);
                by_sub.entry(sub).or_default().push(Leased {
                    token: LeaseToken::new(uint(id), lease),
                    delivery: read.delivery,
                });
            }
            // Counted in flight by the lease; moving it aside takes it out of the counts again.
            // The lease has committed: a failure here must not strand the deliveries leased
            // beside it, so it is logged, and the row comes back at its deadline to be tried
            // again.
            Err(reason) => {
                if let Err(error) = conn.transact(|tx| move_aside(tx, id, sub, &reason)) {
                    tracing::error!(delivery = id, %error, "could not move a bad row aside");
                }
            }
        }
    }
    Ok(Some(in_turns(&candidates, by_sub)))
}

/// The subscriptions a lease may serve ($2 at most): least recently served first; among those
/// never served, the one due earliest. The lateral parts look at each subscription's first due
/// delivery (unordered) and its ordered head (when none of its ordered ones is in flight),
/// through the partial indexes: one probe each. Read without locks: the lease statement
/// checks again under them.
const CANDIDATES: &str = concat!(
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
     LIMIT $2"
);

/// The lease itself: for each dealt subscription ($1) its unordered count ($2), its ordered
/// head or 0 ($3) and its in-flight bound ($4). Its `queue_state` row is locked, or passed
/// over when held, or when a settle or another lease holds it at that moment (for one
/// statement: the next lease call serves it), or when it changed after the statement's
/// snapshot (`current`: every writer of a subscription's deliveries changes that row, so a
/// row as the snapshot has it means the snapshot's deliveries of it are the latest too, which
/// the checks of order below rely on). What it may have is taken again from the row as
/// locked: the head, when it is still the first of its ordered ones not dead (a replayed dead
/// letter goes before it), none of them is in flight and there is room; then unordered ones,
/// within the room left, each due ($5) and its key's head, skipping any another lease
/// locked. They go in flight until $6 with a new lease number each; the
/// subscriptions' counts follow, and each one's turn is where its last delivery went in this
/// lease, as dealt ($7). The rows picked
/// are updated by their `ctid` alone, a plan the table's statistics (often stale on a queue
/// that fills and drains within minutes) cannot turn into a scan of the due index. That is
/// enough: the unordered ones are locked by the statement, and a head that anyone changed
/// since it was read has a new `ctid` (every update makes a new row version), so it is passed
/// over.
const LEASE: &str = concat!(
    "WITH dealt AS ( \
       SELECT * FROM unnest($1::int8[], $2::int8[], $3::int8[], $4::int8[]) \
                     AS w(subscription, n, head, bound)), \
     claimed AS ( \
       SELECT q.subscription, q.in_flight, q.ordered_in_flight, q.ctid AS version \
       FROM queue_state q \
       WHERE q.subscription IN (SELECT subscription FROM dealt) AND NOT q.held_sub \
       ORDER BY q.subscription FOR UPDATE SKIP LOCKED), \
     current AS ( \
       SELECT c.* FROM claimed c \
       JOIN queue_state s ON s.subscription = c.subscription AND s.ctid = c.version), \
     plan AS ( \
       SELECT w.subscription, w.n, w.head, w.bound - c.in_flight AS room, \
              (w.head <> 0 AND c.ordered_in_flight = 0 AND w.bound > c.in_flight) AS take_head \
       FROM dealt w JOIN current c ON c.subscription = w.subscription), \
     picked AS ( \
       SELECT p.ctid FROM plan w \
       CROSS JOIN LATERAL ( \
         SELECT d.ctid FROM deliveries d \
         WHERE d.subscription = w.subscription AND d.state = 0 AND NOT d.ordered \
           AND d.due_at <= $5 AND ",
    key_is_free!(),
    " \
         ORDER BY d.due_at, d.id LIMIT GREATEST(LEAST(w.n, w.room - w.take_head::int), 0) \
         FOR UPDATE SKIP LOCKED) p \
       UNION ALL \
       SELECT h.ctid FROM plan w JOIN deliveries h ON h.id = w.head \
       WHERE w.take_head AND h.state = 0 AND h.due_at <= $5 \
         AND NOT EXISTS ( \
           SELECT 1 FROM deliveries o \
           WHERE o.subscription = h.subscription AND o.ordered AND o.state IN (0, 1) \
             AND o.id < h.id)), \
     leased AS ( \
       UPDATE deliveries d SET state = 1, lease = nextval('lease_ids'), lease_until = $6 \
       WHERE d.ctid = ANY(ARRAY(SELECT ctid FROM picked)) \
       RETURNING ",
    delivery_columns!(),
    "), \
     turns AS ( \
       SELECT u.subscription, nextval('serve_order') AS served \
       FROM unnest($7::int8[]) WITH ORDINALITY AS u(subscription, turn) ORDER BY u.turn), \
     counted AS ( \
       UPDATE queue_state q \
       SET due = q.due - c.n, retrying = q.retrying - c.retrying, \
           in_flight = q.in_flight + c.n, \
           ordered_in_flight = q.ordered_in_flight + c.ordered, served = t.served \
       FROM (SELECT subscription, count(*) AS n, \
                    count(*) FILTER (WHERE attempts > 0) AS retrying, \
                    count(*) FILTER (WHERE ordered) AS ordered \
             FROM leased GROUP BY subscription) c \
       JOIN turns t ON t.subscription = c.subscription \
       WHERE q.subscription = c.subscription) \
     SELECT * FROM leased"
);

/// The subscriptions given deliveries, in the order of the last one each gets when they are
/// dealt one per subscription per round in the candidates' order: by how many each gets,
/// then by place.
fn last_turns(candidates: &[Candidate]) -> Vec<i64> {
    let mut given: Vec<(u64, usize, i64)> = candidates
        .iter()
        .enumerate()
        .map(|(place, c)| {
            let head = u64::from(c.take_head && c.head.is_some());
            (head + uint(c.unordered), place, c.sub)
        })
        .filter(|(n, _, _)| *n > 0)
        .collect();
    given.sort_unstable();
    given.into_iter().map(|(_, _, sub)| sub).collect()
}

/// The leased deliveries in the order they were dealt: one per subscription per round, in the
/// candidates' order; within a subscription its ordered head, then due order.
fn in_turns(
    candidates: &[Candidate],
    mut by_sub: std::collections::HashMap<i64, Vec<Leased>>,
) -> Vec<Leased> {
    let mut queues: Vec<std::collections::VecDeque<Leased>> = candidates
        .iter()
        .filter_map(|c| {
            let mut got = by_sub.remove(&c.sub)?;
            got.sort_by_key(|l| (!l.delivery.ordered, l.delivery.due_at, l.delivery.id));
            Some(got.into())
        })
        .collect();
    let mut leased = Vec::new();
    while queues.iter().any(|q| !q.is_empty()) {
        for queue in &mut queues {
            if let Some(next) = queue.pop_front() {
                leased.push(next);
            }
        }
    }
    leased
}

/// How many more the shared group may have in flight, counted cluster-wide (not locked: two
/// instances leasing at the same moment may together pass it by their batch).
fn shared_room(conn: &mut Conn, limits: &LeaseLimits) -> Result<u64, StoreError> {
    let members: Vec<i64> = limits.shared_members().map(int).collect();
    if members.is_empty() {
        return Ok(u64::MAX);
    }
    let in_flight: i64 = conn
        .query_alone(
            "SELECT COALESCE(sum(in_flight), 0)::int8 FROM queue_state WHERE subscription = ANY($1)",
            &[&members],
        )?
        .first()
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

#[cfg(test)]
mod tests {
    use super::*;

    fn candidate(sub: i64, room: u64, due: u64, head: Option<i64>) -> Candidate {
        Candidate {
            sub,
            bound: room,
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
