//! Settles. Completes, the settle of nearly every delivery, go to one thread of the store:
//! the completes of a group are one statement, so workers that finish together share a round
//! trip and the statement's start-up, which on a fast receiver cost more than the send. A
//! group waits at most [`GROUP_LOCK_WAIT`] for a row lock; when it fails that way, or the
//! database refuses it, each of its completes goes again on its own, on the caller's turn of
//! the pool, where it waits as long as a lock takes. Reschedules, releases and dead letters,
//! rare beside them, go to the pool one statement each.

use std::collections::HashSet;
use std::sync::Arc;

use callout_store::{Attempt, LeaseToken, StoreError};

use crate::combine::{clone_error, Combiner, GROUP_LOCK_WAIT};
use crate::conn::{Conn, Settings};
use crate::rows::{int, uint};
use crate::PgStore;

/// The most completes one group takes; more wait for the next.
const GROUP_COMPLETES: usize = 256;

/// One complete: the delivery's id and lease number, and its attempt.
pub(crate) struct Complete {
    id: i64,
    lease: i64,
    attempt: Attempt,
}

/// What the settle thread did with a complete.
pub(crate) enum Completed {
    Done,
    /// The lease was not current.
    NotCurrent,
    /// Not done: to go on its own (the group failed, or named its lease twice), with its
    /// attempt back.
    Alone(Attempt),
}

/// The settle thread (see the module docs).
pub(crate) struct Settler(Combiner<Complete, Completed>);

impl Settler {
    pub(crate) fn start(settings: &Arc<Settings>) -> Result<Settler, StoreError> {
        let conn = Conn::new(Arc::clone(settings), false).with_lock_timeout(GROUP_LOCK_WAIT);
        let work = Box::new(|conn: &mut Conn, group: &[Complete]| complete_group(conn, group));
        Combiner::start("callout-pg-settle", "settle", conn, GROUP_COMPLETES, work).map(Settler)
    }
}

impl PgStore {
    /// Completes a delivery in the settle thread's next group, or on its own when the group
    /// could not.
    pub(crate) fn complete_delivery(
        &self,
        token: LeaseToken,
        attempt: Attempt,
    ) -> Result<(), StoreError> {
        let (id, lease) = (int(token.delivery_id()), int(token.lease()));
        let done = match self.settler.0.call(Complete { id, lease, attempt })? {
            Completed::Done => true,
            Completed::NotCurrent => false,
            // The same statement, alone, on a pool connection, which waits for locks.
            Completed::Alone(attempt) => {
                let alone = Complete { id, lease, attempt };
                self.pool
                    .run(move |conn| complete_together(conn, &[&alone]))?
                    .contains(&(id, lease))
            }
        };
        if done {
            Ok(())
        } else {
            Err(StoreError::UnknownDelivery(token.delivery_id()))
        }
    }

    /// Takes a delivery out of flight and files it as `finish` says, with its attempt, in one
    /// statement on the pool; [`StoreError::UnknownDelivery`] when `token` is not its current
    /// lease. Committed without waiting for the WAL flush (see the crate docs).
    pub(crate) fn settle(
        &self,
        token: LeaseToken,
        attempt: Option<Attempt>,
        finish: Finish,
    ) -> Result<(), StoreError> {
        let id = int(token.delivery_id());
        let lease = int(token.lease());
        self.pool
            .run(move |conn| settle_alone(conn, id, lease, attempt.as_ref(), finish))
    }
}

/// A group's completes, each one's answer in order, in one statement. A lease named twice in
/// the group goes on its own after it, so the second hears that it is no longer current.
fn complete_group(conn: &mut Conn, group: &[Complete]) -> Vec<Result<Completed, StoreError>> {
    let mut seen = HashSet::new();
    let together: Vec<bool> = group
        .iter()
        .map(|complete| seen.insert((complete.id, complete.lease)))
        .collect();
    let firsts: Vec<&Complete> = group
        .iter()
        .zip(&together)
        .filter_map(|(complete, first)| first.then_some(complete))
        .collect();
    let done = complete_together(conn, &firsts);
    group
        .iter()
        .zip(together)
        .map(|(complete, together)| {
            let alone = || Ok(Completed::Alone(complete.attempt.clone()));
            match &done {
                _ if !together => alone(),
                Ok(done) if done.contains(&(complete.id, complete.lease)) => Ok(Completed::Done),
                Ok(_) => Ok(Completed::NotCurrent),
                // A lost connection is not tried again: the completes may have committed, and
                // one that did not returns its delivery at its lease's deadline.
                Err(error) if !conn.connected() => Err(clone_error(error)),
                // Refused, or a row held past the lock wait: each on its own, so one's
                // failure is not another's and none waits here for a lock.
                Err(_) => alone(),
            }
        })
        .collect()
}

