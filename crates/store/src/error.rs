//! The one error type of callout-store, the same for every backend: no backend's own error type
//! appears in it.

use std::path::PathBuf;

use callout_core::InvalidSubscription;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// Another process (or another handle in this one) has the store open.
    #[error("the store at {path} is in use by another process or handle")]
    Locked {
        /// The store's location.
        path: PathBuf,
    },
    /// The store was written by a newer callout with a format this one cannot read.
    #[error(
        "the store at {path} has format version {found}; this callout reads up to {supported}"
    )]
    NewerFormat {
        /// The store's location.
        path: PathBuf,
        /// The version on disk.
        found: u8,
        /// The newest version this build reads.
        supported: u8,
    },
    /// The store's files are damaged: sled cannot open them (a flipped byte in its `conf`
    /// file, say). [`SledStore::repair`](crate::SledStore::repair) copies what still reads
    /// into a new store.
    #[error(
        "the store at {path} is damaged ({detail}); copy what still reads into a new store \
         with `callout --store {path} repair --to <new-dir>`"
    )]
    Damaged {
        /// The store's location.
        path: PathBuf,
        /// What is damaged, as far as it is known.
        detail: String,
    },
    /// A repair found nothing to salvage: not even a copy of the store opens.
    #[error("the store at {path} cannot be repaired: not even a copy of it opens ({detail})")]
    Unsalvageable {
        /// The damaged store's location.
        path: PathBuf,
        /// Why the copy did not open.
        detail: String,
    },
    /// A repair's target exists and is not an empty directory, or lies inside the store being
    /// repaired: repair writes a new store only, and never into the damaged one.
    #[error(
        "the repair target {path} exists and is not empty, or is inside the damaged store; name a new directory outside it"
    )]
    TargetNotEmpty {
        /// The target given.
        path: PathBuf,
    },
    /// A record could not be decoded; it was moved aside.
    #[error("corrupt record under key {key}: {reason}")]
    Corrupt {
        /// The record's key, hex-encoded.
        key: String,
        /// What the decoder said.
        reason: String,
    },
    /// A subscription failed validation.
    #[error("invalid subscription: {0}")]
    Invalid(#[from] InvalidSubscription),
    /// No subscription with this id.
    #[error("no subscription {0}")]
    UnknownSubscription(u64),
    /// No delivery with this id (or not in the state the call needs: a settle of a lease that
    /// is not current).
    #[error("no delivery {0} in flight")]
    UnknownDelivery(u64),
    /// The backend's storage failed (disk full, I/O error, a lost connection...); the message
    /// is the backend's.
    #[error("storage error: {0}")]
    Storage(String),
    /// An I/O call (an fsync of the store's files, say) failed.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// A lease shorter than a request may take: a delivery could be leased again, and sent
    /// twice, while its first request still runs. Refused when the engine or a backend's
    /// configuration is checked.
    #[error(
        "the lease of {lease:?} is shorter than a request may take ({request:?}); \
         make the lease longer or the request timeouts shorter"
    )]
    LeaseTooShort {
        /// The backend's lease duration.
        lease: std::time::Duration,
        /// The longest a request may take.
        request: std::time::Duration,
    },
    /// A lock was poisoned by a panicking thread.
    #[error("store state poisoned by a panicked thread")]
    Poisoned,
}
