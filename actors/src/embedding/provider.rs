//! [`ProviderEmbedder`]: a provider's embedding API, reached with the gateway's configuration of
//! that provider (base URL, key from its environment variable, timeout, answer bound) and the
//! gateway's HTTP client.
//!
//! Texts go in batches of at most the format's [`Format::max_batch`] (and about
//! [`MAX_BATCH_CHARS`] characters); each text is cut at [`MAX_INPUT_CHARS`] characters so one long
//! item cannot make a whole batch fail. Blank texts are not sent: their vector is empty, which
//! the index skips. Vectors come back L2-normalised ([`crate::search::normalize`]). Every
//! request has the provider's timeout and is counted in metrics:
//!
//! - `aimesh_embedding_requests_total{provider, outcome}` (`ok` or [`EmbeddingError::code`]),
//! - `aimesh_embedding_inputs_total{provider}`, `aimesh_embedding_tokens_total{provider}`
//!   (reported by the provider, else estimated at four characters a token),
//! - `aimesh_embedding_duration_seconds{provider}`,
//! - `aimesh_embedding_cost_picodollars_total{provider}` when the gateway's catalog prices the
//!   model (a `[gateway.models.<name>]` with this provider and model id).

use std::time::Duration;

use tokio::time::Instant;

use super::{EmbedFailure, EmbeddingError};
use crate::gateway::ModelError;
use crate::gateway::catalog::{Backend, Catalog, Price, ProviderSpec};
use crate::gateway::http::HttpClient;
use crate::gateway::wire::{self, Endpoint};
use crate::search::embeddings::{self, Format};
use crate::types::Usage;

/// Longest text sent, in characters (about 2,000 tokens: within every embedding model's
/// context); the rest of a longer text does not count towards its vector.
pub const MAX_INPUT_CHARS: usize = 8_000;

/// Characters one request carries at most (a single text may exceed it alone).
pub const MAX_BATCH_CHARS: usize = 200_000;

/// Why a provider cannot embed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EmbedderConfigError {
    /// No provider of that name is configured.
    #[error("provider {provider:?} is not configured")]
    NotConfigured {
        /// The name asked for.
        provider: String,
    },
    /// The provider's API has no embeddings (Anthropic, in-process providers).
    #[error(
        "provider {provider:?} ({kind}) has no embedding API; use an openai, openai-compatible, ollama or gemini provider"
    )]
    NoEmbeddingApi {
        /// The provider.
        provider: String,
        /// Its kind.
        kind: String,
    },
    /// The model name is empty.
    #[error("no embedding model named after {provider:?}")]
    NoModel {
        /// The provider.
        provider: String,
    },
    /// The HTTP client could not be built.
    #[error("{0}")]
    Client(String),
}

/// Embeds texts with one model of one provider.
pub struct ProviderEmbedder {
    provider: String,
    model: String,
    name: String,
    format: Format,
    endpoint: Endpoint,
    timeout: Duration,
    price: Option<Price>,
    http: HttpClient,
    /// The node's spend and budgets: priced calls are charged to the global budget.
    ledger: std::sync::OnceLock<std::sync::Arc<crate::gateway::ledger::Ledger>>,
}

impl std::fmt::Debug for ProviderEmbedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProviderEmbedder")
            .field("name", &self.name)
            .field("base_url", &self.endpoint.base_url)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// The embedding wire format of a gateway provider kind.
pub fn format_of(kind: &str) -> Option<Format> {
    match kind {
        "openai" | "openai-compatible" => Some(Format::OpenAi),
        "ollama" => Some(Format::Ollama),
        "gemini" => Some(Format::Gemini),
        _ => None,
    }
}

impl ProviderEmbedder {
    /// `model` of `provider` as the gateway's `catalog` configures it; the catalog's price of
    /// that model id on that provider, if any, is used for the cost metric.
    pub fn from_catalog(
        catalog: &Catalog,
        provider: &str,
        model: &str,
    ) -> Result<Self, EmbedderConfigError> {
        let spec =
            catalog
                .provider(provider)
                .ok_or_else(|| EmbedderConfigError::NotConfigured {
                    provider: provider.to_owned(),
                })?;
        let price = catalog
            .models()
            .find(|m| m.provider == provider && (m.upstream == model || m.name == model))
            .map(|m| m.price)
            .filter(|p| !p.is_free());
        Self::new(spec, model, price)
    }

