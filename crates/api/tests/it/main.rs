//! Integration tests of the management API handler: every dialect's endpoints, their success
//! and error paths, tenant isolation and write-only secrets, called through `Api::handle` on a
//! real engine (a temporary sled store) that delivers to testkit receivers on 127.0.0.1.

mod autotask;
mod bounds;
mod native;
mod pipeliner;
mod secrets;
mod soap;
mod superoffice;
mod tenants;

use std::sync::Arc;
use std::time::{Duration, Instant};

use callout::Engine;
use callout_api::{Api, Caller, Tokens};
use http::{HeaderMap, Request, StatusCode};
use serde_json::Value;

/// The credential of tenant A's caller.
pub(crate) const A: &str = "token-a";
/// The credential of tenant B's caller.
pub(crate) const B: &str = "token-b";

/// How long a test waits for a delivery before failing.
pub(crate) const WAIT: Duration = Duration::from_secs(10);

/// An API over an engine that delivers to 127.0.0.1, with two tenants.
pub(crate) struct Harness {
    _dir: tempfile::TempDir,
    pub(crate) api: Api,
}

/// One response, its body read as JSON when it is JSON.
#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Vec<u8>,
}

impl Answer {
    pub(crate) fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "not JSON ({e}): {} {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

impl Harness {
    pub(crate) fn new() -> Harness {
        let dir = tempfile::tempdir().expect("temp dir");
        let engine = Engine::builder(dir.path())
            .allow_address("127.0.0.1")
            .workers(2)
            .poll_interval(Duration::from_millis(10))
            .open()
            .expect("engine");
        let tokens = Tokens::new()
            .with(A, Caller::new("alice", "tenant-a"))
            .with(B, Caller::new("bob", "tenant-b"))
            .with("tje0:Tje0", Caller::new("tje0", "tenant-a"));
        Harness {
            _dir: dir,
            api: Api::new(Arc::new(engine), tokens).body_limit(64 * 1024),
        }
    }

    /// A request as `token` (none when empty) with a body.
    pub(crate) fn send(
        &self,
        method: &str,
        path: &str,
        token: &str,
        headers: &[(&str, &str)],
        body: impl Into<Vec<u8>>,
    ) -> Answer {
        let mut request = Request::builder().method(method).uri(path);
        if !token.is_empty() {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = self.api.handle(request.body(body.into()).expect("request"));
        let (parts, body) = response.into_parts();
        Answer {
            status: parts.status,
            headers: parts.headers,
            body,
        }
    }

    pub(crate) fn call(&self, method: &str, path: &str, token: &str, body: &str) -> Answer {
        self.send(method, path, token, &[], body.as_bytes().to_vec())
    }

    pub(crate) fn engine(&self) -> &Engine {
        self.api.engine()
    }
}

/// Waits until `done` holds, at most `limit`; whether it did.
pub(crate) fn eventually(limit: Duration, done: impl Fn() -> bool) -> bool {
    let start = Instant::now();
    loop {
        if done() {
            return true;
        }
        if start.elapsed() > limit {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}
