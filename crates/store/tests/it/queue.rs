//! The delivery queue: enqueue, dedup, leases, settling, ordering, holds, dead letters.

use std::sync::{Arc, Barrier};

use callout_store::{
    Counts, DeadFilter, DeliveryState, Durability, History, LeaseLimits, LeaseToken, NewDelivery,
    Queue, SledStore, StoreConfig, StoreError,
};

use crate::{attempt, delivery, open, open_with_lease, ordered};

const DAY_MS: u64 = 86_400_000;

#[test]
fn enqueue_stores_a_batch_with_sequential_ids() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let batch: Vec<NewDelivery> = (0..500)
        .map(|i| delivery(i % 7 + 1, &format!("e{i}"), 10))
        .collect();
    let receipt = store.enqueue(&[], batch, 10).unwrap();
    assert_eq!(receipt.delivery_ids, (1..=500).collect::<Vec<u64>>());
    assert!(receipt.duplicate_event_ids.is_empty());
    let second = store.enqueue(&[], vec![delivery(1, "x", 10)], 10).unwrap();
    assert_eq!(second.delivery_ids, [501]);
    assert_eq!(store.counts().unwrap().due, 501);
    let d = store.delivery(42).unwrap().unwrap();
    assert_eq!((d.subscription_id, d.created_at), (41 % 7 + 1, 10));
    assert_eq!(d.event_ids, ["e41"]);
    assert_eq!(d.state, DeliveryState::Due);
    // Ids keep counting after a reopen.
    drop(store);
    let store = open(dir.path());
    let third = store.enqueue(&[], vec![delivery(1, "y", 10)], 10).unwrap();
    assert_eq!(third.delivery_ids, [502]);
}

#[test]
fn duplicate_event_id_within_retention_is_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let ids = vec!["evt_1".to_string()];
    let first = store
        .enqueue(
            &ids,
            vec![delivery(1, "evt_1", 0), delivery(2, "evt_1", 0)],
            1_000,
        )
        .unwrap();
    assert_eq!(first.delivery_ids.len(), 2);
    let again = store
        .enqueue(
            &["evt_1".to_string(), "evt_2".to_string()],
            vec![delivery(1, "evt_1", 0), delivery(1, "evt_2", 0)],
            2_000,
        )
        .unwrap();
    assert_eq!(again.duplicate_event_ids, ["evt_1"]);
    assert_eq!(again.delivery_ids, [3]);
    assert_eq!(store.delivery(3).unwrap().unwrap().event_ids, ["evt_2"]);
    // Remembered across a reopen.
    drop(store);
    let store = open(dir.path());
    let third = store
        .enqueue(&ids, vec![delivery(1, "evt_1", 0)], 3_000)
        .unwrap();
    assert_eq!(third.duplicate_event_ids, ["evt_1"]);
    assert!(third.delivery_ids.is_empty());
    // Past the retention (one day by default) it is a new event again.
    let later = 1_000 + DAY_MS + 1;
    let fourth = store
        .enqueue(&ids, vec![delivery(1, "evt_1", 0)], later)
        .unwrap();
    assert!(fourth.duplicate_event_ids.is_empty());
    assert_eq!(fourth.delivery_ids.len(), 1);
}

#[test]
fn prune_forgets_expired_event_ids_but_not_fresh_ones() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let old = vec!["old".to_string()];
    let renewed = vec!["renewed".to_string()];
    store
        .enqueue(&old, vec![delivery(1, "old", 0)], 1_000)
        .unwrap();
    store
        .enqueue(&renewed, vec![delivery(1, "renewed", 0)], 1_000)
        .unwrap();
    // "renewed" comes back after its retention, so it is remembered again from `now`.
    let now = 1_000 + DAY_MS + 10;
    let back = store
        .enqueue(&renewed, vec![delivery(1, "renewed", 0)], now)
        .unwrap();
    assert!(back.duplicate_event_ids.is_empty());
    assert_eq!(store.prune(now, 1_000).unwrap(), 2, "two expired ids");
    assert_eq!(store.prune(now, 1_000).unwrap(), 0, "nothing left to prune");
    // The renewed id is still remembered: its new sighting is within retention.
    let dup = store
        .enqueue(&renewed, vec![delivery(1, "renewed", 0)], now + 1)
        .unwrap();
    assert_eq!(dup.duplicate_event_ids, ["renewed"]);
}

/// Each of `ids` enqueued on its own at `at`, `at + 1`, ...; the ids reported duplicate.
fn enqueue_each(store: &SledStore, ids: &[&str], at: u64) -> Vec<String> {
    let mut duplicates = Vec::new();
    for (n, id) in ids.iter().enumerate() {
        let receipt = store
            .enqueue(&[id.to_string()], vec![delivery(1, id, 0)], at + n as u64)
            .unwrap();
        duplicates.extend(receipt.duplicate_event_ids);
    }
    duplicates
}

