//! Standard Webhooks (<https://www.standardwebhooks.com>): symmetric `v1,` signatures (base64
//! HMAC-SHA256, `whsec_` secrets) and asymmetric `v1a,` ones (base64 ed25519, `whsk_` signing
//! keys, `whpk_` public keys), over `{id}.{timestamp}.{body}`.

use std::fmt;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use hmac::Mac;

use crate::sign::hmac_sha256;
use crate::DeliverError;

/// The header carrying the message (delivery) id.
pub const ID_HEADER: &str = "webhook-id";
/// The header carrying the unix-seconds timestamp that is signed.
pub const TIMESTAMP_HEADER: &str = "webhook-timestamp";
/// The header carrying one or more space-separated `v1,<base64>` / `v1a,<base64>` signatures.
pub const SIGNATURE_HEADER: &str = "webhook-signature";
/// How far (seconds) a received timestamp may be from the verifier's clock, either way: the
/// specification's replay window.
pub const TOLERANCE_SECS: u64 = 5 * 60;

const SYMMETRIC_PREFIX: &str = "whsec_";
const SIGNING_PREFIX: &str = "whsk_";
const PUBLIC_PREFIX: &str = "whpk_";
const SIGNING_KIND: &str = "whsk_ signing key";
const PUBLIC_KIND: &str = "whpk_ public key";

/// A Standard Webhooks key, in one of the specification's three forms:
///
/// - `whsec_<base64>` (or bare base64): a shared secret, HMAC-SHA256. Signs and verifies `v1`.
/// - `whsk_<base64 of 64 bytes>`: an ed25519 signing key, the 32-byte secret key then the
///   32-byte public key. Signs `v1a`, and verifies it with its public half.
/// - `whpk_<base64 of 32 bytes>`: an ed25519 public key, for receivers. Verifies `v1a` only; it
///   cannot sign.
///
/// Construct it with [`Secret::parse`], which refuses empty, non-base64 and malformed keys, so
/// signing never fails. `Debug` does not print the key.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret {
    key: Key,
}

// Boxed: an ed25519 key with its expanded point is some 200 bytes, an HMAC key a pointer.
#[derive(Clone, PartialEq, Eq)]
enum Key {
    Symmetric(Vec<u8>),
    Signing(Box<SigningKey>),
    Public(Box<VerifyingKey>),
}

impl Secret {
    /// Parses `whsec_<base64>`, a bare base64 secret (some hosts store it without prefix),
    /// `whsk_<base64>` or `whpk_<base64>`. A `whsk_` key whose public half is not its secret
    /// half's is refused: it would sign what its own public key does not verify.
    ///
    /// ```
    /// use callout_deliver::sign::standard::Secret;
    /// let signing = Secret::parse("whsk_6Xb/dCcHpPea21PS1N9VY/NZW723CEc77N4rJCubMbfVKIDij2HKpMKkioLlX0dRqSKJp4AJ6p9lMicMFs6Kvg==")?;
    /// let public = signing.public_key().expect("a signing key has a public half");
    /// assert_eq!(public.encoded(), "whpk_1SiA4o9hyqTCpIqC5V9HUakiiaeACeqfZTInDBbOir4=");
    /// assert!(signing.can_sign() && !public.can_sign());
    /// # Ok::<(), callout_deliver::DeliverError>(())
    /// ```
    pub fn parse(text: &str) -> Result<Secret, DeliverError> {
        let text = text.trim();
        if let Some(encoded) = text.strip_prefix(SIGNING_PREFIX) {
            let pair: [u8; 64] = fixed(
                decode(encoded)?,
                SIGNING_KIND,
                "the 32-byte secret key then the 32-byte public key",
            )?;
            let key =
                SigningKey::from_keypair_bytes(&pair).map_err(|_| DeliverError::InvalidKey {
                    kind: SIGNING_KIND,
                    reason: "its public half is not the public key of its secret half".into(),
                })?;
            return Ok(Secret {
                key: Key::Signing(Box::new(key)),
            });
        }
        if let Some(encoded) = text.strip_prefix(PUBLIC_PREFIX) {
            let bytes: [u8; 32] = fixed(decode(encoded)?, PUBLIC_KIND, "an ed25519 public key")?;
            let key = VerifyingKey::from_bytes(&bytes).map_err(|_| DeliverError::InvalidKey {
                kind: PUBLIC_KIND,
                reason: "not an ed25519 public key".into(),
            })?;
            return Ok(Secret {
                key: Key::Public(Box::new(key)),
            });
        }
        let encoded = text.strip_prefix(SYMMETRIC_PREFIX).unwrap_or(text);
        Secret::from_bytes(decode(encoded)?)
    }

