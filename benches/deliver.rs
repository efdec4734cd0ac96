//! Signed deliveries per second through `callout_deliver::Sender`, beside raw ureq with the same
//! agent settings (no signing, no classification, and the head and body of each request
//! written separately, as ureq does), to a local keep-alive receiver, from 1, 4 and 16 threads.
//!
//! The receiver is the testkit's raw keep-alive responder (one thread per connection): faster
//! and steadier than tiny_http, so the client side is what is measured.

// criterion_group! defines an undocumented public function.
#![allow(missing_docs)]

use std::time::Duration;

use callout_deliver::sign::standard::Secret;
use callout_deliver::Signature;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use hmac::{Hmac, Mac};
use sha2::Sha256;

#[path = "support/mod.rs"]
mod support;
use callout_testkit::RawReceiver;
use support::{raw_agent, raw_send, run_split, sender_send, signed_sender};

const THREADS: [usize; 3] = [1, 4, 16];

/// The Standard Webhooks specification's example `whsk_` signing key.
const SIGNING_KEY: &str =
    "whsk_6Xb/dCcHpPea21PS1N9VY/NZW723CEc77N4rJCubMbfVKIDij2HKpMKkioLlX0dRqSKJp4AJ6p9lMicMFs6Kvg==";

/// A 1 KiB JSON body.
fn body() -> Vec<u8> {
    let mut body = br#"{"type":"contact.updated","timestamp":"2026-11-02T10:00:00Z","data":{"entity":"contact","id":18,"notes":""#.to_vec();
    body.resize(1024 - 4, b'x');
    body.extend_from_slice(br#""}}"#);
    body.truncate(1024);
    body
}

fn deliver(c: &mut Criterion) {
    let receiver = RawReceiver::counting_ok();
    let url = format!("{}/hook", receiver.url);
    let body = body();
    let (sender, request) = signed_sender(&url, &body);
    let agent = raw_agent();

    let mut group = c.benchmark_group("deliver");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .throughput(Throughput::Elements(1));
    // The signed request's headers, computed once: raw ureq sending exactly the sender's bytes
    // isolates the cost of signing and classifying from the cost of the headers on the wire.
    let mut same_headers: Vec<(&str, String)> = vec![
        ("content-type", "application/json".into()),
        ("callout-delivery-id", "msg_bench".into()),
        ("user-agent", "callout/0.1.0".into()),
    ];
    same_headers.extend(request.signature.headers("msg_bench", 1_614_265_330, &body));

    // The signing alone, in-process: what the sender adds per request before any I/O.
    group.bench_function("sign_standard_1k", |b| {
        b.iter(|| request.signature.headers("msg_bench", 1_614_265_330, &body))
    });

    // The same with Standard Webhooks' asymmetric v1a (ed25519, a whsk_ key): what a host
    // that gives its receivers whpk_ keys pays per request instead.
    let v1a = Signature::Standard {
        secrets: vec![Secret::parse(SIGNING_KEY).expect("the specification's whsk_ key")],
    };
    group.bench_function("sign_standard_v1a_1k", |b| {
        b.iter(|| v1a.headers("msg_bench", 1_614_265_330, &body))
    });

    // HMAC-SHA256 over the same 1 KiB, straight from the hmac crate: the floor of signing on
    // this CPU, to tell the scheme's cost from the sender's.
    group.bench_function("hmac_sha256_1k", |b| {
        b.iter(|| {
            let mut mac = Hmac::<Sha256>::new_from_slice(b"0123456789abcdef0123456789abcdef")
                .expect("any key length");
            mac.update(&body);
            mac.finalize().into_bytes()
        })
    });

    for threads in THREADS {
        group.bench_with_input(
            BenchmarkId::new("raw_ureq", threads),
            &threads,
            |b, &threads| {
                b.iter_custom(|iters| {
                    run_split(iters, threads, |_| {
                        raw_send(&agent, &url, &body, &same_headers[..1]);
                    })
                })
            },
        );
        group.bench_with_input(
            BenchmarkId::new("raw_ureq_same_headers", threads),
            &threads,
            |b, &threads| {
                b.iter_custom(|iters| {
                    run_split(iters, threads, |_| {
                        raw_send(&agent, &url, &body, &same_headers);
                    })
                })
            },
        );
        group.bench_with_input(
            BenchmarkId::new("signed_sender", threads),
            &threads,
            |b, &threads| {
                b.iter_custom(|iters| run_split(iters, threads, |_| sender_send(&sender, &request)))
            },
        );
    }
    group.finish();
}

criterion_group!(benches, deliver);
criterion_main!(benches);
