//! The publish path: events matched against the registry, shaped into each profile's body,
//! chunked, and enqueued durably in one call; also the state events the engine raises itself.

use std::collections::HashMap;
use std::sync::Arc;

use callout_core::{vendor, CompiledSubscription, Event, Profile, Subscription, VendorRules};

use crate::body::{self, Expander};
use crate::engine::{Receipt, Shared};
use crate::error::Error;

/// What the publish path needs besides the registry and the store.
pub(crate) struct Publisher {
    pub(crate) expander: Option<Arc<Expander>>,
    pub(crate) pipeliner: vendor::pipeliner::PipelinerContext,
    pub(crate) limits: PublishLimits,
}

/// How much one publish may carry. A publish over a limit is refused with a typed error on the
/// caller's thread, before anything is matched, shaped or stored, so an oversized publish costs
/// no memory beyond what the caller holds and never delays another publish.
///
/// ```
/// let limits = callout::PublishLimits::default();
/// assert_eq!(limits.event_bytes, 1024 * 1024);
/// assert_eq!((limits.batch_events, limits.batch_bytes), (10_000, 16 * 1024 * 1024));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PublishLimits {
    /// One event, as compact JSON (`data`, `previous`, the related record and the rest; default
    /// 1 MiB).
    pub event_bytes: usize,
    /// Events in one publish (default 10,000).
    pub batch_events: usize,
    /// All of a publish's events together, as compact JSON (default 16 MiB).
    pub batch_bytes: usize,
}

impl Default for PublishLimits {
    fn default() -> PublishLimits {
        PublishLimits {
            event_bytes: 1024 * 1024,
            batch_events: 10_000,
            batch_bytes: 16 * 1024 * 1024,
        }
    }
}

/// Refuses a publish over `limits`, or with an event that names no entity or action.
fn check(events: &[Event], limits: &PublishLimits) -> Result<(), Error> {
    if events.len() > limits.batch_events {
        return Err(Error::TooManyEvents {
            count: events.len(),
            max: limits.batch_events,
        });
    }
    let mut batch_bytes = 0usize;
    for (index, event) in events.iter().enumerate() {
        if event.entity.trim().is_empty() {
            return Err(Error::EmptyEventName {
                index,
                part: "entity",
            });
        }
        if event.action.as_str().trim().is_empty() {
            return Err(Error::EmptyEventName {
                index,
                part: "action",
            });
        }
        let max = limits
            .event_bytes
            .min(limits.batch_bytes.saturating_sub(batch_bytes));
        // The whole event, as the host could have sent it: its data, previous fields, the
        // related record and every string around them.
        let bytes = callout_core::json_len_within(event, max).map_err(|bytes| {
            if bytes > limits.event_bytes || max == limits.event_bytes {
                Error::EventTooLarge {
                    index,
                    bytes,
                    max: limits.event_bytes,
                }
            } else {
                Error::BatchTooLarge {
                    bytes: batch_bytes + bytes,
                    max: limits.batch_bytes,
                }
            }
        })?;
        batch_bytes += bytes;
    }
    Ok(())
}

