//! Several instances on one schema: two `PgStore`s stand for two host processes sharing the
//! database. They never hold the same delivery, a dropped one's leases come back after the
//! deadline, bounds and ordering hold across them, and event ids are deduplicated across them.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use callout_postgres::PgStore;
use callout_store::conformance::{attempt, delivery};
use callout_store::{History, LeaseLimits, NewDelivery, Queue, StoreError};

use crate::support::{self, Schema};

const LEASE: Duration = Duration::from_secs(300);

#[test]
fn two_instances_leasing_from_many_threads_never_get_the_same_delivery() {
    let schema = Schema::new();
    let stores = [Arc::new(schema.open(LEASE)), Arc::new(schema.open(LEASE))];
    let batch: Vec<NewDelivery> = (0..400)
        .map(|n| delivery(n % 7 + 1, &format!("e{n}"), 0))
        .collect();
    stores[0].enqueue(&[], batch, 0).expect("enqueue");
    // Until all are leased, or for 20 s at most; an empty answer only means the others hold
    // every subscription's claim at that moment.
    let total = Arc::new(AtomicUsize::new(0));
    let deadline = Instant::now() + Duration::from_secs(20);
    let threads: Vec<_> = (0..6)
        .map(|n| {
            let store = Arc::clone(&stores[n % 2]);
            let total = Arc::clone(&total);
            std::thread::spawn(move || {
                let mut got = Vec::new();
                while total.load(Ordering::SeqCst) < 400 && Instant::now() < deadline {
                    let leased = store.lease(0, 5).expect("lease");
                    total.fetch_add(leased.len(), Ordering::SeqCst);
                    got.extend(leased.into_iter().map(|l| l.delivery.id));
                }
                got
            })
        })
        .collect();
    let all: Vec<u64> = threads
        .into_iter()
        .flat_map(|t| t.join().expect("leasing thread"))
        .collect();
    let distinct: HashSet<u64> = all.iter().copied().collect();
    assert_eq!(distinct.len(), all.len(), "a delivery was leased twice");
    assert_eq!(all.len(), 400, "every delivery leased");
    assert_eq!(stores[1].counts().expect("counts").in_flight, 400);
}

#[test]
fn a_dropped_instances_leases_come_back_after_the_deadline_and_its_tokens_are_refused() {
    let schema = Schema::new();
    let lease = Duration::from_millis(200);
    let gone = schema.open(lease);
    let survivor = schema.open(lease);
    let batch = (0..5).map(|n| delivery(1, &format!("e{n}"), 0)).collect();
    gone.enqueue(&[], batch, 1_000).expect("enqueue");
    let held = gone.lease(1_000, 10).expect("lease");
    assert_eq!(held.len(), 5);
    drop(gone);
    assert!(
        survivor.lease(1_150, 10).expect("lease").is_empty(),
        "still leased until the deadline"
    );
    let back = survivor.lease(1_200, 10).expect("lease");
    assert_eq!(back.len(), 5, "every one comes back");
    let stale = survivor.complete(held[0].token, attempt(1, 1_201, "delivered"));
    assert!(
        matches!(stale, Err(StoreError::UnknownDelivery(_))),
        "{stale:?}"
    );
    for leased in back {
        survivor
            .complete(leased.token, attempt(1, 1_202, "delivered"))
            .expect("the new lease settles");
    }
    assert_eq!(survivor.counts().expect("counts").delivered, 5);
    assert_eq!(survivor.counts().expect("counts").in_flight, 0);
}

