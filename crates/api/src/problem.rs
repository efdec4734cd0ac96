//! Why a request failed, in one dialect-neutral form that each dialect renders in its own error
//! shape: an HTTP status, a short code, a message for people and the field at fault.

use callout::core::{InvalidSubscription, VendorError};
use http::StatusCode;

/// A failed request, before a dialect shapes the response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Problem {
    pub(crate) status: StatusCode,
    /// Machine-readable: `invalid`, `not_found`, `unauthorized`, `too_large`, ...
    pub(crate) code: &'static str,
    pub(crate) message: String,
    /// The field at fault, in the dialect's own naming, when one is.
    pub(crate) field: Option<String>,
    /// For a 405: the methods the endpoint takes, for the `Allow` header.
    pub(crate) allow: Option<String>,
}

impl Problem {
    pub(crate) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Problem {
            status,
            code,
            message: message.into(),
            field: None,
            allow: None,
        }
    }

    pub(crate) fn field(mut self, field: impl Into<String>) -> Self {
        let field = field.into();
        self.field = (!field.is_empty()).then_some(field);
        self
    }

    /// A bad request naming `field`.
    pub(crate) fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Problem::new(StatusCode::BAD_REQUEST, "invalid", message).field(field)
    }

    /// A body that is not the JSON (or XML) it should be.
    pub(crate) fn malformed(message: impl Into<String>) -> Self {
        Problem::new(StatusCode::BAD_REQUEST, "malformed", message)
    }

    /// Nothing of the caller's tenant has this id: the same answer whether it exists for
    /// another tenant or not at all, so ids cannot be probed.
    pub(crate) fn not_found(what: &str) -> Self {
        Problem::new(StatusCode::NOT_FOUND, "not_found", format!("no {what}"))
    }

    pub(crate) fn no_route() -> Self {
        Problem::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint")
    }

    /// A method the endpoint does not take; `allow` lists those it does (`GET, POST`).
    pub(crate) fn method_not_allowed(allow: &str) -> Self {
        Problem {
            allow: Some(allow.to_string()),
            ..Problem::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                format!("this endpoint takes {allow}"),
            )
        }
    }

    /// The response a dialect shaped for this problem, with its `Allow` header.
    pub(crate) fn finish(
        allow: Option<String>,
        mut response: http::Response<Vec<u8>>,
    ) -> http::Response<Vec<u8>> {
        if let Some(value) = allow.and_then(|a| http::HeaderValue::from_str(&a).ok()) {
            response.headers_mut().insert(http::header::ALLOW, value);
        }
        response
    }

    pub(crate) fn unauthorized(message: impl Into<String>) -> Self {
        Problem::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    pub(crate) fn too_large(size: usize, limit: usize) -> Self {
        Problem::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("the body is {size} bytes or more, at most {limit} allowed"),
        )
    }

    /// A failure of the engine or store, not of the request; the detail goes to the log, not
    /// to the caller.
    pub(crate) fn internal(error: &dyn std::fmt::Display) -> Self {
        tracing::error!(target: "callout_api", "internal error: {error}");
        Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the engine could not complete the request",
        )
    }
}

/// The field an [`InvalidSubscription`] names, in callout's JSON: its messages read
/// `<field>: <reason>`.
pub(crate) fn invalid_field(error: &InvalidSubscription) -> Option<String> {
    match error {
        InvalidSubscription::UnknownField { field, .. } => Some(field.clone()),
        InvalidSubscription::Malformed { .. } => None,
        InvalidSubscription::BadSecret { .. } => Some("secrets".into()),
        other => other
            .to_string()
            .split_once(": ")
            .map(|(field, _)| field.to_string())
            .filter(|field| !field.contains(' ')),
    }
}

impl From<InvalidSubscription> for Problem {
    fn from(error: InvalidSubscription) -> Problem {
        let field = invalid_field(&error).unwrap_or_default();
        Problem::invalid(field, error.to_string())
    }
}

impl From<VendorError> for Problem {
    fn from(error: VendorError) -> Problem {
        let problem = Problem::invalid(error.field.clone(), error.to_string());
        if error.field.is_empty() && error.source.is_none() && error.reason.contains("JSON") {
            return Problem {
                code: "malformed",
                ..problem
            };
        }
        problem
    }
}

impl From<callout::Error> for Problem {
    fn from(error: callout::Error) -> Problem {
        use callout::store::StoreError;
        use callout::Error as E;
        match error {
            E::Invalid(invalid) => invalid.into(),
            E::NotFound(_)
            | E::Store(StoreError::UnknownSubscription(_) | StoreError::UnknownDelivery(_)) => {
                Problem::not_found("such subscription")
            }
            E::TestFailed { status, detail } => Problem::new(
                StatusCode::BAD_GATEWAY,
                "test_failed",
                match status {
                    Some(status) => {
                        format!("the target answered the test event with {status}: {detail}")
                    }
                    None => format!("the test event was not delivered: {detail}"),
                },
            ),
            E::TooManyEvents { .. } => Problem::invalid("events", error.to_string())
                .with_status(StatusCode::PAYLOAD_TOO_LARGE),
            E::EventTooLarge { .. } | E::BatchTooLarge { .. } => Problem::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                error.to_string(),
            ),
            E::EmptyEventName { part, .. } => Problem::invalid(part, error.to_string()),
            other => Problem::internal(&other),
        }
    }
}

impl Problem {
    fn with_status(mut self, status: StatusCode) -> Self {
        self.status = status;
        self
    }
}
