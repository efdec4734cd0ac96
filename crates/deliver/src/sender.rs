//! The [`Sender`]: one POST per [`Request`], over shared keep-alive connections, classified
//! into an [`Outcome`].

use std::fmt;
use std::io::{ErrorKind, Read};
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use callout_core::{redact_url, PROFILE_HEADERS, REDACTED, RESERVED_HEADERS, SENDER_HEADERS};
use ureq::http::{HeaderName, HeaderValue, Uri};
use ureq::tls::TlsConfig;
use ureq::Agent;

use crate::connector::{connector, spelled};
use crate::guard::{host_and_port, resolve_permitted, AllowList, GuardResolver};
use crate::outcome::{
    classify, classify_io, BodyEnd, ErrorClass, Outcome, ResponseExcerpt, Verdict,
};
use crate::retry_after::parse_retry_after;
use crate::{DeliverError, Signature};

/// The header carrying the delivery id for every profile (Standard Webhooks also gets it as
/// `webhook-id`), so that receivers and logs can deduplicate retries.
pub const DELIVERY_ID_HEADER: &str = "callout-delivery-id";
/// The content type sent unless the request sets another (a profile such as SuperOffice's).
pub const DEFAULT_CONTENT_TYPE: &str = "application/json";

/// Per-phase time limits of one send.
///
/// ureq's whole-call limits (`timeout_global`, `timeout_per_call`) would make it resolve every
/// host on a new thread (FACTS.md: 2-3x slower), so a send is bounded phase by phase; the
/// worst-case wall time is the sum of the phases. The specification's "total 30 s" is the wait
/// for the response, [`Timeouts::response`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// Establishing the TCP connection (and TLS handshake). Default 5 s.
    pub connect: Duration,
    /// Writing the request head, and separately its body. Default 10 s.
    pub send: Duration,
    /// From the request sent until the response status and headers arrived. Default 30 s.
    pub response: Duration,
    /// Reading the (bounded) response body. Default 10 s.
    pub body: Duration,
}

impl Default for Timeouts {
    fn default() -> Timeouts {
        Timeouts {
            connect: Duration::from_secs(5),
            send: Duration::from_secs(10),
            response: Duration::from_secs(30),
            body: Duration::from_secs(10),
        }
    }
}

impl Timeouts {
    /// The same limit for every phase; handy in tests.
    pub fn all(limit: Duration) -> Timeouts {
        Timeouts {
            connect: limit,
            send: limit,
            response: limit,
            body: limit,
        }
    }

    fn check(&self) -> Result<(), DeliverError> {
        let phases = [
            ("timeouts.connect", self.connect),
            ("timeouts.send", self.send),
            ("timeouts.response", self.response),
            ("timeouts.body", self.body),
        ];
        for (field, limit) in phases {
            if limit.is_zero() {
                return Err(DeliverError::InvalidConfig {
                    field,
                    reason: "must be more than zero".into(),
                });
            }
        }
        Ok(())
    }
}

/// How a [`Sender`] connects. `Default` gives the specification's defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SenderConfig {
    /// Idle keep-alive connections kept per host: set it to the number of worker threads, so
    /// that every worker finds a warm connection. Default 8.
    pub max_idle_connections_per_host: usize,
    /// Idle keep-alive connections kept in all. Default 64.
    pub max_idle_connections: usize,
    /// Default time limits; a [`Request`] may override them.
    pub timeouts: Timeouts,
    /// The most response-body bytes read. A longer body is cut there (see [`BodyEnd`]), so a
    /// receiver cannot make the sender read forever. Default 64 KiB.
    pub max_response_bytes: u64,
    /// How many of those bytes are kept in the [`Outcome`]. Default 1 KiB.
    pub excerpt_bytes: usize,
    /// Internal addresses deliveries may reach anyway (the SSRF guard's exceptions).
    pub allow: AllowList,
    /// An HTTP(S) or SOCKS proxy URL, e.g. `http://proxy.internal:3128`. Without one, no proxy
    /// is used, whatever `HTTP_PROXY` and friends say.
    pub proxy: Option<String>,
    /// The `User-Agent`. Default `callout/<version>`.
    pub user_agent: String,
}

