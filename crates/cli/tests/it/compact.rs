//! `callout compact`: a store's live records move into a fresh generation of its directory,
//! and every command goes on reading them there.

use serde_json::json;

use crate::{subscription, Store, CONTACT_CREATED};

#[test]
fn compact_moves_the_store_into_a_new_generation_and_keeps_its_deliveries() {
    let store = Store::new();
    let sub = subscription("https://receiver.example/hooks", json!({}));
    store.ok(&["subscriptions", "create", &sub]);
    for _ in 0..3 {
        store.ok(&["publish", CONTACT_CREATED]);
    }
    let shown = store.ok(&["compact"]);
    assert!(shown.contains("compacted"), "{shown}");
    assert!(shown.contains("records"), "{shown}");
    assert!(store.path.join("gen-1").join("db").is_file());
    assert!(
        !store.path.join("db").exists(),
        "the first generation is gone"
    );
    assert_eq!(store.json(&["stats"])["total"]["due"], 3);

    let again = store.json(&["compact"]);
    assert!(again["records"].as_u64().is_some_and(|n| n >= 3), "{again}");
    assert!(again["size_after"].as_u64().is_some(), "{again}");
    assert!(store.path.join("gen-2").join("db").is_file());
    assert!(!store.path.join("gen-1").exists());
    assert_eq!(store.json(&["stats"])["total"]["due"], 3);
    let listed = store.json(&["subscriptions", "list"]);
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");
}

#[test]
fn compact_of_a_missing_store_fails_in_one_line() {
    let store = Store::uninitialised();
    let line = store.fails(&["compact"], 3);
    assert!(line.contains("callout: "), "{line}");
    assert!(!store.path.exists(), "a refusal creates nothing");
}
