//! Request signatures: pure functions that sign bytes and verify received requests.
//!
//! Each scheme lives in its own module with a `sign` and a constant-time `verify`, usable
//! without sending anything (e.g. by a receiver, or to show a host what its receiver must
//! compute). [`Signature`] picks one scheme for a [`Request`](crate::Request) and turns it into
//! headers.

pub mod autotask;
pub mod pipeliner;
pub mod standard;
pub mod superoffice;

use std::fmt;

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// How a request is signed: the scheme and its secret.
///
/// `Debug` never prints a secret.
#[derive(Clone, Default)]
#[non_exhaustive]
pub enum Signature {
    /// No signature headers at all.
    #[default]
    None,
    /// Standard Webhooks: `webhook-id`, `webhook-timestamp`, `webhook-signature`. The signature
    /// header carries one entry per key, in order: `v1,` for a `whsec_` secret, `v1a,` for a
    /// `whsk_` signing key (several while one is rotated, or both kinds side by side); with
    /// none, the id and timestamp headers are still sent.
    Standard {
        /// The keys to sign with, in order (a `whpk_` public key among them signs nothing).
        secrets: Vec<standard::Secret>,
    },
    /// Pipeliner: `WebHook-Signature` = HMAC-SHA256 of the body keyed by the signature UUID text.
    Pipeliner {
        /// The webhook's `signature` (a UUID), used as text.
        key: String,
        /// How the MAC is written in the header.
        encoding: pipeliner::Encoding,
    },
    /// SuperOffice: `X-SuperOffice-Signature` = base64 HMAC-SHA256 of the body.
    SuperOffice {
        /// The webhook's `Secret`, used as UTF-8 bytes.
        secret: String,
    },
    /// Autotask: `X-Hook-Signature: sha1=` + base64 HMAC-SHA1 of the body.
    Autotask {
        /// The webhook's `SecretKey`, used as UTF-8 bytes.
        secret: String,
    },
}

impl Signature {
    /// The headers this signature adds to a request with this id, timestamp (unix seconds) and
    /// body. Names are lowercase (HTTP header names are case-insensitive).
    ///
    /// ```
    /// use callout_deliver::{sign::standard::Secret, Signature};
    /// let secret = Secret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")?;
    /// let signature = Signature::Standard { secrets: vec![secret] };
    /// let headers = signature.headers("msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, br#"{"test": 2432232314}"#);
    /// assert_eq!(headers[2], ("webhook-signature", "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=".to_string()));
    /// # Ok::<(), callout_deliver::DeliverError>(())
    /// ```
    pub fn headers(
        &self,
        delivery_id: &str,
        timestamp: u64,
        body: &[u8],
    ) -> Vec<(&'static str, String)> {
        match self {
            Signature::None => Vec::new(),
            Signature::Standard { secrets } => {
                let mut headers = vec![
                    (standard::ID_HEADER, delivery_id.to_string()),
                    // Sized exactly (as is the id's), so the sender keeps it without a copy.
                    (
                        standard::TIMESTAMP_HEADER,
                        itoa::Buffer::new().format(timestamp).to_string(),
                    ),
                ];
                if !secrets.is_empty() {
                    headers.push((
                        standard::SIGNATURE_HEADER,
                        standard::signature_header(secrets, delivery_id, timestamp, body),
                    ));
                }
                headers
            }
            Signature::Pipeliner { key, encoding } => {
                vec![(pipeliner::HEADER, pipeliner::sign(key, body, *encoding))]
            }
            Signature::SuperOffice { secret } => {
                vec![(superoffice::HEADER, superoffice::sign(secret, body))]
            }
            Signature::Autotask { secret } => {
                vec![(autotask::HEADER, autotask::sign(secret, body))]
            }
        }
    }
}

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Secrets end up in logs through Debug; print only which scheme is used.
        match self {
            Signature::None => f.write_str("Signature::None"),
            Signature::Standard { secrets } => f
                .debug_struct("Signature::Standard")
                .field("secrets", &secrets.len())
                .finish(),
            Signature::Pipeliner { encoding, .. } => f
                .debug_struct("Signature::Pipeliner")
                .field("encoding", encoding)
                .finish_non_exhaustive(),
            Signature::SuperOffice { .. } => f
                .debug_struct("Signature::SuperOffice")
                .finish_non_exhaustive(),
            Signature::Autotask { .. } => f
                .debug_struct("Signature::Autotask")
                .finish_non_exhaustive(),
        }
    }
}

/// HMAC-SHA256 over the concatenation of `parts`, so callers need not copy the body.
pub(crate) fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> Hmac<Sha256> {
    // HMAC takes keys of any length, so this cannot fail; the fallback is never taken but
    // keeps the function total without an unwrap.
    let mut mac = match Hmac::<Sha256>::new_from_slice(key) {
        Ok(mac) => mac,
        Err(_) => <Hmac<Sha256> as hmac::digest::KeyInit>::new(&Default::default()),
    };
    for part in parts {
        mac.update(part);
    }
    mac
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_scheme_writes_only_headers_the_sender_owns() {
        // Custom headers may not forge a signature of any scheme, whichever the request uses:
        // callout-core's list (which `validate()` refuses) must name each scheme's headers.
        let secret = standard::Secret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let schemes = [
            Signature::Standard {
                secrets: vec![secret],
            },
            Signature::Pipeliner {
                key: "k".into(),
                encoding: pipeliner::Encoding::Hex,
            },
            Signature::SuperOffice { secret: "s".into() },
            Signature::Autotask { secret: "s".into() },
        ];
        for scheme in schemes {
            let headers = scheme.headers("d", 1, b"{}");
            assert!(!headers.is_empty(), "{scheme:?}");
            for (name, _) in headers {
                assert!(
                    callout_core::SENDER_HEADERS
                        .iter()
                        .any(|owned| owned.eq_ignore_ascii_case(name)),
                    "{name} is not in callout_core::SENDER_HEADERS"
                );
            }
        }
    }

    #[test]
    fn debug_does_not_print_secrets() {
        let signature = Signature::SuperOffice {
            secret: "Something Super Secret".into(),
        };
        let printed = format!("{signature:?}");
        assert!(!printed.contains("Secret\""), "{printed}");
        assert!(!printed.contains("Something"), "{printed}");
    }

    #[test]
    fn none_adds_no_headers() {
        assert!(Signature::None.headers("d", 1, b"{}").is_empty());
    }

    #[test]
    fn standard_without_secrets_still_sends_id_and_timestamp() {
        let headers = Signature::Standard { secrets: vec![] }.headers("d1", 7, b"{}");
        assert_eq!(
            headers,
            vec![
                ("webhook-id", "d1".to_string()),
                ("webhook-timestamp", "7".to_string())
            ]
        );
    }
}
