//! Publish to delivered, with retries, states and notifications, asserting what the receiver got
//! and what the store recorded.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use callout::{
    DeadFilter, Engine, EngineBuilder, Event, FailurePolicy, ManualClock, NoticeKind, RetryPolicy,
    State, Subscription,
};
use hmac::{Hmac, Mac};
use serde_json::json;
use sha2::Sha256;

use callout_testkit::{Receiver, Reply};

use crate::wait_until;

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const WAIT: Duration = Duration::from_secs(10);

fn engine(dir: &tempfile::TempDir) -> EngineBuilder {
    Engine::builder(dir.path().join("store"))
        .allow_address("127.0.0.1")
        .poll_interval(Duration::from_millis(5))
}

fn sub(receiver: &Receiver, path: &str) -> Subscription {
    Subscription::new(format!("{}{path}", receiver.url))
        .name(path)
        .events(["*"])
        .secret(SECRET)
}

/// Standard Webhooks verification done here, from the raw bytes, not by the code under test.
fn verify_standard(r: &callout_testkit::Received) -> bool {
    let key = base64::engine::general_purpose::STANDARD
        .decode(SECRET.trim_start_matches("whsec_"))
        .unwrap();
    let (Some(id), Some(ts), Some(sig)) = (
        r.header("webhook-id"),
        r.header("webhook-timestamp"),
        r.header("webhook-signature"),
    ) else {
        return false;
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{id}.{ts}.").as_bytes());
    mac.update(&r.body);
    let expected = format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    );
    sig.split(' ').any(|s| s == expected)
}

#[test]
fn delivered_first_time_signed() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::ok();
    let engine = engine(&dir).open().unwrap();
    let s = engine.subscriptions().create(sub(&receiver, "/a")).unwrap();
    let receipt = engine
        .publish(
            Event::updated("Contact", "42")
                .data(json!({"email1": "a@x"}))
                .previous(json!({"email1": "b@x"})),
        )
        .unwrap();
    assert_eq!(receipt.deliveries.len(), 1);
    let got = receiver.wait_for("/a", 1, WAIT);
    assert_eq!(got.len(), 1);
    assert!(verify_standard(&got[0]), "signature verifies");
    let body = got[0].json();
    assert_eq!(body["type"], "contact.updated");
    assert_eq!(body["data"]["fields"]["email1"], "a@x");
    assert_eq!(body["data"]["changes"], json!(["email1"]));
    assert!(wait_until(WAIT, || engine.stats().unwrap().delivered == 1));
    let attempts = engine.attempts(receipt.deliveries[0]).unwrap();
    assert_eq!(attempts.len(), 1);
    assert_eq!(attempts[0].status, Some(200));
    assert_eq!(engine.subscription_stats(s.id).unwrap().delivered, 1);
}

#[test]
fn fails_twice_then_succeeds_with_three_attempts_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::start(|n, _| Reply::status(if n < 2 { 500 } else { 200 }));
    let clock = ManualClock::new(1_700_000_000_000);
    let engine = engine(&dir)
        .clock(clock.clone())
        .retry_policy(RetryPolicy::from_secs(&[0, 5, 300]))
        .open()
        .unwrap();
    engine
        .subscriptions()
        .create(sub(&receiver, "/flaky"))
        .unwrap();
    let receipt = engine.publish(Event::created("Ticket", "1")).unwrap();
    assert_eq!(receiver.wait_for("/flaky", 1, WAIT).len(), 1);
    // Nothing more until the clock reaches the retry.
    let quiet = Duration::from_millis(100);
    assert_eq!(receiver.wait_for("/flaky", 2, quiet).len(), 1);
    assert!(wait_until(WAIT, || engine.stats().unwrap().retrying == 1));
    clock.advance_ms(5_000);
    assert_eq!(receiver.wait_for("/flaky", 2, WAIT).len(), 2);
    // Move the clock only once the attempt is recorded: a jump past the lease while it is in
    // flight would return the delivery to the queue, a different story from this test's.
    assert!(wait_until(WAIT, || engine
        .attempts(receipt.deliveries[0])
        .unwrap()
        .len()
        == 2));
    clock.advance_ms(300_000);
    assert_eq!(receiver.wait_for("/flaky", 3, WAIT).len(), 3);
    assert!(wait_until(WAIT, || engine
        .attempts(receipt.deliveries[0])
        .unwrap()
        .len()
        == 3));
    let statuses: Vec<_> = engine
        .attempts(receipt.deliveries[0])
        .unwrap()
        .iter()
        .map(|a| a.status)
        .collect();
    assert!(
        statuses.contains(&Some(500)) && statuses.contains(&Some(200)),
        "{statuses:?}"
    );
    let ids: Vec<_> = receiver
        .on("/flaky")
        .iter()
        .map(|r| r.header("webhook-id").unwrap().to_string())
        .collect();
    assert!(
        ids.iter().all(|id| *id == ids[0]),
        "delivery id stable across retries"
    );
}

