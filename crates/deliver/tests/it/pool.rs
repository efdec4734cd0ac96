//! Keep-alive: sends reuse one connection, including after error statuses, and across threads.

use std::collections::HashSet;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use callout_deliver::{Request, Verdict};
use callout_testkit::{RawReceiver, Receiver, Reply};

use crate::support::sender;

#[test]
fn twenty_sends_use_one_connection() {
    let receiver = Receiver::start(|_, received| {
        // Alternate statuses with bodies: reading error bodies must keep the connection too.
        if received.body.ends_with(b"1}") {
            Reply::status(500).body("try later")
        } else {
            Reply::status(200).body("ok")
        }
    });
    let url = receiver.url.clone();
    let sender = sender();
    for i in 0..20 {
        let body = format!(r#"{{"n":{}}}"#, i % 2);
        let outcome = sender.send(&Request::new(
            format!("d{i}"),
            url.clone(),
            body.into_bytes(),
        ));
        assert!(outcome.response.is_some(), "{outcome:?}");
    }
    let peers: HashSet<_> = (0..20)
        .map(|n| receiver.nth(n, Duration::from_secs(5)).unwrap().peer)
        .collect();
    assert_eq!(peers.len(), 1, "connections: {peers:?}");
}

#[test]
fn worker_threads_share_one_sender() {
    let receiver = Receiver::ok();
    let url = receiver.url.clone();
    let sender = Arc::new(sender());
    let workers: Vec<_> = (0..4)
        .map(|worker| {
            let sender = Arc::clone(&sender);
            let url = url.clone();
            thread::spawn(move || {
                (0..10)
                    .map(|i| {
                        sender.send(&Request::new(
                            format!("w{worker}-{i}"),
                            url.clone(),
                            b"{}".to_vec(),
                        ))
                    })
                    .filter(|outcome| outcome.verdict == Verdict::Delivered)
                    .count()
            })
        })
        .collect();
    let delivered: usize = workers.into_iter().map(|w| w.join().unwrap()).sum();
    assert_eq!(delivered, 40);
    let peers: HashSet<_> = (0..40)
        .map(|n| receiver.nth(n, Duration::from_secs(5)).unwrap().peer)
        .collect();
    // At most one connection per worker (tiny_http serves one request at a time per
    // connection, so workers may not always find an idle one, but the pool keeps them).
    assert!(peers.len() <= 4, "connections: {}", peers.len());
}

#[test]
fn a_connection_with_stray_bytes_after_its_response_is_not_reused() {
    // The first connection answers with two bytes more than its Content-Length says: reusing
    // it would read them as the start of the next response. The receiver records the
    // connection each request came on.
    let receiver = RawReceiver::start(|mut connection| {
        let reply: &[u8] = match connection.index {
            0 => b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokXX",
            _ => b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
        };
        while connection.read_request().is_some() {
            connection.write(reply);
        }
    });
    let url = format!("{}/", receiver.url);
    let sender = sender();
    for n in 0..2 {
        let outcome = sender.send(&Request::new(format!("d{n}"), url.clone(), b"{}".to_vec()));
        assert_eq!(outcome.verdict, Verdict::Delivered, "{outcome:?}");
    }
    // Each request as (connection, its count on that connection), both as the receiver saw.
    let got: Vec<(usize, usize)> = (0..2)
        .map(|n| receiver.nth(n, Duration::from_secs(5)).unwrap())
        .map(|request| (request.connection, request.index + 1))
        .collect();
    assert_eq!(
        got,
        [(0, 1), (1, 1)],
        "the second request on a new connection"
    );
}
