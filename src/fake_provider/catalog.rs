//! The model-listing routes: `GET /v1/models` (Anthropic's or OpenAI's shape,
//! by the request's headers), `GET /v1beta/models`, `GET /api/tags` and
//! Ollama's `GET /` liveness probe.

use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// `GET /v1/models`: Anthropic's list when the request carries Anthropic
/// headers, OpenAI's otherwise.
pub(super) async fn v1_models(headers: HeaderMap) -> Response {
    if headers.contains_key("anthropic-version") || headers.contains_key("x-api-key") {
        anthropic_models()
    } else {
        openai_models()
    }
}

/// `GET /v1/models` in Anthropic's shape.
fn anthropic_models() -> Response {
    let models = [
        ("claude-opus-4-1", "Claude Opus 4.1"),
        ("claude-sonnet-4-5", "Claude Sonnet 4.5"),
        ("claude-haiku-4-5", "Claude Haiku 4.5"),
    ];
    let data: Vec<_> = models
        .iter()
        .map(|(id, name)| {
            json!({"type": "model", "id": id, "display_name": name, "created_at": "2025-01-01T00:00:00Z"})
        })
        .collect();
    axum::Json(json!({
        "data": data,
        "has_more": false,
        "first_id": models[0].0,
        "last_id": models[models.len() - 1].0,
    }))
    .into_response()
}

/// `GET /v1/models` in OpenAI's shape.
fn openai_models() -> Response {
    let data: Vec<_> = ["gpt-4o", "gpt-4o-mini", "gpt-4.1", "gpt-4.1-mini"]
        .iter()
        .map(|id| json!({"id": id, "object": "model", "created": 1_715_367_049, "owned_by": "system"}))
        .collect();
    axum::Json(json!({"object": "list", "data": data})).into_response()
}

/// `GET /v1beta/models`.
pub(super) async fn gemini_models() -> Response {
    let models: Vec<_> = [
        ("gemini-2.5-pro", "Gemini 2.5 Pro"),
        ("gemini-2.5-flash", "Gemini 2.5 Flash"),
    ]
    .iter()
    .map(|(id, name)| {
        json!({
            "name": format!("models/{id}"), "version": "001", "displayName": name,
            "inputTokenLimit": 1_048_576, "outputTokenLimit": 65_536,
            "supportedGenerationMethods": ["generateContent", "countTokens"],
        })
    })
    .collect();
    axum::Json(json!({ "models": models })).into_response()
}

/// `GET /api/tags`: the locally "pulled" models.
pub(super) async fn ollama_tags() -> Response {
    let models: Vec<_> = [
        ("llama3.2:latest", "llama", "3.2B"),
        ("qwen2.5:7b", "qwen2", "7.6B"),
    ]
    .iter()
    .map(|(name, family, size)| {
        json!({
            "name": name, "model": name, "modified_at": "2025-01-01T00:00:00.000000000Z",
            "size": 2_019_393_189_u64,
            "digest": "a80c4f17acd55265feec403c7aef86be0c25983ab279d83f3bcd3abbcb5b8b72",
            "details": {"parent_model": "", "format": "gguf", "family": family,
                "families": [family], "parameter_size": size, "quantization_level": "Q4_K_M"},
        })
    })
    .collect();
    axum::Json(json!({ "models": models })).into_response()
}

/// `GET /`, which Ollama clients use as a liveness probe.
pub(super) async fn ollama_root() -> &'static str {
    "Ollama is running"
}
