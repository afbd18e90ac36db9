//! `cluster.toml`: a raw serde shape (unknown keys are errors) and one `validate` step that
//! turns it into the typed [`Config`]. Every error names the file and the key.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

mod embedder;
mod gateway;

pub use embedder::EmbedderConfig;
pub use gateway::GatewaySection;

/// A configuration error, naming the file and the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: cannot read: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML or has unknown keys.
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What the parser said (with line and column).
        message: String,
    },
    /// A value is out of range.
    #[error("{path}: `{key}`: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The key, dotted.
        key: String,
        /// What is wrong.
        message: String,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    cluster: RawCluster,
    #[serde(default)]
    node: Vec<RawNode>,
    #[serde(default)]
    limits: RawLimits,
    #[serde(default)]
    scheduler: RawScheduler,
    #[serde(default)]
    memory: RawMemory,
    #[serde(default)]
    storage: RawStorage,
    #[serde(default)]
    gateway: gateway::RawGateway,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCluster {
    #[serde(default = "default_cluster_name")]
    name: String,
    heartbeat_ms: Option<u64>,
    failure_timeout_ms: Option<u64>,
    takeover_margin_ms: Option<u64>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    tls_ca: Option<PathBuf>,
}

impl Default for RawCluster {
    fn default() -> Self {
        Self {
            name: default_cluster_name(),
            heartbeat_ms: None,
            failure_timeout_ms: None,
            takeover_margin_ms: None,
            tls_cert: None,
            tls_key: None,
            tls_ca: None,
        }
    }
}

/// The cookie nodes use when `AIMESH_COOKIE` is not set: fine on one machine, refused for
/// nodes that listen beyond loopback.
pub const DEV_COOKIE: &str = "aimesh-development-cookie";

fn default_cluster_name() -> String {
    "aimesh".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNode {
    name: String,
    api: String,
    cluster: Option<String>,
    dial: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    max_body_bytes: Option<u64>,
    max_task_chars: Option<u64>,
    max_memory_item_bytes: Option<u64>,
    max_unfinished_tasks: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScheduler {
    aging_ms: Option<u64>,
    max_active_tasks: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMemory {
    shards: Option<u64>,
    sweep_interval_seconds: Option<u64>,
    max_age_seconds: Option<u64>,
    max_items: Option<u64>,
    embedding_dims: Option<u64>,
    ann_threshold: Option<u64>,
    embedder: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStorage {
    backend: Option<String>,
    data_dir: Option<String>,
    postgres_url: Option<String>,
    compress_above_bytes: Option<u64>,
}

/// Where a node keeps its state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StorageKind {
    /// In process memory: lost when the process ends (tests, benchmarks).
    Memory,
    /// One redb file per node: `<dir>/<node>.redb`.
    Embedded {
        /// The data directory (absolute, or relative to the cluster file's directory).
        dir: PathBuf,
    },
    /// A PostgreSQL database shared by the cluster.
    Postgres {
        /// The connection URL.
        url: String,
    },
}

/// The validated `[storage]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageConfig {
    /// The backend.
    pub kind: StorageKind,
    /// Memory items over this many bytes are compressed.
    pub compress_above: usize,
}

/// The validated memory tunables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryConfig {
    /// Shard actors per node.
    pub shards: u32,
    /// How often expired and over-retention items are removed.
    pub sweep_interval: Duration,
    /// Default retention of networks that set none.
    pub retention: aimesh_actors::types::Retention,
    /// What search embeds text with.
    pub embedder: EmbedderConfig,
    /// Length of the hashing embedder's vectors.
    pub embedding_dims: usize,
    /// A shard's per-network index switches from exact scan to HNSW past this many items.
    pub ann_threshold: usize,
}

/// One node of the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeConfig {
    /// Its name, unique in the file.
    pub name: String,
    /// Where its HTTP API listens.
    pub api: SocketAddr,
    /// Where it listens for its peers (`host:port`); none for a standalone node.
    pub cluster: Option<String>,
    /// The address its peers dial to reach it (`host:port`, e.g. a proxy in front of
    /// `cluster`); `cluster` when absent.
    pub dial: Option<String>,
}

impl NodeConfig {
    /// The address peers dial to reach this node: `dial`, else `cluster`.
    pub fn dial_addr(&self) -> Option<&str> {
        self.dial.as_deref().or(self.cluster.as_deref())
    }
}

