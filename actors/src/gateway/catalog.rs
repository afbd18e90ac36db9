//! What the gateway can call: providers, models (with prices and rate limits) and fallback
//! chains, and how a requested name resolves to a chain of links.
//!
//! A name resolves to the chain configured under it; else, for a known model, to that model
//! followed by the default chain's other links. Links on providers that are not configured (no
//! key) are skipped, and every chain ends in `offline` unless configured otherwise.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use super::Provider;
use crate::types::{Usage, Usd};

/// A model's prices, in dollars per million tokens, kept exactly (pico-dollars per token).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Price {
    /// Per uncached input token.
    pub input: Usd,
    /// Per output token.
    pub output: Usd,
    /// Per input token read from the provider's prompt cache.
    pub cached_input: Usd,
}

impl Price {
    /// Prices from dollars per million tokens.
    pub fn per_mtok(input: f64, output: f64, cached_input: f64) -> Self {
        // $x per 1M tokens = x * 1e6 pico-dollars per token.
        let per_token = |usd: f64| Usd::from_dollars(usd / 1e6);
        Self {
            input: per_token(input),
            output: per_token(output),
            cached_input: per_token(cached_input),
        }
    }

    /// What `usage` costs.
    pub fn cost(&self, usage: &Usage) -> Usd {
        let cached = usage.cached_input_tokens.min(usage.input_tokens);
        let fresh = usage.input_tokens - cached;
        Usd(fresh
            .saturating_mul(self.input.0)
            .saturating_add(cached.saturating_mul(self.cached_input.0))
            .saturating_add(usage.output_tokens.saturating_mul(self.output.0)))
    }

    /// The most a call with `input_tokens` of prompt and `max_tokens` of answer can cost.
    pub fn worst_case(&self, input_tokens: u64, max_tokens: u64) -> Usd {
        self.cost(&Usage {
            input_tokens,
            output_tokens: max_tokens,
            ..Usage::default()
        })
    }

    /// Free.
    pub fn is_free(&self) -> bool {
        *self == Price::default()
    }
}

/// One callable model: a name, the provider that serves it and its id there.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelSpec {
    /// The name agents and clients use, e.g. `claude-3-7-sonnet`.
    pub name: String,
    /// The provider serving it.
    pub provider: String,
    /// Its id at the provider, e.g. `claude-3-7-sonnet-20250219`.
    pub upstream: String,
    /// Its prices.
    pub price: Price,
    /// Requests per minute allowed, if limited.
    pub rpm: Option<u32>,
    /// Tokens (prompt + answer) per minute allowed, if limited.
    pub tpm: Option<u32>,
    /// The window `rpm` and `tpm` count over: a minute, except in tests.
    pub limit_window: Duration,
}

/// How a provider is reached.
#[derive(Clone)]
pub enum Backend {
    /// Over HTTP, in a wire format.
    Http {
        /// `anthropic`, `openai`, `gemini` or `ollama`.
        kind: String,
        /// Base URL, without a trailing slash.
        base_url: String,
        /// Its key (from the environment variable the configuration names).
        api_key: Option<String>,
    },
    /// In process (the offline model, test doubles).
    Local(Arc<dyn Provider>),
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Backend::Http { kind, base_url, .. } => f
                .debug_struct("Http")
                .field("kind", kind)
                .field("base_url", base_url)
                .field("api_key", &"<redacted>")
                .finish(),
            Backend::Local(p) => f.debug_tuple("Local").field(&p.name()).finish(),
        }
    }
}

/// One configured provider.
#[derive(Clone, Debug)]
pub struct ProviderSpec {
    /// Its name, e.g. `anthropic`.
    pub name: String,
    /// How it is reached.
    pub backend: Backend,
    /// Time limit of one call to it (the call's own deadline may be shorter).
    pub timeout: Duration,
    /// Longest wait for the next piece of a stream before it counts as stalled.
    pub stall_timeout: Duration,
    /// Largest answer accepted.
    pub max_response_bytes: usize,
}

/// A resolved fallback chain.
#[derive(Clone, Debug, PartialEq)]
pub struct Chain {
    /// The name asked for.
    pub name: String,
    /// Its links, in order, all on configured providers.
    pub links: Vec<Arc<ModelSpec>>,
}

/// Providers, models and chains.
#[derive(Clone, Debug, Default)]
pub struct Catalog {
    providers: BTreeMap<String, ProviderSpec>,
    models: BTreeMap<String, Arc<ModelSpec>>,
    chains: BTreeMap<String, Vec<String>>,
    default_chain: Vec<String>,
    offline_fallback: bool,
}

/// The offline model's name.
pub const OFFLINE: &str = "offline";

