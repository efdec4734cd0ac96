//! Keeping credentials out of output: the one place that knows where a URL carries a password.
//!
//! Signing secrets redact themselves ([`crate::Secret`]); the other credentials a subscription
//! holds are plain strings, a password in a URL's userinfo and any custom header value, so
//! everything that prints a URL or headers (Debug, errors, the CLI) goes through here.

use std::borrow::Cow;

/// What output shows in place of a URL password or a header value.
pub const REDACTED: &str = "***";

/// `url` with the password of its userinfo replaced by [`REDACTED`]; the user name, host and
/// the rest stay, so that the output still says where it points. A URL without a password is
/// returned as it is.
///
/// It works on any text, valid URL or not, since a rejected URL is echoed in its error: the
/// userinfo is what precedes the last `@` of the authority (after `scheme://`, or from the
/// start when there is no scheme and the text has no white space).
///
/// ```
/// use callout_core::redact_url;
///
/// assert_eq!(redact_url("https://ops:hunter2@receiver.example/h"), "https://ops:***@receiver.example/h");
/// assert_eq!(redact_url("https://receiver.example/h?a=b:c@d"), "https://receiver.example/h?a=b:c@d");
/// ```
pub fn redact_url(url: &str) -> Cow<'_, str> {
    match userinfo(url) {
        Some(UserInfo {
            password: Some((start, end)),
            ..
        }) if start < end => Cow::Owned(format!("{}{REDACTED}{}", &url[..start], &url[end..])),
        _ => Cow::Borrowed(url),
    }
}

/// `url` without its userinfo (user name and password): `https://ops:pw@host/h` becomes
/// `https://host/h`. What a subscription is named after until it is named.
pub(crate) fn without_userinfo(url: &str) -> Cow<'_, str> {
    match userinfo(url) {
        Some(info) => Cow::Owned(format!("{}{}", &url[..info.start], &url[info.at + 1..])),
        None => Cow::Borrowed(url),
    }
}

/// `text` with every double-quoted value replaced by [`REDACTED`]: serde's messages quote the
/// value they could not take, which may be a secret or a header's token.
pub(crate) fn without_quoted(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut parts = text.split('"');
    if let Some(first) = parts.next() {
        out.push_str(first);
    }
    for (n, part) in parts.enumerate() {
        out.push('"');
        out.push_str(if n % 2 == 0 { REDACTED } else { part });
    }
    out
}

/// Byte positions of a URL's userinfo.
struct UserInfo {
    /// Where the userinfo starts.
    start: usize,
    /// The password's range, when the userinfo has a `:`.
    password: Option<(usize, usize)>,
    /// The `@` that ends the userinfo.
    at: usize,
}

fn userinfo(url: &str) -> Option<UserInfo> {
    let start = match url.find("://") {
        Some(scheme_end) => scheme_end + 3,
        // Free text (a name, a message) is not a URL; a bare `user:pw@host` is.
        None if url.contains(char::is_whitespace) => return None,
        None => 0,
    };
    let rest = &url[start..];
    let cut = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..cut];
    // The last `@`: a password with a raw `@` in it is still all hidden.
    let at = match authority.rfind('@') {
        Some(at) => start + at,
        None => {
            // An invalid URL whose password holds a `/`, `?` or `#` (`user:pa/ss@host`): its
            // authority looks cut short, but a `:` not followed by a port starts a password,
            // which runs to the last `@` before any white space.
            let colon = authority.find(':')?;
            let port = &authority[colon + 1..];
            if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            let tail = &rest[cut..];
            let end = tail.find(char::is_whitespace).unwrap_or(tail.len());
            start + cut + tail[..end].rfind('@')?
        }
    };
    let password = url[start..at]
        .find(':')
        .map(|colon| (start + colon + 1, at));
    Some(UserInfo {
        start,
        password,
        at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_password_is_hidden_and_the_user_and_host_stay() {
        let cases = [
            ("https://user:hunter2@host/x", "https://user:***@host/x"),
            ("http://u:p@ss@host:8080", "http://u:***@host:8080"),
            ("user:hunter2@host/x", "user:***@host/x"),
            ("https://:hunter2@host", "https://:***@host"),
            ("https://user:@host", "https://user:@host"),
            ("https://user@host/x", "https://user@host/x"),
            ("https://host/x@y:z", "https://host/x@y:z"),
            ("https://host?q=a:b@c", "https://host?q=a:b@c"),
            ("not a url: a@b", "not a url: a@b"),
            ("https://admin:pa/ss@host/x", "https://admin:***@host/x"),
            ("https://admin:p?w#d@host", "https://admin:***@host"),
            ("https://admin:/pw@host", "https://admin:***@host"),
            ("https://host:8080/a@b", "https://host:8080/a@b"),
            ("", ""),
        ];
        for (url, shown) in cases {
            assert_eq!(redact_url(url), shown, "{url}");
        }
    }

    #[test]
    fn without_userinfo_drops_user_and_password() {
        assert_eq!(without_userinfo("https://u:pw@host/x"), "https://host/x");
        assert_eq!(without_userinfo("https://u@host"), "https://host");
        assert_eq!(without_userinfo("https://host/a@b"), "https://host/a@b");
    }

    #[test]
    fn quoted_values_are_hidden_and_the_rest_stays() {
        assert_eq!(
            without_quoted(r#"invalid type: string "whsec_abc", expected a sequence at line 1"#),
            r#"invalid type: string "***", expected a sequence at line 1"#
        );
        assert_eq!(
            without_quoted("missing field `events`"),
            "missing field `events`"
        );
        assert_eq!(without_quoted(r#"cut "open"#), r#"cut "***"#);
        let error = crate::Subscription::from_json(
            r#"{"target_url":"https://h.example/x","events":["*"],"secrets":"whsec_leak"}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(!error.contains("whsec_leak"), "{error}");
    }
}
