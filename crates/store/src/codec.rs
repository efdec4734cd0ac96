//! Record encoding: one place that knows bincode, keys and the format version.
//!
//! Every record starts with a format version byte so the encoding can change later; keys that
//! must sort are big-endian integers (bincode's varints do not sort).

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::StoreError;

/// The record format this build writes and reads.
pub(crate) const FORMAT: u8 = 1;

pub(crate) fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    let mut out = vec![FORMAT];
    // Encoding our own plain structs into a Vec cannot fail.
    if let Ok(bytes) = bincode::serde::encode_to_vec(value, bincode::config::standard()) {
        out.extend(bytes);
    }
    out
}

pub(crate) fn decode<T: DeserializeOwned>(key: &[u8], bytes: &[u8]) -> Result<T, StoreError> {
    let corrupt = |reason: String| StoreError::Corrupt {
        key: hex(key),
        reason,
    };
    match bytes.split_first() {
        Some((&FORMAT, rest)) => {
            bincode::serde::decode_from_slice(rest, bincode::config::standard())
                .map(|(value, _)| value)
                .map_err(|e| corrupt(e.to_string()))
        }
        Some((version, _)) => Err(corrupt(format!("unknown record version {version}"))),
        None => Err(corrupt("empty record".into())),
    }
}

pub(crate) fn encode_json<T: Serialize>(value: &T) -> Vec<u8> {
    let mut out = vec![FORMAT];
    // Serialising our own types to JSON cannot fail (string keys only).
    if let Ok(bytes) = serde_json::to_vec(value) {
        out.extend(bytes);
    }
    out
}

pub(crate) fn decode_json<T: DeserializeOwned>(key: &[u8], bytes: &[u8]) -> Result<T, StoreError> {
    let corrupt = |reason: String| StoreError::Corrupt {
        key: hex(key),
        reason,
    };
    match bytes.split_first() {
        Some((&FORMAT, rest)) => serde_json::from_slice(rest).map_err(|e| corrupt(e.to_string())),
        Some((version, _)) => Err(corrupt(format!("unknown record version {version}"))),
        None => Err(corrupt("empty record".into())),
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A key: a one-byte keyspace tag followed by big-endian parts.
pub(crate) fn key(tag: u8, parts: &[u64]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + parts.len() * 8);
    out.push(tag);
    for part in parts {
        out.extend_from_slice(&part.to_be_bytes());
    }
    out
}

/// The big-endian u64 at `offset` of a key.
pub(crate) fn part(key: &[u8], offset: usize) -> u64 {
    key.get(offset..offset + 8)
        .and_then(|b| b.try_into().ok())
        .map_or(0, u64::from_be_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_sort_by_their_big_endian_parts() {
        let mut keys = [
            key(b'q', &[256, 1]),
            key(b'q', &[1, 9]),
            key(b'q', &[255, 0]),
        ];
        keys.sort();
        let parts: Vec<u64> = keys.iter().map(|k| part(k, 1)).collect();
        assert_eq!(parts, [1, 255, 256]);
    }

    #[test]
    fn records_round_trip_and_unknown_versions_are_corrupt() {
        let bytes = encode(&(42u64, "x".to_string()));
        assert_eq!(bytes[0], FORMAT);
        let back: (u64, String) = decode(b"k", &bytes).unwrap();
        assert_eq!(back, (42, "x".to_string()));
        let mut newer = bytes.clone();
        newer[0] = FORMAT + 1;
        let error = decode::<(u64, String)>(b"k", &newer).unwrap_err();
        assert!(
            error.to_string().contains("6b"),
            "names the key in hex: {error}"
        );
        assert!(decode::<(u64, String)>(b"k", &[]).is_err());
        assert!(decode_json::<serde_json::Value>(b"k", b"\x01{not json").is_err());
    }
}
