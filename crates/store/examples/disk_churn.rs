//! Disk size of a store under churn: deliveries cycled through enqueue -> lease -> complete in
//! batches of 100 (about 300 B bodies, one host event id each), with `prune` called every ten
//! batches as a host would, on a simulated clock (10 ms per batch, so 1M deliveries span 100 s)
//! and retentions of 60 s, so pruning really removes attempts and event ids.
//!
//! `cargo run --release -p callout-store --example disk_churn -- 1000000`
//! prints `SledStore::size_on_disk()` and `du -sh` at 0, 1/4, 1/2 and all of the cycles.

use std::time::{Duration, Instant};

use callout_store::{Attempt, History, NewDelivery, Queue, SledStore, StoreConfig};

const BATCH: u64 = 100;
const STEP_MS: u64 = 10;

fn du(dir: &std::path::Path) -> String {
    std::process::Command::new("du")
        .arg("-sh")
        .arg(dir)
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "?".into())
}

fn report(store: &SledStore, dir: &std::path::Path, cycles: u64, started: Instant) {
    let size = store.size_on_disk().expect("size");
    println!(
        "{cycles:>9} deliveries  size_on_disk {:>7.1} MiB  du -sh {:>6}  ({:.1} s)",
        size as f64 / (1024.0 * 1024.0),
        du(dir),
        started.elapsed().as_secs_f64()
    );
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let total: u64 = std::env::args()
        .nth(1)
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(1_000_000);
    let dir = tempfile::tempdir()?;
    let config = StoreConfig {
        attempt_retention: Duration::from_secs(60),
        dedup_retention: Duration::from_secs(60),
        ..StoreConfig::default()
    };
    let store = SledStore::open(dir.path(), config)?;
    let mut body = br#"{"type":"contact.updated","data":{"id":"42","name":""#.to_vec();
    body.resize(297, b'x');
    body.extend_from_slice(br#""}}"#);
    let started = Instant::now();
    let marks = [total / 4, total / 2, total];
    report(&store, dir.path(), 0, started);
    let mut done = 0;
    let mut now = 1_000;
    let mut pruned = 0;
    while done < total {
        now += STEP_MS;
        let ids: Vec<String> = (done..done + BATCH).map(|n| format!("evt_{n}")).collect();
        let batch: Vec<NewDelivery> = ids
            .iter()
            .enumerate()
            .map(|(i, id)| NewDelivery {
                subscription_id: i as u64 % 16 + 1,
                event_ids: vec![id.clone()],
                event_type: "contact.updated".into(),
                body: body.clone(),
                due_at: now,
                ordered: false,
                message_id: format!("msg_{id}"),
                order_key: None,
            })
            .collect();
        store.enqueue(&ids, batch, now)?;
        for d in store.lease(now, BATCH as usize)? {
            let attempt = Attempt {
                number: 1,
                at: now,
                duration_ms: 1,
                status: Some(200),
                outcome: "delivered".into(),
                excerpt: String::new(),
            };
            store.complete(d.token, attempt)?;
        }
        done += BATCH;
        if (done / BATCH).is_multiple_of(10) {
            pruned += store.prune(now, 10_000)?;
        }
        if marks.contains(&done) {
            store.flush()?;
            report(&store, dir.path(), done, started);
        }
    }
    let counts = store.counts()?;
    println!(
        "delivered {}, due {}, pruned {pruned} records",
        counts.delivered, counts.due
    );
    Ok(())
}
