//! What happened to deliveries, on PostgreSQL: single deliveries, attempts, dead letters with
//! their replay and purge, and retention (attempts and remembered event ids past their age or
//! their number kept go, a bounded batch per call).

use std::sync::atomic::Ordering;

use callout_store::{Attempt, Change, DeadFilter, Delivery, History, StoreError};

use crate::changes::notify;
use crate::conn::{Fail, Tx};
use crate::rows::{
    corrupt, decode, delivery_columns, int, lock_subscriptions, millis, move_aside, uint,
};
use crate::rows::{Deltas, DEAD, DUE, HELD};
use crate::PgStore;

/// The columns [`attempt`] reads, in its order.
macro_rules! attempt_columns {
    () => {
        "number, at, duration_ms, status, outcome, excerpt"
    };
}
impl History for PgStore {
    fn delivery(&self, id: u64) -> Result<Option<Delivery>, StoreError> {
        let id = int(id);
        self.pool.run(move |conn| {
            conn.transact(|tx| {
                let row = tx.query_opt(
                    concat!(
                        "SELECT ",
                        delivery_columns!(),
                        " FROM deliveries d WHERE d.id = $1"
                    ),
                    &[&id],
                )?;
                let Some(row) = row else {
                    return Ok(Ok(None));
                };
                match decode(&row) {
                    Ok(read) => Ok(Ok(Some(read.delivery))),
                    // Moved aside (committed), and the caller told.
                    Err(reason) => {
                        move_aside(tx, id, row.get(1), &reason)?;
                        Ok(Err(corrupt(format!("deliveries/{id}"), reason)))
                    }
                }
            })
        })?
    }

    fn attempts_for_delivery(&self, id: u64) -> Result<Vec<Attempt>, StoreError> {
        let id = int(id);
        self.pool.run(move |conn| {
            conn.transact(|tx| {
                let rows = tx.query(
                    concat!(
                        "SELECT ",
                        attempt_columns!(),
                        " FROM attempts WHERE delivery = $1 ORDER BY at, number"
                    ),
                    &[&id],
                )?;
                Ok(rows.iter().map(attempt).collect())
            })
        })
    }

    fn attempts_for_subscription(
        &self,
        sub: u64,
        limit: usize,
    ) -> Result<Vec<(u64, Attempt)>, StoreError> {
        let sub = int(sub);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.pool.run(move |conn| {
            conn.transact(|tx| {
                let rows = tx.query(
                    concat!(
                        "SELECT ",
                        attempt_columns!(),
                        ", delivery FROM attempts WHERE subscription = $1 \
                         ORDER BY at DESC, delivery DESC, number DESC LIMIT $2"
                    ),
                    &[&sub, &limit],
                )?;
                Ok(rows
                    .iter()
                    .map(|row| (uint(row.get(6)), attempt(row)))
                    .collect())
            })
        })
    }

    fn dead_letters(&self, filter: &DeadFilter) -> Result<Vec<Delivery>, StoreError> {
        let filter = *filter;
        self.pool.run(move |conn| {
            conn.transact(|tx| {
                let (sub, from, to) = bounds(&filter);
                let rows = tx.query(
                    concat!(
                        "SELECT ",
                        delivery_columns!(),
                        " FROM deliveries d WHERE d.state = 3 \
                           AND ($1::int8 IS NULL OR d.subscription = $1) \
                           AND d.dead_at >= $2 AND d.dead_at < $3 \
                         ORDER BY d.subscription, d.id"
                    ),
                    &[&sub, &from, &to],
                )?;
                let mut out = Vec::with_capacity(rows.len());
                for row in rows {
                    match decode(&row) {
                        Ok(read) => out.push(read.delivery),
                        Err(reason) => move_aside(tx, row.get(0), row.get(1), &reason)?,
                    }
                }
                Ok(out)
            })
        })
    }

