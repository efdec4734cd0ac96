//! Placeholder replaced by the API bench.
fn main() {}