/// The validated `[cluster]` membership tunables and the cookie.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MembershipConfig {
    /// The shared secret (from `AIMESH_COOKIE`, else [`DEV_COOKIE`]).
    pub cookie: String,
    /// How often nodes heartbeat.
    pub heartbeat: Duration,
    /// A node silent this long is suspect.
    pub failure_timeout: Duration,
    /// The extra wait before a dead node's networks are taken over (shared store).
    pub takeover_margin: Duration,
    /// Mutual TLS for cluster sessions, when all three files are configured.
    pub tls: Option<aimesh_actors::cluster::tls::TlsFiles>,
}

/// Explicit limits on what the API accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Largest request body.
    pub max_body_bytes: usize,
    /// Longest task text.
    pub max_task_chars: usize,
    /// Largest memory item (content and metadata, as JSON).
    pub max_memory_item_bytes: usize,
    /// Most unfinished tasks per network.
    pub max_unfinished_tasks: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body_bytes: 1 << 20,
            max_task_chars: 32_768,
            max_memory_item_bytes: 64 << 10,
            max_unfinished_tasks: 10_000,
        }
    }
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where it was read from.
    pub path: PathBuf,
    /// The cluster's name.
    pub cluster: String,
    /// Membership: cookie, heartbeats, failure detection.
    pub membership: MembershipConfig,
    /// The nodes.
    pub nodes: Vec<NodeConfig>,
    /// API limits.
    pub limits: Limits,
    /// Priority aging interval.
    pub aging: Duration,
    /// Most tasks a coordinator works on at once.
    pub max_active_tasks: usize,
    /// Memory shards, sweeps, retention, search.
    pub memory: MemoryConfig,
    /// Where state is kept.
    pub storage: StorageConfig,
    /// The model gateway.
    pub gateway: gateway::GatewaySection,
}

impl Config {
    /// Reads and validates `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(path, &text)
    }

    /// Parses and validates `text`, read from `path`, with this process's environment.
    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
        Self::parse_with_env(path, text, &|k| std::env::var(k).ok())
    }

    /// Parses and validates `text` with `env` standing for the environment.
    pub fn parse_with_env(
        path: &Path,
        text: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e.to_string().trim_end().to_owned(),
        })?;
        validate(path, raw, env)
    }

    /// The node called `name`.
    pub fn node(&self, name: &str) -> Option<&NodeConfig> {
        self.nodes.iter().find(|n| n.name == name)
    }
}

pub(crate) fn ranged(
    path: &Path,
    key: &str,
    value: Option<u64>,
    default: u64,
    range: std::ops::RangeInclusive<u64>,
) -> Result<u64, ConfigError> {
    let v = value.unwrap_or(default);
    if range.contains(&v) {
        Ok(v)
    } else {
        Err(ConfigError::Invalid {
            path: path.to_owned(),
            key: key.to_owned(),
            message: format!("{v} is out of range {}..={}", range.start(), range.end()),
        })
    }
}

pub(crate) fn to_usize(v: u64) -> usize {
    usize::try_from(v).unwrap_or(usize::MAX)
}

