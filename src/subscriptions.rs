//! Subscriptions through the engine, for the host: the registry keeps store and matcher in
//! step; a change of state holds or releases deliveries, announces the change and calls the
//! deactivation URL. Secrets are made here for Standard Webhooks subscriptions that have none,
//! and rotated with a grace period.

use std::time::Duration;

use callout_core::vendor::superoffice;
use callout_core::{Kind, Profile, State, Subscription};
use callout_store::SubscriptionFilter;

use crate::engine::Engine;
use crate::error::Error;

/// Creates, reads, changes and lists the engine's subscriptions; see [`Engine::subscriptions`].
pub struct Subscriptions<'e> {
    pub(crate) engine: &'e Engine,
}

/// How long [`Subscriptions::rotate_secret`] keeps the old secrets signing when the host names
/// no grace period: a day, as the hosted webhook services do.
pub const DEFAULT_ROTATION_GRACE: Duration = Duration::from_secs(24 * 60 * 60);

impl Subscriptions<'_> {
    /// Validates and stores a new subscription; returns it with its id and GUID.
    ///
    /// A Standard Webhooks webhook created without a secret gets a new `whsec_` one (32 random
    /// bytes), since every stock verifier refuses an unsigned message: it is in the returned
    /// subscription's `secrets`, for the host to show its user once.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let engine = callout::Engine::builder(dir.path()).deliver(false).open()?;
    /// let sub = callout::Subscription::new("https://receiver.example/hooks").events(["contact.*"]);
    /// let stored = engine.subscriptions().create(sub)?;
    /// assert!(stored.secrets[0].expose().starts_with("whsec_"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn create(&self, subscription: Subscription) -> Result<Subscription, Error> {
        self.engine
            .shared
            .registry
            .create(with_a_secret(subscription))
    }

    /// Like [`Subscriptions::create`], but first sends the target a `test` event and saves the
    /// subscription only if it answers 200 (SuperOffice's save-time check: body `Event` and
    /// `Entity` = `test`, `PrimaryKey` 0, header `X-Hook-Test: true`; other profiles get
    /// `{"type":"test",...}`), signed like its deliveries.
    pub fn create_tested(&self, subscription: Subscription) -> Result<Subscription, Error> {
        let subscription = with_a_secret(subscription);
        subscription.validate()?;
        let shared = &self.engine.shared;
        let now = shared.clock.now_ms();
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
        let mut request = crate::send::request(
            &subscription,
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
        self.create(subscription)
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

    /// Rotates subscription `id`'s signing secret: `secret` signs from now on (with `None`, a
    /// new one of the form its profile signs with, made here: `whsec_` for Standard Webhooks),
    /// and the secrets it replaces keep signing beside it for `grace` (default
    /// [`DEFAULT_ROTATION_GRACE`], a day; `Duration::ZERO` drops them at once). Then they stop
    /// signing and the engine drops them from the record itself: the host does nothing more.
    /// A `whsk_` key replaces `whsk_` keys and a `whsec_` secret `whsec_` secrets (see
    /// [`Subscription::rotate_secret`]); a vendor profile, which signs with one secret,
    /// switches to the new one when the grace ends. Returns the subscription as stored; the
    /// new secret is the last of its `secrets`.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// use std::time::Duration;
    /// let engine = callout::Engine::builder(dir.path()).deliver(false).open()?;
    /// let sub = engine.subscriptions().create(
    ///     callout::Subscription::new("https://receiver.example/hooks").events(["contact.*"]),
    /// )?;
    /// let rotated = engine.subscriptions().rotate_secret(sub.id, None, Some(Duration::from_secs(3600)))?;
    /// assert_eq!(rotated.secrets.len(), 2);
    /// assert!(rotated.secrets[0].expires_at().is_some() && rotated.secrets[1].expires_at().is_none());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn rotate_secret(
        &self,
        id: u64,
        secret: Option<String>,
        grace: Option<Duration>,
    ) -> Result<Subscription, Error> {
        let grace = grace.unwrap_or(DEFAULT_ROTATION_GRACE);
        let grace_ms = u64::try_from(grace.as_millis()).unwrap_or(u64::MAX);
        let now = self.engine.shared.clock.now_ms();
        self.change(id, |sub| {
            let secret = secret.unwrap_or_else(|| crate::ids::new_secret(sub.profile));
            sub.rotate_secret(secret, now, grace_ms)?;
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

/// `subscription`, with a new `whsec_` secret when it is a Standard Webhooks webhook with none.
/// Handlers run in the host's process and verify nothing, so they get none.
fn with_a_secret(mut subscription: Subscription) -> Subscription {
    let unsigned = subscription.profile == Profile::Standard
        && subscription.kind == Kind::Webhook
        && subscription.secrets.is_empty();
    if unsigned {
        subscription = subscription.secret(crate::ids::new_secret(Profile::Standard));
    }
    subscription
}
