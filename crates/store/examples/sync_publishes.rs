//! Durable single-event publishes on a `Durability::Sync` store, for counting system calls:
//! `strace -f -c -e trace=fsync,fdatasync,openat,sync_file_range cargo run --release -p
//! callout-store --example sync_publishes -- 1000` (scripts/sync-strace.sh). Prints the
//! store's own counts of flushes and sync calls.

use callout_store::{Durability, NewDelivery, Queue, SledStore, StoreConfig};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let count: u64 = std::env::args()
        .nth(1)
        .map(|n| n.parse())
        .transpose()?
        .unwrap_or(1000)
        .min(1_000_000);
    let dir = tempfile::tempdir()?;
    let config = StoreConfig {
        durability: Durability::Sync,
        ..StoreConfig::default()
    };
    let store = SledStore::open(dir.path(), config)?;
    let (flushes, syncs) = (store.flush_count(), store.sync_count());
    for n in 0..count {
        store.enqueue(
            &[format!("evt_{n}")],
            vec![NewDelivery {
                subscription_id: n % 16 + 1,
                event_ids: vec![format!("evt_{n}")],
                event_type: "contact.updated".into(),
                body: vec![b'x'; 300],
                due_at: 0,
                ordered: false,
                message_id: format!("msg_{n}"),
                order_key: None,
            }],
            0,
        )?;
    }
    println!(
        "{count} publishes: {} flushes, {} sync calls",
        store.flush_count() - flushes,
        store.sync_count() - syncs
    );
    Ok(())
}
