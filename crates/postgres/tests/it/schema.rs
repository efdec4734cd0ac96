//! Opening: migrations applied once when instances start together, a newer schema refused,
//! and rows that do not decode moved aside rather than stopping the store.

use std::sync::{Arc, Barrier};
use std::time::Duration;

use callout_postgres::PgStore;
use callout_store::conformance::{attempt, delivery};
use callout_store::{History, Queue, Registry, StoreError, SubscriptionFilter};

use crate::support::{client, Schema};

const LEASE: Duration = Duration::from_secs(300);

#[test]
fn instances_that_open_a_new_schema_at_once_migrate_it_once() {
    let schema = Arc::new(Schema::new());
    let barrier = Arc::new(Barrier::new(8));
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let (schema, barrier) = (Arc::clone(&schema), Arc::clone(&barrier));
            std::thread::spawn(move || {
                let config = schema.config(LEASE);
                barrier.wait();
                PgStore::open(config).map(|_| ())
            })
        })
        .collect();
    for thread in threads {
        thread
            .join()
            .expect("opener")
            .expect("every instance opens");
    }
    let rows = client()
        .query(
            &format!("SELECT version FROM {}.schema_version", schema.name),
            &[],
        )
        .expect("version");
    let versions: Vec<i32> = rows.iter().map(|row| row.get(0)).collect();
    assert_eq!(versions, [4]);
}

#[test]
fn a_schema_of_a_newer_version_is_refused() {
    let schema = Schema::new();
    drop(schema.open(LEASE));
    schema.sql("UPDATE schema_version SET version = 7");
    let refused = PgStore::open(schema.config(LEASE));
    match refused {
        Err(StoreError::NewerFormat {
            found, supported, ..
        }) => assert_eq!((found, supported), (7, 4)),
        other => panic!("expected NewerFormat, got {other:?}"),
    }
}

#[test]
fn a_version_1_schema_is_migrated_to_the_current_version_on_open_and_keeps_its_deliveries() {
    let schema = Schema::new();
    let store = schema.open(LEASE);
    let old = store
        .enqueue(&[], vec![delivery(1, "before", 0)], 0)
        .expect("enqueue")
        .delivery_ids[0];
    drop(store);
    // Version 1 as released: no order_key column, no index on it, no tallies, no counts of
    // attempts kept.
    schema.sql(
        "DROP INDEX deliveries_by_order_key; ALTER TABLE deliveries DROP COLUMN order_key; \
         DROP TABLE failure_streaks, callout_windows, send_slots, paces; \
         ALTER TABLE queue_state DROP COLUMN kept_attempts; \
         UPDATE schema_version SET version = 1",
    );
    let store = schema.open(LEASE);
    let rows = client()
        .query(
            &format!("SELECT version FROM {}.schema_version", schema.name),
            &[],
        )
        .expect("version");
    let versions: Vec<i32> = rows.iter().map(|row| row.get(0)).collect();
    assert_eq!(versions, [4]);
    let before = store.delivery(old).expect("read").expect("kept");
    assert_eq!(before.order_key, None);
    let keyed = callout_store::NewDelivery {
        order_key: Some("contact/7".into()),
        ..delivery(1, "after", 0)
    };
    let new = store
        .enqueue(&[], vec![keyed], 0)
        .expect("enqueue")
        .delivery_ids[0];
    let after = store.delivery(new).expect("read").expect("stored");
    assert_eq!(after.order_key.as_deref(), Some("contact/7"));
}

#[test]
fn a_version_3_schema_counts_the_attempts_it_kept_when_migrated() {
    let schema = Schema::new();
    let mut config = schema.config(LEASE);
    config.attempts_kept = 2;
    let store = PgStore::open(config.clone()).expect("the store opens");
    let batch = (0..4).map(|n| delivery(1, &format!("e{n}"), 0)).collect();
    store.enqueue(&[], batch, 0).expect("enqueue");
    let mut leased = store.lease(0, 10).expect("lease");
    leased.sort_by_key(|l| l.delivery.id);
    for (n, l) in leased.into_iter().enumerate() {
        store
            .complete(l.token, attempt(1, 10 + n as u64, "delivered"))
            .expect("complete");
    }
    drop(store);
    // Version 3 as released: attempts, but no count of them.
    schema.sql(
        "ALTER TABLE queue_state DROP COLUMN kept_attempts; \
         UPDATE schema_version SET version = 3",
    );
    let store = PgStore::open(config).expect("the store opens");
    assert_eq!(
        store.prune(1_000, 100).expect("prune"),
        2,
        "the migration counted the four kept"
    );
    let mut kept: Vec<u64> = store
        .attempts_for_subscription(1, 10)
        .expect("attempts")
        .iter()
        .map(|(_, a)| a.at)
        .collect();
    kept.sort_unstable();
    assert_eq!(kept, [12, 13]);
}

#[test]
fn rows_that_do_not_decode_are_moved_aside_and_reported() {
    let schema = Schema::new();
    let store = schema.open(LEASE);
    let batch = (0..3).map(|n| delivery(1, &format!("e{n}"), 0)).collect();
    let ids = store.enqueue(&[], batch, 0).expect("enqueue").delivery_ids;
    schema.sql(&format!(
        "UPDATE deliveries SET event_ids = 'not json' WHERE id = {}",
        ids[0]
    ));
    schema.sql(&format!(
        "UPDATE deliveries SET state = 9 WHERE id = {}",
        ids[1]
    ));
    let leased = store
        .lease(0, 10)
        .expect("a bad row does not stop the lease");
    assert_eq!(leased.len(), 1);
    assert_eq!(leased[0].delivery.id, ids[2]);
    let read = store.delivery(ids[1]);
    assert!(matches!(read, Err(StoreError::Corrupt { .. })), "{read:?}");
    assert!(
        store.delivery(ids[1]).expect("read").is_none(),
        "moved aside"
    );
    let corrupt = store.corrupt_records().expect("corrupt");
    assert_eq!(corrupt.len(), 2, "{corrupt:?}");
    assert!(corrupt[0].starts_with(&format!("deliveries/{}: event_ids", ids[0])));
    assert_eq!(store.counts().expect("counts").in_flight, 1);

    let sub = store
        .create_subscription(
            callout_core::Subscription::new("https://receiver.example/h").events(["*"]),
            1,
        )
        .expect("create");
    schema.sql(&format!(
        "UPDATE subscriptions SET record = '{{' WHERE id = {}",
        sub.id
    ));
    let listed = store
        .list_subscriptions(&SubscriptionFilter::default())
        .expect("a bad subscription does not stop the listing");
    assert!(listed.is_empty());
    assert_eq!(store.corrupt_records().expect("corrupt").len(), 3);
}

#[test]
fn a_missing_server_is_an_error_not_a_hang() {
    // Port 1: nothing listens there.
    let mut config = callout_postgres::PgConfig::new("postgres://nobody@127.0.0.1:1/none");
    config.reconnect_within = Duration::from_millis(300);
    let started = std::time::Instant::now();
    let refused = PgStore::open(config);
    assert!(
        matches!(refused, Err(StoreError::Storage(_))),
        "{refused:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
}
