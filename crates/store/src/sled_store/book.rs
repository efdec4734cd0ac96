//! The in-memory book of a sled store: counts, the due index, leases, the write-behind
//! buffer and the records kept from enqueue to first lease. The one writer keeps it in step
//! with the `queue` tree; on open it is read from the counts on disk and the first due records
//! of each subscription, not from every record.

use std::collections::{BTreeSet, HashSet};
use std::time::Instant;

use sled::IVec;

use crate::model::{Counts, Delivery, DeliveryState};

use super::attempts::{self, Filed};
use super::due::{DueIndex, Entry};
use super::ids::{IdMap, IdSet};
use super::keys::{key, part, COUNTS, ENQUEUED};
use super::ops::Ops;

#[derive(Default)]
pub(super) struct Book {
    pub(super) counts: IdMap<Counts>,
    /// What the counts on disk need beside `counts`, per subscription (see [`DiskCounts`]).
    pub(super) disk: IdMap<DiskCounts>,
    /// Subscriptions whose counts changed since their `C` record was last written: the next
    /// write-behind batch carries it (`take_behind`).
    pub(super) dirty: IdSet,
    /// Every delivery id below this was filed by its group commit (or failed with it): a
    /// record on disk with a higher id waits for `file_applied`, and reads from disk into the
    /// due index pass over it.
    pub(super) filed_below: u64,
    pub(super) held: IdSet,
    pub(super) ordered_in_flight: IdSet,
    /// The due deliveries not in flight, as on disk once the write-behind buffer is applied.
    pub(super) due: DueIndex,
    pub(super) next_delivery: u64,
    /// Ids below this are reserved on disk (`N`).
    pub(super) reserved_until: u64,
    /// Host event ids enqueued but not yet applied (see `FlushState::pending`).
    pub(super) pending_seen: HashSet<String>,
    /// Write-behind buffer of settles (complete, reschedule, release, dead letter), applied as
    /// one batch by the next read or flush, by a lease that takes a delivery it holds, or once
    /// it holds [`BEHIND_MAX`] settles or is [`BEHIND_AGE`] old (checked by settles, which
    /// hand it off to be applied outside the book lock, and by leases). sled pays a log write
    /// per `apply_batch`, which made one settle cost more than leasing and enqueueing its
    /// delivery together (docs/BENCHMARKS.md, Store).
    /// Settles were never flushed by the call (see [`Queue::complete`](crate::Queue::complete)), so buffering them
    /// changes no promise: a crash before they reach disk leaves their deliveries in flight,
    /// and reopening makes them due again (at least once).
    pub(super) behind: Ops,
    /// Deliveries with a settle in `behind`: a second settle of one applies the buffer first,
    /// so it sees the first.
    pub(super) behind_ids: IdSet,
    /// When the oldest settle in `behind` was buffered.
    pub(super) behind_since: Option<Instant>,
    /// The attempts of the settles in `behind`: they go into the per-subscription index as
    /// one record per subscription (see `attempts.rs`) when the buffer is taken.
    pub(super) behind_attempts: Vec<Filed>,
    /// Deliveries whose settles were last handed off to be applied outside the book lock
    /// (see [`SledStore::hand_off_behind`]); maybe not on disk yet, until the gate is taken.
    pub(super) handed_off_ids: IdSet,
    /// Deliveries whose `K` entries (`order.rs`) are removed in `behind`, and in the buffer last
    /// handed off: on disk they may still be there, and key checks pass over them.
    pub(super) key_gone: IdSet,
    pub(super) key_gone_handed_off: IdSet,
    /// Subscriptions with a delivery requeued past their due window by a settle in `behind`
    /// (on disk only once it is applied), and the same for the buffer last handed off.
    pub(super) behind_beyond: IdSet,
    pub(super) handed_off_beyond: IdSet,
    /// Deliveries in flight, by id. On disk they stay as they were when due (due-index entry
    /// included); leasing skips the ones in here.
    pub(super) leased: IdMap<Lease>,
    /// The same leases by deadline, for `reclaim_expired` and `next_due_at`.
    pub(super) deadlines: BTreeSet<(u64, u64)>,
    /// Where the next `prune` goes on in the attempt index (empty: from the start).
    pub(super) prune_cursor: Vec<u8>,
    /// Host event ids ever forgotten (`FORGOTTEN`), written by prune alone.
    pub(super) forgotten: u64,
    /// The number of the last lease handed out.
    pub(super) next_lease: u64,
    /// Records of deliveries enqueued by this process and not yet leased, so a lease need not
    /// read them back (see [`Fresh`]).
    pub(super) fresh: Fresh,
}