#[test]
fn prune_forgets_the_oldest_event_ids_past_the_number_kept_across_reopens() {
    for durability in [Durability::Flush, Durability::Relaxed] {
        let dir = tempfile::tempdir().unwrap();
        let config = StoreConfig {
            dedup_kept: 5,
            durability,
            ..StoreConfig::default()
        };
        let store = SledStore::open(dir.path(), config.clone()).unwrap();
        let ids = ["e0", "e1", "e2", "e3", "e4", "e5", "e6", "e7", "e8", "e9"];
        assert!(enqueue_each(&store, &ids, 1_000).is_empty());
        // All within the day's retention: only the number kept makes any go, oldest first.
        assert_eq!(store.prune(2_000, 1_000).unwrap(), 5, "{durability:?}");
        assert_eq!(store.prune(2_000, 1_000).unwrap(), 0, "{durability:?}");
        assert_eq!(enqueue_each(&store, &ids[5..], 2_000), ids[5..]);
        // The totals are on disk: after a reopen the five left are still the number kept.
        drop(store);
        let store = SledStore::open(dir.path(), config.clone()).unwrap();
        assert_eq!(store.prune(3_000, 1_000).unwrap(), 0, "{durability:?}");
        // A forgotten id is new again, and remembering it puts the oldest one left out.
        assert!(enqueue_each(&store, &["e0"], 3_000).is_empty());
        assert_eq!(store.prune(3_000, 1_000).unwrap(), 1, "{durability:?}");
        assert!(enqueue_each(&store, &["e5"], 3_001).is_empty());
        assert_eq!(enqueue_each(&store, &["e6", "e0"], 3_002), ["e6", "e0"]);
    }
}

#[test]
fn prune_removes_attempts_past_retention() {
    let dir = tempfile::tempdir().unwrap();
    let (store, leased) = two_leased(&dir);
    store
        .reschedule(leased[0].token, 0, attempt(1, 10, "http 500"))
        .unwrap();
    store
        .complete(leased[1].token, attempt(1, 20, "delivered"))
        .unwrap();
    let again = store.lease(30, 10).unwrap();
    store
        .complete(again[0].token, attempt(2, 40, "delivered"))
        .unwrap();
    assert_eq!(store.attempts_for_subscription(1, 10).unwrap().len(), 3);
    // Within the 30-day retention nothing goes.
    assert_eq!(store.prune(1_000, 100).unwrap(), 0);
    let later = 40 + 30 * DAY_MS + 1;
    assert_eq!(store.prune(later, 100).unwrap(), 3);
    assert!(store
        .attempts_for_delivery(leased[0].delivery.id)
        .unwrap()
        .is_empty());
    assert!(store.attempts_for_subscription(1, 10).unwrap().is_empty());
    assert_eq!(store.counts().unwrap().delivered, 2);
}

#[test]
fn lease_takes_only_due_deliveries_in_due_order_up_to_max() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store
        .enqueue(
            &[],
            vec![
                delivery(1, "late", 300),
                delivery(1, "first", 100),
                delivery(2, "second", 200),
                delivery(1, "future", 10_000),
            ],
            0,
        )
        .unwrap();
    assert!(store.lease(99, 10).unwrap().is_empty());
    let two = store.lease(300, 2).unwrap();
    let events: Vec<&str> = two
        .iter()
        .map(|d| d.delivery.event_ids[0].as_str())
        .collect();
    assert_eq!(events, ["first", "second"]);
    assert!(two.iter().all(
        |d| matches!(d.delivery.state, DeliveryState::InFlight { until } if until == 300 + 300_000)
    ));
    // Leased ones are not leased again.
    let rest = store.lease(300, 10).unwrap();
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0].delivery.event_ids, ["late"]);
    assert!(store.lease(300, 10).unwrap().is_empty());
    assert_eq!(store.next_due_at().unwrap(), Some(10_000));
    let counts = store.counts().unwrap();
    assert_eq!((counts.due, counts.in_flight), (1, 3));
}

#[test]
fn expired_lease_returns_to_the_queue() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_with_lease(dir.path(), 50);
    store.enqueue(&[], vec![delivery(1, "e", 0)], 0).unwrap();
    let first = store.lease(0, 10).unwrap();
    assert_eq!(first.len(), 1);
    assert!(store.lease(49, 10).unwrap().is_empty(), "lease still held");
    assert_eq!(store.next_due_at().unwrap(), Some(50), "lease deadline");
    let again = store.lease(60, 10).unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].delivery.id, first[0].delivery.id);
    assert_eq!(
        again[0].delivery.state,
        DeliveryState::InFlight { until: 110 }
    );
    assert_eq!(store.counts().unwrap().in_flight, 1);
    // The attempt made under the expired lease (started at 1) does not settle the new one.
    assert!(matches!(
        store.complete(first[0].token, attempt(1, 1, "delivered")),
        Err(StoreError::UnknownDelivery(_))
    ));
    assert_eq!(store.counts().unwrap().in_flight, 1, "the new lease holds");
    // The new lease is the one that settles.
    store
        .complete(again[0].token, attempt(1, 61, "delivered"))
        .unwrap();
    assert_eq!(store.counts().unwrap().in_flight, 0);
}

