//! Subscription health across instances on one schema: a failure streak counted by one
//! engine goes on in the next, so `too_many_errors` trips on the streak of the whole cluster,
//! an engine that has sent nothing yet paces a subscription by what the others learned, and a
//! rate limit holds for the cluster, not per engine.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use callout::{Engine, EngineBuilder, Event, FailurePolicy, NoticeKind, RetryPolicy, State};
use callout::{Notice, Subscription};
use callout_testkit::{Hold, RawReceiver, Receiver, Reply};

use crate::support::{wait_until, Schema};

const WAIT: Duration = Duration::from_secs(20);

fn engine(schema: &Schema) -> EngineBuilder {
    Engine::builder(Arc::new(schema.open(Duration::from_secs(300))))
        .allow_address("127.0.0.1")
        .workers(2)
}

#[test]
fn a_failure_streak_begun_in_one_instance_trips_too_many_errors_in_the_next() {
    let schema = Schema::new();
    let receiver = Receiver::start(|_, _| Reply::status(500));
    let notices = Arc::new(Mutex::new(Vec::new()));
    // One attempt each within the test: the retry is an hour away.
    let open = |notices: &Arc<Mutex<Vec<NoticeKind>>>| {
        let seen = Arc::clone(notices);
        engine(&schema)
            .retry_policy(RetryPolicy::from_secs(&[0, 3_600]))
            .failure_policy(FailurePolicy {
                consecutive_failures: Some(4),
                failing_for: None,
            })
            .notifier(move |n: &Notice| seen.lock().unwrap().push(n.kind.clone()))
            .open()
            .expect("engine")
    };
    let first = open(&notices);
    let sub = first
        .subscriptions()
        .create(Subscription::new(format!("{}/hook", receiver.url)).events(["ticket.*"]))
        .expect("create");
    for n in 0..2 {
        first
            .publish(Event::created("Ticket", n.to_string()))
            .expect("publish");
    }
    assert_eq!(receiver.wait_for("/hook", 2, WAIT).len(), 2);
    // Shutdown waits for the settles, so both failures are counted.
    first.shutdown(Duration::from_secs(10)).expect("shutdown");
    let state = |engine: &Engine| engine.subscriptions().get(sub.id).unwrap().unwrap().state;

    let second = open(&notices);
    assert_eq!(state(&second), State::Active, "two failures of four");
    for n in 2..4 {
        second
            .publish(Event::created("Ticket", n.to_string()))
            .expect("publish");
    }
    // Counted per instance, the second would be at two failures and never trip.
    assert!(
        wait_until(WAIT, || state(&second) == State::TooManyErrors),
        "switched off on the cluster's streak: {:?}",
        state(&second)
    );
    assert!(wait_until(WAIT, || !notices.lock().unwrap().is_empty()));
    assert_eq!(
        notices.lock().unwrap()[0],
        NoticeKind::TooManyErrors {
            consecutive_failures: 4
        }
    );
    assert_eq!(receiver.on("/hook").len(), 4);
    second.shutdown(Duration::from_secs(10)).expect("shutdown");
}

#[test]
fn an_instance_that_has_sent_nothing_paces_by_what_the_others_learned() {
    let schema = Schema::new();
    // Once started, each request is kept until released (at most 10 s, within the default
    // response timeout).
    let hold = Hold::new(Duration::from_secs(10));
    let receiver = RawReceiver::holding(Arc::clone(&hold));
    let open = || {
        engine(&schema)
            .max_in_flight_per_subscription(4)
            .open()
            .expect("engine")
    };
    let first = open();
    first
        .subscriptions()
        .create(Subscription::new(format!("{}/hook", receiver.url)).events(["ticket.*"]))
        .expect("create");
    // Quick attempts in a row widen the pace to the bound of 4.
    for n in 0..6 {
        first
            .publish(Event::created("Ticket", n.to_string()))
            .expect("publish");
    }
    assert_eq!(receiver.wait_count(6, WAIT), 6);

    // The second has sent nothing: by a pace of its own it would start at one in flight, and
    // with the first's two workers busy it would lease nothing (or one, if it came first).
    let second = open();
    hold.start();
    for n in 6..14 {
        second
            .publish(Event::created("Ticket", n.to_string()))
            .expect("publish");
    }
    let four = hold.wait_held(4, WAIT);
    let most = hold.held();
    hold.release();
    assert!(four, "four in flight, two per engine; held {most}");
    assert_eq!(receiver.wait_count(14, WAIT), 14);
    first.shutdown(Duration::from_secs(10)).expect("shutdown");
    second.shutdown(Duration::from_secs(10)).expect("shutdown");
}

#[test]
fn a_rate_limit_holds_across_instances() {
    let schema = Schema::new();
    let receiver = Receiver::ok();
    let engines = [
        engine(&schema).open().expect("engine"),
        engine(&schema).open().expect("engine"),
    ];
    let mut sub = Subscription::new(format!("{}/hook", receiver.url)).events(["ticket.*"]);
    sub.rate_limit = Some(10);
    engines[0].subscriptions().create(sub).expect("create");
    // The second engine learns of the subscription through its notice.
    assert!(wait_until(WAIT, || engines[1]
        .explain(&Event::created("Ticket", "x"))
        .expect("explain")
        .iter()
        .any(|(_, verdict)| verdict.is_ok())));
    for n in 0..20 {
        engines[n % 2]
            .publish(Event::created("Ticket", n.to_string()))
            .expect("publish");
    }
    let got = receiver.wait_for("/hook", 20, WAIT);
    assert_eq!(got.len(), 20);
    // Ten a second for the two together: 19 gaps of 100 ms. A slot per engine would let each
    // send ten a second, 20 in about 0.9 s.
    let span = got[19].at.duration_since(got[0].at);
    assert!(span >= Duration::from_millis(1_500), "20 sent in {span:?}");
    for engine in engines {
        engine.shutdown(Duration::from_secs(10)).expect("shutdown");
    }
}
