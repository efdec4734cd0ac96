//! callout's management API as a handler any Rust web server can mount: callout's own REST API
//! and the webhook endpoints of Autotask, SuperOffice and Pipeliner, so that an integration
//! written against a vendor's webhook API works unchanged against a host that embeds callout.
//!
//! [`Api::handle`] takes an [`http::Request`] and returns an [`http::Response`] (the types
//! axum, actix-web, hyper and most servers already speak). It is synchronous and calls the
//! engine, which may block on disk: async servers call it on a blocking thread
//! (`tokio::task::spawn_blocking`). The host's [`Authorizer`] says who the caller is and which
//! tenant it acts for; a caller sees and changes only its tenant's webhooks and what belongs
//! to them, and another tenant's object is "not found", never "forbidden".
//!
//! Paths, below wherever the host mounts the handler:
//!
//! | prefix | dialect |
//! | --- | --- |
//! | `/v1` | callout's REST API; its OpenAPI 3.1 document is `/v1/openapi.json` |
//! | `/superoffice/api/v1` | SuperOffice: `Webhook`, `Webhook/{id}`, `Agents/Webhook/GetAllWebhooks` |
//! | `/autotask/atservicesrest/v1.0` | Autotask REST: `{Entity}Webhooks` and their child collections |
//! | `/autotask/atservices/1.6/atws.asmx` | Autotask SOAP: `create`, `update`, `query`, `delete` |
//! | `/pipeliner/api/v100/rest/spaces/{space}/entities/Webhooks` | Pipeliner |
//!
//! Every response is in its dialect's shape, errors included; secrets are write-only in all
//! of them (a subscription's secrets are never in a response).
//!
//! ```
//! use std::sync::Arc;
//! use callout_api::{Api, Caller, Tokens};
//!
//! let dir = tempfile::tempdir()?;
//! let engine = Arc::new(callout::Engine::builder(dir.path()).deliver(false).open()?);
//! let api = Api::new(engine, Tokens::new().with("s3cret", Caller::new("ops", "acme")));
//! let request = http::Request::post("/v1/subscriptions")
//!     .header("authorization", "Bearer s3cret")
//!     .body(br#"{"target_url": "https://receiver.example/hooks", "events": ["contact.*"]}"#.to_vec())?;
//! let response = api.handle(request);
//! assert_eq!(response.status(), 201);
//! let created: serde_json::Value = serde_json::from_slice(response.body())?;
//! assert_eq!(created["tenant"], "acme");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(missing_docs)]

mod auth;
mod autotask;
mod error;
mod native;
mod patch;
mod pipeliner;
mod problem;
mod scope;
mod soap;
mod superoffice;
mod web;

use std::sync::Arc;

use callout::Engine;
use http::{header, Request, Response};

pub use crate::auth::{Authorizer, Caller, Refusal, Tokens};
pub use crate::error::Error;
pub use crate::native::openapi_json;

use crate::problem::Problem;
use crate::scope::Scope;
use crate::web::Call;

/// The default body limit: 1 MiB, the engine's limit for one event's data.
pub const DEFAULT_BODY_LIMIT: usize = 1024 * 1024;

/// The management API over one engine; see the crate docs for its paths.
pub struct Api {
    engine: Arc<Engine>,
    authorizer: Arc<dyn Authorizer>,
    body_limit: usize,
    mount: String,
}

/// Which API a path belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dialect {
    Callout,
    Superoffice,
    AutotaskRest,
    AutotaskSoap,
    Pipeliner,
}

impl Dialect {
    /// Each dialect's prefix, matched ignoring ASCII case for the vendors (their servers are
    /// case-insensitive, and clients differ: `ATServicesRest/V1.0`).
    const PREFIXES: &'static [(&'static str, Dialect)] = &[
        ("/v1", Dialect::Callout),
        ("/superoffice/api/v1", Dialect::Superoffice),
        ("/autotask/atservicesrest/v1.0", Dialect::AutotaskRest),
        ("/autotask/atservices/1.6/atws.asmx", Dialect::AutotaskSoap),
        ("/pipeliner/api/v100/rest/spaces", Dialect::Pipeliner),
    ];

    /// The dialect of `path` and the rest of the path below its prefix.
    fn of(path: &str) -> Option<(Dialect, &str)> {
        Dialect::PREFIXES.iter().find_map(|(prefix, dialect)| {
            let head = path.get(..prefix.len())?;
            let matches = match dialect {
                Dialect::Callout => head == *prefix,
                _ => head.eq_ignore_ascii_case(prefix),
            };
            let rest = &path[prefix.len()..];
            (matches && (rest.is_empty() || rest.starts_with('/'))).then_some((*dialect, rest))
        })
    }

    /// The response for a request that failed before reaching the dialect's endpoint.
    fn problem(self, problem: Problem) -> Response<Vec<u8>> {
        match self {
            Dialect::Callout => native::problem(problem),
            Dialect::Superoffice => superoffice::problem(problem),
            Dialect::AutotaskRest => autotask::problem(problem),
            Dialect::AutotaskSoap => soap::fault(problem),
            Dialect::Pipeliner => pipeliner::problem(problem),
        }
    }
}

