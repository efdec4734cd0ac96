//! Standard Webhooks secrets through the command line: `verify` checks `v1a` with a `whpk_`
//! public key as it checks `v1` with a `whsec_` secret, a webhook created without a secret shows
//! the one made for it once, and `rotate-secret` signs with the old and the new one for the
//! grace period.

use std::path::Path;

use callout::deliver::sign::standard;
use serde_json::json;

use crate::{subscription, Store, CONTACT_CREATED, SECRET};
use callout_testkit::{Received, Receiver, Reply};

const NEW: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write fixture");
    path.display().to_string()
}

fn verify_standard<'a>(secret: &'a str, headers: &'a str, body: &'a str) -> Vec<&'a str> {
    vec![
        "verify",
        "--profile",
        "standard",
        "--secret",
        secret,
        "--headers",
        headers,
        "--body",
        body,
        "--ignore-timestamp",
    ]
}

#[test]
fn verify_checks_v1a_with_a_whpk_public_key_as_it_checks_v1_with_a_whsec_secret() {
    let store = Store::uninitialised();
    let dir = tempfile::tempdir().unwrap();
    // The specification's v1a vector.
    let body = write(dir.path(), "v1a.json", r#"{"test": 2432232314}"#);
    let headers = write(
        dir.path(),
        "v1a.txt",
        "webhook-id: msg_p5jXN8AQM9LWM0D4loKWxJek\nwebhook-timestamp: 1614265330\nwebhook-signature: v1a,hnO3f9T8Ytu9HwrXslvumlUpqtNVqkhqw/enGzPCXe5BdqzCInXqYXFymVJaA7AZdpXwVLPo3mNl8EM+m7TBAg==\n",
    );
    let public = "whpk_1SiA4o9hyqTCpIqC5V9HUakiiaeACeqfZTInDBbOir4=";
    let ok = store.ok(&verify_standard(public, &headers, &body));
    assert!(ok.starts_with("ok: the standard signature matches"), "{ok}");
    // A receiver given the signing key checks with its public half.
    let signing = "whsk_6Xb/dCcHpPea21PS1N9VY/NZW723CEc77N4rJCubMbfVKIDij2HKpMKkioLlX0dRqSKJp4AJ6p9lMicMFs6Kvg==";
    store.ok(&verify_standard(signing, &headers, &body));
    // A whsec_ secret checks v1 entries, of which there is none.
    let line = store.fails(&verify_standard(SECRET, &headers, &body), 1);
    assert_eq!(
        line,
        "callout: the standard signature does not verify: no signature matches"
    );
    let changed = write(dir.path(), "changed.json", r#"{"test": 2432232315}"#);
    store.fails(&verify_standard(public, &headers, &changed), 1);
    let line = store.fails(&verify_standard("whpk_AAAA", &headers, &body), 1);
    assert!(line.contains("whpk_ public key is not valid"), "{line}");

    // The specification's v1 vector.
    let body = write(
        dir.path(),
        "v1.json",
        r#"{"email":"test@example.com","username":"test_user"}"#,
    );
    let headers = write(
        dir.path(),
        "v1.txt",
        "webhook-id: msg_27UH4WbU6Z5A5EzD8u03UvzRbpk\nwebhook-timestamp: 1649367553\nwebhook-signature: v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=\n",
    );
    store.ok(&verify_standard(NEW, &headers, &body));
    store.fails(&verify_standard(public, &headers, &body), 1);
}

/// Whether `request` verifies with `secret`, as of its own timestamp.
fn signed_with(request: &Received, secret: &str) -> bool {
    let headers: Vec<(&str, &str)> = request
        .headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    let sent: u64 = request
        .header("webhook-timestamp")
        .unwrap()
        .parse()
        .unwrap();
    let secret = standard::Secret::parse(secret).unwrap();
    standard::verify(&secret, &headers, &request.body, sent).is_ok()
}

const RUN: &[&str] = &[
    "run",
    "--until-empty",
    "--allow",
    "127.0.0.1",
    "--timeout",
    "30s",
];

#[test]
fn a_standard_webhook_created_without_a_secret_shows_the_one_made_for_it_once() {
    let receiver = Receiver::start(|_, _| Reply::status(200));
    let store = Store::new();
    let url = format!("{}/hooks", receiver.url);
    let document = json!({"target_url": url, "events": ["contact.*"]}).to_string();
    let created = store.ok(&["subscriptions", "create", &document]);
    let mut lines = created.lines();
    assert!(
        lines.next().unwrap().starts_with("created subscription 1"),
        "{created}"
    );
    let made = lines
        .next()
        .and_then(|l| l.strip_prefix("new secret, shown only now (give it to the receiver): "))
        .unwrap_or_else(|| panic!("{created}"))
        .to_string();
    assert!(made.starts_with("whsec_"), "{made}");
    // Only then: show and list hide it as every secret.
    let shown = store.ok(&["subscriptions", "show", "1"]);
    assert!(
        !shown.contains(&made) && shown.contains("<redacted>"),
        "{shown}"
    );
    // With --json, beside the subscription.
    let created = store.json(&["subscriptions", "create", &document]);
    let second = created["new_secret"].as_str().unwrap();
    assert!(second.starts_with("whsec_") && second != made, "{created}");
    assert_eq!(created["secrets"], json!(["<redacted>"]));
    // A document with a secret shows none.
    let given = store.json(&["subscriptions", "create", &subscription(&url, json!({}))]);
    assert_eq!(given.get("new_secret"), None);

    store.ok(&["publish", CONTACT_CREATED]);
    store.ok(RUN);
    let got = receiver.received();
    assert_eq!(got.len(), 3);
    let to_first = got.iter().filter(|r| signed_with(r, &made)).count();
    assert_eq!(
        to_first, 1,
        "the first webhook's delivery is signed with its new secret"
    );
}

#[test]
fn rotate_secret_signs_with_the_old_and_the_new_secret_for_the_grace() {
    let receiver = Receiver::start(|_, _| Reply::status(200));
    let store = Store::new();
    let url = format!("{}/hooks", receiver.url);
    store.ok(&["subscriptions", "create", &subscription(&url, json!({}))]);
    let rotated = store.ok(&[
        "subscriptions",
        "rotate-secret",
        "1",
        "--secret",
        NEW,
        "--grace",
        "1h",
    ]);
    assert!(
        rotated.starts_with("rotated the secret of subscription 1"),
        "{rotated}"
    );
    assert!(
        rotated.contains("the old secret signs beside the new one until 20"),
        "{rotated}"
    );
    assert!(
        !rotated.contains(NEW),
        "a given secret is not echoed: {rotated}"
    );
    let stored = store.json(&["subscriptions", "show", "1", "--show-secrets"]);
    let secrets = stored["secrets"].as_array().unwrap().clone();
    assert_eq!(secrets.len(), 2, "{secrets:?}");
    assert_eq!(secrets[0]["secret"], SECRET);
    assert!(secrets[0]["expires_at"].is_u64());
    assert_eq!(secrets[1], NEW);
    let table = store.ok(&["subscriptions", "show", "1"]);
    assert!(table.contains("<redacted> (signs until 20"), "{table}");

    // A shown subscription fed back keeps both secrets and the expiry.
    let mut shown = store.json(&["subscriptions", "show", "1"]);
    assert_eq!(shown["secrets"][0]["secret"], "<redacted>");
    shown["name"] = json!("renamed");
    store.ok(&["subscriptions", "update", "1", &shown.to_string()]);
    let after = store.json(&["subscriptions", "show", "1", "--show-secrets"]);
    assert_eq!(after["secrets"], json!(secrets));

    store.ok(&["publish", CONTACT_CREATED]);
    store.ok(RUN);
    let got = receiver.received();
    assert_eq!(got.len(), 1);
    let signatures = got[0].header("webhook-signature").unwrap();
    assert_eq!(signatures.split(' ').count(), 2, "{signatures}");
    assert!(signed_with(&got[0], SECRET) && signed_with(&got[0], NEW));

    // Without --secret one is made and shown; with no grace the old ones stop at once.
    let rotated = store.ok(&["subscriptions", "rotate-secret", "1", "--grace", "0s"]);
    assert!(
        rotated.contains("the old secret no longer signs"),
        "{rotated}"
    );
    let made = rotated
        .lines()
        .find_map(|l| l.strip_prefix("new secret, shown only now (give it to the receiver): "))
        .unwrap_or_else(|| panic!("{rotated}"));
    let stored = store.json(&["subscriptions", "show", "1", "--show-secrets"]);
    assert_eq!(stored["secrets"], json!([made]));
    let line = store.fails(
        &["subscriptions", "rotate-secret", "1", "--secret", made],
        2,
    );
    assert!(line.contains("already one of the subscription's"), "{line}");
    assert!(!line.contains(made), "{line}");
    store.fails(&["subscriptions", "rotate-secret", "9"], 3);
}
