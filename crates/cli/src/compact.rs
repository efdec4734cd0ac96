//! `callout compact`: copy what is live of a sled store into a fresh generation of its
//! directory now, rather than when the store would by itself.
//!
//! It opens the store crate's `SledStore` directly: the engine holds its store behind the
//! backend traits, which have no compaction (PostgreSQL gives space back by itself).

use std::io::Write;

use callout::store::{SledStore, StoreConfig};
use serde_json::json;

use crate::error::Failure;
use crate::output;
use crate::store::Context;

pub(crate) fn run(ctx: &Context, out: &mut dyn Write) -> Result<(), Failure> {
    if ctx.postgres_url().is_some() {
        return Err(Failure::usage(
            "compact is for sled directories; PostgreSQL's autovacuum gives space back by itself",
        ));
    }
    ctx.require_store()?;
    let store =
        SledStore::open(&ctx.store, StoreConfig::default()).map_err(callout::Error::Store)?;
    let compacted = store.compact().map_err(callout::Error::Store)?;
    drop(store);
    if ctx.json {
        return output::print_json(
            out,
            &json!({
                "store": ctx.shown(),
                "records": compacted.records,
                "size_before": compacted.size_before,
                "size_after": compacted.size_after,
                "pause_ms": compacted.took.as_millis() as u64,
            }),
        );
    }
    writeln!(out, "compacted {}", ctx.shown())?;
    let mib = |bytes: u64| format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0));
    output::print_fields(
        out,
        &[
            ("records".into(), compacted.records.to_string()),
            ("size before".into(), mib(compacted.size_before)),
            ("size after".into(), mib(compacted.size_after)),
            ("pause".into(), format!("{} ms", compacted.took.as_millis())),
        ],
    )
}