    /// Uses raw HMAC key bytes (already decoded), as a `whsec_` secret. Refuses an empty key.
    pub fn from_bytes(key: impl Into<Vec<u8>>) -> Result<Secret, DeliverError> {
        let key = key.into();
        if key.is_empty() {
            return Err(DeliverError::EmptySecret);
        }
        Ok(Secret {
            key: Key::Symmetric(key),
        })
    }

    /// The key in its prefixed form (`whsec_...`, `whsk_...` or `whpk_...`), as shown to a
    /// host's user.
    pub fn encoded(&self) -> String {
        match &self.key {
            Key::Symmetric(key) => format!("{SYMMETRIC_PREFIX}{}", BASE64.encode(key)),
            Key::Signing(key) => {
                format!("{SIGNING_PREFIX}{}", BASE64.encode(key.to_keypair_bytes()))
            }
            Key::Public(key) => format!("{PUBLIC_PREFIX}{}", BASE64.encode(key.to_bytes())),
        }
    }

    /// The `whpk_` public key that verifies this key's `v1a` signatures, for the receivers:
    /// `None` for a `whsec_` secret, which has no public half.
    pub fn public_key(&self) -> Option<Secret> {
        let public = match &self.key {
            Key::Symmetric(_) => return None,
            Key::Signing(key) => key.verifying_key(),
            Key::Public(key) => **key,
        };
        Some(Secret {
            key: Key::Public(Box::new(public)),
        })
    }

    /// Whether this key signs: a `whsec_` secret and a `whsk_` key do, a `whpk_` key does not.
    pub fn can_sign(&self) -> bool {
        !matches!(self.key, Key::Public(_))
    }
}

/// The base64 after a key's prefix; empty is [`DeliverError::EmptySecret`].
fn decode(encoded: &str) -> Result<Vec<u8>, DeliverError> {
    if encoded.is_empty() {
        return Err(DeliverError::EmptySecret);
    }
    BASE64
        .decode(encoded)
        .map_err(|error| DeliverError::InvalidSecret {
            reason: error.to_string(),
        })
}

/// `bytes` as exactly `N` bytes, or an error saying what the `kind` of key holds.
fn fixed<const N: usize>(
    bytes: Vec<u8>,
    kind: &'static str,
    holds: &str,
) -> Result<[u8; N], DeliverError> {
    let len = bytes.len();
    bytes.try_into().map_err(|_| DeliverError::InvalidKey {
        kind,
        reason: format!("{len} bytes where it has {N}: {holds}"),
    })
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The kind helps a reader of logs; the key itself never shows (not even a public one,
        // so that no Debug output needs a second look).
        let prefix = match self.key {
            Key::Symmetric(_) => SYMMETRIC_PREFIX,
            Key::Signing(_) => SIGNING_PREFIX,
            Key::Public(_) => PUBLIC_PREFIX,
        };
        write!(f, "Secret({prefix}..)")
    }
}

fn mac(key: &[u8], msg_id: &str, timestamp: &str, body: &[u8]) -> hmac::Hmac<sha2::Sha256> {
    hmac_sha256(
        key,
        &[msg_id.as_bytes(), b".", timestamp.as_bytes(), b".", body],
    )
}

/// What `v1a` signs: ed25519 needs the message whole, so it is put together once.
fn signed_content(msg_id: &str, timestamp: &str, body: &[u8]) -> Vec<u8> {
    [msg_id.as_bytes(), b".", timestamp.as_bytes(), b".", body].concat()
}

