//! End to end: publish -> durable enqueue -> dispatcher -> worker -> signed POST -> received,
//! to a local keep-alive receiver, beside the raw ureq loopback rate measured in the same run.
//! Throughput from 1 and 8 publishers; latency (p50/p99, printed) at low load, one at a time.
//! Beside them, the engine's own sender alone (which writes each request in one piece, where
//! raw ureq writes head and body apart), and the ceiling of an engine with that sender on
//! sled: the sender plus bare sled doing the writes a delivery needs in the store's layout (see
//! [`raw_sled_and_sender`]).
//!
//! The engines use the builder's memory defaults; `CALLOUT_E2E_CACHE` (bytes, sled's cache,
//! `EngineBuilder::cache_capacity`) and `CALLOUT_E2E_FRESH` (bytes of just-published records,
//! `EngineBuilder::fresh_capacity`) set others, to measure what memory buys.

// criterion_group! generates an undocumented public function.
#![allow(missing_docs)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use callout::{Engine, Event, Subscription};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

#[path = "support/mod.rs"]
mod support;
use callout_deliver::{Request, Sender};
use callout_testkit::RawReceiver;
use support::{env_opt, raw_agent, raw_send, raw_sled, run_split, sender_send, signed_sender};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const WORKERS: usize = 4;

struct Rig {
    engine: Engine,
    /// Counts requests; a waiting bench sleeps until its count is reached rather than polling
    /// (raw ureq's threads are joined, and a poll every 50 us costs a thread switch each on 2
    /// cores, and blurs the latency).
    receiver: RawReceiver,
    _dir: tempfile::TempDir,
}

/// How long a bench waits for the requests it caused before going on without them.
const RECEIVED_LIMIT: Duration = Duration::from_secs(60);

fn rig() -> Rig {
    rig_with(|s| s)
}

/// A rig whose subscription is shaped by `shape` (e.g. one event per request).
fn rig_with(shape: impl Fn(Subscription) -> Subscription) -> Rig {
    let receiver = RawReceiver::counting_ok();
    let url = format!("{}/hook", receiver.url);
    let dir = tempfile::tempdir().expect("tempdir");
    // One subscription: all workers may serve it, as many requests in flight as the raw
    // rate's threads (the default keeps one worker free for other subscriptions).
    let mut builder = Engine::builder(dir.path().join("store"))
        .workers(WORKERS)
        .max_in_flight_per_subscription(WORKERS)
        .allow_address("127.0.0.1");
    // The engine's memory defaults unless set, to measure what memory buys (BENCHMARKS.md).
    if let Some(cache) = env_opt("CALLOUT_E2E_CACHE") {
        builder = builder.cache_capacity(cache);
    }
    if let Some(fresh) = env_opt("CALLOUT_E2E_FRESH") {
        builder = builder.fresh_capacity(usize::try_from(fresh).unwrap_or(usize::MAX));
    }
    let engine = builder.open().expect("engine opens");
    engine
        .subscriptions()
        .create(shape(
            Subscription::new(url).events(["contact.*"]).secret(SECRET),
        ))
        .expect("subscription");
    Rig {
        engine,
        receiver,
        _dir: dir,
    }
}

fn event(i: u64) -> Event {
    Event::updated("Contact", i.to_string())
        .data(serde_json::json!({"email1": format!("user{i}@example.com"), "name": "Ada", "notes": "x".repeat(600)}))
        .changed(["email1"])
}

