//! PostgreSQL backend benchmarks (filled in below).
fn main() {}
