//! One owner per job: only the dispatcher leases (and only when the engine delivers), and every
//! change of a subscription goes through the registry, which changes only what it means to.

use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use callout::{Engine, Event, State, Subscription};

use callout_testkit::{Receiver, Reply};

use crate::wait_until;

const WAIT: Duration = Duration::from_secs(10);

/// The CLI opens engines with `.deliver(false)` for every command but `run`: a deactivation job
/// (deleting a subscription with a `deactivation_url`) must not start sending the queue.
#[test]
fn an_engine_that_does_not_deliver_sends_nothing_when_a_deactivation_runs() {
    let dir = tempfile::tempdir().unwrap();
    let deactivation = Receiver::ok();
    let target = Receiver::ok();
    let engine = Engine::builder(dir.path().join("store"))
        .allow_address("127.0.0.1")
        .poll_interval(Duration::from_millis(5))
        .deliver(false)
        .open()
        .unwrap();
    let leaving = engine
        .subscriptions()
        .create(
            Subscription::new(format!("{}/leaving", target.url))
                .events(["deal.closed"])
                .deactivation_url(format!("{}/gone", deactivation.url)),
        )
        .unwrap();
    engine
        .subscriptions()
        .create(Subscription::new(format!("{}/queued", target.url)).events(["contact.*"]))
        .unwrap();
    engine.publish(Event::created("Contact", "1")).unwrap();
    assert_eq!(engine.stats().unwrap().due, 1);

    engine.subscriptions().delete(leaving.id).unwrap();
    assert_eq!(
        deactivation.wait_for("/gone", 1, WAIT).len(),
        1,
        "the deactivation URL is still called"
    );
    // Nothing is the point here: a worker that leased after its deactivation job sent the
    // queued delivery within milliseconds on loopback; a second is hundreds of times that.
    let sent = target.wait_for("/queued", 1, Duration::from_secs(1));
    engine.shutdown(Duration::from_secs(5)).unwrap();
    assert!(sent.is_empty(), "a non-delivering engine sent {sent:?}");
    let stats = engine.stats().unwrap();
    assert_eq!((stats.due, stats.in_flight, stats.delivered), (1, 0, 0));
}

/// A delivery that ends in 410 switches its subscription off; a rename the host made while that
/// delivery was in flight must survive the switch-off.
#[test]
fn a_switch_off_keeps_the_edits_made_while_its_delivery_was_in_flight() {
    let dir = tempfile::tempdir().unwrap();
    // The receiver holds its answer (410) until the test has renamed the subscription.
    let (release, held) = mpsc::channel::<()>();
    let held = Arc::new(Mutex::new(held));
    let (arrived_tx, arrived) = mpsc::channel::<()>();
    let arrived_tx = Mutex::new(arrived_tx);
    let target = Receiver::start(move |_, _| {
        let _ = arrived_tx.lock().unwrap().send(());
        let _ = held.lock().unwrap().recv_timeout(WAIT);
        Reply::status(410)
    });
    let engine = Engine::builder(dir.path().join("store"))
        .allow_address("127.0.0.1")
        .poll_interval(Duration::from_millis(5))
        .open()
        .unwrap();
    let sub = engine
        .subscriptions()
        .create(
            Subscription::new(format!("{}/hook", target.url))
                .name("before")
                .events(["contact.*"]),
        )
        .unwrap();
    engine.publish(Event::created("Contact", "1")).unwrap();
    arrived
        .recv_timeout(WAIT)
        .expect("the delivery is in flight");

    let mut renamed = engine.subscriptions().get(sub.id).unwrap().unwrap();
    renamed.name = "after".into();
    engine.subscriptions().update(renamed).unwrap();
    release.send(()).unwrap();

    assert!(
        wait_until(WAIT, || engine
            .subscriptions()
            .get(sub.id)
            .unwrap()
            .is_some_and(|s| s.state == State::Stopped)),
        "the 410 stops the subscription"
    );
    let stored = engine.subscriptions().get(sub.id).unwrap().unwrap();
    assert_eq!(stored.name, "after", "the host's rename was reverted");
    assert_eq!(stored.state, State::Stopped);
    // The matcher holds the same record as the store.
    let explained = engine.explain(&Event::created("Contact", "2")).unwrap();
    assert!(explained.iter().any(|(id, _)| *id == sub.id));
    assert_eq!(engine.stats().unwrap().dead, 1);
}
