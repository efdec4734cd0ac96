//! Inspection: what the host can ask about deliveries (counts, attempts, dead letters, and
//! their replay and purge) and about matching ("why did my webhook not fire?").

use callout_core::Event;
use callout_store::{Attempt, Counts, DeadFilter, Delivery};

use crate::engine::Engine;
use crate::error::Error;

/// A subscription's id and whether it wants an event, or why not.
pub type Explanation = (u64, Result<(), callout_core::Miss>);

impl Engine {
    /// Deliveries by state, over all subscriptions.
    pub fn stats(&self) -> Result<Counts, Error> {
        Ok(self.shared.store.counts()?)
    }

    /// Deliveries by state for one subscription.
    pub fn subscription_stats(&self, id: u64) -> Result<Counts, Error> {
        Ok(self.shared.store.subscription_counts(id)?)
    }

    /// Every recorded attempt of a delivery, oldest first.
    pub fn attempts(&self, delivery_id: u64) -> Result<Vec<Attempt>, Error> {
        Ok(self.shared.store.attempts_for_delivery(delivery_id)?)
    }

    /// The newest attempts of one subscription's deliveries, newest first, at most `limit`, as
    /// (delivery id, attempt).
    pub fn subscription_attempts(
        &self,
        id: u64,
        limit: usize,
    ) -> Result<Vec<(u64, Attempt)>, Error> {
        Ok(self.shared.store.attempts_for_subscription(id, limit)?)
    }

    /// One delivery as stored, whatever its state.
    pub fn delivery(&self, id: u64) -> Result<Option<Delivery>, Error> {
        Ok(self.shared.store.delivery(id)?)
    }

    /// The dead letters `filter` selects.
    pub fn dead_letters(&self, filter: &DeadFilter) -> Result<Vec<Delivery>, Error> {
        Ok(self.shared.store.dead_letters(filter)?)
    }

    /// Puts the dead letters `filter` selects back in the queue, due now, with their attempt
    /// count reset (their history is kept); returns how many.
    pub fn replay_dead(&self, filter: &DeadFilter) -> Result<usize, Error> {
        let now = self.shared.clock.now_ms();
        let replayed = self.shared.store.replay_dead(filter, now)?;
        self.shared.dispatch.wake();
        Ok(replayed)
    }

    /// Deletes the dead letters `filter` selects; returns how many.
    pub fn purge_dead(&self, filter: &DeadFilter) -> Result<usize, Error> {
        Ok(self.shared.store.purge_dead(filter)?)
    }

    /// For every subscription, whether it wants `event` and if not, why: "why did my webhook
    /// not fire?". A scan of all subscriptions, for diagnostics.
    pub fn explain(&self, event: &Event) -> Result<Vec<Explanation>, Error> {
        Ok(self.shared.registry.matcher()?.explain(event))
    }
}
