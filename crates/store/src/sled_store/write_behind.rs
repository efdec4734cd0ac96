//! Write-behind: settles are buffered in the book and applied as one batch, by the next reader,
//! a lease that needs one of them, or once the buffer is full or old, outside the book lock.

use std::sync::MutexGuard;
use std::time::Duration;

use crate::error::StoreError;

use super::book::Book;
use super::SledStore;

/// Settles the write-behind buffer holds before it applies them.
pub(super) const BEHIND_MAX: usize = 256;
/// The longest a settle waits in the write-behind buffer when the store is in use.
pub(super) const BEHIND_AGE: Duration = Duration::from_millis(50);

impl SledStore {
    /// Applies the buffered settles (see [`Book::behind`]) as one batch. Every path that reads
    /// the queue tree or writes to it outside the group commit calls this first, under the
    /// book lock, so it sees every settle and orders its writes after them.
    pub(super) fn apply_behind(&self, book: &mut Book) -> Result<(), StoreError> {
        // Any buffer handed off before is on disk once the gate is ours.
        let _gate = self.behind_gate.lock().map_err(|_| StoreError::Poisoned)?;
        book.handed_off_ids.clear();
        book.handed_off_beyond.clear();
        book.key_gone_handed_off.clear();
        if book.behind.is_empty() {
            return Ok(());
        }
        let ops = book.take_behind();
        book.behind_ids.clear();
        book.behind_beyond.clear();
        book.key_gone.clear();
        self.apply(ops)
    }

    /// Applies the write-behind buffer after letting go of the book lock: an apply of a full
    /// buffer holds sled's write lock for milliseconds, and under the book lock it stalled
    /// every lease and settle meanwhile. The gate, taken before the book lock goes, keeps the
    /// applies in order; a reader that needs a handed-off settle takes it too
    /// ([`Book::buffered`]).
    pub(super) fn hand_off_behind(&self, mut book: MutexGuard<'_, Book>) -> Result<(), StoreError> {
        let gate = self.behind_gate.lock().map_err(|_| StoreError::Poisoned)?;
        let ops = book.take_behind();
        book.handed_off_ids = std::mem::take(&mut book.behind_ids);
        book.handed_off_beyond = std::mem::take(&mut book.behind_beyond);
        book.key_gone_handed_off = std::mem::take(&mut book.key_gone);
        drop(book);
        let applied = self.apply(ops);
        drop(gate);
        applied
    }

    /// [`SledStore::apply_behind`] for callers that do not hold the book lock.
    pub(super) fn catch_up(&self) -> Result<(), StoreError> {
        let mut book = self.book()?;
        self.apply_behind(&mut book)
    }
}
