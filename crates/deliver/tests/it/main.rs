//! Integration tests of callout-deliver against real receivers on 127.0.0.1.

mod casing;
mod guard;
mod hostile;
mod outcomes;
mod pool;
mod profiles;
mod redact;
mod retry_after;
mod support;
mod tls;
