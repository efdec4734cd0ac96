//! `callout verify`: checks a received request's signature the way a receiver must, so the
//! developer of a receiver can see whether their capture, their secret or their code is off.

use std::io::Write;

use callout::deliver::sign::{self, pipeliner::Encoding, standard::Secret};
use callout::deliver::DeliverError;
use clap::ValueEnum;
use serde_json::{json, Value};

use crate::args::{EncodingArg, ProfileArg, VerifyArgs};
use crate::error::Failure;
use crate::input;
use crate::output;
use crate::store::Context;
use crate::time;

pub(crate) fn run(ctx: &Context, args: &VerifyArgs, out: &mut dyn Write) -> Result<(), Failure> {
    let mut headers = match &args.headers {
        Some(path) => {
            let text = String::from_utf8(input::read_bytes(path)?).map_err(|_| {
                Failure::usage(format_args!("{} is not UTF-8 text", path.display()))
            })?;
            parse_headers(&text)?
        }
        None => Vec::new(),
    };
    for line in &args.header {
        headers.push(header_line(line).ok_or_else(|| {
            Failure::usage(format_args!("--header {line:?}: expected `Name: value`"))
        })?);
    }
    let body = input::read_bytes(&args.body)?;
    let pairs: Vec<(&str, &str)> = headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    let profile = args
        .profile
        .to_possible_value()
        .map_or_else(String::new, |v| v.get_name().to_string());
    check(args, &pairs, &body).map_err(|e| {
        Failure::failed(format_args!("the {profile} signature does not verify: {e}"))
    })?;
    if ctx.json {
        return output::print_json(out, &json!({"valid": true, "profile": profile}));
    }
    writeln!(
        out,
        "ok: the {profile} signature matches the body and the secret"
    )?;
    Ok(())
}

fn check(args: &VerifyArgs, headers: &[(&str, &str)], body: &[u8]) -> Result<(), DeliverError> {
    let one = |name: &'static str| {
        headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| *v)
            .ok_or(DeliverError::MissingHeader { name })
    };
    match args.profile {
        ProfileArg::Standard => {
            let secret = Secret::parse(&args.secret)?;
            let timestamp = one(sign::standard::TIMESTAMP_HEADER)?;
            let now = match timestamp.trim().parse::<u64>() {
                // Verifying "as of" the request's own time turns the replay window off.
                Ok(sent) if args.ignore_timestamp => sent,
                _ => time::now_ms() / 1_000,
            };
            sign::standard::verify(&secret, headers, body, now)
        }
        ProfileArg::Autotask => {
            sign::autotask::verify(&args.secret, body, one(sign::autotask::HEADER)?)
        }
        ProfileArg::Superoffice => {
            sign::superoffice::verify(&args.secret, body, one(sign::superoffice::HEADER)?)
        }
        ProfileArg::Pipeliner => {
            let encoding = match args.encoding {
                EncodingArg::Hex => Encoding::Hex,
                EncodingArg::Base64 => Encoding::Base64,
            };
            sign::pipeliner::verify(&args.secret, body, one(sign::pipeliner::HEADER)?, encoding)
        }
    }
}

/// `Name: value` lines as a receiver logs them (a request line first and a body after a blank
/// line are skipped), or a JSON object of header names to values.
fn parse_headers(text: &str) -> Result<Vec<(String, String)>, Failure> {
    if text.trim_start().starts_with('{') {
        let object: serde_json::Map<String, Value> = serde_json::from_str(text)
            .map_err(|e| Failure::usage(format_args!("malformed headers JSON: {e}")))?;
        return object
            .into_iter()
            .map(|(name, value)| match value {
                Value::String(value) => Ok((name, value)),
                _ => Err(Failure::usage(format_args!(
                    "headers JSON: the value of {name:?} is not a string"
                ))),
            })
            .collect();
    }
    let mut headers = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            if headers.is_empty() {
                continue;
            }
            break;
        }
        if n == 0 && is_request_line(line) {
            continue;
        }
        let header = header_line(line).ok_or_else(|| {
            Failure::usage(format_args!(
                "headers line {}: expected `Name: value`",
                n + 1
            ))
        })?;
        headers.push(header);
    }
    Ok(headers)
}

fn is_request_line(line: &str) -> bool {
    line.split_whitespace()
        .last()
        .is_some_and(|last| last.starts_with("HTTP/"))
}

fn header_line(line: &str) -> Option<(String, String)> {
    let (name, value) = line.split_once(':')?;
    let name = name.trim();
    let valid = !name.is_empty() && !name.contains(char::is_whitespace);
    valid.then(|| (name.to_string(), value.trim().to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_from_a_request_dump() {
        let dump = "POST /hooks HTTP/1.1\r\nHost: 127.0.0.1\r\nwebhook-id: 5\r\n\r\nbody: not a header\r\n";
        assert_eq!(
            parse_headers(dump).unwrap(),
            vec![
                ("Host".to_string(), "127.0.0.1".to_string()),
                ("webhook-id".to_string(), "5".to_string())
            ]
        );
    }

    #[test]
    fn headers_from_json() {
        let headers = parse_headers(r#"{"X-Hook-Signature": "sha1=abc"}"#).unwrap();
        assert_eq!(
            headers,
            vec![("X-Hook-Signature".into(), "sha1=abc".into())]
        );
        assert!(parse_headers(r#"{"X-Hook-Signature": 1}"#).is_err());
    }

    #[test]
    fn a_line_without_a_colon_is_refused() {
        let failure = parse_headers("webhook-id 5\n").unwrap_err();
        assert_eq!(
            failure.message.as_deref(),
            Some("headers line 1: expected `Name: value`")
        );
    }
}
