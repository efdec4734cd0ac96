//! The enqueue writer: one connection thread that takes every enqueue. Calls that arrive while
//! it commits wait together and go into its next transaction, so concurrent publishes share
//! one commit (group commit) and its WAL flush. Each call stays atomic: when a shared
//! transaction fails in the database, its calls are tried again one transaction each, so one
//! call's failure is not another's.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use callout_store::{Change, EnqueueReceipt, NewDelivery, StoreError};

use crate::changes::{channel, payload};
use crate::combine::{clone_error, Combiner};
use crate::conn::{Conn, Settings};
use crate::rows::{int, uint};

/// The most calls one transaction takes; more wait for the next.
const GROUP_CALLS: usize = 256;

struct Call {
    dedup_event_ids: Vec<String>,
    deliveries: Vec<NewDelivery>,
    now_ms: u64,
}

pub(crate) struct Writer(Combiner<Call, EnqueueReceipt>);

impl Writer {
    pub(crate) fn start(
        settings: &Arc<Settings>,
        dedup_retention_ms: u64,
    ) -> Result<Writer, StoreError> {
        let conn = Conn::new(Arc::clone(settings), true);
        let work = Box::new(move |conn: &mut Conn, group: &[Call]| {
            enqueue_each(conn, group, dedup_retention_ms)
        });
        Combiner::start("callout-pg-writer", "writer", conn, GROUP_CALLS, work).map(Writer)
    }

    /// Enqueues through the writer thread and waits until the transaction committed.
    pub(crate) fn enqueue(
        &self,
        dedup_event_ids: &[String],
        deliveries: Vec<NewDelivery>,
        now_ms: u64,
    ) -> Result<EnqueueReceipt, StoreError> {
        self.0.call(Call {
            dedup_event_ids: dedup_event_ids.to_vec(),
            deliveries,
            now_ms,
        })
    }
}

/// A group's enqueues in one statement, each call's receipt in order.
fn enqueue_each(
    conn: &mut Conn,
    group: &[Call],
    dedup_retention_ms: u64,
) -> Vec<Result<EnqueueReceipt, StoreError>> {
    match enqueue_group(conn, group, dedup_retention_ms) {
        Ok(receipts) => receipts.into_iter().map(Ok).collect(),
        // Refused by the database (the transaction rolled back): each call on its own.
        // A lost connection is not retried here: the commit may have happened, and the
        // callers hear of it as an error (their publish may be stored, never lost
        // silently).
        Err(_) if group.len() > 1 && conn.connected() => group
            .iter()
            .map(|call| {
                enqueue_group(conn, std::slice::from_ref(call), dedup_retention_ms)
                    .map(|mut receipts| receipts.pop().unwrap_or_default())
            })
            .collect(),
        Err(error) => group.iter().map(|_| Err(clone_error(&error))).collect(),
    }
}

/// The calls' writes as one statement, so a group costs one round trip and one commit: each
/// call's host event ids remembered, or found seen before (by any instance, or by an earlier
/// call of the group); the deliveries of calls that named none seen are inserted (held when
/// their subscription is) and counted; a notice sent when any went in.
///
/// Locks are taken in one order by every writer (see schema.rs): the event ids first, sorted,
/// then every subscription the calls name, sorted (an upsert of its `queue_state` row, which
/// also counts the deliveries and tells whether it is held, which a hold's lock makes certain).
/// The order follows from the data: a delivery's state needs its subscription's row, and
/// whether it goes in at all needs every event id settled first. Ids are drawn only once every
/// row is locked (`new` waits for all of `locked`), in the order the deliveries are listed,
/// which is the order they were published: so of one subscription's deliveries, a later commit
/// always has the higher ids, whichever instance wrote them, which ordered delivery and order
/// keys rely on.
const ENQUEUE: &str = "\
WITH named AS (
  SELECT e, at, n - 1 AS slot
  FROM unnest($1::text[], $2::int8[]) WITH ORDINALITY AS s(e, at, n)),
