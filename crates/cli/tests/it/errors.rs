//! Every bad input gets one clear line on stderr and its exit code: 2 bad command line or
//! input, 3 not found, 4 in use (tested with a running store in `delivery`), 1 otherwise.

use serde_json::json;

use crate::{assert_one_line_failure, subscription, Store, CONTACT_CREATED};

#[test]
fn a_missing_store_is_named_with_the_way_to_create_it() {
    let store = Store::uninitialised();
    for args in [
        &["stats"][..],
        &["subscriptions", "list"],
        &["run", "--until-empty"],
    ] {
        let line = store.fails(args, 3);
        assert!(line.contains("no callout store at"), "{line}");
        assert!(line.contains("init"), "{line}");
    }
    assert!(!store.path.exists(), "looking did not create a store");
}

#[test]
fn unknown_subscriptions_and_deliveries_are_not_found() {
    let store = Store::new();
    for args in [
        &["subscriptions", "show", "42"][..],
        &["subscriptions", "update", "42", "{}"],
        &["subscriptions", "delete", "42"],
        &["subscriptions", "activate", "42"],
        &["subscriptions", "deactivate", "42"],
        &["stats", "--subscription", "42"],
        &["attempts", "--subscription", "42"],
        &["dead", "list", "--subscription", "42"],
    ] {
        assert_eq!(
            store.fails(args, 3),
            "callout: no subscription 42",
            "{args:?}"
        );
    }
    assert_eq!(
        store.fails(&["attempts", "--delivery", "7"], 3),
        "callout: no delivery 7"
    );
}

#[test]
fn malformed_and_invalid_documents_are_usage_errors() {
    let store = Store::new();
    let line = store.fails(&["subscriptions", "create", "{\"target_url\": "], 2);
    assert!(
        line.starts_with("callout: malformed subscription JSON"),
        "{line}"
    );

    let no_events = json!({"target_url": "https://receiver.example/h"}).to_string();
    let line = store.fails(&["subscriptions", "create", &no_events], 2);
    assert!(
        line.contains("events: at least one event pattern is required"),
        "{line}"
    );

    let line = store.fails(
        &["subscriptions", "create", "--format", "superoffice", "{}"],
        2,
    );
    assert!(line.contains("SuperOffice webhook"), "{line}");

    let redacted = subscription(
        "https://receiver.example/h",
        json!({"secrets": ["<redacted>"]}),
    );
    let line = store.fails(&["subscriptions", "create", &redacted], 2);
    assert!(line.contains("placeholder"), "{line}");

    let batch = format!("{CONTACT_CREATED}\n{{\"entity\": \"Contact\"}}\n");
    let ran = store.run_with_stdin(&["publish", "--file", "-"], batch.as_bytes());
    let line = assert_one_line_failure(ran, 2, &["publish"]);
    assert!(
        line.starts_with("callout: line 2: malformed event"),
        "{line}"
    );
    assert_eq!(
        store.json(&["stats"])["total"]["due"],
        0,
        "a bad line publishes nothing"
    );

    let line = store.fails(&["publish", "--file", "/nonexistent/events.jsonl"], 3);
    assert!(line.contains("no file /nonexistent/events.jsonl"), "{line}");

    let line = store.fails(&["dead", "list", "--from", "last tuesday"], 2);
    assert!(
        line.contains("--from: `last tuesday` is not a time"),
        "{line}"
    );
}

#[test]
fn unknown_fields_are_refused_and_nothing_is_created() {
    let store = Store::new();
    // `secret` for `secrets` once created a webhook that sent unsigned.
    let singular = json!({
        "target_url": "https://receiver.example/h",
        "events": ["*"],
        "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    })
    .to_string();
    assert_eq!(
        store.fails(&["subscriptions", "create", &singular], 2),
        r#"callout: unknown field "secret" (did you mean "secrets"?)"#
    );
    assert_eq!(store.json(&["subscriptions", "list"]), json!([]));

    let nested = subscription(
        "https://receiver.example/h",
        json!({"entities": {"Contact": {"on_field_changes": ["email1"]}}}),
    );
    assert_eq!(
        store.fails(&["subscriptions", "create", &nested], 2),
        r#"callout: unknown field "entities.Contact.on_field_changes" (did you mean "on_field_change"?)"#
    );

    // An update's patch is checked as given, even a key it only clears.
    store.ok(&[
        "subscriptions",
        "create",
        &subscription("https://receiver.example/h", json!({})),
    ]);
    assert_eq!(
        store.fails(&["subscriptions", "update", "1", r#"{"tenantt": null}"#], 2),
        r#"callout: unknown field "tenantt" (did you mean "tenant"?)"#
    );

    let superoffice = json!({
        "Name": "n", "Events": ["contact.created"], "TargetUrl": "https://receiver.example/h",
        "Secrett": "Something Super Secret",
    })
    .to_string();
    assert_eq!(
        store.fails(
            &[
                "subscriptions",
                "create",
                "--format",
                "superoffice",
                &superoffice
            ],
            2
        ),
        r#"callout: SuperOffice webhook Secrett: is not a known field (did you mean "Secret"?)"#
    );
    assert_eq!(
        store
            .json(&["subscriptions", "list"])
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[test]
fn bad_flags_are_one_line_usage_errors() {
    let store = Store::new();
    for (args, expected) in [
        (&["stats", "--bogus"][..], "unexpected argument '--bogus'"),
        (&["frobnicate"], "unrecognized subcommand 'frobnicate'"),
        (&["subscriptions", "show", "seven"], "invalid value 'seven'"),
        (
            &["subscriptions", "create", "--format", "autotask", "{}"],
            "--entity",
        ),
        (&["attempts"], "--delivery"),
        (&["dead"], "incomplete command"),
        (&["run", "--idle", "soon"], "is not a duration"),
    ] {
        let line = store.fails(args, 2);
        assert!(line.contains(expected), "{args:?}: {line}");
    }
    let line = store.fails(&["run", "--until-empty", "--allow", "bogus"], 2);
    assert!(
        line.contains("`bogus` is not an IP address or CIDR range"),
        "{line}"
    );
}

#[test]
fn help_is_not_an_error() {
    let store = Store::new();
    let help = store.ok(&["--help"]);
    assert!(help.contains("subscriptions"), "{help}");
    assert!(help.contains("--store"), "{help}");
}