fn end_to_end(c: &mut Criterion) {
    let mut group = c.benchmark_group("end_to_end");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(4));

    // The ceiling: raw ureq keep-alive POSTs of the same size, from as many threads as workers.
    let raw_receiver = RawReceiver::counting_ok();
    let raw_url = format!("{}/hook", raw_receiver.url);
    let agent = raw_agent();
    let body =
        serde_json::to_vec(&serde_json::json!({"data": "x".repeat(900)})).unwrap_or_default();
    group.throughput(Throughput::Elements(1));
    group.bench_function(BenchmarkId::new("raw_ureq", WORKERS), |b| {
        b.iter_custom(|iters| run_split(iters, WORKERS, |_| raw_send(&agent, &raw_url, &body, &[])))
    });

    // The engine's sender alone: the same requests, signed, each written in one piece.
    let (sender, request) = signed_sender(&raw_url, &body);
    group.bench_function(BenchmarkId::new("signed_sender", WORKERS), |b| {
        b.iter_custom(|iters| run_split(iters, WORKERS, |_| sender_send(&sender, &request)))
    });

    // The sender's requests, each with the sled writes of a durable delivery and nothing else.
    let (dir, ceiling) = (tempfile::tempdir().expect("tempdir"), AtomicU64::new(0));
    let (db, tree) = raw_sled(&dir);
    group.bench_function(BenchmarkId::new("raw_sled_and_sender", WORKERS), |b| {
        b.iter_custom(|iters| {
            let first = ceiling.fetch_add(iters, Ordering::SeqCst);
            raw_sled_and_sender(&db, &tree, (first, iters), (&sender, &request))
        })
    });

    for publishers in [1usize, 8] {
        let rig = rig();
        group.bench_function(BenchmarkId::new("publish_to_received", publishers), |b| {
            b.iter_custom(|iters| {
                let target = rig.receiver.count() + iters as usize;
                let started = Instant::now();
                run_split(iters, publishers, |i| {
                    rig.engine.publish(event(i)).expect("publish");
                });
                rig.receiver.wait_count(target, RECEIVED_LIMIT);
                started.elapsed()
            })
        });
    }
    // A bulk producer: one publisher, `publish_batch` of 100 events (one flush per batch),
    // still one event per request (chunk_size 1) so it compares with the raw rate.
    let bulk = rig_with(|s| s.chunk_size(1));
    group.bench_function(BenchmarkId::new("publish_batch_100_to_received", 1), |b| {
        b.iter_custom(|iters| {
            let target = bulk.receiver.count() + iters as usize;
            let started = Instant::now();
            let mut sent = 0;
            while sent < iters {
                let n = (iters - sent).min(100);
                let events = (sent..sent + n).map(event).collect();
                bulk.engine.publish_batch(events).expect("publish_batch");
                sent += n;
            }
            bulk.receiver.wait_count(target, RECEIVED_LIMIT);
            started.elapsed()
        })
    });
    group.finish();

    // Latency at low load: one event at a time, publish call to request received.
    let rig = rig();
    let mut samples: Vec<Duration> = (0..300u64)
        .map(|i| {
            let target = rig.receiver.count() + 1;
            let started = Instant::now();
            rig.engine.publish(event(i)).expect("publish");
            rig.receiver.wait_count(target, RECEIVED_LIMIT);
            started.elapsed()
        })
        .collect();
    samples.sort();
    let at = |q: f64| samples[((samples.len() as f64 * q) as usize).min(samples.len() - 1)];
    eprintln!(
        "latency publish->received, low load (300 samples): p50 {:?} p99 {:?} max {:?}",
        at(0.50),
        at(0.99),
        samples[samples.len() - 1]
    );
}

/// `count` deliveries (ids from `first`) the way bare sled and the engine's sender would carry
/// them at the least: a publisher inserts each 1,000 B record, 100 per `apply_batch` and one
/// `flush` (a durable `publish_batch`), and hands it over in memory (as the store's lease does);
/// `WORKERS` threads each send one signed request through the sender, then remove its record,
/// 256 deliveries per unflushed batch, which also writes their attempts (40 B each) as records
/// of at most 16 KiB and a pointer key per 64 ids (the store's layout and write-behind). No
/// matching, no body shaping, no dispatcher, no locks of ours.
fn raw_sled_and_sender(
    db: &sled::Db,
    tree: &sled::Tree,
    (first, count): (u64, u64),
    (sender, request): (&Sender, &Request),
) -> Duration {
    let record = vec![b'x'; 1000];
    let key = |tag: u8, id: u64| {
        let mut key = vec![tag];
        key.extend_from_slice(&id.to_be_bytes());
        key
    };
    let (ids, handed) = crossbeam_channel::bounded::<u64>(count as usize);
    // The batch, and the attempts in it as (id, bytes).
    let behind = std::sync::Mutex::new((sled::Batch::default(), Vec::<(u64, Vec<u8>)>::new()));
    let started = Instant::now();
    std::thread::scope(|scope| {
        scope.spawn(|| {
            let mut next = first;
            while next < first + count {
                let end = (next + 100).min(first + count);
                let mut batch = sled::Batch::default();
                (next..end).for_each(|id| batch.insert(key(b'D', id), record.clone()));
                tree.apply_batch(batch).expect("apply");
                db.flush().expect("flush");
                (next..end).for_each(|id| ids.send(id).expect("hand over"));
                next = end;
            }
            drop(ids);
        });
        for _ in 0..WORKERS {
            let handed = handed.clone();
            let (key, behind) = (&key, &behind);
            scope.spawn(move || {
                while let Ok(id) = handed.recv() {
                    sender_send(sender, request);
                    let at = started.elapsed().as_micros() as u64;
                    let full = behind.lock().map(|mut behind| {
                        behind.0.remove(key(b'D', id));
                        let head = [at, id, 1].map(u64::to_be_bytes).concat();
                        behind.1.push((id, [head, vec![7u8; 44]].concat()));
                        (behind.1.len() == 256).then(|| {
                            let (mut batch, attempts) = std::mem::take(&mut *behind);
                            for (n, part) in attempts.chunks(16 * 1024 / 68).enumerate() {
                                let value: Vec<u8> =
                                    part.iter().flat_map(|a| a.1.clone()).collect();
                                batch.insert(key(b'A', id + n as u64), value);
                            }
                            let mut buckets: Vec<u64> = attempts.iter().map(|a| a.0 >> 6).collect();
                            buckets.sort_unstable();
                            buckets.dedup();
                            for bucket in buckets {
                                batch.insert([key(b'b', bucket), key(b'A', id)].concat(), vec![]);
                            }
                            batch
                        })
                    });
                    if let Ok(Some(batch)) = full {
                        tree.apply_batch(batch).expect("apply");
                    }
                }
            });
        }
    });
    let elapsed = started.elapsed();
    if let Ok(mut behind) = behind.lock() {
        let _ = tree.apply_batch(std::mem::take(&mut behind.0));
    }
    elapsed
}

criterion_group!(benches, end_to_end);
criterion_main!(benches);
