//! The enqueue writer: one connection thread that takes every enqueue. Calls that arrive while
//! it commits wait together and go into its next transaction, so concurrent publishes share
//! one commit (group commit) and its WAL flush. Each call stays atomic: when a shared
//! transaction fails in the database, its calls are tried again one transaction each, so one
//! call's failure is not another's.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender};

use callout_store::{EnqueueReceipt, NewDelivery, StoreError};

use crate::conn::{Conn, Fail, Settings, Tx};
use crate::rows::{int, lock_subscriptions, uint, Deltas, DUE, HELD};

/// The most calls one transaction takes; more wait for the next.
const GROUP_CALLS: usize = 256;

struct Call {
    dedup_event_ids: Vec<String>,
    deliveries: Vec<NewDelivery>,
    now_ms: u64,
    answer: Sender<Result<EnqueueReceipt, StoreError>>,
}

pub(crate) struct Writer {
    calls: Option<Sender<Call>>,
    thread: Option<JoinHandle<()>>,
}

impl Writer {
    pub(crate) fn start(
        settings: &Arc<Settings>,
        dedup_retention_ms: u64,
    ) -> Result<Writer, StoreError> {
        let (calls, taken) = crossbeam_channel::unbounded();
        let conn = Conn::new(Arc::clone(settings), true);
        let thread = std::thread::Builder::new()
            .name("callout-pg-writer".into())
            .spawn(move || run(conn, &taken, dedup_retention_ms))?;
        Ok(Writer {
            calls: Some(calls),
            thread: Some(thread),
        })
    }

