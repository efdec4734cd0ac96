//! SuperOffice: `X-SuperOffice-Signature` = base64(HMAC-SHA256(UTF-8 secret, body)), no prefix.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use hmac::Mac;

use crate::sign::hmac_sha256;
use crate::DeliverError;

/// The signature header, spelled as SuperOffice documents it (and sent so).
pub const HEADER: &str = "X-SuperOffice-Signature";
/// The content type SuperOffice sends, which its receivers may check.
pub const CONTENT_TYPE: &str = "application/json; charset=utf-8";

/// The header value for `body` signed with `secret`.
///
/// ```
/// let mac = callout_deliver::sign::superoffice::sign("Something Super Secret", b"{}");
/// assert_eq!(mac.len(), 44);
/// ```
pub fn sign(secret: &str, body: &[u8]) -> String {
    BASE64.encode(
        hmac_sha256(secret.as_bytes(), &[body])
            .finalize()
            .into_bytes(),
    )
}

/// Checks a received `X-SuperOffice-Signature` against `body`, in constant time. An empty
/// secret is refused: SuperOffice sends no signature without one.
pub fn verify(secret: &str, body: &[u8], header: &str) -> Result<(), DeliverError> {
    if secret.is_empty() {
        return Err(DeliverError::EmptySecret);
    }
    let tag = BASE64
        .decode(header.trim())
        .map_err(|_| DeliverError::SignatureMismatch)?;
    hmac_sha256(secret.as_bytes(), &[body])
        .verify_slice(&tag)
        .map_err(|_| DeliverError::SignatureMismatch)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "Something Super Secret";
    const BODY: &str = r#"{"EventId":"88f91933-edce-4c1a-8ded-ade8e2f72434","Timestamp":"2018-04-05T08:28:01.5732501Z","Changes":["contact_id","updated_associate_id","soundEx","updated","name"],"Event":"contact.changed","PrimaryKey":18,"Entity":"contact","ContextIdentifier":"Cust54321","ChangedByAssociateId":5,"WebhookName":"Tonys Contact Handler"}"#;
    const EXPECTED: &str = "BCiOaqlMZ2idyAhrKK+twtAuLPOdBYE96ebKwdXx3CA=";

    #[test]
    fn reproduces_the_profile_vector() {
        assert_eq!(sign(SECRET, BODY.as_bytes()), EXPECTED);
    }

    #[test]
    fn matches_an_independent_hmac() {
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
        mac.update(BODY.as_bytes());
        assert_eq!(BASE64.encode(mac.finalize().into_bytes()), EXPECTED);
    }

    #[test]
    fn verifies_and_rejects() {
        let body = BODY.as_bytes();
        verify(SECRET, body, EXPECTED).unwrap();
        let flipped = EXPECTED.replace("BCiO", "BCiP");
        for header in [flipped.as_str(), &EXPECTED[..40], "", "!!!", "sha256=BCiO"] {
            assert_eq!(
                verify(SECRET, body, header),
                Err(DeliverError::SignatureMismatch),
                "{header:?}"
            );
        }
        assert_eq!(
            verify("Something Super SecreT", body, EXPECTED),
            Err(DeliverError::SignatureMismatch)
        );
        assert_eq!(
            verify(SECRET, &body[..body.len() - 1], EXPECTED),
            Err(DeliverError::SignatureMismatch)
        );
        assert_eq!(verify("", body, EXPECTED), Err(DeliverError::EmptySecret));
    }
}
