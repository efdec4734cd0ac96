//! Keep-alive: sends reuse one connection, including after error statuses, and across threads.

use std::collections::HashSet;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use callout_deliver::{Request, Verdict};

use crate::support::{receiver, sender, Reply};

#[test]
fn twenty_sends_use_one_connection() {
    let (url, seen) = receiver(20, |received| {
        // Alternate statuses with bodies: reading error bodies must keep the connection too.
        if received.body.ends_with(b"1}") {
            Reply::status(500).body("try later")
        } else {
            Reply::status(200).body("ok")
        }
    });
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
        .map(|_| seen.recv_timeout(Duration::from_secs(5)).unwrap().peer)
        .collect();
    assert_eq!(peers.len(), 1, "connections: {peers:?}");
}

#[test]
fn worker_threads_share_one_sender() {
    let (url, seen) = receiver(40, |_| Reply::status(200));
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
        .map(|_| seen.recv_timeout(Duration::from_secs(5)).unwrap().peer)
        .collect();
    // At most one connection per worker (tiny_http serves one request at a time per
    // connection, so workers may not always find an idle one, but the pool keeps them).
    assert!(peers.len() <= 4, "connections: {}", peers.len());
}
