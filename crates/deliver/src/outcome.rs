//! What one send did: the [`Outcome`], its [`Verdict`] and the [`ErrorClass`] of failures.

use std::borrow::Cow;
use std::fmt;
use std::io;
use std::time::Duration;

use crate::connector::TlsFailure;
use crate::guard::BlockedAddress;

/// The result of one send. Not a `Result`: a failed delivery is a normal, recorded event.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Outcome {
    /// What the engine should do with the delivery.
    pub verdict: Verdict,
    /// Wall time from the start of `send` until the response was read (or the failure).
    pub duration: Duration,
    /// The response, when one arrived: status and a bounded excerpt of the body.
    pub response: Option<ResponseExcerpt>,
}

impl Outcome {
    /// The HTTP status, when a response arrived.
    pub fn status(&self) -> Option<u16> {
        self.response.as_ref().map(|response| response.status)
    }

    /// Whether the receiver accepted the delivery (2xx).
    pub fn is_delivered(&self) -> bool {
        matches!(self.verdict, Verdict::Delivered)
    }

    /// The error class of a failed send.
    pub fn error_class(&self) -> Option<ErrorClass> {
        match &self.verdict {
            Verdict::Failed { class, .. } => Some(*class),
            _ => None,
        }
    }
}

/// The receiver's answer, reduced to what the engine acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Verdict {
    /// A 2xx status: the receiver accepted the delivery.
    Delivered,
    /// 410 Gone: the receiver asks to stop the subscription.
    Gone,
    /// 429 or 503: the receiver is overloaded. `retry_after` is its `Retry-After` header, when
    /// present and readable (seconds or IMF-fixdate), not yet bounded by the engine's policy.
    Throttled {
        /// How long the receiver asked to wait.
        retry_after: Option<Duration>,
    },
    /// Anything else: another status, or no usable response at all.
    Failed {
        /// What kind of failure, for retry decisions and statistics.
        class: ErrorClass,
        /// A one-line description for the attempt log.
        detail: String,
    },
}

/// One line for logs and attempt records: `delivered`, `gone`, `throttled`, or the failure's
/// class and detail (`timeout: ...`).
impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Verdict::Delivered => f.write_str("delivered"),
            Verdict::Gone => f.write_str("gone"),
            Verdict::Throttled { .. } => f.write_str("throttled"),
            Verdict::Failed { class, detail } => write!(f, "{}: {detail}", class.as_str()),
        }
    }
}

/// Why a send failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorClass {
    /// A connect, send, response or body timeout expired.
    Timeout,
    /// Nobody listens on the target's port (TCP reset on connect).
    ConnectRefused,
    /// The host name does not resolve.
    Dns,
    /// The TLS handshake or certificate check failed.
    Tls,
    /// The URL cannot be sent to (not http(s), no host, unparseable).
    InvalidTarget,
    /// The request itself cannot be sent: a header the engine supplied (delivery id, profile
    /// header, content type) is not valid HTTP or would replace one the sender owns.
    InvalidRequest,
    /// The SSRF guard refused the resolved address (loopback, private, ...).
    BlockedAddress,
    /// The receiver answered with a status that is neither 2xx, 410, 429 nor 503 (3xx
    /// included: redirects are not followed).
    HttpStatus,
    /// The response head (status line and headers) is larger than ureq's limit. (A large
    /// response *body* is cut, not failed: see [`BodyEnd::CutAtLimit`].)
    ResponseTooLarge,
    /// The receiver sent something that is not HTTP/1.1.
    Protocol,
    /// Any other I/O failure, e.g. the connection closed before a response.
    Io,
}

impl ErrorClass {
    /// A stable lowercase name for storing and logging.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::Timeout => "timeout",
            ErrorClass::ConnectRefused => "connect_refused",
            ErrorClass::Dns => "dns",
            ErrorClass::Tls => "tls",
            ErrorClass::InvalidTarget => "invalid_target",
            ErrorClass::InvalidRequest => "invalid_request",
            ErrorClass::BlockedAddress => "blocked_address",
            ErrorClass::HttpStatus => "http_status",
            ErrorClass::ResponseTooLarge => "response_too_large",
            ErrorClass::Protocol => "protocol",
            ErrorClass::Io => "io",
        }
    }
}

impl fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The part of a response that is kept: status and the first bytes of the body.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ResponseExcerpt {
    /// The HTTP status code.
    pub status: u16,
    /// The first bytes of the body, at most the configured excerpt size.
    pub body: Vec<u8>,
    /// How many body bytes were read in all (the excerpt may hold fewer).
    pub body_len: u64,
    /// How reading the body ended.
    pub body_end: BodyEnd,
}

impl ResponseExcerpt {
    /// The excerpt as text, invalid UTF-8 replaced.
    pub fn body_text(&self) -> Cow<'_, str> {
        String::from_utf8_lossy(&self.body)
    }
}

