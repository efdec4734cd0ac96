//! History stays within its bounds while the engine is busy: the dispatcher prunes a slice at a
//! time, and slices follow each other while there is more, so a subscription's attempts come
//! down to `StoreConfig::attempts_kept` soon after a burst, not at the next minute's slice.

use std::time::Duration;

use callout::store::{SledStore, StoreConfig};
use callout::{Engine, Event, Subscription};
use callout_testkit::{Receiver, Reply};

const KEPT: u64 = 500;
const DELIVERIES: u64 = 8_000;

#[test]
fn attempts_past_a_subscriptions_bound_are_pruned_soon_after_a_burst() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = StoreConfig {
        attempts_kept: KEPT,
        ..StoreConfig::default()
    };
    let store = SledStore::open(dir.path().join("store"), config).expect("store opens");
    let receiver = Receiver::start(|_, _| Reply::status(200));
    let engine = Engine::builder(store)
        .allow_address("127.0.0.1")
        .poll_interval(Duration::from_millis(5))
        .open()
        .expect("the engine opens");
    let sub = engine
        .subscriptions()
        .create(Subscription::new(format!("{}/hook", receiver.url)).events(["contact.*"]))
        .expect("create");
    for batch in 0..DELIVERIES / 1_000 {
        let events = (0..1_000)
            .map(|n| Event::created("Contact", (batch * 1_000 + n).to_string()))
            .collect();
        engine.publish_batch(events).expect("publish");
    }
    let delivered = crate::wait_until(Duration::from_secs(60), || {
        engine.stats().is_ok_and(|s| s.delivered == DELIVERIES)
    });
    assert!(delivered, "every delivery arrived: {:?}", engine.stats());
    // 8,000 attempts were made; within seconds at most 500 are left. One slice a minute, the
    // first before the burst, would leave them all there for a minute.
    let kept = || {
        engine
            .subscription_attempts(sub.id, DELIVERIES as usize)
            .expect("attempts")
            .len() as u64
    };
    let pruned = crate::wait_until(Duration::from_secs(30), || kept() <= KEPT);
    assert!(pruned, "{} attempts kept, {KEPT} allowed", kept());
    assert!(kept() > 0, "the newest are kept");
    engine.shutdown(Duration::from_secs(5)).expect("shutdown");
}
