//! OpenAI-style error bodies and their classification: `{"error": {"message", "type", "param",
//! "code"}}`, `{"error": "..."}`, and vLLM's and Mistral's top-level `{"object": "error", ...}`,
//! with `message` possibly an object and `code` a string, a number or `null`.

use serde::Deserialize;
use serde_json::Value;

use super::super::common::{Class, Failure, lenient_text, raw_message, status_like};

#[derive(Default, Deserialize)]
struct ErrorFields {
    #[serde(default)]
    message: Value,
    #[serde(rename = "type", default)]
    kind: Value,
    #[serde(default)]
    code: Value,
}

/// The failure an error body describes, whatever the body is.
pub(super) fn failure_of_body(body: &[u8]) -> Failure {
    serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| failure_of_value(&v))
        .unwrap_or_else(|| Failure {
            message: raw_message(body),
            ..Failure::default()
        })
}

/// The failure a JSON value describes, if it is an error object.
pub(super) fn failure_of_value(value: &Value) -> Option<Failure> {
    let fields = match value.get("error") {
        Some(Value::String(message)) => ErrorFields {
            message: Value::String(message.clone()),
            ..ErrorFields::default()
        },
        Some(inner @ Value::Object(_)) => ErrorFields::deserialize(inner).unwrap_or_default(),
        _ if value.get("object").and_then(Value::as_str) == Some("error") => {
            ErrorFields::deserialize(value).unwrap_or_default()
        }
        Some(other) if !other.is_null() => ErrorFields {
            message: other.clone(),
            ..ErrorFields::default()
        },
        _ => return None,
    };
    let code = lenient_text(&fields.code);
    let kind = lenient_text(&fields.kind);
    let specific = match code.as_str() {
        "context_length_exceeded" | "string_above_max_length" => Some(Class::ContextTooLong),
        "rate_limit_exceeded" => Some(Class::RateLimited),
        "insufficient_quota"
        | "billing_hard_limit_reached"
        | "invalid_api_key"
        | "account_deactivated" => Some(Class::Auth),
        "content_filter" | "content_policy_violation" => Some(Class::ContentFiltered),
        _ => None,
    }
    .or(match kind.as_str() {
        "insufficient_quota" | "authentication_error" | "permission_error" => Some(Class::Auth),
        "exceed_context_size_error" => Some(Class::ContextTooLong),
        "overloaded_error" => Some(Class::Overloaded),
        _ => None,
    });
    let generic = match kind.as_str() {
        "invalid_request_error" | "BadRequestError" | "NotFoundError" | "not_found_error" => {
            Some(Class::BadRequest)
        }
        "rate_limit_error" | "RateLimitError" | "tokens" | "requests" => Some(Class::RateLimited),
        "server_error" | "api_error" | "InternalServerError" => Some(Class::Server),
        _ => None,
    };
    let mut message = lenient_text(&fields.message);
    if message.is_empty() {
        message = if code.is_empty() { kind } else { code };
    }
    Some(Failure {
        specific,
        generic,
        body_status: status_like(&fields.code),
        message,
    })
}
