//! The durable side of callout: the storage contract every backend implements, and the
//! embedded default on sled.
//!
//! This crate owns everything callout keeps. The contract is four traits over one model and
//! one error type: the [`Registry`] (subscriptions), the [`Queue`] (deliveries: enqueue, lease,
//! settle, hold), the [`History`] (attempts, dead letters, retention) and the [`Tallies`]
//! (failure streaks, hourly callout counts, rate-limit slots, paces); a [`Backend`] is all
//! four. [`SledStore`] implements them on sled, in a directory; no sled type appears in this
//! crate's public API, so another backend (PostgreSQL) slots in beside it.
//!
//! What every backend promises: [`Queue::enqueue`] stores every delivery of a publish
//! atomically and returns once they are durable; a lease carries a [`LeaseToken`], and a settle
//! names the lease it settles; a lease that a dead process held returns to the queue (at least
//! once). Backends never read the clock: times come in as Unix milliseconds.
//!
//! [`SledStore`] specifics: durability per [`Durability`] (by default after sled's flush;
//! concurrent enqueues share one flush). Leases live in memory only: a crash voids them all and
//! reopening makes their deliveries due again. Settles are buffered and written as one batch by
//! the next read, after 256 settles or 50 ms of store activity, or by [`Queue::flush`]; a crash
//! before that sends their deliveries again (at least once). Subscription and hold/resume
//! changes are flushed before returning.
//!
//! ```
//! use callout_store::{Attempt, History, NewDelivery, Queue, SledStore, StoreConfig};
//!
//! let dir = tempfile::tempdir()?;
//! let store = SledStore::open(dir.path(), StoreConfig::default())?;
//! let new = NewDelivery {
//!     subscription_id: 1,
//!     event_ids: vec!["evt_1".into()],
//!     event_type: "contact.created".into(),
//!     body: br#"{"type":"contact.created"}"#.to_vec(),
//!     due_at: 1_000,
//!     ordered: false,
//!     message_id: "msg_01".into(),
//!     order_key: None,
//! };
//! let receipt = store.enqueue(&[], vec![new], 1_000)?; // durable when this returns
//! let leased = store.lease(1_000, 8)?;
//! let attempt = Attempt { number: 1, at: 1_001, duration_ms: 3, status: Some(200),
//!                         outcome: "delivered".into(), excerpt: String::new() };
//! store.complete(leased[0].token, attempt)?;
//! assert_eq!(store.counts()?.delivered, 1);
//! assert_eq!(store.attempts_for_delivery(receipt.delivery_ids[0])?.len(), 1);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(missing_docs)]

mod backend;
#[cfg(feature = "conformance")]
pub mod conformance;
mod error;
mod model;
mod sled_store;

pub use crate::backend::{Backend, Change, ChangeHandler, History, Queue, Registry, Tallies};
pub use crate::error::StoreError;
pub use crate::model::{
    Attempt, CalloutCount, CalloutWindow, Counts, DeadFilter, Delivery, DeliveryState,
    EnqueueReceipt, FailureStreak, LeaseLimits, LeaseToken, Leased, NewDelivery, Pace,
    SubscriptionFilter,
};
pub use crate::sled_store::{
    Compacted, Durability, RepairReport, SledStore, StoreConfig, Unreadable,
};