#[test]
fn bounds_and_ordering_hold_across_instances() {
    let schema = Schema::new();
    let (a, b) = (schema.open(LEASE), schema.open(LEASE));
    let ordered = |event: &str| NewDelivery {
        ordered: true,
        ..delivery(1, event, 0)
    };
    a.enqueue(&[], vec![ordered("first"), ordered("second")], 0)
        .expect("enqueue");
    let unordered = (0..6).map(|n| delivery(2, &format!("u{n}"), 0)).collect();
    a.enqueue(&[], unordered, 0).expect("enqueue");
    let limits = LeaseLimits::new(2);
    let from_a = a.lease_within(0, 10, &limits).expect("lease");
    let from_b = b.lease_within(0, 10, &limits).expect("lease");
    let events = |leased: &[callout_store::Leased], sub: u64| -> Vec<String> {
        leased
            .iter()
            .filter(|l| l.delivery.subscription_id == sub)
            .map(|l| l.delivery.event_ids[0].clone())
            .collect()
    };
    assert_eq!(events(&from_a, 1), ["first"]);
    assert!(
        events(&from_b, 1).is_empty(),
        "one ordered in flight, cluster-wide"
    );
    assert_eq!(events(&from_a, 2).len(), 2);
    assert!(
        events(&from_b, 2).is_empty(),
        "the bound counts both instances"
    );
    let head = from_a.iter().find(|l| l.delivery.ordered).expect("head");
    a.complete(head.token, attempt(1, 1, "delivered"))
        .expect("complete");
    let next = b.lease_within(0, 10, &limits).expect("lease");
    assert_eq!(
        events(&next, 1),
        ["second"],
        "publish order across instances"
    );
}

#[test]
fn event_ids_are_deduplicated_across_instances() {
    let schema = Schema::new();
    let (a, b) = (Arc::new(schema.open(LEASE)), Arc::new(schema.open(LEASE)));
    // Both publish the same ten host event ids at once: each id is stored once.
    let threads: Vec<_> = [a, b]
        .into_iter()
        .map(|store| {
            std::thread::spawn(move || {
                let mut stored = 0;
                for n in 0..10 {
                    let id = format!("evt-{n}");
                    let receipt = store
                        .enqueue(std::slice::from_ref(&id), vec![delivery(1, &id, 0)], 5)
                        .expect("enqueue");
                    stored += receipt.delivery_ids.len();
                }
                stored
            })
        })
        .collect();
    let stored: usize = threads
        .into_iter()
        .map(|t| t.join().expect("publisher"))
        .sum();
    assert_eq!(stored, 10);
}

#[test]
fn an_event_id_is_new_again_after_the_retention() {
    let schema = Schema::new();
    let mut config = schema.config(LEASE);
    config.dedup_retention = Duration::from_millis(1_000);
    let store = PgStore::open(config).expect("the store opens");
    let publish = |at: u64| {
        store
            .enqueue(&["evt".to_string()], vec![delivery(1, "evt", 0)], at)
            .expect("enqueue")
    };
    assert_eq!(publish(0).delivery_ids.len(), 1);
    assert_eq!(
        publish(999).duplicate_event_ids,
        ["evt"],
        "within the retention"
    );
    let later = publish(2_001);
    assert!(later.duplicate_event_ids.is_empty(), "forgotten after it");
    assert_eq!(later.delivery_ids.len(), 1);
    assert_eq!(
        publish(2_500).duplicate_event_ids,
        ["evt"],
        "remembered anew from then"
    );
}

#[test]
fn prune_forgets_the_oldest_event_ids_past_the_number_kept() {
    let schema = Schema::new();
    let mut config = schema.config(LEASE);
    config.dedup_kept = 3;
    let store = PgStore::open(config).expect("the store opens");
    let publish = |id: &str, at: u64| {
        store
            .enqueue(&[id.to_string()], vec![delivery(1, id, 0)], at)
            .expect("enqueue")
            .duplicate_event_ids
    };
    for (n, id) in ["e0", "e1", "e2", "e3", "e4"].iter().enumerate() {
        assert!(publish(id, 1_000 + n as u64).is_empty());
    }
    // All within the day's retention: only the number kept makes any go, oldest first.
    assert_eq!(store.prune(2_000, 100).expect("prune"), 2);
    assert_eq!(store.prune(2_000, 100).expect("prune"), 0);
    assert_eq!(publish("e2", 2_001), ["e2"], "kept");
    assert!(publish("e1", 2_002).is_empty(), "forgotten, so new again");
    // The ids are counted at most once a minute of the caller's clock.
    assert_eq!(
        store.prune(2_003, 100).expect("prune"),
        0,
        "counted at 2,000"
    );
    assert_eq!(publish("e2", 2_004), ["e2"], "so kept for now");
    assert_eq!(store.prune(62_000, 100).expect("prune"), 1);
    assert!(
        publish("e2", 62_001).is_empty(),
        "now the oldest, so forgotten"
    );
}

