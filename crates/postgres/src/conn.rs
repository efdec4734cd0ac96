//! Connections and the threads that own them. The `postgres` client runs a tokio runtime of its
//! own and panics when called on a thread that already runs one, as a host's async code does;
//! so no PostgreSQL call ever runs on a caller's thread: each connection lives on a thread of
//! this crate, and calls hand it a job over a channel and wait for the answer. A connection
//! that was lost is made again (with backoff, within `reconnect_within`) by the next job.

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use postgres::error::SqlState;
use postgres::types::ToSql;
use postgres::{Client, GenericClient, NoTls, Row, Statement, Transaction};

use callout_store::StoreError;

use crate::config::PgConfig;

/// What every connection is opened with.
pub(crate) struct Settings {
    pg: postgres::Config,
    pub(crate) schema: String,
    pub(crate) reconnect_within: Duration,
    /// The URL as it may be shown (no password), for error messages.
    shown: String,
}

impl Settings {
    pub(crate) fn new(config: &PgConfig) -> Result<Settings, StoreError> {
        let schema = config.checked_schema()?.to_string();
        let shown = callout_core::redact_url(config.url()).into_owned();
        let mut pg: postgres::Config = config.url().parse().map_err(|error| {
            StoreError::Storage(format!("invalid PostgreSQL URL {shown}: {error}"))
        })?;
        if pg.get_connect_timeout().is_none() {
            pg.connect_timeout(Duration::from_secs(5));
        }
        pg.application_name("callout");
        Ok(Settings {
            pg,
            schema,
            reconnect_within: config.reconnect_within,
            shown,
        })
    }

    /// A new client, not yet in the schema (the change listener's).
    pub(crate) fn connect(&self) -> Result<Client, postgres::Error> {
        self.pg.connect(NoTls)
    }
}

/// Why a job failed: PostgreSQL's error (a deadlock or serialization failure is retried) or
/// the store's own.
pub(crate) enum Fail {
    Pg(postgres::Error),
    Store(StoreError),
}

impl From<postgres::Error> for Fail {
    fn from(error: postgres::Error) -> Fail {
        Fail::Pg(error)
    }
}

impl From<StoreError> for Fail {
    fn from(error: StoreError) -> Fail {
        Fail::Store(error)
    }
}

impl Fail {
    fn retryable(&self) -> bool {
        matches!(self, Fail::Pg(error) if error.code().is_some_and(|code|
            *code == SqlState::T_R_DEADLOCK_DETECTED || *code == SqlState::T_R_SERIALIZATION_FAILURE))
    }

    pub(crate) fn into_store(self) -> StoreError {
        match self {
            Fail::Store(error) => error,
            Fail::Pg(error) => pg_error(&error),
        }
    }
}

/// PostgreSQL's error as the store's: its SQLSTATE and message, or the client's text.
pub(crate) fn pg_error(error: &postgres::Error) -> StoreError {
    match error.as_db_error() {
        Some(db) => {
            StoreError::Storage(format!("PostgreSQL {}: {}", db.code().code(), db.message()))
        }
        None => StoreError::Storage(format!("PostgreSQL: {error}")),
    }
}

/// One connection, made on first use and again after it was lost, with its prepared
/// statements.
pub(crate) struct Conn {
    settings: Arc<Settings>,
    client: Option<Client>,
    statements: HashMap<&'static str, Statement>,
    /// Whether commits wait for the WAL flush (`synchronous_commit`). Enqueues and registry
    /// changes do; leases and settles need not (see the crate docs).
    durable: bool,
    /// How long a statement waits for a row lock before it fails (PostgreSQL's
    /// `lock_timeout`); `None`: as long as it takes.
    lock_timeout: Option<Duration>,
}

impl Conn {
    pub(crate) fn new(settings: Arc<Settings>, durable: bool) -> Conn {
        Conn {
            settings,
            client: None,
            statements: HashMap::new(),
            durable,
            lock_timeout: None,
        }
    }

    /// This connection with statements that wait at most `wait` for a row lock, then fail.
    pub(crate) fn with_lock_timeout(mut self, wait: Duration) -> Conn {
        self.lock_timeout = Some(wait);
        self
    }

