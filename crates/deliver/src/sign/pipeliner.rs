//! Pipeliner: `WebHook-Signature` = HMAC-SHA256(key = the webhook's signature UUID as text, body).
//!
//! Pipeliner does not publish the encoding; lowercase hex is the default (PROFILES.md), base64
//! an option.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use hmac::Mac;

use crate::sign::hmac_sha256;
use crate::DeliverError;

/// The signature header, spelled as Pipeliner documents it (and sent so).
pub const HEADER: &str = "WebHook-Signature";

/// How the MAC is written in the header.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Encoding {
    /// Lowercase hexadecimal, 64 characters (the default).
    #[default]
    Hex,
    /// Standard base64 with padding, 44 characters.
    Base64,
}

/// The header value for `body` signed with `key`.
///
/// ```
/// use callout_deliver::sign::pipeliner::{sign, Encoding};
/// let mac = sign("01234567-abcd-dcba-ffff-000000000000", b"[]", Encoding::Hex);
/// assert_eq!(mac.len(), 64);
/// ```
pub fn sign(key: &str, body: &[u8], encoding: Encoding) -> String {
    let tag = hmac_sha256(key.as_bytes(), &[body]).finalize().into_bytes();
    match encoding {
        Encoding::Hex => hex(&tag),
        Encoding::Base64 => BASE64.encode(tag),
    }
}

/// Checks a received `WebHook-Signature` value against `body`, in constant time. Hex is
/// accepted in either case. An empty key is refused: it means no signature was configured.
pub fn verify(
    key: &str,
    body: &[u8],
    header: &str,
    encoding: Encoding,
) -> Result<(), DeliverError> {
    if key.is_empty() {
        return Err(DeliverError::EmptySecret);
    }
    let header = header.trim();
    let tag = match encoding {
        Encoding::Hex => unhex(header),
        Encoding::Base64 => BASE64.decode(header).ok(),
    }
    .ok_or(DeliverError::SignatureMismatch)?;
    hmac_sha256(key.as_bytes(), &[body])
        .verify_slice(&tag)
        .map_err(|_| DeliverError::SignatureMismatch)
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        text.push(char::from(DIGITS[usize::from(byte >> 4)]));
        text.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
    text
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    let text = text.as_bytes();
    if !text.len().is_multiple_of(2) {
        return None;
    }
    let digit = |c: u8| char::from(c).to_digit(16).map(|d| d as u8);
    text.chunks_exact(2)
        .map(|pair| Some(digit(pair[0])? << 4 | digit(pair[1])?))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "01234567-abcd-dcba-ffff-000000000000";
    const BODY: &str = r#"[{"webhook":{"id":"9f1c2b7e-0d4a-4c8e-9b7a-2f6d1e3c4a5b","insecure_ssl":false,"options":{},"url":"https://example.com/pipeliner","is_deleted":false,"created":"2024-01-01T00:00:00Z","modified":"2024-01-01T00:00:00Z","application_id":"4a6c8e0f-1b3d-4f5a-8c7e-9d0b2a4c6e8f","client_id":null,"events":["Account.*"]},"event":"Account.Update","event_time":"2024-01-02T10:00:00Z","team_space_id":"12345","related_entity":null,"entity":{"id":"2c5e7a9b-3d4f-4a1b-8c6d-0e2f4a6b8c0d","name":"Acme"}}]"#;
    const HEX: &str = "b4bc7f1f59188c64e73721a0f3b26019664643189c25d935dd529d0d8e6f3ce4";
    const B64: &str = "tLx/H1kYjGTnNyGg87JgGWZGQxicJdk13VKdDY5vPOQ=";

    #[test]
    fn reproduces_the_profile_vector() {
        assert_eq!(sign(KEY, BODY.as_bytes(), Encoding::Hex), HEX);
        assert_eq!(sign(KEY, BODY.as_bytes(), Encoding::Base64), B64);
    }

    #[test]
    fn matches_an_independent_hmac() {
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(KEY.as_bytes()).unwrap();
        mac.update(BODY.as_bytes());
        let tag = mac.finalize().into_bytes();
        let independent: String = tag.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(independent, HEX);
        assert_eq!(BASE64.encode(tag), B64);
    }

    #[test]
    fn verifies_and_rejects() {
        let body = BODY.as_bytes();
        verify(KEY, body, HEX, Encoding::Hex).unwrap();
        verify(KEY, body, &HEX.to_uppercase(), Encoding::Hex).unwrap();
        verify(KEY, body, B64, Encoding::Base64).unwrap();
        let flipped = HEX.replace("b4bc", "b4bd");
        for (header, encoding) in [
            (flipped.as_str(), Encoding::Hex),
            (&HEX[..62], Encoding::Hex),
            (&HEX[..63], Encoding::Hex),
            ("", Encoding::Hex),
            ("zz", Encoding::Hex),
            (B64, Encoding::Hex),
            (HEX, Encoding::Base64),
        ] {
            assert_eq!(
                verify(KEY, body, header, encoding),
                Err(DeliverError::SignatureMismatch),
                "{header:?}"
            );
        }
        assert_eq!(
            verify(
                "01234567-abcd-dcba-ffff-000000000001",
                body,
                HEX,
                Encoding::Hex
            ),
            Err(DeliverError::SignatureMismatch)
        );
        assert_eq!(
            verify(KEY, &body[1..], HEX, Encoding::Hex),
            Err(DeliverError::SignatureMismatch)
        );
        assert_eq!(
            verify("", body, HEX, Encoding::Hex),
            Err(DeliverError::EmptySecret)
        );
    }
}
