//! Standard Webhooks (<https://www.standardwebhooks.com>): `v1,` + base64 HMAC-SHA256 over
//! `{id}.{timestamp}.{body}`.

use std::fmt;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use hmac::Mac;

use crate::sign::hmac_sha256;
use crate::DeliverError;

/// The header carrying the message (delivery) id.
pub const ID_HEADER: &str = "webhook-id";
/// The header carrying the unix-seconds timestamp that is signed.
pub const TIMESTAMP_HEADER: &str = "webhook-timestamp";
/// The header carrying one or more space-separated `v1,<base64>` signatures.
pub const SIGNATURE_HEADER: &str = "webhook-signature";
/// How far (seconds) a received timestamp may be from the verifier's clock, either way: the
/// specification's replay window.
pub const TOLERANCE_SECS: u64 = 5 * 60;

const PREFIX: &str = "whsec_";

/// A Standard Webhooks signing key: the base64-decoded bytes of a `whsec_...` secret.
///
/// Construct it with [`Secret::parse`], which refuses empty and non-base64 secrets, so signing
/// never fails. `Debug` does not print the key.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret {
    key: Vec<u8>,
}

impl Secret {
    /// Parses `whsec_<base64>`, or a bare base64 secret (some hosts store it without prefix).
    pub fn parse(text: &str) -> Result<Secret, DeliverError> {
        let encoded = text.trim();
        let encoded = encoded.strip_prefix(PREFIX).unwrap_or(encoded);
        if encoded.is_empty() {
            return Err(DeliverError::EmptySecret);
        }
        let key = BASE64
            .decode(encoded)
            .map_err(|error| DeliverError::InvalidSecret {
                reason: error.to_string(),
            })?;
        Secret::from_bytes(key)
    }

    /// Uses raw key bytes (already decoded). Refuses an empty key.
    pub fn from_bytes(key: impl Into<Vec<u8>>) -> Result<Secret, DeliverError> {
        let key = key.into();
        if key.is_empty() {
            return Err(DeliverError::EmptySecret);
        }
        Ok(Secret { key })
    }

