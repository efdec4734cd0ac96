//! The in-memory index of due deliveries: per subscription, a window of its first due
//! deliveries in due order (and, for ordered deliveries, in publish order), with each
//! subscription's next delivery filed twice: by due time (for `next_due_at`) and by turn, the
//! lease order. Only the window is in memory: its subscription's due records on disk are one
//! range (`keys::due_key`), and the store reads on from where the window ends when it runs
//! low (`SledStore::top_up`), so memory grows with the subscriptions that have work due, not
//! with the backlog.
//!
//! Leasing takes turns: the next lease goes to the subscription with a delivery due that was
//! leased from least recently (one never leased from first; between those, the one whose next
//! delivery is due earliest), so a subscription with one delivery due waits for one lease per
//! other subscription, not for their backlogs (the soak's probe waited behind the whole backlog
//! when leases went in due order across subscriptions). A subscription it may not take from (at
//! its bound, its ordered head in flight) is passed over at no cost to the others.

use std::collections::{BTreeMap, BTreeSet};

use super::ids::{IdMap, IdSet};

/// Deliveries a window holds after a read from disk; it is cut back to this when inserts grow
/// it to twice as many, and read on when it falls under a quarter.
pub(super) const WINDOW: usize = 64;

#[derive(Default)]
pub(super) struct DueIndex {
    subs: IdMap<SubDue>,
    /// (due time, id, subscription) of every subscription's next delivery.
    heads: BTreeSet<(u64, u64, u64)>,
    /// The subscriptions whose next delivery was due at `watermark`, in lease order: (last
    /// turn, due time, id, subscription).
    ready: BTreeSet<(u64, u64, u64, u64)>,
    /// The others, by due time: they join `ready` once the time passed in reaches theirs.
    waiting: BTreeSet<(u64, u64, u64)>,
    /// The latest time leasing was asked about.
    watermark: u64,
    /// When each subscription was last leased from, as a count of turns; kept while it has
    /// nothing due, so one that runs dry now and then gets no head start over the others.
    turns: IdMap<u64>,
    /// The turns taken so far.
    turn: u64,
}

/// The first due deliveries of one kind of one subscription, by key `K` (value `V`), and where
/// the window ends: `end` is `None` when every due delivery of the kind not in flight is in
/// it, or the last key read or kept, past which there may be more on disk only.
pub(super) struct Window<K, V> {
    entries: BTreeMap<K, V>,
    end: Option<K>,
}

impl<K: Ord + Copy, V> Default for Window<K, V> {
    fn default() -> Self {
        Window {
            entries: BTreeMap::new(),
            end: None,
        }
    }
}

impl<K: Ord + Copy, V> Window<K, V> {
    /// Files `key` if it falls within the window; a window grown to twice [`WINDOW`] is cut
    /// back to [`WINDOW`]. Returns whether it is in the window.
    fn insert(&mut self, key: K, value: V) -> bool {
        if self.end.is_some_and(|end| key > end) {
            return false;
        }
        self.entries.insert(key, value);
        if self.entries.len() >= 2 * WINDOW {
            while self.entries.len() > WINDOW {
                self.entries.pop_last();
            }
            self.end = self.entries.last_key_value().map(|(k, _)| *k);
        }
        true
    }

    /// Where a read from disk should start (after this key, or from the start for `None`),
    /// when the window runs low and there may be more on disk.
    fn short(&self) -> Option<Option<K>> {
        let end = self.end?;
        (self.entries.len() < WINDOW / 4).then_some(Some(end))
    }

    fn is_empty(&self) -> bool {
        self.entries.is_empty() && self.end.is_none()
    }
}

/// Where a subscription's windows should be read on from disk (see [`DueIndex::short`]):
/// after these keys, from the start for `Some(None)`.
pub(super) struct Short {
    /// After this (due time, id).
    pub(super) unordered: Option<Option<(u64, u64)>>,
    /// After this id.
    pub(super) ordered: Option<Option<u64>>,
}

