//! The command line: `serve`, `demo`, `plugin check`. Settings come from defaults, then the TOML
//! file (`--config` / `WASMHOOK_CONFIG`), then environment variables, then flags.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::config::Config;

/// wasmhook: webhook delivery whose authentication and security methods are sandboxed Wasm plugins.
#[derive(Debug, Parser)]
#[command(name = "wasmhook", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
// Parsed once at start-up: the size of `Serve`'s flags does not matter.
#[allow(clippy::large_enum_variant)]
pub enum Command {
    /// Run the engine: admin API, dispatcher, plugin watcher.
    Serve(ServeArgs),
    /// Run a self-contained demo: the engine on a temporary database, local receivers for every
    /// method, one endpoint each, a table of what was delivered and verified.
    Demo(DemoArgs),
    /// Plugin tools.
    #[command(subcommand)]
    Plugin(PluginCommand),
    /// Delete what is past its retention window (`retention.*`) now, or with `--dry-run` only
    /// count it; prints the counts as JSON. Takes the same flags as `serve` (on SQLite the
    /// engine must not be running: it holds the data directory).
    Prune(PruneArgs),
}

/// Flags of `prune`.
#[derive(Debug, Args, Clone, Default)]
pub struct PruneArgs {
    /// Count what would go; delete nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Where the store is, and the retention settings (as for `serve`).
    #[command(flatten)]
    pub serve: ServeArgs,
}

/// Plugin tools.
#[derive(Debug, Subcommand)]
pub enum PluginCommand {
    /// Check a component before dropping it into the plugins directory: its world, info, config
    /// schema, and a smoke call under the engine's limits.
    Check {
        /// The component (`.wasm`).
        file: PathBuf,
    },
}

/// Flags of `serve` (each also readable from the environment).
#[derive(Debug, Args, Clone, Default)]
pub struct ServeArgs {
    /// TOML configuration file.
    #[arg(long, env = "WASMHOOK_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address of the admin API (default 127.0.0.1:8080).
    #[arg(long, env = "WASMHOOK_LISTEN")]
    pub listen: Option<std::net::SocketAddr>,
    /// Data directory (SQLite database, tenant plugins, caches).
    #[arg(long, env = "WASMHOOK_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Store: `sqlite:///path/file.sqlite3` (default: in the data directory) or
    /// `postgres://user@host:port/db` (several nodes share it).
    #[arg(long = "store", env = "WASMHOOK_STORE", hide_env_values = true)]
    pub store: Option<String>,
    /// Operator plugins directory (default <data-dir>/plugins).
    #[arg(long, env = "WASMHOOK_PLUGINS_DIR")]
    pub plugins_dir: Option<PathBuf>,
    /// Admin token (default: generated into <data-dir>/admin-token).
    #[arg(long, env = "WASMHOOK_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// Allow deliveries to these internal networks (repeatable), e.g. 127.0.0.1/32.
    #[arg(
        long = "allow-cidr",
        env = "WASMHOOK_ALLOW_CIDRS",
        value_delimiter = ','
    )]
    pub allow_cidrs: Vec<ipnet::IpNet>,
    /// Retry schedule, comma-separated durations (e.g. `5s,5m,30m`).
    #[arg(long, env = "WASMHOOK_RETRY_SCHEDULE", value_delimiter = ',', value_parser = humantime::parse_duration)]
    pub retry_schedule: Option<Vec<std::time::Duration>>,
    /// Every endpoint needs an authentication step and a security measure (true/false).
    #[arg(long, env = "WASMHOOK_REQUIRE_AUTH_AND_SECURITY")]
    pub require_auth_and_security: Option<bool>,
    /// Master key sealing secrets at rest (64 hex characters or base64 of 32 bytes; default:
    /// generated into <data-dir>/master-key).
    #[arg(long, env = "WASMHOOK_MASTER_KEY", hide_env_values = true)]
    pub master_key: Option<String>,
    /// How long a node's delivery leases last without a heartbeat (e.g. `30s`).
    #[arg(long, env = "WASMHOOK_LEASE_TTL", value_parser = humantime::parse_duration)]
    pub lease_ttl: Option<std::time::Duration>,
}

