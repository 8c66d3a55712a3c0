//! Wires the parts together: store → dispatcher → pipeline (plugins) → HTTP client → store, and
//! the API in front. [`start`] runs an engine in this process (the binary, the demo and the tests
//! use it); [`Server::shutdown`] stops it gracefully.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::config::Config;
use crate::dispatch::{DispatchSettings, Dispatcher, RetryPolicy};
use crate::http::{AddressPolicy, HttpClient, HttpLimits};
use crate::keys::KeyManager;
use crate::metrics::Metrics;
use crate::mtls::TlsResolver;
use crate::pipeline::{Pipeline, TokenCache};
use crate::plugins::{InstanceReuse, PluginRegistry, PluginRuntime, RuntimeLimits, WatchGuard};
use crate::store::Store;

/// Why the engine could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// The store could not be opened.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// The plugin runtime could not start or a built-in plugin failed to load.
    #[error("plugins: {0}")]
    Plugins(String),
    /// Signing keys could not be loaded.
    #[error(transparent)]
    Keys(#[from] crate::keys::KeyError),
    /// A file or socket operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The error.
        source: std::io::Error,
    },
}

/// Every long-lived part of a running engine.
pub struct Engine {
    /// The configuration it runs with.
    pub config: Config,
    /// Durable state.
    pub store: Arc<Store>,
    /// Loaded plugins.
    pub registry: Arc<PluginRegistry>,
    /// Step runner and host services for plugins.
    pub pipeline: Arc<Pipeline>,
    /// Scheduler of attempts.
    pub dispatcher: Arc<Dispatcher>,
    /// JWS signing keys.
    pub keys: Arc<KeyManager>,
    /// Per-endpoint TLS.
    pub tls: Arc<TlsResolver>,
    /// Outbound HTTP.
    pub http: Arc<HttpClient>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// SHA-256 of the admin token.
    pub admin_token_digest: [u8; 32],
}

/// A running engine with its API server.
pub struct Server {
    /// The engine.
    pub engine: Arc<Engine>,
    /// Where the API listens.
    pub addr: SocketAddr,
    shutdown: tokio::sync::watch::Sender<bool>,
    server_task: tokio::task::JoinHandle<()>,
    dispatcher_task: tokio::task::JoinHandle<()>,
    _watch: Option<WatchGuard>,
}

fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> StartError {
    let context = context.into();
    move |source| StartError::Io { context, source }
}

/// The admin token: from the config, else from `<data_dir>/admin-token`, else a new one written
/// there (mode 0600). The token itself is never logged.
fn admin_token(config: &Config) -> Result<String, StartError> {
    if let Some(token) = &config.admin_token {
        return Ok(token.clone());
    }
    let path = config.data_dir.join("admin-token");
    if let Ok(existing) = std::fs::read_to_string(&path) {
        let existing = existing.trim().to_string();
        if !existing.is_empty() {
            return Ok(existing);
        }
    }
    let token = format!("whk_admin_{}", hex::encode(rand::random::<[u8; 24]>()));
    write_private(&path, &token).map_err(io(format!("writing {}", path.display())))?;
    tracing::info!(path = %path.display(), "generated an admin token (read it from this file)");
    Ok(token)
}

fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(contents.as_bytes())?;
    file.sync_all()
}

