//! The bounds leasing keeps to, from two sources: the registry says which subscriptions are
//! ordered (one delivery in flight at a time), subscription health says how many each may have
//! by how its attempts went and which are slow (those share a bounded part of the workers). The
//! dispatcher leases within the combination.

use std::collections::{HashMap, HashSet};
use std::sync::{RwLock, RwLockReadGuard};

use callout_store::LeaseLimits;

use crate::error::Error;

pub(crate) struct Limits {
    state: RwLock<State>,
}

/// The limits and what they are made of.
pub(crate) struct State {
    lease: LeaseLimits,
    ordered: HashSet<u64>,
    /// Bounds set by health; a subscription health has not seen yet has one.
    health: HashMap<u64, usize>,
}

impl State {
    /// The limits to lease within.
    pub(crate) fn lease(&self) -> &LeaseLimits {
        &self.lease
    }
}

impl Limits {
    /// No subscription known yet: each starts with one in flight (health raises it), and the
    /// slow ones have `slow_share` in all.
    pub(crate) fn new(slow_share: usize) -> Limits {
        let mut lease = LeaseLimits::new(1);
        lease.set_shared_bound(slow_share);
        Limits {
            state: RwLock::new(State {
                lease,
                ordered: HashSet::new(),
                health: HashMap::new(),
            }),
        }
    }

    /// The limits, for reading; leasing takes [`State::lease`].
    pub(crate) fn read(&self) -> Result<RwLockReadGuard<'_, State>, Error> {
        self.state.read().map_err(|_| Error::Poisoned)
    }

    /// Subscription `id` is ordered (or not): one in flight at a time.
    pub(crate) fn set_ordered(&self, id: u64, ordered: bool) {
        self.update(id, |state| {
            if ordered {
                state.ordered.insert(id);
            } else {
                state.ordered.remove(&id);
            }
        });
    }

    /// Health's bound for subscription `id` (one until health raises it).
    pub(crate) fn set_health_bound(&self, id: u64, bound: usize) {
        self.update(id, |state| {
            state.health.insert(id, bound);
        });
    }

    /// Subscription `id` is slow (or not): it shares the slow share with the other slow ones.
    pub(crate) fn set_slow(&self, id: u64, slow: bool) {
        self.update(id, |state| state.lease.share(id, slow));
    }

    /// Forgets a deleted subscription.
    pub(crate) fn forget(&self, id: u64) {
        self.update(id, |state| {
            state.ordered.remove(&id);
            state.health.remove(&id);
            state.lease.share(id, false);
        });
    }

    fn update(&self, id: u64, change: impl FnOnce(&mut State)) {
        let Ok(mut state) = self.state.write() else {
            return;
        };
        change(&mut state);
        let health = state.health.get(&id).copied();
        let bound = if state.ordered.contains(&id) {
            Some(1)
        } else {
            health
        };
        state.lease.set(id, bound);
    }
}
