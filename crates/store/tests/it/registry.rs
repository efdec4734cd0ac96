//! The subscription registry: ids, GUIDs, times, validation, listing.

use callout_core::{State, Subscription};
use callout_store::{Registry, StoreError, SubscriptionFilter};

use crate::open;

fn sub(name: &str, events: &[&str]) -> Subscription {
    Subscription::new("https://example.com/hook")
        .name(name)
        .events(events.iter().copied())
}

#[test]
fn create_assigns_sequential_ids_never_reused() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let a = store.create_subscription(sub("a", &["*"]), 100).unwrap();
    assert_eq!(a.id, 1);
    store.delete_subscription(a.id).unwrap().expect("was there");
    let b = store.create_subscription(sub("b", &["*"]), 200).unwrap();
    assert_eq!(b.id, 2);
    drop(store);
    let store = open(dir.path());
    store.delete_subscription(b.id).unwrap();
    let c = store.create_subscription(sub("c", &["*"]), 300).unwrap();
    assert_eq!(c.id, 3);
    assert!(store.get_subscription(1).unwrap().is_none());
    assert!(store.delete_subscription(1).unwrap().is_none());
}

#[test]
fn create_sets_guid_and_times() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let a = store.create_subscription(sub("a", &["*"]), 1_234).unwrap();
    let b = store.create_subscription(sub("b", &["*"]), 1_235).unwrap();
    assert_eq!(a.guid.len(), 36, "a UUID: {}", a.guid);
    assert_ne!(a.guid, b.guid);
    assert_eq!((a.created_at, a.updated_at), (Some(1_234), Some(1_234)));
    assert_eq!(store.get_subscription(a.id).unwrap(), Some(a));
}

#[test]
fn update_keeps_guid_and_creation_time() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let created = store.create_subscription(sub("a", &["*"]), 100).unwrap();
    let mut changed = sub("renamed", &["deal.*"]);
    changed.id = created.id;
    changed.guid = "someone-else".into();
    changed.created_at = Some(5);
    let updated = store.update_subscription(changed, 900).unwrap();
    assert_eq!(updated.guid, created.guid);
    assert_eq!(updated.created_at, Some(100));
    assert_eq!(updated.updated_at, Some(900));
    let stored = store.get_subscription(created.id).unwrap().unwrap();
    assert_eq!(stored.name, "renamed");
    assert_eq!(stored.events, ["deal.*"]);
    assert_eq!(stored.guid, created.guid);
}

#[test]
fn update_of_unknown_id_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let mut ghost = sub("ghost", &["*"]);
    ghost.id = 42;
    let result = store.update_subscription(ghost, 1);
    assert!(
        matches!(result, Err(StoreError::UnknownSubscription(42))),
        "{result:?}"
    );
}

#[test]
fn invalid_subscription_is_refused_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let bad_url = Subscription::new("ftp://example.com").events(["*"]);
    match store.create_subscription(bad_url, 1) {
        Err(e @ StoreError::Invalid(_)) => assert!(e.to_string().contains("target_url"), "{e}"),
        other => panic!("expected Invalid, got {other:?}"),
    }
    match store.create_subscription(sub("no events", &[]), 1) {
        Err(e @ StoreError::Invalid(_)) => assert!(e.to_string().contains("events"), "{e}"),
        other => panic!("expected Invalid, got {other:?}"),
    }
    // Nothing was stored and no id was spent.
    assert!(store
        .list_subscriptions(&SubscriptionFilter::default())
        .unwrap()
        .is_empty());
    assert_eq!(
        store.create_subscription(sub("ok", &["*"]), 1).unwrap().id,
        1
    );
    // Update validates too.
    let mut bad = sub("", &["*"]);
    bad.id = 1;
    match store.update_subscription(bad, 2) {
        Err(e @ StoreError::Invalid(_)) => assert!(e.to_string().contains("name"), "{e}"),
        other => panic!("expected Invalid, got {other:?}"),
    }
}

fn names(store: &callout_store::SledStore, filter: SubscriptionFilter) -> Vec<String> {
    store
        .list_subscriptions(&filter)
        .unwrap()
        .into_iter()
        .map(|s| s.name)
        .collect()
}

#[test]
fn list_filters_by_name_event_and_state() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store
        .create_subscription(sub("CRM contacts", &["contact.*"]), 1)
        .unwrap();
    store
        .create_subscription(sub("everything", &["*"]), 1)
        .unwrap();
    store
        .create_subscription(sub("deals", &["deal.created", "deal.changed"]), 1)
        .unwrap();
    store
        .create_subscription(
            sub("stopped contacts", &["contact.created"]).state(State::Stopped),
            1,
        )
        .unwrap();

    assert_eq!(
        names(&store, SubscriptionFilter::default()),
        ["CRM contacts", "everything", "deals", "stopped contacts"]
    );
    let by_name = SubscriptionFilter {
        name: Some("CONTACTS".into()),
        ..Default::default()
    };
    assert_eq!(names(&store, by_name), ["CRM contacts", "stopped contacts"]);
    let by_event = SubscriptionFilter {
        event: Some("contact.created".into()),
        ..Default::default()
    };
    assert_eq!(
        names(&store, by_event),
        ["CRM contacts", "everything", "stopped contacts"]
    );
    let by_pattern = SubscriptionFilter {
        event: Some("contact.*".into()),
        ..Default::default()
    };
    assert_eq!(names(&store, by_pattern), ["CRM contacts"]);
    let by_event_deal = SubscriptionFilter {
        event: Some("deal.changed".into()),
        ..Default::default()
    };
    assert_eq!(names(&store, by_event_deal), ["everything", "deals"]);
    let by_state = SubscriptionFilter {
        state: Some(State::Stopped),
        ..Default::default()
    };
    assert_eq!(names(&store, by_state), ["stopped contacts"]);
    let combined = SubscriptionFilter {
        name: Some("contacts".into()),
        event: Some("contact.created".into()),
        state: Some(State::Active),
    };
    assert_eq!(names(&store, combined), ["CRM contacts"]);
}

#[test]
fn subscriptions_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let a = store
        .create_subscription(sub("a", &["contact.*"]).ordered(true), 7)
        .unwrap();
    drop(store);
    let store = open(dir.path());
    assert_eq!(store.get_subscription(a.id).unwrap(), Some(a));
}
