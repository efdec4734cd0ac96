//! Group commit: durable enqueues queue their writes, and one writer makes the group's
//! durable for all who wait: one journal record (`j`), one flush, then plain inserts, since
//! sled makes every `apply_batch` pay a log write of its own. A group whose flush fails takes
//! its journal back, and every writer in it hears the error.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::error::StoreError;
use crate::model::{Delivery, DeliveryState};

use super::config::Durability;
use super::keys::part;
use super::keys::{expiry_record, key, ENQUEUED, JOURNAL, NEXT_DELIVERY, REMEMBERED};
use super::ops::Ops;
use super::{OrStoreError, SledStore};

/// Group commit: writers apply their batch, take a ticket, and wait until a flush that started
/// after their write has finished; one of them flushes for all who wait.
#[derive(Default)]
pub(super) struct Flusher {
    pub(super) state: Mutex<FlushState>,
    pub(super) done: Condvar,
    /// Signalled when a write joins `pending`, for a leader gathering its group.
    pub(super) arrived: Condvar,
    /// Host event ids ever remembered (`REMEMBERED`): what the last group commit wrote, or is
    /// writing. Group commits run one at a time, and only they and relaxed enqueues add to it.
    pub(super) remembered: AtomicU64,
}

#[derive(Default)]
pub(super) struct FlushState {
    /// Durable writers that have started but not yet taken their ticket.
    pub(super) writing: u64,
    /// Enqueued writes not yet applied: the next flusher applies them all as one batch, since
    /// sled pays a log write per `apply_batch` (FACTS.md).
    pub(super) pending: Vec<Ops>,
    /// Host event ids in `pending`, so a concurrent duplicate is caught before it is applied.
    pub(super) pending_ids: Vec<(String, u64)>,
    /// Due deliveries in `pending`: they enter the due index once applied, never before, so
    /// a lease never looks for a record that is not there yet.
    pub(super) pending_due: Vec<Delivery>,
    /// Groups whose commit failed, as (last ticket before the group, last ticket in it, how
    /// many of its writers have yet to hear): a range per group, not a high-water mark, since
    /// a later group that commits raises `flushed` past tickets that failed, and a writer of
    /// the failed group woken late must still hear of its failure.
    pub(super) failed: Vec<(u64, u64, u64)>,
    /// The last ticket a leader has taken into a group.
    pub(super) taken: u64,
    pub(super) written: u64,
    pub(super) flushed: u64,
    pub(super) flushing: bool,
    pub(super) flushes: u64,
    /// How many writes the last group commit carried: about how many writers are active.
    pub(super) last_group: usize,
}

impl Flusher {
    /// How many flushes it has made for durable writes.
    pub(super) fn flushes(&self) -> u64 {
        self.state.lock().map(|s| s.flushes).unwrap_or(0)
    }
}

impl FlushState {
    /// Whether a leader gathering its group has it: nobody is still writing, and as many
    /// writes wait as the last group carried (about how many writers are active).
    pub(super) fn gathered(&self) -> bool {
        self.writing == 0 && self.pending.len() >= self.last_group.max(1)
    }
}

/// A durable writer counted in [`FlushState::writing`] until it takes its ticket: dropped on
/// an early return, it counts the writer out, or every later leader would wait the whole
/// [`GATHER`] for a writer that never comes.
pub(super) struct Writing<'a>(pub(super) Option<&'a Flusher>);

impl Drop for Writing<'_> {
    fn drop(&mut self) {
        if let Some(flusher) = self.0 {
            if let Ok(mut state) = flusher.state.lock() {
                state.writing = state.writing.saturating_sub(1);
                if state.gathered() {
                    flusher.arrived.notify_one();
                }
            }
        }
    }
}

/// Writes of one state change, in order, before they become one sled batch: an enqueue's wait
/// for the group commit, a settle's in the write-behind buffer (see [`Book::behind`]), or any
/// other change's until it is applied. Unlike `sled::Batch`, two of these can be merged.
/// The most writes a group commit sends through a journal record (see [`SledStore::commit`]);
/// more go as one `apply_batch`, whose log write is then worth it.
pub(super) const JOURNAL_MAX: usize = 32;

