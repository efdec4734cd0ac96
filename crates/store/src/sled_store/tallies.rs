//! The tallies on sled. Failure streaks are kept in the `subs` tree (`F sub`), so a reopen
//! keeps when a streak began (a subscription failing for days is not given a fresh start by a
//! restart), with a copy in memory so that a success looks one up without reading sled. The
//! hourly callout windows, the send slots and the paces live in memory only: one process owns
//! a sled store, so memory is as shared as they need to be. A restart that starts the hour or
//! the slot afresh costs at most one hour's extra callouts, never a lost one, and one that
//! starts a pace afresh starts it at one in flight, as for a new subscription.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};

use crate::backend::Tallies;
use crate::error::StoreError;
use crate::model::{CalloutCount, CalloutWindow, FailureStreak, Pace, SendSlot};

use super::keys::{key, part, FAILING, SUB};
use super::{OrStoreError, SledStore};

/// The tallies a sled store keeps in memory.
#[derive(Default)]
pub(super) struct TallyBook {
    state: Mutex<TallyState>,
    /// Whether any streak is running: a success takes the lock only then.
    any_failing: AtomicBool,
}

#[derive(Default)]
struct TallyState {
    streaks: HashMap<u64, FailureStreak>,
    windows: HashMap<u64, HashMap<String, CalloutWindow>>,
    slots: HashMap<u64, SendSlot>,
    paces: HashMap<u64, Pace>,
}

impl TallyBook {
    fn state(&self) -> Result<MutexGuard<'_, TallyState>, StoreError> {
        self.state.lock().map_err(|_| StoreError::Poisoned)
    }
}

/// A stored streak: attempts (u32), failed events (u32), since (u64), big-endian.
fn encode(streak: &FailureStreak) -> [u8; 16] {
    let mut out = [0; 16];
    out[..4].copy_from_slice(&streak.attempts.to_be_bytes());
    out[4..8].copy_from_slice(&streak.events.to_be_bytes());
    out[8..].copy_from_slice(&streak.since.to_be_bytes());
    out
}

/// The streak a stored value holds; `None` for one of another length.
pub(super) fn decode(v: &[u8]) -> Option<FailureStreak> {
    let v: &[u8; 16] = v.try_into().ok()?;
    let [a0, a1, a2, a3, e0, e1, e2, e3, ..] = *v;
    Some(FailureStreak {
        attempts: u32::from_be_bytes([a0, a1, a2, a3]),
        events: u32::from_be_bytes([e0, e1, e2, e3]),
        since: part(v, 8),
    })
}

impl SledStore {
    /// Reads the stored streaks into memory; one that does not decode is moved aside.
    pub(super) fn load_streaks(&self) -> Result<(), StoreError> {
        let mut state = self.tallies.state()?;
        for item in self.subs().scan_prefix([FAILING]) {
            let (k, v) = item.db()?;
            match (k.len(), decode(&v)) {
                (9, Some(streak)) => {
                    state.streaks.insert(part(&k, 1), streak);
                }
                _ => {
                    tracing::error!(key = ?k, "corrupt failure streak moved aside");
                    self.files().corrupt.insert(&k, &v).db()?;
                    self.subs().remove(&k).db()?;
                }
            }
        }
        self.tallies
            .any_failing
            .store(!state.streaks.is_empty(), Ordering::SeqCst);
        Ok(())
    }

    /// Subscription `sub` is deleted: its streak, windows, slot and pace go with it.
    pub(super) fn forget_tallies(&self, sub: u64) -> Result<(), StoreError> {
        self.end_failure_streak(sub)?;
        let mut state = self.tallies.state()?;
        state.windows.remove(&sub);
        state.slots.remove(&sub);
        state.paces.remove(&sub);
        Ok(())
    }

    /// A delivery of `sub` was delivered: its streak, if it has one, ends.
    pub(super) fn streak_ended(&self, sub: u64) -> Result<(), StoreError> {
        if self.tallies.any_failing.load(Ordering::SeqCst) {
            self.end_failure_streak(sub)?;
        }
        Ok(())
    }
}

impl Tallies for SledStore {
    fn count_failure(
        &self,
        sub: u64,
        at_ms: u64,
        event_failed: bool,
    ) -> Result<FailureStreak, StoreError> {
        let _pass = self.pass()?;
        let mut state = self.tallies.state()?;
        let streak = state.streaks.get(&sub).copied().unwrap_or_default();
        let streak = streak.and_one_more(at_ms, event_failed);
        // Not for a subscription deleted meanwhile: its record would outlive it.
        if !self.subs().contains_key(key(SUB, &[sub])).db()? {
            return Ok(streak);
        }
        // Durable with the store's next flush: a crash before it forgets one failure.
        self.subs()
            .insert(key(FAILING, &[sub]), &encode(&streak))
            .db()?;
        state.streaks.insert(sub, streak);
        self.tallies.any_failing.store(true, Ordering::SeqCst);
        Ok(streak)
    }

    fn end_failure_streak(&self, sub: u64) -> Result<(), StoreError> {
        let _pass = self.pass()?;
        let mut state = self.tallies.state()?;
        if state.streaks.remove(&sub).is_some() {
            self.subs().remove(key(FAILING, &[sub])).db()?;
        }
        self.tallies
            .any_failing
            .store(!state.streaks.is_empty(), Ordering::SeqCst);
        Ok(())
    }

    fn count_callout(
        &self,
        sub: u64,
        entity: &str,
        now_ms: u64,
        threshold: u64,
        delays: bool,
    ) -> Result<CalloutCount, StoreError> {
        let _pass = self.pass()?;
        let mut state = self.tallies.state()?;
        let windows = state.windows.entry(sub).or_default();
        let window = match windows.get_mut(entity) {
            Some(window) => window,
            None => windows.entry(entity.to_string()).or_default(),
        };
        Ok(window.count(now_ms, threshold, delays))
    }

    fn take_send_slot(
        &self,
        sub: u64,
        now_ms: u64,
        spacing_ms: u64,
    ) -> Result<Option<u64>, StoreError> {
        let _pass = self.pass()?;
        let mut state = self.tallies.state()?;
        Ok(state.slots.entry(sub).or_default().take(now_ms, spacing_ms))
    }

    fn pace_attempt(&self, sub: u64, quick: bool, cap: u32) -> Result<Pace, StoreError> {
        let _pass = self.pass()?;
        if !self.subs().contains_key(key(SUB, &[sub])).db()? {
            return Ok(Pace::default().after(quick, cap));
        }
        let mut state = self.tallies.state()?;
        let pace = state.paces.entry(sub).or_default();
        *pace = pace.after(quick, cap);
        Ok(*pace)
    }

    fn paces(&self) -> Result<Vec<(u64, Pace)>, StoreError> {
        let _pass = self.pass()?;
        let state = self.tallies.state()?;
        let mut paces: Vec<(u64, Pace)> = state.paces.iter().map(|(k, v)| (*k, *v)).collect();
        paces.sort_unstable_by_key(|(sub, _)| *sub);
        Ok(paces)
    }
}
