//! The schema and its migrations: versioned in a `schema_version` table, applied on open under
//! a transaction-scoped advisory lock, so instances that start at once apply each migration
//! exactly once; a schema of a newer version than this build knows is refused.

use std::path::PathBuf;

use callout_store::StoreError;

use crate::conn::{Conn, Fail};

/// The advisory lock's first key ("call"); the second is the hash of the schema's name, so
/// instances on different schemas do not wait for each other.
const LOCK_CLASS: i32 = 0x6361_6c6c;

/// The migrations, in order: entry `n` takes the schema from version `n` to `n + 1`. Released
/// ones never change; a new format is a new entry.
///
/// Version 1, the first layout. A delivery is one row of `deliveries` in one of four states:
/// 0 due, 1 in flight (leased: `lease` is its token, `lease_until` its deadline), 2 held, 3
/// dead (`dead_at`). `queue_state` holds one row per subscription: its counts by state (kept in
/// the transactions that change them, so counting never scans the queue), whether it is held,
/// how many of its ordered deliveries are in flight, and when it was last served by a lease
/// (for round-robin). Every writer locks a subscription's `queue_state` row before any of its
/// deliveries, in subscription order (an enqueue locks the host event ids it remembers before
/// both, in their order), which is what keeps concurrent writers free of deadlocks.
///
/// Version 2, per-record ordering: a delivery's `order_key` (null for none). Of a
/// subscription's deliveries with one key, only the earliest (by id) that is not dead may be
/// leased; the index finds, for a due delivery, whether an earlier one of its key is still
/// waiting, in flight or held.
///
/// Version 3, the tallies every instance counts into: each subscription's failure streak
/// (ended by a delivered settle, in its transaction), its callouts per entity in the current
/// clock hour, its next rate-limit slot and its pace.
///
/// Version 4, attempts bounded by count: each subscription's `queue_state` row counts the
/// attempts kept for it (`kept_attempts`), added to by the settle that records one and taken
/// from by the prune that deletes one, so that a prune finds the subscriptions past
/// `PgConfig::attempts_kept` without counting the table.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE SEQUENCE subscription_ids;
CREATE TABLE subscriptions (
    id bigint PRIMARY KEY,
    record text NOT NULL
);
CREATE TABLE sequences (
    subscription bigint PRIMARY KEY,
    next bigint NOT NULL
);
CREATE SEQUENCE delivery_ids;
CREATE SEQUENCE lease_ids;
CREATE SEQUENCE serve_order;
CREATE TABLE queue_state (
    subscription bigint PRIMARY KEY,
    held_sub boolean NOT NULL DEFAULT false,
    served bigint NOT NULL DEFAULT 0,
    ordered_in_flight bigint NOT NULL DEFAULT 0,
    due bigint NOT NULL DEFAULT 0,
    retrying bigint NOT NULL DEFAULT 0,
    in_flight bigint NOT NULL DEFAULT 0,
    held bigint NOT NULL DEFAULT 0,
    delivered bigint NOT NULL DEFAULT 0,
    dead bigint NOT NULL DEFAULT 0
);
CREATE TABLE deliveries (
    id bigint PRIMARY KEY,
    subscription bigint NOT NULL,
    event_ids text NOT NULL,
    event_type text NOT NULL,
    body bytea NOT NULL,
    message_id text NOT NULL,
    attempts integer NOT NULL DEFAULT 0,
    due_at bigint NOT NULL,
    created_at bigint NOT NULL,
    ordered boolean NOT NULL,
    state smallint NOT NULL,
    lease bigint,
    lease_until bigint,
    dead_at bigint
);
CREATE INDEX deliveries_due_by_subscription ON deliveries (subscription, due_at, id)
    WHERE state = 0 AND NOT ordered;
CREATE INDEX deliveries_due ON deliveries (due_at) WHERE state = 0;
CREATE INDEX deliveries_ordered ON deliveries (subscription, id)
    WHERE ordered AND state IN (0, 1);
