//! What the tests share: the test server's URL, a schema of their own for each test (random
//! name, dropped at the end), so tests run in parallel on one database, and a bounded wait.

use std::time::{Duration, Instant};

use callout_postgres::{PgConfig, PgStore};

/// The variable `scripts/with-postgres.sh` exports.
pub const SERVER: &str = "CALLOUT_TEST_POSTGRES";

/// The test server's URL; a test without one fails, saying how to get one.
pub fn server_url() -> String {
    std::env::var(SERVER).unwrap_or_else(|_| {
        panic!(
            "{SERVER} is not set: the PostgreSQL tests need a server. Run them under \
             scripts/with-postgres.sh (e.g. `scripts/with-postgres.sh cargo test -p \
             callout-postgres`), or set {SERVER} to a postgres:// URL of a database you can \
             create schemas in"
        )
    })
}

/// A schema of one test's own, dropped (with everything in it) when the test ends.
pub struct Schema {
    pub name: String,
}

impl Schema {
    pub fn new() -> Schema {
        let name = format!("callout_test_{}", uuid::Uuid::new_v4().simple());
        Schema { name }
    }

    /// A config for this schema on the test server, with leases of `lease`.
    pub fn config(&self, lease: Duration) -> PgConfig {
        let mut config = PgConfig::new(server_url());
        config.schema = self.name.clone();
        config.lease = lease;
        config
    }

    /// A store on this schema.
    pub fn open(&self, lease: Duration) -> PgStore {
        PgStore::open(self.config(lease)).expect("the store opens")
    }

    /// Runs SQL on the schema directly, as a person at psql would (to damage a row, say).
    pub fn sql(&self, sql: &str) {
        let mut client = client();
        client
            .batch_execute(&format!("SET search_path TO {}; {sql}", self.name))
            .expect("the SQL runs");
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        // On a thread of its own: a test may end inside a tokio runtime, where the postgres
        // client panics.
        let drop_schema = format!("DROP SCHEMA IF EXISTS {} CASCADE", self.name);
        let _ = std::thread::spawn(move || {
            if let Ok(mut client) = postgres::Client::connect(&server_url(), postgres::NoTls) {
                let _ = client.batch_execute(&drop_schema);
            }
        })
        .join();
    }
}

/// A plain client on the test server.
pub fn client() -> postgres::Client {
    postgres::Client::connect(&server_url(), postgres::NoTls).expect("the test server answers")
}

/// Waits until `done`, for at most `limit`, checking every 10 ms; whether it was done.
pub fn wait_until(limit: Duration, done: impl Fn() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    done()
}

/// A transaction of the test holding one subscription's `queue_state` row (or a remembered
/// event id's row), as a long hold or replay of another instance would; let go by [`RowHold::release`] (or when dropped).
pub struct RowHold {
    client: postgres::Client,
    pid: i32,
}

impl RowHold {
    /// Locks subscription `sub`'s row in `schema`.
    pub fn take(schema: &Schema, sub: i64) -> RowHold {
        RowHold::locking(
            schema,
            &format!("SELECT 1 FROM queue_state WHERE subscription = {sub} FOR UPDATE"),
        )
    }

    /// Locks the remembered event id `event_id`'s row in `schema`, as an enqueue of it does.
    pub fn take_event(schema: &Schema, event_id: &str) -> RowHold {
        RowHold::locking(
            schema,
            &format!("SELECT 1 FROM seen_events WHERE event_id = '{event_id}' FOR UPDATE"),
        )
    }

    fn locking(schema: &Schema, select: &str) -> RowHold {
        let mut client = client();
        client
            .batch_execute(&format!(
                "BEGIN; SET LOCAL search_path TO {}; {select}",
                schema.name
            ))
            .expect("lock");
        let pid = client
            .query_one("SELECT pg_backend_pid()", &[])
            .expect("pid")
            .get(0);
        RowHold { client, pid }
    }

    /// Waits, for at most `limit`, until some session waits for this hold; whether one did.
    pub fn waited_for(&self, limit: Duration) -> bool {
        wait_until(limit, || {
            let row = client()
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid))",
                    &[&self.pid],
                )
                .expect("pg_stat_activity");
            row.get::<_, i64>(0) > 0
        })
    }

    /// Lets the row go.
    pub fn release(mut self) {
        self.client.batch_execute("COMMIT").expect("commit");
    }
}