/// Completes `completes` (each a distinct lease) in one statement; the leases that were current
/// and are now done.
fn complete_together(
    conn: &mut Conn,
    completes: &[&Complete],
) -> Result<HashSet<(i64, i64)>, StoreError> {
    let mut columns = AttemptColumns::default();
    for complete in completes {
        columns.push(complete.id, complete.lease, &complete.attempt);
    }
    let rows = conn.query_alone(
        COMPLETE_TOGETHER,
        &[
            &columns.ids,
            &columns.leases,
            &columns.numbers,
            &columns.at,
            &columns.durations,
            &columns.statuses,
            &columns.outcomes,
            &columns.excerpts,
        ],
    )?;
    Ok(rows.iter().map(|row| (row.get(0), row.get(1))).collect())
}

/// The attempts of a group's completes, one array per column, for `unnest`.
#[derive(Default)]
struct AttemptColumns {
    ids: Vec<i64>,
    leases: Vec<i64>,
    numbers: Vec<i32>,
    at: Vec<i64>,
    durations: Vec<i64>,
    statuses: Vec<Option<i32>>,
    outcomes: Vec<String>,
    excerpts: Vec<String>,
}

impl AttemptColumns {
    fn push(&mut self, id: i64, lease: i64, attempt: &Attempt) {
        self.ids.push(id);
        self.leases.push(lease);
        self.numbers.push(attempt_number(attempt));
        self.at.push(int(attempt.at));
        self.durations.push(int(attempt.duration_ms));
        self.statuses.push(attempt.status.map(i32::from));
        self.outcomes.push(text(&attempt.outcome));
        self.excerpts.push(excerpt(attempt));
    }
}

fn attempt_number(attempt: &Attempt) -> i32 {
    i32::try_from(attempt.number).unwrap_or(i32::MAX)
}

/// The attempt's excerpt within the 1,024 characters a record keeps, as [`text`].
fn excerpt(attempt: &Attempt) -> String {
    // Within 1,024 bytes, it is within 1,024 characters.
    if attempt.excerpt.len() > 1024 {
        text(&attempt.excerpt.chars().take(1024).collect::<String>())
    } else {
        text(&attempt.excerpt)
    }
}

/// `s` as PostgreSQL's `text` takes it: a NUL, which it refuses (and a receiver's answer may
/// hold), becomes U+FFFD. Refused, the attempt could never be recorded, and its delivery would
/// be sent again at every lease's deadline.
fn text(s: &str) -> String {
    if s.contains('\0') {
        s.replace('\0', "\u{FFFD}")
    } else {
        s.to_string()
    }
}

/// Completes of several deliveries ($1 ids, $2 lease numbers; their attempts $3-$8, as the
/// single statement's): every subscription's `queue_state` row locked first, in order, as
/// every writer locks them (see schema.rs); `count(*)` reads all of `locked`, where `EXISTS`
/// would stop at its first row. Then as one complete each: the current leases' deliveries
/// deleted, their attempts recorded, the counts moved, the failure streaks ended.
const COMPLETE_TOGETHER: &str = "\
WITH input AS (
  SELECT * FROM unnest($1::int8[], $2::int8[], $3::int4[], $4::int8[], $5::int8[], $6::int4[],
                       $7::text[], $8::text[])
       AS i(id, lease, number, at, duration_ms, status, outcome, excerpt)),
locked AS (
  SELECT q.subscription FROM queue_state q
  WHERE q.subscription IN (SELECT d.subscription FROM deliveries d JOIN input i ON i.id = d.id)
  ORDER BY q.subscription FOR UPDATE),
op AS (
  DELETE FROM deliveries d USING input i
  WHERE d.id = i.id AND d.state = 1 AND d.lease = i.lease AND (SELECT count(*) FROM locked) > 0
  RETURNING d.id, d.lease, d.subscription, d.ordered),
a AS (
  INSERT INTO attempts (delivery, subscription, number, at, duration_ms, status, outcome, excerpt)
  SELECT op.id, op.subscription, i.number, i.at, i.duration_ms, i.status, i.outcome, i.excerpt
  FROM op JOIN input i ON i.id = op.id AND i.lease = op.lease),
