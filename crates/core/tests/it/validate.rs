//! Every error `Subscription::validate` can return, each named after its field.

use callout_core::{InvalidSubscription as E, Kind, Profile, Subscription};
use serde_json::json;

fn ok() -> Subscription {
    Subscription::new("https://receiver.example/hooks")
        .name("ok")
        .events(["contact.created"])
}

fn err(sub: Subscription) -> E {
    sub.validate()
        .expect_err("validate accepted a bad subscription")
}

#[test]
fn a_well_formed_subscription_passes() {
    assert_eq!(ok().validate(), Ok(()));
    let full = ok()
        .secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
        .header("X-Service-Key", "abc")
        .property("source", json!("crm"))
        .filter("Contact", "email1", "ieq", json!(["a@x.com", "b@x.com"]))
        .on_field_change("Contact", ["email1"])
        .load_only("Contact", ["id", "primary_account.name"])
        .always_fields("Contact", ["id"])
        .expand("Contact", ["primary_account"])
        .skip_keys(["gmail_sync"])
        .excluded_actors(["7"])
        .tenant("Cust54321")
        .chunk_size(100)
        .chunk_delay(300)
        .deactivation_url("http://127.0.0.1:9/off");
    assert_eq!(full.validate(), Ok(()));
    assert_eq!(
        Subscription::handler("on_contact").events(["*"]).validate(),
        Ok(())
    );
}

#[test]
fn name_must_be_one_to_fifty_chars() {
    assert_eq!(err(ok().name("")), E::EmptyName);
    assert_eq!(err(ok().name("   ")), E::EmptyName);
    assert_eq!(
        err(ok().name("é".repeat(51))),
        E::NameTooLong { len: 51, max: 50 }
    );
    assert_eq!(
        ok().name("é".repeat(50)).validate(),
        Ok(()),
        "characters, not bytes"
    );
}

#[test]
fn target_url_must_be_absolute_http_and_bounded() {
    for bad in [
        "",
        "receiver.example/hooks",
        "ftp://receiver.example/",
        "https://",
        "https:///path",
        "https://exa mple.com/",
        "https://example.com:99999/",
        "https://example.com:0/",
        "https://example.com:port/",
        "javascript:alert(1)",
        "https://[::1/",
    ] {
        let mut sub = ok();
        sub.target_url = bad.to_string();
        assert!(
            matches!(
                err(sub),
                E::BadUrl {
                    field: "target_url",
                    ..
                }
            ),
            "{bad:?} accepted"
        );
    }
    for good in [
        "http://127.0.0.1:8080/x?y=1#z",
        "HTTPS://Example.com",
        "https://[::1]:443/",
        "https://user@host/",
    ] {
        let mut sub = ok();
        sub.target_url = good.to_string();
        assert_eq!(sub.validate(), Ok(()), "{good:?} refused");
    }
    let mut long = ok();
    long.target_url = format!("https://example.com/{}", "a".repeat(481));
    assert_eq!(
        err(long),
        E::TooLong {
            field: "target_url",
            len: 501,
            max: 500
        }
    );
    assert!(matches!(
        err(ok().deactivation_url("nope")),
        E::BadUrl {
            field: "deactivation_url",
            ..
        }
    ));
}

#[test]
fn handler_needs_a_name_and_no_url() {
    let mut sub = Subscription::handler("x").events(["*"]);
    sub.kind = Kind::Handler(" ".into());
    assert_eq!(err(sub), E::EmptyHandler);
}

#[test]
fn secrets_follow_their_profile() {
    let autotask = |s: &str| ok().profile(Profile::Autotask).secret(s);
    assert_eq!(autotask(&"k".repeat(64)).validate(), Ok(()));
    assert!(matches!(
        err(autotask(&"k".repeat(65))),
        E::BadSecret { .. }
    ));
    assert!(matches!(err(ok().secret("")), E::BadSecret { .. }));
    assert!(matches!(
        err(ok().secret("whsec_not base64!")),
        E::BadSecret { .. }
    ));
    assert_eq!(
        ok().secret("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").validate(),
        Ok(()),
        "bare base64"
    );
    let pipeliner = |s: &str| ok().profile(Profile::Pipeliner).secret(s);
    assert_eq!(
        pipeliner("01234567-abcd-dcba-ffff-000000000000").validate(),
        Ok(())
    );
    assert!(matches!(err(pipeliner("not-a-uuid")), E::BadSecret { .. }));
    assert_eq!(
        ok().profile(Profile::Superoffice)
            .secret("Something Super Secret")
            .validate(),
        Ok(())
    );
    let too_many = (0..9).fold(ok(), |s, _| s.secret("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"));
    assert!(matches!(
        err(too_many),
        E::TooMany {
            field: "secrets",
            ..
        }
    ));
    let message = err(autotask(&"s3cr3t".repeat(20))).to_string();
    assert!(
        !message.contains("s3cr3t"),
        "errors never echo a secret: {message}"
    );
}

