//! Reading one HTTP/1.1 request off a stream, keeping its exact bytes.

use std::io::BufRead;

/// A request head longer than this is not one the tests send; the reader gives up on it.
const MAX_HEAD: usize = 64 * 1024;
/// Nor a body longer than this.
const MAX_BODY: usize = 16 * 1024 * 1024;

/// One request exactly as it arrived on the wire: head and Content-Length body, byte for byte.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawRequest {
    /// Which connection it came on, counted from 0 in accept order (0 from [`read_request`]).
    pub connection: usize,
    /// Its place on that connection, counted from 0 (0 from [`read_request`]).
    pub index: usize,
    /// The request line, headers, the empty line and the body.
    pub bytes: Vec<u8>,
    head_len: usize,
}

impl RawRequest {
    /// The request line and headers up to and including the empty line, as text.
    pub fn head(&self) -> String {
        String::from_utf8_lossy(&self.bytes[..self.head_len]).into_owned()
    }

    /// The body: the `Content-Length` bytes after the head.
    pub fn body(&self) -> &[u8] {
        &self.bytes[self.head_len..]
    }

    /// The method of the request line (`POST`).
    pub fn method(&self) -> String {
        self.request_line_part(0)
    }

    /// The target of the request line (`/hook?x=1`).
    pub fn path(&self) -> String {
        self.request_line_part(1)
    }

    fn request_line_part(&self, n: usize) -> String {
        self.head()
            .lines()
            .next()
            .and_then(|line| line.split(' ').nth(n))
            .unwrap_or_default()
            .to_string()
    }

    /// Every header as received, in order, names as spelt on the wire.
    pub fn headers(&self) -> Vec<(String, String)> {
        headers_of(&self.bytes[..self.head_len])
    }

    /// The first value of a header, its name compared case-insensitively.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers()
            .into_iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value)
    }
}

fn headers_of(head: &[u8]) -> Vec<(String, String)> {
    String::from_utf8_lossy(head)
        .split("\r\n")
        .skip(1)
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.to_string(), value.trim().to_string()))
        .collect()
}

/// Reads one HTTP/1.1 request with a Content-Length body (or none) from `reader`. None when
/// the stream ended, failed or timed out before a whole request, or the request is larger than
/// any test sends; the caller's read timeout bounds the wait.
pub fn read_request(reader: &mut impl BufRead) -> Option<RawRequest> {
    let mut bytes = Vec::new();
    let mut length = 0usize;
    loop {
        let start = bytes.len();
        match reader.read_until(b'\n', &mut bytes) {
            Ok(0) | Err(_) => return None,
            Ok(_) => {}
        }
        let line = &bytes[start..];
        if !line.ends_with(b"\n") || bytes.len() > MAX_HEAD {
            return None;
        }
        if line == b"\r\n" {
            break;
        }
        let text = String::from_utf8_lossy(line);
        if let Some((name, value)) = text.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().ok()?;
            }
        }
    }
    if length > MAX_BODY {
        return None;
    }
    let head_len = bytes.len();
    bytes.resize(head_len + length, 0);
    reader.read_exact(&mut bytes[head_len..]).ok()?;
    Some(RawRequest {
        connection: 0,
        index: 0,
        bytes,
        head_len,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_is_read_whole_and_the_next_one_is_left() {
        let wire = b"POST /hook?a=1 HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nX-Two: a\r\nx-two: b\r\n\r\n{}GET / HTTP/1.1\r\n\r\n";
        let mut reader = &wire[..];
        let first = read_request(&mut reader).unwrap();
        assert_eq!(first.method(), "POST");
        assert_eq!(first.path(), "/hook?a=1");
        assert_eq!(first.body(), b"{}");
        assert_eq!(first.header("x-TWO").as_deref(), Some("a"));
        assert_eq!(first.headers().len(), 4);
        assert!(first.head().ends_with("\r\n\r\n"));
        let second = read_request(&mut reader).unwrap();
        assert_eq!(second.method(), "GET");
        assert!(second.body().is_empty());
        assert!(read_request(&mut reader).is_none());
    }

    #[test]
    fn a_cut_request_is_none() {
        let mut head_only = &b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nab"[..];
        assert!(read_request(&mut head_only).is_none());
        let mut half_line = &b"POST / HTT"[..];
        assert!(read_request(&mut half_line).is_none());
    }
}