/// One signature: `v1,` + base64(HMAC-SHA256(key, "{msg_id}.{timestamp}.{body}")) for a
/// `whsec_` secret, `v1a,` + base64(ed25519(key, the same)) for a `whsk_` key; `None` for a
/// `whpk_` public key, which only verifies.
///
/// ```
/// use callout_deliver::sign::standard::{sign, Secret};
/// let id = "msg_p5jXN8AQM9LWM0D4loKWxJek";
/// let body = br#"{"test": 2432232314}"#;
/// let secret = Secret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")?;
/// assert_eq!(sign(&secret, id, 1614265330, body).unwrap(), "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
/// let signing = Secret::parse("whsk_6Xb/dCcHpPea21PS1N9VY/NZW723CEc77N4rJCubMbfVKIDij2HKpMKkioLlX0dRqSKJp4AJ6p9lMicMFs6Kvg==")?;
/// assert_eq!(
///     sign(&signing, id, 1614265330, body).unwrap(),
///     "v1a,hnO3f9T8Ytu9HwrXslvumlUpqtNVqkhqw/enGzPCXe5BdqzCInXqYXFymVJaA7AZdpXwVLPo3mNl8EM+m7TBAg=="
/// );
/// # Ok::<(), callout_deliver::DeliverError>(())
/// ```
pub fn sign(secret: &Secret, msg_id: &str, timestamp: u64, body: &[u8]) -> Option<String> {
    let mut out = String::new();
    let mut digits = itoa::Buffer::new();
    sign_into(&mut out, secret, msg_id, digits.format(timestamp), body).then_some(out)
}

/// Appends `secret`'s signature entry to `out`; false (nothing appended) for a public key.
fn sign_into(
    out: &mut String,
    secret: &Secret,
    msg_id: &str,
    timestamp: &str,
    body: &[u8],
) -> bool {
    match &secret.key {
        Key::Symmetric(key) => {
            let tag = mac(key, msg_id, timestamp, body).finalize().into_bytes();
            out.push_str("v1,");
            BASE64.encode_string(tag, out);
            true
        }
        Key::Signing(key) => {
            let signature = key.sign(&signed_content(msg_id, timestamp, body));
            out.push_str("v1a,");
            BASE64.encode_string(signature.to_bytes(), out);
            true
        }
        Key::Public(_) => false,
    }
}

/// The `webhook-signature` value for several keys (rotation, or `v1` beside `v1a`): one entry
/// per key that signs, space-separated, in the given order. Written into one string of
/// exactly its size: this runs for every request, and the sender makes the string the
/// header's storage, which takes no copy only when nothing of it is spare.
pub fn signature_header(secrets: &[Secret], msg_id: &str, timestamp: u64, body: &[u8]) -> String {
    let entry_len = |secret: &Secret| match secret.key {
        // "v1," and the base64 of a 32-byte HMAC-SHA256 tag.
        Key::Symmetric(_) => 3 + 44,
        // "v1a," and the base64 of a 64-byte ed25519 signature.
        Key::Signing(_) => 4 + 88,
        Key::Public(_) => 0,
    };
    let signing = secrets.iter().filter(|s| entry_len(s) > 0).count();
    let len: usize = secrets.iter().map(entry_len).sum::<usize>() + signing.saturating_sub(1);
    let mut out = String::with_capacity(len);
    let mut digits = itoa::Buffer::new();
    let timestamp = digits.format(timestamp);
    for secret in secrets {
        let before = out.len();
        if before > 0 {
            out.push(' ');
        }
        if !sign_into(&mut out, secret, msg_id, timestamp, body) {
            out.truncate(before);
        }
    }
    out
}

