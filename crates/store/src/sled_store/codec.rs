//! Record encoding: the one place that knows bincode and the record format version.
//!
//! Every record starts with a format version byte so the encoding can change later. Keys are
//! `keys.rs`'s.

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::StoreError;

/// The record format this build writes and reads.
pub(super) const FORMAT: u8 = 1;

pub(super) fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    let mut out = Vec::new();
    encode_into(value, &mut out);
    out
}

/// Appends the record of `value` to `out`.
pub(super) fn encode_into<T: Serialize>(value: &T, out: &mut Vec<u8>) {
    out.push(FORMAT);
    // Encoding our own plain structs into a Vec cannot fail.
    let _ = bincode::serde::encode_into_std_write(value, out, bincode::config::standard());
}

pub(super) fn decode<T: DeserializeOwned>(key: &[u8], bytes: &[u8]) -> Result<T, StoreError> {
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

pub(super) fn encode_json<T: Serialize>(value: &T) -> Vec<u8> {
    let mut out = vec![FORMAT];
    // Serialising our own types to JSON cannot fail (string keys only).
    if let Ok(bytes) = serde_json::to_vec(value) {
        out.extend(bytes);
    }
    out
}

pub(super) fn decode_json<T: DeserializeOwned>(key: &[u8], bytes: &[u8]) -> Result<T, StoreError> {
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

pub(super) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn a_delivery_body_encodes_as_it_did_when_it_was_a_sequence_of_bytes() {
        use crate::model::{Delivery, DeliveryState};
        // The record as written before the body was a byte string: field for field the same.
        #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
        struct Before {
            id: u64,
            subscription_id: u64,
            event_ids: Vec<String>,
            event_type: String,
            body: Vec<u8>,
            attempts: u32,
            due_at: u64,
            created_at: u64,
            ordered: bool,
            state: DeliveryState,
        }
        // 300 bytes: a length past bincode's one-byte varint, and bytes past 127.
        let body: Vec<u8> = (0..300u16).map(|n| (n * 7 % 256) as u8).collect();
        let now = Delivery {
            id: 7,
            subscription_id: 3,
            event_ids: vec!["evt_1".into()],
            event_type: "contact.updated".into(),
            body: body.clone(),
            attempts: 2,
            due_at: 1_700_000_000_000,
            created_at: 1_699_999_999_000,
            ordered: true,
            state: DeliveryState::InFlight { until: 9 },
        };
        let before = Before {
            id: 7,
            subscription_id: 3,
            event_ids: vec!["evt_1".into()],
            event_type: "contact.updated".into(),
            body,
            attempts: 2,
            due_at: 1_700_000_000_000,
            created_at: 1_699_999_999_000,
            ordered: true,
            state: DeliveryState::InFlight { until: 9 },
        };
        let bytes = encode(&now);
        assert_eq!(bytes, encode(&before), "stored records keep their bytes");
        assert_eq!(decode::<Delivery>(b"k", &bytes).unwrap(), now);
        assert_eq!(decode::<Before>(b"k", &bytes).unwrap(), before);
    }
}
