//! End-to-end tests of the engine: real receivers on 127.0.0.1, real stores on disk, and a child
//! process killed with SIGKILL.

mod crash;
mod e2e;
mod profiles;
