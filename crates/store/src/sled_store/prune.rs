//! Retention on sled: attempts past their retention or past the number kept per subscription,
//! and remembered event ids past the dedup window or past the number kept go, a bounded slice
//! per call.

use std::sync::atomic::Ordering;

use crate::error::StoreError;

use super::attempts;
use super::keys::part;
use super::keys::{expiry_ids, key, ATTEMPT, BY_SUB, FORGOTTEN, SEEN, SEEN_AT};
use super::ops::Ops;
use super::{OrStoreError, SledStore};

impl SledStore {
    pub(super) fn prune_history(&self, now_ms: u64, max: usize) -> Result<usize, StoreError> {
        let mut book = self.book()?;
        self.apply_behind(&mut book)?;
        let mut batch = Ops::default();
        let mut removed = 0;
        let attempts_before =
            now_ms.saturating_sub(self.config.attempt_retention.as_millis() as u64);
        // Walk the per-subscription attempt index, oldest first within each subscription,
        // seeking to the next subscription at the first record whose newest attempt is still
        // within retention (its older ones stay with it, a settle batch apart): the cost is the
        // attempts removed plus one seek per subscription, and needs no index of its own (which
        // would cost every settle a write). A call stops after a bounded number of steps (a
        // record goes whole, so it may remove up to one record more than `max`); the next one
        // goes on from there, and starts over after the last subscription.
        let mut cursor = std::mem::take(&mut book.prune_cursor);
        if cursor.is_empty() {
            cursor = key(BY_SUB, &[0]);
        }
        let mut steps = 0;
        while removed < max && steps < max.saturating_mul(2).max(64) {
            steps += 1;
            let Some(item) = self.queue().range(cursor.clone()..).next() else {
                cursor.clear();
                break;
            };
            let (bk, record) = item.db()?;
            if bk.first() != Some(&BY_SUB) || bk.len() != 33 {
                cursor.clear();
                break;
            }
            let sub = part(&bk, 1);
            let kept = book.disk.get(&sub).map_or(0, |d| d.attempts);
            if attempts::named(&bk).0 < attempts_before || kept > self.config.attempts_kept {
                let entries = attempts::entries(&bk, &record);
                let d = book.disk.entry(sub).or_default();
                d.attempts = d.attempts.saturating_sub(entries.len() as u64);
                book.dirty.insert(sub);
                for pointer in attempts::pointers(&bk, &entries) {
                    batch.remove(pointer);
                }
                for entry in entries {
                    if entry.bytes.is_none() {
                        batch.remove(key(ATTEMPT, &[entry.id, entry.at, entry.n]));
                    }
                    removed += 1;
                }
                cursor = bk.to_vec();
                cursor.push(0);
                batch.remove(bk);
            } else if let Some(next) = sub.checked_add(1) {
                cursor = key(BY_SUB, &[next]);
            } else {
                cursor.clear();
                break;
            }
        }
        book.prune_cursor = cursor;
        let seen_before = now_ms.saturating_sub(self.config.dedup_retention.as_millis() as u64);
        // Past `dedup_kept`, the oldest go whatever their age; a call forgets at most `max`
        // expiry records either way.
        let remembered = self.flusher.remembered.load(Ordering::SeqCst);
        let mut over = remembered
            .saturating_sub(book.forgotten)
            .saturating_sub(self.config.dedup_kept);
        let forgotten_before = book.forgotten;
        for item in self.queue().scan_prefix([SEEN_AT]).take(max) {
            let (tk, further) = item.db()?;
            let record_at = part(&tk, 1);
            if record_at >= seen_before && over == 0 {
                break;
            }
            let first = tk.get(9..).unwrap_or_default();
            for id in std::iter::once(first).chain(expiry_ids(&further)) {
                let seen = [&[SEEN], id].concat();
                // An id seen again after its retention (or, forgotten early, after this record)
                // was remembered anew under a later time: only this old expiry goes, not the
                // fresh memory of it. One waiting for its group commit is about to be
                // (outside the book lock): removing its memory now could come after that, and
                // let the id through again.
                let renewed = self.queue().get(&seen).db()?.is_some_and(|at| {
                    let at = part(&at, 0);
                    if record_at < seen_before {
                        at >= seen_before
                    } else {
                        at > record_at
                    }
                });
                let pending =
                    std::str::from_utf8(id).is_ok_and(|id| book.pending_seen.contains(id));
                if !renewed && !pending {
                    batch.remove(seen);
                }
                removed += 1;
                book.forgotten += 1;
                over = over.saturating_sub(1);
            }
            batch.remove(tk);
        }
        if book.forgotten != forgotten_before {
            batch.insert(FORGOTTEN.to_vec(), book.forgotten.to_be_bytes());
        }
        self.write_now(&mut book, batch)?;
        Ok(removed)
    }
}
