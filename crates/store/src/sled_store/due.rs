//! The in-memory index of due deliveries: per subscription, in due order (and, for ordered
//! deliveries, in publish order), with each subscription's next delivery in one sorted set.
//! Leasing takes the earliest of those heads again and again, skipping subscriptions it may not
//! take from, so a backlog behind a subscription at its in-flight bound costs nothing per lease,
//! where walking sled's due keys cost a step per delivery passed over. It mirrors the `q`
//! records minus the leased ones, and is rebuilt from them on open.

use std::collections::{BTreeMap, BTreeSet};

use super::ids::{IdMap, IdSet};

#[derive(Default)]
pub(super) struct DueIndex {
    subs: IdMap<SubDue>,
    /// (due time, id, subscription) of every subscription's next delivery.
    heads: BTreeSet<(u64, u64, u64)>,
}

#[derive(Default)]
struct SubDue {
    /// Deliveries that may go in any order: (due time, id).
    unordered: BTreeSet<(u64, u64)>,
    /// Ordered deliveries by id (publish order) -> due time: only the first may go.
    ordered: BTreeMap<u64, u64>,
    /// The (due time, id) this subscription is filed under in `heads`.
    head: Option<(u64, u64)>,
}

impl SubDue {
    /// The next delivery: the earliest unordered one or the first ordered one.
    fn next(&self) -> Option<(u64, u64)> {
        let unordered = self.unordered.first().copied();
        let ordered = self.ordered.first_key_value().map(|(id, due)| (*due, *id));
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
    pub(super) fn insert(&mut self, sub: u64, entry: Entry) {
        let s = self.subs.entry(sub).or_default();
        if entry.ordered {
            s.ordered.insert(entry.id, entry.due_at);
        } else {
            s.unordered.insert((entry.due_at, entry.id));
        }
        self.refile(sub);
    }

    pub(super) fn remove(&mut self, sub: u64, entry: Entry) {
        let Some(s) = self.subs.get_mut(&sub) else {
            return;
        };
        if entry.ordered {
            s.ordered.remove(&entry.id);
        } else {
            s.unordered.remove(&(entry.due_at, entry.id));
        }
        self.refile(sub);
    }

    /// Every due delivery of `sub`, taken out of the index (holding a subscription).
    pub(super) fn take_subscription(&mut self, sub: u64) -> Vec<Entry> {
        let Some(s) = self.subs.remove(&sub) else {
            return Vec::new();
        };
        if let Some((due, id)) = s.head {
            self.heads.remove(&(due, id, sub));
        }
        let ordered = s.ordered.iter().map(|(&id, &due_at)| Entry {
            due_at,
            id,
            ordered: true,
        });
        let unordered = s.unordered.iter().map(|&(due_at, id)| Entry {
            due_at,
            id,
            ordered: false,
        });
        ordered.chain(unordered).collect()
    }

    /// The earliest due time of any delivery.
    pub(super) fn earliest(&self) -> Option<u64> {
        self.heads.first().map(|(due, _, _)| *due)
    }

    /// The subscription whose next delivery is the earliest (by due time, then id) at or
    /// before `now`, passing over those in `skip`.
    pub(super) fn next_subscription(&self, now: u64, skip: &IdSet) -> Option<u64> {
        self.heads
            .iter()
            .take_while(|(due, _, _)| *due <= now)
            .find(|(_, _, sub)| !skip.contains(sub))
            .map(|(_, _, sub)| *sub)
    }

    /// `sub`'s delivery that should go next, if one due at or before `now` may: the earlier
    /// (by due time, then id) of its first unordered one and, when `ordered_may_go`, the head
    /// of its ordered ones.
    pub(super) fn next_for(&self, sub: u64, now: u64, ordered_may_go: bool) -> Option<Entry> {
        let s = self.subs.get(&sub)?;
        let head = s
            .ordered
            .first_key_value()
            .filter(|_| ordered_may_go)
            .map(|(&id, &due_at)| Entry {
                due_at,
                id,
                ordered: true,
            });
        let unordered = s.unordered.first().map(|&(due_at, id)| Entry {
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

    /// Keeps `heads` in step with `sub`'s earliest due time.
    fn refile(&mut self, sub: u64) {
        let Some(s) = self.subs.get_mut(&sub) else {
            return;
        };
        let next = s.next();
        if next == s.head {
            return;
        }
        if let Some((due, id)) = s.head {
            self.heads.remove(&(due, id, sub));
        }
        s.head = next;
        match next {
            Some((due, id)) => {
                self.heads.insert((due, id, sub));
            }
            None if s.is_empty() => {
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
    fn holding_takes_a_subscription_out_whole() {
        let mut index = DueIndex::default();
        index.insert(1, e(1, 1, false));
        index.insert(1, e(2, 2, true));
        index.insert(2, e(3, 3, false));
        let mut taken = index.take_subscription(1);
        taken.sort_by_key(|e| e.id);
        assert_eq!(taken, [e(1, 1, false), e(2, 2, true)]);
        assert_eq!(index.next_subscription(10, &IdSet::default()), Some(2));
        assert!(index.take_subscription(1).is_empty());
        index.remove(2, e(3, 3, false));
        assert_eq!(index.earliest(), None);
        assert!(index.subs.is_empty(), "empty subscriptions are dropped");
    }
}
