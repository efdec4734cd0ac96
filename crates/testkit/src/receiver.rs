//! The recording HTTP receiver, on tiny_http.

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::log::Log;

/// How a receiver answers: given how many requests to the same path came before, and the
/// request.
type Script = dyn Fn(usize, &Received) -> Reply + Send + Sync;

/// Threads serving requests: enough that one slow reply does not hold up the others.
const THREADS: usize = 4;

/// One request as the receiver got it.
#[derive(Debug, Clone)]
pub struct Received {
    /// The method, `POST` for a webhook.
    pub method: String,
    /// The request target as sent: path and query (`host:port` for a proxy's CONNECT).
    pub path: String,
    /// Every header as received, in order, repeats kept.
    pub headers: Vec<(String, String)>,
    /// The body, byte for byte.
    pub body: Vec<u8>,
    /// The client's address: one per connection, so tests can tell reuse from reconnects.
    pub peer: SocketAddr,
    /// When the request had been read.
    pub at: Instant,
}

impl Received {
    /// The first value of a header, its name compared case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.all(name).into_iter().next()
    }

    /// Every value of a header, name compared case-insensitively.
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
            .collect()
    }

    /// The single value of a header; panics if it is missing or repeated.
    pub fn one(&self, name: &str) -> &str {
        let values = self.all(name);
        assert_eq!(values.len(), 1, "header {name}: {values:?}");
        values[0]
    }

    /// The body as JSON; panics if it is not.
    #[cfg(feature = "json")]
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("receiver got JSON")
    }
}

/// How the receiver answers one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The status code.
    pub status: u16,
    /// Headers to add to the response.
    pub headers: Vec<(String, String)>,
    /// The response body.
    pub body: Vec<u8>,
    /// How long to wait before answering: a slow receiver, or a hanging one when longer than
    /// the client's timeout. Cut short when the receiver is dropped.
    pub delay: Duration,
}

impl Reply {
    /// An answer with `status`, no extra headers, an empty body, at once.
    pub fn status(status: u16) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: Vec::new(),
            delay: Duration::ZERO,
        }
    }

    /// Adds a header.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Reply {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Sets the body.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Reply {
        self.body = body.into();
        self
    }

    /// Sets the delay before answering.
    pub fn delay(mut self, delay: Duration) -> Reply {
        self.delay = delay;
        self
    }
}

/// A real HTTP server on `127.0.0.1:0` that records every request and answers as its script
/// says. Dropping it stops the server (cutting scripted delays short) and joins its threads.
pub struct Receiver {
    /// `http://127.0.0.1:<port>`, without a trailing slash.
    pub url: String,
    log: Arc<Log<Received>>,
    server: Arc<tiny_http::Server>,
    threads: Vec<JoinHandle<()>>,
}

impl Receiver {
    /// Answers 200 to everything.
    pub fn ok() -> Receiver {
        Receiver::start(|_, _| Reply::status(200))
    }

    /// Starts a receiver whose `script` answers each request, given how many requests to the
    /// same path came before it (0 for the first) and the request.
    pub fn start(script: impl Fn(usize, &Received) -> Reply + Send + Sync + 'static) -> Receiver {
        let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").expect("bind 127.0.0.1:0"));
        let port = server.server_addr().to_ip().expect("ip listener").port();
        let log = Arc::new(Log::new(true));
        let script: Arc<Script> = Arc::new(script);
        let per_path: Arc<PerPath> = Arc::default();
        let threads = (0..THREADS)
            .map(|_| {
                let (server, log, script, per_path) = (
                    Arc::clone(&server),
                    Arc::clone(&log),
                    Arc::clone(&script),
                    Arc::clone(&per_path),
                );
                std::thread::spawn(move || serve(&server, &log, &*script, &per_path))
            })
            .collect();
        Receiver {
            url: format!("http://127.0.0.1:{port}"),
            log,
            server,
            threads,
        }
    }

    /// Every request so far, in arrival order.
    pub fn received(&self) -> Vec<Received> {
        self.log.entries()
    }

    /// The requests so far to `path`.
    pub fn on(&self, path: &str) -> Vec<Received> {
        on(&self.log.entries(), path)
    }

    /// Waits until at least `count` requests arrived, at most `limit`; returns all requests by
    /// then (fewer than `count` when the deadline passed).
    pub fn wait(&self, count: usize, limit: Duration) -> Vec<Received> {
        self.log.wait_until(count, limit, |seen, _| seen >= count)
    }

    /// Waits for the `n`-th request (from 0) in arrival order, at most `limit`; None if it did
    /// not arrive by then.
    pub fn nth(&self, n: usize, limit: Duration) -> Option<Received> {
        self.wait(n + 1, limit).get(n).cloned()
    }

    /// Waits until at least `count` requests reached `path`, at most `limit`; returns the
    /// requests to `path` by then (fewer than `count` when the deadline passed).
    pub fn wait_for(&self, path: &str, count: usize, limit: Duration) -> Vec<Received> {
        let all = self.log.wait_until(0, limit, |_, all| {
            all.iter().filter(|r| r.path == path).count() >= count
        });
        on(&all, path)
    }

    /// Waits until `done` holds of all requests so far, at most `limit`; returns them as they
    /// were then, whether or not it holds.
    pub fn wait_until(&self, limit: Duration, done: impl Fn(&[Received]) -> bool) -> Vec<Received> {
        self.log.wait_until(0, limit, |_, all| done(all))
    }
}

