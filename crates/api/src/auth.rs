//! Who is calling: the [`Authorizer`] a host implements, the [`Caller`] it returns, and
//! [`Tokens`], a ready authorizer from a table of credentials (what `callout serve` uses).

use std::collections::HashMap;
use std::fmt;

use base64::Engine as _;
use http::HeaderMap;

use crate::error::Error;

/// Who made a request and which tenant it acts for. Every subscription the caller creates gets
/// `tenant`, and it sees and changes only the subscriptions (and their deliveries, attempts,
/// dead letters and stats) of that tenant.
#[derive(Clone, PartialEq, Eq)]
pub struct Caller {
    /// The caller's name, recorded as `created_by` / `updated_by` of what it changes.
    pub name: String,
    /// The tenant it acts for.
    pub tenant: String,
}

impl Caller {
    /// A caller named `name` acting for `tenant`.
    pub fn new(name: impl Into<String>, tenant: impl Into<String>) -> Caller {
        Caller {
            name: name.into(),
            tenant: tenant.into(),
        }
    }
}

impl fmt::Debug for Caller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Caller")
            .field("name", &self.name)
            .field("tenant", &self.tenant)
            .finish()
    }
}

/// Why a request was not authorized: answered with 401 in the dialect's error shape. The
/// message is shown to the caller, so it must not say which credentials exist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// What to tell the caller, e.g. "missing credentials".
    pub message: String,
}

impl Refusal {
    /// A refusal saying `message`.
    pub fn new(message: impl Into<String>) -> Refusal {
        Refusal {
            message: message.into(),
        }
    }
}

/// Decides from a request's headers who the caller is and which tenant it acts for. The host
/// implements it over its own users (Basic, Bearer, session cookies, the vendors' schemes);
/// [`Tokens`] is a table-driven one.
///
/// ```
/// use callout_api::{Authorizer, Caller, Refusal};
/// struct OneTenant;
/// impl Authorizer for OneTenant {
///     fn authorize(&self, headers: &http::HeaderMap) -> Result<Caller, Refusal> {
///         match headers.get("x-api-key").map(|v| v.as_bytes()) {
///             Some(b"let-me-in") => Ok(Caller::new("ops", "acme")),
///             _ => Err(Refusal::new("missing or unknown API key")),
///         }
///     }
/// }
/// ```
pub trait Authorizer: Send + Sync + 'static {
    /// The caller, or why the request is refused.
    fn authorize(&self, headers: &HeaderMap) -> Result<Caller, Refusal>;
}

impl<F> Authorizer for F
where
    F: Fn(&HeaderMap) -> Result<Caller, Refusal> + Send + Sync + 'static,
{
    fn authorize(&self, headers: &HeaderMap) -> Result<Caller, Refusal> {
        self(headers)
    }
}

/// An authorizer from a table of credentials, each acting for one tenant. A request presents
/// one in any of the schemes the vendors' clients use:
///
/// - `Authorization: Bearer <credential>`;
/// - `Authorization: Basic <base64 of user:password>`, whose credential is `user:password`
///   (SuperOffice, Pipeliner and Autotask SOAP clients send Basic);
/// - Autotask REST's `UserName` and `Secret` headers, whose credential is `UserName:Secret`.
///
/// Credentials are compared in constant time.
///
/// ```
/// let tokens = callout_api::Tokens::parse("# credential tenant [name]\ns3cret acme ops\n")?;
/// let mut headers = http::HeaderMap::new();
/// headers.insert("authorization", "Bearer s3cret".parse()?);
/// use callout_api::Authorizer;
/// assert_eq!(tokens.authorize(&headers).unwrap().tenant, "acme");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Default)]
pub struct Tokens {
    entries: Vec<(Vec<u8>, Caller)>,
}

impl fmt::Debug for Tokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let callers: Vec<&Caller> = self.entries.iter().map(|(_, c)| c).collect();
        f.debug_struct("Tokens")
            .field("credentials", &callers)
            .finish()
    }
}

impl Tokens {
    /// An empty table: every request is refused until credentials are added.
    pub fn new() -> Tokens {
        Tokens::default()
    }

    /// Adds a credential acting for `caller`.
    pub fn with(mut self, credential: impl Into<String>, caller: Caller) -> Tokens {
        self.entries.push((credential.into().into_bytes(), caller));
        self
    }

