//! Standard Webhooks end to end: a secret made for a subscription created without one, `v1`
//! beside `v1a` on one message, and a rotated secret that signs beside the new one for its grace
//! period and then not at all. `v1` is checked with HMAC here, from the raw bytes; `v1a` with
//! callout's verifier, whose output the specification's vector pins byte for byte.

use std::time::Duration;

use base64::Engine as _;
use callout::deliver::sign::standard;
use callout::{Engine, EngineBuilder, Event, ManualClock, Subscription};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use callout_testkit::{Received, Receiver};

use crate::wait_until;

const WAIT: Duration = Duration::from_secs(10);
const OLD: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const NEW: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
const SIGNING_KEY: &str =
    "whsk_6Xb/dCcHpPea21PS1N9VY/NZW723CEc77N4rJCubMbfVKIDij2HKpMKkioLlX0dRqSKJp4AJ6p9lMicMFs6Kvg==";
const PUBLIC_KEY: &str = "whpk_1SiA4o9hyqTCpIqC5V9HUakiiaeACeqfZTInDBbOir4=";

fn engine(dir: &tempfile::TempDir) -> EngineBuilder {
    Engine::builder(dir.path().join("store"))
        .allow_address("127.0.0.1")
        .poll_interval(Duration::from_millis(5))
}

/// The request's `webhook-signature` entries.
fn entries(r: &Received) -> Vec<String> {
    let header = r.header("webhook-signature").unwrap_or_default();
    header.split(' ').map(str::to_string).collect()
}

/// Whether one `v1,` entry is the HMAC of `{id}.{timestamp}.{body}` under `secret`, computed
/// here with hmac/sha2 and not with the code under test.
fn signed_with(r: &Received, secret: &str) -> bool {
    let b64 = base64::engine::general_purpose::STANDARD;
    let key = b64.decode(secret.trim_start_matches("whsec_")).unwrap();
    let (Some(id), Some(ts)) = (r.header("webhook-id"), r.header("webhook-timestamp")) else {
        return false;
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{id}.{ts}.").as_bytes());
    mac.update(&r.body);
    let expected = format!("v1,{}", b64.encode(mac.finalize().into_bytes()));
    entries(r).contains(&expected)
}

/// Whether the request verifies with `key` through callout's verifier, as of its own timestamp.
fn verifies_with(r: &Received, key: &str) -> bool {
    let key = standard::Secret::parse(key).unwrap();
    let names = ["webhook-id", "webhook-timestamp", "webhook-signature"];
    let headers: Vec<(&str, &str)> = names
        .iter()
        .filter_map(|name| Some((*name, r.header(name)?)))
        .collect();
    let sent: u64 = r.header("webhook-timestamp").unwrap().parse().unwrap();
    standard::verify(&key, &headers, &r.body, sent).is_ok()
}

#[test]
fn a_webhook_created_without_a_secret_gets_one_and_its_deliveries_are_signed_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::ok();
    let engine = engine(&dir).open().unwrap();
    let stored = engine
        .subscriptions()
        .create(Subscription::new(format!("{}/made", receiver.url)).events(["*"]))
        .unwrap();
    assert_eq!(stored.secrets.len(), 1);
    let made = stored.secrets[0].expose().to_string();
    assert!(made.starts_with("whsec_"), "a whsec_ secret");
    let key = base64::engine::general_purpose::STANDARD
        .decode(&made["whsec_".len()..])
        .unwrap();
    assert!(key.len() >= 24, "{} random bytes", key.len());
    let other = engine
        .subscriptions()
        .create(Subscription::new(format!("{}/other", receiver.url)).events(["*"]))
        .unwrap();
    assert_ne!(other.secrets, stored.secrets, "each webhook its own secret");
    engine.publish(Event::created("Contact", "1")).unwrap();
    let got = receiver.wait_for("/made", 1, WAIT);
    assert!(
        signed_with(&got[0], &made),
        "{:?}",
        got[0].header("webhook-signature")
    );
}

#[test]
fn v1_and_v1a_signatures_go_side_by_side_and_each_key_verifies_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::ok();
    let engine = engine(&dir).open().unwrap();
    engine
        .subscriptions()
        .create(
            Subscription::new(format!("{}/both", receiver.url))
                .events(["*"])
                .secret(OLD)
                .secret(SIGNING_KEY),
        )
        .unwrap();
    engine.publish(Event::created("Contact", "1")).unwrap();
    let got = receiver.wait_for("/both", 1, WAIT);
    let signatures = entries(&got[0]);
    assert_eq!(signatures.len(), 2, "{signatures:?}");
    assert!(signatures[0].starts_with("v1,") && signatures[1].starts_with("v1a,"));
    assert!(signed_with(&got[0], OLD));
    assert!(verifies_with(&got[0], PUBLIC_KEY), "whpk_ verifies v1a");
    assert!(!verifies_with(&got[0], NEW), "another secret does not");
}

