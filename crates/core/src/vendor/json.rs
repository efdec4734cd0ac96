//! A small JSON writer for wire bodies: keys in the order the vendor sends them, and strings
//! escaped the way the vendor's own sender escapes them (serde_json can do neither).

use serde_json::{Map, Value};

/// How strings are escaped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Escape {
    /// .NET's default `JavaScriptEncoder` (Autotask): HTML-sensitive ASCII and every non-ASCII
    /// UTF-16 unit as `\uXXXX` with uppercase hex.
    DotNet,
    /// Only what JSON requires, as serde_json writes it (SuperOffice, Pipeliner).
    Minimal,
}

/// A JSON value whose objects keep the order they were built in.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum J {
    Null,
    Bool(bool),
    Str(String),
    /// A number, already in its JSON text form.
    Num(String),
    Arr(Vec<J>),
    Obj(Vec<(String, J)>),
    /// Any JSON value; its objects are written in the map's own order.
    Value(Value),
}

impl J {
    pub(crate) fn str(text: impl Into<String>) -> J {
        J::Str(text.into())
    }

    pub(crate) fn int(n: u64) -> J {
        J::Num(n.to_string())
    }

    /// An id as the host gave it: a JSON integer when it is a plain decimal number that
    /// survives the round trip (`"351182"`, not `"007"`), a string otherwise.
    pub(crate) fn id(id: &str) -> J {
        match id.parse::<i64>() {
            Ok(n) if n.to_string() == id => J::Num(id.to_string()),
            _ => J::Str(id.to_string()),
        }
    }

    pub(crate) fn opt_str(text: Option<&str>) -> J {
        text.map_or(J::Null, J::str)
    }

    pub(crate) fn to_bytes(&self, escape: Escape) -> Vec<u8> {
        let mut out = Vec::with_capacity(256);
        write(&mut out, self, escape);
        out
    }
}

fn write(out: &mut Vec<u8>, value: &J, escape: Escape) {
    match value {
        J::Null => out.extend_from_slice(b"null"),
        J::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        J::Str(s) => write_str(out, s, escape),
        J::Num(n) => out.extend_from_slice(n.as_bytes()),
        J::Arr(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write(out, item, escape);
            }
            out.push(b']');
        }
        J::Obj(entries) => {
            out.push(b'{');
            for (i, (key, item)) in entries.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_str(out, key, escape);
                out.push(b':');
                write(out, item, escape);
            }
            out.push(b'}');
        }
        J::Value(v) => write_value(out, v, escape),
    }
}

fn write_value(out: &mut Vec<u8>, value: &Value, escape: Escape) {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        Value::Number(n) => out.extend_from_slice(n.to_string().as_bytes()),
        Value::String(s) => write_str(out, s, escape),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(out, item, escape);
            }
            out.push(b']');
        }
        Value::Object(map) => write_map(out, map, escape),
    }
}

fn write_map(out: &mut Vec<u8>, map: &Map<String, Value>, escape: Escape) {
    out.push(b'{');
    for (i, (key, item)) in map.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_str(out, key, escape);
        out.push(b':');
        write_value(out, item, escape);
    }
    out.push(b'}');
}

pub(crate) fn write_str(out: &mut Vec<u8>, text: &str, escape: Escape) {
    match escape {
        Escape::Minimal => {
            // serde_json's own string escaping, so the two never disagree.
            out.extend_from_slice(Value::String(text.to_string()).to_string().as_bytes());
        }
        Escape::DotNet => write_dotnet_str(out, text),
    }
}

/// System.Text.Json with the default encoder: `\b \t \n \f \r \\` keep their short forms;
/// other control characters, `" & ' + < > `` ` `` and DEL, and every UTF-16 unit outside ASCII
/// (both halves of a surrogate pair) become `\uXXXX` in uppercase hex.
fn write_dotnet_str(out: &mut Vec<u8>, text: &str) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let unit = |out: &mut Vec<u8>, u: u16| {
        out.extend_from_slice(b"\\u");
        for shift in [12, 8, 4, 0] {
            out.push(HEX[usize::from((u >> shift) & 0xF)]);
        }
    };
    out.push(b'"');
    for c in text.chars() {
        match c {
            '\u{8}' => out.extend_from_slice(b"\\b"),
            '\t' => out.extend_from_slice(b"\\t"),
            '\n' => out.extend_from_slice(b"\\n"),
            '\u{c}' => out.extend_from_slice(b"\\f"),
            '\r' => out.extend_from_slice(b"\\r"),
            '\\' => out.extend_from_slice(b"\\\\"),
            '"' | '&' | '\'' | '+' | '<' | '>' | '`' => unit(out, c as u16),
            c if c.is_ascii() && !c.is_ascii_control() => out.push(c as u8),
            c => {
                let mut buf = [0u16; 2];
                for u in c.encode_utf16(&mut buf) {
                    unit(out, *u);
                }
            }
        }
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn dotnet(text: &str) -> String {
        String::from_utf8(J::str(text).to_bytes(Escape::DotNet)).unwrap()
    }

    #[test]
    fn dotnet_escapes_html_sensitive_and_non_ascii() {
        assert_eq!(
            dotnet("&<>'\"`+"),
            r#""\u0026\u003C\u003E\u0027\u0022\u0060\u002B""#
        );
        assert_eq!(dotnet("Café – ok"), r#""Caf\u00E9 \u2013 ok""#);
        assert_eq!(dotnet("😀"), r#""\uD83D\uDE00""#);
        assert_eq!(
            dotnet("a\nb\tc\r\u{8}\u{c}\u{1}\u{1f}\u{7f}\\/"),
            r#""a\nb\tc\r\b\f\u0001\u001F\u007F\\/""#
        );
    }

    #[test]
    fn minimal_matches_serde_json_and_keeps_order() {
        let j = J::Obj(vec![
            ("b".into(), J::str("é&\u{1}")),
            ("a".into(), J::id("007")),
            ("c".into(), J::id("42")),
            ("d".into(), J::Value(json!({"z": [1, null]}))),
        ]);
        assert_eq!(
            String::from_utf8(j.to_bytes(Escape::Minimal)).unwrap(),
            r#"{"b":"é&\u0001","a":"007","c":42,"d":{"z":[1,null]}}"#
        );
    }
}