#[test]
fn racing_leases_hand_out_a_delivery_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(open(dir.path()));
    for round in 0..50u64 {
        store
            .enqueue(&[], vec![delivery(1, &format!("e{round}"), round)], round)
            .unwrap();
        let barrier = Arc::new(Barrier::new(2));
        let racers: Vec<_> = (0..2)
            .map(|_| {
                let (store, barrier) = (store.clone(), barrier.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    store.lease(round, 10).unwrap()
                })
            })
            .collect();
        let got: Vec<_> = racers.into_iter().flat_map(|r| r.join().unwrap()).collect();
        assert_eq!(got.len(), 1, "round {round}: {got:?}");
        store
            .complete(got[0].token, attempt(1, round, "delivered"))
            .unwrap();
    }
    assert_eq!(store.counts().unwrap().delivered, 50);
}

#[test]
fn lease_within_leaves_subscriptions_at_their_bound_due() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store
        .enqueue(
            &[],
            vec![
                delivery(1, "a", 0),
                delivery(2, "b", 0),
                delivery(1, "c", 0),
            ],
            0,
        )
        .unwrap();
    // Subscription 2 may have none in flight; 1 has no bound of its own.
    let limits = LeaseLimits::default().subscription(2, 0);
    let leased = store.lease_within(0, 10, &limits).unwrap();
    assert_eq!(
        leased
            .iter()
            .map(|d| d.delivery.subscription_id)
            .collect::<Vec<_>>(),
        [1, 1]
    );
    // A bound is counted against what is in flight: one more of subscription 1 may go.
    store.enqueue(&[], vec![delivery(1, "d", 0)], 0).unwrap();
    let limits = LeaseLimits::new(3).subscription(2, 0);
    assert_eq!(store.lease_within(0, 10, &limits).unwrap().len(), 1);
    assert!(store.lease_within(0, 10, &limits).unwrap().is_empty());
    assert_eq!(store.subscription_counts(2).unwrap().due, 1);
    let rest = store.lease(0, 10).unwrap();
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0].delivery.subscription_id, 2);
}

