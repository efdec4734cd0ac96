//! Matching throughput: events/s for 1k, 10k and 100k subscriptions over 100 entities with
//! filters, where every event has about the same number of candidates (ten), so the figures
//! show whether cost follows candidates or the total number of subscriptions.

// criterion_group! generates an undocumented public function.
#![allow(missing_docs)]

use std::hint::black_box;

use callout_core::{Event, Matcher, Subscription};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use serde_json::json;

const ENTITIES: usize = 100;
/// Subscriptions per tenant: ten per entity, so an event meets about ten candidates.
const PER_TENANT: usize = 1_000;
const EVENTS: usize = 1_000;

fn matcher(total: usize) -> Matcher {
    let tenants = (total / PER_TENANT).max(1);
    let subs = (0..total).map(|i| {
        let tenant = i % tenants;
        let entity = (i / tenants) % ENTITIES;
        let mut sub = Subscription::new("https://receiver.example/hooks")
            .events([format!("Entity{entity}.*")])
            .tenant(format!("tenant{tenant}"))
            .filter(
                &format!("Entity{entity}"),
                "score",
                "gte",
                json!((i % 7) as i64),
            )
            .filter(
                &format!("Entity{entity}"),
                "status",
                "ieq",
                json!(["open", "pending"]),
            );
        sub.id = i as u64 + 1;
        sub
    });
    Matcher::from_subscriptions(subs).expect("bench subscriptions are valid")
}

fn events(total: usize) -> Vec<Event> {
    let tenants = (total / PER_TENANT).max(1);
    // A fixed-step walk over tenants and entities: deterministic, no RNG dependency.
    (0..EVENTS)
        .map(|i| {
            Event::updated(format!("Entity{}", (i * 37) % ENTITIES), i.to_string())
                .tenant(format!("tenant{}", (i * 13) % tenants))
                .data(json!({"score": (i % 10) as i64, "status": if i % 3 == 0 { "Closed" } else { "Open" }}))
                .changed(["status"])
        })
        .collect()
}

fn matching(c: &mut Criterion) {
    let mut group = c.benchmark_group("matching");
    group.sample_size(20);
    group.throughput(Throughput::Elements(EVENTS as u64));
    for total in [1_000, 10_000, 100_000] {
        let matcher = matcher(total);
        let events = events(total);
        let candidates: usize = events.iter().map(|e| matcher.matches(e).len()).sum();
        eprintln!(
            "{total} subscriptions: {:.1} matches per event",
            candidates as f64 / EVENTS as f64
        );
        group.bench_with_input(
            BenchmarkId::new("subscriptions", total),
            &events,
            |b, events| {
                b.iter(|| {
                    let mut hits = 0;
                    for event in events {
                        hits += matcher.matches(black_box(event)).len();
                    }
                    black_box(hits)
                })
            },
        );
    }
    group.finish();
}

criterion_group!(benches, matching);
criterion_main!(benches);
