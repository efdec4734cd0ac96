//! The PostgreSQL backend's rates beside PostgreSQL's own in the same run: bare single-row
//! INSERT transactions through the `postgres` crate (1 and 8 connections), durable enqueues
//! of one delivery (1 and 8 threads) and of 100, the lease -> complete cycle, `counts()`
//! with 1M deliveries queued, and end to end (`publish_batch` of 100 to a receiver on
//! 127.0.0.1) with 1 and 2 engine instances on one schema. Needs a server: run it under the
//! test cluster, `scripts/with-postgres.sh cargo bench -p callout-postgres --bench postgres`.
//! Figures go to docs/BENCHMARKS.md.

use std::sync::Arc;
use std::time::{Duration, Instant};

use callout::{Engine, Event, Subscription};
use callout_postgres::{PgConfig, PgStore};
use callout_store::conformance::{attempt, delivery};
use callout_store::{NewDelivery, Queue};
use callout_testkit::RawReceiver;

const SERVER: &str = "CALLOUT_TEST_POSTGRES";

fn main() {
    // `cargo bench` passes `--bench`; a test run of the bench target (cargo test
    // --benches) has nothing to measure.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let Ok(url) = std::env::var(SERVER) else {
        eprintln!(
            "{SERVER} is not set: run under scripts/with-postgres.sh cargo bench -p callout-postgres"
        );
        std::process::exit(2);
    };
    let schema = format!("callout_bench_{}", std::process::id());
    let result = std::panic::catch_unwind(|| run(&url, &schema));
    drop_schema(&url, &schema);
    if result.is_err() {
        std::process::exit(1);
    }
}

fn run(url: &str, schema: &str) {
    let mut config = PgConfig::new(url);
    config.schema = schema.to_string();
    let store = Arc::new(PgStore::open(config).expect("store opens"));

    // `cargo bench ... -- end_to_end`: the end-to-end runs alone.
    if !std::env::args().any(|a| a == "end_to_end") {
        store_steps(url, schema, &store);
    }
    end_to_ends(url, schema);
}

/// Rounds of the raw inserts and the single enqueues, taken in turns: on a noisy machine one
/// pair can land in a quiet second and the other in a busy one, so the ratios are each
/// round's, and the median of them is printed.
const ROUNDS: usize = 5;

/// The store's own steps, each beside PostgreSQL's raw rate in the same run.
fn store_steps(url: &str, schema: &str, store: &Arc<PgStore>) {
    let rounds: Vec<[f64; 4]> = (0..ROUNDS)
        .map(|_| {
            [
                raw_inserts(url, schema, 1, 1_000),
                enqueues(store, 1, 1_000, 1),
                raw_inserts(url, schema, 8, 250),
                enqueues(store, 8, 250, 1),
            ]
        })
        .collect();
    let median = |values: &mut Vec<f64>| {
        values.sort_by(f64::total_cmp);
        values[values.len() / 2]
    };
    let of = |rounds: &[[f64; 4]], n: usize| rounds.iter().map(|r| r[n]).collect::<Vec<_>>();
    let (raw_1, single_1) = (median(&mut of(&rounds, 0)), median(&mut of(&rounds, 1)));
    let (raw_8, single_8) = (median(&mut of(&rounds, 2)), median(&mut of(&rounds, 3)));
    let mut share: Vec<f64> = rounds.iter().map(|r| r[1] / r[0]).collect();
    let mut scale: Vec<f64> = rounds.iter().map(|r| r[3] / r[1]).collect();
    let (low_share, low_scale) = (
        share.iter().copied().fold(f64::MAX, f64::min),
        scale.iter().copied().fold(f64::MAX, f64::min),
    );
    let (share, scale) = (median(&mut share), median(&mut scale));
    let batch_100 = enqueues(store, 1, 100, 100);
    println!("medians of {ROUNDS} rounds, each raw and enqueue in turns:");
    println!("raw INSERT transactions, 1 connection:  {raw_1:>8.0}/s");
    println!("raw INSERT transactions, 8 connections: {raw_8:>8.0}/s");
    println!(
        "enqueue 1 delivery, 1 thread:  {single_1:>8.0}/s ({:.0}% of raw; lowest round {:.0}%)",
        100.0 * share,
        100.0 * low_share
    );
    println!(
        "enqueue 1 delivery, 8 threads: {single_8:>8.0}/s ({scale:.1}x one thread; lowest round \
         {low_scale:.1}x)"
    );
    println!("enqueue 100 deliveries a call: {batch_100:>8.0} deliveries/s");

    drain(store);
    let cycle_1 = cycles(store, 1, 4_000);
    drain(store);
    let cycle_4 = cycles(store, 4, 4_000);
    println!("lease -> complete, 1 thread:  {cycle_1:>8.0} cycles/s");
    println!("lease -> complete, 4 threads: {cycle_4:>8.0} cycles/s");

    let (stats_ms, lease_ms) = at_a_million(url, schema, store);
    println!("counts() with 1M queued: median {stats_ms:.2} ms");
    println!("lease(10) with 1M queued: median {lease_ms:.2} ms");
}

