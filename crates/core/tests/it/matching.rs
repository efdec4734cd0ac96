//! The matching rules of SPEC.md section 3, through the matcher.

use callout_core::{Event, Matcher, Miss, State, Subscription};
use serde_json::json;

fn sub(id: u64, events: &[&str]) -> Subscription {
    let mut s = Subscription::new("https://receiver.example/hooks").events(events.iter().copied());
    s.id = id;
    s
}

fn ids(matcher: &Matcher, event: &Event) -> Vec<u64> {
    matcher.matches(event).iter().map(|s| s.id()).collect()
}

#[test]
fn patterns_exact_wildcard_and_vendor_spellings() {
    let matcher = Matcher::from_subscriptions([
        sub(1, &["contact.created"]),
        sub(2, &["Contact.*"]),
        sub(3, &["*.deleted"]),
        sub(4, &["*"]),
        sub(5, &["Account.Update", "sale.changed"]),
        sub(6, &["Company.Create"]),
    ])
    .unwrap();
    assert_eq!(ids(&matcher, &Event::created("Contact", "1")), [1, 2, 4]);
    assert_eq!(ids(&matcher, &Event::deleted("contact", "1")), [2, 3, 4]);
    assert_eq!(ids(&matcher, &Event::new("Ticket", "Delete", "1")), [3, 4]);
    assert_eq!(
        ids(&matcher, &Event::updated("Company", "1")),
        [4, 5],
        "Company is Account"
    );
    assert_eq!(ids(&matcher, &Event::new("sale", "changed", "1")), [4, 5]);
    assert_eq!(ids(&matcher, &Event::created("Account", "1")), [4, 6]);
    assert_eq!(ids(&matcher, &Event::new("contact", "Won", "1")), [2, 4]);
}

#[test]
fn a_subscription_with_two_patterns_matching_one_event_fires_once() {
    let matcher =
        Matcher::from_subscriptions([sub(1, &["contact.*", "*", "contact.created"])]).unwrap();
    assert_eq!(ids(&matcher, &Event::created("contact", "1")), [1]);
}

#[test]
fn only_active_subscriptions_fire() {
    let matcher = Matcher::from_subscriptions([
        sub(1, &["*"]).state(State::Stopped),
        sub(2, &["*"]).state(State::TooManyErrors),
        sub(3, &["*"]),
    ])
    .unwrap();
    let event = Event::created("x", "1");
    assert_eq!(ids(&matcher, &event), [3]);
    let why: Vec<_> = matcher.explain(&event);
    assert_eq!(why[0], (1, Err(Miss::NotActive(State::Stopped))));
    assert_eq!(why[1], (2, Err(Miss::NotActive(State::TooManyErrors))));
    assert_eq!(why[2], (3, Ok(())));
}

#[test]
fn tenant_scoped_subscriptions_see_only_their_tenant() {
    let matcher = Matcher::from_subscriptions([
        sub(1, &["*"]).tenant("a"),
        sub(2, &["*"]).tenant("b"),
        sub(3, &["*"]),
    ])
    .unwrap();
    assert_eq!(ids(&matcher, &Event::created("x", "1").tenant("a")), [1, 3]);
    assert_eq!(ids(&matcher, &Event::created("x", "1").tenant("c")), [3]);
    assert_eq!(ids(&matcher, &Event::created("x", "1")), [3]);
}

#[test]
fn skip_key_suppresses_matching_subscription() {
    let matcher = Matcher::from_subscriptions([
        sub(1, &["*"]).skip_keys(["gmail_sync", "custom_integration"]),
        sub(2, &["*"]),
    ])
    .unwrap();
    let event = Event::updated("Contact", "1").skip_key("gmail_sync");
    assert_eq!(ids(&matcher, &event), [2]);
    assert_eq!(
        matcher.explain(&event)[0].1,
        Err(Miss::SkipKey("gmail_sync".into()))
    );
    assert_eq!(
        ids(
            &matcher,
            &Event::updated("Contact", "1").skip_key("Gmail_Sync")
        ),
        [1, 2],
        "exact match"
    );
    assert_eq!(ids(&matcher, &Event::updated("Contact", "1")), [1, 2]);
}

#[test]
fn excluded_actor_does_not_fire() {
    let matcher =
        Matcher::from_subscriptions([sub(1, &["*"]).excluded_actors(["29682885"])]).unwrap();
    assert!(ids(&matcher, &Event::updated("Ticket", "1").actor("29682885")).is_empty());
    assert_eq!(
        ids(&matcher, &Event::updated("Ticket", "1").actor("1")),
        [1]
    );
    assert_eq!(ids(&matcher, &Event::updated("Ticket", "1")), [1]);
}

#[test]
fn filters_combine_with_and_per_entity() {
    let s = sub(1, &["*"])
        .filter("Contact", "email1", "eq", json!(["a@x.com", "b@x.com"]))
        .filter("Contact", "score", "gte", json!(10));
    let matcher = Matcher::from_subscriptions([s]).unwrap();
    let contact = |email: &str, score: i64| {
        Event::created("Contact", "1").data(json!({"email1": email, "score": score}))
    };
    assert_eq!(ids(&matcher, &contact("b@x.com", 10)), [1]);
    assert!(ids(&matcher, &contact("c@x.com", 10)).is_empty());
    assert!(ids(&matcher, &contact("a@x.com", 9)).is_empty());
    // Another entity has no filters: it passes.
    assert_eq!(ids(&matcher, &Event::created("Account", "1")), [1]);
    let why = matcher.explain(&contact("c@x.com", 10));
    assert_eq!(
        why[0].1,
        Err(Miss::Filter {
            path: "email1".into(),
            op: "eq".into()
        })
    );
}

