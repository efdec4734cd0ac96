//! Salvaging a damaged store: every record that still decodes goes into a new store, with the
//! id counters carried on so nothing is reused; what does not read is reported (and kept in
//! the new store's moved-aside records), and the damaged store is never written.
//!
//! sled rewrites its files when it opens a directory (it recovers the log, truncating it at the
//! first torn write, and writes `conf` afresh when it is missing or bad), so the damaged store
//! is copied first and only the copy is opened.

use std::path::{Path, PathBuf};

use callout_core::Subscription;
use sled::{Db, Tree};

use crate::error::StoreError;
use crate::model::{Attempt, Delivery, DeliveryState};

use super::attempts::{self, Filed};
use super::codec;
use super::generation;
use super::keys::{
    decode_due, due_key_of, due_value, id_in_key, key, part, ATTEMPT, BY_SUB, COUNTS, DEAD,
    DELIVERED, DUE, ENQUEUED, FAILING, FORGOTTEN, FORMAT_KEY, HELD, HELD_SUB, ID_BLOCK, JOURNAL,
    LAYOUT, LEGACY_DELIVERY, LEGACY_LEASED, LEGACY_PENDING, NEXT_DELIVERY, NEXT_SUB, ORDERED,
    ORDER_KEY, POINTER, REMEMBERED, SEEN, SEEN_AT, SEQUENCE, SUB, WHOLE,
};
use super::open::damaged;
use super::ops::Ops;
use super::order::order_record;
use super::{OrStoreError, SledStore, StoreConfig};

/// What [`SledStore::repair`] copied into the new store, and what it could not read.
///
/// Records that did not decode are listed in [`RepairReport::unreadable`] and, where sled
/// still gave their bytes, kept in the new store's moved-aside records
/// ([`SledStore::corrupt_keys`]); the damaged store keeps them too, untouched.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RepairReport {
    /// Subscriptions copied.
    pub subscriptions: u64,
    /// Due deliveries copied (deliveries in flight when the store was last used are among
    /// them: leases are not stored).
    pub due: u64,
    /// Held deliveries copied.
    pub held: u64,
    /// Dead letters copied.
    pub dead: u64,
    /// Recorded attempts copied.
    pub attempts: u64,
    /// Remembered host event ids (de-duplication) copied.
    pub event_ids: u64,
    /// Per-subscription counters copied: sequence numbers and delivered counts.
    pub counters: u64,
    /// Group-commit journals a crash left, whose writes were carried into the new store.
    pub journals: u64,
    /// Records an earlier open had already moved aside as corrupt, carried over as they were.
    pub set_aside: u64,
    /// The id the new store gives its next subscription.
    pub next_subscription: u64,
    /// The id the new store gives its next delivery.
    pub next_delivery: u64,
    /// What could not be read: keys, whole trees, sled's own files.
    pub unreadable: Vec<Unreadable>,
}

impl RepairReport {
    /// Whether everything read: nothing is in [`RepairReport::unreadable`].
    pub fn is_complete(&self) -> bool {
        self.unreadable.is_empty()
    }
}

/// One thing a repair could not read.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Unreadable {
    /// Where it was: a tree (`subs`, `queue`, `meta`...) or one of sled's files (`conf`).
    pub place: String,
    /// The record's key, hex-encoded; `None` when a whole tree or file is meant.
    pub key: Option<String>,
    /// Why it did not read.
    pub reason: String,
}