/// How reading a response body ended. The status decides the verdict either way: a receiver
/// that answered 200 has accepted the delivery even if its body was cut or broken.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum BodyEnd {
    /// Read to its end; the connection went back to the pool.
    Complete,
    /// Longer than the configured maximum: reading stopped there and the connection was closed
    /// rather than drained.
    CutAtLimit,
    /// Reading failed (timeout, connection closed mid-body, bad chunking).
    Failed {
        /// What kind of failure.
        class: ErrorClass,
        /// The error as text.
        detail: String,
    },
}

/// Maps a ureq error to an error class. ureq wraps its own errors inside `io::Error` when they
/// surface through `Read`, so those are unwrapped first.
pub(crate) fn classify(error: &ureq::Error) -> ErrorClass {
    use ureq::Error as E;
    match error {
        E::Timeout(_) => ErrorClass::Timeout,
        E::HostNotFound => ErrorClass::Dns,
        E::Io(io) => classify_io(io),
        E::Tls(_) | E::Pem(_) | E::Rustls(_) | E::TlsRequired => ErrorClass::Tls,
        E::BadUri(_) | E::Http(_) | E::RequireHttpsOnly(_) => ErrorClass::InvalidTarget,
        E::Protocol(_) | E::BodyStalled => ErrorClass::Protocol,
        E::LargeResponseHeader(..) => ErrorClass::ResponseTooLarge,
        // Only reachable if redirects were followed or statuses turned into errors, which the
        // sender's agents never do; classed as what they would mean.
        E::StatusCode(_) | E::RedirectFailed | E::TooManyRedirects => ErrorClass::HttpStatus,
        E::Other(inner) if inner.is::<BlockedAddress>() => ErrorClass::BlockedAddress,
        E::Other(inner) if inner.is::<TlsFailure>() => ErrorClass::Tls,
        _ => ErrorClass::Io,
    }
}

/// Classifies an I/O error, looking through a ureq error wrapped in it.
pub(crate) fn classify_io(error: &io::Error) -> ErrorClass {
    if let Some(inner) = error
        .get_ref()
        .and_then(|e| e.downcast_ref::<ureq::Error>())
    {
        return classify(inner);
    }
    match error.kind() {
        io::ErrorKind::ConnectionRefused => ErrorClass::ConnectRefused,
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => ErrorClass::Timeout,
        io::ErrorKind::InvalidData => ErrorClass::Protocol,
        _ => ErrorClass::Io,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_read_as_one_line() {
        let failed = Verdict::Failed {
            class: ErrorClass::HttpStatus,
            detail: "status 500".into(),
        };
        assert_eq!(failed.to_string(), "http_status: status 500");
        assert_eq!(Verdict::Delivered.to_string(), "delivered");
        let throttled = Verdict::Throttled {
            retry_after: Some(Duration::from_secs(3)),
        };
        assert_eq!(throttled.to_string(), "throttled");
    }

    #[test]
    fn ureq_errors_map_to_classes() {
        let cases: Vec<(ureq::Error, ErrorClass)> = vec![
            (
                ureq::Error::Timeout(ureq::Timeout::Connect),
                ErrorClass::Timeout,
            ),
            (ureq::Error::HostNotFound, ErrorClass::Dns),
            (
                io::Error::from(io::ErrorKind::ConnectionRefused).into(),
                ErrorClass::ConnectRefused,
            ),
            (
                io::Error::from(io::ErrorKind::TimedOut).into(),
                ErrorClass::Timeout,
            ),
            (
                io::Error::from(io::ErrorKind::UnexpectedEof).into(),
                ErrorClass::Io,
            ),
            (ureq::Error::BadUri("x".into()), ErrorClass::InvalidTarget),
            (ureq::Error::Tls("bad certificate"), ErrorClass::Tls),
            (
                ureq::Error::LargeResponseHeader(70_000, 65_536),
                ErrorClass::ResponseTooLarge,
            ),
            (
                ureq::Error::Other(Box::new(BlockedAddress {
                    host: "localhost".into(),
                    address: "127.0.0.1".parse().unwrap(),
                    refusal: crate::guard::refusal("127.0.0.1".parse().unwrap()).unwrap(),
                })),
                ErrorClass::BlockedAddress,
            ),
            (ureq::Error::ConnectionFailed, ErrorClass::Io),
        ];
        for (error, class) in cases {
            assert_eq!(classify(&error), class, "{error}");
        }
    }

    #[test]
    fn wrapped_ureq_errors_are_unwrapped() {
        let wrapped = io::Error::other(ureq::Error::Timeout(ureq::Timeout::RecvBody));
        assert_eq!(classify_io(&wrapped), ErrorClass::Timeout);
    }

    #[test]
    fn class_names_are_distinct() {
        let all = [
            ErrorClass::Timeout,
            ErrorClass::ConnectRefused,
            ErrorClass::Dns,
            ErrorClass::Tls,
            ErrorClass::InvalidTarget,
            ErrorClass::InvalidRequest,
            ErrorClass::BlockedAddress,
            ErrorClass::HttpStatus,
            ErrorClass::ResponseTooLarge,
            ErrorClass::Protocol,
            ErrorClass::Io,
        ];
        let names: std::collections::HashSet<_> = all.iter().map(|c| c.as_str()).collect();
        assert_eq!(names.len(), all.len());
    }
}
