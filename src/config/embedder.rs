//! `[memory] embedder`: what memory search embeds text with. `"hashing"` (the default) or
//! `"<provider>:<model>"` naming a provider the gateway has configured (from `[gateway.providers]`
//! or the ecosystem's environment variables) whose API has embeddings.

use std::path::Path;

use aimesh_actors::embedding::provider::format_of;
use aimesh_actors::gateway::catalog::Backend;

use super::{ConfigError, GatewaySection};

/// What memory search embeds text with (`[memory] embedder`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EmbedderConfig {
    /// `"hashing"` (the default): feature hashing in process, `embedding_dims` long.
    Hashing,
    /// `"<provider>:<model>"`: a configured gateway provider's embedding API.
    Provider {
        /// The provider's name in the gateway (`openai`, `ollama`, `gemini`, a table's name).
        provider: String,
        /// The embedding model, e.g. `text-embedding-3-small`.
        model: String,
    },
}

/// `[memory] embedder`: `"hashing"`, or `"<provider>:<model>"` naming a provider the gateway
/// has configured and that has an embedding API.
pub(super) fn validate(
    path: &Path,
    value: Option<String>,
    gateway: &GatewaySection,
) -> Result<EmbedderConfig, ConfigError> {
    const KEY: &str = "memory.embedder";
    let invalid = |message: String| ConfigError::Invalid {
        path: path.to_owned(),
        key: KEY.to_owned(),
        message,
    };
    let Some(value) = value.map(|v| v.trim().to_owned()) else {
        return Ok(EmbedderConfig::Hashing);
    };
    if value == "hashing" {
        return Ok(EmbedderConfig::Hashing);
    }
    let Some((provider, model)) = value
        .split_once(':')
        .map(|(p, m)| (p.trim(), m.trim()))
        .filter(|(p, m)| !p.is_empty() && !m.is_empty())
    else {
        return Err(invalid(format!(
            "{value:?}: use \"hashing\" or \"<provider>:<model>\" (e.g. \"openai:text-embedding-3-small\", \"ollama:nomic-embed-text\", \"gemini:text-embedding-004\")"
        )));
    };
    let catalog = &gateway.config.catalog;
    let Some(spec) = catalog.provider(provider) else {
        let hint = match provider {
            "openai" => {
                "set OPENAI_API_KEY (and OPENAI_BASE_URL for a compatible server) or add [gateway.providers.openai]"
            }
            "gemini" => "set GEMINI_API_KEY or add [gateway.providers.gemini]",
            "ollama" => "set OLLAMA_HOST or add [gateway.providers.ollama]",
            "anthropic" => {
                "anthropic has no embedding API; use openai, ollama, gemini or an openai-compatible provider"
            }
            _ => "name a provider of [gateway.providers], or openai, ollama or gemini",
        };
        let known = ["openai", "gemini", "ollama", "anthropic"].contains(&provider);
        return Err(invalid(if known {
            format!("{value:?}: provider {provider:?} is not configured: {hint}")
        } else {
            format!("{value:?}: unknown provider {provider:?}: {hint}")
        }));
    };
    let kind = match &spec.backend {
        Backend::Http { kind, .. } => kind.as_str(),
        Backend::Local(_) => "in-process",
    };
    if format_of(kind).is_none() {
        return Err(invalid(format!(
            "{value:?}: provider {provider:?} ({kind}) has no embedding API; use an openai, openai-compatible, ollama or gemini provider"
        )));
    }
    Ok(EmbedderConfig::Provider {
        provider: provider.to_owned(),
        model: model.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[test]
    fn the_memory_embedder_is_hashing_or_a_configured_provider_with_an_embedding_api() {
        let base = "[[node]]\nname = \"n1\"\napi = \"127.0.0.1:1\"\n";
        let env = |k: &str| match k {
            "OPENAI_API_KEY" => Some("sk-test".to_owned()),
            "ANTHROPIC_API_KEY" => Some("sk-ant".to_owned()),
            _ => None,
        };
        let parse = |extra: &str| {
            Config::parse_with_env(Path::new("c.toml"), &format!("{base}{extra}"), &env)
        };
        assert_eq!(parse("").unwrap().memory.embedder, EmbedderConfig::Hashing);
        assert_eq!(
            parse("[memory]\nembedder = \"hashing\"\n")
                .unwrap()
                .memory
                .embedder,
            EmbedderConfig::Hashing
        );
        assert_eq!(
            parse("[memory]\nembedder = \"openai:text-embedding-3-small\"\n")
                .unwrap()
                .memory
                .embedder,
            EmbedderConfig::Provider {
                provider: "openai".into(),
                model: "text-embedding-3-small".into()
            }
        );
        // A configured openai-compatible provider under its own name; the model keeps its tag.
        let local = "[gateway.providers.local]\nkind = \"openai-compatible\"\nbase_url = \"http://127.0.0.1:8000/v1\"\n\
            [memory]\nembedder = \"local:nomic-embed-text:latest\"\n";
        assert_eq!(
            parse(local).unwrap().memory.embedder,
            EmbedderConfig::Provider {
                provider: "local".into(),
                model: "nomic-embed-text:latest".into()
            }
        );
        let cases = [
            ("nomic", "use \"hashing\""),
            ("openai:", "use \"hashing\""),
            ("cohere:embed-v3", "unknown provider \"cohere\""),
            ("gemini:text-embedding-004", "GEMINI_API_KEY"),
            ("ollama:nomic-embed-text", "OLLAMA_HOST"),
            ("anthropic:x", "no embedding API"),
        ];
        for (value, says) in cases {
            let e = parse(&format!("[memory]\nembedder = \"{value}\"\n")).unwrap_err();
            let text = e.to_string();
            assert!(text.starts_with("c.toml: `memory.embedder`"), "{text}");
            assert!(text.contains(says), "{value}: {text}");
        }
    }
}