first AS (
  SELECT DISTINCT ON (e) e, slot, at FROM named ORDER BY e, slot),
fresh AS (
  INSERT INTO seen_events (event_id, seen_at) SELECT e, at FROM first ORDER BY e
  ON CONFLICT (event_id) DO UPDATE SET seen_at = EXCLUDED.seen_at
  WHERE seen_events.seen_at <= EXCLUDED.seen_at - $3::int8
  RETURNING event_id),
dup AS (
  SELECT n.slot FROM named n
  WHERE NOT EXISTS (SELECT 1 FROM first f JOIN fresh r ON r.event_id = f.e WHERE f.slot = n.slot)),
dropped AS (
  SELECT p.n FROM unnest($4::int4[], $5::int4[]) AS p(n, slot)
  WHERE p.slot IN (SELECT slot FROM dup)),
kept AS (
  SELECT u.*
  FROM unnest($6::int8[], $7::text[], $8::text[], $9::bytea[], $10::text[], $11::int8[],
              $12::int8[], $13::bool[], $14::text[])
       WITH ORDINALITY AS u(sub, event_ids, event_type, body, message_id, due_at, created_at,
                            ordered, order_key, n)
  WHERE u.n NOT IN (SELECT n FROM dropped)),
counted AS (
  SELECT sub, count(*) AS n FROM kept GROUP BY sub),
locked AS (
  INSERT INTO queue_state AS q (subscription, due)
  SELECT s, COALESCE(c.n, 0) FROM unnest($15::int8[]) AS s LEFT JOIN counted c ON c.sub = s
  ORDER BY s
  ON CONFLICT (subscription) DO UPDATE
  SET due = q.due + CASE WHEN q.held_sub THEN 0 ELSE EXCLUDED.due END,
      held = q.held + CASE WHEN q.held_sub THEN EXCLUDED.due ELSE 0 END
  RETURNING subscription, held_sub),
new AS MATERIALIZED (
  SELECT k.*, nextval('delivery_ids') AS id
  FROM (SELECT * FROM kept WHERE (SELECT count(*) FROM locked) >= 0 ORDER BY n) AS k),
ins AS (
  INSERT INTO deliveries (id, subscription, event_ids, event_type, body, message_id, due_at,
                          created_at, ordered, state, order_key)
  SELECT w.id, w.sub, w.event_ids, w.event_type, w.body, w.message_id, w.due_at, w.created_at,
         w.ordered, CASE WHEN l.held_sub THEN 2 ELSE 0 END::int2, w.order_key
  FROM new w JOIN locked l ON l.subscription = w.sub
  RETURNING 1),
told AS (
  SELECT pg_notify($16, $17) FROM (SELECT 1 FROM ins LIMIT 1) AS any_in)
SELECT 0::int2 AS kind, slot::int8 AS n, 0::int8 AS id FROM dup
UNION ALL SELECT 1::int2, w.n, w.id FROM new w
UNION ALL SELECT 2::int2, count(*), 0::int8 FROM told";

