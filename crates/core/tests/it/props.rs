//! Property tests: the indexed matcher returns exactly what a naive scan over all subscriptions
//! returns, for random subscriptions, events, and insert/remove sequences.

use callout_core::{Event, Matcher, State, Subscription};
use proptest::prelude::*;
use serde_json::json;

const ENTITIES: &[&str] = &["Contact", "contact", "Account", "Company", "Ticket", "sale"];
const ACTIONS: &[&str] = &[
    "created",
    "Update",
    "changed",
    "deleted",
    "Won",
    "linked_document",
];
const TENANTS: &[&str] = &["t1", "t2"];

fn pattern() -> impl Strategy<Value = String> {
    (0..ENTITIES.len() + 1, 0..ACTIONS.len() + 1).prop_map(|(e, a)| {
        let entity = ENTITIES.get(e).copied().unwrap_or("*");
        let action = ACTIONS.get(a).copied().unwrap_or("*");
        format!("{entity}.{action}")
    })
}

fn subscription() -> impl Strategy<Value = Subscription> {
    (
        prop::collection::vec(pattern(), 1..4),
        prop::option::of(0..TENANTS.len()),
        0..4u8,
        prop::option::of(0..3i64),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(events, tenant, state, min_score, skip, on_change)| {
            let mut sub = Subscription::new("https://receiver.example/").events(events);
            if let Some(t) = tenant {
                sub = sub.tenant(TENANTS[t]);
            }
            sub.state = match state {
                0 => State::Stopped,
                1 => State::TooManyErrors,
                _ => State::Active,
            };
            if let Some(min) = min_score {
                sub = sub.filter("Contact", "score", "gte", json!(min));
            }
            if skip {
                sub = sub.skip_keys(["sync"]);
            }
            if on_change {
                sub = sub.on_field_change("Contact", ["score"]);
            }
            sub
        })
}

fn event() -> impl Strategy<Value = Event> {
    (
        0..ENTITIES.len(),
        0..ACTIONS.len(),
        prop::option::of(0..TENANTS.len() + 1),
        0..4i64,
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(e, a, tenant, score, skip, score_changed)| {
            let mut event = Event::new(ENTITIES[e], ACTIONS[a], "1")
                .data(json!({"score": score}))
                .changed(if score_changed {
                    vec!["score"]
                } else {
                    vec!["name"]
                });
            if let Some(t) = tenant {
                event = event.tenant(TENANTS.get(t).copied().unwrap_or("t9"));
            }
            if skip {
                event = event.skip_key("sync");
            }
            event
        })
}

fn with_ids(subs: Vec<Subscription>) -> Vec<Subscription> {
    subs.into_iter()
        .enumerate()
        .map(|(i, mut s)| {
            s.id = i as u64 + 1;
            s
        })
        .collect()
}

fn scan(matcher: &Matcher, event: &Event) -> Vec<u64> {
    matcher
        .explain(event)
        .into_iter()
        .filter(|(_, v)| v.is_ok())
        .map(|(id, _)| id)
        .collect()
}

fn indexed(matcher: &Matcher, event: &Event) -> Vec<u64> {
    matcher.matches(event).iter().map(|s| s.id()).collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn index_equals_scan(subs in prop::collection::vec(subscription(), 0..40), events in prop::collection::vec(event(), 1..20)) {
        let matcher = Matcher::from_subscriptions(with_ids(subs)).unwrap();
        for event in &events {
            prop_assert_eq!(indexed(&matcher, event), scan(&matcher, event));
        }
    }

    #[test]
    fn incremental_updates_equal_a_fresh_build(
        subs in prop::collection::vec(subscription(), 1..30),
        ops in prop::collection::vec((0..30u64, prop::option::of(subscription())), 0..40),
        events in prop::collection::vec(event(), 1..10),
    ) {
        let mut live = Matcher::from_subscriptions(with_ids(subs)).unwrap();
        for (id, replacement) in ops {
            match replacement {
                Some(mut sub) => { sub.id = id + 1; live.insert(sub).unwrap(); }
                None => { live.remove(id + 1); }
            }
        }
        let current: Vec<Subscription> = (1..=31).filter_map(|id| live.get(id).map(|s| s.subscription().clone())).collect();
        let fresh = Matcher::from_subscriptions(current).unwrap();
        for event in &events {
            prop_assert_eq!(indexed(&live, event), indexed(&fresh, event));
            prop_assert_eq!(indexed(&live, event), scan(&live, event));
        }
    }
}
