//! Receivers that hold a worker on purpose: every attempt ends within its phase limits, however
//! the receiver stalls, drips or floods.

use std::time::{Duration, Instant};

use callout_deliver::{ErrorClass, Request, Timeouts};
use callout_testkit::RawReceiver;

use crate::support::sender_with;

/// Each phase's limit in these tests.
const LIMIT: Duration = Duration::from_millis(300);
/// What an attempt may take at most here: the phases it can be in, and scheduling slack on a
/// loaded 2-core machine. The receivers would go on for 10 s.
const BOUND: Duration = Duration::from_secs(3);

fn request(url: &str) -> Request {
    Request::new("del_1", url, br#"{"type":"contact.updated"}"#.to_vec())
}

/// Writes `piece` every 20 ms for up to 10 s, or until the client goes away.
fn forever(connection: &mut callout_testkit::Connection, piece: &[u8]) {
    connection.repeat(piece, Duration::from_millis(20), Duration::from_secs(10));
}

#[test]
fn a_response_head_dripped_forever_ends_within_the_response_limit() {
    let receiver = RawReceiver::after_request(|mut connection| {
        connection.write(b"HTTP/1.1 200 OK\r\nX-Slow: ");
        forever(&mut connection, b"a");
    });
    let started = Instant::now();
    let outcome = sender_with(Timeouts::all(LIMIT)).send(&request(&receiver.url));
    let took = started.elapsed();
    assert_eq!(
        outcome.error_class(),
        Some(ErrorClass::Timeout),
        "{outcome:?}"
    );
    assert!(took < BOUND, "took {took:?}");
}

#[test]
fn endless_100_continue_ends_within_the_response_limit() {
    let receiver = RawReceiver::after_request(|mut connection| {
        forever(&mut connection, b"HTTP/1.1 100 Continue\r\n\r\n");
    });
    let started = Instant::now();
    let outcome = sender_with(Timeouts::all(LIMIT)).send(&request(&receiver.url));
    let took = started.elapsed();
    assert!(outcome.response.is_none(), "{outcome:?}");
    assert!(outcome.error_class().is_some(), "{outcome:?}");
    assert!(took < BOUND, "took {took:?}");
}

#[test]
fn a_body_dripped_forever_ends_within_the_body_limit() {
    let receiver = RawReceiver::after_request(|mut connection| {
        connection.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n");
        forever(&mut connection, b"x");
    });
    let started = Instant::now();
    let outcome = sender_with(Timeouts::all(LIMIT)).send(&request(&receiver.url));
    let took = started.elapsed();
    assert_eq!(outcome.status(), Some(200), "{outcome:?}");
    assert!(took < BOUND, "took {took:?}");
}

#[test]
fn a_flood_of_response_headers_is_refused_not_read_forever() {
    let receiver = RawReceiver::after_request(|mut connection| {
        connection.write(b"HTTP/1.1 200 OK\r\n");
        forever(
            &mut connection,
            &[b"X-Flood: yes\r\n".as_slice(); 512].concat(),
        );
    });
    let started = Instant::now();
    let outcome = sender_with(Timeouts::all(Duration::from_secs(5))).send(&request(&receiver.url));
    let took = started.elapsed();
    assert!(outcome.response.is_none(), "{outcome:?}");
    assert!(outcome.error_class().is_some(), "{outcome:?}");
    assert!(
        took < BOUND,
        "refused by size, before the limit: took {took:?}"
    );
}