impl SledStore {
    /// Copies every record of the damaged store at `from` that still decodes into a new store
    /// at `to`, and reports what it copied and what it could not read. `from` is not written:
    /// a copy of it is opened (in a directory beside `to`, removed afterwards). Ids and counters
    /// carry on (the next subscription and delivery ids, sequences, delivered counts), so the
    /// new store never reuses an id the old one gave out.
    ///
    /// `to` must not exist or be an empty directory ([`StoreError::TargetNotEmpty`]). Stop
    /// whatever uses `from` first: a store another process is writing is copied as it is at
    /// that moment. Fails with [`StoreError::Unsalvageable`] when not even the copy opens,
    /// [`StoreError::NewerFormat`] when a newer callout wrote it, and
    /// [`StoreError::Locked`] when this process has it open. When it fails after creating
    /// `to`, `to` holds a partial store: remove it before trying again.
    ///
    /// ```
    /// use callout_store::{Queue, SledStore, StoreConfig};
    /// let dir = tempfile::tempdir()?;
    /// let damaged = dir.path().join("store");
    /// drop(SledStore::open(&damaged, StoreConfig::default())?);
    /// let report = SledStore::repair(&damaged, &dir.path().join("repaired"))?;
    /// assert!(report.is_complete());
    /// let repaired = SledStore::open(dir.path().join("repaired"), StoreConfig::default())?;
    /// assert_eq!(repaired.counts()?.due, 0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn repair(from: &Path, to: &Path) -> Result<RepairReport, StoreError> {
        let files = generation::salvageable(from);
        if !files.join("db").is_file() {
            return Err(StoreError::Io(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("no sled store at {} (it has no `db` file)", from.display()),
            )));
        }
        if super::open::is_open(from) {
            return Err(StoreError::Locked {
                path: from.to_path_buf(),
            });
        }
        match std::fs::read_dir(to).map(|mut entries| entries.next().is_none()) {
            Ok(true) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            _ => {
                return Err(StoreError::TargetNotEmpty {
                    path: to.to_path_buf(),
                })
            }
        }
        // The copy goes beside `to`: refuse a `to` inside the damaged store, which the copy
        // would then write into (and copy into itself).
        let inside = |path: &Path| {
            let canonical_from = from.canonicalize().ok();
            let mut probe = Some(path);
            while let Some(dir) = probe {
                if let (Ok(dir), Some(from)) = (dir.canonicalize(), &canonical_from) {
                    if dir.starts_with(from) {
                        return true;
                    }
                }
                probe = dir.parent();
            }
            false
        };
        if inside(to) {
            return Err(StoreError::TargetNotEmpty {
                path: to.to_path_buf(),
            });
        }
        // Held while the files are copied: a process with the store open could compact it
        // and remove the generation being read.
        let _lock = generation::lock_existing(from)?;
        let copy = Scratch::beside(to)?;
        copy_dir(&files, &copy.0, true)?;
        let mut report = RepairReport::default();
        let source = open_copy(from, &copy.0, &mut report)?;
        let result = salvage(&source, from, to, report);
        drop(source);
        result
    }
}

/// Opens the copy with sled. A `conf` that sled refuses is removed, so sled writes its
/// defaults, which are what every callout store was created with.
fn open_copy(from: &Path, copy: &Path, report: &mut RepairReport) -> Result<Db, StoreError> {
    let open = || sled::Config::new().path(copy).open();
    match open() {
        Ok(db) => Ok(db),
        Err(error) => {
            let reason = match damaged(copy, error) {
                StoreError::Damaged { detail, .. } => detail,
                other => {
                    return Err(StoreError::Unsalvageable {
                        path: from.to_path_buf(),
                        detail: other.to_string(),
                    })
                }
            };
            report.unreadable.push(Unreadable {
                place: "conf".into(),
                key: None,
                reason: format!("{reason}; the new store has sled's defaults"),
            });
            std::fs::remove_file(copy.join("conf"))?;
            open().map_err(|error| StoreError::Unsalvageable {
                path: from.to_path_buf(),
                detail: error.to_string(),
            })
        }
    }
}

/// The highest ids seen anywhere, and the counters as recorded (`None` when absent or bad).
#[derive(Default)]
struct Ids {
    max_subscription: u64,
    max_delivery: u64,
    next_subscription: Option<u64>,
    next_delivery: Option<u64>,
}