#[test]
fn never_succeeds_then_dead_letter_then_replay() {
    let dir = tempfile::tempdir().unwrap();
    let healthy = Arc::new(Mutex::new(false));
    let flag = Arc::clone(&healthy);
    let receiver =
        Receiver::start(move |_, _| Reply::status(if *flag.lock().unwrap() { 200 } else { 503 }));
    let clock = ManualClock::new(1_700_000_000_000);
    let engine = engine(&dir)
        .clock(clock.clone())
        .retry_policy(RetryPolicy::from_secs(&[0, 1]))
        .open()
        .unwrap();
    let s = engine
        .subscriptions()
        .create(sub(&receiver, "/down"))
        .unwrap();
    engine.publish(Event::created("Ticket", "1")).unwrap();
    assert_eq!(receiver.wait_for("/down", 1, WAIT).len(), 1);
    // Time moves only once the failure is recorded: moved earlier, the retry would be
    // scheduled from the later time and never fall due.
    assert!(wait_until(WAIT, || engine.stats().unwrap().retrying == 1));
    clock.advance_ms(5_000);
    assert_eq!(receiver.wait_for("/down", 2, WAIT).len(), 2);
    assert!(
        wait_until(WAIT, || engine.stats().unwrap().dead == 1),
        "dead-lettered after the last attempt"
    );
    let dead = engine
        .dead_letters(&DeadFilter::subscription(s.id))
        .unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(
        engine.delivery(dead[0].id).unwrap().unwrap().attempts,
        2,
        "both attempts counted on the stored delivery"
    );
    let recorded = engine.subscription_attempts(s.id, 10).unwrap();
    assert_eq!(recorded.len(), 2);
    assert!(recorded
        .iter()
        .all(|(id, a)| *id == dead[0].id && a.status == Some(503)));
    let before = DeadFilter {
        to_ms: 1_700_000_000_000,
        ..DeadFilter::default()
    };
    assert!(
        engine.dead_letters(&before).unwrap().is_empty(),
        "time range excludes it"
    );
    assert_eq!(engine.replay_dead(&before).unwrap(), 0);
    assert_eq!(
        engine
            .dead_letters(&DeadFilter::subscription(s.id + 1))
            .unwrap()
            .len(),
        0
    );
    *healthy.lock().unwrap() = true;
    assert_eq!(
        engine.replay_dead(&DeadFilter::subscription(s.id)).unwrap(),
        1
    );
    assert_eq!(receiver.wait_for("/down", 3, WAIT).len(), 3);
    assert!(wait_until(WAIT, || engine.stats().unwrap().delivered == 1));
    assert_eq!(engine.stats().unwrap().dead, 0);
}