/// Verifies a received request as the reference verifiers do: the three headers must be present
/// (names matched case-insensitively), the timestamp within [`TOLERANCE_SECS`] of `now` (unix
/// seconds), and at least one entry must match `body`: a `v1,` entry for a `whsec_` secret
/// (compared in constant time), a `v1a,` entry for a `whpk_` key or a `whsk_` key's public half.
///
/// `body` must be the raw bytes received: re-serialised JSON will not verify.
///
/// ```
/// use callout_deliver::sign::standard::{verify, Secret};
/// let public = Secret::parse("whpk_1SiA4o9hyqTCpIqC5V9HUakiiaeACeqfZTInDBbOir4=")?;
/// let headers = [
///     ("webhook-id", "msg_p5jXN8AQM9LWM0D4loKWxJek"),
///     ("webhook-timestamp", "1614265330"),
///     ("webhook-signature", "v1a,hnO3f9T8Ytu9HwrXslvumlUpqtNVqkhqw/enGzPCXe5BdqzCInXqYXFymVJaA7AZdpXwVLPo3mNl8EM+m7TBAg=="),
/// ];
/// verify(&public, &headers, br#"{"test": 2432232314}"#, 1614265330)?;
/// # Ok::<(), callout_deliver::DeliverError>(())
/// ```
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
    let timestamp = timestamp_text.trim();
    let entries = |version: &'static str| {
        signatures
            .split(' ')
            .filter_map(move |entry| entry.strip_prefix(version))
            .filter_map(|encoded| BASE64.decode(encoded).ok())
    };
    let matched = match &secret.key {
        Key::Symmetric(key) => {
            let expected = mac(key, msg_id, timestamp, body);
            entries("v1,").any(|tag| expected.clone().verify_slice(&tag).is_ok())
        }
        Key::Signing(key) => verify_v1a(
            &key.verifying_key(),
            entries("v1a,"),
            msg_id,
            timestamp,
            body,
        ),
        Key::Public(key) => verify_v1a(key, entries("v1a,"), msg_id, timestamp, body),
    };
    if matched {
        Ok(())
    } else {
        Err(DeliverError::SignatureMismatch)
    }
}

