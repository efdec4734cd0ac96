//! Tenant isolation: every dialect reaches the engine through a [`Scope`], which shows a caller
//! only its tenant's subscriptions and what belongs to them (deliveries, attempts, dead
//! letters, counts), stamps its tenant on what it creates, and answers "not found" for
//! another tenant's object exactly as for one that does not exist.

use callout::store::{Attempt, Counts, Delivery, SubscriptionFilter};
use callout::{DeadFilter, Engine, Event, Receipt, Subscription};

use crate::auth::Caller;
use crate::problem::Problem;

/// How many of a subscription's newest attempts are searched for a delivered delivery.
pub(crate) const RECENT_ATTEMPTS: usize = 1_000;

/// The engine as one caller may use it.
pub(crate) struct Scope<'a> {
    pub(crate) engine: &'a Engine,
    pub(crate) caller: &'a Caller,
}

impl Scope<'_> {
    fn owns(&self, sub: &Subscription) -> bool {
        sub.tenant.as_deref() == Some(self.caller.tenant.as_str())
    }

    /// The caller's subscription `id`, or `None` (absent, or another tenant's).
    pub(crate) fn get(&self, id: u64) -> Result<Option<Subscription>, Problem> {
        Ok(self
            .engine
            .subscriptions()
            .get(id)?
            .filter(|sub| self.owns(sub)))
    }

    /// The caller's subscription `id`, or 404.
    pub(crate) fn require(&self, id: u64) -> Result<Subscription, Problem> {
        self.get(id)?
            .ok_or_else(|| Problem::not_found("such subscription"))
    }

    /// The caller's subscriptions that `filter` selects, in id order.
    pub(crate) fn list(&self, filter: &SubscriptionFilter) -> Result<Vec<Subscription>, Problem> {
        let mut subs = self.engine.subscriptions().list(filter)?;
        subs.retain(|sub| self.owns(sub));
        Ok(subs)
    }

    /// Stores a new subscription for the caller's tenant. What the store assigns (id, GUID,
    /// times) is never taken from the request, so a client cannot pick another's GUID.
    pub(crate) fn create(
        &self,
        mut sub: Subscription,
        tested: bool,
    ) -> Result<Subscription, Problem> {
        sub.id = 0;
        sub.guid.clear();
        sub.tenant = Some(self.caller.tenant.clone());
        // A vendor document may name its author (SuperOffice's RegisteredAssociate); else the
        // caller is.
        sub.created_by
            .get_or_insert_with(|| self.caller.name.clone());
        sub.updated_by
            .get_or_insert_with(|| self.caller.name.clone());
        let subs = self.engine.subscriptions();
        Ok(if tested {
            subs.create_tested(sub)?
        } else {
            subs.create(sub)?
        })
    }

    /// Replaces the caller's subscription `id` with `next`; what the store assigned and the
    /// tenant are kept from the stored record whatever `next` says.
    pub(crate) fn replace(&self, id: u64, mut next: Subscription) -> Result<Subscription, Problem> {
        let stored = self.require(id)?;
        next.id = stored.id;
        next.guid = stored.guid;
        next.tenant = stored.tenant;
        next.created_at = stored.created_at;
        next.created_by = stored.created_by;
        next.updated_by = Some(self.caller.name.clone());
        Ok(self.engine.subscriptions().update(next)?)
    }

    /// Deletes the caller's subscription `id`; `None` if it has none.
    pub(crate) fn delete(&self, id: u64) -> Result<Option<Subscription>, Problem> {
        if self.get(id)?.is_none() {
            return Ok(None);
        }
        Ok(self.engine.subscriptions().delete(id)?)
    }

    /// A delivery of one of the caller's subscriptions.
    pub(crate) fn delivery(&self, id: u64) -> Result<Option<Delivery>, Problem> {
        let Some(delivery) = self.engine.delivery(id)? else {
            return Ok(None);
        };
        Ok(self.get(delivery.subscription_id)?.map(|_| delivery))
    }

    /// The attempts of one of the caller's deliveries. A delivered delivery is not kept, only
    /// its attempts, which say nothing of their subscription: it is the caller's when it is
    /// among the [`RECENT_ATTEMPTS`] newest attempts of one of the caller's subscriptions
    /// (older ones of delivered deliveries answer "not found").
    pub(crate) fn attempts(&self, delivery_id: u64) -> Result<Option<Vec<Attempt>>, Problem> {
        if let Some(delivery) = self.engine.delivery(delivery_id)? {
            if self.get(delivery.subscription_id)?.is_none() {
                return Ok(None);
            }
            return Ok(Some(self.engine.attempts(delivery_id)?));
        }
        for sub in self.list(&SubscriptionFilter::default())? {
            let recent = self.engine.subscription_attempts(sub.id, RECENT_ATTEMPTS)?;
            if recent.iter().any(|(delivery, _)| *delivery == delivery_id) {
                return Ok(Some(self.engine.attempts(delivery_id)?));
            }
        }
        Ok(None)
    }

    /// Deliveries by state over the caller's subscriptions.
    pub(crate) fn stats(&self) -> Result<Counts, Problem> {
        let mut total = Counts::default();
        for sub in self.list(&SubscriptionFilter::default())? {
            let c = self.engine.subscription_stats(sub.id)?;
            total.due += c.due;
            total.retrying += c.retrying;
            total.in_flight += c.in_flight;
            total.held += c.held;
            total.delivered += c.delivered;
            total.dead += c.dead;
        }
        Ok(total)
    }

    /// The subscriptions a dead-letter filter reaches: the one it names (if the caller's), or
    /// all of the caller's.
    fn dead_scope(&self, filter: &DeadFilter) -> Result<Vec<DeadFilter>, Problem> {
        let ids = match filter.subscription {
            Some(id) => vec![self.require(id)?.id],
            None => self
                .list(&SubscriptionFilter::default())?
                .iter()
                .map(|s| s.id)
                .collect(),
        };
        Ok(ids
            .into_iter()
            .map(|id| DeadFilter {
                subscription: Some(id),
                ..*filter
            })
            .collect())
    }

    /// The caller's dead letters `filter` selects, by delivery id.
    pub(crate) fn dead_letters(&self, filter: &DeadFilter) -> Result<Vec<Delivery>, Problem> {
        let mut all = Vec::new();
        for scoped in self.dead_scope(filter)? {
            all.extend(self.engine.dead_letters(&scoped)?);
        }
        all.sort_by_key(|d| d.id);
        Ok(all)
    }

    /// Replays the caller's dead letters `filter` selects; how many.
    pub(crate) fn replay_dead(&self, filter: &DeadFilter) -> Result<usize, Problem> {
        let mut count = 0;
        for scoped in self.dead_scope(filter)? {
            count += self.engine.replay_dead(&scoped)?;
        }
        Ok(count)
    }

    /// Purges the caller's dead letters `filter` selects; how many.
    pub(crate) fn purge_dead(&self, filter: &DeadFilter) -> Result<usize, Problem> {
        let mut count = 0;
        for scoped in self.dead_scope(filter)? {
            count += self.engine.purge_dead(&scoped)?;
        }
        Ok(count)
    }

    /// Publishes events as the caller's tenant: each event's tenant is the caller's (an event
    /// naming another is refused), and a host-supplied event id is namespaced by the tenant,
    /// so one tenant's ids can never make another's events duplicates. The receipt's ids are
    /// given back as the caller wrote them.
    pub(crate) fn publish(&self, mut events: Vec<Event>) -> Result<Receipt, Problem> {
        let tenant = &self.caller.tenant;
        let prefix = format!("{tenant}:");
        for (n, event) in events.iter_mut().enumerate() {
            match &event.tenant {
                Some(other) if other != tenant => {
                    return Err(Problem::invalid(
                        "tenant",
                        format!("event {n}: tenant {other:?} is not the caller's tenant"),
                    ))
                }
                _ => event.tenant = Some(tenant.clone()),
            }
            if let Some(id) = &event.event_id {
                event.event_id = Some(format!("{prefix}{id}"));
            }
        }
        let mut receipt = self.engine.publish_batch(events)?;
        let strip = |id: &mut String| {
            if let Some(own) = id.strip_prefix(&prefix) {
                *id = own.to_string();
            }
        };
        receipt.event_ids.iter_mut().for_each(strip);
        receipt.duplicates.iter_mut().for_each(strip);
        Ok(receipt)
    }
}
