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
    /// sled's page cache, in bytes (default 8 MiB; sled's own default of 1 GiB is too much for
    /// a library inside someone else's process). sled holds more than this: nodes it has
    /// replaced wait for its epoch-based reclamation, and it keeps about 37 bytes per record
    /// of page table whatever the cache (docs/BENCHMARKS.md, Backlog and soak); 64 MiB held
    /// 150-190 MB resident with 1M deliveries queued, 8 MiB under 64 MB.
    pub cache_capacity: u64,
    /// See [`Durability`].
    pub durability: Durability,
    /// How long a leased delivery may stay in flight before it returns to the queue.
    pub lease: Duration,
    /// How long a host-supplied event id is remembered for de-duplication.
    pub dedup_retention: Duration,
    /// How many host-supplied event ids are remembered, at most (default 1,000,000, about
    /// 100 bytes each on disk before sled's own overhead): past it,
    /// [`History::prune`](crate::History::prune) forgets the oldest early, whatever their age
    /// (those of one group commit together), and a repeat of one forgotten is published again.
    /// Ids remembered by builds before this bound are not counted; the age bound forgets them.
    pub dedup_kept: u64,
    /// How long an attempt is kept after it was made, by [`History::prune`](crate::History::prune) (for every delivery:
    /// a dead letter older than this keeps its record but loses its attempt history).
    pub attempt_retention: Duration,
    /// How many attempts are kept per subscription, at most (default 10,000): past it,
    /// [`History::prune`](crate::History::prune) drops the oldest, whatever their age, so a
    /// busy subscription's history takes a bounded space (an attempt is at most about 1.1 KiB
    /// with its excerpt; 10,000 are at most 11 MiB, about 1 MiB with short excerpts).
    pub attempts_kept: u64,
    /// How many bytes of enqueued deliveries are also kept in memory until their first lease,
    /// so leasing them need not read them back from sled (default 1 MiB, a backlog of about 2,300
    /// deliveries of 300 B; 0 keeps none; each MiB costs about 4 MiB resident). Past it, leases
    /// read records from disk as usual; 4 MiB was no faster end to end (docs/BENCHMARKS.md,
    /// Backlog and soak).
    pub fresh_capacity: usize,
    /// When the store compacts itself ([`SledStore::compact`](super::SledStore::compact), looked
    /// at from leases and [`History::prune`](crate::History::prune)): once its files are more
    /// than four times what is live plus this many bytes (default 256 MiB; 0 never). sled 0.34
    /// hardly gives back the space of removed records, so without compaction a store's files
    /// grow with every delivery it has carried; what is live is what the last compaction left,
    /// or an estimate from the counts.
    pub compact_headroom: u64,
    /// A compaction starts by itself only while at most this many deliveries are queued
    /// (default 100,000), and not while the queue shrinks fast (by more than a tenth since the
    /// look a second before, as a backlog draining does): it copies every record with
    /// operations waiting, about a second per 100,000 records here, and a copy once the queue
    /// has settled is shorter (docs/BENCHMARKS.md, Backlog and soak).
    pub compact_max_queued: u64,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            cache_capacity: 8 * 1024 * 1024,
            durability: Durability::Flush,
            lease: Duration::from_secs(300),
            dedup_retention: Duration::from_secs(86_400),
            dedup_kept: 1_000_000,
            attempt_retention: Duration::from_secs(30 * 86_400),
            attempts_kept: 10_000,
            fresh_capacity: 1024 * 1024,
            compact_headroom: 256 * 1024 * 1024,
            compact_max_queued: 100_000,
        }
    }
}
