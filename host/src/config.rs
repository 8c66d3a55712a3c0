//! Engine configuration: defaults, overridden by a TOML file, overridden by environment variables
//! and command-line flags (see `cli`).
//!
//! Every field has a default, so `wasmhook serve` runs with no file at all. Unknown keys in the
//! file are an error naming the key, so a typo never silently falls back to a default.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

mod lifecycle;

pub use lifecycle::{JobsConfig, OperationsConfig, RetentionConfig, TenantRetention};

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML for this schema (the message names the key).
    #[error("invalid config file {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong, with the key.
        message: String,
    },
    /// A value is out of range.
    #[error("invalid configuration: {field}: {reason}")]
    Invalid {
        /// The key, dotted (`delivery.retry_schedule`).
        field: &'static str,
        /// Why.
        reason: String,
    },
}

/// The whole configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Directory of the SQLite database, the tenant plugins and the compiled-code cache.
    pub data_dir: PathBuf,
    /// Address of the admin API.
    pub listen: SocketAddr,
    /// Operator token for the admin API. When unset, one is generated on first start and written
    /// to `<data_dir>/admin-token` (mode 0600).
    #[serde(skip_serializing)]
    pub admin_token: Option<String>,
    /// Operator plugins directory, watched for `*.wasm` files. Default `<data_dir>/plugins`.
    pub plugins_dir: Option<PathBuf>,
    /// Delivery and retry behaviour.
    pub delivery: DeliveryConfig,
    /// Outbound HTTP.
    pub http: HttpConfig,
    /// Plugin sandbox and endpoint policy.
    pub plugins: PluginsConfig,
    /// Admin API limits.
    pub api: ApiConfig,
    /// Storage.
    pub store: StoreConfig,
    /// JWS signing keys.
    pub keys: KeysConfig,
    /// Secrets at rest.
    pub secrets: SecretsConfig,
    /// What is kept, and for how long.
    pub retention: RetentionConfig,
    /// The periodic jobs (one node at a time in a cluster).
    pub jobs: JobsConfig,
    /// Operational webhooks.
    pub operations: OperationsConfig,
}

/// Secrets at rest: the master key that seals step secrets and private keys in the store.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SecretsConfig {
    /// The master key: 64 hex characters or base64 of 32 bytes. Unset: `<data_dir>/master-key`,
    /// generated (mode 0600) on first run. Every node of a cluster needs the same key.
    #[serde(skip_serializing)]
    pub master_key: Option<String>,
    /// Earlier master keys that still unseal (during a rotation).
    #[serde(skip_serializing)]
    pub previous_master_keys: Vec<String>,
}

/// Delivery and retry behaviour.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DeliveryConfig {
    /// Delays between attempts, e.g. `["5s", "5m", "30m", "2h", "5h", "10h", "10h"]` (Svix's);
    /// one attempt plus one per entry, then the delivery is dead.
    #[serde(with = "humantime_serde_vec")]
    pub retry_schedule: Vec<Duration>,
    /// Random spread applied to each delay, as a fraction (0.2 = ±20 %).
    pub jitter: f64,
    /// Longest `Retry-After` honoured on 429/503.
    #[serde(with = "humantime_serde")]
    pub max_retry_after: Duration,
    /// Attempts in flight across all endpoints.
    pub max_in_flight: usize,
    /// Attempts in flight per endpoint unless the endpoint sets `max_concurrency`.
    pub endpoint_concurrency: usize,
    /// Time allowed to establish a connection.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Time allowed for a whole attempt (connect, send, read the response).
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Bytes of a response body read at most.
    pub max_response_bytes: usize,
    /// Bytes of the response body kept with each attempt.
    pub response_snippet_bytes: usize,
    /// How long shutdown waits for attempts in flight.
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// An endpoint whose attempts have all failed for this long (at least
    /// `disable_min_attempts` in a row) is disabled automatically; its new deliveries are held
    /// until it is enabled again. Zero turns automatic disabling off.
    #[serde(with = "humantime_serde")]
    pub disable_after: Duration,
    /// Failed attempts in a row an endpoint needs before it can be disabled automatically.
    pub disable_min_attempts: u32,
}

