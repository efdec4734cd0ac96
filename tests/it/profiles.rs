//! The vendor wire profiles end to end: a real receiver checks each body's shape and verifies
//! the vendor's signature with its own HMAC, from the raw bytes, as that vendor's receivers do.

use std::time::Duration;

use base64::Engine as _;
use callout::core::{autotask_event_patterns, Profile};
use callout::{Engine, Event, ManualClock, Notice, NoticeKind, RetryPolicy, Subscription};
use hmac::{Hmac, Mac};
use serde_json::json;

use callout_testkit::{Receiver, Reply};

const WAIT: Duration = Duration::from_secs(10);

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn engine(dir: &tempfile::TempDir) -> callout::EngineBuilder {
    Engine::builder(dir.path().join("store"))
        .allow_address("127.0.0.1")
        .poll_interval(Duration::from_millis(5))
}

#[test]
fn autotask_receiver_gets_its_callout_signed_with_sha1() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::ok();
    let engine = engine(&dir).open().unwrap();
    let sub = engine
        .subscriptions()
        .create(
            Subscription::new(format!("{}/autotask", receiver.url))
                .name("psa.Ticket.Update")
                .profile(Profile::Autotask)
                .events(autotask_event_patterns("Ticket", false, true, false))
                .secret("SuperSecretKey123")
                .on_field_change("Ticket", ["Title"])
                .always_fields("Ticket", ["Status"]),
        )
        .unwrap();
    for title in ["Printer & scanner down – Café", "Fixed"] {
        engine
            .publish(
                Event::updated("Ticket", "351182")
                    .data(json!({"Title": title, "Status": "5", "Priority": 1}))
                    .previous(json!({"Title": "old", "Status": "5", "Priority": 2}))
                    .actor("30691780"),
            )
            .unwrap();
    }
    let got = receiver.wait_for("/autotask", 2, WAIT);
    assert_eq!(got.len(), 2);
    for (n, request) in got.iter().enumerate() {
        let mut mac = Hmac::<sha1::Sha1>::new_from_slice(b"SuperSecretKey123").unwrap();
        mac.update(&request.body);
        let expected = format!("sha1={}", b64(&mac.finalize().into_bytes()));
        assert_eq!(request.header("X-Hook-Signature"), Some(expected.as_str()));
        let body = request.json();
        assert_eq!(body["Action"], "Update");
        assert_eq!(body["Guid"], sub.guid.as_str());
        assert_eq!(body["EntityType"], "Ticket");
        assert_eq!(body["Id"], 351182);
        assert_eq!(body["PersonID"], 30691780);
        assert_eq!(
            body["SequenceNumber"],
            n as u64 + 1,
            "counts up per webhook"
        );
        assert_eq!(body["Fields"]["Status"], "5", "display-always field");
        assert!(
            body["Fields"].get("Priority").is_none(),
            "not a subscribed field"
        );
    }
    let raw = String::from_utf8(got[0].body.clone()).unwrap();
    assert!(
        raw.contains(r"Printer \u0026 scanner down \u2013 Caf\u00E9"),
        "{raw}"
    );
}