#[derive(Default)]
struct SubDue {
    /// Deliveries that may go in any order: (due time, id).
    unordered: Window<(u64, u64), ()>,
    /// Ordered deliveries by id (publish order) -> due time: only the first may go.
    ordered: Window<u64, u64>,
    /// How this subscription is filed: its next delivery's (due time, id), the turn it is
    /// filed with, and whether it is in `ready`.
    filed: Option<Filed>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
struct Filed {
    due: u64,
    id: u64,
    turn: u64,
    ready: bool,
}

impl SubDue {
    /// The next delivery: the earliest unordered one or the first ordered one.
    fn next(&self) -> Option<(u64, u64)> {
        let unordered = self.unordered.entries.first_key_value().map(|(k, _)| *k);
        let ordered = self
            .ordered
            .entries
            .first_key_value()
            .map(|(id, due)| (*due, *id));
        match (unordered, ordered) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn is_empty(&self) -> bool {
        self.unordered.is_empty() && self.ordered.is_empty()
    }
}

/// A due delivery as the index knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Entry {
    pub(super) due_at: u64,
    pub(super) id: u64,
    pub(super) ordered: bool,
}

impl DueIndex {
    /// Files a due delivery of `sub` if it falls within the subscription's window; returns
    /// whether it does (if not, it is on disk only, and read when the window gets there).
    pub(super) fn insert(&mut self, sub: u64, entry: Entry) -> bool {
        let s = self.subs.entry(sub).or_default();
        let kept = if entry.ordered {
            s.ordered.insert(entry.id, entry.due_at)
        } else {
            s.unordered.insert((entry.due_at, entry.id), ())
        };
        self.refile(sub);
        kept
    }

    pub(super) fn remove(&mut self, sub: u64, entry: Entry) {
        let Some(s) = self.subs.get_mut(&sub) else {
            return;
        };
        if entry.ordered {
            s.ordered.entries.remove(&entry.id);
        } else {
            s.unordered.entries.remove(&(entry.due_at, entry.id));
        }
        self.refile(sub);
    }

    /// Takes `entry` out for a lease: `sub` has had its turn.
    pub(super) fn lease(&mut self, sub: u64, entry: Entry) {
        self.turn += 1;
        self.turns.insert(sub, self.turn);
        // Refiled with its new turn.
        self.remove(sub, entry);
    }

    /// Notes that `sub` has due deliveries on disk none of which is in memory (on open): its
    /// windows are read from the start.
    pub(super) fn unread(&mut self, sub: u64) {
        let s = self.subs.entry(sub).or_default();
        s.unordered.end.get_or_insert((0, 0));
        s.ordered.end.get_or_insert(0);
    }

    /// Where `sub`'s windows should be read on from disk, if one runs low and may have more.
    pub(super) fn short(&self, sub: u64) -> Option<Short> {
        let s = self.subs.get(&sub)?;
        let short = Short {
            unordered: s.unordered.short(),
            ordered: s.ordered.short(),
        };
        (short.unordered.is_some() || short.ordered.is_some()).then_some(short)
    }

    /// Files what a read from disk found after the window of `sub`'s unordered deliveries:
    /// `entries`, in key order, and `end`, the last key read when the read stopped before the
    /// end of the subscription's range (`None`: it reached the end).
    pub(super) fn fill_unordered(
        &mut self,
        sub: u64,
        entries: &[(u64, u64)],
        end: Option<(u64, u64)>,
    ) {
        let s = self.subs.entry(sub).or_default();
        for &key in entries {
            s.unordered.entries.insert(key, ());
        }
        s.unordered.end = end;
        self.refile(sub);
    }

    /// [`DueIndex::fill_unordered`] for the ordered deliveries: (id, due time) in id order.
    pub(super) fn fill_ordered(&mut self, sub: u64, entries: &[(u64, u64)], end: Option<u64>) {
        let s = self.subs.entry(sub).or_default();
        for &(id, due_at) in entries {
            s.ordered.entries.insert(id, due_at);
        }
        s.ordered.end = end;
        self.refile(sub);
    }

    /// Takes `sub` out of the index (holding it: its due records on disk move to held).
    pub(super) fn drop_subscription(&mut self, sub: u64) {
        if let Some(s) = self.subs.remove(&sub) {
            if let Some(filed) = s.filed {
                self.unfile(sub, filed);
            }
        }
    }

    /// How many deliveries the windows hold, over all subscriptions.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.subs
            .values()
            .map(|s| s.unordered.entries.len() + s.ordered.entries.len())
            .sum()
    }

