//! What a compaction costs and gives back: a store churned through enqueue -> lease -> complete
//! (batches of 100 deliveries of 300 B over 10 subscriptions, 10,000 kept due), its size on
//! disk and the process's RSS as it grows without compaction, then the same store compacted
//! several times in a row: each one's records, pause, sizes before and after, and RSS.
//!
//! `cargo run --release -p callout-store --example compaction -- 300000 5` (deliveries cycled,
//! compactions; defaults 300,000 and 5). Automatic compaction is off for the churn, so the
//! growth it stops is visible.

use std::time::Instant;

use callout_store::{Attempt, NewDelivery, Queue, SledStore, StoreConfig};

const BATCH: u64 = 100;

fn rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let total: u64 = args
        .next()
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(300_000);
    let compactions: u32 = args.next().map(|a| a.parse()).transpose()?.unwrap_or(5);
    let dir = tempfile::tempdir()?;
    let config = StoreConfig {
        compact_headroom: 0,
        ..StoreConfig::default()
    };
    let store = SledStore::open(dir.path(), config)?;
    let body = vec![b'x'; 300];
    let delivered = Attempt {
        number: 1,
        at: 1,
        duration_ms: 1,
        status: Some(200),
        outcome: "delivered".into(),
        excerpt: String::new(),
    };
    let started = Instant::now();
    let mut n = 0u64;
    for round in 0..total / BATCH {
        let batch = (0..BATCH)
            .map(|i| {
                n += 1;
                NewDelivery {
                    subscription_id: 1 + i % 10,
                    event_ids: vec![format!("e{n}")],
                    event_type: "contact.updated".into(),
                    body: body.clone(),
                    due_at: 1,
                    ordered: false,
                    message_id: format!("msg_{n}"),
                    order_key: None,
                }
            })
            .collect();
        store.enqueue(&[], batch, 1)?;
        // The first 10,000 stay due: a steady backlog.
        if round >= 100 {
            for leased in store.lease(1, BATCH as usize)? {
                store.complete(leased.token, delivered.clone())?;
            }
        }
        if (round + 1) % (total / BATCH / 4).max(1) == 0 {
            println!(
                "{:>9} enqueued  size_on_disk {:>7.1} MiB  rss {:>6.1} MiB  ({:.1} s)",
                n,
                mib(store.size_on_disk()?),
                rss_mib(),
                started.elapsed().as_secs_f64()
            );
        }
    }
    for i in 1..=compactions {
        let c = store.compact()?;
        println!(
            "compaction {i}: {} records, pause {:.0} ms, {:.1} -> {:.1} MiB, rss {:.1} MiB",
            c.records,
            c.took.as_secs_f64() * 1000.0,
            mib(c.size_before),
            mib(c.size_after),
            rss_mib()
        );
    }
    Ok(())
}
