//! Durability on PostgreSQL: a child process publishes from four threads until it is killed
//! with SIGKILL; every publish it saw acknowledged has its delivery in the queue afterwards.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use callout::{Engine, Event, Subscription};
use callout_store::{History, Registry};

use crate::support::Schema;

const CHILD_SCHEMA: &str = "CALLOUT_PG_CRASH_CHILD_SCHEMA";
const LEASE: Duration = Duration::from_secs(300);

/// The child's side: publish from four threads until killed, printing each acknowledged
/// delivery id.
fn child(schema: &str) -> ! {
    let mut config = callout_postgres::PgConfig::new(crate::support::server_url());
    config.schema = schema.to_string();
    let store = callout_postgres::PgStore::open(config).expect("child opens the store");
    let engine = Arc::new(
        Engine::builder(Arc::new(store))
            .deliver(false)
            .open()
            .expect("child opens the engine"),
    );
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let engine = Arc::clone(&engine);
            std::thread::spawn(move || {
                for i in 0..1_000_000u64 {
                    let receipt = engine
                        .publish(Event::created("Ticket", format!("{t}-{i}")))
                        .expect("publish");
                    for id in receipt.deliveries {
                        println!("ACK {id}");
                    }
                }
            })
        })
        .collect();
    for thread in threads {
        let _ = thread.join();
    }
    std::process::exit(0)
}

#[test]
fn sigkill_after_publish_returned_loses_no_acknowledged_delivery() {
    if let Ok(schema) = std::env::var(CHILD_SCHEMA) {
        child(&schema);
    }
    let schema = Schema::new();
    let store = schema.open(LEASE);
    store
        .create_subscription(
            Subscription::new("https://receiver.example/hooks").events(["*"]),
            0,
        )
        .expect("create");
    drop(store);
    let mut acknowledged: Vec<u64> = Vec::new();
    for trial in 0..3u64 {
        let mut child = Command::new(std::env::current_exe().expect("test binary"))
            .args([
                "--exact",
                "crash::sigkill_after_publish_returned_loses_no_acknowledged_delivery",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_SCHEMA, &schema.name)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("child starts");
        let stdout = child.stdout.take().expect("stdout");
        let (acks, acked) = crossbeam_channel::unbounded();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(id) = line.strip_prefix("ACK ").and_then(|id| id.parse().ok()) {
                    let _ = acks.send(id);
                }
            }
        });
        // Let it publish a while (at least a few hundred acknowledged, or 20 s), then kill it
        // without warning, mid-publish.
        let wanted = 300 * (trial as usize + 1);
        let deadline = Instant::now() + Duration::from_secs(20);
        while acknowledged.len() < wanted {
            match acked.recv_deadline(deadline) {
                Ok(id) => acknowledged.push(id),
                Err(_) => break,
            }
        }
        child.kill().expect("SIGKILL");
        child.wait().expect("reaped");
        reader.join().expect("reader");
        acknowledged.extend(acked.try_iter());
    }
    assert!(
        acknowledged.len() >= 900,
        "only {} acknowledged",
        acknowledged.len()
    );
    let store = schema.open(LEASE);
    let missing: Vec<u64> = acknowledged
        .iter()
        .copied()
        .filter(|&id| store.delivery(id).expect("read").is_none())
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged deliveries lost: {:?}",
        missing.len(),
        acknowledged.len(),
        &missing[..missing.len().min(10)]
    );
}
