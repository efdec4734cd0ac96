//! LISTEN/NOTIFY between engines on one schema: a subscription created, changed or deleted
//! through one engine is matched accordingly by another's publish within a second, and an idle
//! engine sends another's publish at once, not at its next poll.

use std::sync::Arc;
use std::time::{Duration, Instant};

use callout::{Engine, Event, Subscription};
use callout_testkit::Receiver;

use crate::support::Schema;

const LEASE: Duration = Duration::from_secs(300);
/// What the issue allows for a change to reach every instance.
const WITHIN: Duration = Duration::from_secs(1);

/// Publishes `event` through `engine` until `wanted` says its receipt is right, for `WITHIN`
/// at most; returns how long that took, or `None`. The events are otherwise harmless: they
/// match nothing, or are delivered to the test's receiver.
fn publish_until(
    engine: &Engine,
    event: impl Fn() -> Event,
    wanted: impl Fn(usize) -> bool,
) -> Option<Duration> {
    let started = Instant::now();
    while started.elapsed() < WITHIN {
        let receipt = engine.publish(event()).expect("publish");
        if wanted(receipt.deliveries.len()) {
            return Some(started.elapsed());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    None
}

#[test]
fn subscriptions_created_changed_and_deleted_through_one_engine_are_matched_by_another_within_a_second(
) {
    let schema = Schema::new();
    let receiver = Receiver::ok();
    let a = Engine::builder(Arc::new(schema.open(LEASE)))
        .allow_address("127.0.0.1")
        .open()
        .expect("A opens");
    let b = Engine::builder(Arc::new(schema.open(LEASE)))
        .deliver(false)
        .open()
        .expect("B opens");
    let contact = || Event::created("Contact", "1");
    let deal = || Event::created("Deal", "1");
    assert!(b.publish(contact()).expect("publish").deliveries.is_empty());

    let created = a
        .subscriptions()
        .create(Subscription::new(format!("{}/hook", receiver.url)).events(["contact.*"]))
        .expect("create through A");
    let took = publish_until(&b, contact, |n| n == 1);
    assert!(
        took.is_some(),
        "B matches A's new subscription within {WITHIN:?}"
    );

    let mut changed = created.clone();
    changed.events = vec!["deal.*".to_string()];
    a.subscriptions().update(changed).expect("update through A");
    let took = publish_until(&b, deal, |n| n == 1);
    assert!(
        took.is_some(),
        "B matches A's changed events within {WITHIN:?}"
    );
    assert!(
        b.publish(contact()).expect("publish").deliveries.is_empty(),
        "the old events no longer match in B"
    );

    a.subscriptions()
        .delete(created.id)
        .expect("delete through A");
    let took = publish_until(&b, deal, |n| n == 0);
    assert!(
        took.is_some(),
        "B drops A's deleted subscription within {WITHIN:?}"
    );
    a.shutdown(Duration::from_secs(5)).expect("shutdown");
    b.shutdown(Duration::from_secs(5)).expect("shutdown");
}

#[test]
fn an_idle_engine_sends_another_engines_publish_at_once_not_at_its_next_poll() {
    let schema = Schema::new();
    let receiver = Receiver::ok();
    // B delivers and polls every 10 s: only A's notice can make it lease sooner.
    let b = Engine::builder(Arc::new(schema.open(LEASE)))
        .allow_address("127.0.0.1")
        .poll_interval(Duration::from_secs(10))
        .workers(2)
        .open()
        .expect("B opens");
    let a = Engine::builder(Arc::new(schema.open(LEASE)))
        .deliver(false)
        .open()
        .expect("A opens");
    a.subscriptions()
        .create(Subscription::new(format!("{}/hook", receiver.url)).events(["contact.*"]))
        .expect("create through A");
    for n in 1..=3u64 {
        // Until B's last delivery is settled, and a moment more, so its workers and
        // dispatcher are back in their waits (the dispatcher's is 10 s) when A publishes.
        let settled = Instant::now() + Duration::from_secs(10);
        while b.stats().expect("stats").delivered < n - 1 && Instant::now() < settled {
            std::thread::sleep(Duration::from_millis(10));
        }
        std::thread::sleep(Duration::from_millis(200));
        let published = Instant::now();
        a.publish(Event::created("Contact", n.to_string()))
            .expect("publish through A");
        let got = receiver.wait_for("/hook", n as usize, Duration::from_secs(5));
        let took = published.elapsed();
        assert_eq!(got.len(), n as usize, "B delivered A's publish {n}");
        assert!(took < WITHIN, "publish {n} took {took:?} to arrive");
    }
    a.shutdown(Duration::from_secs(5)).expect("shutdown");
    b.shutdown(Duration::from_secs(5)).expect("shutdown");
}
