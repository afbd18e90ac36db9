//! A fake LLM provider server for tests, benchmarks and chaos runs.
//!
//! It speaks the real wire formats of four providers on loopback, streaming
//! included, so that an HTTP client written against the official API docs
//! works against it unchanged:
//!
//! | format | routes |
//! | --- | --- |
//! | Anthropic | `POST /v1/messages`, `GET /v1/models` (with an `anthropic-version` or `x-api-key` header) |
//! | OpenAI | `POST /v1/chat/completions`, `GET /v1/models` |
//! | Gemini | `POST /v1beta/models/{model}:generateContent`, `POST /v1beta/models/{model}:streamGenerateContent[?alt=sse]`, `GET /v1beta/models` |
//! | Ollama | `POST /api/chat`, `GET /api/tags`, `GET /` |
//!
//! and their embedding APIs ([`embed`]): OpenAI `POST /v1/embeddings`, Ollama `POST /api/embed`,
//! Gemini `POST /v1beta/models/{model}:embedContent` and `:batchEmbedContents`, answering
//! deterministic vectors (aimesh's hashing embedder, so related texts are similar).
//!
//! Answers are deterministic: `Fake <format> answer to: <the first 200
//! characters of the last user message>. …`, cut at the request's token limit
//! (4 characters a token) with the format's "length" stop reason. Token usage
//! is estimated the same way. Streamed answers come in about 8 pieces.
//!
//! Faults are scripted with [`FaultRule`]s, through [`FakeProvider::push_fault`]
//! or the control routes:
//!
//! | route | effect |
//! | --- | --- |
//! | `POST /_fake/faults` | adds one rule or a JSON list of rules |
//! | `GET /_fake/faults` | lists live rules with their `remaining` uses |
//! | `DELETE /_fake/faults` | removes every rule |
//! | `GET /_fake/calls` | the [`CallStats`] |
//! | `POST /_fake/reset` | removes rules, zeroes counters, forgets the Anthropic prompt cache |
//!
//! ```json
//! {"format": "anthropic", "times": 2, "fault": {"kind": "status", "status": 529}}
//! ```

mod anthropic;
mod body;
mod catalog;
mod control;
pub mod embed;
mod errors;
mod faults;
mod gemini;
mod net;
mod ollama;
mod openai;
mod stats;
mod text;
mod wire;

#[cfg(test)]
mod embed_shard_tests;
#[cfg(test)]
mod embed_tests;
#[cfg(test)]
mod testkit;
#[cfg(test)]
mod tests;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use dashmap::DashSet;
use tokio::net::TcpListener;
use tokio::sync::watch;

pub use faults::{Fault, FaultRule, Format};
pub use stats::{CallStats, RECENT_CAPACITY, RecordedCall};

use faults::FaultBook;
use net::{ConnHandle, FakeListener};
use stats::Stats;

/// Options for the fake provider.
#[derive(Debug, Clone, Default)]
pub struct FakeOptions {
    /// Latency added before every answer (default 0).
    pub latency: Duration,
    /// Delay between streamed chunks (default 0).
    pub chunk_delay: Duration,
}

/// The server's shared state (scripted faults, call counts). Cheap to clone (Arc inside).
#[derive(Clone)]
pub struct FakeProvider {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for FakeProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeProvider")
            .field("options", &self.inner.options)
            .finish_non_exhaustive()
    }
}

/// State shared by every handler.
struct Inner {
    options: FakeOptions,
    faults: FaultBook,
    stats: Stats,
    /// Hashes of Anthropic system prefixes marked with `cache_control`.
    prompt_cache: DashSet<u64>,
    /// Becomes true when [`FakeProvider::serve`]'s shutdown future resolves:
    /// releases stalled streams and cuts sleeps short.
    shutdown: watch::Sender<bool>,
}

impl Inner {
    /// Sleeps for `delay`, or less if the server is shutting down.
    async fn pause(&self, delay: Duration) {
        let mut shutdown = self.shutdown.subscribe();
        body::sleep_unless_shutdown(delay, &mut shutdown).await;
    }
}

impl FakeProvider {
    /// A provider with no faults and zeroed counters.
    pub fn new(options: FakeOptions) -> Self {
        Self {
            inner: Arc::new(Inner {
                options,
                faults: FaultBook::default(),
                stats: Stats::default(),
                prompt_cache: DashSet::new(),
                shutdown: watch::Sender::new(false),
            }),
        }
    }

    /// The axum router with all provider routes and the /_fake control routes.
    ///
    /// Under [`FakeProvider::serve`] the `reset` fault kills the connection
    /// (RST, no byte written). Served some other way, it answers 502 with a
    /// body that fails at once; hyper then drops the connection, in practice
    /// before writing the head, but with a FIN and no guarantee.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/v1/messages", post(anthropic::messages))
            .route("/v1/chat/completions", post(openai::chat_completions))
            .route("/v1/embeddings", post(embed::openai))
            .route("/v1/models", get(catalog::v1_models))
            .route("/v1beta/models", get(catalog::gemini_models))
            .route("/v1beta/models/{model_and_method}", post(gemini::generate))
            .route("/api/chat", post(ollama::chat))
            .route("/api/embed", post(embed::ollama))
            .route("/api/tags", get(catalog::ollama_tags))
            .route("/", get(catalog::ollama_root))
            .merge(control::routes())
            .fallback(not_found)
            .with_state(self.clone())
    }

    /// Serves on `listener` until `shutdown` resolves.
    ///
    /// Accepted sockets get `TCP_NODELAY`. When `shutdown` resolves the server
    /// stops accepting, releases stalled streams (their connections are
    /// aborted), cuts fault delays short and returns once every connection is
    /// closed.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        self.inner.shutdown.send_replace(false);
        let app = self
            .router()
            .into_make_service_with_connect_info::<ConnHandle>();
        let inner = self.inner.clone();
        axum::serve(FakeListener::new(listener), app)
            .with_graceful_shutdown(async move {
                shutdown.await;
                inner.shutdown.send_replace(true);
            })
            .await
    }

    /// Adds a fault rule (same effect as POST /_fake/faults).
    ///
    /// Unlike the control route this does not reject a `status` outside
    /// 400–599: such a status is served as 500.
    pub fn push_fault(&self, rule: FaultRule) {
        if let Err(problem) = rule.validate() {
            tracing::warn!("fake provider fault rule: {problem}");
        }
        self.inner.faults.push([rule]);
    }

    /// Calls received so far (same data as GET /_fake/calls).
    pub fn calls(&self) -> CallStats {
        self.inner.stats.snapshot()
    }

    /// Clears faults and counts (and the Anthropic prompt cache).
    pub fn reset(&self) {
        self.inner.faults.clear();
        self.inner.stats.reset();
        self.inner.prompt_cache.clear();
    }
}

async fn not_found(State(_): State<FakeProvider>, request: Request) -> Response {
    let message = format!(
        "the fake provider has no route for {} {}",
        request.method(),
        request.uri().path()
    );
    let body = serde_json::json!({"error": {"message": message, "type": "not_found_error"}});
    (StatusCode::NOT_FOUND, axum::Json(body)).into_response()
}
