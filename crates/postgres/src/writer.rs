//! The enqueue writer: one connection thread that takes every enqueue. Calls that arrive while
//! it commits wait together and go into its next transaction, so concurrent publishes share
//! one commit (group commit) and its WAL flush. Each call stays atomic: when a shared
//! transaction fails in the database, its calls are tried again one transaction each, so one
//! call's failure is not another's.

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};

use callout_store::{Change, EnqueueReceipt, NewDelivery, StoreError};

use crate::changes::notify;
use crate::conn::{Conn, Fail, Settings, Tx};
use crate::rows::{int, lock_subscriptions, uint, DUE, HELD};

/// The most calls one transaction takes; more wait for the next.
const GROUP_CALLS: usize = 256;

/// How long the writer waits for the publishers of its last group to call again (about a
/// thread switch or two on a loaded machine; a commit costs more).
const GATHER_WAIT: Duration = Duration::from_micros(300);

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
    let mut last_group = 1;
    while let Ok(first) = calls.recv() {
        let group = gather(first, calls, last_group);
        last_group = group.len();
        let shared = conn.transact(|tx| enqueue_group(tx, &group, dedup_retention_ms));
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
                for call in group {
                    let alone = conn
                        .transact(|tx| {
                            enqueue_group(tx, std::slice::from_ref(&call), dedup_retention_ms)
                        })
                        .map(|mut receipts| receipts.pop().unwrap_or_default());
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

/// The calls of one transaction: `first` and every call waiting. When fewer wait than the
/// last group held, the publishers that group answered are likely about to call again (they
/// were woken by its commit), so the writer waits a moment for them rather than commit
/// alone and make them wait a whole commit more.
fn gather(first: Call, calls: &Receiver<Call>, last_group: usize) -> Vec<Call> {
    let mut group = vec![first];
    let deadline = Instant::now() + GATHER_WAIT;
    while group.len() < GROUP_CALLS {
        let next = match calls.try_recv() {
            Ok(call) => Ok(call),
            Err(_) if group.len() < last_group => calls.recv_deadline(deadline).map_err(|_| ()),
            Err(_) => Err(()),
        };
        match next {
            Ok(call) => group.push(call),
            Err(()) => break,
        }
    }
    group
}

/// The same error for every call of a group (StoreError is not `Clone`: it may hold an
/// `io::Error`).
fn clone_error(error: &StoreError) -> StoreError {
    StoreError::Storage(error.to_string())
}

/// The calls' writes, in one transaction: every subscription they name locked at once, in
/// order (as every writer locks them, see schema.rs: call by call, two instances' groups
/// could each hold what the other waits for; and a hold takes the same lock, which makes
/// "held" certain); each call's event ids remembered or found seen; the deliveries kept
/// inserted (held when their subscription is) and counted, all calls' in one statement.
fn enqueue_group(
    tx: &mut Tx<'_>,
    calls: &[Call],
    dedup_retention_ms: u64,
) -> Result<Vec<EnqueueReceipt>, Fail> {
    let subs: Vec<i64> = calls
        .iter()
        .flat_map(|call| call.deliveries.iter().map(|d| int(d.subscription_id)))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let held = lock_subscriptions(tx, &subs)?;
    let mut receipts = Vec::with_capacity(calls.len());
    let mut kept: Vec<(usize, &NewDelivery)> = Vec::new();
    for (n, call) in calls.iter().enumerate() {
        let duplicates = seen_before(tx, call, dedup_retention_ms)?;
        kept.extend(
            call.deliveries
                .iter()
                .filter(|d| !d.event_ids.iter().any(|e| duplicates.contains(e)))
                .map(|d| (n, d)),
        );
        receipts.push(EnqueueReceipt {
            delivery_ids: Vec::new(),
            duplicate_event_ids: duplicates.into_iter().collect(),
        });
    }
    if kept.is_empty() {
        return Ok(receipts);
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
    let mut columns = Columns::default();
    for (id, (n, new)) in ids.iter().zip(&kept) {
        let sub = int(new.subscription_id);
        let state = if held.get(&sub).copied().unwrap_or(false) {
            HELD
        } else {
            DUE
        };
        columns.push(*id, new, state)?;
        receipts[*n].delivery_ids.push(uint(*id));
    }
    let created: Vec<i64> = kept.iter().map(|(n, _)| int(calls[*n].now_ms)).collect();
    tx.execute(
        "WITH new AS ( \
           INSERT INTO deliveries (id, subscription, event_ids, event_type, body, message_id, \
                                   due_at, created_at, ordered, state, order_key) \
           SELECT * FROM unnest($1::int8[], $2::int8[], $3::text[], $4::text[], $5::bytea[], \
                                $6::text[], $7::int8[], $9::int8[], $8::bool[], $10::int2[], \
                                $11::text[]) \
           RETURNING subscription, state) \
         UPDATE queue_state q SET due = q.due + c.due, held = q.held + c.held \
         FROM (SELECT subscription, count(*) FILTER (WHERE state = 0) AS due, \
                      count(*) FILTER (WHERE state = 2) AS held \
               FROM new GROUP BY subscription) c \
         WHERE q.subscription = c.subscription",
        &[
            &columns.ids,
            &columns.subs,
            &columns.event_ids,
            &columns.event_types,
            &columns.bodies,
            &columns.message_ids,
            &columns.due_at,
            &columns.ordered,
            &created,
            &columns.states,
            &columns.order_keys,
        ],
    )?;
    if !columns.ids.is_empty() {
        notify(tx, Change::Due)?;
    }
    Ok(receipts)
}

/// The call's host event ids seen within the retention (by any instance), sorted; the others
/// are remembered from now. An id remembered longer ago than the retention is taken as new
/// (and remembered anew); a conflicting insert of another instance waits for its commit, so
/// instances agree on which publish had it first.
fn seen_before(
    tx: &mut Tx<'_>,
    call: &Call,
    dedup_retention_ms: u64,
) -> Result<BTreeSet<String>, Fail> {
    let mut unique: Vec<String> = Vec::new();
    let mut once = HashSet::new();
    for id in &call.dedup_event_ids {
        if once.insert(id.as_str()) {
            unique.push(id.clone());
        }
    }
    if unique.is_empty() {
        return Ok(BTreeSet::new());
    }
    let now = int(call.now_ms);
    // Signed: early in the clock (tests start at 0) nothing is forgotten yet.
    let forgotten_before = now.saturating_sub(int(dedup_retention_ms));
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
    Ok(unique
        .into_iter()
        .filter(|id| !fresh.contains(id))
        .collect())
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
    order_keys: Vec<Option<String>>,
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
        self.order_keys.push(new.order_key.clone());
        Ok(())
    }
}
