//! How a PostgreSQL store is opened: the server's URL, the schema everything lives in, the
//! lease and retention times, and the number of connections.

use std::time::Duration;

use callout_store::StoreError;

/// How a [`PgStore`](crate::PgStore) is opened. `PgConfig::new(url)` (or a `&str` where a
/// config is taken) gives the defaults.
///
/// The URL is a libpq-style `postgres://user:password@host:port/database`; a `schema=NAME`
/// query parameter names the schema (default `callout`), and is taken out of the URL before it
/// reaches the client.
///
/// ```
/// use std::time::Duration;
/// use callout_postgres::PgConfig;
/// let config = PgConfig::new("postgres://app:secret@127.0.0.1:5432/app?schema=hooks");
/// assert_eq!(config.schema, "hooks");
/// assert!(!format!("{config:?}").contains("secret"));
/// // A lease shorter than a request may take is refused.
/// assert!(config.check_request_timeout(Duration::from_secs(600)).is_err());
/// assert!(config.check_request_timeout(Duration::from_secs(60)).is_ok());
/// ```
#[derive(Clone)]
pub struct PgConfig {
    url: String,
    /// The schema every table lives in, created if absent. Letters, digits and `_`, not
    /// starting with a digit, at most 63 bytes.
    pub schema: String,
    /// How long a leased delivery may stay in flight before any instance may lease it again
    /// (default 5 minutes). Must be longer than a request may take:
    /// [`PgConfig::check_request_timeout`].
    pub lease: Duration,
    /// How long a host-supplied event id is remembered for de-duplication (default 1 day).
    pub dedup_retention: Duration,
    /// How many host-supplied event ids are remembered, at most (default 1,000,000): past it,
    /// [`History::prune`](callout_store::History::prune) forgets the oldest early, whatever
    /// their age, and a repeat of one forgotten is published again. Prune counts the table's
    /// rows to know, at most once a minute (of the clock it is given), so the table may pass
    /// the bound by what a minute remembers.
    pub dedup_kept: u64,
    /// How long an attempt is kept after it was made (default 30 days).
    pub attempt_retention: Duration,
    /// How many attempts are kept per subscription, at most (default 10,000, as on sled):
    /// past it, [`History::prune`](callout_store::History::prune) deletes a subscription's
    /// oldest early, whatever their age. Each subscription's row counts its own, so a prune
    /// reads one row per subscription, not the attempts.
    pub attempts_kept: u64,
    /// Connections (each on its own thread) for leases, settles and reads; enqueues have one
    /// more of their own. Default 4.
    pub pool_size: usize,
    /// How long a call waits for a lost connection to come back before it fails (default
    /// 5 s); the connection threads retry with backoff within it.
    pub reconnect_within: Duration,
}

impl PgConfig {
    /// The defaults, on the server at `url` (see the type's docs for `?schema=`).
    pub fn new(url: impl Into<String>) -> PgConfig {
        let (url, schema) = split_schema(&url.into());
        PgConfig {
            url,
            schema: schema.unwrap_or_else(|| "callout".to_string()),
            lease: Duration::from_secs(300),
            dedup_retention: Duration::from_secs(86_400),
            dedup_kept: 1_000_000,
            attempt_retention: Duration::from_secs(30 * 86_400),
            attempts_kept: 10_000,
            pool_size: 4,
            reconnect_within: Duration::from_secs(5),
        }
    }

    /// The server's URL, without the `schema` parameter.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Refuses a lease no longer than `request_timeout`, the longest a request may take: its
    /// delivery would be leased again, maybe by another instance, and sent twice (the cause
    /// of duplicate sends elsewhere). The engine checks this when it opens on the store.
    pub fn check_request_timeout(&self, request_timeout: Duration) -> Result<(), StoreError> {
        if self.lease <= request_timeout {
            return Err(StoreError::LeaseTooShort {
                lease: self.lease,
                request: request_timeout,
            });
        }
        Ok(())
    }

    /// The schema name, checked: it is put in SQL as an identifier.
    pub(crate) fn checked_schema(&self) -> Result<&str, StoreError> {
        let name = self.schema.as_str();
        let valid = !name.is_empty()
            && name.len() <= 63
            && !name.starts_with(|c: char| c.is_ascii_digit())
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if !valid {
            return Err(StoreError::Storage(format!(
                "invalid schema name {name:?}: use lowercase letters, digits and _ (at most 63 \
                 bytes, not starting with a digit)"
            )));
        }
        Ok(name)
    }
}

impl std::fmt::Debug for PgConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgConfig")
            .field("url", &callout_core::redact_url(&self.url))
            .field("schema", &self.schema)
            .field("lease", &self.lease)
            .field("dedup_retention", &self.dedup_retention)
            .field("dedup_kept", &self.dedup_kept)
            .field("attempt_retention", &self.attempt_retention)
            .field("attempts_kept", &self.attempts_kept)
            .field("pool_size", &self.pool_size)
            .field("reconnect_within", &self.reconnect_within)
            .finish()
    }
}

impl From<&str> for PgConfig {
    fn from(url: &str) -> PgConfig {
        PgConfig::new(url)
    }
}

impl From<String> for PgConfig {
    fn from(url: String) -> PgConfig {
        PgConfig::new(url)
    }
}

/// Whether `store` names a PostgreSQL server (`postgres://` or `postgresql://`) rather than a
/// directory.
///
/// ```
/// assert!(callout_postgres::is_postgres_url("postgresql://localhost/app"));
/// assert!(!callout_postgres::is_postgres_url("./callout-data"));
/// ```
pub fn is_postgres_url(store: &str) -> bool {
    store.starts_with("postgres://") || store.starts_with("postgresql://")
}

/// The URL without its `schema=` query parameter, and the schema it named.
fn split_schema(url: &str) -> (String, Option<String>) {
    let Some((base, query)) = url.split_once('?') else {
        return (url.to_string(), None);
    };
    let mut schema = None;
    let rest: Vec<&str> = query
        .split('&')
        .filter(|pair| match pair.strip_prefix("schema=") {
            Some(name) => {
                schema = Some(name.to_string());
                false
            }
            None => !pair.is_empty(),
        })
        .collect();
    let url = if rest.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", rest.join("&"))
    };
    (url, schema)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schema_parameter_is_taken_out_of_the_url() {
        let config = PgConfig::new("postgres://u@h:1/db?sslmode=disable&schema=tenant_7");
        assert_eq!(config.url(), "postgres://u@h:1/db?sslmode=disable");
        assert_eq!(config.schema, "tenant_7");
        assert_eq!(PgConfig::new("postgres://u@h/db").schema, "callout");
        assert_eq!(
            PgConfig::new("postgres://u@h/db?schema=x").url(),
            "postgres://u@h/db"
        );
    }

    #[test]
    fn schema_names_that_are_not_plain_identifiers_are_refused() {
        for bad in ["", "Hooks", "a\"b", "1st", "a;drop", &"x".repeat(64)] {
            let mut config = PgConfig::new("postgres://u@h/db");
            config.schema = bad.to_string();
            assert!(config.checked_schema().is_err(), "{bad:?}");
        }
        let mut config = PgConfig::new("postgres://u@h/db");
        config.schema = "callout_test_01".into();
        assert!(config.checked_schema().is_ok());
    }
}
