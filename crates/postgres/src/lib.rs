//! callout's PostgreSQL backend: several host instances share one set of subscriptions, one
//! queue, its attempts and dead letters.
//!
//! [`PgStore`] implements the storage traits of `callout-store` (`Registry`, `Queue`,
//! `History`, `Tallies`) on PostgreSQL 15 or newer and passes the same conformance suite as
//! the embedded sled store. A host with more than one instance opens one on the same
//! database and schema in each:
//!
//! ```no_run
//! use std::sync::Arc;
//! use callout_postgres::PgStore;
//!
//! let store = PgStore::open("postgres://app@127.0.0.1:5432/app?schema=callout")?;
//! let engine = callout::Engine::builder(Arc::new(store)).open()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! What it promises, beyond the traits:
//! - **Threads**: every PostgreSQL call runs on a connection thread of this crate (a pool of
//!   [`PgConfig::pool_size`], and one thread each for enqueues, settles and leases), never on
//!   the caller's: the `postgres` client panics on a thread that runs a tokio runtime, as
//!   hosts' async code does. Calls hand their work over a channel and wait.
//! - **Groups**: calls of one kind that arrive together share a statement. Concurrent
//!   completes are one statement; concurrent leases with the same limits, whose clocks read
//!   within 10 ms of each other, are one lease whose deliveries are handed out in turn. A
//!   group waits at most 200 ms for a row lock: then its completes go again one by one on the
//!   pool (a lease fails and is tried again), so a subscription row held for long (another
//!   instance's hold of a big backlog) delays only that subscription. An engine on this store
//!   runs 32 workers unless told otherwise: workers that finish together settle and lease
//!   together, so the more there are, the less each delivery costs the server (see
//!   docs/BENCHMARKS.md).
//! - **Enqueues** are durable when they return (committed with `synchronous_commit` on).
//!   Concurrent ones share one statement, committed on its own (one round trip), and one WAL
//!   flush (group commit); each stays atomic. Host event ids are remembered in a table with a
//!   primary key, so a duplicate is found whichever instance saw the first.
//! - **Leases** carry a token and a deadline; a delivery whose lease passed its deadline (its
//!   instance died, say) is leased again by any instance. Two instances never lease one
//!   subscription at the same moment (the lease statement claims its `queue_state` row
//!   `FOR UPDATE SKIP LOCKED`), so per-subscription bounds and ordered delivery (one in
//!   flight, in id order) hold cluster-wide, and so does per-record ordering (of a
//!   subscription's deliveries with one order key, only the earliest not dead may be leased);
//!   the shared group's bound is counted cluster-wide but not locked, so two instances leasing
//!   at once may pass it by a batch. The order is round-robin across subscriptions, least
//!   recently served first, and due order within one.
//! - **Settles and leases** commit without waiting for the WAL flush: a PostgreSQL crash may
//!   forget the last few, and their deliveries are sent again (at least once, as on sled);
//!   [`Queue::flush`](callout_store::Queue::flush) makes them durable. Registry changes,
//!   holds, resumes, replays and purges wait for the flush.
//! - **Counts** come from one row per subscription kept in the same transactions, never from
//!   scanning the queue.
//! - **Tallies** are rows every instance counts into: failure streaks (ended by a delivered
//!   settle in its own transaction), hourly callout windows and paces (each locked by an upsert
//!   and changed by the model's rule, so instances counting at once take turns) and send
//!   slots (one conditional upsert). They commit without waiting for the WAL flush, like
//!   settles.
//! - **Faults**: a lost connection is made again by the next call, with backoff, for up to
//!   [`PgConfig::reconnect_within`]; a call in flight when it was lost fails with
//!   `StoreError::Storage` (an enqueue may then have been stored: never lost silently).
//!   Rows that do not decode are moved to the `corrupt` table and reported in the log.
//! - **Changes** are told to the other instances by `NOTIFY` on the schema's channel, in the
//!   transaction that makes them: subscriptions created, changed or deleted, and deliveries
//!   enqueued, resumed or replayed. [`Registry::watch_changes`](callout_store::Registry::watch_changes)
//!   starts a listener thread with a connection of its own (none until then); after a lost
//!   connection it connects again with backoff and tells `Change::Everything`, since notices
//!   sent meanwhile are gone. An engine on this store reloads the subscriptions it is told of
//!   and wakes its dispatcher, so an idle instance sends another's publish at once.
//! - **Schema**: everything lives in one schema ([`PgConfig::schema`]), versioned and migrated
//!   on open under an advisory lock; a newer version is refused with
//!   `StoreError::NewerFormat`.
#![deny(missing_docs)]

mod changes;
mod combine;
mod config;
mod conn;
mod history;
mod queue;
mod registry;
mod rows;
mod schema;
mod settle;
mod tallies;
mod writer;

use std::sync::Arc;

use callout_store::StoreError;

pub use crate::config::{is_postgres_url, PgConfig};

use crate::conn::{Pool, Settings};
use crate::writer::Writer;

/// The PostgreSQL store: subscriptions, queue and history in one schema of a database that
/// several instances share. It implements `Registry`, `Queue` and `History`.
pub struct PgStore {
    config: PgConfig,
    pool: Pool,
    writer: Writer,
    settler: settle::Settler,
    leaser: queue::Leaser,
    changes: changes::Changes,
    /// When prune next counts the remembered event ids (`History::prune`), in the caller's
    /// milliseconds.
    next_seen_count_ms: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl PgStore {
    /// Connects, creates or migrates the schema, and starts the connection threads. Takes a
    /// [`PgConfig`] or a URL (`&str`, `String`) with the defaults.
    pub fn open(config: impl Into<PgConfig>) -> Result<PgStore, StoreError> {
        let config = config.into();
        let settings = Arc::new(Settings::new(&config)?);
        let pool = Pool::start(&settings, config.pool_size, false, "callout-pg")?;
        pool.run(schema::migrate)?;
        let leaser = queue::Leaser::start(&settings, config.lease)?;
        let writer = Writer::start(&settings, rows::millis(config.dedup_retention))?;
        Ok(PgStore {
            config,
            pool,
            writer,
            settler: settle::Settler::start(&settings)?,
            leaser,
            changes: changes::Changes::new(settings),
            next_seen_count_ms: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// How the store was opened.
    pub fn config(&self) -> &PgConfig {
        &self.config
    }

    /// The rows that did not decode and were moved aside, as `table/id: reason`, oldest first.
    pub fn corrupt_records(&self) -> Result<Vec<String>, StoreError> {
        self.pool.run(|conn| {
            conn.transact(|tx| {
                let rows = tx.query("SELECT key, reason FROM corrupt ORDER BY id", &[])?;
                Ok(rows
                    .iter()
                    .map(|row| format!("{}: {}", row.get::<_, String>(0), row.get::<_, String>(1)))
                    .collect())
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_can_be_shared_between_threads() {
        fn shared<T: Send + Sync>() {}
        shared::<PgStore>();
    }
}
