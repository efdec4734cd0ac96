//! The crate's one error type: what went wrong before or instead of a send.

use thiserror::Error;

/// Why a secret, a configuration, a header or a received signature was refused.
///
/// A failed *delivery* is not an error: [`Sender::send`](crate::Sender::send) returns an
/// [`Outcome`](crate::Outcome) for that. This enum covers the things a host must fix or a
/// receiver must reject.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum DeliverError {
    /// A signing secret was empty: signing with it would prove nothing.
    #[error("the signing secret is empty")]
    EmptySecret,
    /// A Standard Webhooks secret was not base64 after its optional `whsec_` prefix.
    #[error("the signing secret is not valid base64: {reason}")]
    InvalidSecret {
        /// What the base64 decoder said.
        reason: String,
    },
    /// A Standard Webhooks ed25519 key (`whsk_` signing key, `whpk_` public key) is base64 of
    /// the wrong length, or not a key.
    #[error("the {kind} is not valid: {reason}")]
    InvalidKey {
        /// `whsk_ signing key` or `whpk_ public key`.
        kind: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// A header the signature scheme needs was not in the received request.
    #[error("the header `{name}` is missing")]
    MissingHeader {
        /// The header's name, lowercase.
        name: &'static str,
    },
    /// The `webhook-timestamp` header is not a number of unix seconds.
    #[error("the timestamp `{value}` is not a number of unix seconds")]
    InvalidTimestamp {
        /// The header's value as received.
        value: String,
    },
    /// The `webhook-timestamp` is further from `now` than the tolerance allows (replay guard).
    #[error("the timestamp {timestamp} is more than {tolerance_secs} s away from now ({now})")]
    TimestampOutOfTolerance {
        /// The received timestamp, unix seconds.
        timestamp: u64,
        /// The verifier's clock, unix seconds.
        now: u64,
        /// The allowed distance in seconds.
        tolerance_secs: u64,
    },
    /// No signature in the header matches the body and the secret.
    #[error("no signature matches")]
    SignatureMismatch,
    /// An allow-list entry is neither an IP address nor a CIDR range.
    #[error("`{entry}` is not an IP address or CIDR range (e.g. `127.0.0.1` or `10.0.0.0/8`)")]
    InvalidAllowEntry {
        /// The entry as given.
        entry: String,
    },
    /// The configured proxy could not be used.
    #[error("invalid proxy `{proxy}`: {reason}")]
    InvalidProxy {
        /// The proxy URL as given, its password replaced by `***` (a proxy URL often carries
        /// one).
        proxy: String,
        /// Why ureq refused it.
        reason: String,
    },
    /// A sender setting is out of range.
    #[error("invalid sender setting `{field}`: {reason}")]
    InvalidConfig {
        /// The [`SenderConfig`](crate::SenderConfig) field.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// A custom header tries to set a header that the sender or the signature owns.
    #[error("the custom header `{name}` is reserved: the sender sets it")]
    ReservedHeader {
        /// The header's name as given.
        name: String,
    },
    /// A custom header's name or value is not valid HTTP (e.g. a space in the name, a newline in
    /// the value).
    #[error("the custom header `{name}` is not a valid HTTP header")]
    InvalidHeader {
        /// The header's name as given.
        name: String,
    },
}
