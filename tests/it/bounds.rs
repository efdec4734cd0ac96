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

/// An event of `bytes` bytes as compact JSON, the measure of the limits.
fn sized(bytes: usize) -> Event {
    let bare = Event::created("Contact", "1").data(json!({ "v": "" }));
    let around = serde_json::to_vec(&bare).unwrap().len();
    Event::created("Contact", "1").data(json!({ "v": "x".repeat(bytes - around) }))
}

#[test]
fn an_event_over_the_limit_is_refused_and_nothing_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let limits = PublishLimits {
        event_bytes: 200,
        ..PublishLimits::default()
    };
    let engine = engine(&dir, limits);
    engine.publish(sized(200)).expect("at the limit");
    let refused = engine.publish_batch(vec![sized(100), sized(201)]);
    assert!(
        matches!(
            refused,
            Err(Error::EventTooLarge {
                index: 1,
                bytes: 201,
                max: 200
            })
        ),
        "{refused:?}"
    );
    // Every part of the event counts: `previous`, the related record, the strings.
    let with_previous = sized(150).previous(json!({ "v": "y".repeat(60) }));
    assert!(matches!(
        engine.publish(with_previous),
        Err(Error::EventTooLarge { index: 0, .. })
    ));
    let mut related = sized(150);
    related.related = Some(callout::core::Related {
        entity: "Company".into(),
        id: "x".repeat(60),
        data: json!({}),
    });
    assert!(matches!(
        engine.publish(related),
        Err(Error::EventTooLarge { index: 0, .. })
    ));
    assert_eq!(
        engine.stats().unwrap().due,
        1,
        "only the first publish stored"
    );
    let message = engine.publish(sized(5_000)).unwrap_err().to_string();
    assert!(message.contains("at most 200"), "{message}");
}

#[test]
fn a_batch_over_its_count_or_size_is_refused_whole() {
    let dir = tempfile::tempdir().unwrap();
    let limits = PublishLimits {
        event_bytes: 1_000,
        batch_events: 3,
        batch_bytes: 600,
    };
    let engine = engine(&dir, limits);
    let four = (0..4).map(|_| sized(100)).collect();
    assert!(matches!(
        engine.publish_batch(four),
        Err(Error::TooManyEvents { count: 4, max: 3 })
    ));
    let refused = engine.publish_batch(vec![sized(200), sized(200), sized(201)]);
    assert!(
        matches!(refused, Err(Error::BatchTooLarge { max: 600, .. })),
        "{refused:?}"
    );
    assert_eq!(engine.stats().unwrap().due, 0, "all or nothing");
    let receipt = engine
        .publish_batch(vec![sized(200), sized(200), sized(200)])
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
