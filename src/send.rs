//! Turning a stored delivery and its subscription into one attempt: an HTTP request through
//! callout-deliver, or a call of the host's handler.

use std::time::Duration;

use callout_core::{InvalidSubscription, Kind, Profile, Subscription};
use callout_deliver::sign::standard;
use callout_deliver::{ErrorClass, Outcome, Request, Sender, Signature, Timeouts, Verdict};

use crate::notify::{Handler, HandlerCall};

/// The signature scheme a subscription's profile signs with at `now_ms`, from its live secrets
/// (a rotated-out secret stops signing when its grace ends, whether or not the record has been
/// cleaned yet). Standard Webhooks signs with each (`v1` for `whsec_`, `v1a` for `whsk_`), a
/// vendor profile with the first. Secrets that do not parse were refused when the subscription
/// was stored ([`check_secrets`]); any that slip through are skipped, so the request goes out
/// unsigned for that secret rather than not at all.
pub(crate) fn signature(sub: &Subscription, now_ms: u64) -> Signature {
    let mut live = sub.live_secrets(now_ms);
    if sub.profile == Profile::Standard {
        return Signature::Standard {
            secrets: live
                .filter_map(|s| standard::Secret::parse(s.expose()).ok())
                .collect(),
        };
    }
    let Some(first) = live.next().map(|s| s.expose().to_string()) else {
        return Signature::None;
    };
    match sub.profile {
        Profile::Pipeliner => Signature::Pipeliner {
            key: first,
            encoding: Default::default(),
        },
        Profile::Superoffice => Signature::SuperOffice { secret: first },
        Profile::Autotask => Signature::Autotask { secret: first },
        Profile::Standard => Signature::None,
    }
}

/// Refuses a Standard Webhooks secret that callout-deliver cannot sign with, beyond what
/// `validate()` sees (core has no ed25519): a `whsk_` key whose public half is not its secret
/// half's would sign what its `whpk_` never verifies, silently.
pub(crate) fn check_secrets(sub: &Subscription) -> Result<(), InvalidSubscription> {
    if sub.profile != Profile::Standard {
        return Ok(());
    }
    for secret in &sub.secrets {
        if let Err(error) = standard::Secret::parse(secret.expose()) {
            return Err(InvalidSubscription::BadSecret {
                reason: error.to_string(),
            });
        }
    }
    Ok(())
}

/// The request for one attempt of a delivery.
pub(crate) fn request(
    sub: &Subscription,
    message_id: &str,
    attempts_made: u32,
    body: Vec<u8>,
    now_ms: u64,
    defaults: Timeouts,
) -> Request {
    let mut request = Request::new(message_id, sub.target_url.clone(), body);
    request.signature = signature(sub, now_ms);
    request.timestamp = Some(now_ms / 1000);
    request.custom_headers = sub.headers.clone();
    if sub.profile == Profile::Superoffice {
        superoffice_headers(&mut request, sub, attempts_made);
    }
    request.insecure_tls = sub.insecure_tls;
    // A vendor's timeout (Autotask: 10 s) applies unless the subscription sets its own.
    let timeout_ms = sub
        .timeout_ms
        .or(callout_core::VendorRules::for_profile(sub.profile).timeout_ms);
    if sub.connect_timeout_ms.is_some() || timeout_ms.is_some() {
        let mut timeouts = defaults;
        if let Some(ms) = sub.connect_timeout_ms {
            timeouts.connect = Duration::from_millis(ms);
        }
        if let Some(ms) = timeout_ms {
            let limit = Duration::from_millis(ms);
            timeouts.send = limit;
            timeouts.response = limit;
            timeouts.body = limit;
        }
        request.timeouts = Some(timeouts);
    }
    request
}

