//! What the engine tells the host about its subscriptions, and the host's in-process handlers.

use callout_core::Subscription;

/// Something the host should hear about a subscription, e.g. to send the
/// `errors_email` / `notification_email` an alert.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum NoticeKind {
    /// The subscription kept failing and was set to `too_many_errors`; its deliveries are held.
    TooManyErrors {
        /// Failed attempts in a row when it was switched off.
        consecutive_failures: u32,
    },
    /// The receiver answered 410 Gone: the subscription was stopped.
    Gone,
    /// More callouts of one entity went to the subscription in the current hour than the
    /// configured threshold (a warning, not an error: nothing is dropped).
    ThresholdExceeded {
        /// The entity counted.
        entity: String,
        /// Callouts so far this hour.
        count: u64,
        /// The threshold.
        threshold: u64,
    },
    /// Callouts of one entity that were delayed past the threshold (Autotask's profile delays
    /// them to the next hour, never drops them) have all gone out.
    ThresholdCaughtUp {
        /// The entity counted.
        entity: String,
    },
    /// Deliveries failed every attempt and were dead-lettered (the error log). Told at most
    /// once per the profile's notification interval (Autotask: a day; others: an hour), so an
    /// outage is one notice, not one per delivery.
    DeliveriesFailed {
        /// Deliveries dead-lettered since the last such notice.
        count: u64,
    },
}

/// A notice about one subscription.
#[derive(Debug, Clone)]
pub struct Notice {
    /// What happened.
    pub kind: NoticeKind,
    /// The subscription as it is now. Its `Debug` hides secrets, URL passwords and custom
    /// header values, so a notifier may log a notice as it is.
    pub subscription: Subscription,
    /// Where alerts for it go: its `errors_email` and `notification_email`, when set.
    pub emails: Vec<String>,
}

/// Receives notices; the host sends emails, pages someone, or logs them.
pub trait Notifier: Send + Sync + 'static {
    /// Called on an engine thread; keep it quick.
    fn notify(&self, notice: &Notice);
}

impl<F: Fn(&Notice) + Send + Sync + 'static> Notifier for F {
    fn notify(&self, notice: &Notice) {
        self(notice)
    }
}

/// What an in-process handler (a subscription of kind `handler(name)`) is given.
#[derive(Debug)]
pub struct HandlerCall<'a> {
    /// The subscription.
    pub subscription: &'a Subscription,
    /// The delivery's id, stable across retries.
    pub delivery_id: u64,
    /// The canonical `entity.action` of the delivery's events.
    pub event_type: &'a str,
    /// The body an HTTP receiver would get.
    pub body: &'a [u8],
    /// Which attempt this is, from 1.
    pub attempt: u32,
}

/// A host function that serves `handler(name)` subscriptions. An `Err` is a failed attempt:
/// retried, recorded and counted like an HTTP failure.
pub type Handler = dyn Fn(&HandlerCall<'_>) -> Result<(), String> + Send + Sync;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notice_debug_hides_url_passwords_and_header_values() {
        let notice = Notice {
            kind: NoticeKind::Gone,
            subscription: Subscription::new("https://user:hunter2@receiver.example/x")
                .header("Authorization", "Bearer tok123")
                .deactivation_url("https://user:hunter2@receiver.example/gone"),
            emails: vec!["ops@example.com".into()],
        };
        let shown = format!("{notice:?}");
        assert!(
            !shown.contains("hunter2") && !shown.contains("tok123"),
            "{shown}"
        );
        assert!(
            shown.contains("https://user:***@receiver.example/x"),
            "{shown}"
        );
        assert!(shown.contains("Authorization"), "{shown}");
    }
}
