//! Header names on the wire, read from the raw request head: each spelled as its vendor (or the
//! subscriber, for custom headers) writes it, since receivers that look headers up
//! case-sensitively (PHP's `getallheaders()`) miss any other spelling.

use std::time::Duration;

use callout_deliver::sign::{pipeliner::Encoding, standard::Secret};
use callout_deliver::{Request, Signature, Verdict};
use callout_testkit::{RawReceiver, RawRequest};

use crate::support::sender;

/// A raw receiver that keeps every request and answers each with an empty 200.
fn logging_ok() -> RawReceiver {
    RawReceiver::start(|mut connection| {
        while connection.read_request().is_some() {
            if !connection.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n") {
                return;
            }
        }
    })
}

/// Sends each request to one raw receiver, in turn on one kept connection, and returns the
/// header names of each request as they arrived.
fn names_on_the_wire(requests: Vec<Request>) -> Vec<Vec<String>> {
    let receiver = logging_ok();
    let sender = sender();
    for request in &requests {
        let request = Request {
            url: format!("{}/hook", receiver.url),
            ..request.clone()
        };
        let outcome = sender.send(&request);
        assert_eq!(outcome.verdict, Verdict::Delivered, "{outcome:?}");
    }
    receiver
        .wait(requests.len(), Duration::from_secs(10))
        .iter()
        .map(|raw: &RawRequest| raw.headers().into_iter().map(|(name, _)| name).collect())
        .collect()
}

fn request(signature: Signature) -> Request {
    let mut request = Request::new("msg_01", "", br#"{"a":1}"#.to_vec());
    request.signature = signature;
    request.custom_headers = vec![
        ("X-Mixed-Case".into(), "1".into()),
        ("x-all-lower".into(), "2".into()),
        ("X-API-KEY".into(), "3".into()),
    ];
    request
}

fn has(names: &[String], wanted: &str) -> bool {
    names.iter().any(|name| name == wanted)
}

#[test]
fn every_header_goes_out_spelled_as_documented_or_as_written() {
    let mut superoffice = request(Signature::SuperOffice {
        secret: "s3cr3t".into(),
    });
    superoffice.profile_headers = vec![
        ("X-SuperOffice-Event".into(), "contact.changed".into()),
        ("X-SuperOffice-EventId".into(), "88f91933".into()),
        ("X-SuperOffice-Retry".into(), "0".into()),
    ];
    let requests = vec![
        request(Signature::Standard {
            secrets: vec![Secret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap()],
        }),
        request(Signature::Autotask {
            secret: "s3cr3t".into(),
        }),
        superoffice,
        request(Signature::Pipeliner {
            key: "k3y".into(),
            encoding: Encoding::Hex,
        }),
    ];
    let wire = names_on_the_wire(requests);
    assert_eq!(wire.len(), 4);
    for names in &wire {
        for expected in [
            "Content-Type",
            "User-Agent",
            "Host",
            "Content-Length",
            "X-Mixed-Case",
            "x-all-lower",
            "X-API-KEY",
        ] {
            assert!(has(names, expected), "{expected} missing from {names:?}");
        }
    }
    // Standard Webhooks' spec writes its headers in lower case.
    for expected in ["webhook-id", "webhook-timestamp", "webhook-signature"] {
        assert!(has(&wire[0], expected), "{expected}: {:?}", wire[0]);
    }
    assert!(has(&wire[1], "X-Hook-Signature"), "{:?}", wire[1]);
    for expected in [
        "X-SuperOffice-Signature",
        "X-SuperOffice-Event",
        "X-SuperOffice-EventId",
        "X-SuperOffice-Retry",
    ] {
        assert!(has(&wire[2], expected), "{expected}: {:?}", wire[2]);
    }
    assert!(has(&wire[3], "WebHook-Signature"), "{:?}", wire[3]);
}

#[test]
fn a_body_that_looks_like_a_head_is_sent_byte_for_byte() {
    // The rewrite touches the request head only: a body with header-like lines, in a request
    // of its own and after a kept connection's first request, arrives as it was.
    let body = b"POST / HTTP/1.1\r\ncontent-type: x\r\nx-mixed-case: y\r\n\r\n".to_vec();
    let receiver = logging_ok();
    let sender = sender();
    for _ in 0..2 {
        let mut request = request(Signature::None);
        request.url = format!("{}/hook", receiver.url);
        request.body = body.clone();
        assert_eq!(sender.send(&request).verdict, Verdict::Delivered);
    }
    let got = receiver.wait(2, Duration::from_secs(10));
    assert_eq!(got.len(), 2);
    for raw in &got {
        assert_eq!(raw.body(), &body[..]);
    }
}
