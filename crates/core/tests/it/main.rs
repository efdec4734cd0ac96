//! Integration tests of callout-core: validation, unknown keys and size bounds, matching rules,
//! the seeds' samples, registration requests checked as the vendors check them, and the
//! indexed matcher against a naive scan.

mod fields;
mod matching;
mod props;
mod redact;
mod registration;
mod seeds;
mod validate;
mod vendor;