fn validate(
    path: &Path,
    raw: RawConfig,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigError> {
    let RawConfig {
        cluster,
        node,
        limits,
        scheduler,
        memory,
        storage,
        gateway,
    } = raw;
    let invalid = |key: String, message: String| ConfigError::Invalid {
        path: path.to_owned(),
        key,
        message,
    };
    if node.is_empty() {
        return Err(invalid(
            "node".into(),
            "list at least one [[node]] with a name and an api address".into(),
        ));
    }
    let mut names = HashSet::new();
    let mut nodes = Vec::new();
    let several = node.len() > 1;
    let mut cluster_addrs = HashSet::new();
    for (
        i,
        RawNode {
            name,
            api,
            cluster,
            dial,
        },
    ) in node.into_iter().enumerate()
    {
        let ok_name = !name.is_empty()
            && name.len() <= 64
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !ok_name {
            return Err(invalid(
                format!("node[{i}].name"),
                format!("{name:?}: use 1-64 letters, digits, '-' or '_'"),
            ));
        }
        if !names.insert(name.clone()) {
            return Err(invalid(
                format!("node[{i}].name"),
                format!("{name:?} is listed twice"),
            ));
        }
        let api: SocketAddr = api.parse().map_err(|e| {
            invalid(
                format!("node[{i}].api"),
                format!("{api:?} is not an ip:port address ({e})"),
            )
        })?;
        let cluster = match cluster {
            Some(addr) => {
                let (host, port) = addr.rsplit_once(':').ok_or_else(|| {
                    invalid(
                        format!("node[{i}].cluster"),
                        format!("{addr:?} is not a host:port address"),
                    )
                })?;
                if host.is_empty() || port.parse::<u16>().is_err() {
                    return Err(invalid(
                        format!("node[{i}].cluster"),
                        format!("{addr:?} is not a host:port address"),
                    ));
                }
                if !cluster_addrs.insert(addr.clone()) {
                    return Err(invalid(
                        format!("node[{i}].cluster"),
                        format!("{addr:?} is used by two nodes"),
                    ));
                }
                Some(addr)
            }
            None if several => {
                return Err(invalid(
                    format!("node[{i}].cluster"),
                    "with several nodes, each needs a cluster address (host:port) for its peers"
                        .into(),
                ));
            }
            None => None,
        };
        if let Some(addr) = &dial {
            if cluster.is_none() {
                return Err(invalid(
                    format!("node[{i}].dial"),
                    "dial needs a cluster address too (dial is how peers reach `cluster`)".into(),
                ));
            }
            let ok = addr
                .rsplit_once(':')
                .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok());
            if !ok {
                return Err(invalid(
                    format!("node[{i}].dial"),
                    format!("{addr:?} is not a host:port address"),
                ));
            }
        }
        nodes.push(NodeConfig {
            name,
            api,
            cluster,
            dial,
        });
    }
    let cookie = env("AIMESH_COOKIE").filter(|c| !c.is_empty());
    let beyond_loopback = nodes.iter().filter_map(|n| n.cluster.as_deref()).any(|a| {
        let host = a.rsplit_once(':').map(|(h, _)| h).unwrap_or(a);
        let host = host.trim_start_matches('[').trim_end_matches(']');
        !(host == "localhost"
            || host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback()))
    });
    if cookie.is_none() && beyond_loopback {
        return Err(invalid(
            "node.cluster".into(),
            "nodes listen beyond loopback: set AIMESH_COOKIE to a secret shared by the cluster \
             (the development cookie is only accepted on 127.0.0.1)"
                .into(),
        ));
    }
    let heartbeat = ranged(
        path,
        "cluster.heartbeat_ms",
        cluster.heartbeat_ms,
        200,
        10..=10_000,
    )?;
    let failure_timeout = ranged(
        path,
        "cluster.failure_timeout_ms",
        cluster.failure_timeout_ms,
        1000,
        50..=600_000,
    )?;
    if failure_timeout < heartbeat * 3 {
        return Err(invalid(
            "cluster.failure_timeout_ms".into(),
            format!(
                "{failure_timeout} ms must be at least three heartbeats ({} ms)",
                heartbeat * 3
            ),
        ));
    }
    let takeover_margin = ranged(
        path,
        "cluster.takeover_margin_ms",
        cluster.takeover_margin_ms,
        300,
        0..=600_000,
    )?;
    if takeover_margin < heartbeat {
        return Err(invalid(
            "cluster.takeover_margin_ms".into(),
            format!(
                "{takeover_margin} ms must be at least one heartbeat ({heartbeat} ms): a node cut \
                 off from the majority needs that long to stop its work"
            ),
        ));
    }
    let tls = {
        let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let file = |key: &str, p: Option<PathBuf>| -> Result<Option<PathBuf>, ConfigError> {
            let Some(p) = p else { return Ok(None) };
            let p = if p.is_absolute() { p } else { dir.join(p) };
            if !p.is_file() {
                return Err(invalid(
                    format!("cluster.{key}"),
                    format!("{} is not a readable file", p.display()),
                ));
            }
            Ok(Some(p))
        };
        let cert = file("tls_cert", cluster.tls_cert.clone())?;
        let key = file("tls_key", cluster.tls_key.clone())?;
        let ca = file("tls_ca", cluster.tls_ca.clone())?;
        match (cert, key, ca) {
            (Some(cert), Some(key), Some(ca)) => {
                Some(aimesh_actors::cluster::tls::TlsFiles { cert, key, ca })
            }
            (None, None, None) => None,
            (cert, key, _) => {
                let missing = if cert.is_none() {
                    "tls_cert"
                } else if key.is_none() {
                    "tls_key"
                } else {
                    "tls_ca"
                };
                return Err(invalid(
                    format!("cluster.{missing}"),
                    "TLS needs tls_cert, tls_key and tls_ca together".into(),
                ));
            }
        }
    };
    let membership = MembershipConfig {
        tls,
        cookie: cookie.unwrap_or_else(|| DEV_COOKIE.to_owned()),
        heartbeat: Duration::from_millis(heartbeat),
        failure_timeout: Duration::from_millis(failure_timeout),
        takeover_margin: Duration::from_millis(takeover_margin),
    };
    let RawLimits {
        max_body_bytes,
        max_task_chars,
        max_memory_item_bytes,
        max_unfinished_tasks,
    } = limits;
    let d = Limits::default();
    let limits = Limits {
        max_body_bytes: to_usize(ranged(
            path,
            "limits.max_body_bytes",
            max_body_bytes,
            d.max_body_bytes as u64,
            1024..=(64 << 20),
        )?),
        max_task_chars: to_usize(ranged(
            path,
            "limits.max_task_chars",
            max_task_chars,
            d.max_task_chars as u64,
            1..=(1 << 20),
        )?),
        max_memory_item_bytes: to_usize(ranged(
            path,
            "limits.max_memory_item_bytes",
            max_memory_item_bytes,
            d.max_memory_item_bytes as u64,
            64..=(16 << 20),
        )?),
        max_unfinished_tasks: to_usize(ranged(
            path,
            "limits.max_unfinished_tasks",
            max_unfinished_tasks,
            d.max_unfinished_tasks as u64,
            1..=10_000_000,
        )?),
    };
    let RawScheduler {
        aging_ms,
        max_active_tasks,
    } = scheduler;
    let RawMemory {
        shards,
        sweep_interval_seconds,
        max_age_seconds,
        max_items,
        embedding_dims,
        ann_threshold,
        embedder,
    } = memory;
    let RawStorage {
        backend,
        data_dir,
        postgres_url,
        compress_above_bytes,
    } = storage;
    let base_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let postgres_url = postgres_url.or_else(|| env("AIMESH_DATABASE_URL"));
    let kind = match (backend.as_deref(), postgres_url) {
        (Some("memory"), _) => StorageKind::Memory,
        (Some("postgres"), None) => {
            return Err(invalid(
                "storage.postgres_url".into(),
                "backend = \"postgres\" needs a postgres_url (or AIMESH_DATABASE_URL)".into(),
            ));
        }
        (Some("postgres") | None, Some(url)) => StorageKind::Postgres { url },
        (Some("embedded") | None, _) => {
            let dir = PathBuf::from(data_dir.unwrap_or_else(|| "data".into()));
            StorageKind::Embedded {
                dir: if dir.is_absolute() {
                    dir
                } else {
                    base_dir.join(dir)
                },
            }
        }
        (Some(other), _) => {
            return Err(invalid(
                "storage.backend".into(),
                format!("{other:?}: use embedded, postgres or memory"),
            ));
        }
    };
    let cluster = cluster.name;
    let gateway = gateway::validate(path, gateway, env)?;
    let embedder = embedder::validate(path, embedder, &gateway)?;
    Ok(Config {
        path: path.to_owned(),
        cluster,
        membership,
        nodes,
        limits,
        aging: Duration::from_millis(ranged(
            path,
            "scheduler.aging_ms",
            aging_ms,
            5_000,
            0..=3_600_000,
        )?),
        max_active_tasks: to_usize(ranged(
            path,
            "scheduler.max_active_tasks",
            max_active_tasks,
            64,
            1..=100_000,
        )?),
        memory: MemoryConfig {
            shards: u32::try_from(ranged(path, "memory.shards", shards, 4, 1..=1024)?).unwrap_or(4),
            sweep_interval: Duration::from_secs(ranged(
                path,
                "memory.sweep_interval_seconds",
                sweep_interval_seconds,
                30,
                1..=86_400,
            )?),
            retention: aimesh_actors::types::Retention {
                max_age_seconds: max_age_seconds
                    .map(|v| {
                        ranged(
                            path,
                            "memory.max_age_seconds",
                            Some(v),
                            0,
                            1..=u64::from(u32::MAX),
                        )
                    })
                    .transpose()?,
                max_items: max_items
                    .map(|v| ranged(path, "memory.max_items", Some(v), 0, 1..=1_000_000_000))
                    .transpose()?,
            },
            embedder,
            embedding_dims: to_usize(ranged(
                path,
                "memory.embedding_dims",
                embedding_dims,
                512,
                16..=8192,
            )?),
            ann_threshold: to_usize(ranged(
                path,
                "memory.ann_threshold",
                ann_threshold,
                20_000,
                1..=100_000_000,
            )?),
        },
        storage: StorageConfig {
            kind,
            compress_above: to_usize(ranged(
                path,
                "storage.compress_above_bytes",
                compress_above_bytes,
                4096,
                64..=(64 << 20),
            )?),
        },
        gateway,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(Path::new("cluster.toml"), text)
    }

    #[test]
    fn the_checked_in_cluster_toml_is_valid() {
        let text = include_str!("../cluster.toml");
        let c = parse(text).unwrap();
        assert!(!c.nodes.is_empty());
        assert_eq!(c.nodes[0].api.port(), 8080);
    }

    #[test]
    fn peers_dial_the_dial_address_when_given() {
        let c = parse(
            "[[node]]\nname = \"n1\"\napi = \"127.0.0.1:9000\"\ncluster = \"127.0.0.1:9100\"\ndial = \"127.0.0.1:9200\"\n\
             [[node]]\nname = \"n2\"\napi = \"127.0.0.1:9001\"\ncluster = \"127.0.0.1:9101\"\n",
        )
        .unwrap();
        assert_eq!(c.nodes[0].dial_addr(), Some("127.0.0.1:9200"));
        assert_eq!(c.nodes[1].dial_addr(), Some("127.0.0.1:9101"));
        let bad = parse(
            "[[node]]\nname = \"n1\"\napi = \"127.0.0.1:9000\"\ncluster = \"127.0.0.1:9100\"\ndial = \"nowhere\"\n\
             [[node]]\nname = \"n2\"\napi = \"127.0.0.1:9001\"\ncluster = \"127.0.0.1:9101\"\n",
        );
        assert!(format!("{:?}", bad.unwrap_err()).contains("node[0].dial"));
        let alone =
            parse("[[node]]\nname = \"n1\"\napi = \"127.0.0.1:9000\"\ndial = \"127.0.0.1:1\"\n");
        assert!(format!("{:?}", alone.unwrap_err()).contains("node[0].dial"));
    }

    #[test]
    fn a_minimal_file_gets_defaults() {
        let c = parse("[[node]]\nname = \"n1\"\napi = \"127.0.0.1:9000\"\n").unwrap();
        assert_eq!(c.limits, Limits::default());
        assert_eq!(c.memory.shards, 4);
        assert_eq!(
            c.storage.kind,
            StorageKind::Embedded {
                dir: PathBuf::from("data")
            }
        );
        assert_eq!(c.aging, Duration::from_secs(5));
    }

    #[test]
    fn providers_follow_the_ecosystems_environment_variables() {
        let env = |k: &str| match k {
            "ANTHROPIC_API_KEY" => Some("sk-ant".to_owned()),
            "ANTHROPIC_BASE_URL" => Some("http://127.0.0.1:9999/".to_owned()),
            "OLLAMA_HOST" => Some("127.0.0.1:11434".to_owned()),
            "MY_KEY" => Some("secret".to_owned()),
            _ => None,
        };
        let text = "[[node]]\nname = \"n1\"\napi = \"127.0.0.1:1\"\n\
            [gateway.providers.vllm]\nkind = \"openai-compatible\"\nbase_url = \"http://10.0.0.5:8000/v1\"\napi_key_env = \"MY_KEY\"\n\
            [gateway.models.llama-70b]\nprovider = \"vllm\"\nmodel = \"meta-llama/Llama-3.3-70B\"\ninput_usd_per_mtok = 0.5\n\
            [gateway.chains]\nlocal = [\"llama-70b\", \"llama3.2\"]\n";
        let c = Config::parse_with_env(Path::new("c.toml"), text, &env).unwrap();
        let cat = &c.gateway.config.catalog;
        let names: Vec<&str> = cat.providers().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["anthropic", "offline", "ollama", "vllm"]);
        let anthropic = format!("{:?}", cat.provider("anthropic").unwrap().backend);
        assert!(anthropic.contains("http://127.0.0.1:9999\""), "{anthropic}");
        assert!(
            !anthropic.contains("sk-ant"),
            "keys never show in debug output"
        );
        let ollama = format!("{:?}", cat.provider("ollama").unwrap().backend);
        assert!(ollama.contains("http://127.0.0.1:11434"), "{ollama}");
        let chain = cat.resolve("local").unwrap();
        let links: Vec<&str> = chain.links.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(links, ["llama-70b", "llama3.2", "offline"]);
        // The seed chain: anthropic is configured, openai and gemini are not.
        let seed = cat.resolve("claude-3-7-sonnet").unwrap();
        let links: Vec<&str> = seed.links.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(links, ["claude-3-7-sonnet", "offline"]);
    }

    #[test]
    fn gateway_errors_name_the_key() {
        let base = "[[node]]\nname = \"n1\"\napi = \"127.0.0.1:1\"\n";
        let cases = [
            (
                "[gateway.models.x]\nprovider = \"nowhere\"\n",
                "gateway.models.x.provider",
            ),
            (
                "[gateway.chains]\nbad = [\"no-such\"]\n",
                "gateway.chains.bad[0]",
            ),
            (
                "[gateway.providers.p]\nkind = \"cohere\"\n",
                "gateway.providers.p.kind",
            ),
            (
                "[gateway.safety]\nblocked_patterns = [\"(\"]\n",
                "gateway.safety.blocked_patterns",
            ),
            ("[gateway]\nbudget_usd = -1.0\n", "gateway.budget_usd"),
            (
                "[gateway.selection]\nsimple_model = \"nope\"\n",
                "gateway.selection.simple_model",
            ),
        ];
        for (extra, key) in cases {
            let e =
                Config::parse_with_env(Path::new("c.toml"), &format!("{base}{extra}"), &|_| None)
                    .unwrap_err();
            assert!(e.to_string().contains(key), "{key}: {e}");
        }
    }

    #[test]
    fn errors_name_the_file_and_key() {
        let e = parse("[[node]]\nname = \"n1\"\napi = \"nowhere\"\n").unwrap_err();
        assert!(e.to_string().contains("node[0].api"), "{e}");
        let e = parse("[[node]]\nname = \"n1\"\napi = \"127.0.0.1:1\"\n[memory]\nshards = 0\n")
            .unwrap_err();
        assert!(e.to_string().contains("memory.shards"), "{e}");
        let e = parse("[[node]]\nname = \"n1\"\napi = \"127.0.0.1:1\"\nbogus = 1\n").unwrap_err();
        assert!(e.to_string().contains("bogus"), "{e}");
        assert!(e.to_string().starts_with("cluster.toml"), "{e}");
        let e = parse("").unwrap_err();
        assert!(e.to_string().contains("[[node]]"), "{e}");
        let e = parse(
            "[[node]]\nname = \"a\"\napi = \"127.0.0.1:1\"\ncluster = \"127.0.0.1:3\"\n[[node]]\nname = \"a\"\napi = \"127.0.0.1:2\"\ncluster = \"127.0.0.1:4\"\n",
        )
        .unwrap_err();
        assert!(e.to_string().contains("twice"), "{e}");
        let e = parse(
            "[[node]]\nname = \"a\"\napi = \"127.0.0.1:1\"\n[[node]]\nname = \"b\"\napi = \"127.0.0.1:2\"\n",
        )
        .unwrap_err();
        assert!(e.to_string().contains("node[0].cluster"), "{e}");
        let e = parse(
            "[[node]]\nname = \"a\"\napi = \"127.0.0.1:1\"\ncluster = \"127.0.0.1:3\"\n[[node]]\nname = \"b\"\napi = \"127.0.0.1:2\"\ncluster = \"127.0.0.1:3\"\n",
        )
        .unwrap_err();
        assert!(e.to_string().contains("node[1].cluster"), "{e}");
        let e = parse("[[node]]\nname = \"a\"\napi = \"127.0.0.1:1\"\ncluster = \"nope\"\n")
            .unwrap_err();
        assert!(e.to_string().contains("node[0].cluster"), "{e}");
        let e = parse("[cluster]\ntls_cert = \"/nonexistent.pem\"\n[[node]]\nname = \"a\"\napi = \"127.0.0.1:1\"\n")
            .unwrap_err();
        assert!(e.to_string().contains("cluster.tls_cert"), "{e}");
        let file = tempfile::NamedTempFile::new().unwrap();
        let e = parse(&format!(
            "[cluster]\ntls_cert = {:?}\n[[node]]\nname = \"a\"\napi = \"127.0.0.1:1\"\n",
            file.path()
        ))
        .unwrap_err();
        assert!(e.to_string().contains("cluster.tls_key"), "{e}");
    }
}
