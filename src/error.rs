//! The engine's one error type.

use callout_core::InvalidSubscription;

/// Why an engine call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The subscription was refused; the error names the field.
    #[error("invalid subscription: {0}")]
    Invalid(#[from] InvalidSubscription),
    /// No subscription has this id.
    #[error("no subscription {0}")]
    NotFound(u64),
    /// The store failed (disk, lock, corrupt record...).
    #[error(transparent)]
    Store(#[from] callout_store::StoreError),
    /// The HTTP sender could not be configured (e.g. a bad allow-list entry).
    #[error(transparent)]
    Deliver(#[from] callout_deliver::DeliverError),
    /// The test event sent before saving a subscription was not answered with 200.
    #[error("the target did not answer the test event with 200 ({detail}); not saved")]
    TestFailed {
        /// The HTTP status, when a response arrived.
        status: Option<u16>,
        /// What happened.
        detail: String,
    },
    /// A publish held more events than [`PublishLimits::batch_events`](crate::PublishLimits);
    /// nothing was stored.
    #[error("publish: {count} events, at most {max} allowed")]
    TooManyEvents {
        /// How many were given.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// An event's `data` and `previous` are over
    /// [`PublishLimits::event_bytes`](crate::PublishLimits) as JSON; nothing was stored.
    #[error("event {index}: {bytes} bytes of data or more, at most {max} allowed")]
    EventTooLarge {
        /// The event's place in the publish, from 0.
        index: usize,
        /// How many bytes were counted before counting stopped.
        bytes: usize,
        /// The limit.
        max: usize,
    },
    /// A publish's events together are over
    /// [`PublishLimits::batch_bytes`](crate::PublishLimits) as JSON; nothing was stored.
    #[error("publish: {bytes} bytes of data or more, at most {max} allowed")]
    BatchTooLarge {
        /// How many bytes were counted before counting stopped.
        bytes: usize,
        /// The limit.
        max: usize,
    },
    /// An event names no entity or no action; nothing was stored.
    #[error("event {index}: {part} must not be empty")]
    EmptyEventName {
        /// The event's place in the publish, from 0.
        index: usize,
        /// `entity` or `action`.
        part: &'static str,
    },
    /// A thread could not be started.
    #[error("could not start a thread: {0}")]
    Thread(std::io::Error),
    /// A thread panicked while holding engine state.
    #[error("engine state poisoned by a panicked thread")]
    Poisoned,
}