/// Outbound HTTP policy.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[derive(Default)]
pub struct HttpConfig {
    /// Special-purpose destinations (private, loopback, link-local, documentation, the IPv6
    /// forms embedding an IPv4 address, ...) are refused unless their address falls in one of
    /// these networks (e.g. `["127.0.0.1/32"]`).
    pub allow_cidrs: Vec<IpNet>,
    /// Egress only to `allow_cidrs`: every other destination is refused and names other than
    /// `localhost` are not even resolved (an isolated test bed, or a strict egress policy).
    pub egress_allow_cidrs_only: bool,
}

/// Plugin sandbox limits and endpoint policy.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PluginsConfig {
    /// Wall-clock deadline of one plugin call (epoch interruption).
    #[serde(with = "humantime_serde")]
    pub call_deadline: Duration,
    /// Linear memory one plugin instance may grow to, in MiB.
    pub max_memory_mib: usize,
    /// Largest body a plugin may return, in MiB.
    pub max_body_mib: usize,
    /// A step's instance may serve up to this many `apply` calls of the SAME endpoint (same
    /// tenant, plugin version and configuration) before it is dropped; 1 = a fresh instance for
    /// every call. Any trap, error or stderr output drops it at once.
    pub instance_reuse_calls: u32,
    /// Idle warm instances kept across all plugins (each holds its memory).
    pub max_idle_instances: u32,
    /// Every endpoint needs at least one authentication step and one security measure (mTLS or a
    /// security step).
    pub require_auth_and_security: bool,
    /// Compiled-code cache directory (default `<data_dir>/cache`). Several engines on one machine
    /// may share it: entries are keyed by the component's hash and the engine's settings.
    pub cache_dir: Option<PathBuf>,
    /// Default lifetime of a token whose route did not say (`expires_in`).
    #[serde(with = "humantime_serde")]
    pub default_token_lifetime: Duration,
    /// Tokens are refreshed this long before they expire.
    #[serde(with = "humantime_serde")]
    pub token_refresh_margin: Duration,
}

/// Admin API limits.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiConfig {
    /// Largest JSON request body, in KiB.
    pub max_body_kib: usize,
    /// Largest uploaded plugin, in MiB.
    pub max_plugin_mib: usize,
    /// Events accepted in one batch request.
    pub max_batch_events: usize,
    /// Deepest nesting of arrays and objects accepted in an event's `resource` and `data`
    /// (1 to 100; the envelope adds one level, and what is stored must stay readable by JSON
    /// parsers with the usual limit of 128).
    pub max_json_depth: usize,
    /// Plugin uploads received and compiled at once; more wait (`upload_wait`), then get 503.
    pub max_concurrent_uploads: usize,
    /// How long an upload waits for its turn before it is answered 503.
    #[serde(with = "humantime_serde")]
    pub upload_wait: Duration,
    /// Plugins one tenant may have.
    pub max_plugins_per_tenant: usize,
    /// Bytes of plugins one tenant may have stored (all its plugins together), in MiB.
    pub max_plugin_bytes_per_tenant_mib: usize,
    /// How long a connection may take to send a request's headers, and how long it may stay
    /// idle between requests (keep-alive, HTTP/2) or before its first byte; then it is closed.
    #[serde(with = "humantime_serde")]
    pub header_read_timeout: Duration,
    /// How long a request's whole body may take to arrive, counted from when the handler starts
    /// reading it; then the request is answered 408 and the connection closed.
    #[serde(with = "humantime_serde")]
    pub body_read_timeout: Duration,
    /// Connections served at once. When all are taken the listener stops accepting: new
    /// connections wait in the kernel's backlog until one closes.
    pub max_connections: usize,
}

