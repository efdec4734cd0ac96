//! Opening the store through the engine, so the CLI reads and writes exactly what a host's
//! engine does (and its lock keeps two processes out of one store). `--store` is a sled
//! directory, or a `postgres://` (`postgresql://`) URL of a PostgreSQL backend, its schema
//! named by a `?schema=` parameter (default `callout`).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use callout::core::vendor::pipeliner::PipelinerContext;
use callout::{Engine, EngineBuilder};
use callout_postgres::{is_postgres_url, PgStore};

use crate::error::Failure;

/// How long closing waits for work in flight (a delivery, a deactivation URL) to finish; what
/// is still running then is released by the store's leases and sent again later.
pub(crate) const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// The global options every command shares.
pub(crate) struct Context {
    pub(crate) store: PathBuf,
    pub(crate) json: bool,
    pub(crate) allow: Vec<String>,
    /// What Pipeliner bodies carry besides the subscription (made at publish).
    pub(crate) pipeliner: PipelinerContext,
}

impl Context {
    /// The engine on an existing store, not delivering: every command but `run`.
    pub(crate) fn open(&self) -> Result<Engine, Failure> {
        self.require_store()?;
        // One worker: it only calls deactivation URLs (and the test send of `create --test`).
        Ok(self.builder()?.deliver(false).workers(1).open()?)
    }

    /// The engine on an existing store, delivering with `workers` threads (the backend's
    /// default when `None`).
    pub(crate) fn open_delivering(&self, workers: Option<usize>) -> Result<Engine, Failure> {
        self.require_store()?;
        let builder = self.builder()?;
        let builder = match workers {
            Some(workers) => builder.workers(workers),
            None => builder,
        };
        Ok(builder.open()?)
    }

    /// The engine on the store, created if absent (`init`).
    pub(crate) fn create(&self) -> Result<Engine, Failure> {
        if self.postgres_url().is_none() && self.store.exists() && !self.store.is_dir() {
            return Err(Failure::usage(format_args!(
                "{} exists and is not a directory",
                self.store.display()
            )));
        }
        Ok(self.builder()?.deliver(false).workers(1).open()?)
    }

    fn builder(&self) -> Result<EngineBuilder, Failure> {
        let builder = match self.postgres_url() {
            Some(url) => {
                let store = PgStore::open(url).map_err(callout::Error::Store)?;
                Engine::builder(Arc::new(store))
            }
            None => Engine::builder(&self.store),
        }
        .pipeliner_context(self.pipeliner.clone());
        Ok(self.allow.iter().fold(builder, |builder, entry| {
            builder.allow_address(entry.clone())
        }))
    }

    /// The PostgreSQL URL `--store` names, if it names one rather than a directory.
    pub(crate) fn postgres_url(&self) -> Option<&str> {
        self.store.to_str().filter(|store| is_postgres_url(store))
    }

    /// `--store` as it may be printed: a URL without its password.
    pub(crate) fn shown(&self) -> String {
        match self.postgres_url() {
            Some(url) => callout::core::redact_url(url).into_owned(),
            None => self.store.display().to_string(),
        }
    }

    /// Refuses a missing or empty directory: opening would silently create a new store there,
    /// and a mistyped --store would then show an empty queue instead of an error. A
    /// PostgreSQL schema is created by opening it, as `init` does.
    pub(crate) fn require_store(&self) -> Result<(), Failure> {
        if self.postgres_url().is_some() {
            return Ok(());
        }
        let path = self.store.display();
        let hint = format!("create one with `callout --store {path} init`");
        match std::fs::read_dir(&self.store).map(|mut entries| entries.next().is_some()) {
            Ok(true) => Ok(()),
            Ok(false) => Err(Failure::not_found(format_args!(
                "no callout store at {path} (the directory is empty); {hint}"
            ))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Failure::not_found(
                format_args!("no callout store at {path}; {hint}"),
            )),
            Err(_) if self.store.exists() => Err(Failure::usage(format_args!(
                "{path} is not a store directory"
            ))),
            Err(e) => Err(Failure::failed(format_args!(
                "cannot open the store at {path}: {e}"
            ))),
        }
    }
}

/// Closes the engine: stops its threads and flushes the store.
pub(crate) fn close(engine: &Engine) -> Result<(), Failure> {
    Ok(engine.shutdown(SHUTDOWN_GRACE)?)
}