impl Default for SenderConfig {
    fn default() -> SenderConfig {
        SenderConfig {
            max_idle_connections_per_host: 8,
            max_idle_connections: 64,
            timeouts: Timeouts::default(),
            max_response_bytes: 64 * 1024,
            excerpt_bytes: 1024,
            allow: AllowList::new(),
            proxy: None,
            user_agent: concat!("callout/", env!("CARGO_PKG_VERSION")).to_string(),
        }
    }
}

/// One delivery attempt to send.
///
/// `Debug` hides the credentials a request carries: the URL's password (see
/// [`callout_core::redact_url`]), custom header values (any may carry a token) and the signing
/// secrets; the body is shown only by its length.
#[derive(Clone)]
pub struct Request {
    /// The delivery's id, stable across retries: sent as `Callout-Delivery-Id` (and as
    /// `webhook-id` by the standard signature).
    pub delivery_id: String,
    /// The target, `http://` or `https://`.
    pub url: String,
    /// The exact bytes to POST; the signature covers these bytes.
    pub body: Vec<u8>,
    /// How to sign. Default: no signature.
    pub signature: Signature,
    /// The signed timestamp, unix seconds. `None`: the sender's clock at send time.
    pub timestamp: Option<u64>,
    /// The `Content-Type`. `None`: `application/json`.
    pub content_type: Option<String>,
    /// Headers the profile itself defines (e.g. `X-SuperOffice-Event`), set by the engine.
    pub profile_headers: Vec<(String, String)>,
    /// Headers the subscription's owner asked for. They cannot replace the sender's, the
    /// signature's or the profile's headers: see [`Request::check_headers`].
    pub custom_headers: Vec<(String, String)>,
    /// Skip certificate checks (a subscription's `insecure_ssl`).
    pub insecure_tls: bool,
    /// Time limits for this request instead of the sender's.
    pub timeouts: Option<Timeouts>,
}

impl fmt::Debug for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Destructured without `..`, so that a new field cannot be added without deciding here
        // whether it needs hiding.
        let Request {
            delivery_id,
            url,
            body,
            signature,
            timestamp,
            content_type,
            profile_headers,
            custom_headers,
            insecure_tls,
            timeouts,
        } = self;
        let custom_headers: Vec<(&str, &str)> = custom_headers
            .iter()
            .map(|(name, _)| (name.as_str(), REDACTED))
            .collect();
        f.debug_struct("Request")
            .field("delivery_id", delivery_id)
            .field("url", &redact_url(url))
            .field("body_len", &body.len())
            .field("signature", signature)
            .field("timestamp", timestamp)
            .field("content_type", content_type)
            // The profile's own headers (event name, retry count) carry no credentials.
            .field("profile_headers", profile_headers)
            .field("custom_headers", &custom_headers)
            .field("insecure_tls", insecure_tls)
            .field("timeouts", timeouts)
            .finish()
    }
}

impl Request {
    /// An unsigned JSON POST of `body` to `url`; set the other fields as needed.
    pub fn new(
        delivery_id: impl Into<String>,
        url: impl Into<String>,
        body: impl Into<Vec<u8>>,
    ) -> Request {
        Request {
            delivery_id: delivery_id.into(),
            url: url.into(),
            body: body.into(),
            signature: Signature::None,
            timestamp: None,
            content_type: None,
            profile_headers: Vec::new(),
            custom_headers: Vec::new(),
            insecure_tls: false,
            timeouts: None,
        }
    }

    /// Checks the custom headers as [`Sender::send`] will treat them: the first one that is
    /// reserved (set by the sender, any signature scheme, or the profile; compared
    /// case-insensitively) or not valid HTTP is an error.
    ///
    /// `send` never fails a delivery over a custom header: it drops such a header with a
    /// warning, since retrying would not fix it. Call this when a subscription is registered,
    /// to tell its owner.
    pub fn check_headers(&self) -> Result<(), DeliverError> {
        for (name, value) in &self.custom_headers {
            if self.is_reserved(name) {
                return Err(DeliverError::ReservedHeader { name: name.clone() });
            }
            if HeaderName::from_bytes(name.as_bytes()).is_err()
                || HeaderValue::from_str(value).is_err()
            {
                return Err(DeliverError::InvalidHeader { name: name.clone() });
            }
        }
        Ok(())
    }

