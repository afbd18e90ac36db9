//! Provider wire formats: how one call becomes an HTTP request, and how the bytes that come
//! back become text, token counts and a classified error. Pure code, no I/O: the HTTP client
//! ([`super::http`]) sends what [`WireFormat::build`] describes and feeds the answer back.
//!
//! One file per format: [`anthropic`] (Messages API), [`openai`] (Chat Completions; also every
//! OpenAI-compatible server: vLLM, llama.cpp, LiteLLM, Mistral...), [`gemini`]
//! (`generateContent` / `streamGenerateContent?alt=sse`), [`ollama`] (`/api/chat`, NDJSON).
//! [`sse`] and [`ndjson`] split streamed bodies into events. Nothing here may panic on any
//! bytes from the network.

pub mod anthropic;
pub mod common;
pub mod gemini;
pub mod ndjson;
pub mod ollama;
pub mod openai;
pub mod sse;

use std::time::Duration;

use http::HeaderMap;

use super::{ChatMessage, ModelError};
use crate::types::Usage;

/// One call to one upstream model, as a wire format sends it.
#[derive(Clone, Debug, PartialEq)]
pub struct ProviderRequest {
    /// The upstream model id, e.g. `claude-3-7-sonnet-20250219`.
    pub model: String,
    /// The conversation; a leading system message becomes the format's system field.
    pub messages: Vec<ChatMessage>,
    /// Most tokens in the answer.
    pub max_tokens: u32,
    /// Sampling temperature.
    pub temperature: Option<f32>,
    /// Nucleus sampling.
    pub top_p: Option<f32>,
    /// Stop sequences.
    pub stop: Vec<String>,
    /// Ask for a streamed answer.
    pub stream: bool,
    /// Mark the system prompt cacheable (Anthropic prompt caching); set by the gateway for
    /// long system prompts that many calls share.
    pub cache_system_prompt: bool,
}

/// Where a provider is and how to authenticate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// Base URL without a trailing slash, e.g. `https://api.anthropic.com`.
    pub base_url: String,
    /// The API key, if the provider needs one.
    pub api_key: Option<String>,
}

/// An HTTP request to send (always a POST).
#[derive(Clone, Debug, PartialEq)]
pub struct HttpCall {
    /// The full URL.
    pub url: String,
    /// Headers, content-type included.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

/// A complete answer.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Completion {
    /// The text.
    pub text: String,
    /// The model id the provider reports (may be more specific than the one asked for).
    pub model: String,
    /// Token counts (cost is filled in by the gateway).
    pub usage: Usage,
    /// Why generation stopped, in the provider's words (`end_turn`, `stop`, `length`, ...).
    pub finish_reason: Option<String>,
}

/// Something decoded from a streamed answer.
#[derive(Clone, Debug, PartialEq)]
pub enum StreamEvent {
    /// A piece of text, in order.
    Delta(String),
}

/// Decodes one streamed answer, incrementally.
pub trait StreamDecoder: Send {
    /// Feeds the next bytes of the body (any split, even inside a UTF-8 character or an event);
    /// pushes the events they complete. An error event in the stream is an `Err`.
    fn feed(&mut self, bytes: &[u8], out: &mut Vec<StreamEvent>) -> Result<(), ModelError>;

    /// The body ended: the assembled answer, or an error if the stream was cut before the
    /// format's terminal event.
    fn finish(self: Box<Self>) -> Result<Completion, ModelError>;
}

/// One provider wire format.
pub trait WireFormat: Send + Sync + 'static {
    /// `anthropic`, `openai`, `gemini` or `ollama`.
    fn kind(&self) -> &'static str;

    /// The base URL used when none is configured.
    fn default_base_url(&self) -> &'static str;

    /// The HTTP request for `request`.
    fn build(&self, endpoint: &Endpoint, request: &ProviderRequest) -> HttpCall;

    /// Parses a whole (non-streamed) answer, or any non-2xx answer (streamed or not) into its
    /// classified error. `provider` names the provider in errors.
    fn parse(
        &self,
        provider: &str,
        status: u16,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<Completion, ModelError>;

    /// A decoder for a 2xx streamed answer.
    fn decoder(&self, provider: &str) -> Box<dyn StreamDecoder>;
}

/// `Retry-After` (seconds or an HTTP date) and `retry-after-ms`, if present.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    if let Some(ms) = headers
        .get("retry-after-ms")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|v| v.is_finite() && *v >= 0.0)
    {
        return Some(Duration::from_secs_f64((ms / 1000.0).min(86_400.0)));
    }
    let value = headers.get("retry-after")?.to_str().ok()?.trim();
    if let Ok(secs) = value.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0)
            .then(|| Duration::from_secs_f64(secs.min(86_400.0)));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(
        when.duration_since(std::time::SystemTime::now())
            .unwrap_or(Duration::ZERO)
            .min(Duration::from_secs(86_400)),
    )
}

/// The wire format called `kind`.
pub fn format(kind: &str) -> Option<std::sync::Arc<dyn WireFormat>> {
    Some(match kind {
        "anthropic" => std::sync::Arc::new(anthropic::Anthropic),
        "openai" => std::sync::Arc::new(openai::OpenAi),
        "gemini" => std::sync::Arc::new(gemini::Gemini),
        "ollama" => std::sync::Arc::new(ollama::Ollama),
        _ => return None,
    })
}
