//! callout: an embeddable webhook engine.
//!
//! A host application links callout into its own process and publishes an event whenever one
//! of its records changes; callout decides which webhook subscriptions want the event, stores
//! the deliveries durably and sends them as signed HTTP callouts, with retries.
//!
//! The engine is built from three crates, re-exported here: [`core`] (the model and matcher),
//! [`store`] (the durable queue) and [`deliver`] (the signed HTTP sender).
#![deny(missing_docs)]

mod body;
mod clock;
mod retry;

pub use crate::body::Expander;
pub use crate::clock::{Clock, ManualClock, SystemClock};
pub use crate::retry::RetryPolicy;
pub use callout_core as core;
pub use callout_core::{Event, Matcher, Subscription};
pub use callout_deliver as deliver;
pub use callout_store as store;
