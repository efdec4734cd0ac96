//! SledStore throughput next to the raw sled limits, measured in the same run: sled `apply_batch` +
//! `flush` of 100 records of about 300 B against `SledStore::enqueue` of 100 deliveries; sled inserts
//! of 1 and 8 publishes' records per `flush` against single-event durable publishes from 1 and 8
//! threads (group commit), at the default durability and at `Sync` beside the raw rate of a
//! 300 B write and `fdatasync` on a file held open; and the full queue cycle enqueue -> lease ->
//! complete. Every figure is in deliveries (records, publishes, or syncs) per second.

// criterion_group! generates an undocumented public function.
#![allow(missing_docs)]

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use callout_store::{Attempt, Durability, NewDelivery, Queue, SledStore, StoreConfig};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

#[path = "support/mod.rs"]
mod support;
use support::raw_sled;

const BATCH: usize = 100;
/// A webhook body of about the size FACTS.md measured sled with.
const BODY: usize = 300;
const THREADS: u64 = 8;

fn body() -> Vec<u8> {
    let mut body = br#"{"type":"contact.updated","data":{"id":"42","name":""#.to_vec();
    body.resize(BODY - 3, b'x');
    body.extend_from_slice(br#""}}"#);
    body
}

fn new_delivery(n: u64, body: &[u8]) -> NewDelivery {
    NewDelivery {
        subscription_id: n % 16 + 1,
        event_ids: vec![format!("evt_{n}")],
        event_type: "contact.updated".into(),
        body: body.to_vec(),
        due_at: 0,
        ordered: false,
        message_id: format!("msg_{n}"),
        order_key: None,
    }
}

fn open(dir: &tempfile::TempDir) -> SledStore {
    open_with(dir, Durability::Flush)
}

fn open_with(dir: &tempfile::TempDir, durability: Durability) -> SledStore {
    let config = StoreConfig {
        durability,
        ..StoreConfig::default()
    };
    SledStore::open(dir.path(), config).expect("bench store opens")
}

fn delivered(at: u64) -> Attempt {
    Attempt {
        number: 1,
        at,
        duration_ms: 1,
        status: Some(200),
        outcome: "delivered".into(),
        excerpt: String::new(),
    }
}

fn store(c: &mut Criterion) {
    let mut group = c.benchmark_group("store");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(4));
    group.warm_up_time(Duration::from_secs(1));
    let body = body();

    // The ceiling: what sled itself does with one atomic batch of 100 records and a flush.
    group.throughput(Throughput::Elements(BATCH as u64));
    group.bench_function("raw_sled_apply_batch_100_flush", |b| {
        let dir = tempfile::tempdir().expect("tempdir");
        let (db, tree) = raw_sled(&dir);
        let mut next = 0u64;
        b.iter(|| {
            let mut batch = sled::Batch::default();
            for _ in 0..BATCH {
                next += 1;
                batch.insert(&next.to_be_bytes(), body.as_slice());
            }
            tree.apply_batch(batch).expect("apply");
            db.flush().expect("flush");
        });
    });

    // The ceiling of the 8-thread goal: what sled itself does when 1 or 8 publishes' records
    // (a ~300 B delivery and an 8 B dedup mark each) share one flush, with no atomicity and no
    // threads. Their ratio bounds what any group commit of 8 on sled can reach.
    for publishes in [1u64, THREADS] {
        group.throughput(Throughput::Elements(publishes));
        let name = format!("raw_sled_insert_flush_publishes/{publishes}");
        group.bench_function(name, |b| {
            let dir = tempfile::tempdir().expect("tempdir");
            let (db, tree) = raw_sled(&dir);
            let mut next = 0u64;
            b.iter(|| {
                for _ in 0..publishes {
                    next += 1;
                    tree.insert(next.to_be_bytes(), body.as_slice())
                        .expect("insert");
                    tree.insert(format!("e evt_{next}").as_bytes(), &next.to_be_bytes())
                        .expect("insert");
                }
                db.flush().expect("flush");
            });
        });
    }

    group.throughput(Throughput::Elements(BATCH as u64));
    group.bench_function("enqueue_batch_100", |b| {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = open(&dir);
        let mut next = 0u64;
        b.iter(|| {
            let batch: Vec<NewDelivery> = (0..BATCH as u64)
                .map(|i| new_delivery(next + i, &body))
                .collect();
            next += BATCH as u64;
            black_box(store.enqueue(&[], batch, 0).expect("enqueue"));
        });
    });

    // The raw limit of Sync: a 300 B write and an fdatasync of a file held open, one thread.
    group.throughput(Throughput::Elements(1));
    group.bench_function("raw_write_fdatasync", |b| {
        use std::io::Write;
        let dir = tempfile::tempdir().expect("tempdir");
        let mut file = std::fs::File::create(dir.path().join("raw")).expect("file");
        b.iter(|| {
            file.write_all(&body).expect("write");
            file.sync_data().expect("fdatasync");
        });
    });

    // One event per publish, with a host event id (so the dedup check is paid too), at the
    // default durability (a flush) and at Sync (a flush and an fdatasync per group commit).
    for (suffix, durability) in [("", Durability::Flush), ("_sync", Durability::Sync)] {
        group.bench_function(format!("publish_single_1_thread{suffix}"), |b| {
            let dir = tempfile::tempdir().expect("tempdir");
            let store = open_with(&dir, durability);
            let mut next = 0u64;
            b.iter(|| {
                next += 1;
                let id = [format!("evt_{next}")];
                black_box(
                    store
                        .enqueue(&id, vec![new_delivery(next, &body)], 0)
                        .expect("enqueue"),
                );
            });
        });

        let dir = tempfile::tempdir().expect("tempdir");
        let store = Arc::new(open_with(&dir, durability));
        let next = Arc::new(AtomicU64::new(0));
        group.bench_function(format!("publish_single_8_threads{suffix}"), |b| {
            b.iter_custom(|iters| {
                let per_thread = iters.div_ceil(THREADS);
                let start = Arc::new(Barrier::new(THREADS as usize + 1));
                let workers: Vec<_> = (0..THREADS)
                    .map(|_| {
                        let (store, next, start, body) =
                            (store.clone(), next.clone(), start.clone(), body.clone());
                        std::thread::spawn(move || {
                            start.wait();
                            for _ in 0..per_thread {
                                let n = next.fetch_add(1, Ordering::Relaxed);
                                let id = [format!("evt_{n}")];
                                store
                                    .enqueue(&id, vec![new_delivery(n, &body)], 0)
                                    .expect("enqueue");
                            }
                        })
                    })
                    .collect();
                start.wait();
                let began = Instant::now();
                for worker in workers {
                    worker.join().expect("publisher thread");
                }
                // Scaled back to `iters`, since the threads together did per_thread * 8.
                began
                    .elapsed()
                    .mul_f64(iters as f64 / (per_thread * THREADS) as f64)
            });
        });
        // What the syncs cost in calls: one per group commit, shared by the threads (not
        // printed when a filter left the bench out).
        if next.load(Ordering::Relaxed) > 0 {
            eprintln!(
                "store/publish_single_8_threads{suffix}: {} publishes, {} flushes, {} sync calls",
                next.load(Ordering::Relaxed),
                store.flush_count(),
                store.sync_count()
            );
        }
    }

    // The whole life of a delivery: durable enqueue of 100, lease them, complete each.
    group.throughput(Throughput::Elements(BATCH as u64));
    group.bench_function("cycle_enqueue_lease_complete_100", |b| {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = open(&dir);
        let mut next = 0u64;
        b.iter(|| {
            let batch: Vec<NewDelivery> = (0..BATCH as u64)
                .map(|i| new_delivery(next + i, &body))
                .collect();
            next += BATCH as u64;
            store.enqueue(&[], batch, next).expect("enqueue");
            let leased = store.lease(next, BATCH).expect("lease");
            assert_eq!(leased.len(), BATCH, "every enqueued delivery is due");
            for delivery in leased {
                store
                    .complete(delivery.token, delivered(next))
                    .expect("complete");
            }
        });
    });
    group.finish();
}

criterion_group!(benches, store);
criterion_main!(benches);
