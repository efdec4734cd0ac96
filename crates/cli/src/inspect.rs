//! `callout stats`, `attempts` and `dead`: what the queue holds and what happened to it.

use std::io::Write;

use callout::core::redact_url;
use callout::store::{Attempt, Counts, Delivery, DeliveryState};
use callout::{DeadFilter, Engine};
use serde::Serialize;
use serde_json::json;

use crate::args::{AttemptsArgs, DeadCommand, DeadSelection, StatsArgs};
use crate::error::{code, Failure};
use crate::output::{self, Table};
use crate::store::{self, Context};
use crate::subscriptions::{get, no_subscription};
use crate::time;

/// Counts as JSON and table cells.
#[derive(Serialize)]
pub(crate) struct CountsView {
    pub(crate) due: u64,
    /// Of the due ones, those that failed before.
    pub(crate) retrying: u64,
    pub(crate) in_flight: u64,
    pub(crate) held: u64,
    pub(crate) delivered: u64,
    pub(crate) dead: u64,
}

impl From<Counts> for CountsView {
    fn from(c: Counts) -> CountsView {
        CountsView {
            due: c.due,
            retrying: c.retrying,
            in_flight: c.in_flight,
            held: c.held,
            delivered: c.delivered,
            dead: c.dead,
        }
    }
}

impl CountsView {
    fn cells(&self) -> [String; 6] {
        [
            self.due,
            self.retrying,
            self.in_flight,
            self.held,
            self.delivered,
            self.dead,
        ]
        .map(|n| n.to_string())
    }
}

/// Runs `body` on the engine, then closes it whatever happened.
fn with_engine(
    ctx: &Context,
    body: impl FnOnce(&Engine) -> Result<(), Failure>,
) -> Result<(), Failure> {
    let engine = ctx.open()?;
    let result = body(&engine);
    let closed = store::close(&engine);
    result.and(closed)
}

pub(crate) fn stats(ctx: &Context, args: &StatsArgs, out: &mut dyn Write) -> Result<(), Failure> {
    with_engine(ctx, |engine| {
        let subs = match args.subscription {
            Some(id) => vec![get(engine, id)?],
            None => engine.subscriptions().list(&Default::default())?,
        };
        let mut rows = Vec::new();
        for sub in &subs {
            let counts = CountsView::from(engine.subscription_stats(sub.id)?);
            rows.push((sub.id, redact_url(&sub.name).into_owned(), counts));
        }
        let total = CountsView::from(engine.stats()?);
        if ctx.json {
            let subscriptions: Vec<_> = rows
                .iter()
                .map(|(id, name, counts)| json!({"id": id, "name": name, "counts": counts}))
                .collect();
            let mut document = json!({ "subscriptions": subscriptions });
            if args.subscription.is_none() {
                document["total"] = json!(total);
            }
            return output::print_json(out, &document);
        }
        let mut table = Table::new(&[
            "SUBSCRIPTION",
            "NAME",
            "DUE",
            "RETRYING",
            "IN FLIGHT",
            "HELD",
            "DELIVERED",
            "DEAD",
        ]);
        for (id, name, counts) in &rows {
            table.row([vec![id.to_string(), name.clone()], counts.cells().to_vec()].concat());
        }
        if args.subscription.is_none() {
            // Deleted subscriptions' deliveries count here too, so the total can exceed the rows.
            table.row([vec!["total".into(), String::new()], total.cells().to_vec()].concat());
        }
        table.print(out)
    })
}

#[derive(Serialize)]
struct AttemptView<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    delivery: Option<u64>,
    number: u32,
    at: String,
    duration_ms: u64,
    status: Option<u16>,
    outcome: &'a str,
    excerpt: &'a str,
}

