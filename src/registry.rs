//! The registry: the one writer of subscription state. It owns the matcher and keeps it in step
//! with the store, under the matcher's write lock, so that a host edit, a 410, a switch to
//! `too_many_errors` and a reactivation each read the current record and change only what they
//! mean to change. A change of state holds or releases the subscription's deliveries under the
//! same lock, and the lease limits learn which subscriptions are ordered. It also remembers when
//! each subscription's next rotated-out secret expires, so expired ones are dropped from the
//! record without a scan of all subscriptions. On a store other instances share, it follows
//! their changes: [`follow_changes`] reads again the subscriptions the store says changed.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard};

use callout_core::{CompiledSubscription, Matcher, State, Subscription};
use crossbeam_channel::Receiver;

use callout_store::{Backend, Change, SubscriptionFilter};

use crate::clock::Clock;
use crate::engine::Shared;
use crate::error::Error;
use crate::limits::Limits;

/// Subscriptions whose expired secrets one [`Registry::drop_expired_secrets`] call cleans.
const EXPIRED_SECRETS_PER_CALL: usize = 100;

/// What a change did: the subscription before and after, both as stored.
pub(crate) struct Changed {
    pub(crate) before: Subscription,
    pub(crate) after: Subscription,
}

pub(crate) struct Registry {
    store: Arc<dyn Backend>,
    matcher: RwLock<Matcher>,
    /// What the dispatcher leases within; told which subscriptions are ordered, under the
    /// matcher's write lock.
    limits: Arc<Limits>,
    clock: Arc<dyn Clock>,
    /// `(expires_at, subscription id)` of each subscription's next expiring secret, as filed;
    /// an entry left behind by a later change is found to have nothing to drop.
    secret_expiries: Mutex<BTreeSet<(u64, u64)>>,
}

impl Registry {
    /// The registry over `store`'s subscriptions. A stored subscription that no longer
    /// validates is kept out of matching rather than stopping the engine; the host still sees
    /// it through `get`.
    pub(crate) fn load(
        store: Arc<dyn Backend>,
        clock: Arc<dyn Clock>,
        limits: Arc<Limits>,
    ) -> Result<Registry, Error> {
        let mut matcher = Matcher::new();
        let mut secret_expiries = BTreeSet::new();
        for sub in store.list_subscriptions(&SubscriptionFilter::default())? {
            let id = sub.id;
            limits.set_ordered(id, crate::publish::ordered(&sub));
            if let Some(at) = sub.next_secret_expiry() {
                secret_expiries.insert((at, id));
            }
            if let Err(error) = matcher.insert(sub) {
                tracing::warn!(subscription = id, %error, "stored subscription is invalid; not matched");
            }
        }
        Ok(Registry {
            store,
            matcher: RwLock::new(matcher),
            limits,
            clock,
            secret_expiries: Mutex::new(secret_expiries),
        })
    }

    /// Files a stored subscription in the matcher and the lease limits.
    fn file(&self, matcher: &mut Matcher, sub: Subscription) -> Result<(), Error> {
        self.limits
            .set_ordered(sub.id, crate::publish::ordered(&sub));
        if let Some(at) = sub.next_secret_expiry() {
            let mut expiries = self.secret_expiries.lock().map_err(|_| Error::Poisoned)?;
            expiries.insert((at, sub.id));
        }
        matcher.insert(sub)?;
        Ok(())
    }