/// Publishes events: the engine's publish, also used for the state events it raises itself.
pub(crate) fn publish_events(
    shared: &Shared,
    events: Vec<Event>,
    wanted: impl Fn(&CompiledSubscription) -> bool,
) -> Result<Receipt, Error> {
    check(&events, &shared.publisher.limits)?;
    let now = shared.clock.now_ms();
    let mut events = events;
    // An id repeated inside the batch is a duplicate of its first occurrence; the store
    // catches repeats across calls.
    let mut repeated = Vec::new();
    let mut seen = std::collections::HashSet::new();
    events.retain(|e| match &e.event_id {
        Some(id) if !seen.insert(id.clone()) => {
            repeated.push(id.clone());
            false
        }
        _ => true,
    });
    // Only ids the host chose can repeat; generated ones are unique and need no memory.
    let host_ids: Vec<String> = events.iter().filter_map(|e| e.event_id.clone()).collect();
    let mut new_ids = crate::ids::new_event_ids(events.len() - host_ids.len());
    for event in &mut events {
        if event.event_id.is_none() {
            event.event_id = new_ids.next();
        }
        event.occurred_at.get_or_insert(now);
    }
    let event_ids: Vec<String> = events.iter().filter_map(|e| e.event_id.clone()).collect();
    let span = tracing::info_span!("publish", events = events.len());
    let _guard = span.enter();
    let mut per_subscription: Vec<(Arc<CompiledSubscription>, Vec<&Event>)> = Vec::new();
    {
        let matcher = shared.registry.matcher()?;
        // Found by a scan while few subscriptions matched (the usual case, with no map to
        // allocate), through a map past that.
        let mut slots: HashMap<u64, usize> = HashMap::new();
        for event in &events {
            for sub in matcher.matches(event).into_iter().filter(|s| wanted(s)) {
                if slots.is_empty() && per_subscription.len() >= 8 {
                    slots.extend(
                        per_subscription
                            .iter()
                            .enumerate()
                            .map(|(n, (s, _))| (s.id(), n)),
                    );
                }
                let found = if slots.is_empty() {
                    per_subscription
                        .iter()
                        .position(|(s, _)| s.id() == sub.id())
                } else {
                    slots.get(&sub.id()).copied()
                };
                let slot = found.unwrap_or_else(|| {
                    per_subscription.push((Arc::clone(sub), Vec::new()));
                    let slot = per_subscription.len() - 1;
                    if !slots.is_empty() {
                        slots.insert(sub.id(), slot);
                    }
                    slot
                });
                per_subscription[slot].1.push(event);
            }
        }
    }
    let expander = shared.publisher.expander.as_deref();
    let mut deliveries = Vec::new();
    for (sub, matched) in &per_subscription {
        let s = sub.subscription();
        let chunks = chunk(
            matched,
            s.events_per_request() as usize,
            s.chunk_delay.max(0) as u64,
            now,
        );
        let mut sequence = match s.profile {
            Profile::Autotask => shared.store.reserve_sequence(s.id, chunks.len() as u64)?,
            _ => 0,
        };
        for (due_at, chunk) in chunks {
            let name = chunk.first().map(|e| e.type_name()).unwrap_or_default();
            let body = match s.profile {
                Profile::Standard => body::standard(sub, chunk, &name, now, expander),
                Profile::Pipeliner => {
                    let events: Vec<Event> = chunk
                        .iter()
                        .map(|e| body::expanded(sub, e, expander).into_owned())
                        .collect();
                    vendor::pipeliner::chunk_body(sub, &events, &shared.publisher.pipeliner)
                }
                Profile::Autotask | Profile::Superoffice => {
                    let Some(event) = chunk.first().map(|e| body::expanded(sub, e, expander))
                    else {
                        continue;
                    };
                    if s.profile == Profile::Autotask {
                        sequence += 1;
                        vendor::autotask::callout_body(
                            sub,
                            &event,
                            sequence - 1,
                            Default::default(),
                        )
                    } else {
                        let event_id = uuid::Uuid::new_v4().to_string();
                        let ticks = event.occurred_at.unwrap_or(now).saturating_mul(10_000);
                        match state_event(&event) {
                            Some((webhook, change)) => vendor::superoffice::state_body(
                                s, webhook, change, &event_id, ticks,
                            ),
                            None => {
                                vendor::superoffice::callout_body(sub, &event, &event_id, ticks)
                            }
                        }
                    }
                }
            };
            deliveries.push(callout_store::NewDelivery {
                subscription_id: s.id,
                event_ids: chunk.iter().filter_map(|e| e.event_id.clone()).collect(),
                event_type: name,
                body,
                due_at,
                ordered: ordered(s),
                message_id: String::new(),
                order_key: order_key(s, chunk),
            });
        }
    }
    let message_ids = crate::ids::new_message_ids(deliveries.len());
    for (delivery, id) in deliveries.iter_mut().zip(message_ids) {
        delivery.message_id = id;
    }
    let receipt = shared.store.enqueue(&host_ids, deliveries, now)?;
    tracing::debug!(deliveries = receipt.delivery_ids.len(), "published");
    shared.dispatch.wake();
    Ok(Receipt {
        event_ids,
        deliveries: receipt.delivery_ids,
        duplicates: {
            let mut all = receipt.duplicate_event_ids;
            all.extend(repeated);
            all
        },
    })
}