c AS (
  UPDATE queue_state q
  SET in_flight = q.in_flight - c.n, ordered_in_flight = q.ordered_in_flight - c.o,
      delivered = q.delivered + c.n, kept_attempts = q.kept_attempts + c.n
  FROM (SELECT subscription, count(*) AS n, count(*) FILTER (WHERE ordered) AS o
        FROM op GROUP BY subscription) c
  WHERE q.subscription = c.subscription),
s AS (
  DELETE FROM failure_streaks f WHERE f.subscription IN (SELECT subscription FROM op))
SELECT op.id, op.lease FROM op";

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

/// The settle statements' first part: the settled delivery's subscription row, locked.
macro_rules! lock_first {
    () => {
        "locked AS (SELECT q.subscription, q.held_sub FROM queue_state q \
               WHERE q.subscription = (SELECT subscription FROM deliveries WHERE id = $1) \
               FOR UPDATE), "
    };
}

/// Where a settle other than a complete files its delivery.
#[derive(Clone, Copy)]
pub(crate) enum Finish {
    Due(u64),
    Dead(u64),
}

/// One statement, committed on its own (one round trip). The subscription's `queue_state` row
/// is locked first, as every writer locks it (see schema.rs): the settle's other parts wait
/// for `locked`, a one-time condition of each (`EXISTS (SELECT 1 FROM locked)`).
fn settle_alone(
    conn: &mut Conn,
    id: i64,
    lease: i64,
    attempt: Option<&Attempt>,
    finish: Finish,
) -> Result<(), StoreError> {
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
    let number = attempt_number(attempt);
    let at = int(attempt.at);
    let duration = int(attempt.duration_ms);
    let status = attempt.status.map(i32::from);
    let excerpt = excerpt(attempt);
    let outcome = text(&attempt.outcome);
    let (Finish::Due(due_at) | Finish::Dead(due_at)) = finish;
    let due_at = int(due_at);
    let params: [&(dyn postgres::types::ToSql + Sync); 10] = [
        &id, &lease, &number, &at, &duration, &status, &outcome, &excerpt, &recorded, &due_at,
    ];
    let sql = match finish {
        // Due again at $10, or held when the subscription is.
        Finish::Due(_) => concat!(
            "WITH ",
            lock_first!(),
            "op AS (UPDATE deliveries d \
                         SET state = CASE WHEN (SELECT held_sub FROM locked) THEN 2 ELSE 0 END, \
                             due_at = $10::int8, \
                             attempts = GREATEST(d.attempts, $3::int4), \
                             lease = NULL, lease_until = NULL \
                         WHERE d.id = $1 AND d.state = 1 AND d.lease = $2 \
                           AND EXISTS (SELECT 1 FROM locked) \
                         RETURNING d.id, d.subscription, d.ordered, d.state, d.attempts), ",
            record_attempt!(),
            "c AS (UPDATE queue_state q SET in_flight = q.in_flight - 1, \
                          ordered_in_flight = q.ordered_in_flight - op.ordered::int, \
                          due = q.due + (op.state = 0)::int, \
                          retrying = q.retrying + (op.state = 0 AND op.attempts > 0)::int, \
                          held = q.held + (op.state = 2)::int, \
                          kept_attempts = q.kept_attempts + $9::bool::int \
                   FROM op WHERE q.subscription = op.subscription) \
             SELECT op.id FROM op"
        ),
        // Dead since $10.
        Finish::Dead(_) => concat!(
            "WITH ",
            lock_first!(),
            "op AS (UPDATE deliveries d \
                         SET state = 3, dead_at = $10::int8, \
                             attempts = GREATEST(d.attempts, $3::int4), \
                             lease = NULL, lease_until = NULL \
                         WHERE d.id = $1 AND d.state = 1 AND d.lease = $2 \
                           AND EXISTS (SELECT 1 FROM locked) \
                         RETURNING d.id, d.subscription, d.ordered), ",
            record_attempt!(),
            "c AS (UPDATE queue_state q SET in_flight = q.in_flight - 1, \
                          ordered_in_flight = q.ordered_in_flight - op.ordered::int, \
                          dead = q.dead + 1, \
                          kept_attempts = q.kept_attempts + $9::bool::int \
                   FROM op WHERE q.subscription = op.subscription) \
             SELECT op.id FROM op"
        ),
    };
    let rows = conn.query_alone(sql, &params)?;
    if rows.is_empty() {
        return Err(StoreError::UnknownDelivery(uint(id)));
    }
    Ok(())
}
