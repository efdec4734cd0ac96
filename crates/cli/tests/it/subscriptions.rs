//! Subscriptions from callout's and the vendors' JSON, listed with filters, changed, switched
//! off and on; a JSON-lines batch published from stdin.

use serde_json::json;

use crate::{subscription, Store, CONTACT_CREATED, SECRET};
use callout_testkit::{Receiver, Reply};

#[test]
fn vendor_registration_documents_create_subscriptions() {
    let store = Store::new();
    let superoffice = json!({
        "Name": "so contacts", "Events": ["contact.created"], "TargetUrl": "https://so.example/hook",
        "Secret": "Something Super Secret", "State": "Active", "Type": "webhook"
    });
    let created = store.json(&[
        "subscriptions",
        "create",
        "--format",
        "superoffice",
        &superoffice.to_string(),
    ]);
    assert_eq!(created["profile"], "superoffice");
    assert_eq!(
        created["secrets"],
        json!(["<redacted>"]),
        "output hides the secret"
    );

    let pipeliner = "{\n  \"url\": \"https://pl.example/hook\", # where to\n  \"events\": [\"Account.Update\"],\n  \"insecure_ssl\": false,\n  \"options\": {},\n  \"signature\": \"01234567-abcd-dcba-ffff-000000000000\"\n}";
    let ran = store.run_with_stdin(
        &[
            "--json",
            "subscriptions",
            "create",
            "--format",
            "pipeliner",
            "--file",
            "-",
        ],
        pipeliner.as_bytes(),
    );
    assert_eq!(ran.code, 0, "{ran:?}");
    let created: serde_json::Value = serde_json::from_str(&ran.stdout).unwrap();
    assert_eq!(created["profile"], "pipeliner");

    let autotask = json!({
        "IsActive": true, "IsSubscribedToUpdateEvents": true, "Name": "at companies",
        "WebhookUrl": "https://at.example/hook", "SecretKey": "SuperSecretKey123",
        "DeactivationUrl": "https://at.example/off",
        "Fields": [{"FieldID": "companyName", "IsSubscribedField": true}]
    });
    let created = store.json(&[
        "subscriptions",
        "create",
        "--format",
        "autotask",
        "--entity",
        "Company",
        &autotask.to_string(),
    ]);
    assert_eq!(created["profile"], "autotask");

    // Shown back in the vendor's shape, secret hidden unless asked for.
    let id = created["id"].to_string();
    let shown = store.json(&["subscriptions", "show", &id, "--format", "autotask"]);
    assert_eq!(shown["Name"], "at companies");
    assert_eq!(shown["SecretKey"], "<redacted>");
    let shown = store.json(&[
        "subscriptions",
        "show",
        &id,
        "--format",
        "autotask",
        "--show-secrets",
    ]);
    assert_eq!(shown["SecretKey"], "SuperSecretKey123");

    let table = store.ok(&["subscriptions", "list"]);
    assert_eq!(table.lines().count(), 4, "a header and three rows: {table}");
    assert!(table.lines().next().unwrap().starts_with("ID"), "{table}");
}