#[test]
fn gone_stops_the_subscription_and_calls_the_deactivation_url() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::start(|_, r| Reply::status(if r.path == "/gone" { 410 } else { 200 }));
    let notices = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&notices);
    let engine = engine(&dir)
        .notifier(move |n: &callout::Notice| seen.lock().unwrap().push(n.kind.clone()))
        .open()
        .unwrap();
    let s = engine
        .subscriptions()
        .create(sub(&receiver, "/gone").deactivation_url(format!("{}/off", receiver.url)))
        .unwrap();
    engine.publish(Event::created("Ticket", "1")).unwrap();
    let off = receiver.wait_for("/off", 1, WAIT);
    assert_eq!(off.len(), 1, "deactivation URL called");
    assert_eq!(off[0].json()["type"], "subscription.deactivated");
    assert!(verify_standard(&off[0]));
    assert_eq!(
        engine.subscriptions().get(s.id).unwrap().unwrap().state,
        State::Stopped
    );
    assert_eq!(notices.lock().unwrap().as_slice(), [NoticeKind::Gone]);
    // Stopped: new events do not go out.
    engine.publish(Event::created("Ticket", "2")).unwrap();
    let quiet = Duration::from_millis(200);
    assert_eq!(receiver.wait_for("/gone", 2, quiet).len(), 1);
}

#[test]
fn too_many_errors_holds_deliveries_until_reactivated() {
    let dir = tempfile::tempdir().unwrap();
    let healthy = Arc::new(Mutex::new(false));
    let flag = Arc::clone(&healthy);
    let receiver = Receiver::start(move |_, r| {
        Reply::status(if r.path == "/off" || *flag.lock().unwrap() {
            200
        } else {
            500
        })
    });
    let notices = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&notices);
    let clock = ManualClock::new(1_700_000_000_000);
    let engine = engine(&dir)
        .clock(clock.clone())
        .retry_policy(RetryPolicy::from_secs(&[0, 60, 60, 60]))
        .failure_policy(FailurePolicy {
            consecutive_failures: Some(3),
            failing_for: None,
        })
        .notifier(move |n: &callout::Notice| {
            seen.lock()
                .unwrap()
                .push((n.kind.clone(), n.emails.clone()))
        })
        .open()
        .unwrap();
    let mut s = sub(&receiver, "/bad").deactivation_url(format!("{}/off", receiver.url));
    s.errors_email = Some("ops@example.com".into());
    let s = engine.subscriptions().create(s).unwrap();
    engine
        .publish_batch(vec![Event::created("Ticket", "1")])
        .unwrap();
    engine
        .publish_batch(vec![Event::created("Ticket", "2")])
        .unwrap();
    engine
        .publish_batch(vec![Event::created("Ticket", "3")])
        .unwrap();
    assert!(wait_until(WAIT, || engine
        .subscriptions()
        .get(s.id)
        .unwrap()
        .unwrap()
        .state
        == State::TooManyErrors));
    assert_eq!(
        receiver.wait_for("/off", 1, WAIT).len(),
        1,
        "deactivation URL called"
    );
    assert!(
        matches!(notices.lock().unwrap()[0], (NoticeKind::TooManyErrors { consecutive_failures: 3 }, ref emails) if emails == &["ops@example.com".to_string()])
    );
    // Held, not dropped: time passes, nothing is sent, nothing is dead.
    let sent = receiver.on("/bad").len();
    clock.advance_ms(3_600_000);
    let quiet = Duration::from_millis(200);
    assert_eq!(receiver.wait_for("/bad", sent + 1, quiet).len(), sent);
    assert_eq!(engine.stats().unwrap().dead, 0);
    assert_eq!(engine.subscription_stats(s.id).unwrap().held, 3);
    *healthy.lock().unwrap() = true;
    engine
        .subscriptions()
        .set_state(s.id, State::Active)
        .unwrap();
    let done = wait_until(WAIT, || {
        engine.subscription_stats(s.id).unwrap().delivered == 3
    });
    assert!(
        done,
        "stats {:?}, received {}",
        engine.subscription_stats(s.id).unwrap(),
        receiver.on("/bad").len()
    );
}

