//! The durable side of callout: the delivery queue and the subscription registry, on sled.
//!
//! This crate owns everything callout keeps on disk. A [`Store`] holds subscriptions (validated
//! through callout-core first) and deliveries: [`Store::enqueue`] stores every delivery of a
//! publish atomically and returns once they are durable (concurrent writers share flushes);
//! workers [`Store::lease`] due deliveries and [`Store::complete`], [`Store::reschedule`] or
//! [`Store::dead_letter`] them, each with its recorded [`Attempt`]. Leases of a process that died
//! return to the queue when the store reopens, so delivery is at least once. Only this crate
//! knows sled; it never reads the clock: times come in as Unix milliseconds.
//!
//! What is durable when a call returns: an [`Store::enqueue`] per [`Durability`] (by default
//! after sled's flush; concurrent enqueues share one flush). Leases live in memory only: a
//! crash voids them all and reopening makes their deliveries due again. Outcomes
//! ([`Store::complete`], [`Store::reschedule`], [`Store::dead_letter`], [`Store::release`])
//! are buffered and written as one batch by the next read, after 256 outcomes or 50 ms of
//! store activity, or by [`Store::flush`]; a crash before that sends their deliveries
//! again (at least once). Subscription and hold/resume changes are flushed before returning.
//!
//! ```
//! use callout_store::{NewDelivery, Store, StoreConfig, Attempt};
//!
//! let dir = tempfile::tempdir()?;
//! let store = Store::open(dir.path(), StoreConfig::default())?;
//! let new = NewDelivery {
//!     subscription_id: 1,
//!     event_ids: vec!["evt_1".into()],
//!     event_type: "contact.created".into(),
//!     body: br#"{"type":"contact.created"}"#.to_vec(),
//!     due_at: 1_000,
//!     ordered: false,
//! };
//! let receipt = store.enqueue(&[], vec![new], 1_000)?; // durable when this returns
//! let leased = store.lease(1_000, 8)?;
//! let attempt = Attempt { number: 1, at: 1_001, duration_ms: 3, status: Some(200),
//!                         outcome: "delivered".into(), excerpt: String::new() };
//! store.complete(leased[0].id, attempt)?;
//! assert_eq!(store.counts()?.delivered, 1);
//! assert_eq!(store.attempts_for_delivery(receipt.delivery_ids[0])?.len(), 1);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(missing_docs)]

mod attempts;
mod codec;
mod due;
mod error;
mod ids;
mod model;
mod store;

pub use crate::error::StoreError;
pub use crate::model::{
    chunk, Attempt, Counts, Delivery, DeliveryState, EnqueueReceipt, NewDelivery,
    SubscriptionFilter,
};
pub use crate::store::{Durability, Store, StoreConfig};
