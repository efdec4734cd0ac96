//! One test per receiver behaviour: what the sender reports for each.

use std::net::TcpListener;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use callout_deliver::{BodyEnd, ErrorClass, Request, Sender, SenderConfig, Timeouts, Verdict};

use callout_testkit::{RawReceiver, Receiver, Reply};

use crate::support::{imf_fixdate, sender, sender_with};

fn request(url: &str) -> Request {
    Request::new("del_1", url, br#"{"type":"contact.updated"}"#.to_vec())
}

const SHORT: Duration = Duration::from_millis(200);

#[test]
fn success_is_delivered_with_status_and_excerpt() {
    let receiver = Receiver::start(|_, _| Reply::status(200).body("thanks"));
    let url = receiver.url.clone();
    let outcome = sender().send(&request(&format!("{url}/hook")));

    assert_eq!(outcome.verdict, Verdict::Delivered);
    assert_eq!(outcome.status(), Some(200));
    let response = outcome.response.unwrap();
    assert_eq!(response.body, b"thanks");
    assert_eq!(response.body_end, BodyEnd::Complete);
    assert!(outcome.duration < Duration::from_secs(3));

    let received = receiver.nth(0, Duration::from_secs(5)).unwrap();
    assert_eq!(received.path, "/hook");
    assert_eq!(received.body, br#"{"type":"contact.updated"}"#);
    assert_eq!(received.one("content-type"), "application/json");
    assert_eq!(
        received.one("user-agent"),
        concat!("callout/", env!("CARGO_PKG_VERSION"))
    );
    assert_eq!(received.one("callout-delivery-id"), "del_1");
}

#[test]
fn any_2xx_is_delivered() {
    let receiver = Receiver::start(|_, _| Reply::status(204));
    let url = receiver.url.clone();
    assert_eq!(sender().send(&request(&url)).verdict, Verdict::Delivered);
}

#[test]
fn a_receiver_slower_than_the_timeout_is_a_timeout() {
    let receiver = RawReceiver::after_request(|mut connection| {
        connection.pause(Duration::from_millis(800));
        connection.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
    });
    let url = receiver.url.clone();
    let sender = sender_with(Timeouts::all(SHORT));
    let started = Instant::now();
    let outcome = sender.send(&request(&url));

    assert_eq!(
        outcome.error_class(),
        Some(ErrorClass::Timeout),
        "{outcome:?}"
    );
    assert!(outcome.response.is_none());
    assert!(
        started.elapsed() < Duration::from_millis(700),
        "{:?}",
        started.elapsed()
    );
    assert!(outcome.duration >= SHORT, "{:?}", outcome.duration);
}

#[test]
fn a_request_can_shorten_the_senders_timeouts() {
    let receiver = RawReceiver::after_request(|mut connection| {
        connection.pause(Duration::from_millis(800));
        connection.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
    });
    let url = receiver.url.clone();
    let mut slow_ok = request(&url);
    slow_ok.timeouts = Some(Timeouts::all(SHORT));
    let outcome = sender().send(&slow_ok);
    assert_eq!(
        outcome.error_class(),
        Some(ErrorClass::Timeout),
        "{outcome:?}"
    );
    assert!(outcome.duration < Duration::from_millis(700));
}

#[test]
fn a_connection_closed_before_the_response_is_an_io_failure() {
    let receiver = RawReceiver::after_request(|mut connection| {
        connection.write(b"HTTP/1.1 200 OK\r\nContent-");
        // Dropping the connection closes it mid-head.
    });
    let url = receiver.url.clone();
    let outcome = sender().send(&request(&url));
    assert_eq!(outcome.error_class(), Some(ErrorClass::Io), "{outcome:?}");
    assert!(outcome.response.is_none());
}

#[test]
fn a_connection_closed_mid_body_keeps_the_status_and_records_the_cut() {
    let receiver = RawReceiver::after_request(|mut connection| {
        connection.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial");
    });
    let url = receiver.url.clone();
    let outcome = sender().send(&request(&url));
    // The receiver said 200: it has the delivery, whatever happened to its answer's body.
    assert_eq!(outcome.verdict, Verdict::Delivered);
    let response = outcome.response.unwrap();
    assert_eq!(response.body, b"partial");
    assert!(
        matches!(
            response.body_end,
            BodyEnd::Failed {
                class: ErrorClass::Io,
                ..
            }
        ),
        "{:?}",
        response.body_end
    );
}

#[test]
fn garbage_bytes_are_a_protocol_failure() {
    let receiver = RawReceiver::after_request(|mut connection| {
        connection.write(b"\x00\x01\x02 not http at all\r\n\r\n");
    });
    let url = receiver.url.clone();
    let outcome = sender().send(&request(&url));
    assert_eq!(
        outcome.error_class(),
        Some(ErrorClass::Protocol),
        "{outcome:?}"
    );
}

#[test]
fn gone_stops_the_subscription() {
    let receiver = Receiver::start(|_, _| Reply::status(410).body("unsubscribed"));
    let url = receiver.url.clone();
    let outcome = sender().send(&request(&url));
    assert_eq!(outcome.verdict, Verdict::Gone);
    assert_eq!(outcome.response.unwrap().body_text(), "unsubscribed");
}

#[test]
fn too_many_requests_with_retry_after_seconds_is_throttled() {
    let receiver = Receiver::start(|_, _| Reply::status(429).header("Retry-After", "120"));
    let url = receiver.url.clone();
    let outcome = sender().send(&request(&url));
    assert_eq!(
        outcome.verdict,
        Verdict::Throttled {
            retry_after: Some(Duration::from_secs(120))
        }
    );
    assert_eq!(outcome.status(), Some(429));
}

#[test]
fn too_many_requests_with_retry_after_date_is_throttled() {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let receiver = Receiver::start(move |_, _| {
        Reply::status(429).header("Retry-After", imf_fixdate(now + 90))
    });
    let url = receiver.url.clone();
    let outcome = sender().send(&request(&url));
    let Verdict::Throttled {
        retry_after: Some(wait),
    } = outcome.verdict
    else {
        panic!("{outcome:?}");
    };
    // Whole seconds, and a second or two may pass during the test.
    assert!(
        wait <= Duration::from_secs(90) && wait >= Duration::from_secs(85),
        "{wait:?}"
    );
}

#[test]
fn unavailable_is_throttled_with_or_without_retry_after() {
    let receiver = Receiver::start(|_, received| {
        if received.path == "/with" {
            Reply::status(503).header("Retry-After", "5")
        } else {
            Reply::status(503).header("Retry-After", "whenever")
        }
    });
    let url = receiver.url.clone();
    let sender = sender();
    assert_eq!(
        sender.send(&request(&format!("{url}/with"))).verdict,
        Verdict::Throttled {
            retry_after: Some(Duration::from_secs(5))
        }
    );
    assert_eq!(
        sender.send(&request(&format!("{url}/garbled"))).verdict,
        Verdict::Throttled { retry_after: None }
    );
}

#[test]
fn server_error_is_a_failed_http_status_with_excerpt() {
    let receiver = Receiver::start(|_, _| Reply::status(500).body("database down"));
    let url = receiver.url.clone();
    let outcome = sender().send(&request(&url));
    assert_eq!(outcome.error_class(), Some(ErrorClass::HttpStatus));
    assert_eq!(outcome.status(), Some(500));
    assert_eq!(outcome.response.unwrap().body_text(), "database down");
}

#[test]
fn a_redirect_is_an_outcome_and_is_not_followed() {
    let elsewhere = Receiver::start(|_, _| Reply::status(200));
    let location = format!("{}/stolen", elsewhere.url);
    let receiver =
        Receiver::start(move |_, _| Reply::status(302).header("Location", location.clone()));
    let url = receiver.url.clone();

    let outcome = sender().send(&request(&url));
    assert_eq!(outcome.error_class(), Some(ErrorClass::HttpStatus));
    assert_eq!(outcome.status(), Some(302));
    let Verdict::Failed { detail, .. } = &outcome.verdict else {
        unreachable!()
    };
    assert!(detail.contains("/stolen"), "{detail}");
    assert!(receiver.nth(0, Duration::from_secs(5)).is_some());
    assert!(
        elsewhere.nth(0, Duration::from_millis(300)).is_none(),
        "the redirect target was requested"
    );
}

#[test]
fn a_huge_response_body_is_cut_at_the_limit() {
    let receiver = RawReceiver::after_request(|mut connection| {
        let size = 10 * 1024 * 1024;
        connection.write(format!("HTTP/1.1 200 OK\r\nContent-Length: {size}\r\n\r\n").as_bytes());
        let chunk = vec![b'x'; 64 * 1024];
        for _ in 0..size / chunk.len() {
            if !connection.write(&chunk) {
                break; // the sender hung up after its limit, as it should
            }
        }
    });
    let url = receiver.url.clone();
    let sender = Sender::new(SenderConfig {
        allow: callout_deliver::AllowList::parse(["127.0.0.1"]).unwrap(),
        max_response_bytes: 64 * 1024,
        excerpt_bytes: 1024,
        ..SenderConfig::default()
    })
    .unwrap();
    let started = Instant::now();
    let outcome = sender.send(&request(&url));

    assert_eq!(outcome.verdict, Verdict::Delivered);
    let response = outcome.response.unwrap();
    assert_eq!(response.body_end, BodyEnd::CutAtLimit);
    assert_eq!(response.body_len, 64 * 1024 + 1);
    assert_eq!(response.body, vec![b'x'; 1024]);
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[test]
fn a_closed_port_is_connect_refused() {
    let port = {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    }; // dropped: nothing listens there now
    let outcome = sender().send(&request(&format!("http://127.0.0.1:{port}/")));
    assert_eq!(
        outcome.error_class(),
        Some(ErrorClass::ConnectRefused),
        "{outcome:?}"
    );
}

#[test]
fn https_to_a_plain_http_receiver_is_a_tls_failure() {
    // A plain HTTP server answering the TLS ClientHello with an HTTP error, as real ones do.
    let receiver = RawReceiver::start(|mut connection| {
        let _hello = connection.read_some(512);
        connection.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n");
    });
    let url = receiver.url.replace("http://", "https://");
    let outcome = sender().send(&request(&format!("{url}/")));
    assert_eq!(outcome.error_class(), Some(ErrorClass::Tls), "{outcome:?}");
}

#[test]
fn unusable_urls_are_invalid_targets() {
    for url in [
        "not a url",
        "ftp://127.0.0.1/x",
        "http:///path",
        "/relative",
    ] {
        let outcome = sender().send(&request(url));
        assert_eq!(
            outcome.error_class(),
            Some(ErrorClass::InvalidTarget),
            "{url}: {outcome:?}"
        );
    }
}

#[test]
fn a_delivery_id_that_is_not_a_header_value_is_an_invalid_request() {
    let receiver = Receiver::start(|_, _| Reply::status(200));
    let url = receiver.url.clone();
    let mut bad = request(&url);
    bad.delivery_id = "line\r\nbreak".into();
    let outcome = sender().send(&bad);
    assert_eq!(outcome.error_class(), Some(ErrorClass::InvalidRequest));
    assert!(receiver.nth(0, Duration::from_millis(300)).is_none());
}

#[test]
fn zero_timeouts_and_bad_proxies_are_refused_at_construction() {
    let zero = SenderConfig {
        timeouts: Timeouts {
            connect: Duration::ZERO,
            ..Timeouts::default()
        },
        ..SenderConfig::default()
    };
    assert!(Sender::new(zero).is_err());
    let proxy = SenderConfig {
        proxy: Some("ftp://nope".into()),
        ..SenderConfig::default()
    };
    assert!(matches!(
        Sender::new(proxy),
        Err(callout_deliver::DeliverError::InvalidProxy { .. })
    ));
    let socks = SenderConfig {
        proxy: Some("socks5://127.0.0.1:1080".into()),
        ..SenderConfig::default()
    };
    assert!(matches!(
        Sender::new(socks),
        Err(callout_deliver::DeliverError::InvalidProxy { .. })
    ));
}