/// A state event the engine raised (`webhook<id>.started|stopped|errors`): the webhook and the
/// change, so SuperOffice receivers get their `webhook.*` body.
fn state_event(event: &Event) -> Option<(u64, vendor::superoffice::StateChange)> {
    use vendor::superoffice::StateChange;
    let webhook = event
        .canonical_entity()
        .strip_prefix("webhook")?
        .parse()
        .ok()?;
    let change = match event.action.as_str() {
        "started" => StateChange::Started,
        "stopped" => StateChange::Stopped,
        "errors" => StateChange::Errors,
        _ => return None,
    };
    Some((webhook, change))
}

/// Announces that a subscription changed state, as the event `webhook<id>.<started|stopped|
/// errors>` (SuperOffice's state events), to whatever subscriptions listen for it.
pub(crate) fn announce_state(shared: &Shared, sub: &Subscription) {
    let change = vendor::superoffice::StateChange::entering(sub.state);
    let event = Event::new(
        format!("webhook{}", sub.id),
        change.verb(),
        sub.id.to_string(),
    );
    // Only subscriptions that name this webhook's events hear them: `*` means the host's
    // events, not the engine's own.
    let entity = callout_core::Part::Name(format!("webhook{}", sub.id));
    let names_it = |s: &CompiledSubscription| {
        s.subscription()
            .patterns()
            .is_ok_and(|patterns| patterns.iter().any(|p| p.entity == entity))
    };
    if let Err(error) = publish_events(shared, vec![event], names_it) {
        tracing::error!(%error, subscription = sub.id, "could not publish the state event");
    }
}

/// The key a delivery is ordered by when its subscription orders each record's changes: the
/// record's canonical entity and id (a chunk is one event then; see
/// `Subscription::events_per_request`).
fn order_key(sub: &Subscription, chunk: &[&Event]) -> Option<String> {
    let event = chunk.first().filter(|_| sub.ordered_by_record)?;
    Some(format!("{}/{}", event.canonical_entity(), event.id))
}

/// Whether a subscription delivers one at a time: its own setting, or its vendor's (Autotask
/// delivers FIFO per webhook).
pub(crate) fn ordered(sub: &Subscription) -> bool {
    sub.ordered || VendorRules::for_profile(sub.profile).ordered
}

/// Splits a publish's matched items for one subscription into chunks of at most `chunk_size`,
/// chunk N due at `now_ms + N * chunk_delay_secs` seconds (Pipeliner's `chunk_size` and
/// `chunk_delay`). Chunking is publish policy: the store is given the deliveries it makes.
fn chunk<T>(
    items: &[T],
    chunk_size: usize,
    chunk_delay_secs: u64,
    now_ms: u64,
) -> Vec<(u64, &[T])> {
    items
        .chunks(chunk_size.max(1))
        .enumerate()
        .map(|(n, chunk)| {
            (
                now_ms.saturating_add(
                    (n as u64)
                        .saturating_mul(chunk_delay_secs)
                        .saturating_mul(1000),
                ),
                chunk,
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_splits_by_size_and_delay() {
        let items: Vec<u32> = (0..250).collect();
        let shape: Vec<(u64, usize)> = chunk(&items, 100, 2, 5_000)
            .iter()
            .map(|(due, c)| (*due, c.len()))
            .collect();
        assert_eq!(shape, [(5_000, 100), (7_000, 100), (9_000, 50)]);
        let ones = chunk(&items[..3], 1, 0, 7);
        assert_eq!(ones.len(), 3);
        assert!(ones.iter().all(|(due, c)| *due == 7 && c.len() == 1));
        assert_eq!(ones[2].1, [2]);
        assert!(chunk::<u32>(&[], 100, 2, 0).is_empty());
        // A size of 0 is treated as 1 rather than looping forever.
        assert_eq!(chunk(&items[..2], 0, 1, 0).len(), 2);
    }
}