#[test]
fn prune_keeps_at_most_the_configured_attempts_per_subscription_across_instances() {
    const DAY_MS: u64 = 86_400_000;
    let schema = Schema::new();
    let mut config = schema.config(LEASE);
    config.attempts_kept = 5;
    config.attempt_retention = Duration::from_millis(DAY_MS);
    let open = |config: &callout_postgres::PgConfig| {
        PgStore::open(config.clone()).expect("the store opens")
    };
    let (a, b) = (open(&config), open(&config));
    // Of subscription 1, `settles` deliveries settled at `at`, `at + 1`, ... each way that
    // records an attempt (complete, reschedule, dead letter) in turn, and one released,
    // which records none; of subscription 2, one complete.
    let round = |store: &PgStore, name: &str, at: u64, settles: u64| {
        let batch = (0..=settles)
            .map(|n| delivery(1, &format!("{name}-{n}"), at))
            .chain([delivery(2, &format!("{name}-other"), at)])
            .collect();
        store.enqueue(&[], batch, at).expect("enqueue");
        let mut leased = store.lease(at, 100).expect("lease");
        leased.sort_by_key(|l| l.delivery.id);
        assert_eq!(leased.len() as u64, settles + 2);
        let mut n = 0;
        for l in leased {
            let attempt = attempt(1, at + n, "delivered");
            match (l.delivery.subscription_id, n % 3) {
                (2, _) => store.complete(l.token, attempt).expect("complete"),
                (_, _) if n == settles => store.release(l.token, at + DAY_MS).expect("release"),
                (_, 0) => store.complete(l.token, attempt).expect("complete"),
                (_, 1) => store
                    .reschedule(l.token, at + DAY_MS, attempt)
                    .expect("reschedule"),
                _ => store.dead_letter(l.token, attempt).expect("dead letter"),
            }
            if l.delivery.subscription_id == 1 {
                n += 1;
            }
        }
    };
    let kept_times = |store: &PgStore, sub: u64| {
        let mut times: Vec<u64> = store
            .attempts_for_subscription(sub, 100)
            .expect("attempts")
            .iter()
            .map(|(_, attempt)| attempt.at)
            .collect();
        times.sort_unstable();
        times
    };
    round(&a, "r1", 100, 6);
    assert_eq!(kept_times(&a, 1), [100, 101, 102, 103, 104, 105]);
    // All within the day's retention: only the number kept makes any go, oldest first.
    assert_eq!(a.prune(1_000, 100).expect("prune"), 1);
    assert_eq!(kept_times(&a, 1), [101, 102, 103, 104, 105]);
    assert_eq!(
        kept_times(&a, 2).len(),
        1,
        "another subscription's own count"
    );
    // The other instance settles; its prunes go a bounded batch at a time.
    round(&b, "r2", 200, 3);
    assert_eq!(b.prune(1_000, 1).expect("prune"), 1);
    assert_eq!(a.prune(1_000, 100).expect("prune"), 2);
    assert_eq!(a.prune(1_000, 100).expect("prune"), 0);
    assert_eq!(kept_times(&b, 1), [104, 105, 200, 201, 202]);
    drop((a, b));
    // Reopened: the counts were kept. A day on, the attempts before 200 go by age, and the
    // counts go down with them, so the next round's two push out none of the three left.
    let c = open(&config);
    assert_eq!(c.prune(1_000, 100).expect("prune"), 0);
    assert_eq!(
        c.prune(200 + DAY_MS, 100).expect("prune"),
        3,
        "104 and 105 of subscription 1, 107 of 2"
    );
    assert_eq!(kept_times(&c, 1), [200, 201, 202]);
    assert_eq!(kept_times(&c, 2), [204]);
    round(&c, "r3", 250, 2);
    assert_eq!(c.prune(200 + DAY_MS, 100).expect("prune"), 0);
    assert_eq!(kept_times(&c, 1), [200, 201, 202, 250, 251]);
}

