//! Integration tests of callout-core: validation, matching rules, the seeds' samples, and the
//! indexed matcher against a naive scan.

mod matching;
mod props;
mod redact;
mod seeds;
mod validate;
mod vendor;
