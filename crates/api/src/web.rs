//! The small HTTP vocabulary the dialects share: a parsed request (path segments, query
//! parameters, body) and JSON, XML and empty responses.

use http::{header, HeaderMap, HeaderValue, Method, Response, StatusCode};
use serde::Serialize;
use serde_json::Value;

use crate::problem::Problem;

/// A request as a dialect sees it: authorized, its size checked, its path below the dialect's
/// prefix split into decoded segments.
pub(crate) struct Call<'a> {
    pub(crate) method: &'a Method,
    /// Path segments below the dialect's prefix, percent-decoded.
    pub(crate) segments: Vec<String>,
    query: Vec<(String, String)>,
    pub(crate) headers: &'a HeaderMap,
    pub(crate) body: &'a [u8],
}

impl<'a> Call<'a> {
    pub(crate) fn new(
        method: &'a Method,
        rest: &str,
        query: Option<&str>,
        headers: &'a HeaderMap,
        body: &'a [u8],
    ) -> Call<'a> {
        Call {
            method,
            segments: rest
                .split('/')
                .filter(|s| !s.is_empty())
                .map(percent_decode)
                .collect(),
            query: query.map(parse_query).unwrap_or_default(),
            headers,
            body,
        }
    }

    /// The segments as `&str`, for matching.
    pub(crate) fn path(&self) -> Vec<&str> {
        self.segments.iter().map(String::as_str).collect()
    }

    /// The last value of query parameter `name`.
    pub(crate) fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Like [`Call::param`], ignoring ASCII case in the name (the .NET vendors' habit).
    pub(crate) fn param_nocase(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .rev()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every query parameter name, for refusing unknown ones.
    pub(crate) fn param_names(&self) -> impl Iterator<Item = &str> {
        self.query.iter().map(|(k, _)| k.as_str())
    }

    /// The body as UTF-8 text.
    pub(crate) fn text(&self) -> Result<&'a str, Problem> {
        std::str::from_utf8(self.body).map_err(|_| Problem::malformed("the body is not UTF-8"))
    }

    /// The body as a JSON document.
    pub(crate) fn json(&self) -> Result<Value, Problem> {
        if self.body.iter().all(u8::is_ascii_whitespace) {
            return Err(Problem::malformed(
                "the body is empty; a JSON document is expected",
            ));
        }
        serde_json::from_slice(self.body)
            .map_err(|e| Problem::malformed(format!("the body is not valid JSON: {e}")))
    }
}

/// `a=1&b=x%20y` as decoded pairs (`+` is a space, as forms write it).
pub(crate) fn parse_query(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (
                percent_decode(&k.replace('+', " ")),
                percent_decode(&v.replace('+', " ")),
            )
        })
        .collect()
}

/// Decodes `%XX` escapes; a malformed escape stays as written, and bytes that do not form
/// UTF-8 are replaced, so decoding never fails.
pub(crate) fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = |b: u8| (b as char).to_digit(16);
            if let (Some(hi), Some(lo)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((hi * 16 + lo) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A JSON response.
pub(crate) fn json(status: StatusCode, body: &impl Serialize) -> Response<Vec<u8>> {
    let bytes = serde_json::to_vec(body).unwrap_or_else(|_| b"null".to_vec());
    with_body(status, "application/json; charset=utf-8", bytes)
}

/// An XML response (SOAP).
pub(crate) fn xml(status: StatusCode, body: String) -> Response<Vec<u8>> {
    with_body(status, "text/xml; charset=utf-8", body.into_bytes())
}

/// A response without a body.
pub(crate) fn empty(status: StatusCode) -> Response<Vec<u8>> {
    let mut response = Response::new(Vec::new());
    *response.status_mut() = status;
    response
}

fn with_body(status: StatusCode, content_type: &'static str, body: Vec<u8>) -> Response<Vec<u8>> {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_decode_and_bad_escapes_survive() {
        assert_eq!(
            parse_query("$select=name,state&a=x%20y+z&flag&bad=%zz%4"),
            [
                ("$select".to_string(), "name,state".to_string()),
                ("a".into(), "x y z".into()),
                ("flag".into(), "".into()),
                ("bad".into(), "%zz%4".into()),
            ]
        );
        assert_eq!(percent_decode("%E2%80%93%"), "\u{2013}%");
        assert_eq!(percent_decode("%ff"), "\u{fffd}");
    }
}