#[test]
fn settling_records_attempts_and_moves_counts() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store
        .enqueue(
            &[],
            vec![
                delivery(1, "ok", 0),
                delivery(1, "retry", 0),
                delivery(2, "dead", 0),
                delivery(2, "released", 0),
            ],
            0,
        )
        .unwrap();
    let mut leased = store.lease(0, 10).unwrap();
    leased.sort_by_key(|l| l.delivery.id);
    let [ok, retry, dead, released] = [0, 1, 2, 3].map(|i| leased[i].delivery.id);
    let [ok_lease, retry_lease, dead_lease, released_lease] = [0, 1, 2, 3].map(|i| leased[i].token);
    assert_eq!(
        store.counts().unwrap(),
        Counts {
            in_flight: 4,
            ..Counts::default()
        }
    );
    let mut long = attempt(1, 10, "delivered");
    long.excerpt = "é".repeat(3_000);
    store.complete(ok_lease, long).unwrap();
    store
        .reschedule(retry_lease, 1_000, attempt(1, 11, "http 503"))
        .unwrap();
    store
        .dead_letter(dead_lease, attempt(1, 12, "gone"))
        .unwrap();
    store.release(released_lease, 5).unwrap();

    let expected_total = Counts {
        due: 2,
        retrying: 1,
        in_flight: 0,
        held: 0,
        delivered: 1,
        dead: 1,
    };
    assert_eq!(store.counts().unwrap(), expected_total);
    assert_eq!(
        store.subscription_counts(1).unwrap(),
        Counts {
            due: 1,
            retrying: 1,
            delivered: 1,
            ..Counts::default()
        }
    );
    assert_eq!(
        store.subscription_counts(2).unwrap(),
        Counts {
            due: 1,
            dead: 1,
            ..Counts::default()
        }
    );
    assert_eq!(store.subscription_counts(3).unwrap(), Counts::default());

    let kept = store.attempts_for_delivery(ok).unwrap();
    assert_eq!(kept.len(), 1);
    assert_eq!(kept[0].excerpt.chars().count(), 1024);
    assert!(
        store.delivery(ok).unwrap().is_none(),
        "delivered leaves the queue"
    );
    let r = store.delivery(retry).unwrap().unwrap();
    assert_eq!(
        (r.attempts, r.due_at, r.state),
        (1, 1_000, DeliveryState::Due)
    );
    assert_eq!(
        store.delivery(dead).unwrap().unwrap().state,
        DeliveryState::Dead { at: 12 }
    );
    let rel = store.delivery(released).unwrap().unwrap();
    assert_eq!((rel.attempts, rel.due_at), (0, 5));
    assert!(store.attempts_for_delivery(released).unwrap().is_empty());

    // Settling what is not in flight is refused.
    let never = LeaseToken::new(999, 1);
    for (id, lease) in [
        (ok, ok_lease),
        (retry, retry_lease),
        (dead, dead_lease),
        (999, never),
    ] {
        let result = store.complete(lease, attempt(2, 20, "delivered"));
        assert!(
            matches!(result, Err(StoreError::UnknownDelivery(i)) if i == id),
            "{result:?}"
        );
    }
    assert!(matches!(
        store.release(retry_lease, 0),
        Err(StoreError::UnknownDelivery(_))
    ));

    // The second attempt of the retried one; history oldest first, newest first per subscription.
    let again = store.lease(1_000, 10).unwrap();
    assert_eq!(
        again.iter().map(|d| d.delivery.id).collect::<Vec<_>>(),
        [retry, released],
        "subscription 1 was leased from least recently"
    );
    store
        .complete(again[0].token, attempt(2, 1_001, "delivered"))
        .unwrap();
    store.release(again[1].token, 2_000).unwrap();
    let history = store.attempts_for_delivery(retry).unwrap();
    assert_eq!(history.iter().map(|a| a.number).collect::<Vec<_>>(), [1, 2]);
    let newest = store.attempts_for_subscription(1, 10).unwrap();
    let order: Vec<(u64, u64)> = newest.iter().map(|(id, a)| (*id, a.at)).collect();
    assert_eq!(order, [(retry, 1_001), (retry, 11), (ok, 10)]);
    assert_eq!(store.attempts_for_subscription(1, 2).unwrap().len(), 2);

    // Counts are rebuilt after a reopen.
    let before = (
        store.counts().unwrap(),
        store.subscription_counts(2).unwrap(),
    );
    drop(store);
    let store = open(dir.path());
    assert_eq!(
        (
            store.counts().unwrap(),
            store.subscription_counts(2).unwrap()
        ),
        before
    );
    // And the history, settled just before the close, is read back from disk.
    let history = store.attempts_for_delivery(retry).unwrap();
    assert_eq!(
        history.iter().map(|a| a.at).collect::<Vec<_>>(),
        [11, 1_001]
    );
    assert_eq!(store.attempts_for_subscription(1, 10).unwrap(), newest);
}

#[test]
fn ordered_subscription_sends_its_head_first_one_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store
        .enqueue(
            &[],
            vec![ordered(1, "first", 0), ordered(1, "second", 0)],
            0,
        )
        .unwrap();
    store
        .enqueue(&[], vec![delivery(2, "other", 0)], 0)
        .unwrap();
    let leased = store.lease(0, 10).unwrap();
    let events: Vec<&str> = leased
        .iter()
        .map(|d| d.delivery.event_ids[0].as_str())
        .collect();
    assert_eq!(events, ["first", "other"]);
    let head = leased[0].delivery.id;
    assert!(store.lease(0, 10).unwrap().is_empty(), "head in flight");
    // The head waits for a retry; the second is due now but must not overtake it.
    store
        .reschedule(leased[0].token, 500, attempt(1, 1, "http 500"))
        .unwrap();
    assert!(
        store.lease(100, 10).unwrap().is_empty(),
        "second overtook the head"
    );
    let retried = store.lease(500, 10).unwrap();
    assert_eq!(retried.len(), 1);
    assert_eq!(retried[0].delivery.id, head);
    store
        .complete(retried[0].token, attempt(2, 501, "delivered"))
        .unwrap();
    let next = store.lease(501, 10).unwrap();
    assert_eq!(next.len(), 1);
    assert_eq!(next[0].delivery.event_ids, ["second"]);
}