/// Each record's changes in the order their requests arrived, read from event ids
/// `<record>-<change>` in callout's standard body (`data.event_id`), after checking that every
/// record's changes arrived in publish order (a change sent again may repeat, never go back).
/// Panics on another body or id shape, or on a change out of order.
#[cfg(feature = "json")]
pub fn changes_in_order(got: &[Received]) -> std::collections::BTreeMap<String, Vec<u64>> {
    let mut per_record: std::collections::BTreeMap<String, Vec<u64>> = Default::default();
    for request in got {
        let body = request.json();
        let event_id = body["data"]["event_id"].as_str().expect("event id");
        let (record, change) = event_id.split_once('-').expect("record-change");
        per_record
            .entry(record.to_string())
            .or_default()
            .push(change.parse().expect("change number"));
    }
    for (record, changes) in &per_record {
        assert!(
            changes.windows(2).all(|w| w[0] <= w[1]),
            "record {record}: changes arrived out of order: {changes:?}"
        );
    }
    per_record
}

fn on(all: &[Received], path: &str) -> Vec<Received> {
    all.iter().filter(|r| r.path == path).cloned().collect()
}

/// How many requests each path has had: a scan of the log for it at every request made a
/// run of 20,000 requests cost the receiver hundreds of millions of comparisons, taking the
/// cores from the engine it measured.
type PerPath = std::sync::Mutex<std::collections::HashMap<String, usize>>;

fn serve(server: &tiny_http::Server, log: &Log<Received>, script: &Script, per_path: &PerPath) {
    while let Ok(mut request) = server.recv() {
        if log.is_stopped() {
            return;
        }
        let mut body = Vec::new();
        let _ = request.as_reader().read_to_end(&mut body);
        let got = Received {
            method: request.method().as_str().to_string(),
            path: request.url().to_string(),
            headers: request
                .headers()
                .iter()
                .map(|h| (h.field.as_str().as_str().to_string(), h.value.to_string()))
                .collect(),
            body,
            peer: request
                .remote_addr()
                .copied()
                .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0))),
            at: Instant::now(),
        };
        // Counted and recorded under one lock, so the log's order is the count's.
        let earlier = {
            let mut counts = per_path.lock().unwrap_or_else(|p| p.into_inner());
            let count = counts.entry(got.path.clone()).or_default();
            let earlier = *count;
            *count += 1;
            log.push_with(got.clone(), |_| ());
            earlier
        };
        let reply = script(earlier, &got);
        if !reply.delay.is_zero() && !log.pause(reply.delay) {
            return;
        }
        let mut response =
            tiny_http::Response::from_data(reply.body).with_status_code(reply.status);
        for (name, value) in reply.headers {
            if let Ok(header) = tiny_http::Header::from_bytes(name.as_bytes(), value.as_bytes()) {
                response.add_header(header);
            }
        }
        let _ = request.respond(response);
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.log.stop();
        for _ in 0..self.threads.len() {
            self.server.unblock();
        }
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpStream;

    fn post(url: &str, path: &str, body: &str) -> String {
        let mut stream = TcpStream::connect(url.trim_start_matches("http://")).unwrap();
        write!(
            stream,
            "POST {path} HTTP/1.1\r\nHost: x\r\nX-Twice: 1\r\nX-Twice: 2\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        answer
    }

    #[test]
    fn the_script_sees_the_count_per_path_and_its_reply_is_sent() {
        let receiver = Receiver::start(|n, r| {
            Reply::status(if n == 0 { 503 } else { 200 })
                .header("X-Path", r.path.clone())
                .body(format!("n={n}"))
        });
        assert!(post(&receiver.url, "/a", "1").starts_with("HTTP/1.1 503"));
        let again = post(&receiver.url, "/a", "2");
        assert!(again.starts_with("HTTP/1.1 200"), "{again}");
        assert!(
            again.contains("X-Path: /a") && again.ends_with("n=1"),
            "{again}"
        );
        assert!(post(&receiver.url, "/b", "3").starts_with("HTTP/1.1 503"));

        let got = receiver.wait_for("/a", 2, Duration::from_secs(5));
        assert_eq!(got.len(), 2);
        assert_eq!(got[1].body, b"2");
        assert_eq!(got[0].method, "POST");
        assert_eq!(got[0].all("x-twice"), ["1", "2"]);
        assert_eq!(receiver.wait(3, Duration::from_secs(5)).len(), 3);
    }

    #[test]
    fn a_wait_ends_at_its_deadline() {
        let receiver = Receiver::ok();
        let started = Instant::now();
        assert!(receiver
            .wait_for("/never", 1, Duration::from_millis(100))
            .is_empty());
        assert!(started.elapsed() >= Duration::from_millis(100));
    }

    #[test]
    fn dropping_cuts_a_hanging_reply_short() {
        let receiver = Receiver::start(|_, _| Reply::status(200).delay(Duration::from_secs(60)));
        let url = receiver.url.clone();
        let client = std::thread::spawn(move || post(&url, "/hang", ""));
        receiver.wait(1, Duration::from_secs(5));
        let started = Instant::now();
        drop(receiver);
        assert!(started.elapsed() < Duration::from_secs(5));
        let _ = client.join();
    }
}