#[test]
fn list_filters_by_name_event_and_state() {
    let store = Store::new();
    let contacts = subscription("https://a.example/h", json!({"name": "Contacts sync"}));
    let sales = subscription(
        "https://b.example/h",
        json!({"name": "sales", "events": ["sale.*"]}),
    );
    store.ok(&["subscriptions", "create", &contacts]);
    store.ok(&["subscriptions", "create", &sales]);
    let names = |args: &[&str]| -> Vec<String> {
        let mut all = vec!["subscriptions", "list"];
        all.extend_from_slice(args);
        store
            .json(&all)
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(names(&["--name", "CONTACTS"]), ["Contacts sync"]);
    assert_eq!(names(&["--event", "sale.updated"]), ["sales"]);
    assert_eq!(names(&["--state", "stopped"]), Vec::<String>::new());

    let stopped = store.json(&["subscriptions", "deactivate", "2"]);
    assert_eq!(stopped["state"], "stopped");
    assert_eq!(names(&["--state", "stopped"]), ["sales"]);
    assert_eq!(names(&["--state", "active"]), ["Contacts sync"]);
    assert!(store
        .ok(&["subscriptions", "activate", "2"])
        .contains("activated subscription 2"));
    assert_eq!(names(&["--state", "active"]).len(), 2);

    assert!(store
        .ok(&["subscriptions", "delete", "1"])
        .contains("deleted subscription 1"));
    assert_eq!(names(&[]), ["sales"]);
}

#[test]
fn update_merges_into_the_stored_subscription_and_keeps_hidden_secrets() {
    let store = one_subscription();
    // What `show --json` printed, edited and fed back: the placeholder keeps the secret.
    let mut shown = store.json(&["subscriptions", "show", "1"]);
    shown["name"] = json!("renamed");
    shown["events"] = json!(["contact.updated"]);
    store.ok(&["subscriptions", "update", "1", &shown.to_string()]);
    // A patch of one field leaves the others alone; null clears one.
    store.ok(&["subscriptions", "update", "1", r#"{"tenant": "t1"}"#]);
    store.ok(&["subscriptions", "update", "1", r#"{"tenant": null}"#]);

    let stored = store.json(&["subscriptions", "show", "1", "--show-secrets"]);
    assert_eq!(stored["name"], "renamed");
    assert_eq!(stored["events"], json!(["contact.updated"]));
    assert_eq!(stored["target_url"], "https://a.example/h");
    assert_eq!(stored["tenant"], json!(null));
    assert_eq!(stored["secrets"], json!([SECRET]));

    let human = store.ok(&["subscriptions", "show", "1"]);
    assert!(human.lines().next().unwrap().starts_with("id "), "{human}");
    assert!(
        human.contains("<redacted>") && !human.contains(SECRET),
        "{human}"
    );
}

#[test]
fn a_json_lines_batch_from_stdin_is_published() {
    let store = one_subscription();
    let batch = format!(
        "{CONTACT_CREATED}\n\n{}\n",
        CONTACT_CREATED.replace("42", "43")
    );
    let ran = store.run_with_stdin(&["publish", "--file", "-"], batch.as_bytes());
    assert_eq!(ran.code, 0, "{ran:?}");
    // A standard subscription gets one message per event.
    assert_eq!(
        ran.stdout,
        "published 2 events: 2 deliveries, 0 duplicates\n"
    );
    let stats = store.ok(&["stats"]);
    assert!(
        stats
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>()
                == ["total", "2", "0", "0", "0", "0", "0"]),
        "{stats}"
    );
}

#[test]
fn create_with_test_saves_only_when_the_target_answers_200() {
    let refusing = Receiver::start(|_, _| Reply::status(500));
    let store = Store::new();
    let document = subscription(&format!("{}/hooks", refusing.url), json!({}));
    let line = store.fails(&create_tested(&document), 1);
    assert_eq!(
        line,
        "callout: the target answered the test event 500, not 200; not created"
    );
    assert_eq!(refusing.received()[0].json()["type"], "test");

    let accepting = Receiver::start(|_, _| Reply::status(200));
    let document = subscription(&format!("{}/hooks", accepting.url), json!({}));
    let line = store.fails(&["subscriptions", "create", "--test", &document], 1);
    assert!(
        line.contains("allow-list"),
        "without --allow the guard refuses 127.0.0.1: {line}"
    );
    store.ok(&create_tested(&document));
    assert_eq!(accepting.received().len(), 1);
    assert_eq!(
        store
            .json(&["subscriptions", "list"])
            .as_array()
            .map(Vec::len),
        Some(1)
    );
}

/// A store with one subscription to `https://a.example/h`.
fn one_subscription() -> Store {
    let store = Store::new();
    store.ok(&[
        "subscriptions",
        "create",
        &subscription("https://a.example/h", json!({})),
    ]);
    store
}

/// `callout subscriptions create --test` of `document`, allowed to reach 127.0.0.1.
fn create_tested(document: &str) -> [&str; 6] {
    [
        "subscriptions",
        "create",
        "--test",
        "--allow",
        "127.0.0.1",
        document,
    ]
}

/// Asserts `text` shows neither the URL password nor the header value.
fn assert_hidden(text: &str, what: &str) {
    assert!(
        !text.contains("hunter2"),
        "{what} shows the URL password: {text}"
    );
    assert!(
        !text.contains("tok123"),
        "{what} shows the header value: {text}"
    );
}

#[test]
fn url_passwords_and_header_values_are_hidden_unless_asked_for() {
    let store = Store::new();
    let document = json!({
        "target_url": "https://user:hunter2@receiver.example/x",
        "deactivation_url": "https://user:hunter2@receiver.example/gone",
        "events": ["contact.created"],
        "headers": [["Authorization", "Bearer tok123"]],
        "secrets": [SECRET],
    });
    let created = store.ok(&["subscriptions", "create", &document.to_string()]);
    assert_hidden(&created, "create");
    assert!(
        created.contains("\"https://receiver.example/x\""),
        "named after the URL without its userinfo: {created}"
    );
    // Named after the URL, password included, as the default once was.
    let mut old_name = document.clone();
    old_name["name"] = json!("https://user:hunter2@receiver.example/x");
    let created = store.json(&["subscriptions", "create", &old_name.to_string()]);
    assert_hidden(&created.to_string(), "create --json");

    let table = store.ok(&["subscriptions", "list"]);
    assert_hidden(&table, "list");
    assert!(
        table.contains("https://user:***@receiver.example/x"),
        "{table}"
    );
    assert_hidden(
        &store.ok(&["--json", "subscriptions", "list"]),
        "list --json",
    );
    assert_hidden(&store.ok(&["stats"]), "stats");

    let shown = store.ok(&["subscriptions", "show", "1"]);
    assert_hidden(&shown, "show");
    assert!(
        shown.contains("https://user:***@receiver.example/x"),
        "{shown}"
    );
    assert!(shown.contains("Authorization"), "{shown}");
    let shown = store.json(&["subscriptions", "show", "1"]);
    assert_eq!(shown["target_url"], "https://user:***@receiver.example/x");
    assert_eq!(
        shown["deactivation_url"],
        "https://user:***@receiver.example/gone"
    );
    assert_eq!(shown["headers"], json!([["Authorization", "***"]]));
    for format in ["autotask", "superoffice", "pipeliner"] {
        let vendor = store.ok(&["subscriptions", "show", "1", "--format", format]);
        assert_hidden(&vendor, format);
    }

    let revealed = store.json(&["subscriptions", "show", "1", "--show-secrets"]);
    assert_eq!(
        revealed["target_url"],
        "https://user:hunter2@receiver.example/x"
    );
    assert_eq!(
        revealed["headers"],
        json!([["Authorization", "Bearer tok123"]])
    );
    let table = store.ok(&["subscriptions", "list", "--show-secrets"]);
    assert!(
        table.contains("https://user:hunter2@receiver.example/x"),
        "{table}"
    );

    // A shown subscription fed back keeps what its placeholders stand for.
    let mut edited = shown.clone();
    edited["events"] = json!(["contact.updated"]);
    store.ok(&["subscriptions", "update", "1", &edited.to_string()]);
    let stored = store.json(&["subscriptions", "show", "1", "--show-secrets"]);
    assert_eq!(stored["events"], json!(["contact.updated"]));
    assert_eq!(stored["target_url"], revealed["target_url"]);
    assert_eq!(stored["deactivation_url"], revealed["deactivation_url"]);
    assert_eq!(stored["headers"], revealed["headers"]);
    assert_eq!(stored["secrets"], json!([SECRET]));

    // A placeholder that stands for nothing stored is refused, not stored.
    let mut placeholder = document.clone();
    placeholder["headers"] = json!([["X-Api-Key", "***"]]);
    let refused = store.fails(&["subscriptions", "create", &placeholder.to_string()], 2);
    assert!(
        refused.contains("X-Api-Key") && refused.contains("placeholder"),
        "{refused}"
    );
    let mut placeholder = document;
    placeholder["target_url"] = json!("https://user:***@receiver.example/x");
    let refused = store.fails(&["subscriptions", "create", &placeholder.to_string()], 2);
    assert!(
        refused.contains("target_url") && refused.contains("placeholder"),
        "{refused}"
    );
}