    /// Reads a table: one credential per line, `credential tenant [name]`, separated by
    /// whitespace; blank lines and lines starting with `#` are skipped. The name defaults to
    /// the tenant. A credential given twice is refused (it would be ambiguous).
    pub fn parse(text: &str) -> Result<Tokens, Error> {
        let mut tokens = Tokens::new();
        let mut seen: HashMap<&str, usize> = HashMap::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut parts = line.split_whitespace();
            let (Some(credential), Some(tenant)) = (parts.next(), parts.next()) else {
                return Err(Error::Tokens {
                    line: n + 1,
                    reason: "expected `credential tenant [name]`".into(),
                });
            };
            let name = parts.next().unwrap_or(tenant);
            if parts.next().is_some() {
                return Err(Error::Tokens {
                    line: n + 1,
                    reason: "more than three fields".into(),
                });
            }
            if let Some(first) = seen.insert(credential, n + 1) {
                return Err(Error::Tokens {
                    line: n + 1,
                    reason: format!("the credential of line {first} again"),
                });
            }
            tokens = tokens.with(credential, Caller::new(name, tenant));
        }
        Ok(tokens)
    }

    /// How many credentials the table holds.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the table holds none.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn find(&self, presented: &[u8]) -> Option<&Caller> {
        // Every entry is compared, so the time taken says nothing about which one matched.
        let mut found = None;
        for (credential, caller) in &self.entries {
            if constant_time_eq(credential, presented) && found.is_none() {
                found = Some(caller);
            }
        }
        found
    }
}

impl Authorizer for Tokens {
    fn authorize(&self, headers: &HeaderMap) -> Result<Caller, Refusal> {
        let presented = presented_credential(headers).ok_or_else(|| {
            Refusal::new("missing credentials: send Authorization: Bearer or Basic")
        })?;
        self.find(&presented)
            .cloned()
            .ok_or_else(|| Refusal::new("unknown credentials"))
    }
}

/// The credential a request presents, in the schemes [`Tokens`] reads.
fn presented_credential(headers: &HeaderMap) -> Option<Vec<u8>> {
    if let Some(value) = headers.get(http::header::AUTHORIZATION) {
        let value = value.to_str().ok()?.trim();
        let (scheme, rest) = value.split_once(' ')?;
        let rest = rest.trim();
        return if scheme.eq_ignore_ascii_case("bearer") {
            Some(rest.as_bytes().to_vec())
        } else if scheme.eq_ignore_ascii_case("basic") {
            base64::engine::general_purpose::STANDARD.decode(rest).ok()
        } else {
            None
        };
    }
    let user = headers.get("username")?.as_bytes();
    let secret = headers.get("secret")?.as_bytes();
    Some([user, b":", secret].concat())
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, value.parse().unwrap());
        }
        map
    }

    #[test]
    fn bearer_basic_and_autotask_headers_present_credentials() {
        let tokens =
            Tokens::parse("tok-a a\ntje0:Tje0 so-tenant\nuser:secret at-tenant api\n").unwrap();
        let tenant = |h: &HeaderMap| tokens.authorize(h).map(|c| c.tenant);
        assert_eq!(
            tenant(&headers(&[("authorization", "Bearer tok-a")])),
            Ok("a".into())
        );
        assert_eq!(
            tenant(&headers(&[("authorization", "Basic dGplMDpUamUw")])),
            Ok("so-tenant".into())
        );
        assert_eq!(
            tenant(&headers(&[("username", "user"), ("secret", "secret")])),
            Ok("at-tenant".into())
        );
        assert!(tenant(&headers(&[("authorization", "Bearer tok-b")])).is_err());
        assert!(tenant(&headers(&[("authorization", "Digest x")])).is_err());
        assert!(tenant(&headers(&[])).is_err());
    }

    #[test]
    fn bad_tables_name_the_line() {
        assert_eq!(
            Tokens::parse("# c\nonly-one\n").unwrap_err().to_string(),
            "tokens line 2: expected `credential tenant [name]`"
        );
        assert!(Tokens::parse("a t\na u\n").is_err());
        assert!(Tokens::parse("a t n extra\n").is_err());
        assert_eq!(Tokens::parse("\n# none\n").unwrap().len(), 0);
    }

    #[test]
    fn debug_shows_no_credential() {
        let tokens = Tokens::new().with("hunter2", Caller::new("ops", "acme"));
        assert!(!format!("{tokens:?}").contains("hunter2"));
    }
}