#[test]
fn events_must_be_present_and_parse() {
    assert_eq!(err(ok().events(Vec::<String>::new())), E::NoEvents);
    assert!(
        matches!(err(ok().events(["contact"])), E::BadEventPattern { pattern } if pattern == "contact")
    );
    let many = ok().events((0..101).map(|i| format!("e{i}.created")));
    assert!(matches!(
        err(many),
        E::TooMany {
            field: "events",
            ..
        }
    ));
}

#[test]
fn chunking_is_bounded() {
    assert_eq!(err(ok().chunk_size(0)), E::ChunkSize { value: 0 });
    assert_eq!(err(ok().chunk_size(101)), E::ChunkSize { value: 101 });
    assert_eq!(err(ok().chunk_delay(-1)), E::ChunkDelay { value: -1 });
    assert_eq!(
        err(ok().chunk_delay(86_401)),
        E::ChunkDelay { value: 86_401 }
    );
    assert_eq!(ok().chunk_size(1).chunk_delay(86_400).validate(), Ok(()));
}

#[test]
fn filters_are_checked() {
    assert!(matches!(
        err(ok().filter("Contact", "email1", "approximately", json!("x"))),
        E::UnknownOperator { entity, field, op } if entity == "Contact" && field == "email1" && op == "approximately"
    ));
    assert!(matches!(
        err(ok().filter("Contact", "n", "between", json!([1]))),
        E::BadFilterValue { .. }
    ));
    assert!(matches!(
        err(ok().filter("Contact", "n", "regex", json!("(["))),
        E::BadRegex { .. }
    ));
    assert!(matches!(
        err(ok().filter("Contact", "n", "regex", json!("\\w{1000}\\w{1000}"))),
        E::BadRegex { .. }
    ));
    assert!(matches!(
        err(ok().filter("Contact", "", "eq", json!(1))),
        E::BadPath { .. }
    ));
    assert!(matches!(
        err(ok().on_field_change("Contact", ["a..b"])),
        E::BadPath { .. }
    ));
    assert!(matches!(
        err(ok().load_only("Contact", [""])),
        E::BadPath { .. }
    ));
    assert!(matches!(
        err(ok().filter("Con.tact", "a", "eq", json!(1))),
        E::BadEntity { .. }
    ));
    let twice = ok()
        .filter("Contact", "a", "eq", json!(1))
        .filter("contact", "b", "eq", json!(2));
    assert!(matches!(err(twice), E::BadEntity { entity } if entity == "contact"));
}

#[test]
fn every_reserved_header_is_refused_in_any_case() {
    for reserved in callout_core::RESERVED_HEADERS {
        for spelling in [reserved.to_string(), reserved.to_ascii_uppercase()] {
            assert!(
                matches!(err(ok().header(spelling.as_str(), "x")), E::ReservedHeader { name } if name == spelling),
                "{spelling}"
            );
        }
    }
    // The sender's own headers and the profiles' are both on the list.
    for part in [callout_core::SENDER_HEADERS, callout_core::PROFILE_HEADERS] {
        assert!(part
            .iter()
            .all(|name| callout_core::RESERVED_HEADERS.contains(name)));
    }
    assert!(ok()
        .header("Authorization", "Bearer abc")
        .validate()
        .is_ok());
}

#[test]
fn superoffice_headers_are_reserved() {
    // The profile writes these at send time; a custom header of the same name would be
    // dropped by the sender, so it must not register.
    let sub = ok();
    let written = callout_core::vendor::superoffice::headers(&sub, "contact.created", "e", 0, true);
    assert_eq!(written.len(), 5);
    for (name, _) in written {
        let lower = name.to_ascii_lowercase();
        assert!(
            callout_core::RESERVED_HEADERS.contains(&lower.as_str()),
            "{name}"
        );
    }
}

