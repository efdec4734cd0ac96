//! callout's blocking, signed HTTP sender: the only part of callout that speaks HTTP.
//!
//! This crate owns one delivery attempt: it signs a [`Request`]'s body with the subscription's
//! [`Signature`] scheme, refuses targets inside the host's network (the SSRF guard,
//! [`AllowList`]), POSTs it once over a shared keep-alive pool ([`Sender`], on ureq), and says
//! precisely what happened ([`Outcome`]). It knows nothing of storage, schedules or threads: the
//! engine decides what an outcome means for retries, and shares one `Sender` between its workers.
//!
//! The signature schemes are also usable alone, e.g. by receivers, in [`sign`].
//!
//! ```
//! use callout_deliver::{sign::standard::Secret, Request, Sender, SenderConfig, Signature, Verdict, ErrorClass};
//!
//! let sender = Sender::new(SenderConfig::default())?;
//! let mut request = Request::new("msg_1", "http://127.0.0.1:9/hooks", br#"{"type":"contact.updated"}"#.to_vec());
//! request.signature = Signature::Standard { secrets: vec![Secret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")?] };
//!
//! // Loopback is refused unless the sender's allow-list opens it: nothing is sent.
//! let outcome = sender.send(&request);
//! assert_eq!(outcome.error_class(), Some(ErrorClass::BlockedAddress));
//! assert!(matches!(outcome.verdict, Verdict::Failed { .. }));
//! # Ok::<(), callout_deliver::DeliverError>(())
//! ```
//!
//! # Logging and credentials
//!
//! The crate logs through `tracing` and never logs a credential: `Debug` of a [`Request`]
//! shows the URL with its password replaced by `***`, custom header values as `***` and no
//! secret, and failure details redact the URLs they quote.
//!
//! ureq, underneath, logs through the `log` crate, and its `TRACE` level is a wire dump that
//! redacts nothing: the targets `ureq_proto::*` hex-dump every request head and body, so the
//! `authorization` header (a custom one, or the Basic credentials ureq derives from a URL's
//! user and password) is in it, and `ureq::*` prints full paths, queries and `Location`s. ureq
//! has no feature to turn this off, and a library must not change the process-wide log level,
//! so it is the host's to filter: a host that bridges `log` into its logger (`env_logger`,
//! `tracing_subscriber`'s `fmt().init()`, which installs the `tracing-log` bridge, or any
//! `log::set_logger`) must cap the targets starting with `ureq` at `DEBUG`, where ureq logs
//! only allow-listed headers and masks user, password and path, e.g. `RUST_LOG=trace,ureq=debug`
//! (both `env_logger` and `EnvFilter` match targets by prefix, so this covers `ureq_proto`;
//! `ureq=off` silences it all). A host that never installs a `log` logger sees none of it.
#![deny(missing_docs)]

mod connector;
mod error;
mod guard;
mod outcome;
mod retry_after;
mod sender;
pub mod sign;

pub use crate::error::DeliverError;
pub use crate::guard::{is_internal, AllowList};
pub use crate::outcome::{BodyEnd, ErrorClass, Outcome, ResponseExcerpt, Verdict};
pub use crate::retry_after::parse_retry_after;
pub use crate::sender::{
    Request, Sender, SenderConfig, Timeouts, DEFAULT_CONTENT_TYPE, DELIVERY_ID_HEADER,
};
pub use crate::sign::Signature;