/// End to end with 1 and 2 instances at the backend's default worker count, and with 1 and
/// 2 instances of 4 workers each (the engine's default on sled), each run on a schema of its
/// own.
fn end_to_ends(url: &str, schema: &str) {
    for (workers, instances) in [(None, 1), (None, 2), (Some(4), 1), (Some(4), 2)] {
        let shown = workers.map_or("default".to_string(), |w: usize| w.to_string());
        let e2e_schema = format!("{schema}_e2e{instances}_{shown}");
        let result = std::panic::catch_unwind(|| end_to_end(url, &e2e_schema, instances, workers));
        drop_schema(url, &e2e_schema);
        let (rate, secs) = result.expect("end to end");
        println!(
            "end to end, publish_batch of 100, {instances} instance(s), {shown} workers: \
             {rate:>8.0} deliveries/s ({E2E_DELIVERIES} in {secs:.2} s)"
        );
    }
}

/// Subscriptions in the end-to-end run; each event matches all of them.
const E2E_SUBSCRIPTIONS: usize = 10;
/// Deliveries in the end-to-end run: 2,000 events to 10 subscriptions.
const E2E_DELIVERIES: usize = 20_000;

/// Publishes `E2E_DELIVERIES` in `publish_batch` calls of 100 events, taking turns across
/// `instances` engines on one schema (each with `workers`, or the default), and times them from
/// the first publish until the receiver has every one: deliveries a second, and the seconds.
fn end_to_end(url: &str, schema: &str, instances: usize, workers: Option<usize>) -> (f64, f64) {
    // Counts requests without keeping them, as benches/end_to_end.rs does.
    let receiver = RawReceiver::counting_ok();
    let engines: Vec<Engine> = (0..instances)
        .map(|_| {
            let mut config = PgConfig::new(url);
            config.schema = schema.to_string();
            let store = PgStore::open(config).expect("store opens");
            let builder = Engine::builder(Arc::new(store)).allow_address("127.0.0.1");
            match workers {
                Some(workers) => builder.workers(workers),
                None => builder,
            }
            .open()
            .expect("engine opens")
        })
        .collect();
    for n in 0..E2E_SUBSCRIPTIONS {
        engines[0]
            .subscriptions()
            .create(Subscription::new(format!("{}/s{n}", receiver.url)).events(["ticket.*"]))
            .expect("create");
    }
    // Every engine matches all of them (the others hear of them by NOTIFY), within 10 s.
    let probe = Event::created("Ticket", "probe");
    let deadline = Instant::now() + Duration::from_secs(10);
    for engine in &engines {
        let matched = || {
            let explained = engine.explain(&probe).expect("explain");
            explained
                .iter()
                .filter(|(_, verdict)| verdict.is_ok())
                .count()
        };
        while matched() < E2E_SUBSCRIPTIONS {
            assert!(
                Instant::now() < deadline,
                "subscriptions reach every engine"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    let events = E2E_DELIVERIES / E2E_SUBSCRIPTIONS;
    let started = Instant::now();
    for (call, first) in (0..events).step_by(100).enumerate() {
        let batch = (first..first + 100)
            .map(|n| Event::created("Ticket", n.to_string()))
            .collect();
        engines[call % instances]
            .publish_batch(batch)
            .expect("publish_batch");
    }
    let got = receiver.wait_count(E2E_DELIVERIES, Duration::from_secs(300));
    let secs = started.elapsed().as_secs_f64();
    assert_eq!(got, E2E_DELIVERIES, "every delivery arrives");
    for engine in engines {
        engine.shutdown(Duration::from_secs(10)).expect("shutdown");
    }
    (E2E_DELIVERIES as f64 / secs, secs)
}

/// Bare single-row INSERT transactions, each committed (synchronous_commit on), from
/// `threads` connections of `each`.
fn raw_inserts(url: &str, schema: &str, threads: usize, each: usize) -> f64 {
    let mut setup = postgres::Client::connect(url, postgres::NoTls).expect("connect");
    setup
        .batch_execute(&format!(
            "CREATE TABLE IF NOT EXISTS {schema}.raw (id bigserial PRIMARY KEY, body bytea)"
        ))
        .expect("raw table");
    let started = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let (url, schema) = (url.to_string(), schema.to_string());
            std::thread::spawn(move || {
                let mut client = postgres::Client::connect(&url, postgres::NoTls).expect("connect");
                let insert = client
                    .prepare(&format!("INSERT INTO {schema}.raw (body) VALUES ($1)"))
                    .expect("prepare");
                let body = vec![b'x'; 300];
                for _ in 0..each {
                    client.execute(&insert, &[&body]).expect("insert");
                }
            })
        })
        .collect();
    for handle in handles {
        handle.join().expect("raw thread");
    }
    (threads * each) as f64 / started.elapsed().as_secs_f64()
}

fn new(n: usize) -> NewDelivery {
    NewDelivery {
        body: vec![b'x'; 300],
        ..delivery((n % 10 + 1) as u64, &format!("e{n}"), 0)
    }
}

/// Durable enqueue calls of `per_call` deliveries from `threads` threads, `calls` each;
/// deliveries per second.
fn enqueues(store: &Arc<PgStore>, threads: usize, calls: usize, per_call: usize) -> f64 {
    let started = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let store = Arc::clone(store);
            std::thread::spawn(move || {
                for c in 0..calls {
                    let batch = (0..per_call).map(|n| new(c * per_call + n)).collect();
                    store.enqueue(&[], batch, 0).expect("enqueue");
                }
            })
        })
        .collect();
    for handle in handles {
        handle.join().expect("enqueue thread");
    }
    (threads * calls * per_call) as f64 / started.elapsed().as_secs_f64()
}