#[test]
fn headers_may_not_repeat_or_override() {
    assert!(
        matches!(err(ok().header("X-A", "1").header("x-a", "2")), E::DuplicateHeader { name } if name == "x-a")
    );
    for reserved in [
        "Content-Type",
        "webhook-signature",
        "X-SuperOffice-Signature",
        "X-Hook-Signature",
        "User-Agent",
    ] {
        assert!(
            matches!(err(ok().header(reserved, "x")), E::ReservedHeader { .. }),
            "{reserved}"
        );
    }
    assert!(matches!(
        err(ok().header("Bad Name", "x")),
        E::BadHeader { .. }
    ));
    assert!(matches!(
        err(ok().header("X-A", "line\r\nInjected: 1")),
        E::BadHeader { .. }
    ));
    assert!(matches!(
        err(ok().header("X-A", "v".repeat(4097))),
        E::BadHeader { .. }
    ));
}

#[test]
fn delivery_options_are_bounded() {
    let mut sub = ok();
    sub.rate_limit = Some(0);
    assert_eq!(err(sub), E::ZeroRateLimit);
    let mut sub = ok();
    sub.retry_schedule = Some(vec![0, 5, 8 * 86_400]);
    assert!(matches!(err(sub), E::BadRetrySchedule { .. }));
    let mut sub = ok();
    sub.timeout_ms = Some(0);
    assert!(matches!(
        err(sub),
        E::BadTimeout {
            field: "timeout_ms",
            ..
        }
    ));
    let mut sub = ok();
    sub.connect_timeout_ms = Some(600_001);
    assert!(matches!(
        err(sub),
        E::BadTimeout {
            field: "connect_timeout_ms",
            ..
        }
    ));
    let mut sub = ok();
    sub.notification_email = Some("a".repeat(151));
    assert!(matches!(
        err(sub),
        E::TooLong {
            field: "notification_email",
            ..
        }
    ));
    let sub = ok().skip_keys(["k".repeat(201)]);
    assert!(matches!(
        err(sub),
        E::TooLong {
            field: "skip_keys",
            ..
        }
    ));
}

#[test]
fn errors_read_well() {
    let e = err(ok().filter("Contact", "email1", "approx", json!("x")));
    assert_eq!(
        e.to_string(),
        "filters.Contact.email1: unknown operator \"approx\""
    );
    assert_eq!(err(ok().name("")).to_string(), "name: must not be empty");
}