#[test]
fn a_failure_streak_goes_on_after_the_engine_is_reopened() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::start(|_, _| Reply::status(500));
    // One attempt each within the test: the retry is an hour away.
    let open = || {
        engine(&dir)
            .retry_policy(RetryPolicy::from_secs(&[0, 3_600]))
            .failure_policy(FailurePolicy {
                consecutive_failures: Some(4),
                failing_for: None,
            })
            .open()
            .unwrap()
    };
    let first = open();
    let s = first
        .subscriptions()
        .create(sub(&receiver, "/bad"))
        .unwrap();
    for n in 0..2 {
        first
            .publish(Event::created("Ticket", n.to_string()))
            .unwrap();
    }
    assert_eq!(receiver.wait_for("/bad", 2, WAIT).len(), 2);
    // Shutdown waits for the settles, so both failures are counted.
    first.shutdown(Duration::from_secs(5)).unwrap();
    drop(first);
    let second = open();
    let state = || second.subscriptions().get(s.id).unwrap().unwrap().state;
    assert_eq!(state(), State::Active, "two failures of four");
    for n in 2..4 {
        second
            .publish(Event::created("Ticket", n.to_string()))
            .unwrap();
    }
    // A streak that started afresh on reopen would be at two and never trip.
    assert!(
        wait_until(WAIT, || state() == State::TooManyErrors),
        "{:?}",
        state()
    );
    assert_eq!(receiver.on("/bad").len(), 4);
}

#[test]
fn a_resumed_subscription_starts_a_fresh_failure_streak() {
    use callout::store::{SledStore, StoreConfig, Tallies};
    let dir = tempfile::tempdir().unwrap();
    let store =
        Arc::new(SledStore::open(dir.path().join("store"), StoreConfig::default()).unwrap());
    let receiver = Receiver::start(|_, _| Reply::status(500));
    let engine = Engine::builder(Arc::clone(&store))
        .allow_address("127.0.0.1")
        .retry_policy(RetryPolicy::from_secs(&[0, 3_600]))
        .failure_policy(FailurePolicy {
            consecutive_failures: Some(2),
            failing_for: None,
        })
        .open()
        .unwrap();
    let s = engine
        .subscriptions()
        .create(sub(&receiver, "/bad"))
        .unwrap();
    engine
        .subscriptions()
        .set_state(s.id, State::TooManyErrors)
        .unwrap();
    // Failures that land while it is off: attempts that were still in flight at the
    // switch-off, here or on another instance sharing the store.
    for at in [1, 2, 3] {
        store.count_failure(s.id, at, false).unwrap();
    }
    engine
        .subscriptions()
        .set_state(s.id, State::Active)
        .unwrap();
    engine.publish(Event::created("Ticket", "1")).unwrap();
    assert_eq!(receiver.wait_for("/bad", 1, WAIT).len(), 1);
    assert!(wait_until(WAIT, || engine.stats().unwrap().retrying == 1));
    // One failure of the two that switch it off; counted on the old streak it would be four.
    let state = engine.subscriptions().get(s.id).unwrap().unwrap().state;
    assert_eq!(state, State::Active);
}

#[test]
fn chunks_of_100_100_50_two_seconds_apart() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::ok();
    let engine = engine(&dir).open().unwrap();
    engine
        .subscriptions()
        .create(sub(&receiver, "/bulk").chunk_size(100).chunk_delay(2))
        .unwrap();
    let events = (0..250)
        .map(|i| Event::created("Account", i.to_string()))
        .collect();
    let started = Instant::now();
    let receipt = engine.publish_batch(events).unwrap();
    assert_eq!(receipt.deliveries.len(), 3);
    let got = receiver.wait_for("/bulk", 3, Duration::from_secs(15));
    let sizes: Vec<usize> = got
        .iter()
        .map(|r| r.json()["data"].as_array().unwrap().len())
        .collect();
    assert_eq!(sizes, [100, 100, 50]);
    // Chunk N is due N x 2 s after the publish: never earlier, and not much later.
    for (n, request) in got.iter().enumerate() {
        let after = request.at.duration_since(started).as_secs_f64();
        let due = 2.0 * n as f64;
        assert!(
            (due - 0.01..due + 1.5).contains(&after),
            "chunk {n} after {after:.2} s"
        );
    }
}

