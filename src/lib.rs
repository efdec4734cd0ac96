//! callout: an embeddable webhook engine.
//!
//! A host application links callout into its own process and publishes an event whenever one
//! of its records changes; callout decides which webhook subscriptions want the event, stores
//! the deliveries durably and sends them as signed HTTP callouts, with retries, until the
//! receiver acknowledges them.
//!
//! [`Engine`] is the entry point. It is built from three crates, re-exported here: [`core`]
//! (the model and matcher), [`store`] (the durable queue) and [`deliver`] (the signed HTTP
//! sender, whose [`deliver::sign`] module also verifies signatures for receivers).
#![deny(missing_docs)]

mod body;
mod clock;
mod dispatcher;
mod engine;
mod error;
mod health;
mod ids;
mod inspect;
mod limits;
mod notify;
mod publish;
mod registry;
mod retry;
mod send;
mod subscriptions;
mod threshold;
mod worker;

pub use crate::body::Expander;
pub use crate::clock::{Clock, ManualClock, SystemClock};
pub use crate::engine::{Engine, EngineBuilder, Receipt, Storage};
pub use crate::error::Error;
pub use crate::health::FailurePolicy;
pub use crate::inspect::Explanation;
pub use crate::notify::{Handler, HandlerCall, Notice, NoticeKind, Notifier};
pub use crate::publish::PublishLimits;
pub use crate::retry::RetryPolicy;
pub use crate::subscriptions::{Subscriptions, DEFAULT_ROTATION_GRACE};
pub use callout_core as core;
pub use callout_core::{Event, Matcher, State, Subscription};
pub use callout_deliver as deliver;
pub use callout_store as store;
pub use callout_store::DeadFilter;