#[test]
fn superoffice_receiver_gets_its_headers_and_retry_count() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::start(|n, _| Reply::status(if n == 0 { 500 } else { 200 }));
    let clock = ManualClock::new(1_522_916_881_573);
    let engine = engine(&dir)
        .clock(clock.clone())
        .retry_policy(RetryPolicy::from_secs(&[0, 1]))
        .open()
        .unwrap();
    engine
        .subscriptions()
        .create(
            Subscription::new(format!("{}/so", receiver.url))
                .name("Tonys Contact Handler")
                .profile(Profile::Superoffice)
                .events(["contact.changed"])
                .secret("Something Super Secret"),
        )
        .unwrap();
    engine
        .publish(
            Event::new("contact", "changed", "18")
                .changed(["name"])
                .actor("5")
                .tenant("Cust54321"),
        )
        .unwrap();
    assert_eq!(receiver.wait_for("/so", 1, WAIT).len(), 1);
    // Time moves once the failure is recorded, so the retry is scheduled before it.
    assert!(wait_until(WAIT, || engine.stats().unwrap().retrying == 1));
    clock.advance_ms(2_000);
    let got = receiver.wait_for("/so", 2, WAIT);
    assert_eq!(got.len(), 2);
    for (retry, request) in got.iter().enumerate() {
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(b"Something Super Secret").unwrap();
        mac.update(&request.body);
        assert_eq!(
            request.header("X-SuperOffice-Signature"),
            Some(b64(&mac.finalize().into_bytes()).as_str())
        );
        let body = request.json();
        assert_eq!(body["Event"], "contact.changed");
        assert_eq!(body["PrimaryKey"], 18);
        assert_eq!(body["ContextIdentifier"], "Cust54321");
        assert_eq!(body["WebhookName"], "Tonys Contact Handler");
        assert_eq!(body["Timestamp"], "2018-04-05T08:28:01.5730000Z");
        assert_eq!(
            request.header("X-SuperOffice-Event"),
            Some("contact.changed")
        );
        assert_eq!(
            request.header("X-SuperOffice-EventId"),
            body["EventId"].as_str()
        );
        assert_eq!(
            request.header("X-SuperOffice-Retry"),
            Some(retry.to_string().as_str())
        );
        assert!(request
            .header("Content-Type")
            .unwrap()
            .contains("charset=utf-8"));
    }
    assert_eq!(
        got[0].json()["EventId"],
        got[1].json()["EventId"],
        "same EventId within a cycle"
    );
}

#[test]
fn pipeliner_receiver_gets_chunks_of_100_100_50_signed_in_hex() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::ok();
    let engine = engine(&dir).open().unwrap();
    let key = "01234567-abcd-dcba-ffff-000000000000";
    engine
        .subscriptions()
        .create(
            Subscription::new(format!("{}/pipeliner", receiver.url))
                .profile(Profile::Pipeliner)
                .events(["Account.*"])
                .secret(key)
                .chunk_size(100)
                .chunk_delay(1),
        )
        .unwrap();
    let events = (0..250)
        .map(|i| Event::new("Account", "Create", format!("acc-{i}")).data(json!({"name": "Acme"})))
        .collect();
    engine.publish_batch(events).unwrap();
    let got = receiver.wait_for("/pipeliner", 3, WAIT);
    let sizes: Vec<usize> = got
        .iter()
        .map(|r| r.json().as_array().unwrap().len())
        .collect();
    assert_eq!(sizes, [100, 100, 50]);
    for request in &got {
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(key.as_bytes()).unwrap();
        mac.update(&request.body);
        let hex: String = mac
            .finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(request.header("WebHook-Signature"), Some(hex.as_str()));
        let first = &request.json()[0];
        assert_eq!(first["event"], "Account.Create");
        assert!(
            first["webhook"].get("signature").is_none(),
            "the signature is never echoed"
        );
        assert_eq!(first["entity"]["name"], "Acme");
    }
    let gap = got[1].at.duration_since(got[0].at).as_secs_f64();
    assert!((0.7..1.8).contains(&gap), "chunks {gap:.2} s apart");
}

/// Moves a manual clock in steps until `done`, bounded in steps and wall time. It moves only
/// while nothing is in flight: jumping minutes ahead during an attempt would expire its lease
/// (the store returns it to the queue, a second attempt), which is not what is under test.
fn drive(engine: &Engine, clock: &ManualClock, step_ms: u64, done: impl Fn() -> bool) -> bool {
    let started = std::time::Instant::now();
    for _ in 0..5_000 {
        if done() || started.elapsed() > Duration::from_secs(30) {
            break;
        }
        if engine.stats().unwrap().in_flight == 0 {
            clock.advance_ms(step_ms);
        }
        std::thread::sleep(Duration::from_millis(3));
    }
    done()
}

type Notices = std::sync::Arc<std::sync::Mutex<Vec<NoticeKind>>>;

/// A notifier that keeps what it was told.
fn notices() -> (Notices, impl Fn(&Notice) + Send + Sync + 'static) {
    let kept = Notices::default();
    let seen = std::sync::Arc::clone(&kept);
    (kept, move |n: &Notice| {
        seen.lock().unwrap().push(n.kind.clone())
    })
}