CREATE INDEX deliveries_leases ON deliveries (lease_until) WHERE state = 1;
CREATE INDEX deliveries_by_state ON deliveries (state, subscription);
CREATE TABLE attempts (
    delivery bigint NOT NULL,
    subscription bigint NOT NULL,
    number integer NOT NULL,
    at bigint NOT NULL,
    duration_ms bigint NOT NULL,
    status integer,
    outcome text NOT NULL,
    excerpt text NOT NULL
);
CREATE INDEX attempts_by_delivery ON attempts (delivery, at, number);
CREATE INDEX attempts_by_subscription ON attempts (subscription, at, delivery, number);
CREATE INDEX attempts_by_age ON attempts (at);
CREATE TABLE seen_events (
    event_id text PRIMARY KEY,
    seen_at bigint NOT NULL
);
CREATE INDEX seen_events_by_age ON seen_events (seen_at);
CREATE TABLE corrupt (
    id bigserial PRIMARY KEY,
    key text NOT NULL,
    reason text NOT NULL,
    record text NOT NULL,
    moved_at timestamptz NOT NULL DEFAULT now()
);
"#,
    r#"
ALTER TABLE deliveries ADD COLUMN order_key text;
CREATE INDEX deliveries_by_order_key ON deliveries (subscription, order_key, id)
    WHERE order_key IS NOT NULL AND state < 3;
"#,
    r#"
CREATE TABLE failure_streaks (
    subscription bigint PRIMARY KEY,
    attempts integer NOT NULL,
    events integer NOT NULL,
    since bigint NOT NULL
);
CREATE TABLE callout_windows (
    subscription bigint NOT NULL,
    entity text NOT NULL,
    hour bigint NOT NULL,
    count bigint NOT NULL,
    warned_hour bigint,
    PRIMARY KEY (subscription, entity)
);
CREATE TABLE send_slots (
    subscription bigint PRIMARY KEY,
    next_at bigint NOT NULL
);
CREATE TABLE paces (
    subscription bigint PRIMARY KEY,
    quick_streak integer NOT NULL,
    slow boolean NOT NULL
);
"#,
    r#"
ALTER TABLE queue_state ADD COLUMN kept_attempts bigint NOT NULL DEFAULT 0;
UPDATE queue_state q SET kept_attempts = c.n
    FROM (SELECT subscription, count(*) AS n FROM attempts GROUP BY subscription) c
    WHERE q.subscription = c.subscription;
"#,
];

/// The newest schema version this build reads and writes.
pub(crate) const SUPPORTED: i32 = MIGRATIONS.len() as i32;

/// Creates the schema or brings it up to [`SUPPORTED`]; refuses a newer one.
pub(crate) fn migrate(conn: &mut Conn) -> Result<(), StoreError> {
    let schema = conn.schema().to_string();
    conn.transact_durably(|tx| {
        tx.query(
            "SELECT pg_advisory_xact_lock($1, hashtext($2))",
            &[&LOCK_CLASS, &schema],
        )?;
        tx.batch(&format!(
            "CREATE SCHEMA IF NOT EXISTS \"{schema}\";
             CREATE TABLE IF NOT EXISTS \"{schema}\".schema_version (version integer NOT NULL)"
        ))?;
        let found: i32 = tx
            .query_opt("SELECT max(version) FROM schema_version", &[])?
            .and_then(|row| row.get::<_, Option<i32>>(0))
            .unwrap_or(0);
        if found > SUPPORTED {
            return Err(Fail::Store(StoreError::NewerFormat {
                path: PathBuf::from(format!("PostgreSQL schema {schema}")),
                found: u8::try_from(found).unwrap_or(u8::MAX),
                supported: SUPPORTED as u8,
            }));
        }
        let start = usize::try_from(found).unwrap_or(0);
        for (n, migration) in MIGRATIONS.iter().enumerate().skip(start) {
            tracing::info!(schema = %schema, version = n + 1, "migrating the PostgreSQL schema");
            tx.batch(migration)?;
        }
        if found < SUPPORTED {
            tx.execute("DELETE FROM schema_version", &[])?;
            tx.execute(
                "INSERT INTO schema_version (version) VALUES ($1)",
                &[&SUPPORTED],
            )?;
        }
        Ok(())
    })
}