impl Api {
    /// The API over `engine`, with `authorizer` deciding who may call it and for which
    /// tenant.
    pub fn new(engine: Arc<Engine>, authorizer: impl Authorizer) -> Api {
        Api {
            engine,
            authorizer: Arc::new(authorizer),
            body_limit: DEFAULT_BODY_LIMIT,
            mount: String::new(),
        }
    }

    /// Refuses bodies over `bytes` with 413 before parsing them (default
    /// [`DEFAULT_BODY_LIMIT`]). A server should also stop reading a body at
    /// [`Api::max_body`], so an oversized one is never read whole.
    pub fn body_limit(mut self, bytes: usize) -> Api {
        self.body_limit = bytes;
        self
    }

    /// The body limit in force.
    pub fn max_body(&self) -> usize {
        self.body_limit
    }

    /// Where the host mounts the handler (`/hooks`), for the links some dialects return
    /// (SuperOffice's `_Links`); the request paths the handler sees are below it.
    pub fn mounted_at(mut self, prefix: impl Into<String>) -> Api {
        self.mount = prefix.into().trim_end_matches('/').to_string();
        self
    }

    /// The engine the API serves.
    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    /// Answers one request. Never panics on any input: a malformed request gets its
    /// dialect's error response with a 4xx status.
    pub fn handle(&self, request: Request<Vec<u8>>) -> Response<Vec<u8>> {
        let (parts, body) = request.into_parts();
        let path = parts.uri.path();
        let Some((dialect, rest)) = Dialect::of(path) else {
            return native::problem(Problem::no_route());
        };
        if dialect == Dialect::Callout && rest == "/openapi.json" {
            return native::openapi_response(&parts.method);
        }
        let caller = match self.authorizer.authorize(&parts.headers) {
            Ok(caller) => caller,
            Err(refusal) => {
                let mut response = dialect.problem(Problem::unauthorized(refusal.message));
                response.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    http::HeaderValue::from_static("Bearer, Basic realm=\"callout\""),
                );
                return response;
            }
        };
        let declared = parts
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<usize>().ok())
            .unwrap_or(0);
        let size = declared.max(body.len());
        if size > self.body_limit {
            return dialect.problem(Problem::too_large(size, self.body_limit));
        }
        let call = Call::new(
            &parts.method,
            rest,
            parts.uri.query(),
            &parts.headers,
            &body,
        );
        let scope = Scope {
            engine: &self.engine,
            caller: &caller,
        };
        let host = parts
            .headers
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("localhost");
        match dialect {
            Dialect::Callout => native::handle(&scope, &call),
            Dialect::Superoffice => {
                let base = format!("http://{host}{}/superoffice/api/v1", self.mount);
                superoffice::handle(&scope, &call, &base)
            }
            Dialect::AutotaskRest => autotask::handle(&scope, &call),
            Dialect::AutotaskSoap => soap::handle(&scope, &call),
            Dialect::Pipeliner => pipeliner::handle(&scope, &call),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_split_paths_and_vendor_ones_ignore_case() {
        assert_eq!(
            Dialect::of("/v1/subscriptions/3"),
            Some((Dialect::Callout, "/subscriptions/3"))
        );
        assert_eq!(Dialect::of("/V1/subscriptions"), None);
        assert_eq!(Dialect::of("/v10"), None);
        assert_eq!(
            Dialect::of("/autotask/ATServicesRest/V1.0/CompanyWebhooks"),
            Some((Dialect::AutotaskRest, "/CompanyWebhooks"))
        );
        assert_eq!(
            Dialect::of("/autotask/atservices/1.6/atws.asmx"),
            Some((Dialect::AutotaskSoap, ""))
        );
        assert_eq!(Dialect::of("/superoffice/api/v1é"), None);
        assert_eq!(Dialect::of(""), None);
    }
}