fn wait_until(limit: Duration, done: impl Fn() -> bool) -> bool {
    let started = std::time::Instant::now();
    while started.elapsed() < limit && !done() {
        std::thread::sleep(Duration::from_millis(5));
    }
    done()
}

#[test]
fn autotask_webhook_is_deactivated_after_25_failed_events() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::start(|_, r| Reply::status(if r.path == "/off" { 200 } else { 500 }));
    let clock = ManualClock::new(1_757_949_000_000);
    let (notices, notifier) = notices();
    let engine = engine(&dir)
        .clock(clock.clone())
        .notifier(notifier)
        .open()
        .unwrap();
    let sub = engine
        .subscriptions()
        .create(
            Subscription::new(format!("{}/at", receiver.url))
                .profile(Profile::Autotask)
                .events(autotask_event_patterns("Ticket", true, false, false))
                .on_field_change("Ticket", ["Title"])
                .secret("SuperSecretKey123")
                .deactivation_url(format!("{}/off", receiver.url)),
        )
        .unwrap();
    for i in 0..26 {
        engine
            .publish(Event::created("Ticket", i.to_string()))
            .unwrap();
    }
    let off =
        || engine.subscriptions().get(sub.id).unwrap().unwrap().state != callout::State::Active;
    assert!(drive(&engine, &clock, 30_000, off), "deactivated");
    // Autotask's rules: 5 attempts 30 s apart per event, events in order, 25 failed events.
    let attempts = receiver.on("/at");
    assert_eq!(
        attempts.len(),
        25 * 5,
        "every failed event had its 5 attempts, one event at a time"
    );
    let ids: Vec<i64> = attempts
        .iter()
        .map(|r| r.json()["Id"].as_i64().unwrap())
        .collect();
    assert!(ids.windows(2).all(|w| w[0] <= w[1]), "FIFO per webhook");
    // One error notice a day: the first failed event is told at once; the switch-off is its
    // own notice; the other 24 failed events wait for the next day's notice.
    let kinds = |n: &Notices| n.lock().unwrap().clone();
    // The switch-off is told while the 25th event is being dead-lettered: wait for both.
    assert!(wait_until(WAIT, || {
        engine.subscription_stats(sub.id).unwrap().dead == 25 && kinds(&notices).len() >= 2
    }));
    assert_eq!(
        kinds(&notices),
        [
            NoticeKind::DeliveriesFailed { count: 1 },
            NoticeKind::TooManyErrors {
                consecutive_failures: 125
            }
        ]
    );
    clock.advance_ms(86_400_000);
    assert!(
        wait_until(WAIT, || kinds(&notices).len() == 3),
        "the day's other failures are told a day later"
    );
    assert_eq!(
        kinds(&notices)[2],
        NoticeKind::DeliveriesFailed { count: 24 }
    );
    let deactivation = receiver.wait_for("/off", 1, WAIT);
    assert_eq!(deactivation.len(), 1, "DeactivationUrl called");
    assert_eq!(deactivation[0].json()["Action"], "Deactivated");
    // The 26th event is held, not lost.
    assert_eq!(engine.subscription_stats(sub.id).unwrap().held, 1);
}