    /// `model` of the provider `spec` describes.
    pub fn new(
        spec: &ProviderSpec,
        model: &str,
        price: Option<Price>,
    ) -> Result<Self, EmbedderConfigError> {
        let Backend::Http {
            kind,
            base_url,
            api_key,
        } = &spec.backend
        else {
            return Err(EmbedderConfigError::NoEmbeddingApi {
                provider: spec.name.clone(),
                kind: "in-process".to_owned(),
            });
        };
        let format = format_of(kind).ok_or_else(|| EmbedderConfigError::NoEmbeddingApi {
            provider: spec.name.clone(),
            kind: kind.clone(),
        })?;
        if model.trim().is_empty() {
            return Err(EmbedderConfigError::NoModel {
                provider: spec.name.clone(),
            });
        }
        let chat = wire::format(kind).ok_or_else(|| EmbedderConfigError::NoEmbeddingApi {
            provider: spec.name.clone(),
            kind: kind.clone(),
        })?;
        let endpoint = Endpoint {
            base_url: base_url.clone(),
            api_key: api_key.clone(),
        };
        let http = HttpClient::new(
            &spec.name,
            chat,
            endpoint.clone(),
            spec.max_response_bytes,
            spec.stall_timeout,
        )
        .map_err(EmbedderConfigError::Client)?;
        Ok(Self {
            provider: spec.name.clone(),
            model: model.to_owned(),
            name: format!("{}:{model}", spec.name),
            format,
            endpoint,
            timeout: spec.timeout,
            price,
            http,
            ledger: std::sync::OnceLock::new(),
        })
    }

    /// Charges priced calls to `ledger`'s global budget from now on: each call reserves its
    /// worst case (every input byte a token) first and is refused if that does not fit, then
    /// settles at the tokens the provider reports. Set once, by the node that uses it.
    pub fn charge_to(&self, ledger: std::sync::Arc<crate::gateway::ledger::Ledger>) {
        let _ = self.ledger.set(ledger);
    }

    /// `<provider>:<model>`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The provider's configured name.
    pub fn provider(&self) -> &str {
        &self.provider
    }

    /// The model.
    pub fn model(&self) -> &str {
        &self.model
    }

    /// The most texts one request carries.
    pub fn max_batch(&self) -> usize {
        self.format.max_batch()
    }

    /// The vectors of `texts`, in order (empty for blank texts), in as many requests as the
    /// batch limits need, each with the provider's timeout. The first failure fails the whole.
    pub async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbeddingError> {
        let mut out = vec![Vec::new(); texts.len()];
        let sendable: Vec<(usize, String)> = texts
            .iter()
            .enumerate()
            .filter(|(_, t)| !t.trim().is_empty())
            .map(|(i, t)| (i, cut(t, MAX_INPUT_CHARS).to_owned()))
            .collect();
        for batch in batches(&sendable, self.max_batch(), MAX_BATCH_CHARS) {
            let inputs: Vec<String> = batch.iter().map(|(_, t)| t.clone()).collect();
            let vectors = self.request(&inputs).await?;
            for ((i, _), v) in batch.iter().zip(vectors) {
                if let Some(slot) = out.get_mut(*i) {
                    *slot = v;
                }
            }
        }
        Ok(out)
    }

    fn error(&self, failure: EmbedFailure) -> EmbeddingError {
        EmbeddingError {
            provider: self.provider.clone(),
            model: self.model.clone(),
            failure,
        }
    }