/// Storage: which backend, how writes are grouped, how deliveries are leased.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// `sqlite:///absolute/path/file.sqlite3` or `postgres://user[:password]@host[:port]/db`
    /// (`?sslmode=require` for TLS). Unset: SQLite in `<data_dir>/wasmhook.sqlite3`. Several
    /// nodes share one PostgreSQL database; a SQLite file belongs to one node.
    #[serde(skip_serializing)]
    pub url: Option<String>,
    /// Writes grouped into one transaction (and one fsync) at most.
    pub max_batch: usize,
    /// `FULL` (fsync on every commit, survives power loss) or `NORMAL` (survives a crash of the
    /// process, not of the machine). SQLite only.
    pub synchronous: Synchronous,
    /// How long a node's claim on a delivery lasts without a heartbeat: when a node dies, the
    /// others take its deliveries over after this.
    #[serde(with = "humantime_serde")]
    pub lease_ttl: Duration,
    /// Deliveries a node holds claimed in memory at most (the rest wait in the store).
    pub window: usize,
    /// How often an idle node looks for work it was not told about (PostgreSQL also wakes
    /// nodes with LISTEN/NOTIFY), and how often it checks for changes made by other nodes.
    #[serde(with = "humantime_serde")]
    pub poll_interval: Duration,
    /// PostgreSQL connections per node.
    pub pool_size: usize,
    /// Event bodies held in memory with claimed deliveries, in MiB; beyond, bodies are read from
    /// the store when the attempt is sent.
    pub max_held_body_mib: usize,
}

/// SQLite's `synchronous` setting.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "UPPERCASE")]
pub enum Synchronous {
    /// fsync the WAL on every commit.
    Full,
    /// fsync at checkpoints only.
    Normal,
}

/// JWS signing keys.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KeysConfig {
    /// Subject of the self-signed certificates published with the keys.
    pub certificate_subject: String,
    /// How long a retired key stays published in the JWKS.
    #[serde(with = "humantime_serde")]
    pub retired_key_lifetime: Duration,
    /// Algorithms whose current key is created at start-up, so the JWKS lists them before the
    /// first JWS delivery (`RS256`, `PS256`, `ES256`, `EdDSA`; others are created on first use).
    pub algorithms: Vec<crate::jose::SigningAlg>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: default_data_dir(),
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            admin_token: None,
            plugins_dir: None,
            delivery: DeliveryConfig::default(),
            http: HttpConfig::default(),
            plugins: PluginsConfig::default(),
            api: ApiConfig::default(),
            store: StoreConfig::default(),
            keys: KeysConfig::default(),
            secrets: SecretsConfig::default(),
            retention: RetentionConfig::default(),
            jobs: JobsConfig::default(),
            operations: OperationsConfig::default(),
        }
    }
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        let h = |hours: u64| Duration::from_secs(hours * 3600);
        Self {
            retry_schedule: vec![
                Duration::from_secs(5),
                Duration::from_secs(300),
                Duration::from_secs(1800),
                h(2),
                h(5),
                h(10),
                h(10),
            ],
            jitter: 0.2,
            max_retry_after: h(24),
            max_in_flight: 512,
            endpoint_concurrency: 32,
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(15),
            max_response_bytes: 64 * 1024,
            response_snippet_bytes: 1024,
            shutdown_grace: Duration::from_secs(10),
            disable_after: h(5 * 24),
            disable_min_attempts: 10,
        }
    }
}

impl Default for PluginsConfig {
    fn default() -> Self {
        Self {
            call_deadline: Duration::from_secs(2),
            max_memory_mib: 64,
            max_body_mib: 16,
            instance_reuse_calls: 1000,
            max_idle_instances: 64,
            require_auth_and_security: true,
            cache_dir: None,
            default_token_lifetime: Duration::from_secs(300),
            token_refresh_margin: Duration::from_secs(30),
        }
    }
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            max_body_kib: 1024,
            max_plugin_mib: 32,
            max_batch_events: 1000,
            max_json_depth: 64,
            max_concurrent_uploads: 2,
            upload_wait: Duration::from_secs(10),
            max_plugins_per_tenant: 16,
            max_plugin_bytes_per_tenant_mib: 64,
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(30),
            max_connections: 1024,
        }
    }
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            url: None,
            max_batch: 1024,
            synchronous: Synchronous::Full,
            lease_ttl: Duration::from_secs(30),
            window: 10_000,
            poll_interval: Duration::from_millis(500),
            pool_size: 16,
            max_held_body_mib: 64,
        }
    }
}

