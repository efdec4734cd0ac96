//! `--store postgres://...`: every command works on a PostgreSQL backend as on a directory.
//! Needs the server that `CALLOUT_TEST_POSTGRES` names (`scripts/with-postgres.sh`); without
//! it the test fails, saying so.

use std::path::PathBuf;

use serde_json::json;

use crate::{subscription, Store, CONTACT_CREATED};
use callout_testkit::{Receiver, Reply};

/// A schema of the test's own on the test server, dropped at the end.
struct Schema {
    name: String,
    server: String,
}

impl Schema {
    fn new() -> Schema {
        let server = std::env::var("CALLOUT_TEST_POSTGRES").unwrap_or_else(|_| {
            panic!(
                "CALLOUT_TEST_POSTGRES is not set: this test needs a PostgreSQL server; run it \
                 under scripts/with-postgres.sh"
            )
        });
        let name = format!("callout_cli_{}", std::process::id());
        Schema { name, server }
    }

    /// A store whose --store is this schema's URL.
    fn store(&self) -> Store {
        Store {
            _dir: tempfile::tempdir().expect("temp dir"),
            path: PathBuf::from(format!("{}?schema={}", self.server, self.name)),
        }
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        if let Ok(mut client) = postgres::Client::connect(&self.server, postgres::NoTls) {
            let _ = client.batch_execute(&format!("DROP SCHEMA IF EXISTS {} CASCADE", self.name));
        }
    }
}

#[test]
fn every_command_works_on_a_postgres_store() {
    let receiver = Receiver::start(|n, _| Reply::status(if n == 0 { 500 } else { 200 }));
    let schema = Schema::new();
    let store = schema.store();
    assert!(store
        .ok(&["init"])
        .contains(&format!("schema={}", schema.name)));
    let url = format!("{}/hooks", receiver.url);
    let sub = subscription(&url, json!({"retry_schedule": []}));
    let created = store.json(&["subscriptions", "create", &sub]);
    let id = created["id"].as_u64().expect("an id");
    let listed = store.json(&["subscriptions", "list"]);
    assert_eq!(listed.as_array().map(Vec::len), Some(1));

    let receipt = store.json(&["publish", CONTACT_CREATED]);
    assert_eq!(receipt["deliveries"].as_array().map(Vec::len), Some(1));
    let run = [
        "run",
        "--until-empty",
        "--allow",
        "127.0.0.1",
        "--timeout",
        "30s",
    ];
    store.ok(&run);
    assert_eq!(
        store.json(&["stats"])["total"]["dead"],
        1,
        "no retries: dead"
    );
    let dead = store.json(&["dead", "list"]);
    assert_eq!(dead.as_array().map(Vec::len), Some(1));
    store.ok(&["dead", "replay"]);
    store.ok(&run);
    let total = &store.json(&["stats"])["total"];
    assert_eq!(
        (total["delivered"].clone(), total["dead"].clone()),
        (json!(1), json!(0))
    );
    let attempts = store.json(&["attempts", "--subscription", &id.to_string()]);
    assert_eq!(attempts.as_array().map(Vec::len), Some(2));
    assert_eq!(receiver.received().len(), 2);
    store.ok(&["subscriptions", "delete", &id.to_string()]);
    assert_eq!(
        store
            .json(&["subscriptions", "list"])
            .as_array()
            .map(Vec::len),
        Some(0)
    );
    let repair = store.run(&["repair", "--to", "elsewhere"]);
    assert_ne!(repair.code, 0, "repair is for sled directories");
    let compact = store.run(&["compact"]);
    assert_eq!(
        compact.code, 2,
        "compact is for sled directories: {compact:?}"
    );
}