#[test]
fn ordered_subscription_stays_in_order_through_retries() {
    let dir = tempfile::tempdir().unwrap();
    // The first request of each event fails once.
    let receiver = Receiver::start(|n, _| Reply::status(if n % 2 == 0 { 500 } else { 200 }));
    let clock = ManualClock::new(1_700_000_000_000);
    let engine = engine(&dir)
        .clock(clock.clone())
        .retry_policy(RetryPolicy::from_secs(&[0, 1, 1, 1]))
        .workers(4)
        .open()
        .unwrap();
    engine
        .subscriptions()
        .create(sub(&receiver, "/ordered").ordered(true))
        .unwrap();
    for i in 0..5 {
        engine
            .publish(Event::created("Ticket", i.to_string()))
            .unwrap();
    }
    let started = Instant::now();
    while receiver.on("/ordered").len() < 10 && started.elapsed() < WAIT {
        clock.advance_ms(1_000);
        std::thread::sleep(Duration::from_millis(20));
    }
    let order: Vec<String> = receiver
        .on("/ordered")
        .iter()
        .map(|r| r.json()["data"]["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(order, ["0", "0", "1", "1", "2", "2", "3", "3", "4", "4"]);
}

#[test]
fn a_hanging_receiver_does_not_delay_another_subscription() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::start(|_, r| Reply {
        delay: if r.path == "/slow" {
            Duration::from_secs(3)
        } else {
            Duration::ZERO
        },
        ..Reply::status(200)
    });
    let engine = engine(&dir).workers(4).open().unwrap();
    engine
        .subscriptions()
        .create(sub(&receiver, "/slow").events(["slow.*"]))
        .unwrap();
    engine
        .subscriptions()
        .create(sub(&receiver, "/fast").events(["fast.*"]))
        .unwrap();
    for i in 0..6 {
        engine
            .publish(Event::created("slow", i.to_string()))
            .unwrap();
    }
    let started = Instant::now();
    engine.publish(Event::created("fast", "1")).unwrap();
    assert_eq!(receiver.wait_for("/fast", 1, WAIT).len(), 1);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "fast waited {:?}",
        started.elapsed()
    );
}

#[test]
fn handler_subscription_runs_in_process_with_retries() {
    let dir = tempfile::tempdir().unwrap();
    let calls = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&calls);
    let clock = ManualClock::new(1_700_000_000_000);
    let engine = engine(&dir)
        .clock(clock.clone())
        .retry_policy(RetryPolicy::from_secs(&[0, 1]))
        .handler("crm", move |call: &callout::HandlerCall<'_>| {
            seen.lock().unwrap().push(call.attempt);
            if call.attempt == 1 {
                Err("not yet".into())
            } else {
                Ok(())
            }
        })
        .open()
        .unwrap();
    engine
        .subscriptions()
        .create(Subscription::handler("crm").events(["contact.*"]))
        .unwrap();
    let receipt = engine.publish(Event::created("Contact", "1")).unwrap();
    assert!(wait_until(WAIT, || calls.lock().unwrap().len() == 1));
    assert!(wait_until(WAIT, || engine.stats().unwrap().retrying == 1));
    clock.advance_ms(2_000);
    assert!(wait_until(WAIT, || engine.stats().unwrap().delivered == 1));
    assert_eq!(calls.lock().unwrap().as_slice(), [1, 2]);
    assert_eq!(engine.attempts(receipt.deliveries[0]).unwrap().len(), 2);
}

#[test]
fn duplicate_event_ids_are_not_enqueued_twice() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::ok();
    let engine = engine(&dir).open().unwrap();
    engine
        .subscriptions()
        .create(sub(&receiver, "/dup"))
        .unwrap();
    let first = engine
        .publish(Event::created("Ticket", "1").event_id("host-1"))
        .unwrap();
    let again = engine
        .publish(Event::created("Ticket", "1").event_id("host-1"))
        .unwrap();
    assert_eq!(first.deliveries.len(), 1);
    assert!(again.deliveries.is_empty());
    assert_eq!(again.duplicates, ["host-1"]);
    // Inside one batch, the second occurrence is the duplicate.
    let batch = engine
        .publish_batch(vec![
            Event::created("Ticket", "2").event_id("host-2"),
            Event::created("Ticket", "2").event_id("host-2"),
        ])
        .unwrap();
    assert_eq!(batch.deliveries.len(), 1);
    assert_eq!(batch.duplicates, ["host-2"]);
    assert_eq!(receiver.wait_for("/dup", 2, WAIT).len(), 2);
}

