//! Google API error bodies (`{"error": {"code", "message", "status", "details"}}`, also wrapped
//! in an array) and their classification, including the `RetryInfo.retryDelay` of a 429.

use std::time::Duration;

use http::HeaderMap;
use serde::Deserialize;
use serde_json::Value;

use super::super::common::{Class, Failure, lenient_text, nullable, status_like, to_error};
use crate::gateway::ModelError;

/// The `error` object.
#[derive(Default, Deserialize)]
pub(super) struct ErrorBody {
    #[serde(default)]
    code: Value,
    #[serde(default)]
    message: Value,
    #[serde(default)]
    status: Value,
    #[serde(default, deserialize_with = "nullable")]
    details: Vec<Value>,
}

/// The `error` object of a body (or of its first element, for the array form), if any.
pub(super) fn error_of(value: &Value) -> Option<ErrorBody> {
    let value = match value {
        Value::Array(items) => items.first()?,
        other => other,
    };
    match value.get("error")? {
        inner @ Value::Object(_) => Some(ErrorBody::deserialize(inner).unwrap_or_default()),
        Value::String(message) => Some(ErrorBody {
            message: Value::String(message.clone()),
            ..ErrorBody::default()
        }),
        _ => None,
    }
}

/// The [`ModelError`] an error object describes; `http` is `None` inside a stream.
pub(super) fn error_to_model(
    provider: &str,
    http: Option<(u16, &HeaderMap)>,
    error: ErrorBody,
) -> ModelError {
    let status = lenient_text(&error.status);
    let reasons: Vec<&str> = error
        .details
        .iter()
        .filter_map(|d| d.get("reason").and_then(Value::as_str))
        .collect();
    let message = lenient_text(&error.message);
    let specific = if reasons.iter().any(|r| r.starts_with("API_KEY_"))
        || message.contains("API key not valid")
    {
        Some(Class::Auth)
    } else {
        match status.as_str() {
            "RESOURCE_EXHAUSTED" => Some(Class::RateLimited),
            "UNAVAILABLE" => Some(Class::Overloaded),
            "PERMISSION_DENIED" | "UNAUTHENTICATED" => Some(Class::Auth),
            "INVALID_ARGUMENT" | "FAILED_PRECONDITION" | "NOT_FOUND" | "OUT_OF_RANGE" => {
                Some(Class::BadRequest)
            }
            "INTERNAL" | "UNKNOWN" | "DEADLINE_EXCEEDED" => Some(Class::Server),
            _ => None,
        }
    };
    let retry_delay = error.details.iter().find_map(|d| {
        d.get("retryDelay")
            .and_then(Value::as_str)
            .and_then(parse_delay)
    });
    let failure = Failure {
        specific,
        generic: None,
        body_status: status_like(&error.code),
        message: if message.is_empty() { status } else { message },
    };
    match to_error(provider, http, failure) {
        ModelError::RateLimited {
            provider,
            retry_after: None,
            message,
        } => ModelError::RateLimited {
            provider,
            retry_after: retry_delay,
            message,
        },
        other => other,
    }
}

/// A protobuf JSON duration (`"38s"`, `"1.5s"`), capped at a day.
pub(super) fn parse_delay(text: &str) -> Option<Duration> {
    let secs: f64 = text.trim().strip_suffix('s')?.parse().ok()?;
    (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs.min(86_400.0)))
}
