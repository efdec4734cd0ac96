//! The gate every store operation passes, so that a compaction (`compact.rs`) runs while no
//! operation does: an operation enters it shared, a compaction closes it.
//!
//! An operation may call another (a default trait method calling the one it wraps, a settle
//! reading a record): the inner one passes without entering again, since a shared lock taken
//! twice by one thread deadlocks once a compaction waits between the two. Which gates a thread
//! is inside is kept per thread.

use std::cell::RefCell;
use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::error::StoreError;

thread_local! {
    /// The gates (by address) this thread is inside, entered or closed.
    static INSIDE: RefCell<Vec<usize>> = const { RefCell::new(Vec::new()) };
}

/// Shared by operations, exclusive for a compaction.
#[derive(Debug, Default)]
pub(super) struct Gate {
    lock: RwLock<()>,
}

/// An operation's pass through the gate; the gate is left when it is dropped. It holds nothing
/// for an operation inside another on the same thread.
pub(super) struct Pass<'a> {
    _entered: Option<(Inside<'a>, RwLockReadGuard<'a, ()>)>,
}

impl Pass<'_> {
    /// Whether this pass is for an operation inside another.
    #[cfg(test)]
    fn is_nested(&self) -> bool {
        self._entered.is_none()
    }
}

/// The gate closed: no operation runs until it is dropped.
pub(super) struct Closed<'a> {
    _inside: Inside<'a>,
    _guard: RwLockWriteGuard<'a, ()>,
}

/// Marks this thread inside a gate until dropped.
pub(super) struct Inside<'a>(&'a Gate);

impl Drop for Inside<'_> {
    fn drop(&mut self) {
        let id = self.0.id();
        INSIDE.with(|inside| {
            let mut inside = inside.borrow_mut();
            if let Some(at) = inside.iter().rposition(|&g| g == id) {
                inside.swap_remove(at);
            }
        });
    }
}

impl Gate {
    fn id(&self) -> usize {
        self as *const Gate as usize
    }

    /// Whether this thread is inside the gate (in an operation, or compacting).
    pub(super) fn is_inside(&self) -> bool {
        let id = self.id();
        INSIDE.with(|inside| inside.borrow().contains(&id))
    }

    fn mark_inside(&self) -> Inside<'_> {
        INSIDE.with(|inside| inside.borrow_mut().push(self.id()));
        Inside(self)
    }

    /// Enters for one operation: waits while a compaction runs.
    pub(super) fn enter(&self) -> Result<Pass<'_>, StoreError> {
        if self.is_inside() {
            return Ok(Pass { _entered: None });
        }
        // The lock guards no data, only who runs: a panic under it leaves nothing to distrust.
        let guard = self.lock.read().unwrap_or_else(PoisonError::into_inner);
        Ok(Pass {
            _entered: Some((self.mark_inside(), guard)),
        })
    }

    /// Closes the gate once the operations inside have left; `None` when this thread is inside
    /// one of them (a compaction cannot wait for its own caller).
    pub(super) fn close(&self) -> Result<Option<Closed<'_>>, StoreError> {
        if self.is_inside() {
            return Ok(None);
        }
        let guard = self.lock.write().unwrap_or_else(PoisonError::into_inner);
        Ok(Some(Closed {
            _inside: self.mark_inside(),
            _guard: guard,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    #[test]
    fn a_nested_operation_passes_while_a_compaction_waits() {
        let gate = Gate::default();
        let compacted = AtomicBool::new(false);
        std::thread::scope(|scope| {
            let outer = gate.enter().unwrap();
            assert!(!outer.is_nested());
            let waiter = scope.spawn(|| {
                let closed = gate.close().unwrap().expect("another thread may close");
                compacted.store(true, Ordering::SeqCst);
                drop(closed);
            });
            // The compaction is waiting (or about to); an inner operation must still pass
            // rather than queue behind it, or this thread would never leave.
            std::thread::sleep(Duration::from_millis(20));
            assert!(gate.enter().unwrap().is_nested());
            assert!(
                gate.close().unwrap().is_none(),
                "not from inside an operation"
            );
            assert!(
                !compacted.load(Ordering::SeqCst),
                "closed while an operation ran"
            );
            drop(outer);
            waiter.join().unwrap();
        });
        assert!(compacted.load(Ordering::SeqCst));
        assert!(!gate.is_inside());
        assert!(!gate.enter().unwrap().is_nested());
    }

    #[test]
    fn the_gate_is_kept_per_store() {
        let (a, b) = (Gate::default(), Gate::default());
        let _in_a = a.enter().unwrap();
        assert!(a.is_inside() && !b.is_inside());
        assert!(!b.enter().unwrap().is_nested());
    }
}