#[test]
fn superoffice_webhook_goes_to_too_many_errors_after_nine_failed_attempts() {
    let dir = tempfile::tempdir().unwrap();
    let receiver =
        Receiver::start(|_, r| Reply::status(if r.path == "/listener" { 200 } else { 500 }));
    let clock = ManualClock::new(1_522_916_881_573);
    let engine = engine(&dir).clock(clock.clone()).open().unwrap();
    let sub = engine
        .subscriptions()
        .create(
            Subscription::new(format!("{}/so", receiver.url))
                .profile(Profile::Superoffice)
                .events(["contact.changed"])
                .secret("Something Super Secret"),
        )
        .unwrap();
    // Another webhook listens for the first one's state events.
    engine
        .subscriptions()
        .create(
            Subscription::new(format!("{}/listener", receiver.url))
                .profile(Profile::Superoffice)
                .events([format!("webhook{}.errors", sub.id)]),
        )
        .unwrap();
    engine
        .publish(Event::new("contact", "changed", "18"))
        .unwrap();
    let off = || {
        engine.subscriptions().get(sub.id).unwrap().unwrap().state == callout::State::TooManyErrors
    };
    assert!(drive(&engine, &clock, 1_000, off), "TooManyErrors");
    assert_eq!(
        receiver.on("/so").len(),
        9,
        "three cycles of three attempts"
    );
    // Cycles: 1 s and 4 s apart inside one, a pause between them.
    let retries: Vec<String> = receiver
        .on("/so")
        .iter()
        .map(|r| r.header("X-SuperOffice-Retry").unwrap().to_string())
        .collect();
    assert_eq!(retries, ["0", "1", "2", "0", "1", "2", "0", "1", "2"]);
    // One EventId per cycle, a new one for each cycle, the same in body and header, and the
    // signature made over the body as sent.
    let ids: Vec<String> = receiver
        .on("/so")
        .iter()
        .map(|r| {
            let mut mac = Hmac::<sha2::Sha256>::new_from_slice(b"Something Super Secret").unwrap();
            mac.update(&r.body);
            assert_eq!(
                r.header("X-SuperOffice-Signature"),
                Some(b64(&mac.finalize().into_bytes()).as_str())
            );
            let id = r.json()["EventId"].as_str().unwrap().to_string();
            assert_eq!(r.header("X-SuperOffice-EventId"), Some(id.as_str()));
            id
        })
        .collect();
    for cycle in ids.chunks(3) {
        assert!(
            cycle.iter().all(|id| id == &cycle[0]),
            "same EventId within a cycle"
        );
    }
    let distinct: std::collections::HashSet<&String> = ids.iter().collect();
    assert_eq!(distinct.len(), 3, "a new EventId per failed cycle");
    let announced = receiver.wait_for("/listener", 1, WAIT);
    assert_eq!(announced.len(), 1, "the .errors state event fired");
    let body = announced[0].json();
    assert_eq!(body["Event"], "webhook.errors");
    assert_eq!(body["Entity"], "webhook");
    assert_eq!(body["PrimaryKey"], sub.id);
}

#[test]
fn superoffice_save_sends_a_test_event_that_must_get_200() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::start(|_, r| Reply::status(if r.path == "/yes" { 200 } else { 404 }));
    let engine = engine(&dir).open().unwrap();
    let webhook = |path: &str| {
        Subscription::new(format!("{}{path}", receiver.url))
            .profile(Profile::Superoffice)
            .events(["contact.created"])
            .secret("Something Super Secret")
    };
    let saved = engine
        .subscriptions()
        .create_tested(webhook("/yes"))
        .unwrap();
    let test = receiver.wait_for("/yes", 1, WAIT);
    assert_eq!(test[0].header("X-Hook-Test"), Some("true"));
    assert_eq!(test[0].json()["Event"], "test");
    assert_eq!(test[0].json()["PrimaryKey"], 0);
    assert!(engine.subscriptions().get(saved.id).unwrap().is_some());
    let refused = engine
        .subscriptions()
        .create_tested(webhook("/no"))
        .unwrap_err();
    assert!(
        matches!(
            refused,
            callout::Error::TestFailed {
                status: Some(404),
                ..
            }
        ),
        "{refused}"
    );
    assert_eq!(
        engine
            .subscriptions()
            .list(&Default::default())
            .unwrap()
            .len(),
        1,
        "not saved"
    );
}