/// Due records kept in memory from their group commit to their first lease, up to
/// [`StoreConfig::fresh_capacity`] bytes (past that, leases read records from sled). A due
/// record is never changed under its key: it is rewritten under another (reschedule, release,
/// hold, replay) only after a lease or a hold has taken it from here, so what is kept is what
/// is on disk. Reading it back cost a lease a sled read that waits behind every batch being
/// applied (measured in docs/BENCHMARKS.md, End to end: the ceiling on sled).
#[derive(Default)]
pub(super) struct Fresh {
    pub(super) records: IdMap<Delivery>,
    pub(super) bytes: usize,
    pub(super) capacity: usize,
}

impl Fresh {
    /// About what a kept record takes: its parts of variable size and a share for the rest.
    pub(super) fn size(delivery: &Delivery) -> usize {
        let ids: usize = delivery.event_ids.iter().map(String::len).sum();
        delivery.body.len() + delivery.event_type.len() + ids + 128
    }

    /// Keeps `delivery` (due, as on disk), if there is room.
    pub(super) fn keep(&mut self, delivery: Delivery) {
        let size = Fresh::size(&delivery);
        if self.bytes + size <= self.capacity {
            self.bytes += size;
            if let Some(old) = self.records.insert(delivery.id, delivery) {
                self.bytes -= Fresh::size(&old);
            }
        }
    }

    /// The record of the due `entry`, if kept; it is kept no more.
    pub(super) fn take(&mut self, entry: &Entry) -> Option<Delivery> {
        let delivery = self.records.remove(&entry.id)?;
        self.bytes -= Fresh::size(&delivery);
        (delivery.due_at == entry.due_at).then_some(delivery)
    }
}

/// What the counts on disk need beside [`Counts`]: deliveries leased are due on disk.
#[derive(Default, Clone, Copy)]
pub(super) struct DiskCounts {
    /// Deliveries ever enqueued, as the last enqueue's `E` record says (failed ones included:
    /// `C` takes them back).
    pub(super) enqueued: u64,
    /// Deliveries in flight that had failed before (counted retrying on disk).
    pub(super) retrying_in_flight: u64,
    /// Attempts kept (`History::prune` removes the oldest past `StoreConfig::attempts_kept`).
    pub(super) attempts: u64,
}

/// A delivery in flight.
pub(super) struct Lease {
    /// This lease's number (see [`LeaseToken`](crate::LeaseToken)): a settle must name it.
    pub(super) token: u64,
    pub(super) until: u64,
    /// Attempts made before this lease.
    pub(super) attempts: u32,
    /// Its due key, where its record stays on disk while it is in flight.
    pub(super) due_key: IVec,
    /// It as the due index filed it.
    pub(super) entry: Entry,
    pub(super) sub: u64,
    pub(super) ordered: bool,
    /// Its order key's `K` range, when it is ordered per record (`order.rs`).
    pub(super) order: Option<Vec<u8>>,
}

/// How a settle moves a delivery on.
pub(super) enum Finish {
    Delivered,
    Due(u64),
    Dead(u64),
}

impl Book {
    pub(super) fn counts(&mut self, sub: u64) -> &mut Counts {
        self.counts.entry(sub).or_default()
    }

    /// Whether a settle of delivery `id` may not be on disk yet: buffered, or handed off.
    pub(super) fn buffered(&self, id: u64) -> bool {
        self.behind_ids.contains(&id) || self.handed_off_ids.contains(&id)
    }

