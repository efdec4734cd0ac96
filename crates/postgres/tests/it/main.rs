//! callout-postgres's integration tests, against the PostgreSQL server that
//! `CALLOUT_TEST_POSTGRES` names (`scripts/with-postgres.sh` starts one). Without it they fail,
//! saying so: they never pass by skipping.

mod conformance;
mod crash;
mod engine;
mod instances;
mod schema;
mod support;