/// Completes everything queued so far, so a measurement starts from an empty queue.
fn drain(store: &PgStore) {
    let deadline = Instant::now() + Duration::from_secs(300);
    while Instant::now() < deadline {
        let leased = store.lease(0, 500).expect("lease");
        if leased.is_empty() {
            return;
        }
        for l in leased {
            store
                .complete(l.token, attempt(1, 1, "delivered"))
                .expect("complete");
        }
    }
}

/// `total` deliveries enqueued, then leased ten at a time and completed one by one from
/// `threads` threads; cycles per second.
fn cycles(store: &Arc<PgStore>, threads: usize, total: usize) -> f64 {
    let batch: Vec<NewDelivery> = (0..total).map(new).collect();
    for chunk in batch.chunks(1_000) {
        store.enqueue(&[], chunk.to_vec(), 0).expect("enqueue");
    }
    let started = Instant::now();
    let deadline = started + Duration::from_secs(300);
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let store = Arc::clone(store);
            std::thread::spawn(move || {
                let mut done = 0;
                let mut empty = 0;
                while empty < 20 && Instant::now() < deadline {
                    let leased = store.lease(0, 10).expect("lease");
                    if leased.is_empty() {
                        empty += 1;
                        continue;
                    }
                    empty = 0;
                    for l in leased {
                        store
                            .complete(l.token, attempt(1, 1, "delivered"))
                            .expect("complete");
                        done += 1;
                    }
                }
                done
            })
        })
        .collect();
    let done: usize = handles.into_iter().map(|h| h.join().expect("cycler")).sum();
    done as f64 / started.elapsed().as_secs_f64()
}

/// Fills the queue to 1M due deliveries over 100 subscriptions (in SQL, counts included, as
/// enqueues would have kept them), then times `counts()` and a lease of 10: medians of 21.
fn at_a_million(url: &str, schema: &str, store: &PgStore) -> (f64, f64) {
    let mut client = postgres::Client::connect(url, postgres::NoTls).expect("connect");
    client
        .batch_execute(&format!(
            "SET search_path TO {schema};
             INSERT INTO deliveries (id, subscription, event_ids, event_type, body, message_id,
                                     due_at, created_at, ordered, state)
               SELECT 1000000000 + g, 1000 + g % 100, '[\"e\"]', 'contact.created',
                      '\\x7b7d', 'msg_' || g, 0, 0, false, 0
               FROM generate_series(1, 1000000) g;
             INSERT INTO queue_state (subscription, due)
               SELECT 1000 + g % 100, count(*) FROM generate_series(1, 1000000) g GROUP BY 1;
             ANALYZE deliveries; ANALYZE queue_state;"
        ))
        .expect("a million rows");
    let median = |mut samples: Vec<f64>| {
        samples.sort_by(f64::total_cmp);
        samples[samples.len() / 2]
    };
    let stats: Vec<f64> = (0..21)
        .map(|_| {
            let started = Instant::now();
            let counts = store.counts().expect("counts");
            assert!(counts.due >= 1_000_000);
            started.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    let leases: Vec<f64> = (0..21)
        .map(|_| {
            let started = Instant::now();
            let leased = store.lease(0, 10).expect("lease");
            assert_eq!(leased.len(), 10);
            started.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    (median(stats), median(leases))
}

fn drop_schema(url: &str, schema: &str) {
    if let Ok(mut client) = postgres::Client::connect(url, postgres::NoTls) {
        let _ = client.batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"));
    }
}