/// The longest a flushing writer waits for others to join its group commit.
pub(super) const GATHER: Duration = Duration::from_micros(200);

impl SledStore {
    /// Waits until write `ticket` is durable, flushing for every writer waiting with it.
    pub(super) fn durable(&self, ticket: u64) -> Result<(), StoreError> {
        if self.config.durability == Durability::Relaxed {
            return Ok(());
        }
        let mut state = self
            .flusher
            .state
            .lock()
            .map_err(|_| StoreError::Poisoned)?;
        loop {
            if let Some(group) = state
                .failed
                .iter()
                .position(|&(after, last, _)| after < ticket && ticket <= last)
            {
                state.failed[group].2 -= 1;
                if state.failed[group].2 == 0 {
                    state.failed.swap_remove(group);
                }
                return Err(StoreError::Io(std::io::Error::other(
                    "the group commit carrying this write failed",
                )));
            }
            if state.flushed >= ticket {
                return Ok(());
            }
            if !state.flushing {
                state.flushing = true;
                // Writers inside `enqueue`, and as many as joined the last group (they are
                // likely busy preparing their next write), will want a flush in a moment: wait
                // up to GATHER for them to join this one instead of paying for the next. A
                // lone writer (last group of one, nobody writing) does not wait at all. On 2
                // cores, woken writers need a few hundred microseconds to get back here, so a
                // bare `writing > 0` check gathered only about half of 8 publishers.
                let gather = Instant::now();
                loop {
                    let left = GATHER.saturating_sub(gather.elapsed());
                    if state.gathered() || left.is_zero() {
                        break;
                    }
                    state = self
                        .flusher
                        .arrived
                        .wait_timeout(state, left)
                        .map_err(|_| StoreError::Poisoned)?
                        .0;
                }
                state.last_group = state.pending.len();
                let after = state.taken;
                let target = state.written;
                state.taken = target;
                let pending = std::mem::take(&mut state.pending);
                let applied_ids = std::mem::take(&mut state.pending_ids);
                let applied_due = std::mem::take(&mut state.pending_due);
                drop(state);
                let mut ops = Ops::default();
                for writes in pending {
                    ops.append(writes);
                }
                // Each writer's batch names its subscriptions' enqueued totals; the group's
                // last is all of them, and sled's cost is per write.
                ops.keep_last_of(ENQUEUED);
                let remembered = self.remember(&mut ops, &applied_ids);
                let result = self.commit(target, ops);
                if result.is_err() {
                    self.unremember(remembered);
                }
                if let Ok(mut book) = self.book() {
                    for (id, _) in &applied_ids {
                        book.pending_seen.remove(id);
                    }
                    if result.is_ok() {
                        self.file_applied(&mut book, applied_due);
                    } else {
                        // The id block it may have reserved may not be on disk: the next
                        // enqueue reserves anew, so no id handed out later can be reused.
                        book.reserved_until = 0;
                        // Counted due when they were enqueued; never stored. Their subscriptions'
                        // enqueued totals on disk will count them all the same (later batches
                        // carry them): their `C` records take them back, now.
                        if let Some(last) = applied_due.iter().map(|d| d.id).max() {
                            book.filed_below = book.filed_below.max(last + 1);
                        }
                        for delivery in applied_due {
                            book.leave(delivery.subscription_id, DeliveryState::Due);
                        }
                        let counts = book.counts_ops();
                        if let Err(error) = self.write_now(&mut book, counts) {
                            tracing::error!(%error, "could not write the counts of a failed group commit");
                        }
                    }
                }
                state = self
                    .flusher
                    .state
                    .lock()
                    .map_err(|_| StoreError::Poisoned)?;
                state.flushing = false;
                state.flushes += 1;
                if result.is_ok() {
                    state.flushed = state.flushed.max(target);
                } else {
                    // Counted without the leader: it hears here.
                    state.failed.push((after, target, target - after - 1));
                    state.failed.retain(|&(_, _, waiting)| waiting > 0);
                }
                self.flusher.done.notify_all();
                result?;
            } else {
                state = self
                    .flusher
                    .done
                    .wait(state)
                    .map_err(|_| StoreError::Poisoned)?;
            }
        }
    }

