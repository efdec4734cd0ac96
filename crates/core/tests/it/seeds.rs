//! The sample requests of the vendors' documents (`shared/seeds/`), expressed as subscriptions,
//! with events that must and must not match them.

use callout_core::{autotask_event_patterns, Event, Matcher, Miss, Profile, State, Subscription};
use serde_json::json;

fn ids(matcher: &Matcher, event: &Event) -> Vec<u64> {
    matcher.matches(event).iter().map(|s| s.id()).collect()
}

/// Pipeliner's options example (`pipeliner-webhooks.txt`), field for field.
fn pipeliner_options_example() -> Subscription {
    let mut sub = Subscription::new("https://example.com/pipeliner")
        .profile(Profile::Pipeliner)
        .events(["Contact.*", "Account.*"])
        .secret("01234567-abcd-dcba-ffff-000000000000")
        .expand(
            "Contact",
            ["primary_account", "primary_contact", "task_relations.task"],
        )
        .load_only(
            "Contact",
            [
                "id",
                "primary_account",
                "primary_contact.first_name",
                "task_relations.task",
            ],
        )
        .filter(
            "Contact",
            "email1",
            "eq",
            json!(["ada@example.com", "bob@example.com"]),
        )
        .filter("Contact", "email2", "eq", json!("ops@example.com"))
        .on_field_change("Contact", ["email1"])
        .filter(
            "Account",
            "owner_id",
            "eq",
            json!(["9900cce6-bcd6-412a-bcd1-1904556c949a"]),
        )
        .skip_keys(["gmail_sync", "custom_integration"])
        .chunk_size(100)
        .chunk_delay(300);
    sub.related.expand = vec!["contact".into()];
    sub.related.load_only = vec!["id".into(), "contact".into()];
    sub.id = 1;
    sub
}

#[test]
fn pipeliner_options_example_matches_as_documented() {
    let sub = pipeliner_options_example();
    assert_eq!(sub.validate(), Ok(()));
    let matcher = Matcher::from_subscriptions([sub]).unwrap();
    let contact = json!({"id": "c1", "email1": "bob@example.com", "email2": "ops@example.com",
                         "primary_contact": {"first_name": "Bob", "last_name": "B"}, "phone": "1"});
    let changed_email = Event::new("Contact", "Update", "c1")
        .data(contact.clone())
        .previous(json!({"email1": "old@example.com", "email2": "ops@example.com"}));
    assert_eq!(ids(&matcher, &changed_email), [1]);
    // on-field-change: only email1 counts.
    let changed_phone = Event::new("Contact", "Update", "c1")
        .data(contact.clone())
        .changed(["phone"]);
    assert!(ids(&matcher, &changed_phone).is_empty());
    // filter: email1 must be one of the two, email2 must equal.
    let other_email = Event::new("Contact", "Create", "c1")
        .data(json!({"email1": "eve@example.com", "email2": "ops@example.com"}));
    assert!(ids(&matcher, &other_email).is_empty());
    // skip_keys.
    assert!(ids(&matcher, &changed_email.clone().skip_key("gmail_sync")).is_empty());
    // Account filter on owner_id.
    let account =
        |owner: &str| Event::new("Account", "Create", "a1").data(json!({"owner_id": owner}));
    assert_eq!(
        ids(&matcher, &account("9900cce6-bcd6-412a-bcd1-1904556c949a")),
        [1]
    );
    assert!(ids(&matcher, &account("someone-else")).is_empty());
    // load-only trims the entity, keeping nested shape.
    let hit = matcher.get(1).unwrap();
    assert_eq!(
        *hit.shape_data(&changed_email),
        json!({"id": "c1", "primary_contact": {"first_name": "Bob"}})
    );
    // Other entities do not fire.
    assert!(ids(&matcher, &Event::new("Opportunity", "Create", "o1")).is_empty());
}

/// SuperOffice's sample webhook (`superoffice-get-all-webhooks.txt`).
fn superoffice_sample() -> Subscription {
    let mut sub = Subscription::new("https://support.example.com/api/webhooks/tickets")
        .name("Ticket System Integration")
        .profile(Profile::Superoffice)
        .events(["ticket.created", "ticket.changed"])
        .secret("sk_live_a1b2c3d4e5f6g7h8i9j0")
        .state(State::Active)
        .header("X-Service-Key", "support_integration_v2")
        .header("X-Webhook-Version", "1.0")
        .property("fieldName", json!({}));
    sub.errors_email = Some("support-admin@example.com".into());
    sub.id = 3;
    sub
}