impl Default for KeysConfig {
    fn default() -> Self {
        Self {
            certificate_subject: "wasmhook webhook signing".into(),
            retired_key_lifetime: Duration::from_secs(30 * 24 * 3600),
            algorithms: crate::jose::SigningAlg::ALL.to_vec(),
        }
    }
}

impl Config {
    /// Reads a TOML file over the defaults.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_toml(&text).map_err(|message| ConfigError::Parse {
            path: path.to_path_buf(),
            message,
        })
    }

    /// Parses TOML over the defaults; the error names the key.
    pub fn from_toml(text: &str) -> Result<Self, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    /// The operator plugins directory.
    pub fn plugins_dir(&self) -> PathBuf {
        self.plugins_dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("plugins"))
    }

    /// Where the store lives (`store.url`, else SQLite under the data directory).
    pub fn store_location(&self) -> Result<crate::store::StoreLocation, crate::store::StoreError> {
        crate::store::StoreLocation::parse(self.store.url.as_deref(), &self.data_dir)
    }

    /// Checks ranges that serde cannot express.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |field, reason: &str| {
            Err(ConfigError::Invalid {
                field,
                reason: reason.into(),
            })
        };
        if !(0.0..1.0).contains(&self.delivery.jitter) {
            return invalid("delivery.jitter", "must be at least 0 and below 1");
        }
        if self.delivery.max_in_flight == 0 {
            return invalid("delivery.max_in_flight", "must be at least 1");
        }
        if self.delivery.endpoint_concurrency == 0 {
            return invalid("delivery.endpoint_concurrency", "must be at least 1");
        }
        if self.delivery.request_timeout.is_zero() {
            return invalid("delivery.request_timeout", "must be above zero");
        }
        if self.plugins.max_memory_mib == 0 || self.plugins.max_memory_mib > 4096 {
            return invalid("plugins.max_memory_mib", "must be between 1 and 4096");
        }
        if self.plugins.instance_reuse_calls == 0 {
            return invalid(
                "plugins.instance_reuse_calls",
                "must be at least 1 (1 = a fresh instance for every call)",
            );
        }
        if self.plugins.max_idle_instances > 4096 {
            return invalid("plugins.max_idle_instances", "must be at most 4096");
        }
        if self.plugins.call_deadline.is_zero() {
            return invalid("plugins.call_deadline", "must be above zero");
        }
        if self.api.max_json_depth == 0 || self.api.max_json_depth > 100 {
            return invalid("api.max_json_depth", "must be between 1 and 100");
        }
        if self.api.max_plugin_mib == 0 {
            return invalid("api.max_plugin_mib", "must be at least 1");
        }
        if self.api.max_concurrent_uploads == 0 || self.api.max_concurrent_uploads > 64 {
            return invalid("api.max_concurrent_uploads", "must be between 1 and 64");
        }
        if self.api.max_plugins_per_tenant == 0 {
            return invalid("api.max_plugins_per_tenant", "must be at least 1");
        }
        if self.api.max_plugin_bytes_per_tenant_mib < self.api.max_plugin_mib {
            return invalid(
                "api.max_plugin_bytes_per_tenant_mib",
                "must be at least api.max_plugin_mib (one plugin of the largest size)",
            );
        }
        if self.api.header_read_timeout.is_zero() {
            return invalid("api.header_read_timeout", "must be above zero");
        }
        if self.api.body_read_timeout.is_zero() {
            return invalid("api.body_read_timeout", "must be above zero");
        }
        if self.api.max_connections == 0 {
            return invalid("api.max_connections", "must be at least 1");
        }
        if self.store.max_batch == 0 {
            return invalid("store.max_batch", "must be at least 1");
        }
        if self.store.lease_ttl < Duration::from_secs(1) {
            return invalid("store.lease_ttl", "must be at least 1s");
        }
        if self.store.window == 0 {
            return invalid("store.window", "must be at least 1");
        }
        if self.store.poll_interval.is_zero() || self.store.poll_interval > Duration::from_secs(60)
        {
            return invalid("store.poll_interval", "must be above zero and at most 60s");
        }
        if self.store.pool_size == 0 {
            return invalid("store.pool_size", "must be at least 1");
        }
        if let Err(e) = self.store_location() {
            return Err(ConfigError::Invalid {
                field: "store.url",
                reason: e.to_string(),
            });
        }
        if self
            .retention
            .batch_size
            .is_some_and(|n| n == 0 || n > 100_000)
        {
            return invalid("retention.batch_size", "must be between 1 and 100000");
        }
        if self.jobs.interval < Duration::from_millis(100) {
            return invalid("jobs.interval", "must be at least 100ms");
        }
        if self.jobs.lease_ttl <= self.jobs.interval {
            return invalid(
                "jobs.lease_ttl",
                "must be longer than jobs.interval (each run renews the lease)",
            );
        }
        if self.operations.dead_summary_interval < Duration::from_millis(100) {
            return invalid("operations.dead_summary_interval", "must be at least 100ms");
        }
        if self.operations.token_failures == 0 {
            return invalid("operations.token_failures", "must be at least 1");
        }
        if let Some(token) = &self.admin_token
            && token.len() < 16
        {
            return invalid("admin_token", "must be at least 16 characters");
        }
        Ok(())
    }
}

