//! Signed deliveries per second through `callout_deliver::Sender`, beside raw ureq with the same
//! agent settings (no signing, no classification), to a local keep-alive receiver, from 1, 4
//! and 16 threads.
//!
//! The receiver is a small threaded std::net HTTP/1.1 responder (one thread per connection):
//! faster and steadier than tiny_http, so the client side is what is measured.

// criterion_group! defines an undocumented public function.
#![allow(missing_docs)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use callout_deliver::sign::standard::Secret;
use callout_deliver::{AllowList, Request, Sender, SenderConfig, Signature, Timeouts, Verdict};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use hmac::{Hmac, Mac};
use sha2::Sha256;

const THREADS: [usize; 3] = [1, 4, 16];

/// Serves keep-alive connections forever (the bench process ends them): reads a request head
/// and its Content-Length body, answers an empty 200.
fn start_receiver() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            thread::spawn(move || serve(stream));
        }
    });
    format!("http://{address}/hook")
}

fn serve(stream: TcpStream) {
    stream.set_nodelay(true).unwrap();
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    let mut body = Vec::new();
    loop {
        let mut length = 0usize;
        // Request line and headers, up to the empty line.
        loop {
            line.clear();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            if line == "\r\n" {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse().unwrap_or(0);
                }
            }
        }
        body.resize(length, 0);
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        if writer
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
            .is_err()
        {
            return;
        }
    }
}

/// A 1 KiB JSON body.
fn body() -> Vec<u8> {
    let mut body = br#"{"type":"contact.updated","timestamp":"2026-11-02T10:00:00Z","data":{"entity":"contact","id":18,"notes":""#.to_vec();
    body.resize(1024 - 4, b'x');
    body.extend_from_slice(br#""}}"#);
    body.truncate(1024);
    body
}

fn timeouts() -> Timeouts {
    Timeouts {
        connect: Duration::from_secs(5),
        send: Duration::from_secs(10),
        response: Duration::from_secs(30),
        body: Duration::from_secs(10),
    }
}

/// The agent the Sender builds, minus the guard resolver and TLS-marking connector.
fn raw_agent() -> ureq::Agent {
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
fn raw_send(agent: &ureq::Agent, url: &str, body: &[u8], headers: &[(&str, String)]) {
    let mut builder = agent.post(url);
    for (name, value) in headers {
        builder = builder.header(*name, value.as_str());
    }
    let mut response = builder.send(body).unwrap();
    assert_eq!(response.status().as_u16(), 200);
    std::io::copy(&mut response.body_mut().as_reader(), &mut std::io::sink()).unwrap();
}

/// Runs `total` calls of `one` split over `threads` threads; returns the wall time.
fn run_split(total: u64, threads: usize, one: impl Fn(u64) + Sync) -> Duration {
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

fn deliver(c: &mut Criterion) {
    let url = start_receiver();
    let body = body();
    let sender = Sender::new(SenderConfig {
        allow: AllowList::parse(["127.0.0.1"]).unwrap(),
        max_idle_connections_per_host: 16,
        timeouts: timeouts(),
        ..SenderConfig::default()
    })
    .unwrap();
    let secret = Secret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
    let mut request = Request::new("msg_bench", url.clone(), body.clone());
    request.signature = Signature::Standard {
        secrets: vec![secret],
    };
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
                b.iter_custom(|iters| {
                    run_split(iters, threads, |_| {
                        let outcome = sender.send(&request);
                        assert_eq!(outcome.verdict, Verdict::Delivered);
                    })
                })
            },
        );
    }
    group.finish();
}

criterion_group!(benches, deliver);
criterion_main!(benches);
