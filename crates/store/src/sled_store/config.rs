//! How a sled store is opened: cache size, durability, lease and retention times.

use std::time::Duration;

/// How durable a write is when the call returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// After sled's flush: survives a crash of the process (not a power loss: sled 0.34 flushes
    /// with `sync_file_range`). Concurrent writers share flushes.
    #[default]
    Flush,
    /// Also makes the flush survive a power loss: one `fdatasync` of sled's log per group
    /// commit (which concurrent writers share), plus a sync of each blob file sled creates for a
    /// value too large for its log, and of their directory.
    Sync,
    /// No flush in the call: sled writes in the background every 500 ms, so a crash can lose
    /// the last half second of publishes.
    Relaxed,
}

/// How a store is opened.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// sled's page cache, in bytes (default 64 MiB; sled's own default of 1 GiB is too much for
    /// a library inside someone else's process).
    pub cache_capacity: u64,
    /// See [`Durability`].
    pub durability: Durability,
    /// How long a leased delivery may stay in flight before it returns to the queue.
    pub lease: Duration,
    /// How long a host-supplied event id is remembered for de-duplication.
    pub dedup_retention: Duration,
    /// How long an attempt is kept after it was made, by [`History::prune`](crate::History::prune) (for every delivery:
    /// a dead letter older than this keeps its record but loses its attempt history).
    pub attempt_retention: Duration,
    /// How many bytes of enqueued deliveries are also kept in memory until their first lease,
    /// so leasing them need not read them back from sled (default 16 MiB; 0 keeps none). Past
    /// it, leases read records from disk as usual.
    pub fresh_capacity: usize,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            cache_capacity: 64 * 1024 * 1024,
            durability: Durability::Flush,
            lease: Duration::from_secs(300),
            dedup_retention: Duration::from_secs(86_400),
            attempt_retention: Duration::from_secs(30 * 86_400),
            fresh_capacity: 16 * 1024 * 1024,
        }
    }
}