#[test]
fn invalid_subscription_is_a_typed_error() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(&dir).open().unwrap();
    let error = engine
        .subscriptions()
        .create(Subscription::new("nope").events(["*"]))
        .unwrap_err();
    assert!(matches!(error, callout::Error::Invalid(_)), "{error}");
}

#[test]
fn purge_deletes_only_the_selected_dead_letters() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::start(|_, _| Reply::status(500));
    let engine = engine(&dir)
        .retry_policy(RetryPolicy::from_secs(&[0]))
        .open()
        .unwrap();
    let a = engine.subscriptions().create(sub(&receiver, "/a")).unwrap();
    let b = engine.subscriptions().create(sub(&receiver, "/b")).unwrap();
    engine.publish(Event::created("Ticket", "1")).unwrap();
    assert!(wait_until(WAIT, || engine.stats().unwrap().dead == 2));
    assert_eq!(
        engine.purge_dead(&DeadFilter::subscription(a.id)).unwrap(),
        1
    );
    assert_eq!(
        engine.dead_letters(&DeadFilter::default()).unwrap().len(),
        1
    );
    assert_eq!(engine.subscription_stats(a.id).unwrap().dead, 0);
    assert_eq!(engine.subscription_stats(b.id).unwrap().dead, 1);
}

#[test]
fn an_engine_that_does_not_deliver_stores_for_the_next_one() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::start(|_, _| Reply::status(200));
    {
        let engine = engine(&dir).deliver(false).open().unwrap();
        engine
            .subscriptions()
            .create(sub(&receiver, "/later"))
            .unwrap();
        engine.publish(Event::created("Ticket", "1")).unwrap();
        assert!(
            receiver.wait(1, Duration::from_millis(200)).is_empty(),
            "nothing sent while not delivering"
        );
        assert_eq!(engine.stats().unwrap().due, 1);
    }
    let engine = engine(&dir).open().unwrap();
    assert_eq!(receiver.wait_for("/later", 1, WAIT).len(), 1);
    assert!(wait_until(WAIT, || engine.stats().unwrap().delivered == 1));
}

/// Subscriptions created and switched off while workers lease: the matcher is always locked
/// before the store's book, so neither side waits for the other for good.
#[test]
fn managing_subscriptions_while_workers_lease_does_not_deadlock() {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let dir = tempfile::tempdir().unwrap();
    let delivered = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&delivered);
    let engine = Arc::new(
        engine(&dir)
            .workers(4)
            .handler("h", move |_: &callout::HandlerCall<'_>| {
                count.fetch_add(1, Ordering::SeqCst);
                Ok(())
            })
            .open()
            .unwrap(),
    );
    engine
        .subscriptions()
        .create(Subscription::handler("h").events(["contact.*"]))
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let publisher = {
        let (engine, stop) = (Arc::clone(&engine), Arc::clone(&stop));
        std::thread::spawn(move || {
            let mut i = 0;
            while !stop.load(Ordering::SeqCst) {
                let events = (0..20)
                    .map(|_| {
                        i += 1;
                        Event::created("Contact", i.to_string())
                    })
                    .collect();
                engine.publish_batch(events).unwrap();
            }
        })
    };
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    {
        let engine = Arc::clone(&engine);
        std::thread::spawn(move || {
            for i in 0..300 {
                let s = engine
                    .subscriptions()
                    .create(Subscription::handler("h").events([format!("other{i}.*")]))
                    .unwrap();
                engine
                    .subscriptions()
                    .set_state(s.id, State::Stopped)
                    .unwrap();
            }
            let _ = done_tx.send(());
        });
    }
    let finished = done_rx.recv_timeout(Duration::from_secs(60)).is_ok();
    stop.store(true, Ordering::SeqCst);
    assert!(
        finished,
        "hung (delivered so far: {})",
        delivered.load(Ordering::SeqCst)
    );
    publisher.join().unwrap();
    assert!(delivered.load(Ordering::SeqCst) > 0);
}