    /// The earliest due time of any delivery.
    pub(super) fn earliest(&self) -> Option<u64> {
        self.heads.first().map(|(due, _, _)| *due)
    }

    /// The subscription whose turn it is at `now`: of those with a delivery due at or before
    /// `now`, and not in `skip`, the one leased from least recently (never first), then the
    /// one whose next delivery is due earliest (by due time, then id).
    pub(super) fn next_subscription(&mut self, now: u64, skip: &IdSet) -> Option<u64> {
        if now > self.watermark {
            self.watermark = now;
            while let Some(&(due, id, sub)) = self.waiting.first() {
                if due > now {
                    break;
                }
                self.waiting.remove(&(due, id, sub));
                let turn = self.turns.get(&sub).copied().unwrap_or(0);
                self.ready.insert((turn, due, id, sub));
                if let Some(filed) = self.subs.get_mut(&sub).and_then(|s| s.filed.as_mut()) {
                    filed.ready = true;
                }
            }
        }
        // Only a time before the watermark (a caller's clock going back) finds ready ones not
        // due yet.
        self.ready
            .iter()
            .find(|(_, due, _, sub)| *due <= now && !skip.contains(sub))
            .map(|(_, _, _, sub)| *sub)
    }

    /// `sub`'s delivery that should go next, if one due at or before `now` may: the earlier
    /// (by due time, then id) of its first unordered one and, when `ordered_may_go`, the head
    /// of its ordered ones.
    pub(super) fn next_for(&self, sub: u64, now: u64, ordered_may_go: bool) -> Option<Entry> {
        let s = self.subs.get(&sub)?;
        let head = s
            .ordered
            .entries
            .first_key_value()
            .filter(|_| ordered_may_go)
            .map(|(&id, &due_at)| Entry {
                due_at,
                id,
                ordered: true,
            });
        let unordered = s
            .unordered
            .entries
            .first_key_value()
            .map(|(&(due_at, id), _)| Entry {
                due_at,
                id,
                ordered: false,
            });
        [head, unordered]
            .into_iter()
            .flatten()
            .filter(|e| e.due_at <= now)
            .min_by_key(|e| (e.due_at, e.id))
    }

    fn unfile(&mut self, sub: u64, filed: Filed) {
        self.heads.remove(&(filed.due, filed.id, sub));
        if filed.ready {
            self.ready.remove(&(filed.turn, filed.due, filed.id, sub));
        } else {
            self.waiting.remove(&(filed.due, filed.id, sub));
        }
    }

