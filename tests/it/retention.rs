//! History stays within its bounds while the engine is busy: the dispatcher prunes a slice at a
//! time, and slices follow each other while there is more, so a subscription's attempts come
//! down to `StoreConfig::attempts_kept` soon after a burst, not at the next minute's slice.
//! And the sled store's files come back down: a busy engine's store compacts itself.

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

#[test]
fn a_busy_engines_store_compacts_itself_and_keeps_delivering() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("store");
    let receiver = Receiver::start(|_, _| Reply::status(200));
    // A small headroom, and few attempts kept (they count as live, 128 B each), so that this
    // many deliveries outgrow it whatever sled reuses; short queues only.
    let config = StoreConfig {
        attempts_kept: 100,
        compact_headroom: 1024 * 1024,
        compact_max_queued: 2_000,
        ..StoreConfig::default()
    };
    let store = SledStore::open(&path, config).expect("store opens");
    let engine = Engine::builder(store)
        .allow_address("127.0.0.1")
        .poll_interval(Duration::from_millis(5))
        .open()
        .expect("the engine opens");
    engine
        .subscriptions()
        .create(Subscription::new(format!("{}/hook", receiver.url)).events(["contact.*"]))
        .expect("create");
    let compacted = || {
        std::fs::read_dir(&path)
            .unwrap()
            .flatten()
            .any(|e| e.file_name().to_string_lossy().starts_with("gen-"))
    };
    // Publish in bursts while the engine delivers, until a compaction has happened and then
    // one burst more: every event of every burst arrives, those published around the
    // compaction too. Bounded: 40 bursts.
    let mut published = 0;
    let mut bursts_after = None;
    for burst in 0..40u64 {
        let events = (0..1_000)
            .map(|n| Event::created("Contact", (burst * 1_000 + n).to_string()))
            .collect();
        engine.publish_batch(events).expect("publish");
        published += 1_000;
        let delivered = crate::wait_until(Duration::from_secs(60), || {
            engine.stats().is_ok_and(|s| s.delivered == published)
        });
        assert!(delivered, "burst {burst} delivered: {:?}", engine.stats());
        if bursts_after.is_none() && compacted() {
            bursts_after = Some(burst);
        }
        if bursts_after.is_some_and(|at| burst > at) {
            break;
        }
    }
    assert!(
        bursts_after.is_some(),
        "no compaction in {published} deliveries"
    );
    assert!(!path.join("db").exists(), "the first generation is removed");
    assert_eq!(receiver.received().len() as u64, published);
    engine.shutdown(Duration::from_secs(5)).expect("shutdown");
    drop(engine);
    // Reopened, it carries on from the compacted generation.
    let store = SledStore::open(&path, StoreConfig::default()).expect("reopens");
    assert_eq!(
        callout::store::Queue::counts(&store).expect("counts").due,
        0
    );
}