    /// The secret in its `whsec_<base64>` form, as shown to a host's user.
    pub fn to_whsec(&self) -> String {
        format!("{PREFIX}{}", BASE64.encode(&self.key))
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

fn mac(secret: &Secret, msg_id: &str, timestamp: &str, body: &[u8]) -> hmac::Hmac<sha2::Sha256> {
    hmac_sha256(
        &secret.key,
        &[msg_id.as_bytes(), b".", timestamp.as_bytes(), b".", body],
    )
}

/// One signature: `v1,` + base64(HMAC-SHA256(key, "{msg_id}.{timestamp}.{body}")).
///
/// ```
/// use callout_deliver::sign::standard::{sign, Secret};
/// let secret = Secret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")?;
/// let signature = sign(&secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, br#"{"test": 2432232314}"#);
/// assert_eq!(signature, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
/// # Ok::<(), callout_deliver::DeliverError>(())
/// ```
pub fn sign(secret: &Secret, msg_id: &str, timestamp: u64, body: &[u8]) -> String {
    let tag = mac(secret, msg_id, &timestamp.to_string(), body)
        .finalize()
        .into_bytes();
    format!("v1,{}", BASE64.encode(tag))
}

/// The `webhook-signature` value for several secrets (rotation): one `v1,` entry per secret,
/// space-separated, in the given order.
pub fn signature_header(secrets: &[Secret], msg_id: &str, timestamp: u64, body: &[u8]) -> String {
    let signatures: Vec<String> = secrets
        .iter()
        .map(|secret| sign(secret, msg_id, timestamp, body))
        .collect();
    signatures.join(" ")
}

/// Verifies a received request as the reference verifiers do: the three headers must be present
/// (names matched case-insensitively), the timestamp within [`TOLERANCE_SECS`] of `now` (unix
/// seconds), and at least one `v1,` entry must match `body`, compared in constant time.
///
/// `body` must be the raw bytes received: re-serialised JSON will not verify.
pub fn verify(
    secret: &Secret,
    headers: &[(&str, &str)],
    body: &[u8],
    now: u64,
) -> Result<(), DeliverError> {
    let msg_id = header(headers, ID_HEADER)?;
    let timestamp_text = header(headers, TIMESTAMP_HEADER)?;
    let signatures = header(headers, SIGNATURE_HEADER)?;

    let timestamp: u64 =
        timestamp_text
            .trim()
            .parse()
            .map_err(|_| DeliverError::InvalidTimestamp {
                value: timestamp_text.to_string(),
            })?;
    if timestamp.abs_diff(now) > TOLERANCE_SECS {
        return Err(DeliverError::TimestampOutOfTolerance {
            timestamp,
            now,
            tolerance_secs: TOLERANCE_SECS,
        });
    }

    // Sign the timestamp as received (trimmed), not re-formatted: "0123" must not verify as
    // "123" would.
    let expected = mac(secret, msg_id, timestamp_text.trim(), body);
    let matched = signatures
        .split(' ')
        .filter_map(|entry| entry.strip_prefix("v1,"))
        .filter_map(|encoded| BASE64.decode(encoded).ok())
        .any(|tag| expected.clone().verify_slice(&tag).is_ok());
    if matched {
        Ok(())
    } else {
        Err(DeliverError::SignatureMismatch)
    }
}

fn header<'a>(headers: &[(&str, &'a str)], name: &'static str) -> Result<&'a str, DeliverError> {
    headers
        .iter()
        .find(|(key, _)| key.eq_ignore_ascii_case(name))
        .map(|(_, value)| *value)
        .ok_or(DeliverError::MissingHeader { name })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const TS: u64 = 1614265330;
    const BODY: &[u8] = br#"{"test": 2432232314}"#;
    const EXPECTED: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    fn secret() -> Secret {
        Secret::parse(SECRET).unwrap()
    }

    fn headers<'a>(signature: &'a str, ts: &'a str) -> Vec<(&'a str, &'a str)> {
        vec![
            ("Webhook-Id", ID),
            ("webhook-timestamp", ts),
            ("WEBHOOK-SIGNATURE", signature),
        ]
    }

    #[test]
    fn reproduces_the_specification_vector() {
        assert_eq!(sign(&secret(), ID, TS, BODY), EXPECTED);
    }

    #[test]
    fn matches_an_independent_hmac() {
        // Computed here with hmac/sha2 directly, not with the code under test.
        let key = BASE64.decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&key).unwrap();
        mac.update(format!("{ID}.{TS}.").as_bytes());
        mac.update(BODY);
        let independent = format!("v1,{}", BASE64.encode(mac.finalize().into_bytes()));
        assert_eq!(independent, EXPECTED);
        assert_eq!(sign(&secret(), ID, TS, BODY), independent);
    }

    #[test]
    fn bare_base64_secret_is_the_same_key() {
        let bare = Secret::parse("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        assert_eq!(bare, secret());
        assert_eq!(bare.to_whsec(), SECRET);
    }

    #[test]
    fn empty_and_invalid_secrets_are_refused() {
        assert_eq!(Secret::parse(""), Err(DeliverError::EmptySecret));
        assert_eq!(Secret::parse("whsec_"), Err(DeliverError::EmptySecret));
        assert_eq!(Secret::from_bytes(vec![]), Err(DeliverError::EmptySecret));
        assert!(matches!(
            Secret::parse("whsec_not base64!"),
            Err(DeliverError::InvalidSecret { .. })
        ));
    }

    #[test]
    fn verifies_the_vector_within_tolerance() {
        let ts = TS.to_string();
        verify(&secret(), &headers(EXPECTED, &ts), BODY, TS).unwrap();
        verify(
            &secret(),
            &headers(EXPECTED, &ts),
            BODY,
            TS + TOLERANCE_SECS,
        )
        .unwrap();
        verify(
            &secret(),
            &headers(EXPECTED, &ts),
            BODY,
            TS - TOLERANCE_SECS,
        )
        .unwrap();
    }

    #[test]
    fn rejects_timestamps_too_old_or_too_new() {
        let ts = TS.to_string();
        for now in [TS + TOLERANCE_SECS + 1, TS - TOLERANCE_SECS - 1] {
            assert!(matches!(
                verify(&secret(), &headers(EXPECTED, &ts), BODY, now),
                Err(DeliverError::TimestampOutOfTolerance { .. })
            ));
        }
        assert!(matches!(
            verify(&secret(), &headers(EXPECTED, "soon"), BODY, TS),
            Err(DeliverError::InvalidTimestamp { .. })
        ));
    }

    #[test]
    fn rejects_near_misses() {
        let ts = TS.to_string();
        // One flipped character in the signature, the body, the id and the timestamp.
        let flipped = EXPECTED.replace("g0hM", "g0hN");
        assert_eq!(
            verify(&secret(), &headers(&flipped, &ts), BODY, TS),
            Err(DeliverError::SignatureMismatch)
        );
        assert_eq!(
            verify(
                &secret(),
                &headers(EXPECTED, &ts),
                br#"{"test": 2432232315}"#,
                TS
            ),
            Err(DeliverError::SignatureMismatch)
        );
        let other_id = [
            ("webhook-id", "msg_p5jXN8AQM9LWM0D4loKWxJeK"),
            ("webhook-timestamp", ts.as_str()),
            ("webhook-signature", EXPECTED),
        ];
        assert_eq!(
            verify(&secret(), &other_id, BODY, TS),
            Err(DeliverError::SignatureMismatch)
        );
        let ts_plus = (TS + 1).to_string();
        assert_eq!(
            verify(&secret(), &headers(EXPECTED, &ts_plus), BODY, TS),
            Err(DeliverError::SignatureMismatch)
        );
        // Another key.
        let other = Secret::from_bytes(b"another key".to_vec()).unwrap();
        assert_eq!(
            verify(&other, &headers(EXPECTED, &ts), BODY, TS),
            Err(DeliverError::SignatureMismatch)
        );
        // Another version prefix with the right MAC.
        let v2 = EXPECTED.replace("v1,", "v2,");
        assert_eq!(
            verify(&secret(), &headers(&v2, &ts), BODY, TS),
            Err(DeliverError::SignatureMismatch)
        );
    }

    #[test]
    fn rejects_partial_signatures() {
        let ts = TS.to_string();
        // A truncated MAC that is still valid base64 (24 of 32 bytes), and an empty one.
        let tag = BASE64.decode(&EXPECTED[3..]).unwrap();
        let partial = format!("v1,{}", BASE64.encode(&tag[..24]));
        for signature in [partial.as_str(), "v1,", "", "v1"] {
            assert_eq!(
                verify(&secret(), &headers(signature, &ts), BODY, TS),
                Err(DeliverError::SignatureMismatch),
                "{signature:?}"
            );
        }
    }

    #[test]
    fn rejects_missing_headers() {
        let ts = TS.to_string();
        let full = headers(EXPECTED, &ts);
        for (missing, name) in [(0, ID_HEADER), (1, TIMESTAMP_HEADER), (2, SIGNATURE_HEADER)] {
            let mut partial = full.clone();
            partial.remove(missing);
            assert_eq!(
                verify(&secret(), &partial, BODY, TS),
                Err(DeliverError::MissingHeader { name })
            );
        }
    }

    #[test]
    fn any_signature_of_a_rotation_verifies() {
        let old = Secret::from_bytes(b"old key".to_vec()).unwrap();
        let header = signature_header(&[old.clone(), secret()], ID, TS, BODY);
        assert_eq!(header.split(' ').count(), 2);
        assert!(header.ends_with(EXPECTED));
        let ts = TS.to_string();
        verify(&secret(), &headers(&header, &ts), BODY, TS).unwrap();
        verify(&old, &headers(&header, &ts), BODY, TS).unwrap();
    }
}
