//! Isolation: receivers that hang or drip hold at most their share of the workers, and the
//! healthy subscriptions beside them are delivered on time with the default worker count.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use callout::deliver::Timeouts;
use callout::{Engine, Event, Subscription};
use callout_testkit::{RawReceiver, Receiver};

#[test]
fn hanging_and_dripping_receivers_do_not_delay_healthy_subscriptions() {
    let dir = tempfile::tempdir().unwrap();
    // Two of twenty subscriptions misbehave (10%): one never answers, one drips its response
    // head a byte at a time. Each holds its connection for 10 s, far past any healthy latency.
    let hanging = RawReceiver::after_request(|connection| {
        connection.pause(Duration::from_secs(10));
    });
    let dripping = RawReceiver::after_request(|mut connection| {
        connection.write(b"HTTP/1.1 200 OK\r\nX-Drip: ");
        connection.repeat(b"a", Duration::from_millis(100), Duration::from_secs(10));
    });
    let healthy = Receiver::ok();
    let engine = Engine::builder(dir.path().join("store"))
        .allow_address("127.0.0.1")
        .poll_interval(Duration::from_millis(5))
        .timeouts(Timeouts {
            connect: Duration::from_secs(2),
            send: Duration::from_secs(2),
            response: Duration::from_secs(4),
            body: Duration::from_secs(2),
        })
        .slow_attempt(Duration::from_millis(500))
        .open()
        .unwrap();
    let create = |url: String| {
        engine
            .subscriptions()
            .create(Subscription::new(url).events(["tick.*"]))
            .unwrap()
    };
    let hostile = [
        create(format!("{}/hang", hanging.url)),
        create(format!("{}/drip", dripping.url)),
    ];
    for n in 0..18 {
        create(format!("{}/healthy/{n}", healthy.url));
    }

    // 40 events at 20 a second: 720 healthy deliveries, and 80 that pile up at the hostile.
    let mut published = HashMap::new();
    let started = Instant::now();
    for n in 0..40u32 {
        let receipt = engine
            .publish(Event::created("tick", n.to_string()))
            .unwrap();
        published.insert(receipt.event_ids[0].clone(), Instant::now());
        let next = started + Duration::from_millis(50) * (n + 1);
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
    }
    let got = healthy.wait(720, Duration::from_secs(20));
    assert_eq!(got.len(), 720, "every healthy delivery arrives");
    let mut latencies: Vec<Duration> = got
        .iter()
        .map(|r| {
            let id = r.json()["data"]["event_id"].as_str().unwrap().to_string();
            r.at.duration_since(published[&id])
        })
        .collect();
    latencies.sort();
    let worst = *latencies.last().unwrap();
    // The hostile receivers hold a connection for 10 s (4 s until the response limit ends the
    // attempt); a healthy delivery held behind them would take seconds, not this.
    assert!(
        worst < Duration::from_secs(2),
        "healthy deliveries waited up to {worst:?} (p50 {:?})",
        latencies[latencies.len() / 2]
    );
    for sub in &hostile {
        let in_flight = engine.subscription_stats(sub.id).unwrap().in_flight;
        assert!(
            in_flight <= 1,
            "a slow subscription had {in_flight} in flight"
        );
    }
}
