//! Integration tests of callout-store: one target, one module per concern.

mod conformance;
mod crash;
mod durability;
mod open;
mod power_loss;
mod queue;
mod races;
mod registry;
mod repair;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use callout_store::{Attempt, NewDelivery, SledStore, StoreConfig};

/// Opens a store with the default configuration.
pub fn open(dir: &Path) -> SledStore {
    SledStore::open(dir, StoreConfig::default()).expect("store opens")
}

/// Opens a store with a short lease.
pub fn open_with_lease(dir: &Path, lease_ms: u64) -> SledStore {
    let config = StoreConfig {
        lease: Duration::from_millis(lease_ms),
        ..StoreConfig::default()
    };
    SledStore::open(dir, config).expect("store opens")
}

/// A delivery of one event to `sub`, due at `due_at`.
pub fn delivery(sub: u64, event_id: &str, due_at: u64) -> NewDelivery {
    NewDelivery {
        subscription_id: sub,
        event_ids: vec![event_id.to_string()],
        event_type: "contact.created".into(),
        body: format!(r#"{{"id":"{event_id}","type":"contact.created"}}"#).into_bytes(),
        due_at,
        ordered: false,
        message_id: format!("msg_{sub}_{event_id}"),
        order_key: None,
    }
}

/// The same, for an ordered subscription.
pub fn ordered(sub: u64, event_id: &str, due_at: u64) -> NewDelivery {
    NewDelivery {
        ordered: true,
        ..delivery(sub, event_id, due_at)
    }
}

/// An attempt numbered `number`, started at `at`.
pub fn attempt(number: u32, at: u64, outcome: &str) -> Attempt {
    Attempt {
        number,
        at,
        duration_ms: 5,
        status: Some(if outcome == "delivered" { 200 } else { 500 }),
        outcome: outcome.into(),
        excerpt: String::new(),
    }
}

/// Runs this very test binary again, as a child running only `test` (its full path), with
/// `env` set; returns the child, stdout piped.
pub fn spawn_self(test: &str, env: &[(&str, &Path)]) -> std::process::Child {
    let mut command = Command::new(std::env::current_exe().expect("test binary path"));
    command
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    for (name, value) in env {
        command.env(name, value);
    }
    command.spawn().expect("child test process starts")
}

/// Opens the store's sled database directly, as a tool would. A store just dropped lets go of
/// sled's file lock only once sled's background threads have dropped the database, a moment
/// later: retry for a bounded time.
pub fn raw_sled(dir: &Path) -> sled::Db {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        match sled::open(dir) {
            Ok(db) => return db,
            Err(e) if std::time::Instant::now() < deadline => {
                let _ = e;
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => panic!("raw sled open of {}: {e}", dir.display()),
        }
    }
}
