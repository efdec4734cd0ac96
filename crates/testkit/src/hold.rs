//! A switch that makes a receiver keep the requests it gets, so a test can hold senders in
//! their requests and count how many are held at one moment (requests received one after
//! another are not the same thing: an earlier one may have been let go already).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Shared by a test and its receiver's script: from [`Hold::start`] until [`Hold::release`],
/// each request the script calls [`Hold::keep`] for waits (at most the bound given to
/// [`Hold::new`], so a failed test cannot leave its senders waiting for ever).
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use callout_testkit::{Hold, Receiver, Reply};
///
/// let hold = Hold::new(Duration::from_secs(5));
/// let keeping = Arc::clone(&hold);
/// let receiver = Receiver::start(move |_, _| {
///     keeping.keep();
///     Reply::status(200)
/// });
/// hold.start();
/// // ... let the code under test send ...
/// assert_eq!(hold.held(), 0, "nothing sent yet");
/// hold.release();
/// # drop(receiver);
/// ```
pub struct Hold {
    holding: AtomicBool,
    released: AtomicBool,
    held: AtomicUsize,
    bound: Duration,
}

impl Hold {
    /// A switch, not yet holding; a kept request waits at most `bound`.
    pub fn new(bound: Duration) -> Arc<Hold> {
        Arc::new(Hold {
            holding: AtomicBool::new(false),
            released: AtomicBool::new(false),
            held: AtomicUsize::new(0),
            bound,
        })
    }

    /// Requests from now on are kept (again, after a release).
    pub fn start(&self) {
        self.released.store(false, Ordering::SeqCst);
        self.holding.store(true, Ordering::SeqCst);
    }

    /// Lets every kept request go, and keeps none after it.
    pub fn release(&self) {
        self.holding.store(false, Ordering::SeqCst);
        self.released.store(true, Ordering::SeqCst);
    }

    /// For the receiver's script: while holding, waits until released or for the bound.
    pub fn keep(&self) {
        if !self.holding.load(Ordering::SeqCst) {
            return;
        }
        self.held.fetch_add(1, Ordering::SeqCst);
        let until = Instant::now() + self.bound;
        while !self.released.load(Ordering::SeqCst) && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(5));
        }
        self.held.fetch_sub(1, Ordering::SeqCst);
    }

    /// How many requests are kept at this moment.
    pub fn held(&self) -> usize {
        self.held.load(Ordering::SeqCst)
    }

    /// Waits until `count` requests are kept at once, for at most `limit`; whether they were.
    pub fn wait_held(&self, count: usize, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while self.held() < count && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        self.held() >= count
    }
}