#[test]
fn held_subscription_keeps_its_deliveries_until_resumed() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store
        .enqueue(
            &[],
            vec![
                delivery(1, "a", 0),
                delivery(1, "b", 0),
                delivery(2, "c", 0),
            ],
            0,
        )
        .unwrap();
    let only_one = LeaseLimits::new(0).subscription(1, usize::MAX);
    let in_flight = store.lease_within(0, 1, &only_one).unwrap();
    assert_eq!(in_flight.len(), 1);
    store.hold_subscription(1).unwrap();
    assert_eq!(store.subscription_counts(1).unwrap().held, 1);
    let leased = store.lease(0, 10).unwrap();
    assert_eq!(
        leased
            .iter()
            .map(|d| d.delivery.subscription_id)
            .collect::<Vec<_>>(),
        [2]
    );
    store
        .complete(leased[0].token, attempt(1, 1, "delivered"))
        .unwrap();
    // The one in flight comes back held.
    store
        .reschedule(in_flight[0].token, 0, attempt(1, 1, "http 500"))
        .unwrap();
    // New deliveries for it land held.
    let receipt = store.enqueue(&[], vec![delivery(1, "d", 0)], 2).unwrap();
    assert_eq!(
        store
            .delivery(receipt.delivery_ids[0])
            .unwrap()
            .unwrap()
            .state,
        DeliveryState::Held
    );
    assert_eq!(
        store.subscription_counts(1).unwrap(),
        Counts {
            held: 3,
            ..Counts::default()
        }
    );
    assert!(store.lease(10, 10).unwrap().is_empty());
    // Held survives a reopen.
    drop(store);
    let store = open(dir.path());
    assert_eq!(store.subscription_counts(1).unwrap().held, 3);
    assert!(store.lease(10, 10).unwrap().is_empty());
    assert_eq!(store.resume_subscription(1, 20).unwrap(), 3);
    assert_eq!(store.subscription_counts(1).unwrap().due, 3);
    let resumed = store.lease(20, 10).unwrap();
    assert_eq!(resumed.len(), 3);
    // A release of a held subscription's delivery holds it too.
    store.hold_subscription(1).unwrap();
    store.release(resumed[0].token, 20).unwrap();
    assert_eq!(
        store
            .delivery(resumed[0].delivery.id)
            .unwrap()
            .unwrap()
            .state,
        DeliveryState::Held
    );
}

#[test]
fn delivery_in_flight_of_a_held_subscription_stays_held_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store.enqueue(&[], vec![delivery(1, "a", 0)], 0).unwrap();
    let leased = store.lease(0, 1).unwrap();
    store.hold_subscription(1).unwrap();
    drop(store);
    let store = open(dir.path());
    assert!(
        store.lease(10, 10).unwrap().is_empty(),
        "a held delivery was leased"
    );
    assert_eq!(
        store
            .delivery(leased[0].delivery.id)
            .unwrap()
            .unwrap()
            .state,
        DeliveryState::Held
    );
    assert_eq!(store.subscription_counts(1).unwrap().held, 1);
    assert_eq!(store.resume_subscription(1, 10).unwrap(), 1);
    assert_eq!(store.lease(10, 10).unwrap().len(), 1);
}

#[test]
fn dead_letters_are_listed_replayed_and_purged() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let new: Vec<NewDelivery> = [(1, "a"), (1, "b"), (2, "c")]
        .iter()
        .map(|(sub, e)| delivery(*sub, e, 0))
        .collect();
    store.enqueue(&[], new, 0).unwrap();
    let by_id = |mut leased: Vec<callout_store::Leased>| {
        leased.sort_by_key(|l| l.delivery.id);
        leased
    };
    for (d, at) in by_id(store.lease(0, 10).unwrap())
        .iter()
        .zip([100, 200, 300])
    {
        store
            .reschedule(d.token, 0, attempt(1, at - 50, "http 500"))
            .unwrap();
    }
    for (d, at) in by_id(store.lease(0, 10).unwrap())
        .iter()
        .zip([100, 200, 300])
    {
        store.dead_letter(d.token, attempt(2, at, "gone")).unwrap();
    }
    let events = |list: Vec<callout_store::Delivery>| -> Vec<String> {
        list.into_iter().map(|d| d.event_ids[0].clone()).collect()
    };
    assert_eq!(
        events(store.dead_letters(&DeadFilter::default()).unwrap()),
        ["a", "b", "c"]
    );
    assert_eq!(
        events(store.dead_letters(&DeadFilter::subscription(1)).unwrap()),
        ["a", "b"]
    );
    assert_eq!(
        events(
            store
                .dead_letters(&DeadFilter {
                    from_ms: 150,
                    to_ms: 300,
                    ..DeadFilter::default()
                })
                .unwrap()
        ),
        ["b"]
    );
    assert_eq!(store.counts().unwrap().dead, 3);

    // Replay sub 1's: due again, attempts reset, history kept.
    assert_eq!(
        store
            .replay_dead(&DeadFilter::subscription(1), 1_000)
            .unwrap(),
        2
    );
    assert_eq!(store.counts().unwrap().dead, 1);
    assert_eq!(store.counts().unwrap().due, 2);
    let replayed = store.lease(1_000, 10).unwrap();
    assert_eq!(replayed.len(), 2);
    assert!(replayed
        .iter()
        .all(|d| d.delivery.attempts == 0 && d.delivery.due_at <= 1_000));
    let a = replayed[0].delivery.id;
    assert_eq!(store.attempts_for_delivery(a).unwrap().len(), 2);
    // The first attempt after the replay adds to the history, not over it.
    store
        .complete(replayed[0].token, attempt(1, 1_001, "delivered"))
        .unwrap();
    let history = store.attempts_for_delivery(a).unwrap();
    let outcomes: Vec<&str> = history.iter().map(|x| x.outcome.as_str()).collect();
    assert_eq!(outcomes, ["http 500", "gone", "delivered"]);
    assert_eq!(
        store.attempts_for_subscription(1, 1).unwrap()[0].1.at,
        1_001
    );

    // Purge the rest.
    assert_eq!(store.purge_dead(&DeadFilter::default()).unwrap(), 1);
    assert!(store
        .dead_letters(&DeadFilter::default())
        .unwrap()
        .is_empty());
    assert_eq!(store.counts().unwrap().dead, 0);
    drop(store);
    let store = open(dir.path());
    assert_eq!(store.counts().unwrap().dead, 0);
    assert!(store
        .dead_letters(&DeadFilter::default())
        .unwrap()
        .is_empty());
}