#[test]
fn superoffice_sample_webhook_matches_ticket_events() {
    let sub = superoffice_sample();
    assert_eq!(sub.validate(), Ok(()));
    let matcher = Matcher::from_subscriptions([sub]).unwrap();
    assert_eq!(ids(&matcher, &Event::new("ticket", "created", "18")), [3]);
    assert_eq!(ids(&matcher, &Event::new("ticket", "changed", "18")), [3]);
    assert_eq!(
        ids(&matcher, &Event::updated("Ticket", "18")),
        [3],
        "changed = updated"
    );
    assert!(ids(&matcher, &Event::new("ticket", "deleted", "18")).is_empty());
    assert!(ids(&matcher, &Event::new("contact", "changed", "18")).is_empty());
}

/// Autotask's REST sample (`autotask-webhooks-rest.txt`): a Company webhook on updates.
fn autotask_rest_sample() -> Subscription {
    let mut sub = Subscription::new("https://wrkhbq676nwh8.d.samplecompany.net")
        .name("myintegration.Accounts.Modify")
        .profile(Profile::Autotask)
        .events(autotask_event_patterns("Company", false, true, false))
        .secret("12345678")
        .deactivation_url("https://wrkhbq676nwh8.d.samplecompany.net")
        .excluded_actors(["29682885"]);
    sub.send_threshold_exceeded_notification = false;
    sub.id = 1;
    sub
}

/// The sample with one subscribed field, which Autotask needs before the webhook is Ready.
fn ready(sub: Subscription) -> Subscription {
    sub.on_field_change("Company", ["companyName"])
}

/// An update of a company's name (the subscribed field) by `actor`.
fn renamed(entity: &str, actor: &str) -> Event {
    Event::updated(entity, "351182")
        .data(json!({"companyName": "New"}))
        .previous(json!({"companyName": "Old"}))
        .actor(actor)
}

#[test]
fn autotask_rest_sample_is_not_ready_and_fires_nothing_until_a_field_is_subscribed() {
    let sample = autotask_rest_sample();
    assert_eq!(sample.validate(), Ok(()));
    let matcher = Matcher::from_subscriptions([sample]).unwrap();
    assert!(ids(&matcher, &renamed("Account", "30691780")).is_empty());
    assert_eq!(
        matcher.explain(&renamed("Account", "30691780")),
        [(1, Err(Miss::NotReady))]
    );

    let matcher = Matcher::from_subscriptions([ready(autotask_rest_sample())]).unwrap();
    assert_eq!(ids(&matcher, &renamed("Account", "30691780")), [1]);
    assert_eq!(ids(&matcher, &renamed("Company", "30691780")), [1]);
    let other_field = Event::updated("Company", "351182")
        .data(json!({"phone": "2"}))
        .previous(json!({"phone": "1"}));
    assert!(
        ids(&matcher, &other_field).is_empty(),
        "not a subscribed field"
    );
    assert!(ids(&matcher, &Event::created("Account", "351182")).is_empty());
    assert!(ids(&matcher, &Event::updated("Contact", "351182")).is_empty());
    assert!(
        ids(&matcher, &renamed("Account", "29682885")).is_empty(),
        "excluded resource"
    );
}

#[test]
fn autotask_soap_sample_fires_on_account_updates_once_ready() {
    // <Entity xsi:type="AccountWebhook">, Active, IsSubscribedToUpdateEvents, SecretKey 20201.
    let mut sub = Subscription::new("https://enymf79yfhr0d.x.pipedream.net")
        .name("Angela.Accounts.Modify")
        .profile(Profile::Autotask)
        .events(autotask_event_patterns("Account", false, true, false))
        .secret("20201")
        .deactivation_url("https://enkmoj676nwh8.x.pipedream.net");
    sub.id = 9;
    let not_ready = Matcher::from_subscriptions([sub.clone()]).unwrap();
    assert!(ids(&not_ready, &renamed("Company", "1")).is_empty());
    let matcher = Matcher::from_subscriptions([ready(sub)]).unwrap();
    assert_eq!(ids(&matcher, &renamed("Company", "1")), [9]);
    assert!(ids(&matcher, &Event::deleted("Company", "1")).is_empty());
}

#[test]
fn all_three_samples_live_in_one_matcher() {
    let matcher =
        Matcher::from_subscriptions([pipeliner_options_example(), superoffice_sample(), {
            let mut s = ready(autotask_rest_sample());
            s.id = 2;
            s
        }])
        .unwrap();
    let account_update = Event::new("Account", "Update", "a1")
        .data(json!({"owner_id": "9900cce6-bcd6-412a-bcd1-1904556c949a", "companyName": "N"}))
        .previous(json!({"owner_id": "9900cce6-bcd6-412a-bcd1-1904556c949a", "companyName": "O"}));
    assert_eq!(ids(&matcher, &account_update), [1, 2]);
    assert_eq!(ids(&matcher, &Event::new("ticket", "changed", "1")), [3]);
}
