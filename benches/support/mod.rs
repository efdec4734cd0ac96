//! Shared bench fixtures (the receiver is `callout_testkit::RawReceiver::counting_ok`): the raw
//! ureq agent the sender is compared with, the sender itself with a signed request, a bare sled
//! for the raw storage limits, a helper that splits work over threads, and the benches' settings
//! from the environment.

#![allow(dead_code)] // each bench uses a different part

use std::thread;
use std::time::{Duration, Instant};

use callout_deliver::sign::standard::Secret;
use callout_deliver::{AllowList, Request, Sender, SenderConfig, Signature, Timeouts, Verdict};

pub fn timeouts() -> Timeouts {
    Timeouts {
        connect: Duration::from_secs(5),
        send: Duration::from_secs(10),
        response: Duration::from_secs(30),
        body: Duration::from_secs(10),
    }
}

/// The agent the Sender builds, minus the guard resolver and its connector chain (TLS
/// failures marked, each request written in one piece): ureq as it comes.
pub fn raw_agent() -> ureq::Agent {
    let t = timeouts();
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .proxy(None)
        .max_idle_connections(64)
        .max_idle_connections_per_host(16)
        .timeout_connect(Some(t.connect))
        .timeout_send_request(Some(t.send))
        .timeout_send_body(Some(t.send))
        .timeout_recv_response(Some(t.response))
        .timeout_recv_body(Some(t.body))
        .build()
        .into()
}

/// One POST with ureq alone: no signing, no guard, no classification; reads the body to its
/// end so the connection returns to the pool, as the sender does.
pub fn raw_send(agent: &ureq::Agent, url: &str, body: &[u8], headers: &[(&str, String)]) {
    let mut builder = agent.post(url);
    for (name, value) in headers {
        builder = builder.header(*name, value.as_str());
    }
    let mut response = builder.send(body).unwrap();
    assert_eq!(response.status().as_u16(), 200);
    std::io::copy(&mut response.body_mut().as_reader(), &mut std::io::sink()).unwrap();
}

/// The sender as the engine uses it, allowed to reach 127.0.0.1, and a request to `url`
/// carrying `body` signed with the Standard Webhooks scheme.
pub fn signed_sender(url: &str, body: &[u8]) -> (Sender, Request) {
    let sender = Sender::new(SenderConfig {
        allow: AllowList::parse(["127.0.0.1"]).unwrap(),
        max_idle_connections_per_host: 16,
        timeouts: timeouts(),
        ..SenderConfig::default()
    })
    .unwrap();
    let secret = Secret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
    let mut request = Request::new("msg_bench", url, body.to_vec());
    request.signature = Signature::Standard {
        secrets: vec![secret],
    };
    (sender, request)
}

/// One signed POST through the sender, which must be delivered.
pub fn sender_send(sender: &Sender, request: &Request) {
    let outcome = sender.send(request);
    assert_eq!(outcome.verdict, Verdict::Delivered);
}

/// Runs `total` calls of `one` split over `threads` threads; returns the wall time.
pub fn run_split(total: u64, threads: usize, one: impl Fn(u64) + Sync) -> Duration {
    let per_thread = total.div_ceil(threads as u64);
    let started = Instant::now();
    thread::scope(|scope| {
        for worker in 0..threads as u64 {
            let one = &one;
            scope.spawn(move || {
                for i in 0..per_thread {
                    one(worker * per_thread + i);
                }
            });
        }
    });
    started.elapsed()
}

/// A bare sled database and tree, for the raw limits, with the store's cache size.
pub fn raw_sled(dir: &tempfile::TempDir) -> (sled::Db, sled::Tree) {
    let db = sled::Config::new()
        .path(dir.path())
        .cache_capacity(64 * 1024 * 1024)
        .open()
        .expect("sled opens");
    let tree = db.open_tree("queue").expect("tree");
    (db, tree)
}

/// A bench setting from the environment: a whole number, `_` allowed between digits
/// (`1_000_000`); `None` when unset or not a number.
pub fn env_opt(name: &str) -> Option<u64> {
    std::env::var(name)
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
}