    /// Whether a custom header `name` is one the sender drops: on callout-core's one list, which
    /// `Subscription::validate` refuses too, or set by this request's profile.
    fn is_reserved(&self, name: &str) -> bool {
        let name = name.trim();
        RESERVED_HEADERS
            .iter()
            .any(|reserved| reserved.eq_ignore_ascii_case(name))
            || self
                .profile_headers
                .iter()
                .any(|(profile, _)| profile.trim().eq_ignore_ascii_case(name))
    }
}

/// A request's headers for ureq, and their names as spelled for the wire (see `connector`).
type Headers<'a> = (Vec<(HeaderName, HeaderValue)>, Vec<&'a str>);

/// The name of a header the sender, a signature scheme or a profile writes, parsed once: `http`
/// copies every name it does not know into an allocation of its own, and these went out with
/// every request.
fn known_header_name(spelled: &str) -> Option<HeaderName> {
    static KNOWN: OnceLock<Vec<HeaderName>> = OnceLock::new();
    KNOWN
        .get_or_init(|| {
            SENDER_HEADERS
                .iter()
                .chain(PROFILE_HEADERS)
                // `from_static` takes only valid, lower-case names (as these lists are).
                .filter(|name| {
                    !name.bytes().any(|b| b.is_ascii_uppercase())
                        && HeaderName::from_bytes(name.as_bytes()).is_ok()
                })
                .map(|name| HeaderName::from_static(name))
                .collect()
        })
        .iter()
        .find(|known| known.as_str().eq_ignore_ascii_case(spelled))
        .cloned()
}

/// Sends [`Request`]s and classifies what happened. Cheap to share: one per engine, used by
/// every worker thread (`Send + Sync`; the connection pool is shared).
#[derive(Debug)]
pub struct Sender {
    /// Certificates checked; the pool every normal delivery uses.
    verified: Agent,
    /// Certificates not checked, for `insecure_tls` requests. A separate agent because ureq's
    /// pool key ignores the TLS config: sharing one pool could hand a connection opened without
    /// checks to a request that wants them.
    insecure: Agent,
    allow: AllowList,
    proxied: bool,
    max_response_bytes: u64,
    excerpt_bytes: usize,
}

impl Sender {
    /// Builds the connection pools. Fails on a zero timeout or an unusable proxy URL.
    pub fn new(config: SenderConfig) -> Result<Sender, DeliverError> {
        config.timeouts.check()?;
        let proxy = match &config.proxy {
            None => None,
            Some(url) => {
                let invalid = |reason: String| DeliverError::InvalidProxy {
                    proxy: redact_url(url).into_owned(),
                    reason: redact_url(&reason).into_owned(),
                };
                let proxy = ureq::Proxy::new(url).map_err(|error| invalid(error.to_string()))?;
                // ureq's SOCKS support is a cargo feature this crate does not enable.
                if !matches!(
                    proxy.protocol(),
                    ureq::ProxyProtocol::Http | ureq::ProxyProtocol::Https
                ) {
                    return Err(invalid(
                        "only http:// and https:// proxies are supported".into(),
                    ));
                }
                Some(proxy)
            }
        };
        let proxy_address = proxy
            .as_ref()
            .map(|proxy| (proxy.host().to_string(), proxy.port()));
        let agent = |tls: TlsConfig| {
            let timeouts = config.timeouts;
            let agent_config = Agent::config_builder()
                // A status is an outcome to classify, and reading the body of a 4xx/5xx keeps
                // the connection for the pool.
                .http_status_as_error(false)
                // A 3xx is an outcome too: following it would deliver somewhere unguarded by
                // the subscription's owner.
                .max_redirects(0)
                .max_redirects_will_error(false)
                .proxy(proxy.clone())
                .user_agent(config.user_agent.as_str())
                .max_idle_connections(config.max_idle_connections)
                .max_idle_connections_per_host(config.max_idle_connections_per_host)
                .timeout_connect(Some(timeouts.connect))
                .timeout_send_request(Some(timeouts.send))
                .timeout_send_body(Some(timeouts.send))
                .timeout_recv_response(Some(timeouts.response))
                .timeout_recv_body(Some(timeouts.body))
                .tls_config(tls)
                .build();
            let resolver = GuardResolver {
                allow: config.allow.clone(),
                proxy: proxy_address.clone(),
            };
            Agent::with_parts(agent_config, connector(), resolver)
        };
        Ok(Sender {
            verified: agent(TlsConfig::default()),
            insecure: agent(TlsConfig::builder().disable_verification(true).build()),
            allow: config.allow.clone(),
            proxied: proxy.is_some(),
            max_response_bytes: config.max_response_bytes,
            excerpt_bytes: config.excerpt_bytes,
        })
    }

