//! Rows and the store's model: a `deliveries` row read back as a [`Delivery`] (one that does
//! not decode is moved to `corrupt`, never a panic), the changes to a subscription's counts a
//! transaction makes, and the conversions between the store's `u64` and PostgreSQL's `bigint`.

use std::collections::BTreeMap;

use postgres::Row;

use callout_store::{Delivery, DeliveryState, StoreError};

use crate::conn::{Fail, Tx};

/// The columns [`decode`] reads, in its order, from a `deliveries` row named `d`.
macro_rules! delivery_columns {
    () => {
        "d.id, d.subscription, d.event_ids, d.event_type, d.body, d.message_id, d.attempts, \
         d.due_at, d.created_at, d.ordered, d.state, d.lease_until, d.dead_at, d.lease, \
         d.order_key"
    };
}
pub(crate) use delivery_columns;

pub(crate) const DUE: i16 = 0;
pub(crate) const IN_FLIGHT: i16 = 1;
pub(crate) const HELD: i16 = 2;
pub(crate) const DEAD: i16 = 3;

/// A `u64` of the model as a `bigint` (times past year 292 million saturate).
pub(crate) fn int(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// A `bigint` as the model's `u64` (never negative as written; a negative one reads as 0).
pub(crate) fn uint(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

/// An `integer` count as the model's `u32` (a negative one reads as 0).
pub(crate) fn uint32(value: i32) -> u32 {
    u32::try_from(value).unwrap_or(0)
}

/// A duration in the model's milliseconds.
pub(crate) fn millis(duration: std::time::Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// A delivery read back, and its lease's number when it is in flight.
pub(crate) struct Read {
    pub(crate) delivery: Delivery,
    pub(crate) lease: Option<i64>,
}

/// The delivery in a row of [`delivery_columns`], or why it does not decode.
pub(crate) fn decode(row: &Row) -> Result<Read, String> {
    let event_ids: String = row.try_get(2).map_err(|e| e.to_string())?;
    let event_ids: Vec<String> =
        serde_json::from_str(&event_ids).map_err(|e| format!("event_ids: {e}"))?;
    let state: i16 = row.try_get(10).map_err(|e| e.to_string())?;
    let lease_until: Option<i64> = row.try_get(11).map_err(|e| e.to_string())?;
    let dead_at: Option<i64> = row.try_get(12).map_err(|e| e.to_string())?;
    let state = match (state, lease_until, dead_at) {
        (DUE, _, _) => DeliveryState::Due,
        (IN_FLIGHT, Some(until), _) => DeliveryState::InFlight { until: uint(until) },
        (HELD, _, _) => DeliveryState::Held,
        (DEAD, _, Some(at)) => DeliveryState::Dead { at: uint(at) },
        (other, _, _) => return Err(format!("state {other} is not a delivery state")),
    };
    let attempts: i32 = row.try_get(6).map_err(|e| e.to_string())?;
    let delivery = Delivery {
        id: uint(row.try_get(0).map_err(|e| e.to_string())?),
        subscription_id: uint(row.try_get(1).map_err(|e| e.to_string())?),
        event_ids,
        event_type: row.try_get(3).map_err(|e| e.to_string())?,
        body: row.try_get(4).map_err(|e| e.to_string())?,
        message_id: row.try_get(5).map_err(|e| e.to_string())?,
        attempts: u32::try_from(attempts).map_err(|_| format!("attempts {attempts}"))?,
        due_at: uint(row.try_get(7).map_err(|e| e.to_string())?),
        created_at: uint(row.try_get(8).map_err(|e| e.to_string())?),
        ordered: row.try_get(9).map_err(|e| e.to_string())?,
        order_key: row.try_get(14).map_err(|e| e.to_string())?,
        state,
    };
    Ok(Read {
        delivery,
        lease: row.try_get(13).map_err(|e| e.to_string())?,
    })
}

/// The changes a transaction makes to subscriptions' counts, applied at its end in one
/// statement. (Delivered ones are counted by the settle's own statement.)
#[derive(Default)]
pub(crate) struct Deltas(BTreeMap<i64, [i64; 6]>);

/// The places of each count in a [`Deltas`] entry, as the `UPDATE` in [`Deltas::apply`] names
/// them.
#[derive(Clone, Copy)]
pub(crate) enum Count {
    Due = 0,
    Retrying,
    InFlight,
    Held,
    Dead,
    OrderedInFlight,
}

impl Deltas {
    pub(crate) fn add(&mut self, sub: i64, count: Count, by: i64) {
        self.0.entry(sub).or_default()[count as usize] += by;
    }

    /// A delivery of `sub` left (`by` -1) or entered (+1) `state`, with its `attempts` and
    /// `ordered`.
    pub(crate) fn state(&mut self, sub: i64, state: i16, attempts: i32, ordered: bool, by: i64) {
        match state {
            DUE => {
                self.add(sub, Count::Due, by);
                if attempts > 0 {
                    self.add(sub, Count::Retrying, by);
                }
            }
            IN_FLIGHT => {
                self.add(sub, Count::InFlight, by);
                if ordered {
                    self.add(sub, Count::OrderedInFlight, by);
                }
            }
            HELD => self.add(sub, Count::Held, by),
            DEAD => self.add(sub, Count::Dead, by),
            _ => {}
        }
    }

    /// Writes the changes. The rows were locked (or created) earlier in the transaction.
    pub(crate) fn apply(&self, tx: &mut Tx<'_>) -> Result<(), postgres::Error> {
        if self.0.is_empty() {
            return Ok(());
        }
        let subs: Vec<i64> = self.0.keys().copied().collect();
        let column = |n: usize| -> Vec<i64> { self.0.values().map(|d| d[n]).collect() };
        let columns: Vec<Vec<i64>> = (0..6).map(column).collect();
        tx.execute(
            "UPDATE queue_state q SET due = q.due + c.due, retrying = q.retrying + c.retrying, \
             in_flight = q.in_flight + c.in_flight, held = q.held + c.held, \
             dead = q.dead + c.dead, ordered_in_flight = q.ordered_in_flight + c.ordered_in_flight \
             FROM unnest($1::int8[], $2::int8[], $3::int8[], $4::int8[], $5::int8[], $6::int8[], \
                         $7::int8[]) \
                  AS c(subscription, due, retrying, in_flight, held, dead, ordered_in_flight) \
             WHERE q.subscription = c.subscription",
            &[
                &subs,
                &columns[0],
                &columns[1],
                &columns[2],
                &columns[3],
                &columns[4],
                &columns[5],
            ],
        )?;
        Ok(())
    }
}

/// Locks the `queue_state` rows of `subs` (created if absent), in subscription order, and
/// returns whether each is held, in that order.
pub(crate) fn lock_subscriptions(
    tx: &mut Tx<'_>,
    subs: &[i64],
) -> Result<BTreeMap<i64, bool>, postgres::Error> {
    let mut subs = subs.to_vec();
    subs.sort_unstable();
    subs.dedup();
    // One statement: a missing row is inserted, an existing one "updated" to itself, which
    // locks it; rows are taken in the array's order.
    let rows = tx.query(
        "INSERT INTO queue_state (subscription) SELECT s FROM unnest($1::int8[]) AS s ORDER BY s \
         ON CONFLICT (subscription) DO UPDATE SET held_sub = queue_state.held_sub \
         RETURNING subscription, held_sub",
        &[&subs],
    )?;
    Ok(rows.iter().map(|row| (row.get(0), row.get(1))).collect())
}

/// Moves the delivery row `id` of subscription `sub` to `corrupt`, with `reason`, and takes it
/// out of the counts when its state is known. Reported in the log, never a panic or a stop.
pub(crate) fn move_aside(tx: &mut Tx<'_>, id: i64, sub: i64, reason: &str) -> Result<(), Fail> {
    lock_subscriptions(tx, &[sub])?;
    let key = format!("deliveries/{id}");
    let gone = tx.query_opt(
        "WITH gone AS (DELETE FROM deliveries d WHERE d.id = $1 \
                       RETURNING row_to_json(d)::text AS record, d.state, d.attempts, d.ordered) \
         INSERT INTO corrupt (key, reason, record) SELECT $2, $3, record FROM gone \
         RETURNING (SELECT state FROM gone), (SELECT attempts FROM gone), (SELECT ordered FROM gone)",
        &[&id, &key, &reason],
    )?;
    tracing::error!(
        delivery = id,
        subscription = sub,
        reason,
        "corrupt delivery row moved aside"
    );
    if let Some(row) = gone {
        let mut deltas = Deltas::default();
        deltas.state(sub, row.get(0), row.get(1), row.get(2), -1);
        deltas.apply(tx)?;
    }
    Ok(())
}

/// The error a caller that asked for the row by id gets.
pub(crate) fn corrupt(key: String, reason: String) -> StoreError {
    StoreError::Corrupt { key, reason }
}
