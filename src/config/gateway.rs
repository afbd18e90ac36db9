//! The `[gateway]` section: providers (and the ecosystem's environment variables), models with
//! prices and limits, chains, breakers, cache, safety, selection and budgets. Keys are only
//! ever referenced by environment variable name.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use aimesh_actors::gateway::cache::CacheConfig;
use aimesh_actors::gateway::catalog::{
    Backend, Catalog, ModelSpec, OFFLINE, Price, ProviderSpec, builtin_default_chain,
    builtin_models,
};
use aimesh_actors::gateway::circuit::CircuitPolicy;
use aimesh_actors::gateway::safety::SafetyFilter;
use aimesh_actors::gateway::selection::{SelectionPolicy, SimpleTier};
use aimesh_actors::gateway::{GatewayConfig, OfflineModel};
use aimesh_actors::types::Usd;

use super::{ConfigError, ranged, to_usize};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawGateway {
    timeout_seconds: Option<u64>,
    max_in_flight: Option<u64>,
    budget_usd: Option<f64>,
    network_budget_usd: Option<f64>,
    offline_fallback: Option<bool>,
    prompt_cache_min_chars: Option<u64>,
    default_chain: Option<Vec<String>>,
    #[serde(default)]
    offline: RawOffline,
    #[serde(default)]
    providers: BTreeMap<String, RawProvider>,
    #[serde(default)]
    models: BTreeMap<String, RawModel>,
    #[serde(default)]
    chains: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    circuit: RawCircuit,
    #[serde(default)]
    cache: RawCache,
    #[serde(default)]
    safety: RawSafety,
    #[serde(default)]
    selection: RawSelection,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOffline {
    latency_ms: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProvider {
    kind: Option<String>,
    api_key_env: Option<String>,
    base_url: Option<String>,
    base_url_env: Option<String>,
    timeout_seconds: Option<u64>,
    stall_timeout_seconds: Option<u64>,
    max_response_bytes: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawModel {
    provider: Option<String>,
    model: Option<String>,
    input_usd_per_mtok: Option<f64>,
    output_usd_per_mtok: Option<f64>,
    cached_input_usd_per_mtok: Option<f64>,
    rpm: Option<u32>,
    tpm: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCircuit {
    failures: Option<u64>,
    cooldown_seconds: Option<u64>,
    max_cooldown_seconds: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCache {
    enabled: Option<bool>,
    ttl_seconds: Option<u64>,
    max_entries: Option<u64>,
    max_bytes: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSafety {
    #[serde(default)]
    blocked_terms: Vec<String>,
    #[serde(default)]
    blocked_patterns: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSelection {
    simple_model: Option<String>,
    simple_max_prompt_tokens: Option<u64>,
    #[serde(default)]
    temperature: BTreeMap<String, f64>,
}

/// The validated `[gateway]` section.
#[derive(Debug, Clone)]
pub struct GatewaySection {
    /// The gateway's configuration.
    pub config: GatewayConfig,
    /// Time limit of one model call.
    pub timeout: Duration,
    /// The global budget.
    pub budget: Option<Usd>,
    /// The default per-network budget.
    pub network_budget: Option<Usd>,
}

/// A provider kind the ecosystem configures through environment variables.
struct Known {
    kind: &'static str,
    key_env: Option<&'static str>,
    base_env: &'static str,
    default_base: &'static str,
}

const KNOWN: [Known; 4] = [
    Known {
        kind: "anthropic",
        key_env: Some("ANTHROPIC_API_KEY"),
        base_env: "ANTHROPIC_BASE_URL",
        default_base: "https://api.anthropic.com",
    },
    Known {
        kind: "openai",
        key_env: Some("OPENAI_API_KEY"),
        base_env: "OPENAI_BASE_URL",
        default_base: "https://api.openai.com",
    },
    Known {
        kind: "gemini",
        key_env: Some("GEMINI_API_KEY"),
        base_env: "GEMINI_BASE_URL",
        default_base: "https://generativelanguage.googleapis.com",
    },
    Known {
        kind: "ollama",
        key_env: None,
        base_env: "OLLAMA_HOST",
        default_base: "http://127.0.0.1:11434",
    },
];

/// `OLLAMA_HOST` may be `host:port`; every base URL loses its trailing slash.
fn normalize_base(url: &str) -> String {
    let url = url.trim().trim_end_matches('/');
    if url.contains("://") {
        url.to_owned()
    } else {
        format!("http://{url}")
    }
}

fn dollars(path: &Path, key: &str, v: Option<f64>) -> Result<Option<Usd>, ConfigError> {
    match v {
        None => Ok(None),
        Some(d) if d.is_finite() && d >= 0.0 => Ok(Some(Usd::from_dollars(d))),
        Some(d) => Err(ConfigError::Invalid {
            path: path.to_owned(),
            key: key.to_owned(),
            message: format!("{d} is not a non-negative amount of dollars"),
        }),
    }
}

pub(super) fn validate(
    path: &Path,
    raw: RawGateway,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<GatewaySection, ConfigError> {
    let RawGateway {
        timeout_seconds,
        max_in_flight,
        budget_usd,
        network_budget_usd,
        offline_fallback,
        prompt_cache_min_chars,
        default_chain,
        offline: RawOffline { latency_ms },
        providers,
        models,
        chains,
        circuit:
            RawCircuit {
                failures,
                cooldown_seconds,
                max_cooldown_seconds,
            },
        cache:
            RawCache {
                enabled,
                ttl_seconds,
                max_entries,
                max_bytes,
            },
        safety: RawSafety {
            blocked_terms,
            blocked_patterns,
        },
        selection:
            RawSelection {
                simple_model,
                simple_max_prompt_tokens,
                temperature,
            },
    } = raw;
    let invalid = |key: String, message: String| ConfigError::Invalid {
        path: path.to_owned(),
        key,
        message,
    };

    // Providers: the explicit tables, then every known kind whose environment is set.
    let mut specs: Vec<ProviderSpec> = Vec::new();
    for (name, p) in &providers {
        let at = |k: &str| format!("gateway.providers.{name}.{k}");
        let kind = p.kind.clone().unwrap_or_else(|| name.clone());
        let wire_kind = if kind == "openai-compatible" {
            "openai".to_owned()
        } else {
            kind.clone()
        };
        let known = KNOWN.iter().find(|k| k.kind == wire_kind).ok_or_else(|| {
            invalid(
                at("kind"),
                format!("{kind:?}: use anthropic, openai, openai-compatible, gemini or ollama"),
            )
        })?;
        let key_env = p
            .api_key_env
            .clone()
            .or_else(|| known.key_env.map(str::to_owned));
        let base = match (&p.base_url, &p.base_url_env) {
            (Some(url), _) => url.clone(),
            (None, Some(var)) => env(var).ok_or_else(|| {
                invalid(
                    at("base_url_env"),
                    format!("environment variable {var} is not set"),
                )
            })?,
            (None, None) => env(known.base_env).unwrap_or_else(|| known.default_base.to_owned()),
        };
        specs.push(ProviderSpec {
            name: name.clone(),
            backend: Backend::Http {
                kind: wire_kind,
                base_url: normalize_base(&base),
                api_key: key_env.as_deref().and_then(env),
            },
            timeout: Duration::from_secs(ranged(
                path,
                &at("timeout_seconds"),
                p.timeout_seconds,
                60,
                1..=3600,
            )?),
            stall_timeout: Duration::from_secs(ranged(
                path,
                &at("stall_timeout_seconds"),
                p.stall_timeout_seconds,
                30,
                1..=3600,
            )?),
            max_response_bytes: to_usize(ranged(
                path,
                &at("max_response_bytes"),
                p.max_response_bytes,
                16 << 20,
                1024..=(1 << 30),
            )?),
        });
    }
    for k in &KNOWN {
        if providers.contains_key(k.kind) {
            continue;
        }
        let key = k.key_env.and_then(env);
        let configured = match k.key_env {
            Some(_) => key.is_some(),
            None => env(k.base_env).is_some(),
        };
        if configured {
            specs.push(ProviderSpec {
                name: k.kind.to_owned(),
                backend: Backend::Http {
                    kind: k.kind.to_owned(),
                    base_url: normalize_base(
                        &env(k.base_env).unwrap_or_else(|| k.default_base.to_owned()),
                    ),
                    api_key: key,
                },
                timeout: Duration::from_secs(60),
                stall_timeout: Duration::from_secs(30),
                max_response_bytes: 16 << 20,
            });
        }
    }

    // Models: the built-ins, then the tables (which may override a built-in's price or limits).
    let mut all: BTreeMap<String, ModelSpec> = builtin_models()
        .into_iter()
        .map(|m| (m.name.clone(), m))
        .collect();
    for (name, m) in models {
        let at = |k: &str| format!("gateway.models.{name}.{k}");
        let base = all.get(&name).cloned();
        let provider = m
            .provider
            .or_else(|| base.as_ref().map(|b| b.provider.clone()))
            .ok_or_else(|| {
                invalid(
                    at("provider"),
                    "name the provider serving this model".into(),
                )
            })?;
        let known_provider = providers.contains_key(&provider)
            || KNOWN.iter().any(|k| k.kind == provider)
            || provider == OFFLINE;
        if !known_provider {
            return Err(invalid(
                at("provider"),
                format!("no provider {provider:?}: add a [gateway.providers.{provider}] table"),
            ));
        }
        let price_of = |v: Option<f64>, key: &str, old: Option<Usd>| -> Result<f64, ConfigError> {
            match v {
                Some(p) if p.is_finite() && p >= 0.0 => Ok(p),
                Some(p) => Err(invalid(at(key), format!("{p} is not a non-negative price"))),
                None => Ok(old.map_or(0.0, |u| u.dollars() * 1e6)),
            }
        };
        let old = base.as_ref().map(|b| b.price);
        let price = Price::per_mtok(
            price_of(
                m.input_usd_per_mtok,
                "input_usd_per_mtok",
                old.map(|p| p.input),
            )?,
            price_of(
                m.output_usd_per_mtok,
                "output_usd_per_mtok",
                old.map(|p| p.output),
            )?,
            price_of(
                m.cached_input_usd_per_mtok,
                "cached_input_usd_per_mtok",
                old.map(|p| p.cached_input),
            )?,
        );
        all.insert(
            name.clone(),
            ModelSpec {
                upstream: m
                    .model
                    .or_else(|| base.as_ref().map(|b| b.upstream.clone()))
                    .unwrap_or_else(|| name.clone()),
                name: name.clone(),
                provider,
                price,
                rpm: m
                    .rpm
                    .filter(|r| *r > 0)
                    .or(base.as_ref().and_then(|b| b.rpm)),
                tpm: m
                    .tpm
                    .filter(|t| *t > 0)
                    .or(base.as_ref().and_then(|b| b.tpm)),
                limit_window: Duration::from_secs(60),
            },
        );
    }
    let default_chain = default_chain.unwrap_or_else(builtin_default_chain);
    for (i, m) in default_chain.iter().enumerate() {
        if !all.contains_key(m) {
            return Err(invalid(
                format!("gateway.default_chain[{i}]"),
                format!("unknown model {m:?}"),
            ));
        }
    }
    for (name, chain) in &chains {
        if chain.is_empty() {
            return Err(invalid(
                format!("gateway.chains.{name}"),
                "a chain needs at least one model".into(),
            ));
        }
        for (i, m) in chain.iter().enumerate() {
            if !all.contains_key(m) {
                return Err(invalid(
                    format!("gateway.chains.{name}[{i}]"),
                    format!("unknown model {m:?}"),
                ));
            }
        }
    }
    let mut catalog = Catalog::new(
        specs,
        all.into_values().collect(),
        chains,
        default_chain,
        offline_fallback.unwrap_or(true),
    );
    catalog.add_local(Arc::new(OfflineModel {
        latency: Duration::from_millis(ranged(
            path,
            "gateway.offline.latency_ms",
            latency_ms,
            0,
            0..=600_000,
        )?),
    }));

    let safety = SafetyFilter::new(&blocked_terms, &blocked_patterns)
        .map_err(|e| invalid("gateway.safety.blocked_patterns".into(), e))?;
    let simple = match simple_model {
        None => None,
        Some(model) => {
            if !catalog.knows(&model) {
                return Err(invalid(
                    "gateway.selection.simple_model".into(),
                    format!("unknown model or chain {model:?}"),
                ));
            }
            Some(SimpleTier {
                model,
                max_prompt_tokens: ranged(
                    path,
                    "gateway.selection.simple_max_prompt_tokens",
                    simple_max_prompt_tokens,
                    600,
                    1..=1_000_000,
                )?,
            })
        }
    };
    let mut temperatures = BTreeMap::new();
    for (kind, t) in temperature {
        if !(0.0..=2.0).contains(&t) {
            return Err(invalid(
                format!("gateway.selection.temperature.{kind}"),
                format!("{t} is outside 0..=2"),
            ));
        }
        temperatures.insert(kind, t as f32);
    }
    Ok(GatewaySection {
        config: GatewayConfig {
            catalog,
            circuit: CircuitPolicy {
                failures: u32::try_from(ranged(
                    path,
                    "gateway.circuit.failures",
                    failures,
                    3,
                    1..=1000,
                )?)
                .unwrap_or(3),
                cooldown: Duration::from_secs(ranged(
                    path,
                    "gateway.circuit.cooldown_seconds",
                    cooldown_seconds,
                    10,
                    1..=86_400,
                )?),
                max_cooldown: Duration::from_secs(ranged(
                    path,
                    "gateway.circuit.max_cooldown_seconds",
                    max_cooldown_seconds,
                    300,
                    1..=86_400,
                )?),
            },
            cache: CacheConfig {
                enabled: enabled.unwrap_or(true),
                ttl: Duration::from_secs(ranged(
                    path,
                    "gateway.cache.ttl_seconds",
                    ttl_seconds,
                    3600,
                    1..=31_536_000,
                )?),
                max_entries: to_usize(ranged(
                    path,
                    "gateway.cache.max_entries",
                    max_entries,
                    10_000,
                    1..=10_000_000,
                )?),
                max_bytes: to_usize(ranged(
                    path,
                    "gateway.cache.max_bytes",
                    max_bytes,
                    64 << 20,
                    1024..=(16 << 30),
                )?),
            },
            safety,
            selection: SelectionPolicy {
                simple,
                temperature: temperatures,
            },
            max_in_flight: to_usize(ranged(
                path,
                "gateway.max_in_flight",
                max_in_flight,
                1024,
                1..=1_000_000,
            )?),
            prompt_cache_min_chars: to_usize(ranged(
                path,
                "gateway.prompt_cache_min_chars",
                prompt_cache_min_chars,
                4096,
                0..=10_000_000,
            )?),
        },
        timeout: Duration::from_secs(ranged(
            path,
            "gateway.timeout_seconds",
            timeout_seconds,
            120,
            1..=3600,
        )?),
        budget: dollars(path, "gateway.budget_usd", budget_usd)?,
        network_budget: dollars(path, "gateway.network_budget_usd", network_budget_usd)?,
    })
}
