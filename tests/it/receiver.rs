//! A real HTTP receiver on 127.0.0.1, port 0, for the end-to-end tests: it records every
//! request and answers as the test scripts it.

use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// One request as received.
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub at: Instant,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("receiver got JSON")
    }
}

/// How the receiver answers the n-th request (from 0) to a path.
pub type Script = dyn Fn(usize, &Received) -> Reply + Send + Sync;

pub struct Reply {
    pub status: u16,
    pub delay: Duration,
    pub headers: Vec<(String, String)>,
}

impl Reply {
    pub fn status(status: u16) -> Reply {
        Reply {
            status,
            delay: Duration::ZERO,
            headers: Vec::new(),
        }
    }
}

pub struct Receiver {
    pub url: String,
    received: Arc<Mutex<Vec<Received>>>,
    server: Arc<tiny_http::Server>,
    threads: Vec<JoinHandle<()>>,
}

impl Receiver {
    /// Answers 200 to everything.
    pub fn ok() -> Receiver {
        Receiver::start(|_, _| Reply::status(200))
    }

    pub fn start(script: impl Fn(usize, &Received) -> Reply + Send + Sync + 'static) -> Receiver {
        let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").expect("bind 127.0.0.1:0"));
        let port = server.server_addr().to_ip().expect("ip listener").port();
        let received = Arc::new(Mutex::new(Vec::new()));
        let script: Arc<Script> = Arc::new(script);
        // Several threads, so one slow reply does not hold up requests for other paths.
        let threads = (0..4)
            .map(|_| {
                let (server, received, script) = (
                    Arc::clone(&server),
                    Arc::clone(&received),
                    Arc::clone(&script),
                );
                std::thread::spawn(move || {
                    while let Ok(mut request) = server.recv() {
                        let mut body = Vec::new();
                        let _ = request.as_reader().read_to_end(&mut body);
                        let got = Received {
                            path: request.url().to_string(),
                            headers: request
                                .headers()
                                .iter()
                                .map(|h| (h.field.to_string(), h.value.to_string()))
                                .collect(),
                            body,
                            at: Instant::now(),
                        };
                        let n = {
                            let mut all = received.lock().unwrap();
                            let n = all
                                .iter()
                                .filter(|r: &&Received| r.path == got.path)
                                .count();
                            all.push(got.clone());
                            n
                        };
                        let reply = script(n, &got);
                        std::thread::sleep(reply.delay);
                        let mut response =
                            tiny_http::Response::from_string("ok").with_status_code(reply.status);
                        for (name, value) in reply.headers {
                            if let Ok(header) =
                                tiny_http::Header::from_bytes(name.as_bytes(), value.as_bytes())
                            {
                                response.add_header(header);
                            }
                        }
                        let _ = request.respond(response);
                    }
                })
            })
            .collect();
        Receiver {
            url: format!("http://127.0.0.1:{port}"),
            received,
            server,
            threads,
        }
    }

    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    pub fn on(&self, path: &str) -> Vec<Received> {
        self.received()
            .into_iter()
            .filter(|r| r.path == path)
            .collect()
    }

    /// Waits until `count` requests reached `path`, at most `limit`.
    pub fn wait_for(&self, path: &str, count: usize, limit: Duration) -> Vec<Received> {
        let started = Instant::now();
        loop {
            let got = self.on(path);
            if got.len() >= count || started.elapsed() > limit {
                return got;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.server.unblock();
        for _ in 0..self.threads.len() {
            self.server.unblock();
        }
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}