#[test]
fn a_mismatched_whsk_key_is_refused_when_the_subscription_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(&dir).deliver(false).open().unwrap();
    // The right shape, but the public half belongs to no secret half of it.
    let mut pair = base64::engine::general_purpose::STANDARD
        .decode(&SIGNING_KEY["whsk_".len()..])
        .unwrap();
    pair[63] ^= 1;
    let mismatched = format!(
        "whsk_{}",
        base64::engine::general_purpose::STANDARD.encode(&pair)
    );
    let refused = engine
        .subscriptions()
        .create(
            Subscription::new("https://receiver.example/h")
                .events(["*"])
                .secret(&mismatched),
        )
        .unwrap_err();
    let message = refused.to_string();
    assert!(message.contains("public half"), "{message}");
    assert!(
        !message.contains(&mismatched[5..20]),
        "not echoed: {message}"
    );
}

#[test]
fn a_rotated_secret_signs_beside_the_new_one_until_its_grace_ends_then_only_the_new_one_does() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::ok();
    let start = 1_700_000_000_000;
    let clock = ManualClock::new(start);
    let engine = engine(&dir).clock(clock.clone()).open().unwrap();
    let sub = engine
        .subscriptions()
        .create(
            Subscription::new(format!("{}/rotate", receiver.url))
                .events(["*"])
                .secret(OLD),
        )
        .unwrap();
    let grace = Duration::from_secs(3_600);
    let rotated = engine
        .subscriptions()
        .rotate_secret(sub.id, Some(NEW.into()), Some(grace))
        .unwrap();
    assert_eq!(rotated.secrets[0].expires_at(), Some(start + 3_600_000));
    assert_eq!(rotated.secrets[1].expose(), NEW);

    // During the grace, both sign: a receiver on either secret verifies.
    engine.publish(Event::created("Ticket", "1")).unwrap();
    let got = receiver.wait_for("/rotate", 1, WAIT);
    assert_eq!(entries(&got[0]).len(), 2, "{:?}", entries(&got[0]));
    assert!(signed_with(&got[0], OLD) && signed_with(&got[0], NEW));
    // Move the clock only once the delivery is settled: a jump past its lease while in
    // flight would send it again.
    assert!(wait_until(WAIT, || engine.stats().unwrap().delivered == 1));

    // One millisecond before the grace ends, still both; at its end, only the new one.
    clock.advance_ms(3_600_000 - 1);
    engine.publish(Event::created("Ticket", "2")).unwrap();
    let got = receiver.wait_for("/rotate", 2, WAIT);
    assert!(signed_with(&got[1], OLD) && signed_with(&got[1], NEW));
    assert!(wait_until(WAIT, || engine.stats().unwrap().delivered == 2));
    clock.advance_ms(1);
    engine.publish(Event::created("Ticket", "3")).unwrap();
    let got = receiver.wait_for("/rotate", 3, WAIT);
    assert_eq!(entries(&got[2]).len(), 1, "{:?}", entries(&got[2]));
    assert!(signed_with(&got[2], NEW) && !signed_with(&got[2], OLD));

    // The engine drops the expired secret from the record by itself, at its next chore.
    clock.advance_ms(60_000);
    assert!(wait_until(WAIT, || {
        let stored = engine.subscriptions().get(sub.id).unwrap().unwrap();
        stored.secrets.len() == 1 && stored.secrets[0].expose() == NEW
    }));
}

#[test]
fn rotation_without_a_secret_makes_one_and_the_default_grace_is_a_day() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(1_000);
    let engine = engine(&dir).clock(clock).deliver(false).open().unwrap();
    let sub = engine
        .subscriptions()
        .create(
            Subscription::new("https://receiver.example/h")
                .events(["*"])
                .secret(OLD),
        )
        .unwrap();
    let rotated = engine
        .subscriptions()
        .rotate_secret(sub.id, None, None)
        .unwrap();
    assert_eq!(callout::DEFAULT_ROTATION_GRACE, Duration::from_secs(86_400));
    assert_eq!(rotated.secrets[0].expires_at(), Some(1_000 + 86_400_000));
    let made = rotated.secrets[1].expose();
    assert!(made.starts_with("whsec_") && made != OLD, "a new whsec_");
    let refused = engine
        .subscriptions()
        .rotate_secret(
            sub.id,
            Some("whpk_1SiA4o9hyqTCpIqC5V9HUakiiaeACeqfZTInDBbOir4=".into()),
            None,
        )
        .unwrap_err();
    assert!(matches!(refused, callout::Error::Invalid(_)), "{refused}");
    assert_eq!(
        engine.subscriptions().get(sub.id).unwrap().unwrap(),
        rotated,
        "a refused rotation changes nothing"
    );
}
