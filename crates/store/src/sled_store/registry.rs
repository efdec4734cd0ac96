//! The subscription registry on sled: subscriptions as versioned JSON in the `subs` tree, with
//! the id counter and the per-subscription sequence numbers beside them.

use callout_core::{Profile, Subscription};
use sled::Batch;

use crate::backend::Registry;
use crate::error::StoreError;
use crate::model::SubscriptionFilter;

use super::codec;
use super::keys::part;
use super::keys::{key, NEXT_SUB, SEQUENCE, SUB};
use super::{OrStoreError, SledStore};

impl Registry for SledStore {
    fn create_subscription(
        &self,
        mut sub: Subscription,
        now_ms: u64,
    ) -> Result<Subscription, StoreError> {
        let _pass = self.pass()?;
        sub.validate()?;
        let _book = self.book()?;
        let id = self.subs().get(NEXT_SUB).db()?.map_or(1, |v| part(&v, 0));
        sub.id = id;
        if sub.guid.is_empty() {
            sub.guid = uuid::Uuid::new_v4().to_string();
        }
        sub.created_at = Some(now_ms);
        sub.updated_at = Some(now_ms);
        let mut batch = Batch::default();
        batch.insert(key(SUB, &[id]), codec::encode_json(&sub));
        batch.insert(NEXT_SUB, &(id + 1).to_be_bytes());
        self.subs().apply_batch(batch).db()?;
        self.flush_files()?;
        Ok(sub)
    }

    fn get_subscription(&self, id: u64) -> Result<Option<Subscription>, StoreError> {
        let _pass = self.pass()?;
        let k = key(SUB, &[id]);
        self.subs()
            .get(&k)
            .db()?
            .map(|v| codec::decode_json(&k, &v))
            .transpose()
    }

    fn update_subscription(
        &self,
        mut sub: Subscription,
        now_ms: u64,
    ) -> Result<Subscription, StoreError> {
        let _pass = self.pass()?;
        sub.validate()?;
        let _book = self.book()?;
        let old = self
            .get_subscription(sub.id)?
            .ok_or(StoreError::UnknownSubscription(sub.id))?;
        sub.guid = old.guid;
        sub.created_at = old.created_at;
        sub.created_by = old.created_by;
        sub.updated_at = Some(now_ms);
        self.subs()
            .insert(key(SUB, &[sub.id]), codec::encode_json(&sub))
            .db()?;
        self.flush_files()?;
        Ok(sub)
    }

    fn delete_subscription(&self, id: u64) -> Result<Option<Subscription>, StoreError> {
        let _pass = self.pass()?;
        let _book = self.book()?;
        let k = key(SUB, &[id]);
        let old = self.subs().remove(&k).db()?;
        self.forget_tallies(id)?;
        self.flush_files()?;
        old.map(|v| codec::decode_json(&k, &v)).transpose()
    }

    fn list_subscriptions(
        &self,
        filter: &SubscriptionFilter,
    ) -> Result<Vec<Subscription>, StoreError> {
        let _pass = self.pass()?;
        let mut out = Vec::new();
        for item in self.subs().scan_prefix([SUB]) {
            let (k, v) = item.db()?;
            let sub: Subscription = match codec::decode_json(&k, &v) {
                Ok(sub) => sub,
                Err(error) => {
                    tracing::error!(%error, "corrupt subscription moved aside");
                    self.files().corrupt.insert(&k, &v).db()?;
                    self.subs().remove(&k).db()?;
                    continue;
                }
            };
            if filter.selects(&sub) {
                out.push(sub);
            }
        }
        Ok(out)
    }

    fn reserve_sequence(&self, sub: u64, count: u64) -> Result<u64, StoreError> {
        let _pass = self.pass()?;
        let _book = self.book()?;
        let k = key(SEQUENCE, &[sub]);
        let first = self.subs().get(&k).db()?.map_or(1, |v| part(&v, 0));
        self.subs()
            .insert(k, &first.saturating_add(count).to_be_bytes())
            .db()?;
        Ok(first)
    }
}

impl SledStore {
    /// Stores of layout 3 and older wrote every subscription's `chunk_size`, 100 when it was
    /// left alone, and then batched `standard` deliveries by default. Standard Webhooks sends
    /// one event per message, so a `standard` subscription stored with 100 is taken for one
    /// that never chose (the two cannot be told apart) and goes back to the default.
    pub(super) fn forget_old_chunk_default(&self) -> Result<(), StoreError> {
        let mut batch = Batch::default();
        for item in self.subs().scan_prefix([SUB]) {
            let (k, v) = item.db()?;
            let Ok(mut sub) = codec::decode_json::<Subscription>(&k, &v) else {
                continue;
            };
            if sub.profile == Profile::Standard && sub.chunk_size == Some(100) {
                sub.chunk_size = None;
                batch.insert(k, codec::encode_json(&sub));
            }
        }
        self.subs().apply_batch(batch).db()?;
        self.flush_files()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sled_store::keys::FORMAT_KEY;
    use crate::sled_store::test_support::*;

    #[test]
    fn a_layout_3_standard_subscription_with_the_old_default_goes_back_to_one_per_message() {
        let dir = tempfile::tempdir().unwrap();
        let stored = |id: u64, profile: Profile, chunk_size: Option<u32>| Subscription {
            id,
            profile,
            chunk_size,
            ..Subscription::new("https://r.example/hooks").events(["*"])
        };
        {
            // What a layout-3 build left: every subscription with its chunk_size written.
            let db = sled::open(dir.path()).unwrap();
            db.open_tree("meta")
                .unwrap()
                .insert(FORMAT_KEY, &[3u8])
                .unwrap();
            let subs = db.open_tree("subs").unwrap();
            for sub in [
                stored(1, Profile::Standard, Some(100)),
                stored(2, Profile::Pipeliner, Some(100)),
                stored(3, Profile::Standard, Some(10)),
            ] {
                subs.insert(key(SUB, &[sub.id]), codec::encode_json(&sub))
                    .unwrap();
            }
            subs.insert(NEXT_SUB, &4u64.to_be_bytes()).unwrap();
            db.flush().unwrap();
        }
        let store = open_after_raw_sled(dir.path());
        let chunk = |id| store.get_subscription(id).unwrap().unwrap().chunk_size;
        assert_eq!(chunk(1), None, "the old default: one event per message now");
        assert_eq!(chunk(2), Some(100), "Pipeliner's own default stays");
        assert_eq!(chunk(3), Some(10), "a size that was chosen stays");
        drop(store);
        // Once moved, a later open leaves a chosen 100 alone.
        let store = open_after_raw_sled(dir.path());
        let chosen = store
            .update_subscription(stored(1, Profile::Standard, Some(100)), 5)
            .unwrap();
        assert_eq!(chosen.chunk_size, Some(100));
        drop(store);
        let store = open_after_raw_sled(dir.path());
        assert_eq!(
            store.get_subscription(1).unwrap().unwrap().chunk_size,
            Some(100)
        );
    }
}