/// SuperOffice's own headers: the event and EventId, read back from the stored body (it is the
/// source of truth for both), and how many times this EventId was sent before. Attempts come in
/// cycles (three with one EventId); a failed cycle is sent again as a new event, so from the
/// second cycle on the body and header carry a new EventId, derived from the first so that every
/// attempt of a cycle, across restarts too, carries the same one.
fn superoffice_headers(request: &mut Request, sub: &Subscription, attempts_made: u32) {
    let per_cycle = callout_core::VendorRules::for_profile(sub.profile)
        .cycle
        .map_or(u32::MAX, |c| c.attempts.max(1));
    let (cycle, retry) = (attempts_made / per_cycle, attempts_made % per_cycle);
    let parsed: serde_json::Value = serde_json::from_slice(&request.body).unwrap_or_default();
    let event = parsed["Event"].as_str().unwrap_or_default();
    let first_id = parsed["EventId"].as_str().unwrap_or_default();
    let mut event_id = first_id.to_string();
    if cycle > 0 && !first_id.is_empty() {
        event_id = uuid::Uuid::new_v5(
            &uuid::Uuid::NAMESPACE_OID,
            format!("{first_id}/cycle/{cycle}").as_bytes(),
        )
        .to_string();
        request.body = replace_first(
            &request.body,
            format!("\"EventId\":\"{first_id}\"").as_bytes(),
            format!("\"EventId\":\"{event_id}\"").as_bytes(),
        );
    }
    request.content_type = Some(callout_core::vendor::superoffice::CONTENT_TYPE.to_string());
    request.profile_headers =
        callout_core::vendor::superoffice::headers(sub, event, &event_id, retry, false)
            .into_iter()
            .filter(|(name, _)| name.to_ascii_lowercase().starts_with("x-superoffice-"))
            .collect();
}

/// `haystack` with the first occurrence of `from` replaced by `to`; every other byte is kept,
/// so a body changes only where it must.
fn replace_first(haystack: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    match haystack.windows(from.len()).position(|w| w == from) {
        Some(at) => [&haystack[..at], to, &haystack[at + from.len()..]].concat(),
        None => haystack.to_vec(),
    }
}

/// One attempt's result, in the engine's terms: HTTP and handlers alike.
pub(crate) struct AttemptResult {
    pub(crate) verdict: Verdict,
    pub(crate) duration: Duration,
    pub(crate) status: Option<u16>,
    /// A bounded, lossy-UTF-8 excerpt of the response body, for the attempt log.
    pub(crate) excerpt: String,
}

impl From<Outcome> for AttemptResult {
    fn from(outcome: Outcome) -> Self {
        AttemptResult {
            status: outcome.status(),
            excerpt: outcome
                .response
                .as_ref()
                .map(|r| r.body_text().into_owned())
                .unwrap_or_default(),
            verdict: outcome.verdict,
            duration: outcome.duration,
        }
    }
}

/// Which delivery an attempt is of, and its number (1 for the first).
pub(crate) struct Call<'a> {
    pub(crate) delivery_id: u64,
    pub(crate) message_id: &'a str,
    pub(crate) event_type: &'a str,
    pub(crate) attempt: u32,
}

/// Runs one attempt: the host's handler for `handler(name)` subscriptions, HTTP otherwise.
pub(crate) fn attempt(
    sender: &Sender,
    handler: Option<&Handler>,
    sub: &Subscription,
    call: Call<'_>,
    body: Vec<u8>,
    now_ms: u64,
    defaults: Timeouts,
) -> AttemptResult {
    let Call {
        delivery_id,
        message_id,
        event_type,
        attempt,
    } = call;
    match &sub.kind {
        Kind::Webhook => sender
            .send(&request(
                sub,
                message_id,
                attempt.saturating_sub(1),
                body,
                now_ms,
                defaults,
            ))
            .into(),
        Kind::Handler(name) => {
            let started = std::time::Instant::now();
            let verdict = match handler {
                None => Verdict::Failed {
                    class: ErrorClass::InvalidTarget,
                    detail: format!("no handler registered as {name:?}"),
                },
                Some(handler) => {
                    let call = HandlerCall {
                        subscription: sub,
                        delivery_id,
                        event_type,
                        body: &body,
                        attempt,
                    };
                    // A panicking handler is a failed attempt, not a dead worker thread.
                    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| handler(&call)))
                    {
                        Ok(Ok(())) => Verdict::Delivered,
                        Ok(Err(message)) => Verdict::Failed {
                            class: ErrorClass::Io,
                            detail: format!("handler {name:?} failed: {message}"),
                        },
                        Err(_) => Verdict::Failed {
                            class: ErrorClass::Io,
                            detail: format!("handler {name:?} panicked"),
                        },
                    }
                }
            };
            AttemptResult {
                verdict,
                duration: started.elapsed(),
                status: None,
                excerpt: String::new(),
            }
        }
    }
}
