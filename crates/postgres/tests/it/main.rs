//! callout-postgres's integration tests, against the PostgreSQL server that
//! `CALLOUT_TEST_POSTGRES` names (`scripts/with-postgres.sh` starts one). Without it they fail,
//! saying so: they never pass by skipping.

mod changes;
mod conformance;
mod crash;
mod engine;
mod health;
mod instances;
mod ordering;
mod processes;
mod restart;
mod schema;
mod settles;
mod support;