/// Walks the copy and writes what decodes into a new store at `to`.
fn salvage(
    source: &Db,
    from: &Path,
    to: &Path,
    mut report: RepairReport,
) -> Result<RepairReport, StoreError> {
    let meta = source.open_tree("meta").db()?;
    match meta.get(FORMAT_KEY) {
        Ok(Some(found)) if found.len() == 1 && found[0] > LAYOUT => {
            return Err(StoreError::NewerFormat {
                path: from.to_path_buf(),
                found: found[0],
                supported: LAYOUT,
            })
        }
        Ok(Some(found)) if found.len() == 1 => {}
        Ok(None) => {}
        Ok(Some(found)) => report.unreadable.push(Unreadable {
            place: "meta".into(),
            key: Some(codec::hex(FORMAT_KEY)),
            reason: format!("a layout version of {} bytes", found.len()),
        }),
        Err(error) => report.unreadable.push(Unreadable {
            place: "meta".into(),
            key: None,
            reason: error.to_string(),
        }),
    }
    let queue = source.open_tree("queue").db()?;
    write_out_journals(&queue, &mut report);

    let target = SledStore::open(to, StoreConfig::default())?;
    let (next_subscription, next_delivery) = {
        let _pass = target.pass()?;
        // The counters first, by key: a walk that stops at a read error before it reaches them
        // must not lose them, or ids would be handed out again.
        let mut ids = Ids::default();
        let subs_tree = source.open_tree("subs").db()?;
        if let Ok(Some(v)) = subs_tree.get(NEXT_SUB) {
            ids.next_subscription = counter(NEXT_SUB, &v).ok();
        }
        if let Ok(Some(v)) = queue.get(NEXT_DELIVERY) {
            ids.next_delivery = counter(NEXT_DELIVERY, &v).ok();
        }
        let mut walk = Walk {
            target: &target,
            report: &mut report,
            ids: &mut ids,
        };
        walk.tree(&subs_tree, "subs", Walk::subs_record)?;
        walk.tree(&queue, "queue", Walk::queue_record)?;
        walk.tree(&source.open_tree("corrupt").db()?, "corrupt", |w, k, v| {
            w.target.files().corrupt.insert(k, v).db()?;
            w.report.set_aside += 1;
            Ok(())
        })?;
        for name in source.tree_names() {
            let known = [
                &b"meta"[..],
                b"subs",
                b"queue",
                b"corrupt",
                b"__sled__default",
            ];
            if known.contains(&&name[..]) {
                continue;
            }
            report.unreadable.push(Unreadable {
                place: String::from_utf8_lossy(&name).into_owned(),
                key: None,
                reason: "a tree callout does not keep; not copied".into(),
            });
        }

        // A lost counter is rebuilt from the highest id seen, and a lost delivery counter a block
        // further on, as a crash would leave it: delivered deliveries whose attempts were pruned
        // leave no trace of their ids.
        let next_subscription = ids
            .next_subscription
            .unwrap_or(1)
            .max(ids.max_subscription + 1);
        let seen_delivery = ids.max_delivery + 1;
        let next_delivery = match ids.next_delivery {
            Some(n) => n.max(seen_delivery),
            None if ids.max_delivery > 0 => seen_delivery + ID_BLOCK,
            None => 1,
        };
        target
            .subs()
            .insert(NEXT_SUB, &next_subscription.to_be_bytes())
            .db()?;
        target
            .queue()
            .insert(NEXT_DELIVERY, &next_delivery.to_be_bytes())
            .db()?;
        // The records went in as they were found, past the counts: count them once.
        target.recount()?;
        {
            // Dropping the store writes its next id back: it must be this one.
            let mut book = target.book()?;
            book.next_delivery = next_delivery;
            book.reserved_until = next_delivery;
        }
        target.files().db.flush().db()?;
        (next_subscription, next_delivery)
    };
    drop(target);
    report.next_subscription = next_subscription;
    report.next_delivery = next_delivery;
    Ok(report)
}

/// Writes out the journals a crash left in the copy, as opening would (`write_out`): their
/// writes are then read like every other record. One that does not decode is reported.
fn write_out_journals(queue: &Tree, report: &mut RepairReport) {
    let journals: Vec<_> = queue.scan_prefix([JOURNAL]).collect();
    for item in journals {
        let (k, v) = match item {
            Ok(kv) => kv,
            Err(error) => {
                report.unreadable.push(Unreadable {
                    place: "queue".into(),
                    key: None,
                    reason: format!("journals: {error}"),
                });
                break;
            }
        };
        // One that does not decode is left in the copy: the walk reports it and keeps its bytes.
        let Ok(ops) = Ops::decode(&k, &v) else {
            continue;
        };
        let written: Result<(), sled::Error> = ops.writes.into_iter().try_for_each(|(wk, wv)| {
            match wv {
                Some(wv) if wk == NEXT_DELIVERY => {
                    let on_disk = queue.get(NEXT_DELIVERY)?.map_or(0, |n| part(&n, 0));
                    if part(&wv, 0) > on_disk {
                        queue.insert(wk, wv)?;
                    }
                }
                Some(wv) => {
                    queue.insert(wk, wv)?;
                }
                None => {
                    queue.remove(wk)?;
                }
            }
            Ok(())
        });
        match written.and_then(|()| queue.remove(&k)) {
            Ok(_) => report.journals += 1,
            Err(error) => report.unreadable.push(Unreadable {
                place: "queue".into(),
                key: Some(codec::hex(&k)),
                reason: format!("journal not written out: {error}"),
            }),
        }
    }
}

