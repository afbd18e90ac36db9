//! Each format's own error bodies, with the type/status names and default
//! messages the real APIs use for each HTTP status.

use axum::http::StatusCode;
use serde_json::json;

/// `{"type":"error","error":{"type":…,"message":…},"request_id":…}`.
pub(super) fn anthropic(
    status: StatusCode,
    message: Option<&str>,
    request_id: &str,
) -> serde_json::Value {
    let (kind, default) = match status.as_u16() {
        400 => (
            "invalid_request_error",
            "There was an issue with the format or content of your request.",
        ),
        401 => ("authentication_error", "invalid x-api-key"),
        402 => (
            "billing_error",
            "Your credit balance is too low to access the Anthropic API.",
        ),
        403 => (
            "permission_error",
            "Your API key does not have permission to use the specified resource.",
        ),
        404 => (
            "not_found_error",
            "The requested resource could not be found.",
        ),
        413 => (
            "request_too_large",
            "Request exceeds the maximum allowed number of bytes.",
        ),
        429 => (
            "rate_limit_error",
            "This request would exceed the rate limit for your organization. Please retry after the time given in the retry-after header.",
        ),
        504 => ("timeout_error", "Request timed out."),
        529 => ("overloaded_error", "Overloaded"),
        _ if status.is_client_error() => (
            "invalid_request_error",
            "There was an issue with the format or content of your request.",
        ),
        _ => ("api_error", "Internal server error"),
    };
    json!({
        "type": "error",
        "error": {"type": kind, "message": message.unwrap_or(default)},
        "request_id": request_id,
    })
}

/// `{"error":{"message":…,"type":…,"param":null,"code":…}}`.
pub(super) fn openai(status: StatusCode, message: Option<&str>) -> serde_json::Value {
    let (kind, code, default) = match status.as_u16() {
        401 => (
            "invalid_request_error",
            Some("invalid_api_key"),
            "Incorrect API key provided.",
        ),
        403 => (
            "request_forbidden",
            Some("unsupported_country_region_territory"),
            "Country, region, or territory not supported",
        ),
        404 => (
            "invalid_request_error",
            Some("model_not_found"),
            "The model does not exist or you do not have access to it.",
        ),
        429 => (
            "requests",
            Some("rate_limit_exceeded"),
            "Rate limit reached for requests. Please try again later.",
        ),
        503 => (
            "server_error",
            None,
            "The engine is currently overloaded, please try again later.",
        ),
        _ if status.is_client_error() => ("invalid_request_error", None, "Invalid request."),
        _ => (
            "server_error",
            None,
            "The server had an error while processing your request. Sorry about that!",
        ),
    };
    json!({"error": {"message": message.unwrap_or(default), "type": kind, "param": null, "code": code}})
}

/// `{"error":{"code":…,"message":…,"status":…}}` (google.rpc.Status), with a
/// `RetryInfo` detail when a retry delay is given.
pub(super) fn gemini(
    status: StatusCode,
    message: Option<&str>,
    retry_after: Option<f64>,
) -> serde_json::Value {
    let (name, default) = match status.as_u16() {
        400 => ("INVALID_ARGUMENT", "Request contains an invalid argument."),
        401 => (
            "UNAUTHENTICATED",
            "Request had invalid authentication credentials.",
        ),
        403 => ("PERMISSION_DENIED", "The caller does not have permission"),
        404 => ("NOT_FOUND", "Requested entity was not found."),
        409 => ("ABORTED", "The operation was aborted."),
        429 => (
            "RESOURCE_EXHAUSTED",
            "Resource has been exhausted (e.g. check quota).",
        ),
        499 => ("CANCELLED", "The operation was cancelled."),
        501 => (
            "NOT_IMPLEMENTED",
            "Operation is not implemented, or supported, or enabled.",
        ),
        503 => (
            "UNAVAILABLE",
            "The model is overloaded. Please try again later.",
        ),
        504 => (
            "DEADLINE_EXCEEDED",
            "Deadline expired before operation could complete.",
        ),
        _ if status.is_client_error() => (
            "FAILED_PRECONDITION",
            "The request cannot be served in the current state.",
        ),
        _ => (
            "INTERNAL",
            "An internal error has occurred. Please retry or report in https://developers.generativeai.google/guide/troubleshooting",
        ),
    };
    let mut error =
        json!({"code": status.as_u16(), "message": message.unwrap_or(default), "status": name});
    if let Some(secs) = retry_after {
        error["details"] = json!([{
            "@type": "type.googleapis.com/google.rpc.RetryInfo",
            "retryDelay": format!("{}s", secs.ceil() as u64),
        }]);
    }
    json!({ "error": error })
}

/// `{"error": "…"}`.
pub(super) fn ollama(status: StatusCode, message: Option<&str>) -> serde_json::Value {
    let default = match status.as_u16() {
        400 => "invalid request",
        401 => "unauthorized",
        403 => "forbidden",
        404 => "model not found, try pulling it first",
        429 => "too many requests",
        503 => "server busy, please try again.  maximum pending requests exceeded",
        _ => "an unexpected error occurred",
    };
    json!({ "error": message.unwrap_or(default) })
}