#[test]
fn deliveries_in_flight_when_dropped_are_due_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let (store, leased) = two_leased(&dir);
    assert_eq!(leased.len(), 2);
    drop(store);
    let store = open(dir.path());
    assert_eq!(
        store.counts().unwrap(),
        Counts {
            due: 2,
            ..Counts::default()
        }
    );
    let again = store.lease(0, 10).unwrap();
    assert_eq!(again.len(), 2);
    assert_eq!(
        store.next_due_at().unwrap(),
        Some(300_000),
        "only leases left"
    );
}

#[test]
fn next_due_at_passes_over_deliveries_in_flight() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_with_lease(dir.path(), 1_000);
    store
        .enqueue(&[], vec![delivery(1, "a", 10), delivery(1, "b", 500)], 0)
        .unwrap();
    assert_eq!(store.next_due_at().unwrap(), Some(10));
    let leased = store.lease(10, 1).unwrap();
    assert_eq!(leased.len(), 1);
    // "a" is in flight until 1_010; "b" is next, at 500.
    assert_eq!(store.next_due_at().unwrap(), Some(500));
    store
        .complete(leased[0].token, attempt(1, 20, "delivered"))
        .unwrap();
    assert_eq!(store.next_due_at().unwrap(), Some(500));
    let b = store.lease(500, 10).unwrap();
    assert_eq!(
        store.next_due_at().unwrap(),
        Some(1_500),
        "only b's lease deadline"
    );
    assert_eq!(
        store.delivery(b[0].delivery.id).unwrap().unwrap().state,
        DeliveryState::InFlight { until: 1_500 }
    );
}

#[test]
fn expired_lease_of_a_held_subscription_comes_back_held() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_with_lease(dir.path(), 50);
    store
        .enqueue(&[], vec![delivery(1, "a", 0), delivery(2, "b", 0)], 0)
        .unwrap();
    let leased = store.lease(0, 10).unwrap();
    assert_eq!(leased.len(), 2);
    store.hold_subscription(1).unwrap();
    assert_eq!(store.subscription_counts(1).unwrap().in_flight, 1);
    let again = store.lease(100, 10).unwrap();
    let subs: Vec<u64> = again.iter().map(|d| d.delivery.subscription_id).collect();
    assert_eq!(
        subs,
        [2],
        "sub 1's expired lease is held, sub 2's is due again"
    );
    assert_eq!(store.subscription_counts(1).unwrap().held, 1);
    assert_eq!(store.resume_subscription(1, 200).unwrap(), 1);
    let third = store.lease(200, 10).unwrap();
    assert_eq!(third[0].delivery.subscription_id, 1);
    // Sub 2's lease from 100 has expired too: it was leased again at 200.
    let current = third
        .iter()
        .find(|d| d.delivery.id == leased[1].delivery.id)
        .expect("sub 2's delivery leased again");
    // A settle goes to the delivery's current lease; the expired one's token, and a second
    // settle, find none.
    assert!(matches!(
        store.complete(leased[1].token, attempt(1, 300, "delivered")),
        Err(StoreError::UnknownDelivery(_))
    ));
    assert!(matches!(
        store.complete(again[0].token, attempt(1, 300, "delivered")),
        Err(StoreError::UnknownDelivery(_))
    ));
    assert!(store
        .complete(current.token, attempt(1, 300, "delivered"))
        .is_ok());
    assert!(matches!(
        store.complete(current.token, attempt(1, 300, "delivered")),
        Err(StoreError::UnknownDelivery(_))
    ));
}