/// One walk of the copy's trees into the new store.
struct Walk<'a> {
    target: &'a SledStore,
    report: &'a mut RepairReport,
    ids: &'a mut Ids,
}

impl<'a> Walk<'a> {
    /// Every record of `tree`, through `record`; a record that does not decode is reported and
    /// kept aside in the new store. A read error ends the tree's walk (sled cannot say where
    /// the next readable key is), reported with the last key read.
    fn tree(
        &mut self,
        tree: &Tree,
        place: &str,
        record: impl Fn(&mut Walk<'a>, &[u8], &[u8]) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let mut last: Option<Vec<u8>> = None;
        for item in super::scan::whole(tree) {
            let (k, v) = match item {
                Ok(kv) => kv,
                Err(error) => {
                    let after = last
                        .as_deref()
                        .map_or("its start".into(), |k| format!("key {}", codec::hex(k)));
                    self.report.unreadable.push(Unreadable {
                        place: place.into(),
                        key: None,
                        reason: format!("read stopped after {after}: {error}"),
                    });
                    break;
                }
            };
            if let Err(error) = record(self, &k, &v) {
                match error {
                    StoreError::Corrupt { reason, .. } => {
                        self.unreadable(place, &k, reason);
                        self.target.files().corrupt.insert(&k, &v).db()?;
                    }
                    other => return Err(other),
                }
            }
            last = Some(k.to_vec());
        }
        Ok(())
    }

    fn unreadable(&mut self, place: &str, k: &[u8], reason: String) {
        self.report.unreadable.push(Unreadable {
            place: place.into(),
            key: Some(codec::hex(k)),
            reason,
        });
    }

    fn subscription(&mut self, id: u64) {
        self.ids.max_subscription = self.ids.max_subscription.max(id);
    }

    fn delivery_id(&mut self, id: u64) {
        self.ids.max_delivery = self.ids.max_delivery.max(id);
    }

    fn subs_record(&mut self, k: &[u8], v: &[u8]) -> Result<(), StoreError> {
        if k == NEXT_SUB {
            let next = counter(k, v)?;
            self.ids.next_subscription =
                Some(self.ids.next_subscription.map_or(next, |n| n.max(next)));
            return Ok(());
        }
        match k.first() {
            Some(&SUB) if k.len() == 9 => {
                let sub: Subscription = codec::decode_json(k, v)?;
                if sub.id != part(k, 1) {
                    return Err(corrupt(k, format!("holds subscription {}", sub.id)));
                }
                self.subscription(sub.id);
                self.target.subs().insert(k, v).db()?;
                self.report.subscriptions += 1;
            }
            Some(&SEQUENCE) if k.len() == 9 => {
                counter(k, v)?;
                self.subscription(part(k, 1));
                self.target.subs().insert(k, v).db()?;
                self.report.counters += 1;
            }
            Some(&FAILING) if k.len() == 9 => {
                super::tallies::decode(v)
                    .ok_or_else(|| corrupt(k, "not a failure streak".into()))?;
                self.target.subs().insert(k, v).db()?;
                self.report.counters += 1;
            }
            _ => return Err(corrupt(k, "not a key callout writes".into())),
        }
        Ok(())
    }

    fn queue_record(&mut self, k: &[u8], v: &[u8]) -> Result<(), StoreError> {
        if k == NEXT_DELIVERY {
            let next = counter(k, v)?;
            self.ids.next_delivery = Some(self.ids.next_delivery.map_or(next, |n| n.max(next)));
            return Ok(());
        }
        // The remembered and forgotten totals carry on: the bound on remembered ids counts
        // the expiry records copied, give or take one that did not read.
        if k == REMEMBERED || k == FORGOTTEN {
            counter(k, v)?;
            self.target.queue().insert(k, v).db()?;
            return Ok(());
        }
        let queue = &self.target.queue();
        match (k.first().copied(), k.len()) {
            // This layout's due keys, and layout 4's (`q due_at id`).
            (Some(DUE), 17 | 25) | (Some(ORDERED), 25) => {
                let delivery = decode_due(k, v)?;
                self.delivery(k, delivery)?;
            }
            // Counted anew once every record is copied (`recount`).
            (Some(ENQUEUED | COUNTS), 9) => {}
            (Some(HELD | DEAD | LEGACY_DELIVERY), 17 | 9) => {
                let delivery = codec::decode_delivery(k, v)?;
                self.delivery(k, delivery)?;
            }
            // Index entries of layout 1, and pointers, which are written anew with the
            // attempt records they point to.
            (Some(LEGACY_LEASED | LEGACY_PENDING | POINTER), _) => {}
            // Written anew with the records they order (`order_key`).
            (Some(ORDER_KEY), _) => {}
            (Some(ATTEMPT), 25) => {
                codec::decode::<Attempt>(k, v)?;
                self.delivery_id(part(k, 1));
                queue.insert(k, v).db()?;
                self.report.attempts += 1;
            }
            (Some(BY_SUB), 33) => self.attempt_record(k, v)?,
            (Some(DELIVERED), 9) => {
                counter(k, v)?;
                self.subscription(part(k, 1));
                queue.insert(k, v).db()?;
                self.report.counters += 1;
            }
            (Some(HELD_SUB), 9) => {
                self.subscription(part(k, 1));
                queue.insert(k, v).db()?;
            }
            (Some(SEEN), _) => {
                counter(k, v)?;
                queue.insert(k, v).db()?;
                self.report.event_ids += 1;
            }
            (Some(SEEN_AT), len) if len >= 9 => {
                queue.insert(k, v).db()?;
            }
            (Some(JOURNAL), _) => {
                // Only one that did not decode is still here.
                Ops::decode(k, v)?;
            }
            _ => return Err(corrupt(k, "not a key callout writes".into())),
        }
        Ok(())
    }

    /// A delivery record of any state, filed under the key of its state in this layout (a
    /// layout-1 record moves, as opening would move it).
    fn delivery(&mut self, k: &[u8], mut delivery: Delivery) -> Result<(), StoreError> {
        let (sub, id) = (delivery.subscription_id, delivery.id);
        if id_in_key(k) != Some(id) {
            return Err(corrupt(k, format!("holds delivery {id}")));
        }
        self.subscription(sub);
        self.delivery_id(id);
        let queue = &self.target.queue();
        match delivery.state {
            DeliveryState::Held => {
                queue
                    .insert(key(HELD, &[sub, id]), codec::encode_delivery(&delivery))
                    .db()?;
                self.order_key(&delivery)?;
                self.report.held += 1;
            }
            DeliveryState::Dead { .. } => {
                queue
                    .insert(key(DEAD, &[sub, id]), codec::encode_delivery(&delivery))
                    .db()?;
                self.report.dead += 1;
            }
            DeliveryState::Due | DeliveryState::InFlight { .. } => {
                delivery.state = DeliveryState::Due;
                queue
                    .insert(due_key_of(&delivery), due_value(&delivery))
                    .db()?;
                self.order_key(&delivery)?;
                self.report.due += 1;
            }
        }
        Ok(())
    }

    /// The `K` entry of a due or held delivery ordered per record (`order.rs`): the source's
    /// own entries are not copied, since they may name records that did not survive.
    fn order_key(&self, delivery: &Delivery) -> Result<(), StoreError> {
        if let Some((k, v)) = order_record(delivery) {
            self.target.queue().insert(k, &v).db()?;
        }
        Ok(())
    }

    /// A settle batch's attempt record: the attempts that decode are filed again (with their
    /// pointers); one that does not, or a record cut short, is reported. An older build's
    /// index record only names attempts kept under their own keys: it is copied as it is.
    fn attempt_record(&mut self, k: &[u8], v: &[u8]) -> Result<(), StoreError> {
        let sub = part(k, 1);
        self.subscription(sub);
        if v.first() != Some(&WHOLE) {
            for entry in attempts::entries(k, v) {
                self.delivery_id(entry.id);
            }
            self.target.queue().insert(k, v).db()?;
            return Ok(());
        }
        let entries = attempts::entries(k, v);
        let held_to = entries
            .last()
            .and_then(|e| e.bytes.as_ref())
            .map_or(1, |b| b.end);
        let mut filed = Vec::with_capacity(entries.len());
        let mut bad = Vec::new();
        for entry in entries {
            let Some(range) = entry.bytes else { continue };
            let bytes = &v[range];
            match codec::decode::<Attempt>(k, bytes) {
                Ok(_) => {
                    self.delivery_id(entry.id);
                    filed.push(Filed {
                        sub,
                        at: entry.at,
                        id: entry.id,
                        n: entry.n,
                        bytes: bytes.to_vec(),
                    });
                }
                Err(StoreError::Corrupt { reason, .. }) => bad.push(format!(
                    "attempt {} of delivery {}: {reason}",
                    entry.n, entry.id
                )),
                Err(other) => return Err(other),
            }
        }
        if held_to != v.len() {
            bad.push(format!("cut short after {held_to} of {} bytes", v.len()));
        }
        self.report.attempts += filed.len() as u64;
        for (rk, rv) in attempts::records(filed) {
            self.target.queue().insert(rk, rv).db()?;
        }
        if !bad.is_empty() {
            self.unreadable("queue", k, bad.join("; "));
            self.target.files().corrupt.insert(k, v).db()?;
        }
        Ok(())
    }
}

/// A big-endian u64 counter's value, or why it is not one.
fn counter(k: &[u8], v: &[u8]) -> Result<u64, StoreError> {
    if v.len() == 8 {
        Ok(part(v, 0))
    } else {
        Err(corrupt(k, format!("a counter of {} bytes, not 8", v.len())))
    }
}

fn corrupt(k: &[u8], reason: String) -> StoreError {
    StoreError::Corrupt {
        key: codec::hex(k),
        reason,
    }
}

/// The copy of the damaged store: a hidden directory beside the target, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn beside(to: &Path) -> Result<Scratch, StoreError> {
        let name = to
            .file_name()
            .map_or("store".into(), |n| n.to_string_lossy().into_owned());
        let path = to.with_file_name(format!(".{name}.repair-source-{}", std::process::id()));
        if path.exists() {
            // Left by an earlier repair of this process that was interrupted.
            std::fs::remove_dir_all(&path)?;
        }
        std::fs::create_dir_all(&path)?;
        Ok(Scratch(path))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Copies the files of `from` (and its subdirectories: sled's `blobs`) into `to`; at the top of
/// a generation (`top`), only sled's, not the store's lock or other generations.
fn copy_dir(from: &Path, to: &Path, top: bool) -> Result<(), StoreError> {
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        if top && !generation::is_sleds(&entry.file_name().to_string_lossy()) {
            continue;
        }
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            std::fs::create_dir_all(&target)?;
            copy_dir(&entry.path(), &target, false)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sled_store::test_support::*;

    #[test]
    fn a_journal_a_crash_left_is_carried_over_and_a_corrupt_one_reported() {
        let dir = tempfile::tempdir().unwrap();
        let damaged = dir.path().join("store");
        {
            let db = sled::open(&damaged).unwrap();
            let queue = db.open_tree("queue").unwrap();
            let mut ops = Ops::default();
            ops.insert(key(DUE, &[5, 1]), due_value(&sample(1, 10, false)));
            ops.insert(NEXT_DELIVERY, 2048u64.to_be_bytes());
            queue.insert(key(JOURNAL, &[7]), ops.encode()).unwrap();
            queue.insert(key(JOURNAL, &[8]), &b"\x01\0\0"[..]).unwrap();
            db.flush().unwrap();
        }
        let repaired = dir.path().join("repaired");
        let report = SledStore::repair(&damaged, &repaired).unwrap();
        assert_eq!((report.journals, report.due), (1, 1));
        assert_eq!(report.next_delivery, 2048, "an id block never goes back");
        let bad = codec::hex(&key(JOURNAL, &[8]));
        let keys: Vec<_> = report.unreadable.iter().map(|u| u.key.clone()).collect();
        assert_eq!(keys, [Some(bad.clone())]);
        let store = open_after_raw_sled(&repaired);
        assert_eq!(store.counts().unwrap().due, 1);
        assert_eq!(store.corrupt_keys().unwrap(), [bad]);
    }
}