    fn replay_dead(&self, filter: &DeadFilter, now_ms: u64) -> Result<usize, StoreError> {
        let filter = *filter;
        let now = int(now_ms);
        self.pool.run(move |conn| {
            conn.transact_durably(|tx| {
                let (sub, from, to) = bounds(&filter);
                if !lock_dead_subscriptions(tx, sub, from, to)? {
                    return Ok(0);
                }
                let moved = tx.query(
                    "UPDATE deliveries d SET state = CASE WHEN q.held_sub THEN 2 ELSE 0 END, \
                            attempts = 0, due_at = $4, dead_at = NULL \
                     FROM queue_state q \
                     WHERE d.state = 3 AND ($1::int8 IS NULL OR d.subscription = $1) \
                       AND d.dead_at >= $2 AND d.dead_at < $3 AND q.subscription = d.subscription \
                     RETURNING d.subscription, d.state",
                    &[&sub, &from, &to, &now],
                )?;
                let mut deltas = Deltas::default();
                for row in &moved {
                    let (sub, state): (i64, i16) = (row.get(0), row.get(1));
                    deltas.state(sub, DEAD, 0, false, -1);
                    deltas.state(sub, if state == HELD { HELD } else { DUE }, 0, false, 1);
                }
                deltas.apply(tx)?;
                if !moved.is_empty() {
                    notify(tx, Change::Due)?;
                }
                Ok(moved.len())
            })
        })
    }

    // Their attempts go with the retention.
    fn purge_dead(&self, filter: &DeadFilter) -> Result<usize, StoreError> {
        let filter = *filter;
        self.pool.run(move |conn| {
            conn.transact_durably(|tx| {
                let (sub, from, to) = bounds(&filter);
                if !lock_dead_subscriptions(tx, sub, from, to)? {
                    return Ok(0);
                }
                let gone = tx.query(
                    "DELETE FROM deliveries d WHERE d.state = 3 \
                       AND ($1::int8 IS NULL OR d.subscription = $1) \
                       AND d.dead_at >= $2 AND d.dead_at < $3 \
                     RETURNING d.subscription",
                    &[&sub, &from, &to],
                )?;
                let mut deltas = Deltas::default();
                for row in &gone {
                    deltas.state(row.get(0), DEAD, 0, false, -1);
                }
                deltas.apply(tx)?;
                Ok(gone.len())
            })
        })
    }

    fn prune(&self, now_ms: u64, max: usize) -> Result<usize, StoreError> {
        let attempts_before = int(now_ms.saturating_sub(millis(self.config.attempt_retention)));
        let seen_before = int(now_ms.saturating_sub(millis(self.config.dedup_retention)));
        let max = i64::try_from(max).unwrap_or(i64::MAX);
        let kept = i64::try_from(self.config.dedup_kept).unwrap_or(i64::MAX);
        let attempts_kept = i64::try_from(self.config.attempts_kept).unwrap_or(i64::MAX);
        // Counting the remembered event ids reads all of them, so it runs at most once per
        // `SEEN_COUNT_EVERY_MS`, and again at once after a full slice.
        let count_seen = self.next_seen_count_ms.load(Ordering::Relaxed) <= now_ms;
        let removed = self.pool.run(move |conn| {
            // Bounded batches, oldest first through the age and subscription indexes, so a call
            // never holds many rows locked. Each step commits on its own: the attempt steps
            // lock subscriptions' rows, each step in subscription order, and a transaction
            // that went on to a second set, or to remembered event ids (which an enqueue locks
            // before subscriptions), would take locks out of the order every writer keeps.
            let count = |rows: Vec<postgres::Row>| -> u64 {
                rows.first()
                    .map_or(0, |row| u64::try_from(row.get::<_, i64>(0)).unwrap_or(0))
            };
            let aged = count(conn.query_alone(PRUNE_AGED_ATTEMPTS, &[&attempts_before, &max])?);
            let over_kept = count(conn.query_alone(PRUNE_ATTEMPTS_OVER, &[&attempts_kept, &max])?);
            let (seen, over) = conn.transact(|tx| {
                let seen = tx.execute(
                    "DELETE FROM seen_events WHERE ctid = ANY(ARRAY( \
                       SELECT ctid FROM seen_events WHERE seen_at < $1 ORDER BY seen_at LIMIT $2))",
                    &[&seen_before, &max],
                )?;
                // Past the number kept, the oldest go whatever their age.
                let over = if count_seen {
                    tx.execute(
                        "DELETE FROM seen_events WHERE ctid = ANY(ARRAY( \
                           SELECT ctid FROM seen_events ORDER BY seen_at \
                           LIMIT LEAST($1, GREATEST(0, (SELECT count(*) FROM seen_events) - $2))))",
                        &[&max, &kept],
                    )?
                } else {
                    0
                };
                Ok((seen, over))
            })?;
            Ok((aged + over_kept + seen, over))
        })?;
        let (others, over) = removed;
        if count_seen {
            let full = i64::try_from(over).unwrap_or(i64::MAX) >= max;
            let next = if full {
                now_ms
            } else {
                now_ms.saturating_add(SEEN_COUNT_EVERY_MS)
            };
            self.next_seen_count_ms.store(next, Ordering::Relaxed);
        }
        Ok(usize::try_from(others + over).unwrap_or(usize::MAX))
    }
}