/// Whether one of the decoded `v1a` signatures is `key`'s over the message. Strict
/// verification: it refuses the malleable and small-order forms that RFC 8032 leaves open.
fn verify_v1a(
    key: &VerifyingKey,
    mut signatures: impl Iterator<Item = Vec<u8>>,
    msg_id: &str,
    timestamp: &str,
    body: &[u8],
) -> bool {
    let content = signed_content(msg_id, timestamp, body);
    signatures.any(|bytes| {
        ed25519_dalek::Signature::from_slice(&bytes)
            .is_ok_and(|signature| key.verify_strict(&content, &signature).is_ok())
    })
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
        assert_eq!(sign(&secret(), ID, TS, BODY).unwrap(), EXPECTED);
    }

    /// The specification's `v1` vector (its README's example), byte for byte.
    #[test]
    fn reproduces_the_v1_vector_of_the_specification() {
        let secret = Secret::parse("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD").unwrap();
        let id = "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk";
        let body = br#"{"email":"test@example.com","username":"test_user"}"#;
        let expected = "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=";
        assert_eq!(sign(&secret, id, 1649367553, body).unwrap(), expected);
        let headers = [
            ("webhook-id", id),
            ("webhook-timestamp", "1649367553"),
            ("webhook-signature", expected),
        ];
        verify(&secret, &headers, body, 1649367553).unwrap();
    }

    const SIGNING_KEY: &str = "whsk_6Xb/dCcHpPea21PS1N9VY/NZW723CEc77N4rJCubMbfVKIDij2HKpMKkioLlX0dRqSKJp4AJ6p9lMicMFs6Kvg==";
    const PUBLIC_KEY: &str = "whpk_1SiA4o9hyqTCpIqC5V9HUakiiaeACeqfZTInDBbOir4=";
    const EXPECTED_V1A: &str = "v1a,hnO3f9T8Ytu9HwrXslvumlUpqtNVqkhqw/enGzPCXe5BdqzCInXqYXFymVJaA7AZdpXwVLPo3mNl8EM+m7TBAg==";

    /// The specification's `v1a` vector, byte for byte (ed25519 signatures are deterministic).
    #[test]
    fn reproduces_the_v1a_vector_of_the_specification() {
        let signing = Secret::parse(SIGNING_KEY).unwrap();
        assert_eq!(sign(&signing, ID, TS, BODY).unwrap(), EXPECTED_V1A);
        let public = signing.public_key().unwrap();
        assert_eq!(public.encoded(), PUBLIC_KEY);
        assert_eq!(Secret::parse(PUBLIC_KEY).unwrap(), public);
        assert_eq!(signing.encoded(), SIGNING_KEY);
        let ts = TS.to_string();
        verify(&public, &headers(EXPECTED_V1A, &ts), BODY, TS).unwrap();
        verify(&signing, &headers(EXPECTED_V1A, &ts), BODY, TS).unwrap();
    }

    #[test]
    fn v1a_near_misses_and_other_versions_do_not_verify() {
        let public = Secret::parse(PUBLIC_KEY).unwrap();
        let ts = TS.to_string();
        let refused =
            |signature: &str, body: &[u8]| verify(&public, &headers(signature, &ts), body, TS);
        assert_eq!(
            refused(EXPECTED_V1A, br#"{"test": 2432232315}"#),
            Err(DeliverError::SignatureMismatch)
        );
        let flipped = EXPECTED_V1A.replace("hnO3", "hnO4");
        assert_eq!(
            refused(&flipped, BODY),
            Err(DeliverError::SignatureMismatch)
        );
        // The right ed25519 signature under the symmetric version's label, and a v1 entry
        // against a public key, prove nothing.
        let relabelled = EXPECTED_V1A.replace("v1a,", "v1,");
        assert_eq!(
            refused(&relabelled, BODY),
            Err(DeliverError::SignatureMismatch)
        );
        assert_eq!(
            refused(EXPECTED, BODY),
            Err(DeliverError::SignatureMismatch)
        );
        assert_eq!(
            verify(&secret(), &headers(EXPECTED_V1A, &ts), BODY, TS),
            Err(DeliverError::SignatureMismatch),
            "a whsec_ secret checks v1 entries only"
        );
        // Truncated and empty signatures.
        for signature in ["v1a,", "v1a,hnO3f9T8", "v1a"] {
            assert_eq!(
                refused(signature, BODY),
                Err(DeliverError::SignatureMismatch)
            );
        }
    }

    #[test]
    fn v1_and_v1a_are_signed_side_by_side() {
        let both = [secret(), Secret::parse(SIGNING_KEY).unwrap()];
        let header = signature_header(&both, ID, TS, BODY);
        assert_eq!(header, format!("{EXPECTED} {EXPECTED_V1A}"));
        let ts = TS.to_string();
        verify(&secret(), &headers(&header, &ts), BODY, TS).unwrap();
        let public = Secret::parse(PUBLIC_KEY).unwrap();
        verify(&public, &headers(&header, &ts), BODY, TS).unwrap();
        // A public key among the keys signs nothing.
        let with_public = [public.clone(), secret()];
        assert_eq!(signature_header(&with_public, ID, TS, BODY), EXPECTED);
        // Last, or between two that sign: no stray space either.
        let public_last = [secret(), public.clone()];
        assert_eq!(signature_header(&public_last, ID, TS, BODY), EXPECTED);
        let between = [secret(), public, secret()];
        let header = signature_header(&between, ID, TS, BODY);
        assert_eq!(header, format!("{EXPECTED} {EXPECTED}"));
        // Sized exactly, so that it becomes the header value without a copy.
        assert_eq!(header.capacity(), header.len());
        let header = signature_header(&both, ID, TS, BODY);
        assert_eq!(header.capacity(), header.len());
    }

    #[test]
    fn malformed_ed25519_keys_are_refused() {
        let invalid = |text: &str| match Secret::parse(text) {
            Err(DeliverError::InvalidKey { kind, reason }) => format!("{kind}: {reason}"),
            other => panic!("{text}: {other:?}"),
        };
        // 32 bytes where a whsk_ key has 64.
        assert!(invalid(&PUBLIC_KEY.replace("whpk_", "whsk_")).contains("32 bytes where it has 64"));
        // A signing key whose public half is another key's.
        let mut pair = BASE64.decode(&SIGNING_KEY[5..]).unwrap();
        pair[40] ^= 1;
        let mismatched = format!("whsk_{}", BASE64.encode(&pair));
        assert!(invalid(&mismatched).contains("public half"));
        assert!(
            invalid(&SIGNING_KEY.replace("whsk_", "whpk_")).contains("64 bytes where it has 32")
        );
        assert_eq!(Secret::parse("whsk_"), Err(DeliverError::EmptySecret));
        assert!(matches!(
            Secret::parse("whpk_not base64!"),
            Err(DeliverError::InvalidSecret { .. })
        ));
        assert!(!format!("{:?}", Secret::parse(SIGNING_KEY).unwrap()).contains("6Xb"));
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
        assert_eq!(sign(&secret(), ID, TS, BODY).unwrap(), independent);
    }

    #[test]
    fn bare_base64_secret_is_the_same_key() {
        let bare = Secret::parse("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        assert_eq!(bare, secret());
        assert_eq!(bare.encoded(), SECRET);
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