    /// Enqueues through the writer thread and waits until the transaction committed.
    pub(crate) fn enqueue(
        &self,
        dedup_event_ids: &[String],
        deliveries: Vec<NewDelivery>,
        now_ms: u64,
    ) -> Result<EnqueueReceipt, StoreError> {
        let (answer, answered) = crossbeam_channel::bounded(1);
        let call = Call {
            dedup_event_ids: dedup_event_ids.to_vec(),
            deliveries,
            now_ms,
            answer,
        };
        let stopped = || StoreError::Storage("the PostgreSQL writer thread stopped".into());
        self.calls
            .as_ref()
            .ok_or_else(stopped)?
            .send(call)
            .map_err(|_| stopped())?;
        answered.recv().map_err(|_| stopped())?
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.calls = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn run(mut conn: Conn, calls: &Receiver<Call>, dedup_retention_ms: u64) {
    while let Ok(first) = calls.recv() {
        let mut group = vec![first];
        while group.len() < GROUP_CALLS {
            match calls.try_recv() {
                Ok(call) => group.push(call),
                Err(_) => break,
            }
        }
        let shared = conn.transact(|tx| {
            // Every subscription of the group locked at once, in order: locked call by call,
            // two instances' groups could each hold what the other waits for.
            let held = lock_subscriptions(tx, &subscriptions(group.iter()))?;
            group
                .iter()
                .map(|call| enqueue_call(tx, call, &held, dedup_retention_ms))
                .collect::<Result<Vec<_>, Fail>>()
        });
        match shared {
            Ok(receipts) => {
                for (call, receipt) in group.iter().zip(receipts) {
                    let _ = call.answer.send(Ok(receipt));
                }
            }
            // Refused by the database (the transaction rolled back): each call on its own.
            // A lost connection is not retried here: the commit may have happened, and the
            // callers hear of it as an error (their publish may be stored, never lost
            // silently).
            Err(_) if group.len() > 1 && conn.connected() => {
                for call in &group {
                    let alone = conn.transact(|tx| {
                        let held = lock_subscriptions(tx, &subscriptions(std::iter::once(call)))?;
                        enqueue_call(tx, call, &held, dedup_retention_ms)
                    });
                    let _ = call.answer.send(alone);
                }
            }
            Err(error) => {
                for call in &group {
                    let _ = call.answer.send(Err(clone_error(&error)));
                }
            }
        }
    }
}

/// The same error for every call of a group (StoreError is not `Clone`: it may hold an
/// `io::Error`).
fn clone_error(error: &StoreError) -> StoreError {
    StoreError::Storage(error.to_string())
}

/// The subscriptions the calls' deliveries go to.
fn subscriptions<'a>(calls: impl Iterator<Item = &'a Call>) -> Vec<i64> {
    calls
        .flat_map(|call| call.deliveries.iter().map(|d| int(d.subscription_id)))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

/// One call's writes, within the group's transaction: its event ids remembered (or found
/// seen), its deliveries inserted (held when their subscription is) and counted. `held` is
/// what [`lock_subscriptions`] said of its subscriptions: locked before any delivery row is
/// written, as every writer does (see schema.rs), which also makes "held" certain, since a
/// hold takes the same lock.
fn enqueue_call(
    tx: &mut Tx<'_>,
    call: &Call,
    held: &BTreeMap<i64, bool>,
    dedup_retention_ms: u64,
) -> Result<EnqueueReceipt, Fail> {
    let mut duplicates = BTreeSet::new();
    let mut unique: Vec<String> = Vec::new();
    let mut seen = HashSet::new();
    for id in &call.dedup_event_ids {
        if seen.insert(id.as_str()) {
            unique.push(id.clone());
        }
    }
    if !unique.is_empty() {
        let now = int(call.now_ms);
        // Signed: early in the clock (tests start at 0) nothing is forgotten yet.
        let forgotten_before = now.saturating_sub(int(dedup_retention_ms));
        // An id remembered longer ago than the retention is taken as new (and remembered
        // anew); a conflicting insert of another instance waits for its commit first, so
        // instances agree on which publish had it first.
        let fresh: HashSet<String> = tx
            .query(
                "INSERT INTO seen_events (event_id, seen_at) SELECT e, $2 FROM unnest($1::text[]) AS e \
                 ON CONFLICT (event_id) DO UPDATE SET seen_at = EXCLUDED.seen_at \
                 WHERE seen_events.seen_at <= $3 \
                 RETURNING event_id",
                &[&unique, &now, &forgotten_before],
            )?
            .iter()
            .map(|row| row.get(0))
            .collect();
        duplicates.extend(unique.into_iter().filter(|id| !fresh.contains(id)));
    }
    let kept: Vec<&NewDelivery> = call
        .deliveries
        .iter()
        .filter(|d| !d.event_ids.iter().any(|e| duplicates.contains(e)))
        .collect();
    let mut receipt = EnqueueReceipt {
        delivery_ids: Vec::with_capacity(kept.len()),
        duplicate_event_ids: duplicates.into_iter().collect(),
    };
    if kept.is_empty() {
        return Ok(receipt);
    }
    let count = kept.len() as i64;
    let mut ids: Vec<i64> = tx
        .query(
            "SELECT nextval('delivery_ids') FROM generate_series(1, $1::int8)",
            &[&count],
        )?
        .iter()
        .map(|row| row.get(0))
        .collect();
    ids.sort_unstable();
    let mut deltas = Deltas::default();
    let mut columns = Columns::default();
    for (id, new) in ids.iter().zip(&kept) {
        let sub = int(new.subscription_id);
        let state = if held.get(&sub).copied().unwrap_or(false) {
            HELD
        } else {
            DUE
        };
        deltas.state(sub, state, 0, new.ordered, 1);
        columns.push(*id, new, state)?;
        receipt.delivery_ids.push(uint(*id));
    }
    let now = int(call.now_ms);
    tx.execute(
        "INSERT INTO deliveries (id, subscription, event_ids, event_type, body, message_id, due_at, \
                                 created_at, ordered, state) \
         SELECT id, subscription, event_ids, event_type, body, message_id, due_at, $9, ordered, state \
         FROM unnest($1::int8[], $2::int8[], $3::text[], $4::text[], $5::bytea[], $6::text[], \
                     $7::int8[], $8::bool[], $10::int2[]) \
              AS n(id, subscription, event_ids, event_type, body, message_id, due_at, ordered, state)",
        &[
            &columns.ids,
            &columns.subs,
            &columns.event_ids,
            &columns.event_types,
            &columns.bodies,
            &columns.message_ids,
            &columns.due_at,
            &columns.ordered,
            &now,
            &columns.states,
        ],
    )?;
    deltas.apply(tx)?;
    Ok(receipt)
}

/// A call's deliveries as one array per column, for one `INSERT ... SELECT FROM unnest`.
#[derive(Default)]
struct Columns {
    ids: Vec<i64>,
    subs: Vec<i64>,
    event_ids: Vec<String>,
    event_types: Vec<String>,
    bodies: Vec<Vec<u8>>,
    message_ids: Vec<String>,
    due_at: Vec<i64>,
    ordered: Vec<bool>,
    states: Vec<i16>,
}

impl Columns {
    fn push(&mut self, id: i64, new: &NewDelivery, state: i16) -> Result<(), Fail> {
        let event_ids = serde_json::to_string(&new.event_ids)
            .map_err(|e| Fail::Store(StoreError::Storage(format!("event ids: {e}"))))?;
        self.ids.push(id);
        self.subs.push(int(new.subscription_id));
        self.event_ids.push(event_ids);
        self.event_types.push(new.event_type.clone());
        self.bodies.push(new.body.clone());
        self.message_ids.push(new.message_id.clone());
        self.due_at.push(int(new.due_at));
        self.ordered.push(new.ordered);
        self.states.push(state);
        Ok(())
    }
}
