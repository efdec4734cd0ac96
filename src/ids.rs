//! The ids the engine makes: event ids for events the host did not name, and message ids, the
//! id receivers deduplicate on. Both are random UUIDs, so they are unique across every store
//! and host, not only within one store; randomness is drawn once per call, not once per id.
//! Also the signing secrets it makes for subscriptions that have none, from the same source.

use std::time::{SystemTime, UNIX_EPOCH};

use callout_core::Profile;
use callout_deliver::sign::standard;

/// `count` new event ids: `evt_` and a random (version 4) UUID.
pub(crate) fn new_event_ids(count: usize) -> impl Iterator<Item = String> {
    random_blocks(count).map(|bytes| {
        format!(
            "evt_{}",
            uuid::Builder::from_random_bytes(bytes).into_uuid().simple()
        )
    })
}

/// `count` new message ids: `msg_` and a time-ordered (version 7) UUID of the wall clock, so
/// ids sort roughly by when they were made and never repeat across stores, hosts or a store
/// recreated from scratch (Standard Webhooks: `webhook-id` is unique across all messages).
pub(crate) fn new_message_ids(count: usize) -> impl Iterator<Item = String> {
    let millis = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    random_blocks(count).map(move |bytes| {
        let mut random = [0u8; 10];
        random.copy_from_slice(&bytes[..10]);
        let uuid = uuid::Builder::from_unix_timestamp_millis(millis, &random).into_uuid();
        format!("msg_{}", uuid.simple())
    })
}

/// One new message id (a test send, a probe).
pub(crate) fn new_message_id() -> String {
    new_message_ids(1).next().unwrap_or_default()
}

/// A new signing secret of the form `profile` signs with, from 32 random bytes: `whsec_` and
/// their base64 for Standard Webhooks, a random UUID for Pipeliner (its signature must be one),
/// and their 64 hex digits for Autotask (its `SecretKey` holds at most 64) and SuperOffice.
pub(crate) fn new_secret(profile: Profile) -> String {
    let mut bytes = [0u8; 32];
    for (half, block) in bytes.chunks_mut(16).zip(random_blocks(2)) {
        half.copy_from_slice(&block);
    }
    match profile {
        Profile::Standard => standard::Secret::from_bytes(bytes.to_vec())
            .map(|secret| secret.encoded())
            .unwrap_or_default(),
        Profile::Pipeliner => {
            let mut first = [0u8; 16];
            first.copy_from_slice(&bytes[..16]);
            uuid::Builder::from_random_bytes(first)
                .into_uuid()
                .hyphenated()
                .to_string()
        }
        Profile::Autotask | Profile::Superoffice => {
            bytes.iter().map(|b| format!("{b:02x}")).collect()
        }
    }
}

/// `count` blocks of 16 random bytes, from one call for OS randomness.
fn random_blocks(count: usize) -> impl Iterator<Item = [u8; 16]> {
    let mut random = vec![0u8; 16 * count];
    let drawn = getrandom::fill(&mut random).is_ok();
    (0..count).map(move |n| match random[16 * n..16 * n + 16].try_into() {
        Ok(bytes) if drawn => bytes,
        // As uuid does on its own (it panics if the OS has no randomness at all).
        _ => *uuid::Uuid::new_v4().as_bytes(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn generated_event_ids_are_distinct_random_v4_uuids() {
        let ids: Vec<String> = new_event_ids(500).chain(new_event_ids(500)).collect();
        assert_eq!(ids.len(), 1000);
        let distinct: HashSet<&String> = ids.iter().collect();
        assert_eq!(
            distinct.len(),
            ids.len(),
            "no id repeats, within or across calls"
        );
        for id in &ids {
            let hex = id.strip_prefix("evt_").expect("evt_ prefix");
            let uuid = uuid::Uuid::parse_str(hex).expect("a UUID");
            assert_eq!(uuid.get_version_num(), 4, "{id}");
            assert_eq!(uuid.get_variant(), uuid::Variant::RFC4122, "{id}");
        }
        assert_eq!(new_event_ids(0).count(), 0);
    }

    #[test]
    fn new_secrets_are_random_and_of_the_form_their_profile_signs_with() {
        let standard = new_secret(Profile::Standard);
        let key = standard::Secret::parse(&standard).expect("a whsec_ secret");
        assert!(
            standard.starts_with("whsec_") && key.can_sign(),
            "{standard}"
        );
        assert_eq!(standard.len(), "whsec_".len() + 44, "32 bytes: {standard}");
        assert_ne!(standard, new_secret(Profile::Standard));
        let pipeliner = new_secret(Profile::Pipeliner);
        let uuid = uuid::Uuid::parse_str(&pipeliner).expect("a UUID");
        assert_eq!((uuid.get_version_num(), pipeliner.len()), (4, 36));
        let autotask = new_secret(Profile::Autotask);
        assert_eq!(autotask.len(), 64);
        assert!(autotask.bytes().all(|b| b.is_ascii_hexdigit()));
        for profile in [
            Profile::Standard,
            Profile::Pipeliner,
            Profile::Autotask,
            Profile::Superoffice,
        ] {
            let sub = callout_core::Subscription::new("https://r.example/h")
                .events(["*"])
                .profile(profile)
                .secret(new_secret(profile));
            assert_eq!(sub.validate(), Ok(()), "{profile:?}");
        }
    }

    #[test]
    fn message_ids_are_distinct_v7_uuids_of_now_with_no_dot() {
        let before = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        let ids: Vec<String> = new_message_ids(500)
            .chain(new_message_ids(500))
            .chain([new_message_id()])
            .collect();
        let distinct: HashSet<&String> = ids.iter().collect();
        assert_eq!(
            distinct.len(),
            1001,
            "no id repeats, within or across calls"
        );
        for id in &ids {
            // Standard Webhooks signs `{id}.{timestamp}.{body}`: an id must not hold a dot.
            assert!(!id.contains('.'), "{id}");
            let uuid = uuid::Uuid::parse_str(id.strip_prefix("msg_").expect("msg_")).unwrap();
            assert_eq!(uuid.get_version_num(), 7, "{id}");
            let (secs, nanos) = uuid.get_timestamp().expect("a v7 timestamp").to_unix();
            let millis = secs * 1000 + u64::from(nanos) / 1_000_000;
            assert!(
                millis >= before && millis < before + 60_000,
                "{id}: {millis}"
            );
        }
    }
}
