//! Anthropic error bodies: `{"type": "error", "error": {"type": ..., "message": ...}}`, as a
//! whole answer or as an `error` stream event, and their classification.

use http::HeaderMap;
use serde::Deserialize;
use serde_json::Value;

use super::super::common::{Class, Failure, lenient_text, nullable, raw_message, to_error};
use crate::gateway::ModelError;

/// A whole error answer.
#[derive(Deserialize)]
pub(super) struct ErrorEnvelope {
    pub(super) error: ErrorBody,
}

/// The `error` object.
#[derive(Default, Deserialize)]
pub(super) struct ErrorBody {
    #[serde(rename = "type", default, deserialize_with = "nullable")]
    kind: String,
    #[serde(default)]
    message: Value,
}

/// What an error object says.
pub(super) fn failure(error: &ErrorBody) -> Failure {
    let (specific, body_status) = match error.kind.as_str() {
        "rate_limit_error" => (Some(Class::RateLimited), Some(429)),
        "overloaded_error" => (Some(Class::Overloaded), Some(529)),
        "api_error" => (Some(Class::Server), Some(500)),
        "timeout_error" => (Some(Class::Server), Some(504)),
        "invalid_request_error" => (Some(Class::BadRequest), Some(400)),
        "not_found_error" => (Some(Class::BadRequest), Some(404)),
        "request_too_large" => (Some(Class::ContextTooLong), Some(413)),
        "authentication_error" => (Some(Class::Auth), Some(401)),
        "billing_error" => (Some(Class::Auth), Some(402)),
        "permission_error" => (Some(Class::Auth), Some(403)),
        _ => (None, None),
    };
    let message = lenient_text(&error.message);
    Failure {
        specific,
        generic: None,
        body_status,
        message: if message.is_empty() {
            error.kind.clone()
        } else {
            message
        },
    }
}

/// The error a non-2xx body describes, JSON or not.
pub(super) fn error_body(
    provider: &str,
    http: Option<(u16, &HeaderMap)>,
    body: &[u8],
) -> ModelError {
    let failure = serde_json::from_slice::<ErrorEnvelope>(body)
        .map(|e| failure(&e.error))
        .unwrap_or_else(|_| Failure {
            message: raw_message(body),
            ..Failure::default()
        });
    to_error(provider, http, failure)
}