    /// POSTs the request once and says what happened. Never panics, never retries, never
    /// follows a redirect.
    pub fn send(&self, request: &Request) -> Outcome {
        let started = Instant::now();
        let failed = |class: ErrorClass, detail: String| {
            // Details quote the URL (ours, or ureq's errors that echo it), password and all.
            let detail = redact_url(&detail).into_owned();
            tracing::debug!(delivery_id = %request.delivery_id, class = class.as_str(), %detail, "delivery failed");
            Outcome {
                verdict: Verdict::Failed { class, detail },
                duration: started.elapsed(),
                response: None,
            }
        };

        let uri: Uri = match request.url.parse() {
            Ok(uri) => uri,
            Err(error) => {
                return failed(
                    ErrorClass::InvalidTarget,
                    format!("`{}`: {error}", request.url),
                )
            }
        };
        let (host, port) = match host_and_port(&uri) {
            Ok(target) => target,
            Err(error) => return failed(ErrorClass::InvalidTarget, error.to_string()),
        };
        if self.proxied {
            // Through a proxy, the proxy resolves the target, so the guard can only check the
            // name here. Residual risk: a DNS answer that changes between this check and the
            // proxy's lookup (rebinding) is not caught; a proxy should apply its own rules.
            if let Err(error) = resolve_permitted(&self.allow, host, port) {
                return failed(classify(&error), error.to_string());
            }
        }

        let (headers, spelling) = match self.headers(request) {
            Ok(headers) => headers,
            Err(detail) => return failed(ErrorClass::InvalidRequest, detail),
        };
        let agent = if request.insecure_tls {
            &self.insecure
        } else {
            &self.verified
        };
        let mut builder = agent.post(uri);
        for (name, value) in headers {
            builder = builder.header(name, value);
        }
        if let Some(timeouts) = request.timeouts {
            // Per-request timeouts do not split the pool: ureq shares connections across
            // configs that differ only in timeouts.
            builder = builder
                .config()
                .timeout_connect(Some(timeouts.connect))
                .timeout_send_request(Some(timeouts.send))
                .timeout_send_body(Some(timeouts.send))
                .timeout_recv_response(Some(timeouts.response))
                .timeout_recv_body(Some(timeouts.body))
                .build();
        }

        let sent = spelled(spelling, || builder.send(request.body.as_slice()));
        let mut response = match sent {
            Ok(response) => response,
            Err(error) => return failed(classify(&error), error.to_string()),
        };
        let status = response.status().as_u16();
        let header_text = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|value| value.to_str().ok())
                .map(str::to_string)
        };
        let retry_after = header_text("retry-after");
        let location = header_text("location");
        let excerpt = self.read_body(status, response.body_mut());

        let verdict = match status {
            200..=299 => Verdict::Delivered,
            410 => Verdict::Gone,
            429 | 503 => Verdict::Throttled {
                retry_after: retry_after
                    .and_then(|value| parse_retry_after(&value, SystemTime::now())),
            },
            _ => Verdict::Failed {
                class: ErrorClass::HttpStatus,
                detail: match location {
                    Some(location) if (300..400).contains(&status) => {
                        let location = redact_url(&location);
                        format!("HTTP {status} to {location} (redirects are not followed)")
                    }
                    _ => format!("HTTP {status}"),
                },
            },
        };
        let outcome = Outcome {
            verdict,
            duration: started.elapsed(),
            response: Some(excerpt),
        };
        tracing::trace!(delivery_id = %request.delivery_id, status, duration = ?outcome.duration, "delivery answered");
        outcome
    }

    /// Every header of the request, in order: the sender's, the signature's, the profile's,
    /// then the custom ones that pass [`Request::check_headers`]'s rules; and their names as
    /// spelled, for the wire. An `Err` is a header the engine itself supplied and got wrong,
    /// which retrying cannot fix.
    fn headers<'a>(&self, request: &'a Request) -> Result<Headers<'a>, String> {
        let timestamp = request.timestamp.unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|since| since.as_secs())
                .unwrap_or(0)
        });
        let mut headers = Vec::with_capacity(8);
        let mut spelling = Vec::with_capacity(8);
        let mut push_value =
            |name: &'a str, value: Result<HeaderValue, ()>| -> Result<(), String> {
                let spelled = name.trim();
                let name = match known_header_name(spelled) {
                    Some(known) => known,
                    None => HeaderName::from_bytes(spelled.as_bytes())
                        .map_err(|_| format!("invalid header name `{name}`"))?,
                };
                let value = value.map_err(|_| format!("invalid value for header `{name}`"))?;
                headers.push((name, value));
                spelling.push(spelled);
                Ok(())
            };
        // The default is a constant, so it costs no copy.
        let content_type = match &request.content_type {
            Some(given) => HeaderValue::from_str(given).map_err(|_| ()),
            None => Ok(HeaderValue::from_static(DEFAULT_CONTENT_TYPE)),
        };
        push_value("Content-Type", content_type)?;
        let copied = |value: &str| HeaderValue::from_str(value).map_err(|_| ());
        push_value(DELIVERY_ID_HEADER, copied(&request.delivery_id))?;
        // Owned values become the header's storage rather than copied into one.
        for (name, value) in
            request
                .signature
                .headers(&request.delivery_id, timestamp, &request.body)
        {
            push_value(name, HeaderValue::try_from(value).map_err(|_| ()))?;
        }
        for (name, value) in &request.profile_headers {
            let reserved = SENDER_HEADERS
                .iter()
                .any(|reserved| reserved.eq_ignore_ascii_case(name.trim()));
            if reserved {
                return Err(format!(
                    "the profile header `{name}` would replace the sender's"
                ));
            }
            push_value(name, copied(value))?;
        }
        for (name, value) in &request.custom_headers {
            if request.is_reserved(name) {
                tracing::warn!(delivery_id = %request.delivery_id, header = %name, "custom header dropped: the sender, signature or profile sets it");
                continue;
            }
            if push_value(name, copied(value)).is_err() {
                tracing::warn!(delivery_id = %request.delivery_id, header = %name, "custom header dropped: not a valid HTTP header");
            }
        }
        Ok((headers, spelling))
    }

    /// Reads the body to its end (so the connection can be reused) or to the size limit,
    /// keeping the first `excerpt_bytes`.
    fn read_body(&self, status: u16, body: &mut ureq::Body) -> ResponseExcerpt {
        let mut reader = body.as_reader();
        let mut excerpt = Vec::new();
        let mut body_len: u64 = 0;
        let mut buffer = [0u8; 8 * 1024];
        let body_end = loop {
            // Ask for at most one byte past the limit: enough to know the body is longer.
            let room = self
                .max_response_bytes
                .saturating_add(1)
                .saturating_sub(body_len);
            let want = usize::try_from(room)
                .unwrap_or(usize::MAX)
                .min(buffer.len());
            match reader.read(&mut buffer[..want]) {
                Ok(0) => break BodyEnd::Complete,
                Ok(read) => {
                    let keep = self.excerpt_bytes.saturating_sub(excerpt.len()).min(read);
                    excerpt.extend_from_slice(&buffer[..keep]);
                    body_len += read as u64;
                    if body_len > self.max_response_bytes {
                        break BodyEnd::CutAtLimit;
                    }
                }
                Err(error) if error.kind() == ErrorKind::Interrupted => continue,
                Err(error) => {
                    break BodyEnd::Failed {
                        class: classify_io(&error),
                        detail: ureq::Error::from(error).to_string(),
                    }
                }
            }
        };
        ResponseExcerpt {
            status,
            body: excerpt,
            body_len,
            body_end,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_header_the_sender_or_a_profile_writes_is_parsed_once() {
        for name in SENDER_HEADERS.iter().chain(PROFILE_HEADERS) {
            let known = known_header_name(&name.to_ascii_uppercase());
            assert_eq!(known.as_ref().map(HeaderName::as_str), Some(*name));
        }
        assert_eq!(known_header_name("X-Mixed-Case"), None);
    }
}
