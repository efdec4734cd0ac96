//! Completes on PostgreSQL, which go in groups through one thread of the store: a group keeps
//! the counts, ordered heads and failure streaks right, an answer a receiver sent with a NUL
//! in it is recorded, and a subscription row held by someone else delays only its own
//! completes, not the others'.

use std::sync::Arc;
use std::time::Duration;

use callout_store::conformance::{attempt, delivery};
use callout_store::{History, Queue, Tallies};

use crate::support::{RowHold, Schema};

const LEASE: Duration = Duration::from_secs(300);

#[test]
fn completes_from_many_threads_free_ordered_heads_and_end_streaks() {
    let schema = Schema::new();
    let store = Arc::new(schema.open(LEASE));
    // Subscriptions 1-4 get two ordered deliveries each, 5 six unordered ones.
    let mut batch = Vec::new();
    for sub in 1..=4 {
        for n in 0..2 {
            let mut ordered = delivery(sub, &format!("o{sub}-{n}"), 0);
            ordered.ordered = true;
            batch.push(ordered);
        }
    }
    batch.extend((0..6).map(|n| delivery(5, &format!("u{n}"), 0)));
    store.enqueue(&[], batch, 0).expect("enqueue");
    for sub in 1..=5 {
        store.count_failure(sub, 1, false).expect("count");
        store.count_failure(sub, 2, false).expect("count");
    }
    let leased = store.lease(10, 100).expect("lease");
    assert_eq!(leased.len(), 10, "each ordered head and the six unordered");
    let completers: Vec<_> = leased
        .into_iter()
        .map(|lease| {
            let store = Arc::clone(&store);
            std::thread::spawn(move || store.complete(lease.token, attempt(1, 11, "delivered")))
        })
        .collect();
    for completer in completers {
        completer.join().expect("completer").expect("complete");
    }
    let counts = store.counts().expect("counts");
    assert_eq!((counts.delivered, counts.in_flight, counts.due), (10, 0, 4));
    let next = store.lease(20, 100).expect("lease");
    let mut subs: Vec<u64> = next.iter().map(|l| l.delivery.subscription_id).collect();
    subs.sort_unstable();
    assert_eq!(
        subs,
        [1, 2, 3, 4],
        "each ordered subscription's second goes once the first is done"
    );
    for sub in 1..=5 {
        let streak = store.count_failure(sub, 30, false).expect("count");
        assert_eq!(
            streak.attempts, 1,
            "subscription {sub}'s streak ended by its complete"
        );
    }
}

#[test]
fn an_answer_with_a_nul_in_it_is_recorded() {
    let schema = Schema::new();
    let store = schema.open(LEASE);
    store
        .enqueue(&[], vec![delivery(1, "a", 0)], 0)
        .expect("enqueue");
    let leased = store.lease(0, 1).expect("lease");
    let mut answer = attempt(1, 1, "delivered");
    answer.excerpt = "ok\0then".into();
    store
        .complete(leased[0].token, answer)
        .expect("PostgreSQL text takes no NUL, so callout replaces it");
    let kept = store
        .attempts_for_delivery(leased[0].delivery.id)
        .expect("attempts");
    assert_eq!(kept.len(), 1);
    assert_eq!(kept[0].excerpt, "ok\u{FFFD}then");
    assert_eq!(store.counts().expect("counts").delivered, 1);
}

#[test]
fn a_held_subscription_row_delays_only_its_own_completes() {
    let schema = Schema::new();
    let store = Arc::new(schema.open(LEASE));
    store
        .enqueue(&[], vec![delivery(1, "a", 0), delivery(2, "b", 0)], 0)
        .expect("enqueue");
    let leased = store.lease(0, 2).expect("lease");
    let token_of = |sub: u64| {
        leased
            .iter()
            .find(|l| l.delivery.subscription_id == sub)
            .expect("leased")
            .token
    };
    let (held_token, free_token) = (token_of(1), token_of(2));
    // A transaction of the test holds subscription 1's row, as a long hold or replay would.
    let held = RowHold::take(&schema, 1);
    let waiting = {
        let store = Arc::clone(&store);
        std::thread::spawn(move || store.complete(held_token, attempt(1, 1, "delivered")))
    };
    let blocked = held.waited_for(Duration::from_secs(10));
    assert!(blocked, "the complete of 1 waits for its row");
    // Subscription 2's complete returns while 1's row is still held: within the 10 s bound,
    // after which the row is let go either way so the test cannot hang.
    let (done, answered) = crossbeam_channel::bounded(1);
    let free = {
        let store = Arc::clone(&store);
        std::thread::spawn(move || {
            let _ = done.send(store.complete(free_token, attempt(1, 1, "delivered")));
        })
    };
    let free_answer = answered.recv_timeout(Duration::from_secs(10));
    held.release();
    free.join().expect("free completer");
    assert!(
        matches!(free_answer, Ok(Ok(()))),
        "2's complete went while 1's row was held: {free_answer:?}"
    );
    waiting
        .join()
        .expect("waiting completer")
        .expect("1's complete goes once its row is let go");
    assert_eq!(store.counts().expect("counts").delivered, 2);
}