#[test]
fn prune_in_small_steps_reaches_every_subscription_and_keeps_fresh_attempts() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let new: Vec<NewDelivery> = (1..=3)
        .map(|sub| delivery(sub, &format!("e{sub}"), 0))
        .collect();
    store.enqueue(&[], new, 0).unwrap();
    for round in 0..2u32 {
        for d in store.lease(u64::from(round) * 10, 10).unwrap() {
            let at = u64::from(round) * 10 + 1;
            store
                .reschedule(d.token, 0, attempt(round + 1, at, "http 500"))
                .unwrap();
        }
    }
    let fresh_at = 40 * DAY_MS;
    for d in store.lease(fresh_at, 10).unwrap() {
        store
            .reschedule(d.token, fresh_at, attempt(3, fresh_at, "http 500"))
            .unwrap();
    }
    // Six attempts are past the 30-day retention at `fresh_at`; one per call.
    let mut removed = 0;
    for _ in 0..20 {
        removed += store.prune(fresh_at, 1).unwrap();
    }
    assert_eq!(removed, 6);
    for sub in 1..=3 {
        let left = store.attempts_for_subscription(sub, 10).unwrap();
        let numbers: Vec<u32> = left.iter().map(|(_, a)| a.number).collect();
        assert_eq!(numbers, [3], "sub {sub}");
    }
}

#[test]
fn many_leases_at_the_head_do_not_hide_the_deliveries_behind_them() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let new: Vec<NewDelivery> = (0..1_200)
        .map(|n| delivery(1, &format!("e{n}"), 0))
        .collect();
    store.enqueue(&[], new, 0).unwrap();
    // 1,100 in flight, more than one call's scan budget for max = 1 (512 entries).
    let mut in_flight = 0;
    for _ in 0..11 {
        in_flight += store.lease(0, 100).unwrap().len();
    }
    assert_eq!(in_flight, 1_100);
    let next = store.lease(0, 1).unwrap();
    assert_eq!(next.len(), 1, "the 1,101st delivery is still found");
    assert_eq!(next[0].delivery.event_ids, ["e1100"]);
}

#[test]
fn a_backlog_behind_a_refused_subscription_is_not_walked() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let backlog: Vec<NewDelivery> = (0..5_000)
        .map(|i| delivery(1, &format!("b{i}"), i))
        .collect();
    store.enqueue(&[], backlog, 0).unwrap();
    store
        .enqueue(&[], vec![delivery(2, "other", 6_000)], 0)
        .unwrap();
    // Subscription 1 is at its bound: its backlog is passed over whole.
    let limits = LeaseLimits::default().subscription(1, 0);
    let leased = store.lease_within(10_000, 10, &limits).unwrap();
    assert_eq!(leased.len(), 1);
    assert_eq!(leased[0].delivery.event_ids, ["other"]);
    assert_eq!(store.subscription_counts(1).unwrap().due, 5_000);
}

#[test]
fn retrying_counts_the_due_deliveries_that_failed_before() {
    let dir = tempfile::tempdir().unwrap();
    let (store, leased) = two_leased(&dir);
    let (failed, fine) = (leased[0].token, leased[1].token);
    store
        .reschedule(failed, 5, attempt(1, 0, "http_status: 500"))
        .unwrap();
    store.release(fine, 0).unwrap();
    let retrying =
        |s: &callout_store::SledStore| (s.counts().unwrap().due, s.counts().unwrap().retrying);
    assert_eq!(retrying(&store), (2, 1), "a fresh one is due, not retrying");
    let again = store.lease(5, 10).unwrap();
    assert_eq!(retrying(&store), (0, 0), "in flight now");
    for d in &again {
        store.release(d.token, 5).unwrap();
    }
    assert_eq!(retrying(&store), (2, 1));
    store.hold_subscription(1).unwrap();
    assert_eq!(retrying(&store), (0, 0), "held, not waiting for a retry");
    store.resume_subscription(1, 5).unwrap();
    assert_eq!(retrying(&store), (2, 1));
    assert_eq!(store.subscription_counts(1).unwrap().retrying, 1);
    drop(store);
    let store = open(dir.path());
    assert_eq!(retrying(&store), (2, 1), "rebuilt on open");
}

/// A store with two deliveries of subscription 1, both leased at 0.
fn two_leased(dir: &tempfile::TempDir) -> (callout_store::SledStore, Vec<callout_store::Leased>) {
    let store = open(dir.path());
    store
        .enqueue(&[], vec![delivery(1, "a", 0), delivery(1, "b", 0)], 0)
        .unwrap();
    let leased = store.lease(0, 10).unwrap();
    (store, leased)
}