#[test]
fn autotask_deliveries_past_the_hourly_threshold_wait_for_the_next_hour() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::ok();
    // Ten minutes before an hour ends.
    let hour = 3_600_000;
    let clock = ManualClock::new(1_757_949_000_000 / hour * hour + 50 * 60_000);
    let (notices, notifier) = notices();
    let engine = engine(&dir)
        .clock(clock.clone())
        .notifier(notifier)
        .hourly_threshold(2)
        .open()
        .unwrap();
    let sub = engine
        .subscriptions()
        .create(Subscription {
            send_threshold_exceeded_notification: true,
            ..Subscription::new(format!("{}/at", receiver.url))
                .profile(Profile::Autotask)
                .events(autotask_event_patterns("Ticket", true, false, false))
                .on_field_change("Ticket", ["Title"])
        })
        .unwrap();
    for i in 1..=5 {
        engine
            .publish(Event::created("Ticket", i.to_string()))
            .unwrap();
    }
    assert_eq!(receiver.wait_for("/at", 2, WAIT).len(), 2);
    assert!(wait_until(WAIT, || {
        notices.lock().unwrap().first()
            == Some(&NoticeKind::ThresholdExceeded {
                entity: "ticket".into(),
                count: 3,
                threshold: 2,
            })
    }));
    assert_eq!(
        receiver
            .wait_for("/at", 3, Duration::from_millis(200))
            .len(),
        2,
        "the third waits for the next hour"
    );
    assert_eq!(
        engine.subscription_stats(sub.id).unwrap().due,
        3,
        "delayed, not dropped"
    );
    clock.advance_ms(10 * 60_000);
    assert_eq!(
        receiver.wait_for("/at", 4, WAIT).len(),
        4,
        "two more the next hour"
    );
    let quiet = Duration::from_millis(200);
    assert_eq!(receiver.wait_for("/at", 5, quiet).len(), 4);
    clock.advance_ms(hour);
    let got = receiver.wait_for("/at", 5, WAIT);
    let ids: Vec<i64> = got
        .iter()
        .map(|r| r.json()["Id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, [1, 2, 3, 4, 5], "in order, none lost");
    assert!(wait_until(WAIT, || {
        notices.lock().unwrap().last()
            == Some(&NoticeKind::ThresholdCaughtUp {
                entity: "ticket".into(),
            })
    }));
    assert_eq!(
        notices
            .lock()
            .unwrap()
            .iter()
            .filter(|n| matches!(n, NoticeKind::ThresholdExceeded { .. }))
            .count(),
        2,
        "one warning in each hour it was passed"
    );
}

#[test]
fn a_standard_subscription_past_the_threshold_is_sent_with_one_warning() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::ok();
    let (notices, notifier) = notices();
    let engine = engine(&dir)
        .notifier(notifier)
        .hourly_threshold(2)
        .open()
        .unwrap();
    engine
        .subscriptions()
        .create(Subscription {
            send_threshold_exceeded_notification: true,
            ..Subscription::new(format!("{}/std", receiver.url)).events(["*"])
        })
        .unwrap();
    for i in 1..=4 {
        engine
            .publish(Event::created("Ticket", i.to_string()))
            .unwrap();
    }
    assert_eq!(
        receiver.wait_for("/std", 4, WAIT).len(),
        4,
        "nothing delayed"
    );
    assert!(wait_until(WAIT, || !notices.lock().unwrap().is_empty()));
    assert_eq!(
        notices.lock().unwrap().as_slice(),
        [NoticeKind::ThresholdExceeded {
            entity: "ticket".into(),
            count: 3,
            threshold: 2
        }]
    );
}

#[test]
fn autotask_error_log_keeps_failed_events_thirty_days() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::start(|_, _| Reply::status(500));
    let clock = ManualClock::new(1_757_949_000_000);
    let engine = engine(&dir).clock(clock.clone()).open().unwrap();
    let autotask = engine
        .subscriptions()
        .create(
            Subscription::new(format!("{}/at", receiver.url))
                .profile(Profile::Autotask)
                .events(autotask_event_patterns("Ticket", true, false, false))
                .on_field_change("Ticket", ["Title"]),
        )
        .unwrap();
    let standard = engine
        .subscriptions()
        .create(Subscription {
            retry_schedule: Some(vec![]),
            ..Subscription::new(format!("{}/std", receiver.url)).events(["*"])
        })
        .unwrap();
    engine.publish(Event::created("Ticket", "1")).unwrap();
    let dead = |id| engine.subscription_stats(id).unwrap().dead;
    assert!(drive(&engine, &clock, 30_000, || dead(autotask.id) == 1
        && dead(standard.id) == 1));
    clock.advance_ms(29 * 86_400_000);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(dead(autotask.id), 1, "kept for 30 days");
    clock.advance_ms(2 * 86_400_000);
    assert!(
        wait_until(WAIT, || dead(autotask.id) == 0),
        "gone from the error log after 30 days"
    );
    assert_eq!(dead(standard.id), 1, "other dead letters stay until purged");
}