    /// The matcher, for reading.
    pub(crate) fn matcher(&self) -> Result<RwLockReadGuard<'_, Matcher>, Error> {
        self.matcher.read().map_err(|_| Error::Poisoned)
    }

    /// The matcher's compiled copy of subscription `id`, shared. One the matcher does not know
    /// is looked for in the store and filed: on a store shared by several instances, another
    /// one may have created it since this one loaded, and its deliveries are this instance's
    /// to send, not orphans to dead-letter.
    pub(crate) fn compiled(&self, id: u64) -> Option<Arc<CompiledSubscription>> {
        if let Some(known) = self.matcher.read().ok()?.get(id) {
            return Some(Arc::clone(known));
        }
        let mut matcher = self.matcher.write().ok()?;
        if let Some(known) = matcher.get(id) {
            return Some(Arc::clone(known));
        }
        let stored = match self.store.get_subscription(id) {
            Ok(stored) => stored?,
            Err(error) => {
                tracing::error!(%error, subscription = id, "could not read a subscription");
                return None;
            }
        };
        if let Err(error) = self.file(&mut matcher, stored) {
            tracing::warn!(subscription = id, %error, "stored subscription is invalid; not matched");
        }
        matcher.get(id).map(Arc::clone)
    }

    /// Validates and stores a new subscription; the matcher gets it in the same step.
    pub(crate) fn create(&self, subscription: Subscription) -> Result<Subscription, Error> {
        subscription.validate()?;
        crate::send::check_secrets(&subscription)?;
        let mut matcher = self.matcher.write().map_err(|_| Error::Poisoned)?;
        let stored = self
            .store
            .create_subscription(subscription, self.clock.now_ms())?;
        self.file(&mut matcher, stored.clone())?;
        Ok(stored)
    }

    /// The subscription as stored.
    pub(crate) fn get(&self, id: u64) -> Result<Option<Subscription>, Error> {
        Ok(self.store.get_subscription(id)?)
    }

    /// Subscriptions by name, event and state.
    pub(crate) fn list(&self, filter: &SubscriptionFilter) -> Result<Vec<Subscription>, Error> {
        Ok(self.store.list_subscriptions(filter)?)
    }

    /// Changes subscription `id`: `change` gets the current record and returns whether to store
    /// it. Read, change and write happen under the matcher's write lock, so no other change
    /// comes in between and none is undone; leaving `active` holds its deliveries and entering
    /// it releases them, under the same lock, so the queue always follows the last change.
    /// Returns `None` when nothing was stored.
    pub(crate) fn change(
        &self,
        id: u64,
        change: impl FnOnce(&mut Subscription) -> Result<bool, Error>,
    ) -> Result<Option<Changed>, Error> {
        let mut matcher = self.matcher.write().map_err(|_| Error::Poisoned)?;
        let before = self
            .store
            .get_subscription(id)?
            .ok_or(Error::NotFound(id))?;
        let mut next = before.clone();
        if !change(&mut next)? {
            return Ok(None);
        }
        next.id = id;
        next.validate()?;
        crate::send::check_secrets(&next)?;
        let now = self.clock.now_ms();
        let after = self.store.update_subscription(next, now)?;
        self.file(&mut matcher, after.clone())?;
        match (before.state, after.state) {
            (State::Active, State::Active) => {}
            (_, State::Active) => {
                // A failure that landed after the switch-off (an attempt still in flight, on
                // this or another instance) must not count against the resumed subscription.
                self.store.end_failure_streak(id)?;
                self.store.resume_subscription(id, now)?;
            }
            (State::Active, _) => self.store.hold_subscription(id)?,
            _ => {}
        }
        Ok(Some(Changed { before, after }))
    }

    /// Drops the secrets whose rotation grace has ended by `now` from the records that hold
    /// them. They stopped signing at their expiry already (`send::signature` skips them); this
    /// keeps them from being stored, listed and shown for ever.
    pub(crate) fn drop_expired_secrets(&self, now: u64) {
        // A bounded share per call, so one chore never holds the dispatcher long; the rest
        // waits for the next call.
        for _ in 0..EXPIRED_SECRETS_PER_CALL {
            let due = {
                let Ok(mut expiries) = self.secret_expiries.lock() else {
                    return;
                };
                match expiries.first().copied() {
                    Some(entry @ (at, _)) if at <= now => {
                        expiries.remove(&entry);
                        entry.1
                    }
                    _ => return,
                }
            };
            let dropped = self.change(due, |sub| Ok(sub.drop_expired_secrets(now)));
            match dropped {
                Ok(_) | Err(Error::NotFound(_)) => {}
                Err(error) => {
                    tracing::warn!(subscription = due, %error, "could not drop expired secrets");
                }
            }
        }
    }

    /// Reads subscription `id` again after another instance changed it: the matcher and the
    /// lease limits get the stored record, or lose it when it was deleted (or no longer
    /// validates).
    pub(crate) fn refresh(&self, id: u64) -> Result<(), Error> {
        let mut matcher = self.matcher.write().map_err(|_| Error::Poisoned)?;
        match self.store.get_subscription(id)? {
            Some(stored) => {
                if let Err(error) = self.file(&mut matcher, stored) {
                    tracing::warn!(subscription = id, %error, "stored subscription is invalid; not matched");
                    matcher.remove(id);
                }
            }
            None => {
                matcher.remove(id);
                self.limits.forget(id);
            }
        }
        Ok(())
    }

    /// Reads every subscription again, after changes may have gone untold.
    pub(crate) fn refresh_all(&self) -> Result<(), Error> {
        let mut matcher = self.matcher.write().map_err(|_| Error::Poisoned)?;
        let stored = self
            .store
            .list_subscriptions(&SubscriptionFilter::default())?;
        let kept: BTreeSet<u64> = stored.iter().map(|sub| sub.id).collect();
        let gone: Vec<u64> = matcher.ids().filter(|id| !kept.contains(id)).collect();
        for id in gone {
            matcher.remove(id);
            self.limits.forget(id);
        }
        for sub in stored {
            let id = sub.id;
            if let Err(error) = self.file(&mut matcher, sub) {
                tracing::warn!(subscription = id, %error, "stored subscription is invalid; not matched");
                matcher.remove(id);
            }
        }
        Ok(())
    }

    /// Deletes a subscription from the matcher and the store together.
    pub(crate) fn delete(&self, id: u64) -> Result<Option<Subscription>, Error> {
        let mut matcher = self.matcher.write().map_err(|_| Error::Poisoned)?;
        matcher.remove(id);
        self.limits.forget(id);
        Ok(self.store.delete_subscription(id)?)
    }
}

/// The most changes one turn of [`follow_changes`] takes together: a burst of notices for one
/// subscription costs one read of it.
const CHANGES_PER_TURN: usize = 1_000;

/// The change thread of an engine on a shared store: reads again what other instances
/// changed, and wakes the dispatcher when deliveries may be due (another instance's publish,
/// or a subscription switched back on). Ends when `stop` is closed.
pub(crate) fn follow_changes(shared: &Shared, changes: &Receiver<Change>, stop: &Receiver<()>) {
    loop {
        let first = crossbeam_channel::select! {
            recv(changes) -> change => match change {
                Ok(change) => change,
                Err(_) => return,
            },
            recv(stop) -> _ => return,
        };
        let mut subscriptions = BTreeSet::new();
        let mut everything = false;
        for change in std::iter::once(first).chain(changes.try_iter().take(CHANGES_PER_TURN)) {
            match change {
                Change::Subscription(id) => {
                    subscriptions.insert(id);
                }
                Change::Everything => everything = true,
                _ => {}
            }
        }
        let refreshed = if everything {
            shared.registry.refresh_all()
        } else {
            subscriptions
                .into_iter()
                .try_for_each(|id| shared.registry.refresh(id))
        };
        if let Err(error) = refreshed {
            // The next change, or a lost connection's full reload, tries again.
            tracing::error!(%error, "could not read changed subscriptions");
        }
        shared.dispatch.wake();
    }
}