    /// Takes the write-behind buffer to be applied, with the attempt records of the
    /// subscriptions that have attempts in it (see `attempts.rs`) and the counts of those whose
    /// counts changed: written in the same batch as the records they count, and in the order
    /// the batches apply in, so the counts on disk are always those of the records on disk.
    pub(super) fn take_behind(&mut self) -> Ops {
        let mut ops = std::mem::take(&mut self.behind);
        for filed in &self.behind_attempts {
            self.disk.entry(filed.sub).or_default().attempts += 1;
            self.dirty.insert(filed.sub);
        }
        for (k, v) in attempts::records(std::mem::take(&mut self.behind_attempts)) {
            ops.insert(k, v);
        }
        ops.append(self.counts_ops());
        self.behind_since = None;
        ops
    }

    /// The `C` records of the subscriptions whose counts changed since theirs were written.
    pub(super) fn counts_ops(&mut self) -> Ops {
        let mut ops = Ops::default();
        for sub in std::mem::take(&mut self.dirty) {
            ops.insert(key(COUNTS, &[sub]), self.disk_counts(sub));
        }
        ops
    }

    /// The `C` record of `sub`: its counts on disk but for the enqueued total.
    fn disk_counts(&self, sub: u64) -> Vec<u8> {
        let c = self.counts.get(&sub).copied().unwrap_or_default();
        let d = self.disk.get(&sub).copied().unwrap_or_default();
        // A delivery in flight is still due on disk, and counted retrying there if it was.
        let due = (c.due + c.in_flight).wrapping_sub(d.enqueued);
        let fields = [
            due,
            c.retrying + d.retrying_in_flight,
            c.held,
            c.dead,
            d.attempts,
        ];
        fields.iter().flat_map(|n| n.to_be_bytes()).collect()
    }

    /// The `E` record of `sub` after `more` deliveries were enqueued, for the enqueue's batch.
    pub(super) fn enqueued(&mut self, sub: u64, more: u64) -> (Vec<u8>, [u8; 8]) {
        let d = self.disk.entry(sub).or_default();
        d.enqueued += more;
        (key(ENQUEUED, &[sub]), d.enqueued.to_be_bytes())
    }

    /// The counts of `sub` as its `E` and `C` records on disk give them (`enqueued`, `rest`
    /// their values, either absent): nothing in flight, the due ones due.
    pub(super) fn load_counts(&mut self, sub: u64, enqueued: Option<&[u8]>, rest: Option<&[u8]>) {
        let enqueued = enqueued.map_or(0, |v| part(v, 0));
        let rest = rest.unwrap_or_default();
        let c = self.counts(sub);
        c.due = enqueued.wrapping_add(part(rest, 0));
        c.retrying = part(rest, 8);
        c.held = part(rest, 16);
        c.dead = part(rest, 24);
        let d = self.disk.entry(sub).or_default();
        d.enqueued = enqueued;
        d.attempts = part(rest, 32);
    }

    pub(super) fn leave(&mut self, sub: u64, state: DeliveryState) {
        self.dirty.insert(sub);
        let c = self.counts(sub);
        match state {
            DeliveryState::Due => c.due = c.due.saturating_sub(1),
            DeliveryState::InFlight { .. } => c.in_flight = c.in_flight.saturating_sub(1),
            DeliveryState::Held => c.held = c.held.saturating_sub(1),
            DeliveryState::Dead { .. } => c.dead = c.dead.saturating_sub(1),
        }
    }

    /// Counts a due delivery that failed before in or out of `retrying`.
    pub(super) fn retrying(&mut self, sub: u64, attempts: u32, entering: bool) {
        if attempts == 0 {
            return;
        }
        self.dirty.insert(sub);
        let c = self.counts(sub);
        c.retrying = if entering {
            c.retrying + 1
        } else {
            c.retrying.saturating_sub(1)
        };
    }

    pub(super) fn enter(&mut self, sub: u64, state: DeliveryState) {
        self.dirty.insert(sub);
        let c = self.counts(sub);
        match state {
            DeliveryState::Due => c.due += 1,
            DeliveryState::InFlight { .. } => c.in_flight += 1,
            DeliveryState::Held => c.held += 1,
            DeliveryState::Dead { .. } => c.dead += 1,
        }
    }
}
