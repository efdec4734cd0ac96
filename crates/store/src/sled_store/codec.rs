//! Record encoding: the one place that knows bincode and the record format version.
//!
//! Every record starts with a format version byte so the encoding can change later. Keys are
//! `keys.rs`'s. Deliveries have their own version ([`DELIVERY_FORMAT`]), since they changed.

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::StoreError;
use crate::model::{Delivery, DeliveryState};

/// The record format this build writes and reads.
pub(super) const FORMAT: u8 = 1;

/// The format of delivery records: 2 carries the message id. Records of format 1 (before it)
/// still read; they get a message id derived from what they hold (`legacy_message_id`).
pub(super) const DELIVERY_FORMAT: u8 = 2;

/// A delivery record as format 1 wrote it: the same fields, without the message id.
#[derive(serde::Deserialize)]
struct DeliveryV1 {
    id: u64,
    subscription_id: u64,
    event_ids: Vec<String>,
    event_type: String,
    #[serde(with = "serde_bytes")]
    body: Vec<u8>,
    attempts: u32,
    due_at: u64,
    created_at: u64,
    ordered: bool,
    state: DeliveryState,
}

pub(super) fn encode_delivery(delivery: &Delivery) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + delivery.body.len());
    encode_delivery_into(delivery, &mut out);
    out
}

/// Appends the record of a delivery to `out`.
pub(super) fn encode_delivery_into(delivery: &Delivery, out: &mut Vec<u8>) {
    out.push(DELIVERY_FORMAT);
    let _ = bincode::serde::encode_into_std_write(delivery, out, bincode::config::standard());
}

pub(super) fn decode_delivery(key: &[u8], bytes: &[u8]) -> Result<Delivery, StoreError> {
    match bytes.split_first() {
        Some((&DELIVERY_FORMAT, rest)) => {
            bincode::serde::decode_from_slice(rest, bincode::config::standard())
                .map(|(value, _)| value)
                .map_err(|e| StoreError::Corrupt {
                    key: hex(key),
                    reason: e.to_string(),
                })
        }
        _ => decode::<DeliveryV1>(key, bytes).map(|v1| {
            let message_id = legacy_message_id(&v1);
            Delivery {
                id: v1.id,
                subscription_id: v1.subscription_id,
                event_ids: v1.event_ids,
                event_type: v1.event_type,
                body: v1.body,
                attempts: v1.attempts,
                due_at: v1.due_at,
                created_at: v1.created_at,
                ordered: v1.ordered,
                state: v1.state,
                message_id,
                order_key: None,
            }
        }),
    }
}

/// The message id of a delivery stored before deliveries had one: a name-based UUID of its
/// id, creation time, subscription and body, so it stays the same on every read (and every
/// attempt), and two stores' deliveries share one only if all four are equal.
fn legacy_message_id(v1: &DeliveryV1) -> String {
    let mut name = Vec::with_capacity(24 + v1.body.len());
    name.extend_from_slice(&v1.id.to_be_bytes());
    name.extend_from_slice(&v1.created_at.to_be_bytes());
    name.extend_from_slice(&v1.subscription_id.to_be_bytes());
    name.extend_from_slice(&v1.body);
    let uuid = uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, &name);
    format!("msg_{}", uuid.simple())
}

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
    fn deliveries_of_format_1_still_read_with_a_stable_message_id() {
        // The record as format 1 wrote it (the body then a sequence of bytes, which bincode
        // writes as the same bytes as a byte string): field for field, no message id.
        #[derive(serde::Serialize)]
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
        let before = |id: u64| Before {
            id,
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
        let old = encode(&before(7));
        assert_eq!(old[0], 1, "format 1");
        let read = decode_delivery(b"k", &old).unwrap();
        assert_eq!(
            (read.id, read.body.as_slice(), read.attempts),
            (7, &body[..], 2)
        );
        assert_eq!(read.state, DeliveryState::InFlight { until: 9 });
        assert!(read.message_id.starts_with("msg_") && read.message_id.len() == 36);
        assert_eq!(
            decode_delivery(b"k", &old).unwrap().message_id,
            read.message_id,
            "the same on every read"
        );
        let other = decode_delivery(b"k", &encode(&before(8))).unwrap();
        assert_ne!(other.message_id, read.message_id);

        // Written again, it is format 2 and keeps the id it was given.
        let again = encode_delivery(&read);
        assert_eq!(again[0], DELIVERY_FORMAT);
        assert_eq!(decode_delivery(b"k", &again).unwrap(), read);
        assert!(decode_delivery(b"k", &again[..again.len() - 3]).is_err());
        let mut newer = again.clone();
        newer[0] = DELIVERY_FORMAT + 1;
        assert!(decode_delivery(b"k", &newer).is_err());
    }
}
