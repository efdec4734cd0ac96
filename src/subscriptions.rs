//! Subscriptions through the engine: the store keeps them, the matcher stays in step.

use callout_core::vendor::superoffice;
use callout_core::{Profile, State, Subscription};
use callout_store::SubscriptionFilter;

use crate::engine::Engine;
use crate::error::Error;

/// Creates, reads, changes and lists the engine's subscriptions; see [`Engine::subscriptions`].
pub struct Subscriptions<'e> {
    pub(crate) engine: &'e Engine,
}

impl Subscriptions<'_> {
    /// Validates and stores a new subscription; returns it with its id and GUID.
    pub fn create(&self, subscription: Subscription) -> Result<Subscription, Error> {
        let inner = &self.engine.inner;
        subscription.validate()?;
        let mut matcher = inner.matcher.write().map_err(|_| Error::Poisoned)?;
        let stored = inner
            .store
            .create_subscription(subscription, inner.clock.now_ms())?;
        matcher.insert(stored.clone())?;
        Ok(stored)
    }

    /// Like [`Subscriptions::create`], but first sends the target a `test` event and saves the
    /// subscription only if it answers 200 (SuperOffice's save-time check: body `Event` and
    /// `Entity` = `test`, `PrimaryKey` 0, header `X-Hook-Test: true`; other profiles get
    /// `{"type":"test",...}`), signed like its deliveries.
    pub fn create_tested(&self, subscription: Subscription) -> Result<Subscription, Error> {
        subscription.validate()?;
        let inner = &self.engine.inner;
        let now = inner.clock.now_ms();
        let body = match subscription.profile {
            Profile::Superoffice => {
                let event_id = uuid::Uuid::new_v4().to_string();
                superoffice::test_body(&subscription, &event_id, now.saturating_mul(10_000))
            }
            _ => serde_json::to_vec(&serde_json::json!({
                "type": "test",
                "timestamp": callout_core::rfc3339(now, 3),
                "data": {},
            }))
            .unwrap_or_default(),
        };
        let mut request = crate::send::request(&subscription, 0, 0, body, now, inner.timeouts);
        if subscription.profile == Profile::Superoffice {
            request
                .profile_headers
                .push(("X-Hook-Test".into(), "true".into()));
        }
        let outcome = inner.sender.send(&request);
        if outcome.status() != Some(200) {
            return Err(Error::TestFailed {
                status: outcome.status(),
                detail: outcome.verdict.to_string(),
            });
        }
        self.create(subscription)
    }

    /// The subscription with this id.
    pub fn get(&self, id: u64) -> Result<Option<Subscription>, Error> {
        Ok(self.engine.inner.store.get_subscription(id)?)
    }

    /// Replaces a subscription (matched by `id`). Deactivating it calls its `deactivation_url`;
    /// reactivating it releases its held deliveries.
    pub fn update(&self, subscription: Subscription) -> Result<Subscription, Error> {
        let inner = &self.engine.inner;
        subscription.validate()?;
        let (before, stored) = {
            let mut matcher = inner.matcher.write().map_err(|_| Error::Poisoned)?;
            let before = inner
                .store
                .get_subscription(subscription.id)?
                .ok_or(Error::NotFound(subscription.id))?;
            let stored = inner
                .store
                .update_subscription(subscription, inner.clock.now_ms())?;
            matcher.insert(stored.clone())?;
            (before, stored)
        };
        if before.state != stored.state {
            crate::engine::announce_state(inner, &stored);
        }
        match (before.state, stored.state) {
            (State::Active, State::Active) => {}
            (_, State::Active) => {
                inner
                    .store
                    .resume_subscription(stored.id, inner.clock.now_ms())?;
                self.engine.wake();
            }
            (State::Active, _) => {
                inner.store.hold_subscription(stored.id)?;
                self.engine.deactivated(stored.clone(), "deactivated");
            }
            _ => {}
        }
        Ok(stored)
    }

    /// Sets a subscription's state; see [`Subscriptions::update`].
    pub fn set_state(&self, id: u64, state: State) -> Result<Subscription, Error> {
        let mut sub = self.get(id)?.ok_or(Error::NotFound(id))?;
        sub.state = state;
        self.update(sub)
    }

    /// Deletes a subscription and calls its `deactivation_url`. Its pending deliveries are
    /// dead-lettered when a worker meets them.
    pub fn delete(&self, id: u64) -> Result<Option<Subscription>, Error> {
        let inner = &self.engine.inner;
        let removed = {
            let mut matcher = inner.matcher.write().map_err(|_| Error::Poisoned)?;
            matcher.remove(id);
            inner.store.delete_subscription(id)?
        };
        if let Some(sub) = &removed {
            self.engine.deactivated(sub.clone(), "deleted");
        }
        Ok(removed)
    }

    /// Lists subscriptions by name, event and state (SuperOffice `GetAllWebhooks`).
    pub fn list(&self, filter: &SubscriptionFilter) -> Result<Vec<Subscription>, Error> {
        Ok(self.engine.inner.store.list_subscriptions(filter)?)
    }
}