/// Flags of `demo`.
#[derive(Debug, Args, Clone, Default)]
pub struct DemoArgs {
    /// Events to send per endpoint.
    #[arg(long, default_value_t = 3)]
    pub events: usize,
    /// Keep the demo's data directory instead of deleting it at the end.
    #[arg(long)]
    pub keep: bool,
}

impl ServeArgs {
    /// Defaults, then the file, then environment variables and flags.
    pub fn into_config(self) -> Result<Config, crate::config::ConfigError> {
        let mut config = match &self.config {
            Some(path) => Config::from_file(path)?,
            None => Config::default(),
        };
        if let Some(listen) = self.listen {
            config.listen = listen;
        }
        if let Some(dir) = self.data_dir {
            config.data_dir = dir;
        }
        if let Some(dir) = self.plugins_dir {
            config.plugins_dir = Some(dir);
        }
        if let Some(token) = self.admin_token {
            config.admin_token = Some(token);
        }
        if !self.allow_cidrs.is_empty() {
            config.http.allow_cidrs.extend(self.allow_cidrs);
        }
        if let Some(schedule) = self.retry_schedule {
            config.delivery.retry_schedule = schedule;
        }
        if let Some(url) = self.store {
            config.store.url = Some(url);
        }
        if let Some(required) = self.require_auth_and_security {
            config.plugins.require_auth_and_security = required;
        }
        if let Some(key) = self.master_key {
            config.secrets.master_key = Some(key);
        }
        if let Some(ttl) = self.lease_ttl {
            config.store.lease_ttl = ttl;
        }
        config.validate()?;
        Ok(config)
    }
}

/// `wasmhook prune [--dry-run]`: opens the store the configuration names (without starting the
/// engine: nothing is delivered) and prunes it as the retention job does.
pub async fn prune(args: PruneArgs) -> Result<(), String> {
    let config = args.serve.into_config().map_err(|e| e.to_string())?;
    let sealer = crate::secrets::load_sealer(
        &crate::secrets::MasterKeySource {
            key: config.secrets.master_key.clone(),
            previous: config.secrets.previous_master_keys.clone(),
        },
        &config.data_dir,
    )
    .map_err(|e| e.to_string())?;
    let store = crate::store::Store::open(&crate::store::OpenOptions {
        sealer,
        location: config.store_location().map_err(|e| e.to_string())?,
        data_dir: config.data_dir.clone(),
        max_batch: config.store.max_batch,
        synchronous: config.store.synchronous,
        pool_size: config.store.pool_size,
    })
    .await
    .map_err(|e| e.to_string())?;
    let counts = crate::engine::prune(&store, &config.retention, args.dry_run)
        .await
        .map_err(|e| e.to_string())?;
    store.flush().await.map_err(|e| e.to_string())?;
    let mut report = serde_json::to_value(counts).map_err(|e| e.to_string())?;
    report["dry_run"] = serde_json::Value::Bool(args.dry_run);
    println!("{report}");
    Ok(())
}

/// `wasmhook plugin check FILE`: loads the component under the engine's default limits, then
/// prints its world, info and config schema and the outcome of the smoke calls. Fails (with the
/// reason) when the engine would refuse the file.
pub async fn check_plugin(file: &std::path::Path) -> Result<(), String> {
    let bytes = std::fs::read(file).map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    let defaults = Config::default();
    let runtime = crate::plugins::PluginRuntime::new(crate::plugins::RuntimeLimits {
        call_deadline: defaults.plugins.call_deadline,
        max_memory_bytes: defaults.plugins.max_memory_mib * 1024 * 1024,
        max_concurrent_instances: 4,
        max_body_bytes: defaults.plugins.max_body_mib * 1024 * 1024,
        reuse: crate::plugins::InstanceReuse::NEVER,
    })
    .map_err(|e| e.to_string())?;
    let report = crate::plugins::check_component(&runtime, &bytes)
        .await
        .map_err(|e| format!("{} would be refused: {e}", file.display()))?;
    println!("{report}");
    if report.ok {
        Ok(())
    } else {
        Err(format!("{} failed its smoke calls", file.display()))
    }
}