#[test]
fn event_ids_of_concurrent_publishes_expire_together_and_not_before() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(open(dir.path()));
    let start = Arc::new(Barrier::new(8));
    let writers: Vec<_> = (0..8u64)
        .map(|t| {
            let (store, start) = (Arc::clone(&store), Arc::clone(&start));
            std::thread::spawn(move || {
                start.wait();
                for i in 0..20u64 {
                    let id = format!("t{t}-{i}");
                    let at = 1_000 + i;
                    store
                        .enqueue(std::slice::from_ref(&id), vec![delivery(1, &id, 0)], at)
                        .unwrap();
                }
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    let ids: Vec<String> = (0..8)
        .flat_map(|t| (0..20).map(move |i| format!("t{t}-{i}")))
        .collect();
    // Within retention of the latest sighting nothing is forgotten, whatever group it was in.
    assert_eq!(store.prune(1_000 + DAY_MS, 10_000).unwrap(), 0);
    let again = store.enqueue(&ids, vec![], 1_000 + DAY_MS - 1).unwrap();
    assert_eq!(again.duplicate_event_ids.len(), 160);
    // Past it, every id is forgotten exactly once.
    let later = 1_000 + 20 + DAY_MS + 1;
    assert_eq!(store.prune(later, 10_000).unwrap(), 160);
    assert_eq!(store.prune(later, 10_000).unwrap(), 0);
    let fresh = store.enqueue(&ids, vec![], later).unwrap();
    assert!(fresh.duplicate_event_ids.is_empty());
}

#[test]
fn a_batch_of_long_attempts_reads_back_whole_from_several_records() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let batch: Vec<NewDelivery> = (0..200)
        .map(|i| delivery(1 + i % 2, &format!("e{i}"), 10))
        .collect();
    let ids = store.enqueue(&[], batch, 10).unwrap().delivery_ids;
    let leased = store.lease(10, 1_000).unwrap();
    assert_eq!(leased.len(), 200);
    // Each excerpt is cut to 1,024 characters, 2 bytes each: about 2 KiB an attempt, so one
    // subscription's 100 attempts of this one batch take several records.
    assert_eq!(
        leased.iter().map(|l| l.delivery.id).collect::<Vec<_>>(),
        ids
    );
    for (i, lease) in leased.iter().enumerate() {
        let mut attempt = attempt(1, 100 + i as u64, "http 500");
        attempt.excerpt = format!("{i:04}{}", "é".repeat(1_500));
        store.reschedule(lease.token, 1_000, attempt).unwrap();
    }
    for (i, id) in ids.iter().enumerate() {
        let history = store.attempts_for_delivery(*id).unwrap();
        assert_eq!(history.len(), 1, "delivery {id}");
        assert_eq!(history[0].at, 100 + i as u64);
        assert!(history[0].excerpt.starts_with(&format!("{i:04}")));
        assert_eq!(history[0].excerpt.chars().count(), 1_024);
    }
    for sub in [1, 2] {
        let newest = store.attempts_for_subscription(sub, 1_000).unwrap();
        let at: Vec<u64> = newest.iter().map(|(_, a)| a.at).collect();
        let expected: Vec<u64> = (0..200u64)
            .filter(|i| 1 + i % 2 == sub)
            .map(|i| 100 + i)
            .rev()
            .collect();
        assert_eq!(at, expected, "subscription {sub}");
        let five = store.attempts_for_subscription(sub, 5).unwrap();
        assert_eq!(five[..], newest[..5]);
    }
    // All of them go with their records and pointers.
    assert_eq!(store.prune(300 + 31 * DAY_MS, 1_000).unwrap(), 200);
    assert!(ids
        .iter()
        .all(|id| store.attempts_for_delivery(*id).unwrap().is_empty()));
}

#[test]
fn prune_keeps_at_most_the_configured_attempts_per_subscription_across_reopens() {
    let dir = tempfile::tempdir().unwrap();
    let config = || callout_store::StoreConfig {
        attempts_kept: 5,
        ..callout_store::StoreConfig::default()
    };
    let batch_of_five = |store: &callout_store::SledStore, round: u64| {
        let batch = (0..5)
            .map(|n| delivery(1, &format!("r{round}-{n}"), 0))
            .chain([delivery(2, &format!("other{round}"), 0)])
            .collect();
        store.enqueue(&[], batch, 0).unwrap();
        for leased in store.lease(round * 100, 10).unwrap() {
            let at = round * 100 + leased.delivery.id;
            store
                .complete(leased.token, attempt(1, at, "delivered"))
                .unwrap();
        }
        // One settle batch, so one attempt record, per round.
        store.flush().unwrap();
    };
    let store = callout_store::SledStore::open(dir.path(), config()).unwrap();
    for round in 1..=4 {
        batch_of_five(&store, round);
    }
    assert_eq!(store.attempts_for_subscription(1, 100).unwrap().len(), 20);
    // Nothing is past the 30-day retention: only the count bounds them, oldest first.
    assert_eq!(store.prune(1_000, 100).unwrap(), 15);
    let kept = store.attempts_for_subscription(1, 100).unwrap();
    assert_eq!(kept.len(), 5);
    assert!(kept.iter().all(|(_, a)| a.at > 400), "the newest round");
    assert_eq!(store.attempts_for_subscription(2, 100).unwrap().len(), 4);
    drop(store);
    let store = callout_store::SledStore::open(dir.path(), config()).unwrap();
    batch_of_five(&store, 5);
    assert_eq!(
        store.prune(1_000, 100).unwrap(),
        5,
        "the count survived the reopen"
    );
    let kept = store.attempts_for_subscription(1, 100).unwrap();
    assert!(kept.iter().all(|(_, a)| a.at > 500));
}
