//! What the store keeps: deliveries, attempts, counts, and the inputs that create them.

use serde::{Deserialize, Serialize};

/// A delivery to store: one request's worth of events for one subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDelivery {
    /// The subscription it goes to.
    pub subscription_id: u64,
    /// The events it carries.
    pub event_ids: Vec<String>,
    /// The canonical `entity.action` (of the first event, for a chunk).
    pub event_type: String,
    /// The body, exactly as it will be sent.
    pub body: Vec<u8>,
    /// When it may first be sent, in Unix milliseconds.
    pub due_at: u64,
    /// Whether its subscription delivers one at a time, in publish order.
    pub ordered: bool,
}

/// Where a delivery is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeliveryState {
    /// Waiting for its due time.
    Due,
    /// Leased to a worker until the deadline (Unix ms).
    InFlight {
        /// When the lease expires and the delivery returns to the due queue.
        until: u64,
    },
    /// Its subscription is switched off; kept until it is switched back on.
    Held,
    /// All attempts failed, or the receiver said 410 Gone. Kept until replayed or purged.
    Dead {
        /// When it was dead-lettered (Unix ms).
        at: u64,
    },
}

/// A stored delivery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    /// Sequential id, stable across retries.
    pub id: u64,
    /// The subscription it goes to.
    pub subscription_id: u64,
    /// The events it carries.
    pub event_ids: Vec<String>,
    /// The canonical `entity.action` of its (first) event.
    pub event_type: String,
    /// The body, exactly as it will be sent. Encoded as one byte string (the same bincode bytes
    /// as a sequence of u8, written and read at once).
    #[serde(with = "serde_bytes")]
    pub body: Vec<u8>,
    /// Attempts made so far.
    pub attempts: u32,
    /// When it is due next (Unix ms).
    pub due_at: u64,
    /// When it was enqueued (Unix ms).
    pub created_at: u64,
    /// Whether its subscription delivers in order.
    pub ordered: bool,
    /// Where it is.
    pub state: DeliveryState,
}

/// One recorded attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    /// 1 for the first attempt.
    pub number: u32,
    /// When it started (Unix ms).
    pub at: u64,
    /// How long it took.
    pub duration_ms: u64,
    /// The HTTP status, when a response arrived.
    pub status: Option<u16>,
    /// `delivered`, `gone`, `throttled`, or the error class and detail.
    pub outcome: String,
    /// The start of the response body (bounded by the caller; the store cuts at 1 KiB too).
    pub excerpt: String,
}

/// What an enqueue stored.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EnqueueReceipt {
    /// The new deliveries' ids, in the order given.
    pub delivery_ids: Vec<u64>,
    /// Event ids seen before within the retention window; deliveries carrying them were skipped.
    pub duplicate_event_ids: Vec<String>,
}

/// Deliveries by state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counts {
    /// Waiting for their due time.
    pub due: u64,
    /// Of the due ones, those that failed at least once and wait for a retry.
    pub retrying: u64,
    /// Leased to a worker.
    pub in_flight: u64,
    /// Held while their subscription is switched off.
    pub held: u64,
    /// Delivered (ever; a running total).
    pub delivered: u64,
    /// Dead-lettered and not yet replayed or purged.
    pub dead: u64,
}

/// Which subscriptions a listing returns (SuperOffice `GetAllWebhooks`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SubscriptionFilter {
    /// Name contains this, ignoring case.
    pub name: Option<String>,
    /// One of the subscription's patterns matches this event name, or equals this pattern.
    pub event: Option<String>,
    /// In this state.
    pub state: Option<callout_core::State>,
}

/// Splits a publish's matched items for one subscription into chunks of at most `chunk_size`,
/// chunk N due at `now_ms + N * chunk_delay_secs` seconds (Pipeliner's `chunk_size` and
/// `chunk_delay`).
///
/// ```
/// let items: Vec<u32> = (0..250).collect();
/// let chunks = callout_store::chunk(&items, 100, 2, 1_000);
/// let shape: Vec<(u64, usize)> = chunks.iter().map(|(due, c)| (*due, c.len())).collect();
/// assert_eq!(shape, [(1_000, 100), (3_000, 100), (5_000, 50)]);
/// ```
pub fn chunk<T>(
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