#[test]
fn prune_holds_no_subscription_row_while_it_forgets_event_ids() {
    // An enqueue locks the event ids it remembers, then its subscriptions' rows. A prune that
    // still held a subscription's row (from bounding its attempts) while it waited for an
    // event id an enqueue holds would deadlock with that enqueue.
    let schema = Schema::new();
    let mut config = schema.config(LEASE);
    config.attempts_kept = 1;
    config.dedup_kept = 1;
    let store = Arc::new(PgStore::open(config).expect("the store opens"));
    for id in ["x", "y"] {
        store
            .enqueue(&[id.to_string()], vec![delivery(1, id, 0)], 10)
            .expect("enqueue");
    }
    for (n, leased) in store.lease(20, 10).expect("lease").into_iter().enumerate() {
        store
            .complete(leased.token, attempt(1, 30 + n as u64, "delivered"))
            .expect("complete");
    }
    // "x", the older, is the one past the number kept; the test holds it.
    let held = support::RowHold::take_event(&schema, "x");
    let prune = {
        let store = Arc::clone(&store);
        std::thread::spawn(move || store.prune(1_000, 100))
    };
    assert!(
        held.waited_for(Duration::from_secs(10)),
        "the prune waits for the event id"
    );
    let mut other = support::client();
    other
        .batch_execute(&format!(
            "BEGIN; SET LOCAL search_path TO {}; \
             SELECT 1 FROM queue_state WHERE subscription = 1 FOR UPDATE NOWAIT; COMMIT",
            schema.name
        ))
        .expect("subscription 1's row is free while the prune waits");
    held.release();
    let removed = prune.join().expect("prune thread").expect("prune");
    assert_eq!(removed, 2, "one attempt and one event id");
}

#[test]
fn leases_taken_after_an_instance_last_looked_still_come_back_at_their_deadline() {
    let schema = Schema::new();
    let lease = Duration::from_millis(200);
    let survivor = schema.open(lease);
    let gone = schema.open(lease);
    // The survivor looks for expired leases (there are none) before the other takes any.
    assert!(survivor.lease(1_000, 10).expect("lease").is_empty());
    gone.enqueue(&[], vec![delivery(1, "a", 0)], 1_000)
        .expect("enqueue");
    assert_eq!(gone.lease(1_050, 10).expect("lease").len(), 1);
    drop(gone);
    assert!(
        survivor.lease(1_249, 10).expect("lease").is_empty(),
        "leased until 1,250"
    );
    assert_eq!(
        survivor.lease(1_250, 10).expect("lease").len(),
        1,
        "back at its deadline, though the survivor's last look was before it was taken"
    );
}

#[test]
fn of_one_subscription_a_later_commit_has_the_higher_ids_across_instances() {
    let schema = Schema::new();
    let (a, b) = (Arc::new(schema.open(LEASE)), schema.open(LEASE));
    a.enqueue(&[], vec![delivery(1, "first", 0)], 0)
        .expect("enqueue");
    // A transaction of the test holds subscription 1's row, so A's next publish, to 1 and 2,
    // waits for it (rows are locked in subscription order) while B publishes to 2 alone.
    let held = support::RowHold::take(&schema, 1);
    let publisher = {
        let a = Arc::clone(&a);
        std::thread::spawn(move || {
            a.enqueue(&[], vec![delivery(1, "a1", 0), delivery(2, "a2", 0)], 0)
                .expect("enqueue")
        })
    };
    let blocked = held.waited_for(Duration::from_secs(10));
    assert!(blocked, "A's publish waits for subscription 1");
    let b_id = b
        .enqueue(&[], vec![delivery(2, "b2", 0)], 0)
        .expect("enqueue")
        .delivery_ids[0];
    held.release();
    let a_ids = publisher.join().expect("publisher").delivery_ids;
    assert!(
        b_id < a_ids[1],
        "B committed first, so its delivery to 2 ({b_id}) is before A's ({})",
        a_ids[1]
    );
}