/// Default models and prices (USD per 1M tokens: input, output, cached input).
pub fn builtin_models() -> Vec<ModelSpec> {
    let m = |name: &str, provider: &str, upstream: &str, price: Price| ModelSpec {
        name: name.to_owned(),
        provider: provider.to_owned(),
        upstream: upstream.to_owned(),
        price,
        rpm: None,
        tpm: None,
        limit_window: Duration::from_secs(60),
    };
    vec![
        m(
            "claude-3-7-sonnet",
            "anthropic",
            "claude-3-7-sonnet-20250219",
            Price::per_mtok(3.0, 15.0, 0.30),
        ),
        m(
            "claude-3-5-haiku",
            "anthropic",
            "claude-3-5-haiku-20241022",
            Price::per_mtok(0.80, 4.0, 0.08),
        ),
        m(
            "gpt-4o",
            "openai",
            "gpt-4o",
            Price::per_mtok(2.50, 10.0, 1.25),
        ),
        m(
            "gpt-4o-mini",
            "openai",
            "gpt-4o-mini",
            Price::per_mtok(0.15, 0.60, 0.075),
        ),
        m(
            "gemini-2.0",
            "gemini",
            "gemini-2.0-flash",
            Price::per_mtok(0.10, 0.40, 0.025),
        ),
        m(
            "gemini-2.0-flash-lite",
            "gemini",
            "gemini-2.0-flash-lite",
            Price::per_mtok(0.075, 0.30, 0.01875),
        ),
        m("llama3.2", "ollama", "llama3.2", Price::default()),
        m(OFFLINE, OFFLINE, OFFLINE, Price::default()),
    ]
}

/// Seed 001's fallback chain.
pub fn builtin_default_chain() -> Vec<String> {
    ["claude-3-7-sonnet", "gpt-4o", "gemini-2.0", OFFLINE]
        .iter()
        .map(|s| (*s).to_owned())
        .collect()
}

impl Catalog {
    /// A catalog of `providers`, `models` and `chains`; `default_chain` backs up any model
    /// asked for by name; `offline_fallback` appends `offline` to every chain.
    pub fn new(
        providers: Vec<ProviderSpec>,
        models: Vec<ModelSpec>,
        chains: BTreeMap<String, Vec<String>>,
        default_chain: Vec<String>,
        offline_fallback: bool,
    ) -> Self {
        Self {
            providers: providers.into_iter().map(|p| (p.name.clone(), p)).collect(),
            models: models
                .into_iter()
                .map(|m| (m.name.clone(), Arc::new(m)))
                .collect(),
            chains,
            default_chain,
            offline_fallback,
        }
    }

    /// Whether every chain ends in `offline`.
    pub fn set_offline_fallback(&mut self, on: bool) {
        self.offline_fallback = on;
    }

    /// Adds (or replaces) a model.
    pub fn add_model(&mut self, model: ModelSpec) {
        self.models.insert(model.name.clone(), Arc::new(model));
    }

    /// Adds (or replaces) a chain.
    pub fn add_chain(&mut self, name: &str, models: &[&str]) {
        self.chains.insert(
            name.to_owned(),
            models.iter().map(|m| (*m).to_owned()).collect(),
        );
    }

    /// Adds an in-process provider, and a free model of the same name served by it unless a
    /// model of that name is already configured.
    pub fn add_local(&mut self, provider: Arc<dyn Provider>) {
        let name = provider.name().to_owned();
        self.models.entry(name.clone()).or_insert_with(|| {
            Arc::new(ModelSpec {
                name: name.clone(),
                provider: name.clone(),
                upstream: name.clone(),
                price: Price::default(),
                rpm: None,
                tpm: None,
                limit_window: Duration::from_secs(60),
            })
        });
        self.providers.insert(
            name.clone(),
            ProviderSpec {
                name,
                backend: Backend::Local(provider),
                timeout: Duration::from_secs(600),
                stall_timeout: Duration::from_secs(600),
                max_response_bytes: 16 << 20,
            },
        );
    }

    /// The configured providers.
    pub fn providers(&self) -> impl Iterator<Item = &ProviderSpec> {
        self.providers.values()
    }

    /// One provider.
    pub fn provider(&self, name: &str) -> Option<&ProviderSpec> {
        self.providers.get(name)
    }

    /// Every model.
    pub fn models(&self) -> impl Iterator<Item = &Arc<ModelSpec>> {
        self.models.values()
    }

    /// One model.
    pub fn model(&self, name: &str) -> Option<&Arc<ModelSpec>> {
        self.models.get(name)
    }

    fn available(&self, model: &str) -> Option<Arc<ModelSpec>> {
        let m = self.models.get(model)?;
        self.providers.contains_key(&m.provider).then(|| m.clone())
    }

