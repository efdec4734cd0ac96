//! End-to-end tests of the engine: real receivers on 127.0.0.1, real stores on disk, and a child
//! process killed with SIGKILL.

mod bounds;
mod crash;
mod e2e;
mod isolation;
mod ordering;
mod owners;
mod profiles;
mod retention;
mod standard;
mod tidy;
mod wire;

use std::time::{Duration, Instant};

/// Whether `done` becomes true within `limit`, asking every 10 ms.
pub fn wait_until(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let started = Instant::now();
    while started.elapsed() < limit {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    done()
}
