//! The tallies on PostgreSQL, in tables every instance counts into: `failure_streaks` (a
//! delivered settle deletes its subscription's row in its own transaction), `callout_windows`
//! (locked by an upsert and counted by the store's one rule, so instances counting at once
//! take turns), `send_slots` (taken by one conditional upsert) and `paces` (locked and changed
//! by the store's one rule, as the windows are).

use callout_store::{CalloutCount, CalloutWindow, FailureStreak, Pace, StoreError, Tallies};

use crate::rows::{int, uint, uint32};
use crate::PgStore;

/// What deleting a subscription deletes of its tallies, in its transaction.
pub(crate) const FORGET_TALLIES: [&str; 4] = [
    "DELETE FROM failure_streaks WHERE subscription = $1",
    "DELETE FROM callout_windows WHERE subscription = $1",
    "DELETE FROM send_slots WHERE subscription = $1",
    "DELETE FROM paces WHERE subscription = $1",
];

impl Tallies for PgStore {
    fn count_failure(
        &self,
        sub: u64,
        at_ms: u64,
        event_failed: bool,
    ) -> Result<FailureStreak, StoreError> {
        let (sub, at, failed) = (int(sub), int(at_ms), i32::from(event_failed));
        self.pool.run(move |conn| {
            conn.transact(|tx| {
                // Not for a subscription deleted meanwhile: its row would outlive it.
                let row = tx.query_opt(
                    "INSERT INTO failure_streaks AS f (subscription, attempts, events, since) \
                     SELECT $1, 1, $3, $2 WHERE EXISTS (SELECT 1 FROM subscriptions WHERE id = $1) \
                     ON CONFLICT (subscription) DO UPDATE \
                     SET attempts = f.attempts + 1, events = f.events + $3 \
                     RETURNING attempts, events, since",
                    &[&sub, &at, &failed],
                )?;
                let Some(row) = row else {
                    return Ok(FailureStreak {
                        attempts: 1,
                        events: u32::from(event_failed),
                        since: at_ms,
                    });
                };
                Ok(FailureStreak {
                    attempts: uint32(row.get(0)),
                    events: uint32(row.get(1)),
                    since: uint(row.get(2)),
                })
            })
        })
    }

    fn end_failure_streak(&self, sub: u64) -> Result<(), StoreError> {
        let sub = int(sub);
        self.pool.run(move |conn| {
            conn.transact(|tx| {
                tx.execute(
                    "DELETE FROM failure_streaks WHERE subscription = $1",
                    &[&sub],
                )?;
                Ok(())
            })
        })
    }

    fn count_callout(
        &self,
        sub: u64,
        entity: &str,
        now_ms: u64,
        threshold: u64,
        delays: bool,
    ) -> Result<CalloutCount, StoreError> {
        let (sub, entity) = (int(sub), entity.to_string());
        self.pool.run(move |conn| {
            conn.transact(|tx| {
                // One statement: a missing row is inserted, an existing one "updated" to itself,
                // which locks it until the count below is written (as `lock_subscriptions`).
                let row = tx.query_one(
                    "INSERT INTO callout_windows AS w (subscription, entity, hour, count) \
                     VALUES ($1, $2, 0, 0) \
                     ON CONFLICT (subscription, entity) DO UPDATE SET hour = w.hour \
                     RETURNING hour, count, warned_hour",
                    &[&sub, &entity],
                )?;
                let mut window = CalloutWindow {
                    hour: uint(row.get(0)),
                    count: uint(row.get(1)),
                    warned_hour: row.get::<_, Option<i64>>(2).map(uint),
                };
                let counted = window.count(now_ms, threshold, delays);
                tx.execute(
                    "UPDATE callout_windows SET hour = $3, count = $4, warned_hour = $5 \
                     WHERE subscription = $1 AND entity = $2",
                    &[
                        &sub,
                        &entity,
                        &int(window.hour),
                        &int(window.count),
                        &window.warned_hour.map(int),
                    ],
                )?;
                Ok(counted)
            })
        })
    }

    fn take_send_slot(
        &self,
        sub: u64,
        now_ms: u64,
        spacing_ms: u64,
    ) -> Result<Option<u64>, StoreError> {
        let (sub, now, spacing) = (int(sub), int(now_ms), int(spacing_ms));
        self.pool.run(move |conn| {
            conn.transact(|tx| {
                // Taken when the slot is open: the row is new, or its time has come.
                let taken = tx.query_opt(
                    "INSERT INTO send_slots AS s (subscription, next_at) \
                     VALUES ($1, $2::bigint + $3::bigint) \
                     ON CONFLICT (subscription) DO UPDATE SET next_at = $2::bigint + $3::bigint \
                     WHERE s.next_at <= $2 \
                     RETURNING next_at",
                    &[&sub, &now, &spacing],
                )?;
                if taken.is_some() {
                    return Ok(None);
                }
                let next = tx.query_one(
                    "SELECT next_at FROM send_slots WHERE subscription = $1",
                    &[&sub],
                )?;
                Ok(Some(uint(next.get(0))))
            })
        })
    }

    fn pace_attempt(&self, sub: u64, quick: bool, cap: u32) -> Result<Pace, StoreError> {
        let sub = int(sub);
        self.pool.run(move |conn| {
            conn.transact(|tx| {
                // Inserted or "updated" to itself, which locks it until the pace below is
                // written (as the windows); not made for a subscription deleted meanwhile, whose
                // row would outlive it.
                let row = tx.query_opt(
                    "INSERT INTO paces AS p (subscription, quick_streak, slow) \
                     SELECT $1, 0, false WHERE EXISTS (SELECT 1 FROM subscriptions WHERE id = $1) \
                     ON CONFLICT (subscription) DO UPDATE SET slow = p.slow \
                     RETURNING quick_streak, slow",
                    &[&sub],
                )?;
                let Some(row) = row else {
                    return Ok(Pace::default().after(quick, cap));
                };
                let pace = Pace {
                    quick_streak: uint32(row.get(0)),
                    slow: row.get(1),
                }
                .after(quick, cap);
                tx.execute(
                    "UPDATE paces SET quick_streak = $2, slow = $3 WHERE subscription = $1",
                    &[
                        &sub,
                        &i32::try_from(pace.quick_streak).unwrap_or(i32::MAX),
                        &pace.slow,
                    ],
                )?;
                Ok(pace)
            })
        })
    }

    fn paces(&self) -> Result<Vec<(u64, Pace)>, StoreError> {
        self.pool.run(|conn| {
            conn.transact(|tx| {
                let rows = tx.query(
                    "SELECT subscription, quick_streak, slow FROM paces ORDER BY subscription",
                    &[],
                )?;
                Ok(rows
                    .iter()
                    .map(|row| {
                        let pace = Pace {
                            quick_streak: uint32(row.get(1)),
                            slow: row.get(2),
                        };
                        (uint(row.get(0)), pace)
                    })
                    .collect())
            })
        })
    }
}