/// How often prune counts the remembered event ids for `PgConfig::dedup_kept`: the count
/// reads every row (docs/BENCHMARKS.md, PostgreSQL), and prune runs every second. Past the
/// bound by at most what a minute remembers, in between.
const SEEN_COUNT_EVERY_MS: u64 = 60_000;

/// The attempts `doomed` names deleted, and each subscription's count of attempts kept taken
/// down by its share: its `queue_state` row locked first, in order, as every writer locks
/// them (see schema.rs). Returns how many went.
macro_rules! delete_doomed_attempts {
    () => {
        "locked AS (
          SELECT q.subscription FROM queue_state q
          WHERE q.subscription IN (SELECT subscription FROM doomed)
          ORDER BY q.subscription FOR UPDATE),
        gone AS (
          DELETE FROM attempts a
          WHERE a.ctid = ANY(ARRAY(SELECT ctid FROM doomed)) AND (SELECT count(*) FROM locked) >= 0
          RETURNING a.subscription),
        counted AS (SELECT subscription, count(*) AS n FROM gone GROUP BY subscription),
        c AS (
          UPDATE queue_state q SET kept_attempts = q.kept_attempts - counted.n
          FROM counted WHERE q.subscription = counted.subscription)
        SELECT COALESCE(sum(n), 0)::int8 FROM counted"
    };
}

/// Attempts made before $1, at most $2 of them, oldest first (`attempts_by_age`).
const PRUNE_AGED_ATTEMPTS: &str = concat!(
    "WITH doomed AS (
      SELECT ctid, subscription FROM attempts WHERE at < $1 ORDER BY at LIMIT $2), ",
    delete_doomed_attempts!()
);

/// Of each subscription that has more than $1 attempts kept, its oldest past $1, at most $2
/// in all (`attempts_by_subscription`). The subscriptions' rows are locked before their
/// counts are read, so a settle that records one meanwhile is counted.
const PRUNE_ATTEMPTS_OVER: &str = concat!(
    "WITH over AS (
      SELECT q.subscription, q.kept_attempts - $1 AS n FROM queue_state q
      WHERE q.kept_attempts > $1 ORDER BY q.subscription FOR UPDATE),
    doomed AS (
      SELECT a.ctid, over.subscription FROM over CROSS JOIN LATERAL (
        SELECT ctid FROM attempts WHERE subscription = over.subscription
        ORDER BY at, delivery, number LIMIT LEAST(over.n, $2)) a
      LIMIT $2), ",
    delete_doomed_attempts!()
);

/// The filter as the statements' parameters: subscription (or NULL), from, to.
fn bounds(filter: &DeadFilter) -> (Option<i64>, i64, i64) {
    (
        filter.subscription.map(int),
        int(filter.from_ms),
        int(filter.to_ms),
    )
}

/// Locks the subscriptions that have dead letters the filter selects; whether there are any.
fn lock_dead_subscriptions(
    tx: &mut Tx<'_>,
    sub: Option<i64>,
    from: i64,
    to: i64,
) -> Result<bool, Fail> {
    let subs: Vec<i64> = tx
        .query(
            "SELECT DISTINCT subscription FROM deliveries WHERE state = 3 \
               AND ($1::int8 IS NULL OR subscription = $1) AND dead_at >= $2 AND dead_at < $3",
            &[&sub, &from, &to],
        )?
        .iter()
        .map(|row| row.get(0))
        .collect();
    if subs.is_empty() {
        return Ok(false);
    }
    lock_subscriptions(tx, &subs)?;
    Ok(true)
}

fn attempt(row: &postgres::Row) -> Attempt {
    let number: i32 = row.get(0);
    let status: Option<i32> = row.get(3);
    Attempt {
        number: u32::try_from(number).unwrap_or(0),
        at: uint(row.get(1)),
        duration_ms: uint(row.get(2)),
        status: status.and_then(|s| u16::try_from(s).ok()),
        outcome: row.get(4),
        excerpt: row.get(5),
    }
}