    /// Whether the connection is up (a failed call may have lost it).
    pub(crate) fn connected(&self) -> bool {
        self.client.as_ref().is_some_and(|c| !c.is_closed())
    }

    /// The schema this connection works in.
    pub(crate) fn schema(&self) -> &str {
        &self.settings.schema
    }

    fn connect(&mut self) -> Result<(), StoreError> {
        if self.client.as_ref().is_some_and(|c| !c.is_closed()) {
            return Ok(());
        }
        self.client = None;
        self.statements.clear();
        let deadline = Instant::now() + self.settings.reconnect_within;
        let mut pause = Duration::from_millis(20);
        loop {
            match self.try_connect() {
                Ok(client) => {
                    self.client = Some(client);
                    return Ok(());
                }
                Err(error) if Instant::now() + pause < deadline => {
                    tracing::warn!(%error, "PostgreSQL connection failed; retrying");
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_secs(1));
                }
                Err(error) => {
                    return Err(StoreError::Storage(format!(
                        "cannot connect to PostgreSQL at {}: {error}",
                        self.settings.shown
                    )))
                }
            }
        }
    }

    fn try_connect(&self) -> Result<Client, postgres::Error> {
        let mut client = self.settings.connect()?;
        let commit = if self.durable { "on" } else { "off" };
        // Generic plans: the statements are prepared once and their shapes do not depend on
        // the values, but PostgreSQL would plan the lease (whose arrays it cannot size) anew
        // at every call, which cost more than running it.
        let lock_timeout = self.lock_timeout.map_or(0, |wait| wait.as_millis().max(1));
        client.batch_execute(&format!(
            "SET search_path TO \"{}\"; SET synchronous_commit TO {commit}; \
             SET plan_cache_mode TO force_generic_plan; SET lock_timeout TO {lock_timeout}",
            self.settings.schema
        ))?;
        Ok(client)
    }

    /// Runs `work` in a transaction, again (a bounded number of times) when PostgreSQL
    /// resolved a deadlock or serialization conflict by failing it.
    pub(crate) fn transact<T>(
        &mut self,
        mut work: impl FnMut(&mut Tx<'_>) -> Result<T, Fail>,
    ) -> Result<T, StoreError> {
        self.retrying(|conn| conn.transact_once(&mut work))
    }

    /// Runs one statement as a transaction of its own: no `BEGIN` or `COMMIT`, so a prepared
    /// statement costs one round trip (PostgreSQL commits it at the protocol's sync). Retried
    /// as [`Conn::transact`] is.
    pub(crate) fn query_alone(
        &mut self,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, StoreError> {
        self.retrying(|conn| {
            conn.connect()?;
            let Some(client) = conn.client.as_mut() else {
                return Err(StoreError::Storage("no PostgreSQL connection".into()).into());
            };
            let statement = prepared(client, &mut conn.statements, sql)?;
            Ok(client.query(&statement, params)?)
        })
    }

    fn retrying<T>(
        &mut self,
        mut once: impl FnMut(&mut Conn) -> Result<T, Fail>,
    ) -> Result<T, StoreError> {
        let mut tries = 0;
        loop {
            tries += 1;
            let result = once(self);
            match result {
                Err(fail) if fail.retryable() && tries < 5 => continue,
                Err(fail) => {
                    if self.client.as_ref().is_some_and(|c| c.is_closed()) {
                        self.client = None;
                    }
                    return Err(fail.into_store());
                }
                Ok(value) => return Ok(value),
            }
        }
    }

    /// [`Conn::transact`] with commits that wait for the WAL flush whatever this
    /// connection's default: for changes that must be durable when the call returns.
    pub(crate) fn transact_durably<T>(
        &mut self,
        mut work: impl FnMut(&mut Tx<'_>) -> Result<T, Fail>,
    ) -> Result<T, StoreError> {
        let durable = self.durable;
        self.transact(|tx| {
            if !durable {
                tx.tx.batch_execute("SET LOCAL synchronous_commit TO on")?;
            }
            work(tx)
        })
    }

    fn transact_once<T>(
        &mut self,
        work: &mut impl FnMut(&mut Tx<'_>) -> Result<T, Fail>,
    ) -> Result<T, Fail> {
        self.connect()?;
        let Some(client) = self.client.as_mut() else {
            return Err(StoreError::Storage("no PostgreSQL connection".into()).into());
        };
        let mut tx = Tx {
            tx: client.transaction()?,
            statements: &mut self.statements,
            schema: &self.settings.schema,
        };
        let value = work(&mut tx)?;
        tx.tx.commit()?;
        Ok(value)
    }
}

/// `sql` as prepared on the connection `client` belongs to: prepared there the first time.
fn prepared(
    client: &mut impl GenericClient,
    statements: &mut HashMap<&'static str, Statement>,
    sql: &'static str,
) -> Result<Statement, postgres::Error> {
    if let Some(statement) = statements.get(sql) {
        return Ok(statement.clone());
    }
    let statement = client.prepare(sql)?;
    statements.insert(sql, statement.clone());
    Ok(statement)
}

/// A transaction with this connection's prepared statements.
pub(crate) struct Tx<'a> {
    tx: Transaction<'a>,
    statements: &'a mut HashMap<&'static str, Statement>,
    schema: &'a str,
}

impl Tx<'_> {
    /// The schema the transaction works in.
    pub(crate) fn schema(&self) -> &str {
        self.schema
    }

    fn statement(&mut self, sql: &'static str) -> Result<Statement, postgres::Error> {
        prepared(&mut self.tx, self.statements, sql)
    }

    pub(crate) fn query(
        &mut self,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, postgres::Error> {
        let statement = self.statement(sql)?;
        self.tx.query(&statement, params)
    }

    pub(crate) fn query_opt(
        &mut self,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Row>, postgres::Error> {
        let statement = self.statement(sql)?;
        self.tx.query_opt(&statement, params)
    }

    /// A query that returns exactly one row (an upsert's `RETURNING`, a row just ensured).
    pub(crate) fn query_one(
        &mut self,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Row, postgres::Error> {
        let statement = self.statement(sql)?;
        self.tx.query_one(&statement, params)
    }

    pub(crate) fn execute(
        &mut self,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, postgres::Error> {
        let statement = self.statement(sql)?;
        self.tx.execute(&statement, params)
    }

    /// SQL made at run time (the migrations, which name the schema): not prepared.
    pub(crate) fn batch(&mut self, sql: &str) -> Result<(), postgres::Error> {
        self.tx.batch_execute(sql)
    }
}

type Job = Box<dyn FnOnce(&mut Conn) + Send>;

/// A fixed set of connection threads taking jobs from one channel.
pub(crate) struct Pool {
    jobs: Option<Sender<Job>>,
    threads: Vec<JoinHandle<()>>,
}

impl Pool {
    pub(crate) fn start(
        settings: &Arc<Settings>,
        size: usize,
        durable: bool,
        name: &str,
    ) -> Result<Pool, StoreError> {
        let (jobs, taken) = crossbeam_channel::unbounded::<Job>();
        let mut threads = Vec::new();
        for n in 0..size.max(1) {
            let taken: Receiver<Job> = taken.clone();
            let mut conn = Conn::new(Arc::clone(settings), durable);
            let thread = std::thread::Builder::new()
                .name(format!("{name}-{n}"))
                .spawn(move || {
                    for job in taken {
                        // A panicking job drops its answer (its caller gets an error), not the
                        // thread.
                        let _ = std::panic::catch_unwind(AssertUnwindSafe(|| job(&mut conn)));
                    }
                })?;
            threads.push(thread);
        }
        Ok(Pool {
            jobs: Some(jobs),
            threads,
        })
    }

    /// Runs `work` on one of the pool's connections and waits for its answer.
    pub(crate) fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Conn) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (answer, answered) = crossbeam_channel::bounded(1);
        let job: Job = Box::new(move |conn| {
            let _ = answer.send(work(conn));
        });
        let stopped = || StoreError::Storage("the PostgreSQL connection threads stopped".into());
        self.jobs
            .as_ref()
            .ok_or_else(stopped)?
            .send(job)
            .map_err(|_| stopped())?;
        answered.recv().map_err(|_| stopped())?
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.jobs = None;
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}
