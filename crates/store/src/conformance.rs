//! The conformance suite: one set of checks, written against the storage traits, that every
//! backend must pass. A backend's tests provide a [`Harness`] and expand
//! [`conformance_tests!`](crate::conformance_tests) into one `#[test]` per check:
//!
//! ```
//! use std::{sync::Arc, time::Duration};
//! use callout_store::{conformance::Harness, Backend, SledStore, StoreConfig};
//!
//! struct Sled(tempfile::TempDir);
//!
//! impl Harness for Sled {
//!     fn open(&self, lease: Duration) -> Arc<dyn Backend> {
//!         let config = StoreConfig { lease, ..StoreConfig::default() };
//!         Arc::new(SledStore::open(self.0.path(), config).expect("opens"))
//!     }
//! }
//!
//! // In a test file: callout_store::conformance_tests!(Sled(tempfile::tempdir().unwrap()));
//! callout_store::conformance::hold_and_resume(&Sled(tempfile::tempdir()?));
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! Each check panics (as a test does) when the backend breaks the contract. Times are passed in,
//! never read from a clock, so the checks are deterministic.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use callout_core::{State, Subscription};

use crate::backend::Backend;
use crate::error::StoreError;
use crate::model::{
    Attempt, Counts, DeadFilter, DeliveryState, FailureStreak, LeaseLimits, NewDelivery, Pace,
    SubscriptionFilter,
};

/// How the suite gets a backend to check.
pub trait Harness {
    /// Opens the backend on this harness's data with leases of `lease`: empty on the first
    /// call, and on every later call the same data again, after the backend opened before was
    /// dropped (a reopen).
    fn open(&self, lease: Duration) -> Arc<dyn Backend>;
}

/// The lease the checks use unless they test expiry.
const LEASE: Duration = Duration::from_secs(300);

