//! The engine: the long-lived parts wired together (store → dispatcher → pipeline (plugins) →
//! HTTP client → store) and the use cases the API calls ([`ingest`](Engine::ingest),
//! [`replay`](Engine::replay), tenant plugins, tenant deletion). It knows nothing of HTTP
//! serving: [`crate::server`] puts the API in front of it.

mod event_types;
mod jobs;
mod lifecycle;
mod recovery;
mod rotation;
mod sync;
mod system_events;
mod usecases;

pub use event_types::{CatalogError, EventTypeChange};
pub use jobs::{JOBS_LEASE, prune};
pub use lifecycle::DisableReason;
pub use recovery::{EndpointTest, RECOVER_BATCH};
pub use rotation::{DEFAULT_SECRET_OVERLAP, MAX_SECRET_OVERLAP};
pub use system_events::SYSTEM_EVENT_TYPES;
pub use usecases::{MasterKeyRotation, UseCaseError};

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
use crate::store::OpenOptions;
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
    /// The master key could not be loaded.
    #[error("secrets: {0}")]
    Secrets(String),
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
    /// Tenants' event-type catalogs with their compiled schemas, as this node last read them.
    pub event_types: Arc<crate::event_types::EventTypeCache>,
    /// The dispatcher's task (until shutdown).
    dispatcher_task: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// The task keeping this node in step with changes other nodes made.
    sync_task: tokio::task::JoinHandle<()>,
    /// The periodic jobs and the operational webhooks' reports (aborted at shutdown).
    background: std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>,
    /// The plugin directory's watcher (stops when dropped).
    _watch: WatchGuard,
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
    crate::secrets::write_private(&path, &token)
        .map_err(io(format!("writing {}", path.display())))?;
    tracing::info!(path = %path.display(), "generated an admin token (read it from this file)");
    Ok(token)
}

impl Engine {
    /// Starts an engine: opens the store, loads plugins and keys, and starts the dispatcher
    /// (which claims what the store holds due) and the task that follows other nodes' changes.
    pub async fn start(config: Config) -> Result<Arc<Engine>, StartError> {
        config.validate()?;
        create_private_dir(&config.data_dir)
            .map_err(io(format!("creating {}", config.data_dir.display())))?;
        let admin_token = admin_token(&config)?;
        let sealer = crate::secrets::load_sealer(
            &crate::secrets::MasterKeySource {
                key: config.secrets.master_key.clone(),
                previous: config.secrets.previous_master_keys.clone(),
            },
            &config.data_dir,
        )
        .map_err(|e| StartError::Secrets(e.to_string()))?;
        let store = Store::open(&OpenOptions {
            sealer,
            location: config.store_location()?,
            data_dir: config.data_dir.clone(),
            max_batch: config.store.max_batch,
            synchronous: config.store.synchronous,
            pool_size: config.store.pool_size,
        })
        .await?;
        tracing::info!(store = store.kind(), "store open");

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
        let (dead_tx, dead_rx) = tokio::sync::mpsc::channel(system_events::REPORT_QUEUE);
        let (token_tx, token_rx) = tokio::sync::mpsc::channel(system_events::REPORT_QUEUE);
        let (plugin_tx, plugin_rx) = tokio::sync::mpsc::channel(system_events::REPORT_QUEUE);
        let registry = PluginRegistry::new(
            runtime,
            config
                .plugins
                .cache_dir
                .clone()
                .unwrap_or_else(|| config.data_dir.join("cache")),
        );
        registry.tenant_uploads(|| crate::plugins::TenantPluginLimits::from_config(&config.api));
        registry.report_events_to(plugin_tx);
        for (name, bytes) in crate::guests::BUILT_IN_PLUGINS {
            registry
                .add_builtin(name, bytes)
                .await
                .map_err(|e| StartError::Plugins(format!("built-in plugin `{name}`: {e}")))?;
        }
        sync::load_tenant_plugins(&store, &registry, &config.data_dir).await?;
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
            &config.keys.algorithms,
        )
        .await?;
        let http = Arc::new(HttpClient::new(
            AddressPolicy {
                allow_cidrs: config.http.allow_cidrs.clone(),
                allow_cidrs_only: config.http.egress_allow_cidrs_only,
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
            crate::token_failures::TokenFailures::new(config.operations.token_failures),
        );
        pipeline.token_failures().report_to(token_tx);
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
                window: config.store.window,
                lease_ttl: config.store.lease_ttl,
                poll_interval: config.store.poll_interval,
                max_held_body_bytes: config.store.max_held_body_mib * 1024 * 1024,
                request_timeout: config.delivery.request_timeout,
            },
        );
        dispatcher.report_dead_to(dead_tx);
        let dispatcher_task = tokio::spawn(dispatcher.clone().run());
        let event_types = Arc::new(crate::event_types::EventTypeCache::default());
        let sync_task = tokio::spawn(sync::follow_changes(
            store.clone(),
            registry.clone(),
            keys.clone(),
            tls.clone(),
            event_types.clone(),
            config.store.poll_interval,
        ));
        tracing::info!(node = dispatcher.node(), "dispatcher running");
        let reports = system_events::Reports {
            dead: dead_rx,
            tokens: token_rx,
            plugins: plugin_rx,
        };
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
            event_types,
            dispatcher_task: std::sync::Mutex::new(Some(dispatcher_task)),
            sync_task,
            background: std::sync::Mutex::new(Vec::new()),
            _watch: watch,
        });
        let tasks = vec![
            tokio::spawn(jobs::run(
                Arc::downgrade(&engine),
                engine.config.jobs.interval,
            )),
            tokio::spawn(system_events::run(
                Arc::downgrade(&engine),
                reports,
                engine.config.operations.dead_summary_interval,
            )),
        ];
        *engine.background.lock().unwrap_or_else(|p| p.into_inner()) = tasks;
        Ok(engine)
    }

    /// Stops new attempts, waits (bounded) for those in flight, commits their records and
    /// releases this node's leases.
    pub async fn shutdown(&self) {
        self.sync_task.abort();
        for task in self
            .background
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
        {
            task.abort();
        }
        self.dispatcher.shutdown();
        let task = self
            .dispatcher_task
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(task) = task {
            let _ = task.await;
        }
    }
}

/// Creates `dir` (and its parents) and, on unix, makes it readable by its owner only.
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let existed = dir.exists();
    std::fs::create_dir_all(dir)?;
    #[cfg(unix)]
    if !existed {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}
