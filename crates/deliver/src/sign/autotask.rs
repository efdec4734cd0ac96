//! Autotask: `X-Hook-Signature: sha1=` + base64(HMAC-SHA1(UTF-8 SecretKey, body)).
//!
//! SHA-1 is Autotask's choice, kept so that its receivers work unchanged; HMAC-SHA1 is still
//! not forgeable in practice.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha1::Sha1;

use crate::DeliverError;

/// The signature header, spelled as Autotask documents it (and sent so).
pub const HEADER: &str = "X-Hook-Signature";
const PREFIX: &str = "sha1=";

fn mac(secret: &str, body: &[u8]) -> Hmac<Sha1> {
    // HMAC takes keys of any length; the fallback (an all-zero block key) is never taken.
    let mut mac = match Hmac::<Sha1>::new_from_slice(secret.as_bytes()) {
        Ok(mac) => mac,
        Err(_) => <Hmac<Sha1> as hmac::digest::KeyInit>::new(&Default::default()),
    };
    mac.update(body);
    mac
}

/// The header value (`sha1=` + base64) for `body` signed with `secret`.
///
/// ```
/// let value = callout_deliver::sign::autotask::sign("SuperSecretKey123", b"{}");
/// assert!(value.starts_with("sha1="));
/// ```
pub fn sign(secret: &str, body: &[u8]) -> String {
    format!(
        "{PREFIX}{}",
        BASE64.encode(mac(secret, body).finalize().into_bytes())
    )
}

/// Checks a received `X-Hook-Signature` against `body`, in constant time. The `sha1=` prefix is
/// required. An empty secret is refused: Autotask omits the header without a SecretKey.
pub fn verify(secret: &str, body: &[u8], header: &str) -> Result<(), DeliverError> {
    if secret.is_empty() {
        return Err(DeliverError::EmptySecret);
    }
    let tag = header
        .trim()
        .strip_prefix(PREFIX)
        .and_then(|encoded| BASE64.decode(encoded).ok())
        .ok_or(DeliverError::SignatureMismatch)?;
    mac(secret, body)
        .verify_slice(&tag)
        .map_err(|_| DeliverError::SignatureMismatch)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "SuperSecretKey123";
    const BODY: &str = r#"{"Action":"Update","Guid":"d0046a73-76a0-41c4-a634-4b7fce7e43ec","EntityType":"Ticket","Id":351182,"Fields":{"Title":"Printer \u0026 scanner down \u2013 Caf\u00E9","Status":"5"},"EventTime":"2025-09-15T15:10:00Z","SequenceNumber":2,"PersonID":30691780}"#;
    const EXPECTED: &str = "sha1=UBpKrqL6GbgAzcKkhagnAePZ4jU=";

    #[test]
    fn reproduces_the_profile_vector() {
        // The backslash-u escapes are literal bytes of the body, as Autotask sends them.
        assert!(BODY.contains(r"\u0026"));
        assert_eq!(sign(SECRET, BODY.as_bytes()), EXPECTED);
    }

    #[test]
    fn matches_an_independent_hmac() {
        let mut mac = Hmac::<Sha1>::new_from_slice(SECRET.as_bytes()).unwrap();
        mac.update(BODY.as_bytes());
        let independent = format!("sha1={}", BASE64.encode(mac.finalize().into_bytes()));
        assert_eq!(independent, EXPECTED);
    }

    #[test]
    fn verifies_and_rejects() {
        let body = BODY.as_bytes();
        verify(SECRET, body, EXPECTED).unwrap();
        let flipped = EXPECTED.replace("UBpK", "UBpL");
        let unprefixed = &EXPECTED[5..];
        let sha256 = EXPECTED.replace("sha1=", "sha256=");
        for header in [
            flipped.as_str(),
            unprefixed,
            &sha256,
            "sha1=",
            "sha1=UBpKrqL6",
            "",
        ] {
            assert_eq!(
                verify(SECRET, body, header),
                Err(DeliverError::SignatureMismatch),
                "{header:?}"
            );
        }
        assert_eq!(
            verify("SuperSecretKey124", body, EXPECTED),
            Err(DeliverError::SignatureMismatch)
        );
        assert_eq!(verify("", body, EXPECTED), Err(DeliverError::EmptySecret));
    }
}
