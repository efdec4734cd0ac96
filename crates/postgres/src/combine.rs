//! Calls combined into groups: one connection thread takes every call of one kind (enqueues,
//! settles, leases). Calls that arrive while it works wait together and go into its next
//! group, so concurrent callers share one statement and one round trip; each caller waits for
//! its own answer.

use std::panic::AssertUnwindSafe;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};

use callout_store::StoreError;

use crate::conn::Conn;

/// How long a group waits for the callers of the last group to call again (about a thread
/// switch or two on a loaded machine; a statement costs more).
const GATHER_WAIT: Duration = Duration::from_micros(300);

/// How long a group's statement waits for a row lock (another instance's hold of a
/// subscription with a large backlog, say) before it fails and its calls go on their own: a
/// group thread serves every caller of its kind, so one held row must not stall them all.
pub(crate) const GROUP_LOCK_WAIT: Duration = Duration::from_millis(200);

/// What a group's thread does with a group: one answer per call, in the calls' order.
pub(crate) type Work<C, R> = Box<dyn FnMut(&mut Conn, &[C]) -> Vec<Result<R, StoreError>> + Send>;

/// A call and where its answer goes.
struct Call<C, R> {
    call: C,
    answer: Sender<Result<R, StoreError>>,
}

/// One thread and its connection, taking calls of type `C` in groups of at most `max_group`.
pub(crate) struct Combiner<C: Send + 'static, R: Send + 'static> {
    calls: Option<Sender<Call<C, R>>>,
    thread: Option<JoinHandle<()>>,
    what: &'static str,
}

impl<C: Send + 'static, R: Send + 'static> Combiner<C, R> {
    /// Starts the thread `name`, which runs `work` on `conn` for each group.
    pub(crate) fn start(
        name: &str,
        what: &'static str,
        mut conn: Conn,
        max_group: usize,
        mut work: Work<C, R>,
    ) -> Result<Combiner<C, R>, StoreError> {
        let (calls, taken) = crossbeam_channel::unbounded::<Call<C, R>>();
        let thread = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                let mut last_group = 1;
                while let Ok(first) = taken.recv() {
                    let group = gather(first, &taken, last_group, max_group);
                    last_group = group.len();
                    let (calls, answers): (Vec<C>, Vec<_>) =
                        group.into_iter().map(|c| (c.call, c.answer)).unzip();
                    // A panicking group drops its answers (its callers get an error), not the
                    // thread.
                    let results =
                        std::panic::catch_unwind(AssertUnwindSafe(|| work(&mut conn, &calls)))
                            .unwrap_or_default();
                    let mut results = results.into_iter();
                    for answer in answers {
                        if let Some(result) = results.next() {
                            let _ = answer.send(result);
                        }
                    }
                }
            })?;
        Ok(Combiner {
            calls: Some(calls),
            thread: Some(thread),
            what,
        })
    }

    /// Hands `call` to the thread and waits for its answer.
    pub(crate) fn call(&self, call: C) -> Result<R, StoreError> {
        let (answer, answered) = crossbeam_channel::bounded(1);
        let stopped =
            || StoreError::Storage(format!("the PostgreSQL {} thread stopped", self.what));
        self.calls
            .as_ref()
            .ok_or_else(stopped)?
            .send(Call { call, answer })
            .map_err(|_| stopped())?;
        answered.recv().map_err(|_| stopped())?
    }
}

impl<C: Send + 'static, R: Send + 'static> Drop for Combiner<C, R> {
    fn drop(&mut self) {
        self.calls = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The calls of one group: `first` and every call waiting. When fewer wait than the last group
/// held, the callers that group answered are likely about to call again (they were woken by
/// its answers), so the thread waits a moment for them rather than go alone and make them wait
/// a whole statement more.
fn gather<T>(first: T, calls: &Receiver<T>, last_group: usize, max_group: usize) -> Vec<T> {
    let mut group = vec![first];
    let deadline = Instant::now() + GATHER_WAIT;
    while group.len() < max_group {
        let next = match calls.try_recv() {
            Ok(call) => Ok(call),
            Err(_) if group.len() < last_group => calls.recv_deadline(deadline).map_err(|_| ()),
            Err(_) => Err(()),
        };
        match next {
            Ok(call) => group.push(call),
            Err(()) => break,
        }
    }
    group
}

/// The same error for every call of a group (StoreError is not `Clone`: it may hold an
/// `io::Error`).
pub(crate) fn clone_error(error: &StoreError) -> StoreError {
    StoreError::Storage(error.to_string())
}
