//! LISTEN/NOTIFY: how instances on one schema learn of each other's changes. Writers send a
//! notice in the transaction of the change (so it goes out only if the change commits, and
//! when it does); a listener thread with a connection of its own receives them and tells the
//! store's watchers, as `callout_store::Change`s. A lost connection is made again with
//! backoff, and then the watchers are told to read everything again, since notices sent
//! meanwhile are gone.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use postgres::fallible_iterator::FallibleIterator;
use postgres::Client;

use callout_store::{Change, ChangeHandler, StoreError};

use crate::conn::{Settings, Tx};

/// How long the listener waits for notices before it looks whether it should stop.
const LISTEN_SLICE: Duration = Duration::from_millis(200);
/// The longest pause between reconnection attempts.
const MOST_BACKOFF: Duration = Duration::from_secs(2);

/// The channel of a schema's notices: named after it when the name fits PostgreSQL's 63
/// bytes, else after a hash of it (FNV-1a, the same in every build).
pub(crate) fn channel(schema: &str) -> String {
    let readable = format!("{schema}/changes");
    if readable.len() <= 63 {
        return readable;
    }
    let hash = schema.bytes().fold(0xcbf2_9ce4_8422_2325u64, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    });
    format!("callout/{hash:016x}/changes")
}

/// A notice's payload: `s<id>` for a subscription, `d` for due deliveries.
pub(crate) fn payload(change: Change) -> String {
    match change {
        Change::Subscription(id) => format!("s{id}"),
        _ => "d".to_string(),
    }
}

fn parse(payload: &str) -> Option<Change> {
    match payload.strip_prefix('s') {
        Some(id) => id.parse().ok().map(Change::Subscription),
        None => (payload == "d").then_some(Change::Due),
    }
}

/// Sends a notice of `change` on the schema's channel when `tx` commits. PostgreSQL folds
/// identical notices of one transaction into one.
pub(crate) fn notify(tx: &mut Tx<'_>, change: Change) -> Result<(), postgres::Error> {
    let channel = channel(tx.schema());
    tx.execute("SELECT pg_notify($1, $2)", &[&channel, &payload(change)])?;
    Ok(())
}

/// The store's watchers and the listener thread, started by the first watcher.
pub(crate) struct Changes {
    settings: Arc<Settings>,
    watchers: Arc<Mutex<Vec<ChangeHandler>>>,
    stop: Arc<AtomicBool>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Changes {
    pub(crate) fn new(settings: Arc<Settings>) -> Changes {
        Changes {
            settings,
            watchers: Arc::default(),
            stop: Arc::default(),
            thread: Mutex::new(None),
        }
    }

    /// Adds a watcher; the first starts the listener and waits (within the reconnect time)
    /// until it listens, so a change committed after this returns is told. When it cannot
    /// connect yet it goes on trying, and tells [`Change::Everything`] once it listens.
    pub(crate) fn watch(&self, on_change: ChangeHandler) -> Result<(), StoreError> {
        let poisoned = || StoreError::Storage("the change watchers' lock was poisoned".into());
        self.watchers
            .lock()
            .map_err(|_| poisoned())?
            .push(on_change);
        let mut thread = self.thread.lock().map_err(|_| poisoned())?;
        if thread.is_some() {
            return Ok(());
        }
        let (listening, listens) = crossbeam_channel::bounded(1);
        let (settings, watchers, stop) = (
            Arc::clone(&self.settings),
            Arc::clone(&self.watchers),
            Arc::clone(&self.stop),
        );
        *thread = Some(
            std::thread::Builder::new()
                .name("callout-pg-listener".into())
                .spawn(move || listen(&settings, &watchers, &stop, &listening))?,
        );
        if listens
            .recv_timeout(self.settings.reconnect_within)
            .is_err()
        {
            tracing::warn!(
                "the PostgreSQL change listener is not connected yet; it goes on trying"
            );
        }
        Ok(())
    }
}

impl Drop for Changes {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.get_mut().ok().and_then(Option::take) {
            let _ = thread.join();
        }
    }
}

fn tell(watchers: &Mutex<Vec<ChangeHandler>>, change: Change) {
    let watchers: Vec<ChangeHandler> = match watchers.lock() {
        Ok(watchers) => watchers.clone(),
        Err(_) => return,
    };
    for watcher in watchers {
        watcher(change);
    }
}

/// The listener thread: listens, passes notices on, and after a lost connection connects
/// again with backoff and tells [`Change::Everything`].
fn listen(
    settings: &Settings,
    watchers: &Mutex<Vec<ChangeHandler>>,
    stop: &AtomicBool,
    listening: &crossbeam_channel::Sender<()>,
) {
    let channel = channel(&settings.schema);
    let mut pause = Duration::from_millis(50);
    // Whether notices may have been missed since the watchers last heard: a first connection
    // that failed counts too.
    let mut missed = false;
    while !stop.load(Ordering::SeqCst) {
        let mut client = match connect(settings, &channel) {
            Ok(client) => client,
            Err(error) => {
                tracing::warn!(%error, "the PostgreSQL change listener cannot connect; retrying");
                missed = true;
                pause_unless_stopped(pause, stop);
                pause = (pause * 2).min(MOST_BACKOFF);
                continue;
            }
        };
        pause = Duration::from_millis(50);
        let _ = listening.try_send(());
        if missed {
            tracing::info!(
                "the PostgreSQL change listener is back; every subscription is read again"
            );
            tell(watchers, Change::Everything);
        }
        missed = true;
        if let Err(error) = pass_on(&mut client, watchers, stop) {
            tracing::warn!(%error, "the PostgreSQL change listener lost its connection");
        }
    }
}

/// Passes notices on until the connection is lost or the store stops.
fn pass_on(
    client: &mut Client,
    watchers: &Mutex<Vec<ChangeHandler>>,
    stop: &AtomicBool,
) -> Result<(), postgres::Error> {
    while !stop.load(Ordering::SeqCst) {
        {
            let mut notifications = client.notifications();
            let mut slice = notifications.timeout_iter(LISTEN_SLICE);
            while let Some(notice) = slice.next()? {
                match parse(notice.payload()) {
                    Some(change) => tell(watchers, change),
                    None => tracing::warn!(payload = notice.payload(), "unknown change notice"),
                }
            }
        }
        if client.is_closed() {
            // Lost without an error: the caller connects again and reports the gap.
            return Ok(());
        }
    }
    Ok(())
}

fn connect(settings: &Settings, channel: &str) -> Result<Client, postgres::Error> {
    let mut client = settings.connect()?;
    client.batch_execute(&format!("LISTEN \"{channel}\""))?;
    Ok(client)
}

fn pause_unless_stopped(pause: Duration, stop: &AtomicBool) {
    let until = std::time::Instant::now() + pause;
    while !stop.load(Ordering::SeqCst) && std::time::Instant::now() < until {
        std::thread::sleep(Duration::from_millis(20).min(pause));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_read_back_as_their_change() {
        for change in [Change::Subscription(42), Change::Due] {
            assert_eq!(parse(&payload(change)), Some(change));
        }
        assert_eq!(parse("x"), None);
        assert_eq!(parse("sx"), None);
    }

    #[test]
    fn a_long_schema_name_gets_a_channel_within_the_identifier_limit() {
        assert_eq!(channel("callout"), "callout/changes");
        let long = "s".repeat(63);
        let named = channel(&long);
        assert!(named.len() <= 63, "{named}");
        assert_ne!(named, channel(&"t".repeat(63)));
    }
}