#[test]
fn subscription_round_trips_through_json() {
    let sub = ok()
        .secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
        .header("X-A", "1")
        .filter("Contact", "n", "between", json!([1, 2]))
        .tenant("t");
    let text = serde_json::to_string(&sub).unwrap();
    let back: Subscription = serde_json::from_str(&text).unwrap();
    assert_eq!(back, sub);
    // Missing fields take their defaults, so stored records survive new fields.
    let minimal: Subscription =
        serde_json::from_str(r#"{"name":"m","events":["*"],"target_url":"https://x.example/"}"#)
            .unwrap();
    assert_eq!(minimal.chunk_size, None);
    assert_eq!(minimal.validate(), Ok(()));
}

const SIGNING_KEY: &str =
    "whsk_6Xb/dCcHpPea21PS1N9VY/NZW723CEc77N4rJCubMbfVKIDij2HKpMKkioLlX0dRqSKJp4AJ6p9lMicMFs6Kvg==";

#[test]
fn standard_subscriptions_take_whsk_signing_keys_beside_whsec_secrets_but_no_public_keys() {
    let both = ok()
        .secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
        .secret(SIGNING_KEY);
    assert_eq!(both.validate(), Ok(()));
    assert_eq!(ok().secret(SIGNING_KEY).validate(), Ok(()), "v1a alone");
    let reason = |sub: Subscription| match err(sub) {
        E::BadSecret { reason } => reason,
        other => panic!("{other:?}"),
    };
    let public = reason(ok().secret("whpk_1SiA4o9hyqTCpIqC5V9HUakiiaeACeqfZTInDBbOir4="));
    assert!(public.contains("whsk_"), "{public}");
    // 32 bytes where a signing key has 64.
    let short = reason(ok().secret("whsk_1SiA4o9hyqTCpIqC5V9HUakiiaeACeqfZTInDBbOir4="));
    assert!(short.contains("64 bytes"), "{short}");
    assert!(!short.contains("1SiA4"), "the key is not echoed: {short}");
    // Other profiles sign with their own secrets, whatever they look like.
    assert_eq!(
        ok().profile(Profile::Superoffice)
            .secret("whpk_anything")
            .validate(),
        Ok(())
    );
}

#[test]
fn rotation_keeps_old_secrets_of_the_same_kind_for_the_grace_then_drops_them() {
    let mut sub = ok()
        .secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
        .secret(SIGNING_KEY);
    sub.rotate_secret("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD", 10_000, 5_000)
        .unwrap();
    assert_eq!(sub.validate(), Ok(()));
    let live = |sub: &Subscription, now: u64| -> Vec<String> {
        sub.live_secrets(now)
            .map(|s| s.expose()[..8].to_string())
            .collect()
    };
    assert_eq!(live(&sub, 14_999), ["whsec_Mf", "whsk_6Xb", "whsec_C2"]);
    // The whsk_ key is of the other kind: it does not expire.
    assert_eq!(live(&sub, 15_000), ["whsk_6Xb", "whsec_C2"]);
    assert_eq!(sub.next_secret_expiry(), Some(15_000));
    assert!(!sub.drop_expired_secrets(14_999));
    assert!(sub.drop_expired_secrets(15_000));
    assert_eq!(sub.secrets.len(), 2);
    assert_eq!(sub.next_secret_expiry(), None);
    // Again within a grace: an earlier expiry is kept, a secret already held is refused.
    sub.rotate_secret("whsec_b2xkIHNlY3JldCBiZWluZyByb3RhdGVk", 20_000, 60_000)
        .unwrap();
    sub.rotate_secret("whsec_bmV3ZXIgc2VjcmV0IHRoYW4gdGhhdA==", 30_000, 60_000)
        .unwrap();
    let expiries: Vec<Option<u64>> = sub.secrets.iter().map(|s| s.expires_at()).collect();
    // The whsk_ key, the one rotated out at 20 s, the one rotated out at 30 s, the newest.
    assert_eq!(expiries, [None, Some(80_000), Some(90_000), None]);
    assert!(matches!(
        sub.rotate_secret("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD", 40_000, 0),
        Err(E::BadSecret { .. })
    ));
    // No grace: the old ones go at once.
    sub.rotate_secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", 40_000, 0)
        .unwrap();
    assert_eq!(live(&sub, 40_000), ["whsk_6Xb", "whsec_Mf"]);
    assert_eq!(sub.secrets.len(), 2);
}

#[test]
fn a_vendor_profile_rotates_every_secret() {
    let mut sub = ok().profile(Profile::Superoffice).secret("old secret");
    sub.rotate_secret("new secret", 0, 1_000).unwrap();
    let first_live = |now| sub.live_secrets(now).next().map(|s| s.expose().to_string());
    assert_eq!(first_live(999).as_deref(), Some("old secret"));
    assert_eq!(first_live(1_000).as_deref(), Some("new secret"));
}

#[test]
fn secrets_with_and_without_expiry_read_back_as_written() {
    let mut sub = ok().secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
    let stored_before_expiries = serde_json::to_value(&sub).unwrap();
    assert_eq!(
        stored_before_expiries["secrets"],
        json!(["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"]),
        "a secret that does not expire is written as before"
    );
    sub.rotate_secret("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD", 1_000, 2_000)
        .unwrap();
    let written = serde_json::to_value(&sub).unwrap();
    assert_eq!(
        written["secrets"],
        json!([
            {"secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "expires_at": 3_000},
            "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD"
        ])
    );
    let back: Subscription = serde_json::from_value(written.clone()).unwrap();
    assert_eq!(back, sub);
    assert_eq!(Subscription::from_value(written).unwrap(), sub);
    assert!(format!("{sub:?}").contains("Secret(<redacted>, expires_at: 3000)"));
    assert!(serde_json::from_value::<Subscription>(json!({"secrets": [7]})).is_err());
}