/// `$XDG_DATA_HOME/wasmhook`, else `~/.local/share/wasmhook`, else `./wasmhook-data`.
pub fn default_data_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("XDG_DATA_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir).join("wasmhook");
    }
    if let Some(home) = std::env::var_os("HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(home).join(".local/share/wasmhook");
    }
    PathBuf::from("wasmhook-data")
}

/// `humantime_serde` for a `Vec<Duration>`.
pub(crate) mod humantime_serde_vec {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer, ser::SerializeSeq};

    pub fn serialize<S: Serializer>(value: &[Duration], serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(value.len()))?;
        for d in value {
            seq.serialize_element(&humantime::format_duration(*d).to_string())?;
        }
        seq.end()
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Vec<Duration>, D::Error> {
        let raw = Vec::<String>::deserialize(deserializer)?;
        raw.iter()
            .map(|s| {
                humantime::parse_duration(s)
                    .map_err(|e| serde::de::Error::custom(format!("`{s}` is not a duration: {e}")))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_match_svix_schedule() {
        let config = Config::default();
        config.validate().unwrap();
        assert_eq!(config.delivery.retry_schedule.len(), 7);
        assert_eq!(config.delivery.retry_schedule[0], Duration::from_secs(5));
    }

    #[test]
    fn file_overrides_and_unknown_keys_are_named() {
        let config = Config::from_toml(
            "listen = \"127.0.0.1:9000\"\n[delivery]\nretry_schedule = [\"1s\", \"2m\"]\n[http]\nallow_cidrs = [\"127.0.0.1/32\"]\n",
        )
        .unwrap();
        assert_eq!(config.listen.port(), 9000);
        assert_eq!(
            config.delivery.retry_schedule,
            vec![Duration::from_secs(1), Duration::from_secs(120)]
        );
        let err = Config::from_toml("[delivery]\nretry_shedule = []\n").unwrap_err();
        assert!(err.contains("retry_shedule"), "{err}");
        let err = Config::from_toml("[delivery]\nretry_schedule = [\"soon\"]\n").unwrap_err();
        assert!(err.contains("soon"), "{err}");
    }

    #[test]
    fn retention_batch_defaults_per_backend_and_a_set_one_applies_to_both() {
        let unset = Config::from_toml("[retention]\ndelivered = \"1d\"\n").unwrap();
        assert_eq!(unset.retention.batch_size, None);
        assert_eq!(
            unset.retention.batch_size_on(false),
            lifecycle::DEFAULT_BATCH_SQLITE
        );
        assert_eq!(
            unset.retention.batch_size_on(true),
            lifecycle::DEFAULT_BATCH_POSTGRES
        );
        let set = Config::from_toml("[retention]\nbatch_size = 50\n").unwrap();
        assert_eq!(set.retention.batch_size_on(false), 50);
        assert_eq!(set.retention.batch_size_on(true), 50);
        for bad in ["0", "100001"] {
            let err = Config::from_toml(&format!("[retention]\nbatch_size = {bad}\n"))
                .and_then(|c| c.validate().map_err(|e| e.to_string()))
                .unwrap_err();
            assert!(err.contains("retention.batch_size"), "{bad}: {err}");
        }
    }
}
