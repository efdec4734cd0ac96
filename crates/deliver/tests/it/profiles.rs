//! Each signature profile end to end: the receiver checks the signature from the raw bytes it
//! received, with its own HMAC code (not the crate's).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use callout_deliver::sign::{pipeliner::Encoding, standard, standard::Secret};
use callout_deliver::{DeliverError, Request, Signature, Verdict};
use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::Sha256;

use callout_testkit::{Received, Receiver, Reply};

use crate::support::sender;

fn hmac_sha256(key: &[u8], message: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
    mac.update(message);
    mac.finalize().into_bytes().to_vec()
}

fn hmac_sha1(key: &[u8], message: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha1>::new_from_slice(key).unwrap();
    mac.update(message);
    mac.finalize().into_bytes().to_vec()
}

/// Sends one request and returns what the receiver saw, answering 401 unless `accept` says the
/// signature is right (so a wrong signature also fails the send).
fn round_trip(request: Request, accept: fn(&Received) -> bool) -> Received {
    let receiver = Receiver::start(move |_, received| {
        if accept(received) {
            Reply::status(200)
        } else {
            Reply::status(401)
        }
    });
    let request = Request {
        url: receiver.url.clone(),
        ..request
    };
    let outcome = sender().send(&request);
    assert_eq!(outcome.verdict, Verdict::Delivered, "{outcome:?}");
    receiver.nth(0, Duration::from_secs(5)).unwrap()
}

const BODY: &[u8] = br#"{"type":"contact.updated","data":{"id":18,"name":"Caf\u00e9 & Co"}}"#;

fn standard_accepts(received: &Received) -> bool {
    let key = BASE64.decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
    let id = received.one("webhook-id");
    let timestamp = received.one("webhook-timestamp");
    let mut signed = format!("{id}.{timestamp}.").into_bytes();
    signed.extend_from_slice(&received.body);
    let expected = format!("v1,{}", BASE64.encode(hmac_sha256(&key, &signed)));
    received
        .one("webhook-signature")
        .split(' ')
        .any(|signature| signature == expected)
}

#[test]
fn standard_webhooks_signature_verifies_at_the_receiver() {
    let secrets = vec![
        Secret::parse("whsec_b2xkIHNlY3JldCBiZWluZyByb3RhdGVk").unwrap(),
        Secret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap(),
    ];
    let mut request = Request::new("msg_2b3c", "", BODY.to_vec());
    request.signature = Signature::Standard { secrets };
    let received = round_trip(request, standard_accepts);

    assert_eq!(received.one("webhook-id"), "msg_2b3c");
    assert_eq!(received.one("webhook-signature").split(' ').count(), 2);
    // The sender's clock was used for the timestamp, and the crate's own verifier agrees.
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let timestamp: u64 = received.one("webhook-timestamp").parse().unwrap();
    assert!(timestamp.abs_diff(now) < 60);
    let headers: Vec<(&str, &str)> = received
        .headers
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_str()))
        .collect();
    let secret = Secret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
    standard::verify(&secret, &headers, &received.body, now).unwrap();
}

