//! `callout publish`: one event, or a batch of them, in the engine's JSON form.

use std::io::Write;

use callout::Event;
use serde_json::{json, Value};

use crate::args::PublishArgs;
use crate::error::Failure;
use crate::input;
use crate::output;
use crate::store::{self, Context};

/// Events per `publish_batch` call: each call is atomic, and this bounds how much one holds.
const BATCH: usize = 1_000;

pub(crate) fn run(ctx: &Context, args: &PublishArgs, out: &mut dyn Write) -> Result<(), Failure> {
    let text = input::text(args.event.as_deref(), args.file.as_deref())?;
    // Every line is checked before anything is published, so a typo on line 900 does not
    // leave the first 899 events published and the rest not.
    let events = parse_events(&text)?;
    if events.is_empty() {
        return Err(Failure::usage("no events to publish"));
    }
    let engine = ctx.open()?;
    let published = publish(&engine, events);
    let closed = store::close(&engine);
    let (event_ids, deliveries, duplicates) = published?;
    closed?;
    if ctx.json {
        return output::print_json(
            out,
            &json!({"event_ids": event_ids, "deliveries": deliveries, "duplicates": duplicates}),
        );
    }
    writeln!(
        out,
        "published {}: {}, {}",
        output::count(event_ids.len() as u64, "event", "events"),
        output::count(deliveries.len() as u64, "delivery", "deliveries"),
        output::count(duplicates.len() as u64, "duplicate", "duplicates"),
    )?;
    Ok(())
}

type Published = (Vec<String>, Vec<u64>, Vec<String>);

fn publish(engine: &callout::Engine, events: Vec<Event>) -> Result<Published, Failure> {
    let mut all: Published = Default::default();
    let mut events = events.into_iter().peekable();
    while events.peek().is_some() {
        let receipt = engine.publish_batch(events.by_ref().take(BATCH).collect())?;
        all.0.extend(receipt.event_ids);
        all.1.extend(receipt.deliveries);
        all.2.extend(receipt.duplicates);
    }
    Ok(all)
}

/// One JSON event, a JSON array of events, or JSON lines (blank lines skipped).
fn parse_events(text: &str) -> Result<Vec<Event>, Failure> {
    let event = |value: Value, place: &str| {
        Event::check_fields(&value).map_err(|e| Failure::usage(format_args!("{place}{e}")))?;
        serde_json::from_value::<Event>(value)
            .map_err(|e| Failure::usage(format_args!("{place}malformed event: {e}")))
    };
    if let Ok(document) = serde_json::from_str::<Value>(text) {
        return match document {
            Value::Array(items) => items
                .into_iter()
                .enumerate()
                .map(|(n, item)| event(item, &format!("event {}: ", n + 1)))
                .collect(),
            single => Ok(vec![event(single, "")?]),
        };
    }
    let mut events = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let place = format!("line {}: ", n + 1);
        let value: Value = serde_json::from_str(line)
            .map_err(|e| Failure::usage(format_args!("{place}malformed JSON: {e}")))?;
        events.push(event(value, &place)?);
    }
    Ok(events)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_event_an_array_or_json_lines() {
        let one = r#"{"entity":"Contact","action":"updated","id":"42"}"#;
        assert_eq!(parse_events(one).unwrap().len(), 1);
        let array = format!("[{one},{one}]");
        assert_eq!(parse_events(&array).unwrap().len(), 2);
        let lines = format!("{one}\n\n{one}\n{one}\n");
        assert_eq!(parse_events(&lines).unwrap().len(), 3);
    }

    #[test]
    fn an_unknown_key_is_refused_with_the_one_meant() {
        let text = "{\"entity\":\"Contact\",\"action\":\"created\",\"id\":\"1\"}\n{\"entity\":\"Contact\",\"action\":\"created\",\"id\":\"2\",\"skipkey\":\"sync\"}\n";
        let message = parse_events(text).unwrap_err().message.unwrap();
        assert_eq!(
            message,
            r#"line 2: unknown field "skipkey" (did you mean "skip_key"?)"#
        );
        let related = r#"[{"entity":"Account","action":"linked_document","id":"1","related":{"entity":"Document","id":"9","dta":{}}}]"#;
        let message = parse_events(related).unwrap_err().message.unwrap();
        assert_eq!(
            message,
            r#"event 1: unknown field "related.dta" (did you mean "data"?)"#
        );
    }

    #[test]
    fn a_bad_line_is_named() {
        let text = "{\"entity\":\"Contact\",\"action\":\"created\",\"id\":\"1\"}\n{\"entity\":\"Contact\"}\n";
        let failure = parse_events(text).unwrap_err();
        let message = failure.message.unwrap();
        assert!(message.starts_with("line 2: malformed event:"), "{message}");
        assert!(message.contains("action"), "{message}");
    }
}