impl<'a> AttemptView<'a> {
    fn new(delivery: Option<u64>, attempt: &'a Attempt) -> AttemptView<'a> {
        AttemptView {
            delivery,
            number: attempt.number,
            at: output::time(attempt.at),
            duration_ms: attempt.duration_ms,
            status: attempt.status,
            outcome: &attempt.outcome,
            excerpt: &attempt.excerpt,
        }
    }
}

fn attempts_table(views: &[AttemptView<'_>], out: &mut dyn Write) -> Result<(), Failure> {
    let mut table = Table::new(&["DELIVERY", "#", "AT", "MS", "STATUS", "OUTCOME", "RESPONSE"]);
    for view in views {
        table.row(vec![
            view.delivery.map(|d| d.to_string()).unwrap_or_default(),
            view.number.to_string(),
            view.at.clone(),
            view.duration_ms.to_string(),
            view.status.map(|s| s.to_string()).unwrap_or("-".into()),
            output::shorten(view.outcome, 60),
            output::shorten(view.excerpt, 40),
        ]);
    }
    table.print(out)
}

pub(crate) fn attempts(
    ctx: &Context,
    args: &AttemptsArgs,
    out: &mut dyn Write,
) -> Result<(), Failure> {
    with_engine(ctx, |engine| match (args.delivery, args.subscription) {
        (Some(id), _) => {
            let delivery = engine.delivery(id)?.map(|d| DeliveryView::from(&d));
            let attempts = engine.attempts(id)?;
            // A delivered delivery leaves the queue while its attempts stay for a while.
            if delivery.is_none() && attempts.is_empty() {
                return Err(Failure::not_found(format_args!("no delivery {id}")));
            }
            let views: Vec<_> = attempts
                .iter()
                .map(|a| AttemptView::new(Some(id), a))
                .collect();
            if ctx.json {
                return output::print_json(out, &json!({"delivery": delivery, "attempts": views}));
            }
            match delivery {
                Some(view) => writeln!(
                    out,
                    "delivery {} to subscription {}: {} ({}), {}, {}",
                    view.id,
                    view.subscription,
                    output::cell(&view.event_type),
                    output::cell(&view.event_ids.join(",")),
                    output::count(view.attempts, "attempt", "attempts"),
                    view.state_text(),
                )?,
                None => writeln!(out, "delivery {id}: no longer queued (delivered or purged)")?,
            }
            attempts_table(&views, out)
        }
        (None, Some(id)) => {
            let found = engine.subscription_attempts(id, args.limit)?;
            // A deleted subscription's attempts are still worth showing; an id that never
            // had any is a mistake worth saying so.
            if found.is_empty() && engine.subscriptions().get(id)?.is_none() {
                return Err(no_subscription(id));
            }
            let views: Vec<_> = found
                .iter()
                .map(|(delivery, a)| AttemptView::new(Some(*delivery), a))
                .collect();
            if ctx.json {
                return output::print_json(out, &views);
            }
            attempts_table(&views, out)
        }
        (None, None) => Err(Failure::usage("give --delivery ID or --subscription ID")),
    })
}

/// A delivery as JSON: its body as text (it is JSON the engine wrote), times in RFC 3339.
#[derive(Serialize)]
struct DeliveryView {
    id: u64,
    subscription: u64,
    event_type: String,
    event_ids: Vec<String>,
    attempts: u32,
    created_at: String,
    state: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    due_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dead_at: Option<String>,
    body: String,
}

impl DeliveryView {
    fn state_text(&self) -> String {
        match (&self.due_at, &self.dead_at) {
            (_, Some(at)) => format!("dead since {at}"),
            (Some(at), _) => format!("{} at {at}", self.state),
            _ => self.state.to_string(),
        }
    }
}

impl From<&Delivery> for DeliveryView {
    fn from(d: &Delivery) -> DeliveryView {
        let (state, dead_at) = match d.state {
            DeliveryState::Due => ("due", None),
            DeliveryState::InFlight { .. } => ("in_flight", None),
            DeliveryState::Held => ("held", None),
            DeliveryState::Dead { at } => ("dead", Some(output::time(at))),
        };
        DeliveryView {
            id: d.id,
            subscription: d.subscription_id,
            event_type: d.event_type.clone(),
            event_ids: d.event_ids.clone(),
            attempts: d.attempts,
            created_at: output::time(d.created_at),
            state,
            due_at: (state == "due").then(|| output::time(d.due_at)),
            dead_at,
            body: String::from_utf8_lossy(&d.body).into_owned(),
        }
    }
}

fn dead_filter(selection: &DeadSelection) -> Result<DeadFilter, Failure> {
    let now = time::now_ms();
    let instant = |text: &Option<String>, flag: &str, default: u64| match text {
        Some(text) => {
            time::parse_instant(text, now).map_err(|e| Failure::usage(format_args!("{flag}: {e}")))
        }
        None => Ok(default),
    };
    let filter = DeadFilter {
        subscription: selection.subscription,
        from_ms: instant(&selection.from, "--from", 0)?,
        to_ms: instant(&selection.to, "--to", u64::MAX)?,
    };
    if filter.from_ms >= filter.to_ms {
        return Err(Failure::usage("--from must be before --to"));
    }
    Ok(filter)
}

pub(crate) fn dead(
    ctx: &Context,
    command: &DeadCommand,
    out: &mut dyn Write,
) -> Result<(), Failure> {
    let selection = match command {
        DeadCommand::List(args) => &args.selection,
        DeadCommand::Replay(selection) => selection,
        DeadCommand::Purge(args) => &args.selection,
    };
    let filter = dead_filter(selection)?;
    with_engine(ctx, |engine| {
        if let Some(id) = filter.subscription {
            // Dead letters outlive their subscription, so only an id with neither is unknown.
            if engine.subscriptions().get(id)?.is_none()
                && engine
                    .dead_letters(&DeadFilter::subscription(id))?
                    .is_empty()
            {
                return Err(no_subscription(id));
            }
        }
        match command {
            DeadCommand::List(args) => dead_list(ctx, engine, &filter, args.limit, out),
            DeadCommand::Replay(_) => {
                let replayed = engine.replay_dead(&filter)?;
                counted(
                    ctx,
                    out,
                    "replayed",
                    replayed,
                    "put back in the queue, due now",
                )
            }
            DeadCommand::Purge(args) if args.yes => {
                let purged = engine.purge_dead(&filter)?;
                counted(ctx, out, "purged", purged, "deleted")
            }
            DeadCommand::Purge(_) => {
                let count = engine.dead_letters(&filter)?.len() as u64;
                Err(Failure::new(
                    code::USAGE,
                    format_args!(
                        "purge would delete {} for good; add --yes to do it",
                        output::count(count, "dead letter", "dead letters")
                    ),
                ))
            }
        }
    })
}

fn counted(
    ctx: &Context,
    out: &mut dyn Write,
    done: &str,
    count: usize,
    meaning: &str,
) -> Result<(), Failure> {
    if ctx.json {
        return output::print_json(out, &json!({ done: count }));
    }
    let letters = output::count(count as u64, "dead letter", "dead letters");
    writeln!(out, "{done} {letters} ({meaning})")?;
    Ok(())
}

fn dead_list(
    ctx: &Context,
    engine: &Engine,
    filter: &DeadFilter,
    limit: usize,
    out: &mut dyn Write,
) -> Result<(), Failure> {
    let dead = engine.dead_letters(filter)?;
    let shown = &dead[..dead.len().min(limit)];
    if ctx.json {
        let views: Vec<DeliveryView> = shown.iter().map(DeliveryView::from).collect();
        return output::print_json(out, &views);
    }
    let mut table = Table::new(&[
        "DELIVERY",
        "SUBSCRIPTION",
        "EVENT",
        "ATTEMPTS",
        "CREATED",
        "DEAD SINCE",
        "LAST OUTCOME",
    ]);
    for delivery in shown {
        let last = engine.attempts(delivery.id)?.pop();
        let view = DeliveryView::from(delivery);
        table.row(vec![
            view.id.to_string(),
            view.subscription.to_string(),
            view.event_type,
            view.attempts.to_string(),
            view.created_at,
            view.dead_at.unwrap_or_default(),
            last.map(|a| output::shorten(&a.outcome, 60))
                .unwrap_or_default(),
        ]);
    }
    table.print(out)?;
    if dead.len() > shown.len() {
        writeln!(
            out,
            "... {} more (raise --limit to see them)",
            dead.len() - shown.len()
        )?;
    }
    Ok(())
}