#[test]
fn standard_webhooks_uses_the_callers_timestamp() {
    let mut request = Request::new(
        "msg_p5jXN8AQM9LWM0D4loKWxJek",
        "",
        br#"{"test": 2432232314}"#.to_vec(),
    );
    request.signature = Signature::Standard {
        secrets: vec![Secret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap()],
    };
    request.timestamp = Some(1614265330);
    let received = round_trip(request, standard_accepts);
    assert_eq!(received.one("webhook-timestamp"), "1614265330");
    assert_eq!(
        received.one("webhook-signature"),
        "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    );
}

#[test]
fn pipeliner_signature_verifies_at_the_receiver() {
    fn hex_accepts(received: &Received) -> bool {
        let mac = hmac_sha256(b"01234567-abcd-dcba-ffff-000000000000", &received.body);
        let hex: String = mac.iter().map(|b| format!("{b:02x}")).collect();
        received.one("webhook-signature") == hex
    }
    fn base64_accepts(received: &Received) -> bool {
        let mac = hmac_sha256(b"01234567-abcd-dcba-ffff-000000000000", &received.body);
        received.one("webhook-signature") == BASE64.encode(mac)
    }
    for (encoding, accept) in [
        (Encoding::Hex, hex_accepts as fn(&Received) -> bool),
        (Encoding::Base64, base64_accepts),
    ] {
        let mut request = Request::new("d", "", BODY.to_vec());
        request.signature = Signature::Pipeliner {
            key: "01234567-abcd-dcba-ffff-000000000000".into(),
            encoding,
        };
        round_trip(request, accept);
    }
}

#[test]
fn superoffice_signature_and_headers_verify_at_the_receiver() {
    fn accepts(received: &Received) -> bool {
        let mac = hmac_sha256(b"Something Super Secret", &received.body);
        received.one("x-superoffice-signature") == BASE64.encode(mac)
    }
    let mut request = Request::new("d", "", BODY.to_vec());
    request.signature = Signature::SuperOffice {
        secret: "Something Super Secret".into(),
    };
    request.content_type = Some("application/json; charset=utf-8".into());
    request.profile_headers = vec![
        ("X-SuperOffice-Event".into(), "contact.changed".into()),
        (
            "X-SuperOffice-EventId".into(),
            "88f91933-edce-4c1a-8ded-ade8e2f72434".into(),
        ),
        ("X-SuperOffice-Retry".into(), "0".into()),
    ];
    let received = round_trip(request, accepts);
    assert_eq!(
        received.one("content-type"),
        "application/json; charset=utf-8"
    );
    assert_eq!(received.one("x-superoffice-event"), "contact.changed");
    assert_eq!(received.one("x-superoffice-retry"), "0");
}

#[test]
fn autotask_signature_verifies_at_the_receiver() {
    fn accepts(received: &Received) -> bool {
        let mac = hmac_sha1(b"SuperSecretKey123", &received.body);
        received.one("x-hook-signature") == format!("sha1={}", BASE64.encode(mac))
    }
    let mut request = Request::new("d", "", BODY.to_vec());
    request.signature = Signature::Autotask {
        secret: "SuperSecretKey123".into(),
    };
    round_trip(request, accepts);
}

#[test]
fn custom_headers_cannot_override_sender_signature_or_profile_headers() {
    let mut request = Request::new("msg_1", "", BODY.to_vec());
    request.signature = Signature::Standard {
        secrets: vec![Secret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap()],
    };
    request.profile_headers = vec![("X-Profile".into(), "from-profile".into())];
    request.custom_headers = vec![
        ("Webhook-Signature".into(), "v1,forged".into()),
        ("WEBHOOK-ID".into(), "msg_other".into()),
        ("content-type".into(), "text/plain".into()),
        ("Content-Length".into(), "1".into()),
        ("x-profile".into(), "from-customer".into()),
        ("bad header".into(), "x".into()),
        ("X-Injected".into(), "a\r\nX-Evil: 1".into()),
        // Would make ureq wait for a 100 before the body (the sender's one write relies on it
        // never doing so).
        ("Expect".into(), "100-continue".into()),
        ("X-Customer".into(), "kept".into()),
    ];
    assert_eq!(
        request.check_headers(),
        Err(DeliverError::ReservedHeader {
            name: "Webhook-Signature".into()
        })
    );

    let received = round_trip(request, standard_accepts);
    assert_eq!(received.one("webhook-id"), "msg_1");
    assert!(received.one("webhook-signature").starts_with("v1,"));
    assert_eq!(received.one("content-type"), "application/json");
    assert_eq!(received.one("content-length"), BODY.len().to_string());
    assert_eq!(received.one("x-profile"), "from-profile");
    assert_eq!(received.one("x-customer"), "kept");
    assert!(received.all("x-evil").is_empty() && received.all("x-injected").is_empty());
    assert!(received.all("expect").is_empty());
}

#[test]
fn every_custom_header_the_sender_drops_is_refused_by_validate() {
    // Names the sender owns or might, in the spellings people use, and some plain ones: the
    // receiver shows which custom headers the sender really dropped, and `validate()` must
    // refuse exactly those, or a subscription would register a header never sent.
    let candidates: Vec<String> = callout_core::RESERVED_HEADERS
        .iter()
        .map(|name| name.to_string())
        .chain(
            [
                "Content-Type",
                "Host",
                "Keep-Alive",
                "TE",
                "Upgrade",
                "Expect",
                "Trailer",
                "Proxy-Authorization",
                "Proxy-Connection",
                "WebHook-Signature",
                "X-SuperOffice-Signature",
                "X-SuperOffice-EventId",
                "X-Hook-Signature",
                "X-Hook-Test",
                "Callout-Delivery-Id",
                "Authorization",
                "Accept",
                "Cookie",
                "X-Customer",
            ]
            .map(String::from),
        )
        .collect();
    let mut request = Request::new("msg_1", "", BODY.to_vec());
    request.signature = Signature::Standard {
        secrets: vec![Secret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap()],
    };
    request.custom_headers = candidates
        .iter()
        .map(|name| (name.clone(), "from-custom".to_string()))
        .collect();
    let received = round_trip(request.clone(), standard_accepts);

    let mut dropped = 0;
    for name in &candidates {
        let sent = received.all(name).contains(&"from-custom");
        let alone = Request {
            custom_headers: vec![(name.clone(), "x".into())],
            ..request.clone()
        };
        assert_eq!(
            alone.check_headers().is_err(),
            !sent,
            "check_headers and send disagree on {name}"
        );
        let subscription = callout_core::Subscription::new("https://receiver.example/hooks")
            .name("ok")
            .events(["contact.created"])
            .header(name.as_str(), "x");
        let refused = matches!(
            subscription.validate(),
            Err(callout_core::InvalidSubscription::ReservedHeader { name: refused }) if refused == *name
        );
        assert_eq!(
            refused,
            !sent,
            "the sender {} {name}, validate() {}",
            if sent { "sends" } else { "drops" },
            if refused { "refuses it" } else { "accepts it" }
        );
        dropped += usize::from(!sent);
    }
    assert!(dropped >= callout_core::RESERVED_HEADERS.len(), "{dropped}");
    assert!(callout_core::SENDER_HEADERS.contains(&callout_deliver::DELIVERY_ID_HEADER));
    assert_eq!(received.one("x-customer"), "from-custom");
}

#[test]
fn check_headers_explains_invalid_and_accepts_plain_custom_headers() {
    let mut request = Request::new("d", "http://127.0.0.1/", b"{}".to_vec());
    request.custom_headers = vec![("Authorization".into(), "Bearer abc".into())];
    assert_eq!(request.check_headers(), Ok(()));
    request
        .custom_headers
        .push(("bad header".into(), "x".into()));
    assert_eq!(
        request.check_headers(),
        Err(DeliverError::InvalidHeader {
            name: "bad header".into()
        })
    );
}
