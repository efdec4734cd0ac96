//! Wire fidelity (issue 19): what a receiver written from the Standard Webhooks documentation
//! meets, message by message.

use std::collections::HashSet;
use std::time::Duration;

use callout::core::{autotask_event_patterns, Profile};
use callout::{Engine, Event, Subscription};
use callout_testkit::Receiver;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(10);

fn engine(dir: &tempfile::TempDir) -> Engine {
    Engine::builder(dir.path().join("store"))
        // Small store memory: a lease reads every delivery back from sled.
        .cache_capacity(8 * 1024 * 1024)
        .fresh_capacity(0)
        .allow_address("127.0.0.1")
        .poll_interval(Duration::from_millis(5))
        .open()
        .unwrap()
}

fn standard(receiver: &Receiver, path: &str) -> Subscription {
    Subscription::new(format!("{}{path}", receiver.url))
        .events(["*"])
        .secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
}

#[test]
fn a_bulk_publish_reaches_a_standard_receiver_as_one_message_per_event() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::ok();
    let engine = engine(&dir);
    engine
        .subscriptions()
        .create(standard(&receiver, "/one"))
        .unwrap();
    let events = vec![
        Event::created("Contact", "1").data(json!({"name": "A"})),
        Event::created("Contact", "2").data(json!({"name": "B"})),
        Event::deleted("Ticket", "3"),
    ];
    let receipt = engine.publish_batch(events).unwrap();
    assert_eq!(receipt.deliveries.len(), 3, "a delivery per event");
    let got = receiver.wait_for("/one", 3, WAIT);
    let mut seen: Vec<(String, String)> = got
        .iter()
        .map(|r| {
            let body = r.json();
            assert!(
                body["data"].is_object(),
                "data is the event's object: {body}"
            );
            assert_eq!(
                body.as_object().unwrap().keys().collect::<Vec<_>>(),
                ["data", "timestamp", "type"]
            );
            (
                body["type"].as_str().unwrap().to_string(),
                body["data"]["id"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        [
            ("contact.created".to_string(), "1".to_string()),
            ("contact.created".to_string(), "2".to_string()),
            ("ticket.deleted".to_string(), "3".to_string()),
        ]
    );
}

#[test]
fn message_ids_differ_across_stores_and_messages() {
    // Two stores made from scratch (two hosts, or one recreated) used to both start at msg_1.
    let mut ids = Vec::new();
    for _ in 0..2 {
        let dir = tempfile::tempdir().unwrap();
        let receiver = Receiver::ok();
        let engine = engine(&dir);
        engine
            .subscriptions()
            .create(standard(&receiver, "/ids"))
            .unwrap();
        engine
            .publish_batch(vec![
                Event::created("Contact", "1"),
                Event::created("Contact", "2"),
            ])
            .unwrap();
        for r in receiver.wait_for("/ids", 2, WAIT) {
            ids.push(r.header("webhook-id").unwrap().to_string());
        }
    }
    assert_eq!(ids.len(), 4);
    let distinct: HashSet<&String> = ids.iter().collect();
    assert_eq!(distinct.len(), 4, "{ids:?}");
    for id in &ids {
        let uuid = id.strip_prefix("msg_").expect("msg_ prefix");
        assert!(
            uuid.len() == 32 && uuid.bytes().all(|b| b.is_ascii_hexdigit()),
            "{id}"
        );
    }
}

#[test]
fn an_autotask_webhook_fires_only_once_ready_and_sends_only_its_fields() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::ok();
    let engine = engine(&dir);
    let webhook = |path: &str| {
        Subscription::new(format!("{}{path}", receiver.url))
            .profile(Profile::Autotask)
            .events(autotask_event_patterns("Ticket", true, true, false))
            .secret("SuperSecretKey123")
    };
    let not_ready = engine.subscriptions().create(webhook("/none")).unwrap();
    let ready = engine
        .subscriptions()
        .create(
            webhook("/ready")
                .on_field_change("Ticket", ["Title"])
                .always_fields("Ticket", ["Status"]),
        )
        .unwrap();
    let change = Event::updated("Ticket", "7")
        .data(json!({"Title": "New", "Priority": 1, "Status": "5"}))
        .previous(json!({"Title": "Old", "Priority": 2, "Status": "5"}));
    let receipt = engine.publish(change).unwrap();
    // The publish files a delivery for each subscription that wants the event, at once.
    assert_eq!(
        receipt.deliveries.len(),
        1,
        "the webhook that is not Ready sends nothing"
    );
    assert_eq!(engine.subscription_stats(not_ready.id).unwrap().due, 0);
    let got = receiver.wait_for("/ready", 1, WAIT);
    assert_eq!(
        got[0].json()["Fields"],
        json!({"Title": "New", "Status": "5"}),
        "the subscribed field that changed and the display-always one, not Priority"
    );
    let created = Event::created("Ticket", "8").data(json!({"Title": "T", "Priority": 3}));
    assert_eq!(engine.publish(created).unwrap().deliveries.len(), 1);
    let got = receiver.wait_for("/ready", 2, WAIT);
    assert_eq!(got[1].json()["Fields"], json!({"Title": "T"}));
    assert!(receiver.on("/none").is_empty());
    assert_eq!(engine.subscription_stats(ready.id).unwrap().due, 0);
}