    /// One request.
    async fn request(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbeddingError> {
        // A token is at least a byte: the inputs' bytes bound the call's cost from above.
        let reservation = match (&self.price, self.ledger.get()) {
            (Some(price), Some(ledger)) => {
                let worst = price.cost(&Usage {
                    input_tokens: texts.iter().map(|t| t.len() as u64).sum(),
                    ..Usage::default()
                });
                match ledger.reserve(None, worst) {
                    Ok(r) => Some((ledger, r)),
                    Err(e) => {
                        let provider = self.provider.clone();
                        metrics::counter!("aimesh_embedding_requests_total", "provider" => provider, "outcome" => "budget_exceeded")
                            .increment(1);
                        return Err(self.error(EmbedFailure::Budget(e.to_string())));
                    }
                }
            }
            _ => None,
        };
        let call = embeddings::build(
            self.format,
            &self.endpoint.base_url,
            self.endpoint.api_key.as_deref(),
            &self.model,
            texts,
        );
        let span = tracing::debug_span!("embed", provider = %self.provider, model = %self.model, texts = texts.len());
        let started = Instant::now();
        let sent = tokio::time::timeout(
            self.timeout,
            tracing::Instrument::instrument(
                self.http.post(&call.url, &call.headers, call.body),
                span,
            ),
        )
        .await;
        let result = match sent {
            Err(_) => Err(self.error(EmbedFailure::Timeout(self.timeout))),
            Ok(Err(e)) => Err(self.error(match e {
                ModelError::Timeout { after, .. } => EmbedFailure::Timeout(after),
                other => EmbedFailure::Transport(other.to_string()),
            })),
            Ok(Ok(answer)) => {
                embeddings::parse(self.format, answer.status, &answer.body, texts.len())
                    .map(|v| (v, embeddings::input_tokens(self.format, &answer.body)))
                    .map_err(|e| self.error(EmbedFailure::Answer(e)))
            }
        };
        let provider = self.provider.clone();
        metrics::histogram!("aimesh_embedding_duration_seconds", "provider" => provider.clone())
            .record(started.elapsed().as_secs_f64());
        match result {
            Ok((vectors, reported)) => {
                metrics::counter!("aimesh_embedding_requests_total", "provider" => provider.clone(), "outcome" => "ok")
                    .increment(1);
                metrics::counter!("aimesh_embedding_inputs_total", "provider" => provider.clone())
                    .increment(texts.len() as u64);
                let tokens = reported.unwrap_or_else(|| estimate_tokens(texts));
                metrics::counter!("aimesh_embedding_tokens_total", "provider" => provider.clone())
                    .increment(tokens);
                if let Some(price) = &self.price {
                    let cost = price.cost(&Usage {
                        input_tokens: tokens,
                        ..Usage::default()
                    });
                    metrics::counter!("aimesh_embedding_cost_picodollars_total", "provider" => provider)
                        .increment(cost.0);
                    if let Some((ledger, r)) = reservation {
                        ledger.settle(r, cost);
                    }
                }
                Ok(vectors)
            }
            Err(e) => {
                if let Some((ledger, r)) = reservation {
                    ledger.release(r);
                }
                metrics::counter!("aimesh_embedding_requests_total", "provider" => provider, "outcome" => e.code())
                    .increment(1);
                Err(e)
            }
        }
    }
}

/// Four characters a token, rounded up, summed over `texts`.
fn estimate_tokens(texts: &[String]) -> u64 {
    texts
        .iter()
        .map(|t| (t.chars().count() as u64).div_ceil(4))
        .sum()
}

/// `text` cut to at most `max` characters.
fn cut(text: &str, max: usize) -> &str {
    match text.char_indices().nth(max) {
        Some((i, _)) => &text[..i],
        None => text,
    }
}

/// `items` split into runs of at most `max_items`, each of at most `max_chars` characters unless
/// a single item is larger.
fn batches<T: AsRef<str>>(
    items: &[(usize, T)],
    max_items: usize,
    max_chars: usize,
) -> Vec<&[(usize, T)]> {
    let mut out = Vec::new();
    let (mut start, mut chars) = (0, 0);
    for (i, (_, text)) in items.iter().enumerate() {
        let n = text.as_ref().chars().count();
        let full = i - start >= max_items.max(1) || (i > start && chars + n > max_chars);
        if full {
            out.push(&items[start..i]);
            start = i;
            chars = 0;
        }
        chars += n;
    }
    if start < items.len() {
        out.push(&items[start..]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sizes(items: &[(usize, String)], max_items: usize, max_chars: usize) -> Vec<usize> {
        batches(items, max_items, max_chars)
            .iter()
            .map(|b| b.len())
            .collect()
    }

    #[test]
    fn batches_respect_the_count_and_the_characters() {
        let items: Vec<(usize, String)> = (0..7).map(|i| (i, "x".repeat(10))).collect();
        assert_eq!(sizes(&items, 3, 1000), [3, 3, 1]);
        assert_eq!(sizes(&items, 100, 25), [2, 2, 2, 1]);
        // One text larger than the character bound still goes, alone.
        let big = vec![(0, "x".repeat(50)), (1, "y".to_owned())];
        assert_eq!(sizes(&big, 100, 20), [1, 1]);
        assert!(batches::<String>(&[], 3, 10).is_empty());
    }

    #[test]
    fn long_texts_are_cut_on_character_boundaries() {
        assert_eq!(cut("héllo", 2), "hé");
        assert_eq!(cut("hi", 10), "hi");
        assert_eq!(estimate_tokens(&["abcde".to_owned(), "".to_owned()]), 2);
    }

    #[test]
    fn providers_without_an_embedding_api_are_refused() {
        let spec = |kind: &str| ProviderSpec {
            name: "p".into(),
            backend: Backend::Http {
                kind: kind.into(),
                base_url: "http://127.0.0.1:1".into(),
                api_key: None,
            },
            timeout: Duration::from_secs(1),
            stall_timeout: Duration::from_secs(1),
            max_response_bytes: 1 << 20,
        };
        assert!(matches!(
            ProviderEmbedder::new(&spec("anthropic"), "m", None),
            Err(EmbedderConfigError::NoEmbeddingApi { .. })
        ));
        assert!(matches!(
            ProviderEmbedder::new(&spec("openai"), " ", None),
            Err(EmbedderConfigError::NoModel { .. })
        ));
        let ok = ProviderEmbedder::new(&spec("ollama"), "nomic-embed-text", None).unwrap();
        assert_eq!(ok.name(), "p:nomic-embed-text");
        assert_eq!(ok.max_batch(), 256);
        let catalog = Catalog::new(
            vec![spec("gemini")],
            Vec::new(),
            Default::default(),
            Vec::new(),
            false,
        );
        assert!(ProviderEmbedder::from_catalog(&catalog, "p", "text-embedding-004").is_ok());
        assert!(matches!(
            ProviderEmbedder::from_catalog(&catalog, "openai", "m"),
            Err(EmbedderConfigError::NotConfigured { .. })
        ));
    }
}
