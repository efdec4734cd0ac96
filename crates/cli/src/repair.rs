//! `callout repair`: copy what still reads of a damaged store into a new one.
//!
//! It calls the store crate's repair directly, never the engine: opening a damaged store
//! through the engine is what fails (and sled's open would rewrite its files).

use std::io::Write;

use callout::store::{RepairReport, SledStore, StoreError};
use serde_json::json;

use crate::args::RepairArgs;
use crate::error::Failure;
use crate::output::{self, Table};
use crate::store::Context;

pub(crate) fn run(ctx: &Context, args: &RepairArgs, out: &mut dyn Write) -> Result<(), Failure> {
    if ctx.postgres_url().is_some() {
        return Err(Failure::usage(
            "repair salvages a damaged sled directory; a PostgreSQL store moves rows that do not \
             decode to its `corrupt` table by itself",
        ));
    }
    ctx.require_store()?;
    let report = SledStore::repair(&ctx.store, &args.to).map_err(|error| match error {
        StoreError::TargetNotEmpty { .. } => Failure::usage(error),
        error => Failure::from(callout::Error::Store(error)),
    })?;
    if ctx.json {
        output::print_json(out, &as_json(ctx, args, &report))?;
    } else {
        print(ctx, args, &report, out)?;
    }
    match report.unreadable.len() {
        0 => Ok(()),
        n => Err(Failure::failed(format_args!(
            "{} could not be read (listed above); the new store at {} holds everything else",
            output::count(n as u64, "record or file", "records or files"),
            args.to.display()
        ))),
    }
}

fn copied(report: &RepairReport) -> [(&'static str, u64); 9] {
    [
        ("subscriptions", report.subscriptions),
        ("due", report.due),
        ("held", report.held),
        ("dead", report.dead),
        ("attempts", report.attempts),
        ("event_ids", report.event_ids),
        ("counters", report.counters),
        ("journals", report.journals),
        ("set_aside", report.set_aside),
    ]
}

fn as_json(ctx: &Context, args: &RepairArgs, report: &RepairReport) -> serde_json::Value {
    let copied: serde_json::Map<String, serde_json::Value> = copied(report)
        .into_iter()
        .map(|(name, n)| (name.to_string(), n.into()))
        .collect();
    let unreadable: Vec<serde_json::Value> = report
        .unreadable
        .iter()
        .map(|u| json!({"place": u.place, "key": u.key, "reason": u.reason}))
        .collect();
    json!({
        "from": ctx.store.display().to_string(),
        "to": args.to.display().to_string(),
        "copied": copied,
        "next_subscription_id": report.next_subscription,
        "next_delivery_id": report.next_delivery,
        "unreadable": unreadable,
    })
}

fn print(
    ctx: &Context,
    args: &RepairArgs,
    report: &RepairReport,
    out: &mut dyn Write,
) -> Result<(), Failure> {
    writeln!(
        out,
        "copied {} into {} (the damaged store is unchanged)",
        ctx.store.display(),
        args.to.display()
    )?;
    let mut fields: Vec<(String, String)> = copied(report)
        .into_iter()
        .map(|(name, n)| (name.replace('_', " "), n.to_string()))
        .collect();
    fields.push((
        "next subscription id".into(),
        report.next_subscription.to_string(),
    ));
    fields.push(("next delivery id".into(), report.next_delivery.to_string()));
    output::print_fields(out, &fields)?;
    if report.unreadable.is_empty() {
        writeln!(out, "everything read")?;
        return Ok(());
    }
    writeln!(out, "could not read:")?;
    let mut table = Table::new(&["WHERE", "KEY", "REASON"]);
    for u in &report.unreadable {
        let key = u.key.clone().unwrap_or_else(|| "-".into());
        table.row(vec![u.place.clone(), key, u.reason.clone()]);
    }
    table.print(out)
}
