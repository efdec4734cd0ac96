//! Bounds on what a publisher hands in: oversized events and batches, and events without a
//! name, are refused with typed errors before anything is stored.

use callout::{Engine, Error, Event, PublishLimits, Subscription};
use serde_json::json;

fn engine(dir: &tempfile::TempDir, limits: PublishLimits) -> Engine {
    let engine = Engine::builder(dir.path().join("store"))
        .deliver(false)
        .publish_limits(limits)
        .open()
        .unwrap();
    engine
        .subscriptions()
        .create(Subscription::new("https://receiver.example/hook").events(["*"]))
        .unwrap();
    engine
}

fn sized(bytes: usize) -> Event {
    // `{"v":"…"}` is 8 bytes around the string.
    Event::created("Contact", "1").data(json!({ "v": "x".repeat(bytes - 8) }))
}

#[test]
fn an_event_over_the_limit_is_refused_and_nothing_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let limits = PublishLimits {
        event_bytes: 100,
        ..PublishLimits::default()
    };
    let engine = engine(&dir, limits);
    engine.publish(sized(100)).expect("at the limit");
    let refused = engine.publish_batch(vec![sized(10), sized(101)]);
    assert!(
        matches!(
            refused,
            Err(Error::EventTooLarge {
                index: 1,
                bytes: 101,
                max: 100
            })
        ),
        "{refused:?}"
    );
    // `previous` counts with `data`.
    let with_previous = sized(60).previous(json!({ "v": "y".repeat(40) }));
    assert!(matches!(
        engine.publish(with_previous),
        Err(Error::EventTooLarge { index: 0, .. })
    ));
    assert_eq!(
        engine.stats().unwrap().due,
        1,
        "only the first publish stored"
    );
    let message = engine.publish(sized(5_000)).unwrap_err().to_string();
    assert!(message.contains("at most 100"), "{message}");
}

#[test]
fn a_batch_over_its_count_or_size_is_refused_whole() {
    let dir = tempfile::tempdir().unwrap();
    let limits = PublishLimits {
        event_bytes: 1_000,
        batch_events: 3,
        batch_bytes: 250,
    };
    let engine = engine(&dir, limits);
    let four = (0..4).map(|_| sized(10)).collect();
    assert!(matches!(
        engine.publish_batch(four),
        Err(Error::TooManyEvents { count: 4, max: 3 })
    ));
    let refused = engine.publish_batch(vec![sized(100), sized(100), sized(100)]);
    assert!(
        matches!(refused, Err(Error::BatchTooLarge { max: 250, .. })),
        "{refused:?}"
    );
    assert_eq!(engine.stats().unwrap().due, 0, "all or nothing");
    let receipt = engine
        .publish_batch(vec![sized(100), sized(100), sized(50)])
        .expect("at the limit");
    assert_eq!(receipt.event_ids.len(), 3);
    assert!(engine.stats().unwrap().due >= 1);
}

#[test]
fn an_event_without_an_entity_or_action_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(&dir, PublishLimits::default());
    let no_entity = engine.publish_batch(vec![
        Event::created("Contact", "1"),
        Event::created("  ", "2"),
    ]);
    assert!(matches!(
        no_entity,
        Err(Error::EmptyEventName {
            index: 1,
            part: "entity"
        })
    ));
    assert!(matches!(
        engine.publish(Event::new("Contact", "", "3")),
        Err(Error::EmptyEventName {
            index: 0,
            part: "action"
        })
    ));
    assert_eq!(engine.stats().unwrap().due, 0);
}