fn enqueue_group(
    conn: &mut Conn,
    calls: &[Call],
    dedup_retention_ms: u64,
) -> Result<Vec<EnqueueReceipt>, StoreError> {
    let mut named = Named::default();
    let mut columns = Columns::default();
    let mut owners: Vec<usize> = Vec::new();
    for (n, call) in calls.iter().enumerate() {
        let now = int(call.now_ms);
        let mut slots: HashMap<&str, i32> = HashMap::new();
        for id in &call.dedup_event_ids {
            if !slots.contains_key(id.as_str()) {
                let slot = named.push(id, n, now)?;
                slots.insert(id, slot);
            }
        }
        for new in &call.deliveries {
            let ordinal = i32::try_from(owners.len() + 1).map_err(|_| too_many())?;
            for slot in new.event_ids.iter().filter_map(|e| slots.get(e.as_str())) {
                named.pairs.push((ordinal, *slot));
            }
            columns.push(new, now)?;
            owners.push(n);
        }
    }
    let subs: Vec<i64> = columns
        .subs
        .iter()
        .copied()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let (pair_deliveries, pair_slots): (Vec<i32>, Vec<i32>) = named.pairs.iter().copied().unzip();
    let channel = channel(conn.schema());
    let due = payload(Change::Due);
    let rows = conn.query_alone(
        ENQUEUE,
        &[
            &named.event_ids,
            &named.at,
            &int(dedup_retention_ms),
            &pair_deliveries,
            &pair_slots,
            &columns.subs,
            &columns.event_ids,
            &columns.event_types,
            &columns.bodies,
            &columns.message_ids,
            &columns.due_at,
            &columns.created_at,
            &columns.ordered,
            &columns.order_keys,
            &subs,
            &channel,
            &due,
        ],
    )?;
    let mut receipts: Vec<EnqueueReceipt> =
        calls.iter().map(|_| EnqueueReceipt::default()).collect();
    let mut inserted: Vec<(i64, i64)> = Vec::new();
    for row in &rows {
        let (kind, n, id): (i16, i64, i64) = (row.get(0), row.get(1), row.get(2));
        match kind {
            0 => {
                let slot = usize::try_from(n).unwrap_or(usize::MAX);
                if let (Some(event_id), Some(call)) =
                    (named.event_ids.get(slot), named.calls.get(slot))
                {
                    receipts[*call].duplicate_event_ids.push(event_id.clone());
                }
            }
            1 => inserted.push((n, id)),
            _ => {}
        }
    }
    inserted.sort_unstable();
    for (ordinal, id) in inserted {
        let owner = usize::try_from(ordinal - 1)
            .ok()
            .and_then(|n| owners.get(n));
        if let Some(call) = owner {
            receipts[*call].delivery_ids.push(uint(id));
        }
    }
    for receipt in &mut receipts {
        receipt.duplicate_event_ids.sort_unstable();
    }
    Ok(receipts)
}

fn too_many() -> StoreError {
    StoreError::Storage("too many deliveries for one enqueue".into())
}

/// The host event ids a group names, each call's once, as columns for `unnest`: a slot (its
/// place, from 0) per (call, id), and which deliveries name which slot.
#[derive(Default)]
struct Named {
    event_ids: Vec<String>,
    at: Vec<i64>,
    calls: Vec<usize>,
    pairs: Vec<(i32, i32)>,
}

impl Named {
    fn push(&mut self, event_id: &str, call: usize, at: i64) -> Result<i32, StoreError> {
        let slot = i32::try_from(self.event_ids.len()).map_err(|_| too_many())?;
        self.event_ids.push(event_id.to_string());
        self.at.push(at);
        self.calls.push(call);
        Ok(slot)
    }
}

/// The deliveries of a group as one array per column, for one `INSERT ... SELECT FROM unnest`.
#[derive(Default)]
struct Columns {
    subs: Vec<i64>,
    event_ids: Vec<String>,
    event_types: Vec<String>,
    bodies: Vec<Vec<u8>>,
    message_ids: Vec<String>,
    due_at: Vec<i64>,
    created_at: Vec<i64>,
    ordered: Vec<bool>,
    order_keys: Vec<Option<String>>,
}

impl Columns {
    fn push(&mut self, new: &NewDelivery, created_at: i64) -> Result<(), StoreError> {
        let event_ids = serde_json::to_string(&new.event_ids)
            .map_err(|e| StoreError::Storage(format!("event ids: {e}")))?;
        self.subs.push(int(new.subscription_id));
        self.event_ids.push(event_ids);
        self.event_types.push(new.event_type.clone());
        self.bodies.push(new.body.clone());
        self.message_ids.push(new.message_id.clone());
        self.due_at.push(int(new.due_at));
        self.created_at.push(created_at);
        self.ordered.push(new.ordered);
        self.order_keys.push(new.order_key.clone());
        Ok(())
    }
}
