//! Connections: the URL's configuration (with the defaults a server process wants: a connect
//! timeout, keepalives, an application name), TLS (rustls with the ring provider and the
//! webpki roots; the URL's `sslmode` decides whether it is used), and the pool every statement
//! runs on.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod, Runtime};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::error::OrStore;
use crate::store::{StoreError, WriteStats};

/// How long one connection attempt may take (TCP and the server's handshake) unless the URL
/// sets `connect_timeout`.
pub(super) const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a statement waits for a free pooled connection before the store is called
/// unavailable.
const POOL_WAIT: Duration = Duration::from_secs(30);

/// TCP keepalive idle time (unless the URL sets one): a dead server or a broken network is
/// noticed within a minute, not after the system's two hours.
const KEEPALIVE_IDLE: Duration = Duration::from_secs(30);

/// The URL's configuration with this process's defaults. `location` is the redacted URL (for
/// errors).
pub(super) fn config(url: &str, location: &str) -> Result<tokio_postgres::Config, StoreError> {
    let mut config: tokio_postgres::Config = url
        .parse()
        .map_err(|e| StoreError::InvalidUrl(format!("{location} is not a PostgreSQL URL: {e}")))?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    if config.get_application_name().is_none() {
        config.application_name("wasmhook");
    }
    if config.get_keepalives_idle() == Duration::from_secs(2 * 60 * 60) {
        config.keepalives_idle(KEEPALIVE_IDLE);
    }
    Ok(config)
}

/// The longest a first connection may take, handshake included.
pub(super) fn connect_deadline(config: &tokio_postgres::Config) -> Duration {
    let per_host = config
        .get_connect_timeout()
        .copied()
        .unwrap_or(CONNECT_TIMEOUT);
    // tokio-postgres tries each host in turn; the timeout covers TCP, the rest the handshake.
    per_host * config.get_hosts().len().max(1) as u32 + Duration::from_secs(2)
}

/// The TLS connector: rustls (ring), the webpki roots, no client certificate.
pub(super) fn tls() -> Result<MakeRustlsConnect, String> {
    let roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| format!("TLS configuration: {e}"))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(MakeRustlsConnect::new(config))
}

/// The pool of `size` connections (opened on demand).
pub(super) fn build(
    config: tokio_postgres::Config,
    tls: MakeRustlsConnect,
    size: usize,
) -> Result<Pool, String> {
    let manager = Manager::from_config(
        config,
        tls,
        ManagerConfig {
            // Every checkout proves its connection with an empty query: after a server restart
            // or failover the pool's stale connections are replaced instead of failing the next
            // write with `Unavailable`. One round trip per batch, not per delivery: the
            // batchers take one connection for a whole batch.
            recycling_method: RecyclingMethod::Verified,
        },
    );
    Pool::builder(manager)
        .max_size(size.max(1))
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(POOL_WAIT))
        .create_timeout(Some(CONNECT_TIMEOUT + Duration::from_secs(2)))
        .recycle_timeout(Some(CONNECT_TIMEOUT))
        .build()
        .map_err(|e| format!("connection pool: {e}"))
}

/// The pool and the write counters: what every operation runs on. Cloning is shallow.
#[derive(Clone)]
pub(super) struct Db {
    pool: Pool,
    counters: Arc<Counters>,
}

/// Transactions and writes committed.
#[derive(Default)]
struct Counters {
    commits: AtomicU64,
    writes: AtomicU64,
}

impl Db {
    /// Operations on `pool`.
    pub(super) fn new(pool: Pool) -> Self {
        Self {
            pool,
            counters: Arc::default(),
        }
    }

    /// A pooled connection.
    pub(super) async fn get(&self) -> Result<Object, StoreError> {
        self.pool.get().await.db()
    }

    /// Counts one committed transaction that held `writes` writes.
    pub(super) fn committed(&self, writes: usize) {
        self.counters.commits.fetch_add(1, Ordering::Relaxed);
        self.counters
            .writes
            .fetch_add(writes as u64, Ordering::Relaxed);
    }

    /// The counters.
    pub(super) fn stats(&self) -> WriteStats {
        WriteStats {
            commits: self.counters.commits.load(Ordering::Relaxed),
            writes: self.counters.writes.load(Ordering::Relaxed),
        }
    }
}