/// Starts an engine: opens the store, loads plugins and keys, recovers pending deliveries,
/// starts the dispatcher and serves the API on `config.listen`.
pub async fn start(config: Config) -> Result<Server, StartError> {
    config.validate()?;
    std::fs::create_dir_all(&config.data_dir)
        .map_err(io(format!("creating {}", config.data_dir.display())))?;
    let admin_token = admin_token(&config)?;
    let store = Store::open(
        &config.data_dir,
        config.store.max_batch,
        config.store.synchronous,
    )?;

    let runtime = PluginRuntime::new(RuntimeLimits {
        call_deadline: config.plugins.call_deadline,
        max_memory_bytes: config.plugins.max_memory_mib * 1024 * 1024,
        max_concurrent_instances: (config.delivery.max_in_flight as u32)
            .saturating_mul(2)
            .max(16),
        max_body_bytes: config.plugins.max_body_mib * 1024 * 1024,
        reuse: InstanceReuse {
            max_calls: config.plugins.instance_reuse_calls,
            max_idle: config.plugins.max_idle_instances,
            ..InstanceReuse::default()
        },
    })
    .map_err(|e| StartError::Plugins(e.to_string()))?;
    let registry = PluginRegistry::new(
        runtime,
        config
            .plugins
            .cache_dir
            .clone()
            .unwrap_or_else(|| config.data_dir.join("cache")),
        config.data_dir.join("tenant-plugins"),
    );
    for (name, bytes) in crate::guests::BUILT_IN_PLUGINS {
        registry
            .add_builtin(name, bytes)
            .await
            .map_err(|e| StartError::Plugins(format!("built-in plugin `{name}`: {e}")))?;
    }
    registry
        .load_tenant_plugins()
        .await
        .map_err(|e| StartError::Plugins(e.to_string()))?;
    let plugins_dir = config.plugins_dir();
    std::fs::create_dir_all(&plugins_dir)
        .map_err(io(format!("creating {}", plugins_dir.display())))?;
    let watch = registry
        .watch_directory(plugins_dir)
        .await
        .map_err(|e| StartError::Plugins(e.to_string()))?;

    let keys = KeyManager::load(
        store.clone(),
        config.keys.certificate_subject.clone(),
        config.keys.retired_key_lifetime,
    )
    .await?;
    let http = Arc::new(HttpClient::new(
        AddressPolicy {
            allow_cidrs: config.http.allow_cidrs.clone(),
        },
        HttpLimits {
            connect_timeout: config.delivery.connect_timeout,
            request_timeout: config.delivery.request_timeout,
            max_response_bytes: config.delivery.max_response_bytes,
        },
    ));
    let tls = Arc::new(TlsResolver::new(store.clone()));
    let metrics = Arc::new(Metrics::new());
    let pipeline = Pipeline::new(
        registry.clone(),
        keys.clone(),
        http.clone(),
        TokenCache::new(
            config.plugins.default_token_lifetime,
            config.plugins.token_refresh_margin,
        ),
    );
    let dispatcher = Dispatcher::new(
        store.clone(),
        pipeline.clone(),
        http.clone(),
        tls.clone(),
        metrics.clone(),
        DispatchSettings {
            retry: RetryPolicy {
                schedule: config.delivery.retry_schedule.clone(),
                jitter: config.delivery.jitter,
                max_retry_after: config.delivery.max_retry_after,
            },
            max_in_flight: config.delivery.max_in_flight,
            endpoint_concurrency: config.delivery.endpoint_concurrency,
            response_snippet_bytes: config.delivery.response_snippet_bytes,
            shutdown_grace: config.delivery.shutdown_grace,
        },
    );
    let recovered = dispatcher.recover().await?;
    if recovered > 0 {
        tracing::info!(
            recovered,
            "pending deliveries taken over from the previous run"
        );
    }
    let dispatcher_task = tokio::spawn(dispatcher.clone().run());

    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(io(format!("listening on {}", config.listen)))?;
    let addr = listener
        .local_addr()
        .map_err(io("reading the listen address"))?;
    let engine = Arc::new(Engine {
        config,
        store,
        registry,
        pipeline,
        dispatcher,
        keys,
        tls,
        http,
        metrics,
        admin_token_digest: Sha256::digest(admin_token.as_bytes()).into(),
    });
    let router = crate::api::router(engine.clone());
    let (shutdown, mut shutdown_rx) = tokio::sync::watch::channel(false);
    let server_task = tokio::spawn(async move {
        let serve = axum::serve(listener, router).with_graceful_shutdown(async move {
            let _ = shutdown_rx.wait_for(|stop| *stop).await;
        });
        if let Err(e) = serve.await {
            tracing::error!(error = %e, "API server failed");
        }
    });
    tracing::info!(%addr, data_dir = %engine.config.data_dir.display(), "wasmhook is running");
    Ok(Server {
        engine,
        addr,
        shutdown,
        server_task,
        dispatcher_task,
        _watch: Some(watch),
    })
}

impl Server {
    /// Base URL of the API (`http://127.0.0.1:8080`).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops accepting requests and new attempts, waits (bounded) for attempts in flight, and
    /// commits their records.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        let _ = self.server_task.await;
        self.engine.dispatcher.shutdown();
        let _ = self.dispatcher_task.await;
    }
}
