//! Isolation under hostile receivers: healthy subscriptions' delivery latency (p50, p99) in a run
//! of 18 healthy subscriptions alone, and in the same run with two more (10% of 20) whose
//! receivers hang or drip, at the default worker count and limits. Prints both and the ratio;
//! the goal is a p99 at most 10% higher with the hostile ones. Bounded: two runs of 200 events
//! at 50 a second, about 15 s in all.
//!
//! `cargo bench --bench isolation`

// A bench binary, not a library.
#![allow(missing_docs)]

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use callout::{Engine, Event, Subscription};
use callout_testkit::{RawReceiver, Receiver, Reply};

const HEALTHY: usize = 18;
const EVENTS: u32 = 200;
const RATE_GAP: Duration = Duration::from_millis(20);

/// Healthy latencies (publish to arrival), sorted, from one run.
fn run(hostile: bool) -> Vec<Duration> {
    let dir = tempfile::tempdir().expect("tempdir");
    let published: &'static Mutex<HashMap<String, Instant>> =
        Box::leak(Box::new(Mutex::new(HashMap::new())));
    let arrived: &'static Mutex<Vec<Duration>> = Box::leak(Box::new(Mutex::new(Vec::new())));
    let healthy = Receiver::start(move |_, request| {
        let body: serde_json::Value = serde_json::from_slice(&request.body).unwrap_or_default();
        if let Some(id) = body["data"]["event_id"].as_str() {
            let at = published.lock().ok().and_then(|p| p.get(id).copied());
            if let (Some(at), Ok(mut arrived)) = (at, arrived.lock()) {
                arrived.push(request.at.duration_since(at));
            }
        }
        Reply::status(200)
    });
    let hanging = RawReceiver::after_request(|connection| {
        connection.pause(Duration::from_secs(20));
    });
    let dripping = RawReceiver::after_request(|mut connection| {
        connection.write(b"HTTP/1.1 200 OK\r\nX-Drip: ");
        connection.repeat(b"a", Duration::from_millis(500), Duration::from_secs(20));
    });
    let engine = Engine::builder(dir.path().join("store"))
        .allow_address("127.0.0.1")
        .open()
        .expect("engine opens");
    let create = |url: String| {
        engine
            .subscriptions()
            .create(Subscription::new(url).events(["tick.*"]))
            .expect("subscription")
    };
    if hostile {
        create(format!("{}/hang", hanging.url));
        create(format!("{}/drip", dripping.url));
    }
    for n in 0..HEALTHY {
        create(format!("{}/healthy/{n}", healthy.url));
    }
    let started = Instant::now();
    for n in 0..EVENTS {
        let id = format!("evt_{n}");
        published
            .lock()
            .expect("lock")
            .insert(id.clone(), Instant::now());
        let mut event = Event::created("tick", n.to_string());
        event.event_id = Some(id);
        engine.publish(event).expect("publish");
        let next = started + RATE_GAP * (n + 1);
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
    }
    let expected = HEALTHY * EVENTS as usize;
    healthy.wait(expected, Duration::from_secs(60));
    // The hostile deliveries still pending are released by the leases; they are not measured.
    let _ = engine.shutdown(Duration::from_millis(100));
    let mut latencies = std::mem::take(&mut *arrived.lock().expect("lock"));
    latencies.sort();
    if latencies.len() < expected {
        eprintln!(
            "only {} of {expected} healthy deliveries arrived",
            latencies.len()
        );
    }
    latencies
}

fn quantile(sorted: &[Duration], q: f64) -> Duration {
    sorted
        .get(((sorted.len() as f64 - 1.0) * q).round() as usize)
        .copied()
        .unwrap_or_default()
}

fn main() {
    // `cargo test --benches` runs bench binaries with `--bench` absent: do nothing then.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let alone = run(false);
    let beside = run(true);
    let (p50a, p99a) = (quantile(&alone, 0.5), quantile(&alone, 0.99));
    let (p50b, p99b) = (quantile(&beside, 0.5), quantile(&beside, 0.99));
    println!(
        "isolation: healthy alone ({} deliveries): p50 {p50a:?} p99 {p99a:?}",
        alone.len()
    );
    println!(
        "isolation: healthy beside 10% hanging/dripping ({} deliveries): p50 {p50b:?} p99 {p99b:?}",
        beside.len()
    );
    println!(
        "isolation: p99 ratio {:.2} (goal <= 1.10)",
        p99b.as_secs_f64() / p99a.as_secs_f64().max(1e-9)
    );
}