    /// Keeps `heads`, `ready` and `waiting` in step with `sub`'s next delivery and turn.
    fn refile(&mut self, sub: u64) {
        let turn = self.turns.get(&sub).copied().unwrap_or(0);
        let watermark = self.watermark;
        let Some(s) = self.subs.get_mut(&sub) else {
            return;
        };
        let next = s.next().map(|(due, id)| Filed {
            due,
            id,
            turn,
            ready: due <= watermark,
        });
        if next == s.filed {
            if next.is_none() && s.is_empty() {
                self.subs.remove(&sub);
            }
            return;
        }
        let old = std::mem::replace(&mut s.filed, next);
        let empty = s.is_empty();
        if let Some(old) = old {
            self.unfile(sub, old);
        }
        match next {
            Some(filed) => {
                self.heads.insert((filed.due, filed.id, sub));
                if filed.ready {
                    self.ready.insert((turn, filed.due, filed.id, sub));
                } else {
                    self.waiting.insert((filed.due, filed.id, sub));
                }
            }
            None if empty => {
                self.subs.remove(&sub);
            }
            None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(due_at: u64, id: u64, ordered: bool) -> Entry {
        Entry {
            due_at,
            id,
            ordered,
        }
    }

    #[test]
    fn subscriptions_come_in_order_of_their_earliest_due_delivery() {
        let mut index = DueIndex::default();
        index.insert(1, e(30, 1, false));
        index.insert(2, e(10, 2, false));
        index.insert(1, e(5, 3, false));
        index.insert(3, e(50, 4, false));
        let none = IdSet::default();
        assert_eq!(index.next_subscription(40, &none), Some(1));
        assert_eq!(index.next_subscription(40, &IdSet::from_iter([1])), Some(2));
        assert_eq!(
            index.next_subscription(40, &IdSet::from_iter([1, 2])),
            None,
            "sub 3 is not due yet"
        );
        assert_eq!(index.earliest(), Some(5));
        index.remove(1, e(5, 3, false));
        assert_eq!(index.next_subscription(40, &none), Some(2));
        assert_eq!(index.next_for(1, 40, true), Some(e(30, 1, false)));
    }

    #[test]
    fn only_the_first_ordered_delivery_is_a_candidate() {
        let mut index = DueIndex::default();
        // The head (id 1) waits for a retry; the ones behind it are due but must wait too.
        index.insert(7, e(100, 1, true));
        index.insert(7, e(10, 2, true));
        index.insert(7, e(10, 3, true));
        let none = IdSet::default();
        assert_eq!(
            index.next_subscription(50, &none),
            None,
            "filed under its head's time"
        );
        assert_eq!(index.earliest(), Some(100));
        assert_eq!(index.next_for(7, 50, true), None);
        assert_eq!(index.next_for(7, 100, true), Some(e(100, 1, true)));
        assert_eq!(index.next_for(7, 100, false), None, "one in flight");
        index.insert(7, e(60, 9, false));
        assert_eq!(
            index.next_for(7, 100, true),
            Some(e(60, 9, false)),
            "earlier first"
        );
        index.remove(7, e(60, 9, false));
        index.remove(7, e(100, 1, true));
        assert_eq!(index.next_subscription(50, &none), Some(7));
        assert_eq!(index.next_for(7, 50, true), Some(e(10, 2, true)));
    }

    #[test]
    fn subscriptions_take_turns_least_recently_leased_first() {
        let mut index = DueIndex::default();
        for n in 0..4 {
            index.insert(1, e(n, 10 + n, false));
        }
        index.insert(2, e(5, 20, false));
        index.insert(2, e(6, 21, false));
        index.insert(3, e(50, 30, false));
        let none = IdSet::default();
        let take = |index: &mut DueIndex, now: u64| {
            let sub = index.next_subscription(now, &none)?;
            let entry = index.next_for(sub, now, true)?;
            index.lease(sub, entry);
            Some((sub, entry.id))
        };
        // Never leased from: by their next delivery's due time; then by turn.
        assert_eq!(take(&mut index, 10), Some((1, 10)));
        assert_eq!(take(&mut index, 10), Some((2, 20)));
        assert_eq!(take(&mut index, 10), Some((1, 11)));
        assert_eq!(take(&mut index, 10), Some((2, 21)));
        // Subscription 3 comes due: never leased from, it goes before 1's backlog.
        assert_eq!(take(&mut index, 60), Some((3, 30)));
        assert_eq!(take(&mut index, 60), Some((1, 12)));
        // Subscription 2 runs dry and comes back: it keeps its turn, so it goes before 1 (its
        // last turn is older), but after one that was never leased from.
        index.insert(2, e(60, 22, false));
        index.insert(4, e(60, 40, false));
        assert_eq!(take(&mut index, 60), Some((4, 40)));
        assert_eq!(take(&mut index, 60), Some((2, 22)));
        assert_eq!(take(&mut index, 60), Some((1, 13)));
        assert_eq!(take(&mut index, 60), None);
        assert_eq!(index.earliest(), None);
        // A time before the latest asked finds only what is due by then.
        index.insert(5, e(100, 50, false));
        index.insert(6, e(30, 60, false));
        assert_eq!(index.next_subscription(200, &none), Some(6));
        assert_eq!(
            index.next_subscription(200, &IdSet::from_iter([6])),
            Some(5)
        );
        assert_eq!(index.next_subscription(40, &IdSet::from_iter([6])), None);
        assert_eq!(index.next_subscription(20, &none), None);
    }

    #[test]
    fn holding_takes_a_subscription_out_whole() {
        let mut index = DueIndex::default();
        index.insert(1, e(1, 1, false));
        index.insert(1, e(2, 2, true));
        index.insert(2, e(3, 3, false));
        index.drop_subscription(1);
        assert_eq!(index.next_subscription(10, &IdSet::default()), Some(2));
        index.drop_subscription(1);
        index.remove(2, e(3, 3, false));
        assert_eq!(index.earliest(), None);
        assert!(index.subs.is_empty(), "empty subscriptions are dropped");
    }
}