    /// Every name a caller may ask for: chains and every known model (a model whose provider
    /// is not configured is served by the rest of its chain).
    pub fn known_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.chains.keys().cloned().collect();
        names.extend(self.models.keys().cloned());
        names.sort();
        names.dedup();
        names
    }

    /// Names served by a configured provider of their own: chains and available models.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.chains.keys().cloned().collect();
        names.extend(
            self.models
                .values()
                .filter(|m| self.providers.contains_key(&m.provider))
                .map(|m| m.name.clone()),
        );
        names.sort();
        names.dedup();
        names
    }

    /// True if `name` is a chain or a known model (configured or not: an agent may name a
    /// model whose provider has no key yet; it falls back).
    pub fn knows(&self, name: &str) -> bool {
        self.chains.contains_key(name) || self.models.contains_key(name)
    }

    /// The chain that serves `name`, or `None` if the name is unknown.
    pub fn resolve(&self, name: &str) -> Option<Chain> {
        let names: Vec<String> = if let Some(chain) = self.chains.get(name) {
            chain.clone()
        } else if self.models.contains_key(name) {
            let mut v = vec![name.to_owned()];
            v.extend(self.default_chain.iter().filter(|m| *m != name).cloned());
            v
        } else {
            return None;
        };
        let mut links: Vec<Arc<ModelSpec>> = Vec::new();
        for n in &names {
            if let Some(m) = self.available(n)
                && !links.iter().any(|l| l.name == m.name)
            {
                links.push(m);
            }
        }
        if self.offline_fallback
            && !links.iter().any(|l| l.name == OFFLINE)
            && let Some(offline) = self.available(OFFLINE)
        {
            links.push(offline);
        }
        Some(Chain {
            name: name.to_owned(),
            links,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::OfflineModel;

    fn http(name: &str) -> ProviderSpec {
        ProviderSpec {
            name: name.into(),
            backend: Backend::Http {
                kind: name.into(),
                base_url: "http://127.0.0.1:1".into(),
                api_key: Some("k".into()),
            },
            timeout: Duration::from_secs(1),
            stall_timeout: Duration::from_secs(1),
            max_response_bytes: 1 << 20,
        }
    }

    fn catalog(providers: &[&str]) -> Catalog {
        let mut c = Catalog::new(
            providers.iter().map(|p| http(p)).collect(),
            builtin_models(),
            BTreeMap::from([(
                "cheap".to_owned(),
                vec!["gpt-4o-mini".to_owned(), "gemini-2.0".to_owned()],
            )]),
            builtin_default_chain(),
            true,
        );
        c.add_local(Arc::new(OfflineModel::default()));
        c
    }

    fn names(chain: &Chain) -> Vec<&str> {
        chain.links.iter().map(|l| l.name.as_str()).collect()
    }

    #[test]
    fn the_seed_chain_skips_providers_without_keys_and_ends_offline() {
        let all = catalog(&["anthropic", "openai", "gemini"]);
        assert_eq!(
            names(&all.resolve("claude-3-7-sonnet").unwrap()),
            ["claude-3-7-sonnet", "gpt-4o", "gemini-2.0", "offline"]
        );
        assert_eq!(
            names(&all.resolve("gpt-4o").unwrap()),
            ["gpt-4o", "claude-3-7-sonnet", "gemini-2.0", "offline"]
        );
        assert_eq!(
            names(&all.resolve("cheap").unwrap()),
            ["gpt-4o-mini", "gemini-2.0", "offline"]
        );
        let none = catalog(&[]);
        assert_eq!(
            names(&none.resolve("claude-3-7-sonnet").unwrap()),
            ["offline"]
        );
        assert!(none.resolve("no-such-model").is_none());
        assert!(none.knows("gpt-4o"));
        assert_eq!(none.names(), ["cheap", "offline"]);
    }

    #[test]
    fn prices_are_exact_per_token_and_cached_input_is_cheaper() {
        let p = Price::per_mtok(3.0, 15.0, 0.30);
        let usage = Usage {
            input_tokens: 1_000_000,
            output_tokens: 1_000_000,
            cached_input_tokens: 0,
            ..Usage::default()
        };
        assert_eq!(p.cost(&usage), Usd::from_dollars(18.0));
        let cached = Usage {
            cached_input_tokens: 500_000,
            ..usage
        };
        assert_eq!(p.cost(&cached), Usd::from_dollars(1.5 + 0.15 + 15.0));
        // One token of a cheap model is still counted exactly.
        let tiny = Price::per_mtok(0.075, 0.3, 0.01875);
        let one = Usage {
            input_tokens: 1,
            ..Usage::default()
        };
        assert_eq!(tiny.cost(&one).0, 75_000);
        assert_eq!(tiny.worst_case(10, 10).0, 10 * 75_000 + 10 * 300_000);
    }
}
