//! The workspace's one test HTTP receiver: real servers on `127.0.0.1:0` for tests and benches.
//!
//! This crate owns everything a test needs on the receiving end of a webhook, so no test
//! crate writes its own server:
//!
//! - [`Receiver`], a tiny_http server that records each request as received ([`Received`]:
//!   method, path, headers in order, body, peer, arrival time) and answers as a script says
//!   ([`Reply`]: status, headers, body, and a delay for slow or hanging receivers);
//! - [`RawReceiver`], a plain TCP listener whose script gets each [`Connection`] to misbehave
//!   on (stalls, drips, cuts, garbage) and which captures the exact bytes of every request it
//!   reads ([`RawRequest`]); [`RawReceiver::counting_ok`] is the fast keep-alive responder of
//!   the benches;
//! - [`Hold`], a switch a receiver's script calls to keep requests until the test releases
//!   them, counting how many it keeps at once;
//! - [`read_request`], the small HTTP/1.1 request reader both use, for streams the caller set
//!   up itself (a TLS stream, say).
//!
//! Waiting for requests always has a deadline and sleeps on a condition variable until the
//! requests arrive, so tests neither poll nor sleep-then-assert. It depends on no callout
//! crate (so every crate can dev-depend on it) and on nothing but tiny_http and std (and
//! serde_json for `Received::json`, behind the `json` feature). Its receivers listen on
//! 127.0.0.1 only.
//!
//! ```
//! use std::time::Duration;
//! use callout_testkit::{Receiver, Reply};
//!
//! let receiver = Receiver::start(|n, _| Reply::status(if n == 0 { 503 } else { 200 }));
//! // ... point the code under test at format!("{}/hook", receiver.url) ...
//! # use std::io::{Read, Write};
//! # let mut s = std::net::TcpStream::connect(receiver.url.trim_start_matches("http://")).unwrap();
//! # s.write_all(b"POST /hook HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}").unwrap();
//! # let mut answer = String::new();
//! # s.read_to_string(&mut answer).unwrap();
//! let got = receiver.wait_for("/hook", 1, Duration::from_secs(5));
//! assert_eq!(got[0].body, b"{}");
//! ```

mod hold;
mod http;
mod log;
mod raw;
mod receiver;

pub use crate::hold::Hold;
pub use crate::http::{read_request, RawRequest};
pub use crate::raw::{Connection, RawReceiver};
#[cfg(feature = "json")]
pub use crate::receiver::changes_in_order;
pub use crate::receiver::{Received, Receiver, Reply};

/// How long a receiver's connection waits for bytes before giving up on it, so a test that
/// failed half-way cannot leave a thread blocked forever.
pub const IDLE_LIMIT: std::time::Duration = std::time::Duration::from_secs(10);