    /// Makes a group commit's writes durable, all or none. Up to [`JOURNAL_MAX`] writes go to
    /// disk as one journal record and one flush, then out as plain inserts (`write_out`):
    /// sled pays a log write for every `apply_batch` (FACTS.md), so this costs less than an
    /// `apply_batch` and a flush (docs/BENCHMARKS.md, Store). More writes go as one batch and a
    /// flush.
    pub(super) fn commit(&self, ticket: u64, ops: Ops) -> Result<(), StoreError> {
        if ops.writes.len() > JOURNAL_MAX {
            self.apply(ops)?;
            return self.flush_files();
        }
        let journal = key(JOURNAL, &[ticket]);
        self.queue().insert(&journal, ops.encode()).db()?;
        if let Err(error) = self.flush_files() {
            // Its writers hear that it failed: take the journal back, or the next flush would
            // keep it and a reopen write out what they were told was not stored. (A crash
            // before that flush can still bring it back, if sled had it on disk already.)
            if let Err(error) = self.queue().remove(&journal) {
                tracing::error!(%error, "could not take back the journal of a failed group commit");
            }
            return Err(error);
        }
        self.write_out(&journal, ops)
    }

    /// Puts the expiry record of host event ids `ids` into `ops`, with the remembered total
    /// raised by their number (`REMEMBERED`); returns that number, for [`Self::unremember`]
    /// if the write fails. Callers write one at a time: group commits, or relaxed enqueues
    /// under the book lock.
    pub(super) fn remember(&self, ops: &mut Ops, ids: &[(String, u64)]) -> u64 {
        let Some((k, v)) = expiry_record(ids) else {
            return 0;
        };
        ops.insert(k, v);
        let more = ids.len() as u64;
        let total = self.flusher.remembered.fetch_add(more, Ordering::SeqCst) + more;
        ops.insert(REMEMBERED.to_vec(), total.to_be_bytes());
        more
    }

    /// Takes back what [`Self::remember`] added, for a write that failed.
    pub(super) fn unremember(&self, added: u64) {
        self.flusher.remembered.fetch_sub(added, Ordering::SeqCst);
    }

    /// Writes a flushed journal record's writes out as plain inserts, then removes it. sled
    /// recovers a prefix of its log, so once the removal is on disk all the writes are, and
    /// until then reopening writes them out again: the same values, harmless, since nothing
    /// else touches them before they are filed, which is after the removal.
    pub(super) fn write_out(&self, journal: &[u8], ops: Ops) -> Result<(), StoreError> {
        for (k, v) in ops.writes {
            match v {
                // Id blocks and the remembered total only grow, whichever journal is written
                // out last.
                Some(v) if k == NEXT_DELIVERY || k == REMEMBERED => {
                    let on_disk = self.queue().get(&k).db()?.map_or(0, |n| part(&n, 0));
                    if part(&v, 0) > on_disk {
                        self.queue().insert(k, v).db()?;
                    }
                }
                Some(v) => {
                    self.queue().insert(k, v).db()?;
                }
                None => {
                    self.queue().remove(k).db()?;
                }
            }
        }
        self.queue().remove(journal).db()?;
        Ok(())
    }

    /// Flushes sled, and with [`Durability::Sync`] makes it survive a power loss
    /// (`power_loss.rs`).
    pub(super) fn flush_files(&self) -> Result<(), StoreError> {
        let files = self.files();
        files.db.flush().db()?;
        if let Some(sync) = &files.power_loss {
            sync.sync()?;
            if self.root_unsynced.load(Ordering::SeqCst) {
                std::fs::File::open(&self.root)?.sync_all()?;
                self.root_unsynced.store(false, Ordering::SeqCst);
            }
        }
        Ok(())
    }
}
