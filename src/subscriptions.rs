//! Subscriptions through the engine, for the host: the registry keeps store and matcher in
//! step; a change of state holds or releases deliveries, announces the change and calls the
//! deactivation URL.

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
        self.engine.shared.registry.create(subscription)
    }

    /// Like [`Subscriptions::create`], but first sends the target a `test` event and saves the
    /// subscription only if it answers 200 (SuperOffice's save-time check: body `Event` and
    /// `Entity` = `test`, `PrimaryKey` 0, header `X-Hook-Test: true`; other profiles get
    /// `{"type":"test",...}`), signed like its deliveries.
    pub fn create_tested(&self, subscription: Subscription) -> Result<Subscription, Error> {
        self.send_test(&subscription)?;
        self.create(subscription)
    }

    /// Sends `subscription`'s target the `test` event of [`Subscriptions::create_tested`] now,
    /// stored or not, and says whether it answered 200 ([`Error::TestFailed`] if not). Nothing
    /// is stored or queued.
    pub fn send_test(&self, subscription: &Subscription) -> Result<(), Error> {
        subscription.validate()?;
        let shared = &self.engine.shared;
        let now = shared.clock.now_ms();
        let body = match subscription.profile {
            Profile::Superoffice => {
                let event_id = uuid::Uuid::new_v4().to_string();
                superoffice::test_body(subscription, &event_id, now.saturating_mul(10_000))
            }
            _ => serde_json::to_vec(&serde_json::json!({
                "type": "test",
                "timestamp": callout_core::rfc3339(now, 3),
                "data": {},
            }))
            .unwrap_or_default(),
        };
        let mut request = crate::send::request(
            subscription,
            &crate::ids::new_message_id(),
            0,
            body,
            now,
            shared.timeouts,
        );
        if subscription.profile == Profile::Superoffice {
            request
                .profile_headers
                .push(("X-Hook-Test".into(), "true".into()));
        }
        let outcome = shared.sender.send(&request);
        if outcome.status() != Some(200) {
            return Err(Error::TestFailed {
                status: outcome.status(),
                detail: outcome.verdict.to_string(),
            });
        }
        Ok(())
    }

    /// The subscription with this id.
    pub fn get(&self, id: u64) -> Result<Option<Subscription>, Error> {
        self.engine.shared.registry.get(id)
    }

    /// Replaces a subscription (matched by `id`). Deactivating it calls its `deactivation_url`;
    /// reactivating it releases its held deliveries.
    pub fn update(&self, subscription: Subscription) -> Result<Subscription, Error> {
        subscription.validate()?;
        let id = subscription.id;
        self.change(id, move |stored| {
            *stored = subscription;
            Ok(true)
        })
    }

    /// Sets a subscription's state; see [`Subscriptions::update`].
    pub fn set_state(&self, id: u64, state: State) -> Result<Subscription, Error> {
        self.change(id, |stored| {
            stored.state = state;
            Ok(true)
        })
    }

    /// Changes the current record through the registry, then acts on a change of state.
    fn change(
        &self,
        id: u64,
        change: impl FnOnce(&mut Subscription) -> Result<bool, Error>,
    ) -> Result<Subscription, Error> {
        let shared = &self.engine.shared;
        let Some(changed) = shared.registry.change(id, change)? else {
            return shared.registry.get(id)?.ok_or(Error::NotFound(id));
        };
        let (before, stored) = (changed.before, changed.after);
        if before.state != stored.state {
            crate::publish::announce_state(shared, &stored);
        }
        // The registry held or released the deliveries with the change.
        match (before.state, stored.state) {
            (State::Active, State::Active) => {}
            (_, State::Active) => shared.dispatch.wake(),
            (State::Active, _) => shared
                .health
                .deactivated(shared, stored.clone(), "deactivated"),
            _ => {}
        }
        Ok(stored)
    }

    /// Deletes a subscription and calls its `deactivation_url`. Its pending deliveries are
    /// dead-lettered when they are next leased.
    pub fn delete(&self, id: u64) -> Result<Option<Subscription>, Error> {
        let shared = &self.engine.shared;
        let removed = shared.registry.delete(id)?;
        if let Some(sub) = &removed {
            shared.health.deactivated(shared, sub.clone(), "deleted");
        }
        Ok(removed)
    }

    /// Lists subscriptions by name, event and state (SuperOffice `GetAllWebhooks`).
    pub fn list(&self, filter: &SubscriptionFilter) -> Result<Vec<Subscription>, Error> {
        self.engine.shared.registry.list(filter)
    }
}
