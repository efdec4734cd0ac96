//! What a receiver got, shared between its serving threads and the test that waits on it.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// The requests a receiver recorded (or only their count), with a wake-up for waiters and a
/// stop flag that cuts its scripted pauses short.
#[derive(Debug)]
pub(crate) struct Log<T> {
    entries: Mutex<Vec<T>>,
    /// Whether entries are kept; a bench's receiver only counts.
    keep: bool,
    count: AtomicUsize,
    /// The smallest count a waiter needs: arrivals below it wake nobody, so a bench waiting
    /// for its thousandth request is not switched to for each of the others.
    awaited: AtomicUsize,
    arrived: Condvar,
    stopped: AtomicBool,
    stopping: Condvar,
}

impl<T: Clone> Log<T> {
    pub(crate) fn new(keep: bool) -> Log<T> {
        Log {
            entries: Mutex::new(Vec::new()),
            keep,
            count: AtomicUsize::new(0),
            awaited: AtomicUsize::new(usize::MAX),
            arrived: Condvar::new(),
            stopped: AtomicBool::new(false),
            stopping: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Vec<T>> {
        // A test thread that panicked while holding it leaves the entries whole.
        self.entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Records one request and returns `before` of the entries recorded before it (none
    /// when entries are not kept), under the same lock as the push.
    pub(crate) fn push_with<R>(&self, entry: T, before: impl FnOnce(&[T]) -> R) -> R {
        if self.keep {
            let mut entries = self.lock();
            let result = before(&entries);
            entries.push(entry);
            let count = self.count.fetch_add(1, Ordering::SeqCst) + 1;
            if count >= self.awaited.load(Ordering::SeqCst) {
                self.awaited.store(usize::MAX, Ordering::SeqCst);
                self.arrived.notify_all();
            }
            return result;
        }
        // Only counted: no lock unless somebody waits for this count.
        let result = before(&[]);
        let count = self.count.fetch_add(1, Ordering::SeqCst) + 1;
        if count >= self.awaited.load(Ordering::SeqCst) {
            // Under the lock, so a waiter between its check and its wait cannot miss it.
            let _held = self.lock();
            self.awaited.store(usize::MAX, Ordering::SeqCst);
            self.arrived.notify_all();
        }
        result
    }

    pub(crate) fn count(&self) -> usize {
        self.count.load(Ordering::SeqCst)
    }

    pub(crate) fn entries(&self) -> Vec<T> {
        self.lock().clone()
    }

    /// Waits until `done` holds of the entries, or `limit` passed; `needed` is the count below
    /// which `done` cannot hold (0 when it depends on more than the count). Returns the
    /// entries as they were then.
    pub(crate) fn wait_until(
        &self,
        needed: usize,
        limit: Duration,
        done: impl Fn(usize, &[T]) -> bool,
    ) -> Vec<T> {
        let deadline = Instant::now() + limit;
        let mut entries = self.lock();
        loop {
            let count = self.count.load(Ordering::SeqCst);
            if done(count, &entries) {
                return entries.clone();
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return entries.clone();
            }
            // Wake at the count needed, or at the next arrival when the count alone cannot
            // tell; the pusher resets this when it wakes us, so register again each round.
            self.awaited
                .fetch_min(needed.max(count + 1), Ordering::SeqCst);
            // A counting pusher does not take the lock before it reads `awaited`: one that
            // counted before we registered has to be seen here instead.
            if self.count.load(Ordering::SeqCst) != count {
                continue;
            }
            entries = match self.arrived.wait_timeout(entries, left) {
                Ok((entries, _)) => entries,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
    }

    /// Sleeps for `pause`, or less if the receiver stops meanwhile; false if it stopped.
    pub(crate) fn pause(&self, pause: Duration) -> bool {
        let deadline = Instant::now() + pause;
        let mut held = self.lock();
        while !self.stopped.load(Ordering::SeqCst) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return true;
            }
            held = match self.stopping.wait_timeout(held, left) {
                Ok((held, _)) => held,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
        false
    }

    pub(crate) fn stop(&self) {
        let _held = self.lock();
        self.stopped.store(true, Ordering::SeqCst);
        self.stopping.notify_all();
    }

    pub(crate) fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::SeqCst)
    }
}