#[test]
fn on_field_change_gates_updates_only() {
    let matcher = Matcher::from_subscriptions([
        sub(1, &["contact.*"]).on_field_change("Contact", ["email1", "address"])
    ])
    .unwrap();
    let update = |before: serde_json::Value, after: serde_json::Value| {
        Event::updated("contact", "1").previous(before).data(after)
    };
    assert_eq!(
        ids(
            &matcher,
            &update(json!({"email1": "a"}), json!({"email1": "b"}))
        ),
        [1]
    );
    assert!(ids(
        &matcher,
        &update(
            json!({"email1": "a", "n": 1}),
            json!({"email1": "a", "n": 2})
        )
    )
    .is_empty());
    // A changed child of a watched parent fires.
    assert_eq!(
        ids(
            &matcher,
            &update(
                json!({"address": {"city": "X"}}),
                json!({"address": {"city": "Y"}})
            )
        ),
        [1]
    );
    // Explicit changed paths win.
    assert_eq!(
        ids(
            &matcher,
            &Event::updated("contact", "1").changed(["address.zip"])
        ),
        [1]
    );
    assert!(ids(&matcher, &Event::updated("contact", "1").changed(["phone"])).is_empty());
    // Creates and deletes are not gated.
    assert_eq!(ids(&matcher, &Event::created("contact", "1")), [1]);
    assert_eq!(ids(&matcher, &Event::deleted("contact", "1")), [1]);
    // Unknown changes (no previous, no changed) fire rather than drop.
    assert_eq!(
        ids(
            &matcher,
            &Event::updated("contact", "1").data(json!({"email1": "x"}))
        ),
        [1]
    );
    let why = matcher.explain(&Event::updated("contact", "1").changed(["phone"]));
    assert_eq!(why[0].1, Err(Miss::FieldNotChanged));
}

#[test]
fn watched_child_fires_when_parent_replaced() {
    let matcher =
        Matcher::from_subscriptions([sub(1, &["*"]).on_field_change("Contact", ["address.city"])])
            .unwrap();
    let event = Event::updated("Contact", "1")
        .previous(json!({"address": null}))
        .data(json!({"address": {"city": "Oslo"}}));
    assert_eq!(ids(&matcher, &event), [1]);
}

#[test]
fn insert_update_remove_keep_the_index_in_step() {
    let mut matcher = Matcher::new();
    matcher.insert(sub(1, &["contact.created"])).unwrap();
    matcher.insert(sub(2, &["contact.created"])).unwrap();
    assert_eq!(ids(&matcher, &Event::created("contact", "1")), [1, 2]);
    // Updating moves the subscription to its new bucket.
    matcher.insert(sub(1, &["ticket.created"])).unwrap();
    assert_eq!(ids(&matcher, &Event::created("contact", "1")), [2]);
    assert_eq!(ids(&matcher, &Event::created("ticket", "1")), [1]);
    // Deactivating keeps it known but out of the index.
    matcher
        .insert(sub(2, &["contact.created"]).state(State::Stopped))
        .unwrap();
    assert!(ids(&matcher, &Event::created("contact", "1")).is_empty());
    assert_eq!(matcher.len(), 2);
    assert!(matcher.remove(1).is_some());
    assert!(matcher.remove(1).is_none());
    assert!(ids(&matcher, &Event::created("ticket", "1")).is_empty());
    // A bad update is refused and leaves the old one in place.
    assert!(matcher.insert(sub(2, &["bad"])).is_err());
    assert_eq!(matcher.get(2).unwrap().subscription().state, State::Stopped);
}

#[test]
fn shaping_projects_load_only_plus_always_fields() {
    let s = sub(1, &["*"])
        .load_only("Contact", ["id", "primary_account.name"])
        .always_fields("Contact", ["email1"]);
    let matcher = Matcher::from_subscriptions([s]).unwrap();
    let event = Event::created("contact", "1").data(json!({
        "id": "1", "email1": "a@x.com", "phone": "123",
        "primary_account": {"name": "Acme", "owner": "u"}
    }));
    let hit = matcher.matches(&event)[0];
    assert_eq!(
        *hit.shape_data(&event),
        json!({"id": "1", "email1": "a@x.com", "primary_account": {"name": "Acme"}})
    );
    // No load_only for this entity: the whole record, borrowed rather than copied.
    let other = Event::created("Account", "2").data(json!({"a": 1, "b": 2}));
    let whole = hit.shape_data(&other);
    assert!(matches!(whole, std::borrow::Cow::Borrowed(_)));
    assert_eq!(*whole, json!({"a": 1, "b": 2}));
}

#[test]
fn miss_reasons_read_well() {
    assert_eq!(
        Miss::SkipKey("k".into()).to_string(),
        "skip key \"k\" is listed"
    );
    assert_eq!(
        Miss::NotActive(State::TooManyErrors).to_string(),
        "subscription is too_many_errors"
    );
}
