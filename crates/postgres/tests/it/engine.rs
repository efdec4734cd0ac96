//! The engine on PostgreSQL: a host calling `publish` from async code (inside a tokio runtime,
//! where the `postgres` client alone would panic) gets its deliveries sent, and a lease too
//! short for the engine's request timeouts is refused when the engine opens, and an engine
//! runs the backend's preferred number of workers.

use std::sync::Arc;
use std::time::Duration;

use callout::{Engine, Event, Subscription};
use callout_testkit::{Hold, RawReceiver, Receiver};

use crate::support::Schema;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_from_inside_a_tokio_runtime_is_stored_and_delivered() {
    let schema = Schema::new();
    let receiver = Receiver::ok();
    let store = schema.open(Duration::from_secs(300));
    let engine = Engine::builder(Arc::new(store))
        .allow_address("127.0.0.1")
        .workers(2)
        .open()
        .expect("the engine opens");
    engine
        .subscriptions()
        .create(Subscription::new(format!("{}/hook", receiver.url)).events(["contact.*"]))
        .expect("create");
    for n in 0..3 {
        let receipt = engine
            .publish(Event::created("Contact", n.to_string()))
            .expect("publish from an async task");
        assert_eq!(receipt.deliveries.len(), 1);
    }
    let got = receiver.wait_for("/hook", 3, Duration::from_secs(20));
    assert_eq!(got.len(), 3, "every delivery arrives");
    engine.shutdown(Duration::from_secs(5)).expect("shutdown");
}

#[test]
fn a_lease_shorter_than_the_request_timeouts_is_refused_when_the_engine_opens() {
    let schema = Schema::new();
    // The default timeouts allow a request 65 s (connect, send twice, response, body).
    let store = schema.open(Duration::from_secs(60));
    let refused = Engine::builder(Arc::new(store)).deliver(false).open();
    match refused {
        Err(callout::Error::Store(callout::store::StoreError::LeaseTooShort {
            lease,
            request,
        })) => assert_eq!(
            (lease, request),
            (Duration::from_secs(60), Duration::from_secs(65))
        ),
        Err(other) => panic!("expected LeaseTooShort, got {other:?}"),
        Ok(_) => panic!("expected LeaseTooShort, the engine opened"),
    }
    let timeouts = callout::deliver::Timeouts::all(Duration::from_secs(5));
    let store = schema.open(Duration::from_secs(60));
    Engine::builder(Arc::new(store))
        .deliver(false)
        .timeouts(timeouts)
        .open()
        .expect("a lease longer than every request opens");
}

#[test]
fn an_instance_sends_deliveries_of_a_subscription_another_created_after_it_opened() {
    let schema = Schema::new();
    let receiver = Receiver::ok();
    let lease = Duration::from_secs(300);
    // B delivers; A only publishes, and creates the subscription once B is running.
    let b = Engine::builder(Arc::new(schema.open(lease)))
        .allow_address("127.0.0.1")
        .workers(2)
        .open()
        .expect("B opens");
    let a = Engine::builder(Arc::new(schema.open(lease)))
        .deliver(false)
        .open()
        .expect("A opens");
    a.subscriptions()
        .create(Subscription::new(format!("{}/hook", receiver.url)).events(["contact.*"]))
        .expect("create through A");
    a.publish(Event::created("Contact", "1"))
        .expect("publish through A");
    let got = receiver.wait_for("/hook", 1, Duration::from_secs(20));
    assert_eq!(
        got.len(),
        1,
        "B sent it rather than dead-letter it as an orphan"
    );
    assert_eq!(b.stats().expect("stats").dead, 0);
    a.shutdown(Duration::from_secs(5)).expect("shutdown");
    b.shutdown(Duration::from_secs(5)).expect("shutdown");
}

#[test]
fn an_engine_on_postgres_runs_thirty_two_workers_unless_told() {
    let schema = Schema::new();
    // Each request is kept until released (at most 10 s, within the default response
    // timeout), so the requests held at one moment are the workers sending at once.
    let hold = Hold::new(Duration::from_secs(10));
    let receiver = RawReceiver::holding(Arc::clone(&hold));
    let engine = Engine::builder(Arc::new(schema.open(Duration::from_secs(300))))
        .allow_address("127.0.0.1")
        .open()
        .expect("the engine opens");
    // One delivery each to 40 subscriptions: a subscription's pace starts at one in flight,
    // so only the worker count bounds how many go at once.
    for n in 0..40 {
        engine
            .subscriptions()
            .create(Subscription::new(format!("{}/s{n}", receiver.url)).events(["contact.*"]))
            .expect("create");
    }
    hold.start();
    engine
        .publish(Event::created("Contact", "1"))
        .expect("publish");
    let all = hold.wait_held(32, Duration::from_secs(20));
    let held = hold.held();
    hold.release();
    assert!(all, "32 workers sending at once; held {held}");
    assert!(held <= 32, "no more than 32 at once: {held}");
    assert_eq!(receiver.wait_count(40, Duration::from_secs(20)), 40);
    engine.shutdown(Duration::from_secs(5)).expect("shutdown");
}