/// A delivery of one event to `sub`, due at `due_at`, with the message id
/// `msg_{sub}_{event_id}`.
pub fn delivery(sub: u64, event_id: &str, due_at: u64) -> NewDelivery {
    NewDelivery {
        subscription_id: sub,
        event_ids: vec![event_id.to_string()],
        event_type: "contact.created".into(),
        body: format!(r#"{{"id":"{event_id}"}}"#).into_bytes(),
        due_at,
        ordered: false,
        message_id: format!("msg_{sub}_{event_id}"),
        order_key: None,
    }
}

/// An attempt numbered `number`, made at `at`, with `outcome`.
pub fn attempt(number: u32, at: u64, outcome: &str) -> Attempt {
    Attempt {
        number,
        at,
        duration_ms: 3,
        status: Some(if outcome == "delivered" { 200 } else { 500 }),
        outcome: outcome.into(),
        excerpt: format!("answer to {number}"),
    }
}

/// A publish's deliveries are stored together, each with its own id, and survive a reopen with
/// their bodies as given.
pub fn enqueue_is_atomic_and_survives_reopen(harness: &dyn Harness) {
    let store = harness.open(LEASE);
    let batch = vec![
        delivery(1, "a", 0),
        delivery(1, "b", 0),
        delivery(2, "c", 0),
    ];
    let receipt = store.enqueue(&[], batch, 0).expect("enqueue");
    assert_eq!(receipt.delivery_ids.len(), 3);
    let distinct: HashSet<u64> = receipt.delivery_ids.iter().copied().collect();
    assert_eq!(distinct.len(), 3, "ids are distinct");
    assert_eq!(store.counts().expect("counts").due, 3);
    drop(store);
    let store = harness.open(LEASE);
    assert_eq!(store.counts().expect("counts").due, 3, "durable");
    let mut leased = store.lease(0, 10).expect("lease");
    leased.sort_by_key(|l| l.delivery.id);
    let events: Vec<&str> = leased
        .iter()
        .map(|l| l.delivery.event_ids[0].as_str())
        .collect();
    assert_eq!(events, ["a", "b", "c"], "in publish order of ids");
    assert_eq!(leased[0].delivery.body, br#"{"id":"a"}"#);
    let message_ids: Vec<&str> = leased
        .iter()
        .map(|l| l.delivery.message_id.as_str())
        .collect();
    assert_eq!(
        message_ids,
        ["msg_1_a", "msg_1_b", "msg_2_c"],
        "kept as given"
    );
    assert!(leased[0].delivery.id < leased[1].delivery.id);
    let next = store.enqueue(&[], vec![delivery(1, "d", 0)], 0);
    let next_id = next.expect("enqueue").delivery_ids[0];
    assert!(
        receipt.delivery_ids.iter().all(|&id| id < next_id),
        "ids are never reused after a reopen"
    );
}

/// A host event id is enqueued once within the retention window, across calls and reopens.
pub fn host_event_ids_are_deduplicated(harness: &dyn Harness) {
    let store = harness.open(LEASE);
    let first = store
        .enqueue(&["e1".into()], vec![delivery(1, "e1", 0)], 0)
        .expect("enqueue");
    assert_eq!(first.delivery_ids.len(), 1);
    assert!(first.duplicate_event_ids.is_empty());
    drop(store);
    let store = harness.open(LEASE);
    let again = store
        .enqueue(
            &["e1".into(), "e2".into()],
            vec![delivery(1, "e1", 0), delivery(2, "e2", 0)],
            1,
        )
        .expect("enqueue");
    assert_eq!(again.duplicate_event_ids, ["e1"]);
    assert_eq!(again.delivery_ids.len(), 1, "only e2's delivery");
    assert_eq!(store.counts().expect("counts").due, 2);
}

/// Publishers naming the same host event ids at once (so their calls may share one group
/// commit) store each id once: every other call hears it was a duplicate, and a call's
/// deliveries go in only when none of the ids it names was seen.
pub fn concurrent_publishes_of_one_event_id_store_it_once(harness: &dyn Harness) {
    const THREADS: usize = 8;
    const IDS: usize = 25;
    let store = harness.open(LEASE);
    let publishers: Vec<_> = (0..THREADS)
        .map(|t| {
            let store = Arc::clone(&store);
            std::thread::spawn(move || {
                let mut stored = Vec::new();
                for n in 0..IDS {
                    let id = format!("evt-{n}");
                    // Every second call also names an id of its own, which is never a
                    // duplicate, but its deliveries go only with the shared one's.
                    let own = format!("own-{t}-{n}");
                    let ids = if n % 2 == 0 {
                        vec![id.clone()]
                    } else {
                        vec![id.clone(), own.clone()]
                    };
                    let mut named = delivery(1, &id, 0);
                    named.event_ids = ids.clone();
                    let receipt = store.enqueue(&ids, vec![named], 5).expect("enqueue");
                    match receipt.duplicate_event_ids.as_slice() {
                        [] => {
                            assert_eq!(receipt.delivery_ids.len(), 1);
                            stored.push(n);
                        }
                        [seen] => {
                            assert_eq!(seen, &id, "only the shared id is a duplicate");
                            assert!(
                                receipt.delivery_ids.is_empty(),
                                "a call with a seen id stores nothing"
                            );
                        }
                        other => panic!("unexpected duplicates {other:?}"),
                    }
                }
                stored
            })
        })
        .collect();
    let mut stored: Vec<usize> = publishers
        .into_iter()
        .flat_map(|p| p.join().expect("publisher"))
        .collect();
    stored.sort_unstable();
    assert_eq!(
        stored,
        (0..IDS).collect::<Vec<_>>(),
        "each id stored exactly once"
    );
    assert_eq!(store.counts().expect("counts").due, IDS as u64);
}

/// Two workers leasing at once never get the same delivery, and between them get all.
pub fn two_workers_never_lease_the_same_delivery(harness: &dyn Harness) {
    let store = harness.open(LEASE);
    let batch = (0..60)
        .map(|n| delivery(n % 3 + 1, &format!("e{n}"), 0))
        .collect();
    store.enqueue(&[], batch, 0).expect("enqueue");
    let workers: Vec<_> = (0..2)
        .map(|_| {
            let store = Arc::clone(&store);
            std::thread::spawn(move || {
                let mut got = Vec::new();
                for _ in 0..100 {
                    let leased = store.lease(0, 7).expect("lease");
                    if leased.is_empty() {
                        break;
                    }
                    got.extend(leased.into_iter().map(|l| l.delivery.id));
                }
                got
            })
        })
        .collect();
    let all: Vec<u64> = workers
        .into_iter()
        .flat_map(|w| w.join().expect("worker"))
        .collect();
    let distinct: HashSet<u64> = all.iter().copied().collect();
    assert_eq!(all.len(), 60, "every delivery leased");
    assert_eq!(distinct.len(), 60, "none leased twice");
    assert_eq!(store.counts().expect("counts").in_flight, 60);
}

/// Completes from many threads at once, each lease completed twice by two threads racing:
/// exactly one of the two is taken, the other hears [`StoreError::UnknownDelivery`], and every
/// delivery is delivered once, with one attempt, its count moved once.
pub fn concurrent_completes_each_take_once(harness: &dyn Harness) {
    const DELIVERIES: u64 = 120;
    const THREADS: usize = 8;
    let store = harness.open(LEASE);
    let batch = (0..DELIVERIES)
        .map(|n| delivery(n % 4 + 1, &format!("e{n}"), 0))
        .collect();
    store.enqueue(&[], batch, 0).expect("enqueue");
    let leased = store.lease(0, DELIVERIES as usize).expect("lease");
    assert_eq!(leased.len(), DELIVERIES as usize);
    let (tokens, taken) = crossbeam_channel::unbounded();
    for lease in &leased {
        tokens.send(lease.token).expect("queue");
        tokens.send(lease.token).expect("queue");
    }
    drop(tokens);
    let completers: Vec<_> = (0..THREADS)
        .map(|_| {
            let (store, taken) = (Arc::clone(&store), taken.clone());
            std::thread::spawn(move || {
                let mut answers = Vec::new();
                for token in taken {
                    let answer = store.complete(token, attempt(1, 1, "delivered"));
                    match answer {
                        Ok(()) => answers.push((token.delivery_id(), true)),
                        Err(StoreError::UnknownDelivery(id)) => {
                            assert_eq!(id, token.delivery_id());
                            answers.push((id, false));
                        }
                        Err(other) => panic!("complete: {other}"),
                    }
                }
                answers
            })
        })
        .collect();
    let mut taken_by: std::collections::HashMap<u64, (u32, u32)> = Default::default();
    for completer in completers {
        for (id, ok) in completer.join().expect("completer") {
            let entry = taken_by.entry(id).or_default();
            if ok {
                entry.0 += 1;
            } else {
                entry.1 += 1;
            }
        }
    }
    assert_eq!(taken_by.len(), DELIVERIES as usize);
    assert!(
        taken_by.values().all(|&answers| answers == (1, 1)),
        "each lease taken once and refused once"
    );
    let counts = store.counts().expect("counts");
    assert_eq!(
        (counts.delivered, counts.in_flight, counts.due),
        (DELIVERIES, 0, 0)
    );
    for lease in &leased {
        let attempts = store
            .attempts_for_delivery(lease.delivery.id)
            .expect("attempts");
        assert_eq!(attempts.len(), 1, "one attempt for {}", lease.delivery.id);
    }
}

/// Leases from many threads at once, with clocks 15 ms and 5 ms before the deliveries are due,
/// 1 ms after and long after: those 15 ms early get none (a backend that serves concurrent
/// calls as one lease may serve calls whose clocks are within 10 ms of each other at the latest
/// of them, no more), and all together get every delivery, none twice.
pub fn concurrent_leases_go_by_their_own_clock(harness: &dyn Harness) {
    const DELIVERIES: u64 = 40;
    const THREADS: usize = 12;
    let store = harness.open(LEASE);
    let batch = (0..DELIVERIES)
        .map(|n| delivery(n % 4 + 1, &format!("e{n}"), 1_005))
        .collect();
    store.enqueue(&[], batch, 0).expect("enqueue");
    let start = Arc::new(std::sync::Barrier::new(THREADS));
    let leasers: Vec<_> = (0..THREADS)
        .map(|t| {
            let (store, start) = (Arc::clone(&store), Arc::clone(&start));
            let now = [990, 1_000, 1_006, 2_000][t % 4];
            std::thread::spawn(move || {
                start.wait();
                let mut got = Vec::new();
                for _ in 0..DELIVERIES {
                    let leased = store.lease(now, 3).expect("lease");
                    assert!(leased.len() <= 3, "at most the call's max");
                    if leased.is_empty() {
                        break;
                    }
                    got.extend(leased.into_iter().map(|l| l.delivery.id));
                }
                (now, got)
            })
        })
        .collect();
    let mut all = Vec::new();
    for leaser in leasers {
        let (now, got) = leaser.join().expect("leaser");
        if now < 1_000 {
            assert!(got.is_empty(), "nothing is due by {now} + 10 ms: {got:?}");
        }
        all.extend(got);
    }
    let distinct: HashSet<u64> = all.iter().copied().collect();
    assert_eq!(all.len(), DELIVERIES as usize, "every delivery leased");
    assert_eq!(distinct.len(), DELIVERIES as usize, "none leased twice");
}

/// An expired lease returns the delivery to the queue; a settle with the old lease's token is
/// refused, and the new lease settles.
pub fn an_expired_lease_returns_and_its_token_is_refused(harness: &dyn Harness) {
    let store = harness.open(Duration::from_millis(50));
    store
        .enqueue(&[], vec![delivery(1, "a", 0)], 0)
        .expect("enqueue");
    let first = store.lease(0, 10).expect("lease");
    assert_eq!(first.len(), 1);
    assert!(store.lease(49, 10).expect("lease").is_empty(), "still held");
    let second = store.lease(60, 10).expect("lease");
    assert_eq!(second.len(), 1, "back after the deadline");
    assert_eq!(second[0].delivery.id, first[0].delivery.id);
    assert_ne!(second[0].token, first[0].token);
    let stale = store.complete(first[0].token, attempt(1, 1, "delivered"));
    assert!(
        matches!(stale, Err(StoreError::UnknownDelivery(id)) if id == first[0].delivery.id),
        "{stale:?}"
    );
    store
        .complete(second[0].token, attempt(1, 61, "delivered"))
        .expect("the current lease settles");
    assert_eq!(store.counts().expect("counts").delivered, 1);
}

/// A delivery leased by a backend that was closed (or whose process died) is due again after
/// a reopen.
pub fn leases_return_after_reopen(harness: &dyn Harness) {
    let store = harness.open(Duration::from_millis(50));
    store
        .enqueue(&[], vec![delivery(1, "a", 0)], 0)
        .expect("enqueue");
    assert_eq!(store.lease(0, 10).expect("lease").len(), 1);
    drop(store);
    let store = harness.open(Duration::from_millis(50));
    let again = store.lease(100, 10).expect("lease");
    assert_eq!(again.len(), 1, "at least once");
    assert_eq!(again[0].delivery.event_ids, ["a"]);
}

/// An ordered subscription has one delivery in flight, and its deliveries go in publish order,
/// a retried head included.
pub fn ordered_subscriptions_go_one_at_a_time_in_order(harness: &dyn Harness) {
    let store = harness.open(LEASE);
    let ordered = |event: &str| NewDelivery {
        ordered: true,
        ..delivery(1, event, 0)
    };
    store
        .enqueue(&[], vec![ordered("first"), ordered("second")], 0)
        .expect("enqueue");
    store
        .enqueue(&[], vec![delivery(2, "other", 0)], 0)
        .expect("enqueue");
    let leased = store.lease(0, 10).expect("lease");
    let mut events: Vec<&str> = leased
        .iter()
        .map(|l| l.delivery.event_ids[0].as_str())
        .collect();
    events.sort();
    assert_eq!(events, ["first", "other"]);
    let head = leased
        .iter()
        .find(|l| l.delivery.event_ids[0] == "first")
        .expect("head");
    store
        .reschedule(head.token, 500, attempt(1, 1, "http 500"))
        .expect("reschedule");
    assert!(
        store.lease(100, 10).expect("lease").is_empty(),
        "no overtaking"
    );
    let retried = store.lease(500, 10).expect("lease");
    assert_eq!(retried.len(), 1);
    assert_eq!(retried[0].delivery.event_ids, ["first"]);
    assert_eq!(retried[0].delivery.attempts, 1);
    assert_eq!(
        retried[0].delivery.message_id, "msg_1_first",
        "a retry keeps its message id"
    );
    store
        .complete(retried[0].token, attempt(2, 501, "delivered"))
        .expect("complete");
    let next = store.lease(501, 10).expect("lease");
    assert_eq!(next.len(), 1);
    assert_eq!(next[0].delivery.event_ids, ["second"]);
}

/// Subscriptions take turns at leases, so one with a single delivery due waits for one lease
/// per other subscription, not for their backlogs. The rule: each delivery a lease hands out
/// goes to the subscription, among those with a delivery due and not at their bound, that was
/// leased from least recently since the backend was opened; one never leased from goes first,
/// and between those the one whose next delivery is due earliest (then lowest delivery id).
/// Within a subscription, deliveries go in due order (ordered ones in publish order). The turn
/// is the backend's memory: it need not survive a reopen.
pub fn leases_take_turns_across_subscriptions(harness: &dyn Harness) {
    let store = harness.open(LEASE);
    // Subscription 1 has a backlog due first; 2 has two due later, 3 one later still.
    let mut batch: Vec<NewDelivery> = (0..5).map(|n| delivery(1, &format!("a{n}"), n)).collect();
    batch.push(delivery(2, "b0", 10));
    batch.push(delivery(2, "b1", 11));
    batch.push(delivery(3, "c0", 12));
    store.enqueue(&[], batch, 0).expect("enqueue");
    let events = |leased: Vec<crate::Leased>| -> Vec<String> {
        leased
            .into_iter()
            .map(|l| l.delivery.event_ids[0].clone())
            .collect()
    };
    assert_eq!(
        events(store.lease(20, 4).expect("lease")),
        ["a0", "b0", "c0", "a1"],
        "one each, earliest due first, before any gets a second"
    );
    // Across calls too: 2 was leased from before 1 was last, and 3 has nothing left.
    assert_eq!(events(store.lease(20, 1).expect("lease")), ["b1"]);
    // A newcomer goes before the backlog.
    store
        .enqueue(&[], vec![delivery(4, "d0", 20)], 20)
        .expect("enqueue");
    assert_eq!(events(store.lease(20, 1).expect("lease")), ["d0"]);
    // A subscription at its bound is passed over; the others still take turns.
    store
        .enqueue(&[], vec![delivery(2, "b2", 20), delivery(2, "b3", 20)], 20)
        .expect("enqueue");
    let limits = LeaseLimits::new(usize::MAX).subscription(1, 0);
    assert_eq!(
        events(store.lease_within(20, 10, &limits).expect("lease")),
        ["b2", "b3"]
    );
    assert_eq!(
        events(store.lease(20, 10).expect("lease")),
        ["a2", "a3", "a4"],
        "in due order within a subscription"
    );
}

/// Deliveries with an order key go one at a time per key, in enqueue order, retries included,
/// while other keys go on in parallel: 100 keys (records) of 3 subscriptions, 10,000
/// deliveries, and 30% of attempts failing (due again at once). Zero order violations: no two
/// deliveries of one key in flight together, and each key's deliveries complete in enqueue
/// order; and leases take more than one key at a time (the order costs no parallelism).
pub fn order_keys_hold_through_failures(harness: &dyn Harness) {
    use std::collections::HashMap;
    const KEYS: u64 = 100;
    const DELIVERIES: u64 = 10_000;
    let store = harness.open(LEASE);
    let key_of = |n: u64| format!("contact/{}", n * 7 % KEYS);
    let sub_of = |n: u64| n * 7 % KEYS % 3 + 1;
    for batch in 0..DELIVERIES / 500 {
        let deliveries = (batch * 500..(batch + 1) * 500)
            .map(|n| NewDelivery {
                order_key: Some(key_of(n)),
                ..delivery(sub_of(n), &format!("e{n}"), 0)
            })
            .collect();
        store.enqueue(&[], deliveries, 0).expect("enqueue");
    }
    let number = |event: &str| event[1..].parse::<u64>().expect("e<n>");
    // Expected completion order per key: enqueue order.
    let mut next: HashMap<String, Vec<u64>> = HashMap::new();
    for n in (0..DELIVERIES).rev() {
        next.entry(key_of(n)).or_default().push(n);
    }
    let mut random = 0x2545_f491_4f6c_dd1du64;
    let mut fails = || {
        random ^= random << 13;
        random ^= random >> 7;
        random ^= random << 17;
        random % 10 < 3
    };
    let (mut done, mut now, mut widest) = (0u64, 1u64, 0usize);
    // One lease of each round is settled only after the next round has leased, so a key in
    // flight across lease calls is tested too.
    let mut carried: Option<crate::model::Leased> = None;
    for _round in 0..100_000 {
        if done == DELIVERIES {
            break;
        }
        now += 1;
        let mut leased = store.lease(now, 64).expect("lease");
        let mut in_flight: HashSet<String> = carried
            .iter()
            .filter_map(|l| l.delivery.order_key.clone())
            .collect();
        for l in &leased {
            let key = l.delivery.order_key.clone().expect("the key is kept");
            assert!(
                in_flight.insert(key.clone()),
                "two deliveries of {key} in flight at once"
            );
        }
        widest = widest.max(in_flight.len());
        let settle_now: Vec<_> = carried.take().into_iter().collect();
        if !leased.is_empty() {
            carried = Some(leased.remove(0));
        }
        for l in settle_now.into_iter().chain(leased) {
            let n = number(&l.delivery.event_ids[0]);
            let key = l.delivery.order_key.clone().expect("the key is kept");
            let expected = *next[&key].last().expect("a delivery left for the key");
            assert_eq!(n, expected, "{key}: e{n} leased before e{expected}");
            if fails() {
                store
                    .reschedule(
                        l.token,
                        now,
                        attempt(l.delivery.attempts + 1, now, "http 500"),
                    )
                    .expect("reschedule");
            } else {
                store
                    .complete(l.token, attempt(l.delivery.attempts + 1, now, "delivered"))
                    .expect("complete");
                next.get_mut(&key).expect("key").pop();
                done += 1;
            }
        }
    }
    assert_eq!(done, DELIVERIES, "every delivery completed");
    assert!(widest > 1, "keys go on in parallel");
}

/// Per-record ordering holds through a reopen, a hold and resume, and a dead letter: a key's
/// later deliveries wait while its first is in flight, retried, or held, go on after it is
/// delivered or dead, and never overtake it; other keys go meanwhile.
pub fn order_keys_hold_through_reopen_hold_and_dead_letters(harness: &dyn Harness) {
    let keyed = |event: &str, key: &str| NewDelivery {
        order_key: Some(key.into()),
        ..delivery(1, event, 0)
    };
    let lease_events = |store: &Arc<dyn Backend>, now: u64| {
        let mut leased = store.lease(now, 10).expect("lease");
        leased.sort_by(|a, b| a.delivery.event_ids.cmp(&b.delivery.event_ids));
        leased
    };
    let names = |leased: &[crate::model::Leased]| -> Vec<String> {
        leased
            .iter()
            .map(|l| l.delivery.event_ids[0].clone())
            .collect()
    };
    let store = harness.open(Duration::from_millis(50));
    let batch = vec![
        keyed("a1", "account/1"),
        keyed("a2", "account/1"),
        keyed("b1", "account/2"),
    ];
    store.enqueue(&[], batch, 0).expect("enqueue");
    store
        .enqueue(&[], vec![keyed("a3", "account/1")], 0)
        .expect("enqueue");
    let first = lease_events(&store, 0);
    assert_eq!(names(&first), ["a1", "b1"], "one of each key");
    // A crash with a1 in flight: after the lease ends it is still the first of its key.
    drop(first);
    drop(store);
    let store = harness.open(Duration::from_millis(50));
    let again = lease_events(&store, 100);
    assert_eq!(
        names(&again),
        ["a1", "b1"],
        "after a reopen, still one of each key"
    );
    // a1 fails and is due later; b1 is delivered. Nothing of account/1 may go before a1.
    store
        .reschedule(again[0].token, 1_000, attempt(1, 100, "http 500"))
        .expect("reschedule");
    store
        .complete(again[1].token, attempt(1, 100, "delivered"))
        .expect("complete");
    assert!(
        names(&lease_events(&store, 500)).is_empty(),
        "a2 waits for a1"
    );
    // Held and resumed before a1 is due again: still behind it.
    store.hold_subscription(1).expect("hold");
    assert_eq!(store.resume_subscription(1, 500).expect("resume"), 3);
    let resumed = lease_events(&store, 500);
    assert_eq!(
        names(&resumed),
        ["a1"],
        "resuming makes a1 due now, and only a1"
    );
    // a1 goes to the dead letters: a2 is next, then a3.
    store
        .dead_letter(resumed[0].token, attempt(2, 500, "http 500"))
        .expect("dead letter");
    let next = lease_events(&store, 600);
    assert_eq!(names(&next), ["a2"]);
    store
        .complete(next[0].token, attempt(1, 600, "delivered"))
        .expect("complete");
    let last = lease_events(&store, 700);
    assert_eq!(names(&last), ["a3"]);
    store
        .complete(last[0].token, attempt(1, 700, "delivered"))
        .expect("complete");
    let counts = store.subscription_counts(1).expect("counts");
    assert_eq!((counts.due, counts.delivered, counts.dead), (0, 3, 1));
}

/// Lease limits bound each subscription's deliveries in flight, counted against the leases
/// it already holds.
pub fn lease_limits_bound_each_subscription(harness: &dyn Harness) {
    let store = harness.open(LEASE);
    let batch = (0..6)
        .map(|n| delivery(n % 2 + 1, &format!("e{n}"), 0))
        .collect();
    store.enqueue(&[], batch, 0).expect("enqueue");
    let limits = LeaseLimits::new(2).subscription(2, 0);
    let leased = store.lease_within(0, 10, &limits).expect("lease");
    assert_eq!(leased.len(), 2);
    assert!(leased.iter().all(|l| l.delivery.subscription_id == 1));
    assert!(store
        .lease_within(0, 10, &limits)
        .expect("lease")
        .is_empty());
    store
        .complete(leased[0].token, attempt(1, 1, "delivered"))
        .expect("complete");
    assert_eq!(store.lease_within(0, 10, &limits).expect("lease").len(), 1);
    assert_eq!(store.subscription_counts(2).expect("counts").due, 3);

    // A shared group: subscriptions 2 and 3 may have one in flight between them.
    let batch = (0..4).map(|n| delivery(3, &format!("f{n}"), 0)).collect();
    store.enqueue(&[], batch, 0).expect("enqueue");
    let mut limits = LeaseLimits::new(usize::MAX).subscription(1, 0);
    limits.share(2, true);
    limits.share(3, true);
    limits.set_shared_bound(1);
    let one = store.lease_within(0, 10, &limits).expect("lease");
    assert_eq!(one.len(), 1, "one of the group");
    assert!(store
        .lease_within(0, 10, &limits)
        .expect("lease")
        .is_empty());
    store
        .complete(one[0].token, attempt(1, 2, "delivered"))
        .expect("complete");
    let second = store.lease_within(0, 10, &limits).expect("lease");
    assert_eq!(second.len(), 1);
    let holder = second[0].delivery.subscription_id;
    let other = if holder == 2 { 3 } else { 2 };
    limits.share(other, false);
    let rest = store.lease_within(0, 10, &limits).expect("lease");
    assert!(!rest.is_empty());
    assert!(
        rest.iter().all(|l| l.delivery.subscription_id == other),
        "the holder still shares a full group; the other left it"
    );
}

/// Settles move deliveries and counts: delivered, rescheduled (retrying), released, dead;
/// dead letters replay and purge by filter.
pub fn settles_move_deliveries_and_counts(harness: &dyn Harness) {
    let store = harness.open(LEASE);
    let batch = vec![
        delivery(1, "ok", 0),
        delivery(1, "retry", 0),
        delivery(2, "dead", 0),
        delivery(2, "released", 0),
    ];
    store.enqueue(&[], batch, 0).expect("enqueue");
    let mut leased = store.lease(0, 10).expect("lease");
    leased.sort_by_key(|l| l.delivery.id);
    let [ok, retry, dead, released] = [0, 1, 2, 3].map(|i| leased[i].clone());
    store
        .complete(ok.token, attempt(1, 10, "delivered"))
        .expect("complete");
    store
        .reschedule(retry.token, 1_000, attempt(1, 11, "http 503"))
        .expect("reschedule");
    store
        .dead_letter(dead.token, attempt(1, 12, "gone"))
        .expect("dead letter");
    store.release(released.token, 5).expect("release");
    let expected = Counts {
        due: 2,
        retrying: 1,
        in_flight: 0,
        held: 0,
        delivered: 1,
        dead: 1,
    };
    assert_eq!(store.counts().expect("counts"), expected);
    assert_eq!(store.subscription_counts(2).expect("counts").dead, 1);
    assert!(store.delivery(ok.delivery.id).expect("delivery").is_none());
    let r = store
        .delivery(retry.delivery.id)
        .expect("delivery")
        .expect("kept");
    assert_eq!(
        (r.attempts, r.due_at, r.state),
        (1, 1_000, DeliveryState::Due)
    );
    let rel = store
        .delivery(released.delivery.id)
        .expect("delivery")
        .expect("kept");
    assert_eq!((rel.attempts, rel.due_at), (0, 5));
    assert!(matches!(
        store.complete(ok.token, attempt(2, 20, "delivered")),
        Err(StoreError::UnknownDelivery(_))
    ));
    let dead_letters = store
        .dead_letters(&DeadFilter::subscription(2))
        .expect("dead");
    assert_eq!(dead_letters.len(), 1);
    assert_eq!(dead_letters[0].state, DeliveryState::Dead { at: 12 });
    assert!(store
        .dead_letters(&DeadFilter {
            from_ms: 13,
            ..DeadFilter::default()
        })
        .expect("dead")
        .is_empty());
    assert_eq!(
        store
            .replay_dead(&DeadFilter::default(), 2_000)
            .expect("replay"),
        1
    );
    let replayed = store
        .delivery(dead.delivery.id)
        .expect("delivery")
        .expect("kept");
    assert_eq!((replayed.attempts, replayed.state), (0, DeliveryState::Due));
    let again = store.lease(2_000, 10).expect("lease");
    let back = again
        .iter()
        .find(|l| l.delivery.id == dead.delivery.id)
        .expect("replayed delivery leased");
    store
        .dead_letter(back.token, attempt(1, 2_001, "gone"))
        .expect("dead letter");
    assert_eq!(
        store
            .purge_dead(&DeadFilter::subscription(1))
            .expect("purge"),
        0
    );
    assert_eq!(store.purge_dead(&DeadFilter::default()).expect("purge"), 1);
    assert_eq!(store.counts().expect("counts").dead, 0);
}

/// Attempts are kept per delivery (oldest first, a replay adding to them) and listed per
/// subscription (newest first, bounded), and pruned past retention.
pub fn attempts_are_kept_and_listed(harness: &dyn Harness) {
    let store = harness.open(LEASE);
    store
        .enqueue(&[], vec![delivery(1, "a", 0), delivery(1, "b", 0)], 0)
        .expect("enqueue");
    let mut leased = store.lease(0, 10).expect("lease");
    leased.sort_by_key(|l| l.delivery.id);
    let (a, b) = (leased[0].delivery.id, leased[1].delivery.id);
    store
        .reschedule(leased[0].token, 100, attempt(1, 10, "http 500"))
        .expect("reschedule");
    store
        .complete(leased[1].token, attempt(1, 20, "delivered"))
        .expect("complete");
    let again = store.lease(100, 10).expect("lease");
    store
        .complete(again[0].token, attempt(2, 110, "delivered"))
        .expect("complete");
    let history = store.attempts_for_delivery(a).expect("attempts");
    let numbers: Vec<(u32, u64)> = history.iter().map(|x| (x.number, x.at)).collect();
    assert_eq!(numbers, [(1, 10), (2, 110)]);
    assert_eq!(history[0].excerpt, "answer to 1");
    let newest = store.attempts_for_subscription(1, 10).expect("attempts");
    let order: Vec<(u64, u64)> = newest.iter().map(|(id, x)| (*id, x.at)).collect();
    assert_eq!(order, [(a, 110), (b, 20), (a, 10)]);
    assert_eq!(
        store
            .attempts_for_subscription(1, 2)
            .expect("attempts")
            .len(),
        2
    );
    assert!(store
        .attempts_for_subscription(2, 10)
        .expect("attempts")
        .is_empty());
    drop(store);
    let store = harness.open(LEASE);
    assert_eq!(
        store.attempts_for_delivery(a).expect("attempts").len(),
        2,
        "durable"
    );
    let far = 400 * 86_400_000;
    let mut removed = 0;
    for _ in 0..100 {
        let step = store.prune(far, 1_000).expect("prune");
        removed += step;
        if step == 0 {
            break;
        }
    }
    assert!(removed >= 3, "pruned {removed}");
    assert!(store.attempts_for_delivery(a).expect("attempts").is_empty());
}

/// A held subscription's deliveries are not leased; one in flight comes back held; resuming
/// makes them due again; the hold survives a reopen.
pub fn hold_and_resume(harness: &dyn Harness) {
    let store = harness.open(LEASE);
    let batch = vec![
        delivery(1, "a", 0),
        delivery(1, "b", 0),
        delivery(2, "c", 0),
    ];
    store.enqueue(&[], batch, 0).expect("enqueue");
    let only_one = LeaseLimits::new(0).subscription(1, 1);
    let in_flight = store.lease_within(0, 10, &only_one).expect("lease");
    assert_eq!(in_flight.len(), 1);
    store.hold_subscription(1).expect("hold");
    assert_eq!(store.subscription_counts(1).expect("counts").held, 1);
    let leased = store.lease(0, 10).expect("lease");
    assert_eq!(leased.len(), 1);
    assert_eq!(leased[0].delivery.subscription_id, 2);
    store
        .reschedule(in_flight[0].token, 0, attempt(1, 1, "http 500"))
        .expect("reschedule");
    assert_eq!(store.subscription_counts(1).expect("counts").held, 2);
    drop(leased);
    drop(store);
    let store = harness.open(LEASE);
    assert_eq!(
        store.subscription_counts(1).expect("counts").held,
        2,
        "durable"
    );
    store
        .enqueue(&[], vec![delivery(1, "d", 0)], 0)
        .expect("enqueue");
    assert_eq!(store.subscription_counts(1).expect("counts").held, 3);
    assert_eq!(store.resume_subscription(1, 10).expect("resume"), 3);
    let resumed = store.lease(10, 10).expect("lease");
    assert_eq!(
        resumed
            .iter()
            .filter(|l| l.delivery.subscription_id == 1)
            .count(),
        3
    );
}

/// `next_due_at` names the earliest due delivery or lease deadline.
pub fn next_due_at_names_the_earliest(harness: &dyn Harness) {
    let store = harness.open(Duration::from_millis(1_000));
    assert_eq!(store.next_due_at().expect("next"), None);
    store
        .enqueue(&[], vec![delivery(1, "a", 500), delivery(1, "b", 300)], 0)
        .expect("enqueue");
    assert_eq!(store.next_due_at().expect("next"), Some(300));
    let leased = store.lease(300, 10).expect("lease");
    assert_eq!(leased.len(), 1);
    assert_eq!(store.next_due_at().expect("next"), Some(500));
    let both = store.lease(500, 10).expect("lease");
    assert_eq!(both.len(), 1);
    assert_eq!(
        store.next_due_at().expect("next"),
        Some(1_300),
        "the first lease ends"
    );
}

/// Subscriptions: ids never reused, GUID and creation kept on update, listing by filter,
/// deletion, sequence numbers, all durable across a reopen.
pub fn registry_keeps_subscriptions(harness: &dyn Harness) {
    let store = harness.open(LEASE);
    let new = |name: &str, events: &[&str]| {
        Subscription::new("https://receiver.example/hooks")
            .name(name)
            .events(events.iter().copied())
    };
    let a = store
        .create_subscription(new("Alpha", &["contact.created"]), 10)
        .expect("create");
    let b = store
        .create_subscription(new("Beta", &["sale.*"]), 11)
        .expect("create");
    assert!(a.id > 0 && b.id > a.id);
    assert!(!a.guid.is_empty() && a.guid != b.guid);
    assert_eq!(a.created_at, Some(10));
    let invalid = store.create_subscription(Subscription::new("not a url"), 12);
    assert!(
        matches!(invalid, Err(StoreError::Invalid(_))),
        "{invalid:?}"
    );
    let mut renamed = a.clone();
    renamed.name = "Alpha 2".into();
    renamed.guid = "changed".into();
    renamed.state = State::Stopped;
    let updated = store.update_subscription(renamed, 20).expect("update");
    assert_eq!(updated.guid, a.guid, "GUID kept");
    assert_eq!(updated.created_at, Some(10));
    assert_eq!(updated.updated_at, Some(20));
    let missing = Subscription {
        id: 999,
        ..new("Nobody", &["*"])
    };
    assert!(matches!(
        store.update_subscription(missing, 21),
        Err(StoreError::UnknownSubscription(999))
    ));
    let by_event = SubscriptionFilter {
        event: Some("sale.created".into()),
        ..SubscriptionFilter::default()
    };
    let listed = store.list_subscriptions(&by_event).expect("list");
    assert_eq!(listed.iter().map(|s| s.id).collect::<Vec<_>>(), [b.id]);
    let by_name = SubscriptionFilter {
        name: Some("alpha".into()),
        state: Some(State::Stopped),
        ..SubscriptionFilter::default()
    };
    assert_eq!(store.list_subscriptions(&by_name).expect("list").len(), 1);
    assert_eq!(store.reserve_sequence(a.id, 3).expect("sequence"), 1);
    assert_eq!(store.reserve_sequence(a.id, 1).expect("sequence"), 4);
    let enqueued = store.enqueue(&[], vec![delivery(a.id, "x", 0)], 0);
    enqueued.expect("enqueue makes the sequence durable");
    assert_eq!(
        store
            .delete_subscription(b.id)
            .expect("delete")
            .map(|s| s.id),
        Some(b.id)
    );
    assert!(store.delete_subscription(b.id).expect("delete").is_none());
    drop(store);
    let store = harness.open(LEASE);
    let kept = store.get_subscription(a.id).expect("get").expect("durable");
    assert_eq!(
        (kept.name.as_str(), kept.state),
        ("Alpha 2", State::Stopped)
    );
    assert!(store.get_subscription(b.id).expect("get").is_none());
    assert_eq!(store.reserve_sequence(a.id, 1).expect("sequence"), 5);
    let c = store
        .create_subscription(new("Gamma", &["*"]), 30)
        .expect("create");
    assert!(c.id > b.id, "a deleted subscription's id is not reused");
}

/// Failure streaks count attempts and failed events from their first failure, survive a
/// reopen, and end with a delivered settle or when ended; hourly callout windows, send slots
/// and paces count by the store's rules; a deleted subscription's tallies go with it.
pub fn tallies_count_streaks_windows_slots_and_paces(harness: &dyn Harness) {
    let streak = |attempts, events, since| FailureStreak {
        attempts,
        events,
        since,
    };
    let store = harness.open(LEASE);
    for expected in [1, 2] {
        let sub = Subscription::new("https://receiver.example/hooks").events(["*"]);
        let created = store.create_subscription(sub, 10).expect("create");
        assert_eq!(created.id, expected, "a fresh store's first ids");
    }
    assert_eq!(
        store.count_failure(1, 100, false).expect("count"),
        streak(1, 0, 100)
    );
    assert_eq!(
        store.count_failure(1, 200, true).expect("count"),
        streak(2, 1, 100)
    );
    assert_eq!(
        store.count_failure(2, 300, false).expect("count"),
        streak(1, 0, 300)
    );
    store.flush().expect("flush");
    drop(store);
    let store = harness.open(LEASE);
    assert_eq!(
        store.count_failure(1, 400, false).expect("count"),
        streak(3, 1, 100),
        "a streak survives a reopen"
    );
    // A delivered settle ends its subscription's streak, and only its.
    store
        .enqueue(&[], vec![delivery(1, "ok", 0)], 0)
        .expect("enqueue");
    let leased = store.lease(500, 1).expect("lease");
    store
        .complete(leased[0].token, attempt(1, 500, "delivered"))
        .expect("complete");
    assert_eq!(
        store.count_failure(1, 600, false).expect("count"),
        streak(1, 0, 600)
    );
    assert_eq!(
        store.count_failure(2, 600, false).expect("count"),
        streak(2, 0, 300)
    );
    store.end_failure_streak(2).expect("end");
    assert_eq!(
        store.count_failure(2, 700, false).expect("count"),
        streak(1, 0, 700)
    );

    // Two callouts an hour: the third waits for the next hour and is reported once.
    let hour = 3_600_000;
    let t0 = 1_700_000_000_000 / hour * hour;
    assert!(
        store
            .count_callout(1, "ticket", t0, 2, true)
            .expect("count")
            .goes_now
    );
    assert!(
        store
            .count_callout(1, "ticket", t0 + 1, 2, true)
            .expect("count")
            .goes_now
    );
    let third = store
        .count_callout(1, "ticket", t0 + 2, 2, true)
        .expect("count");
    assert_eq!(
        (
            third.goes_now,
            third.over,
            third.first_over,
            third.next_hour_at
        ),
        (false, Some(3), true, t0 + hour)
    );
    let fourth = store
        .count_callout(1, "ticket", t0 + 3, 2, true)
        .expect("count");
    assert_eq!((fourth.goes_now, fourth.first_over), (false, false));
    assert!(
        store
            .count_callout(1, "contact", t0 + 4, 2, true)
            .expect("count")
            .goes_now,
        "each entity has its own window"
    );
    assert!(
        store
            .count_callout(2, "ticket", t0 + 4, 2, true)
            .expect("count")
            .goes_now
    );
    assert!(
        store
            .count_callout(1, "ticket", t0 + hour, 2, true)
            .expect("count")
            .goes_now
    );

    // One send per 200 ms.
    assert_eq!(store.take_send_slot(1, 1_000, 200).expect("slot"), None);
    assert_eq!(
        store.take_send_slot(1, 1_100, 200).expect("slot"),
        Some(1_200)
    );
    assert_eq!(store.take_send_slot(2, 1_100, 200).expect("slot"), None);
    assert_eq!(store.take_send_slot(1, 1_200, 200).expect("slot"), None);
    assert_eq!(
        store.take_send_slot(1, 1_300, 200).expect("slot"),
        Some(1_400)
    );

    // Paces, by the one rule, listed in id order.
    assert_eq!(store.paces().expect("paces"), []);
    for _ in 0..5 {
        store.pace_attempt(2, true, 3).expect("pace");
    }
    let quick = store.pace_attempt(1, true, 3).expect("pace");
    assert_eq!(quick, Pace::default().after(true, 3));
    let slow = store.pace_attempt(1, false, 3).expect("pace");
    assert!(slow.slow && slow.bound(8) == 1);
    assert_eq!(
        store.paces().expect("paces"),
        [
            (1, slow),
            (
                2,
                Pace {
                    quick_streak: 3,
                    slow: false
                }
            )
        ]
    );

    // A deleted subscription's tallies go with it, and are not made again by a late count.
    store.count_failure(2, 800, false).expect("count");
    store.delete_subscription(2).expect("delete");
    assert_eq!(store.paces().expect("paces"), [(1, slow)]);
    for at in [900, 1_000] {
        assert_eq!(
            store.count_failure(2, at, false).expect("count"),
            streak(1, 0, at),
            "no streak kept for a deleted subscription"
        );
    }
    store.pace_attempt(2, true, 3).expect("pace");
    assert_eq!(store.paces().expect("paces"), [(1, slow)]);
}

/// Expands into one `#[test]` per conformance check, each on a fresh harness made by
/// `$harness` (an expression evaluated once per test).
#[macro_export]
macro_rules! conformance_tests {
    ($harness:expr) => {
        $crate::conformance_tests!(@each $harness;
            enqueue_is_atomic_and_survives_reopen,
            host_event_ids_are_deduplicated,
            concurrent_publishes_of_one_event_id_store_it_once,
            two_workers_never_lease_the_same_delivery,
            concurrent_completes_each_take_once,
            concurrent_leases_go_by_their_own_clock,
            an_expired_lease_returns_and_its_token_is_refused,
            leases_return_after_reopen,
            ordered_subscriptions_go_one_at_a_time_in_order,
            leases_take_turns_across_subscriptions,
            order_keys_hold_through_failures,
            order_keys_hold_through_reopen_hold_and_dead_letters,
            lease_limits_bound_each_subscription,
            settles_move_deliveries_and_counts,
            attempts_are_kept_and_listed,
            hold_and_resume,
            next_due_at_names_the_earliest,
            registry_keeps_subscriptions,
            tallies_count_streaks_windows_slots_and_paces,
        );
    };
    (@each $harness:expr; $($check:ident),* $(,)?) => {
        $(
            #[test]
            fn $check() {
                let harness = $harness;
                $crate::conformance::$check(&harness);
            }
        )*
    };
}
