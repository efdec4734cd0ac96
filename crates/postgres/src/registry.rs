//! The subscription registry on PostgreSQL: subscriptions as JSON rows (their format can grow),
//! ids from a sequence (never reused), and the per-subscription sequence numbers.

use callout_core::Subscription;
use callout_store::{Change, ChangeHandler, Registry, StoreError, SubscriptionFilter};

use crate::changes::notify;

use crate::conn::{Fail, Tx};
use crate::rows::{corrupt, int, uint};
use crate::tallies::FORGET_TALLIES;
use crate::PgStore;

impl Registry for PgStore {
    fn create_subscription(
        &self,
        sub: Subscription,
        now_ms: u64,
    ) -> Result<Subscription, StoreError> {
        sub.validate()?;
        self.pool.run(move |conn| {
            conn.transact_durably(|tx| {
                let id: i64 = tx
                    .query_opt("SELECT nextval('subscription_ids')", &[])?
                    .map_or(0, |row| row.get(0));
                let mut sub = sub.clone();
                sub.id = uint(id);
                if sub.guid.is_empty() {
                    sub.guid = uuid::Uuid::new_v4().to_string();
                }
                sub.created_at = Some(now_ms);
                sub.updated_at = Some(now_ms);
                tx.execute(
                    "INSERT INTO subscriptions (id, record) VALUES ($1, $2)",
                    &[&id, &encode(&sub)?],
                )?;
                notify(tx, Change::Subscription(sub.id))?;
                Ok(sub)
            })
        })
    }

    fn get_subscription(&self, id: u64) -> Result<Option<Subscription>, StoreError> {
        let id = int(id);
        self.pool.run(move |conn| {
            conn.transact(|tx| {
                let Some(row) =
                    tx.query_opt("SELECT record FROM subscriptions WHERE id = $1", &[&id])?
                else {
                    return Ok(Ok(None));
                };
                match decode(&row.get::<_, String>(0)) {
                    Ok(sub) => Ok(Ok(Some(sub))),
                    // Moved aside (committed), and the caller told.
                    Err(reason) => {
                        move_aside(tx, id, &reason)?;
                        Ok(Err(corrupt(format!("subscriptions/{id}"), reason)))
                    }
                }
            })
        })?
    }

    fn update_subscription(
        &self,
        sub: Subscription,
        now_ms: u64,
    ) -> Result<Subscription, StoreError> {
        sub.validate()?;
        self.pool.run(move |conn| {
            conn.transact_durably(|tx| {
                let id = int(sub.id);
                let row = tx.query_opt(
                    "SELECT record FROM subscriptions WHERE id = $1 FOR UPDATE",
                    &[&id],
                )?;
                let old = row
                    .ok_or(Fail::Store(StoreError::UnknownSubscription(sub.id)))?
                    .get::<_, String>(0);
                let old = decode(&old).map_err(|reason| {
                    Fail::Store(corrupt(format!("subscriptions/{id}"), reason))
                })?;
                let mut sub = sub.clone();
                sub.guid = old.guid;
                sub.created_at = old.created_at;
                sub.created_by = old.created_by;
                sub.updated_at = Some(now_ms);
                tx.execute(
                    "UPDATE subscriptions SET record = $2 WHERE id = $1",
                    &[&id, &encode(&sub)?],
                )?;
                notify(tx, Change::Subscription(sub.id))?;
                Ok(sub)
            })
        })
    }

    fn delete_subscription(&self, id: u64) -> Result<Option<Subscription>, StoreError> {
        let id = int(id);
        self.pool.run(move |conn| {
            conn.transact_durably(|tx| {
                let row = tx.query_opt(
                    "DELETE FROM subscriptions WHERE id = $1 RETURNING record",
                    &[&id],
                )?;
                if row.is_some() {
                    for forget in FORGET_TALLIES {
                        tx.execute(forget, &[&id])?;
                    }
                    notify(tx, Change::Subscription(uint(id)))?;
                }
                // Gone either way; one that does not decode is returned as nothing.
                Ok(row.and_then(|row| decode(&row.get::<_, String>(0)).ok()))
            })
        })
    }

    fn list_subscriptions(
        &self,
        filter: &SubscriptionFilter,
    ) -> Result<Vec<Subscription>, StoreError> {
        let filter = filter.clone();
        self.pool.run(move |conn| {
            conn.transact(|tx| {
                let rows = tx.query("SELECT id, record FROM subscriptions ORDER BY id", &[])?;
                let mut out = Vec::new();
                for row in rows {
                    match decode(&row.get::<_, String>(1)) {
                        Ok(sub) if filter.selects(&sub) => out.push(sub),
                        Ok(_) => {}
                        Err(reason) => move_aside(tx, row.get(0), &reason)?,
                    }
                }
                Ok(out)
            })
        })
    }

    fn reserve_sequence(&self, sub: u64, count: u64) -> Result<u64, StoreError> {
        let (sub, count) = (int(sub), int(count));
        self.pool.run(move |conn| {
            conn.transact(|tx| {
                let row = tx.query_opt(
                    "INSERT INTO sequences (subscription, next) VALUES ($1, 1 + $2::int8) \
                     ON CONFLICT (subscription) DO UPDATE SET next = sequences.next + $2::int8 \
                     RETURNING next - $2::int8",
                    &[&sub, &count],
                )?;
                Ok(row.map_or(1, |row| uint(row.get(0))))
            })
        })
    }

    fn watch_changes(&self, on_change: ChangeHandler) -> Result<bool, StoreError> {
        self.changes.watch(on_change)?;
        Ok(true)
    }
}

fn encode(sub: &Subscription) -> Result<String, Fail> {
    serde_json::to_string(sub)
        .map_err(|e| Fail::Store(StoreError::Storage(format!("subscription {}: {e}", sub.id))))
}

fn decode(record: &str) -> Result<Subscription, String> {
    serde_json::from_str(record).map_err(|e| e.to_string())
}

/// Moves a subscription row that does not decode to `corrupt`, reported in the log.
fn move_aside(tx: &mut Tx<'_>, id: i64, reason: &str) -> Result<(), Fail> {
    let key = format!("subscriptions/{id}");
    tx.execute(
        "WITH gone AS (DELETE FROM subscriptions WHERE id = $1 RETURNING record) \
         INSERT INTO corrupt (key, reason, record) SELECT $2, $3, record FROM gone",
        &[&id, &key, &reason],
    )?;
    tracing::error!(
        subscription = id,
        reason,
        "corrupt subscription row moved aside"
    );
    Ok(())
}
