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
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    // The last `@`: a password with a raw `@` in it is still all hidden.
    let at = start + authority.rfind('@')?;
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
}
