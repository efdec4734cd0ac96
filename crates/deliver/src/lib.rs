//! callout's blocking, signed HTTP sender.
#![deny(missing_docs)]

mod error;
pub mod sign;

pub use crate::error::DeliverError;
pub use crate::sign::Signature;
