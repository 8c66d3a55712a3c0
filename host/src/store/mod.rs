//! Durable state: tenants, endpoints, events, deliveries, attempts, idempotency keys, signing
//! keys, client certificates and tenant plugins, behind one narrow interface ([`Backend`]) with
//! two implementations:
//!
//! - [`sqlite`]: one file (WAL), one writer thread that commits in groups, the data directory's
//!   lock (one node). The zero-setup default.
//! - [`postgres`]: one database shared by every node, deliveries claimed with
//!   `FOR UPDATE SKIP LOCKED` under leases, writes batched, LISTEN/NOTIFY wake-ups.
//!
//! Nothing outside this module sees a connection, SQL, a file path or a backend's error type.
//!
//! **Leases.** A delivery row carries its next attempt time and a lease (owner node, expiry). A
//! node claims due deliveries in batches ([`Backend::claim`]), or at insert time for what it
//! ingests itself, renews its leases by heartbeat ([`Backend::renew_leases`]) and releases them
//! when it stops. A lease that lapsed (its node died) is cleared by the next claim of any node,
//! and the delivery is claimed again when due.
//!
//! **Agreement.** Every write to what all nodes must agree on (tenants, endpoints, signing keys,
//! client certificates, tenant plugins) moves a change counter ([`Revisions`]) in the same
//! transaction; nodes compare the counters with what they loaded and reload what moved.
//!
//! [`Store`] is the facade the engine holds: the backend plus the in-memory [`Directory`] kept
//! in step with this node's own writes.

mod catalog;
mod directory;
mod error;
mod lifecycle;
mod location;
mod log;
pub mod postgres;
pub mod sqlite;
mod staged;
mod types;

use std::sync::{Arc, RwLock};

pub use catalog::{RecoverBatch, RecoverRequest, StoredCatalog, StoredEventType};
pub use directory::{Directory, Subscribers};
pub use error::StoreError;
pub(crate) use lifecycle::HELD_ENDPOINTS;
pub use lifecycle::{
    EndpointHealth, FailingEndpoint, HEALTH_BUCKET_MS, HEALTH_KEPT_MS, HealthDelta, PruneBatch,
    PruneCounts, PruneRequest, StoredHealth, add_to_bucket,
};
pub use location::{StoreLocation, redact_url};
pub use log::{
    DeliveryHistory, EventHistory, LogCursor, LogEvent, LogPage, LogQuery, MAX_LOG_LIMIT,
};
pub use staged::StoredStagedCertificate;
pub use types::*;

use crate::config::Synchronous;
use crate::model::{Attempt, Delivery, Endpoint, EventSummary, Tenant};
use crate::secrets::{Sealer, SecretPath};

/// Called once an attempt's record is committed (or failed to be).
pub type RecordDone = Box<dyn FnOnce(Result<(), StoreError>) + Send>;

/// A storage backend. Every method is one use of the database; none hands out a connection.
#[async_trait::async_trait]
pub trait Backend: Send + Sync + 'static {
    /// `sqlite` or `postgres` (for logs and `/metrics`).
    fn kind(&self) -> &'static str;

    /// True when several nodes share this store (claims, leases and endpoint slots then
    /// coordinate through it).
    fn shared(&self) -> bool;

    /// Wake-ups pushed by the database (new work, changes), where the backend has them.
    fn notices(&self) -> Option<tokio::sync::broadcast::Receiver<Notice>> {
        None
    }

    /// Grouping counters of the writes.
    fn write_stats(&self) -> WriteStats;

    /// Removes stale copies of rewritten rows from the database's own files where the backend
    /// can (after secrets were sealed again under a new key, the old ciphertexts must not linger
    /// in a write-ahead log or in freed space).
    async fn scrub(&self) -> Result<(), StoreError> {
        Ok(())
    }

    /// Waits until every write submitted so far (attempt records included) is committed.
    async fn flush(&self) -> Result<(), StoreError>;

    // ---- agreement -------------------------------------------------------------------------

    /// The change counters.
    async fn revisions(&self) -> Result<Revisions, StoreError>;

    /// Every tenant and endpoint.
    async fn directory_rows(&self) -> Result<DirectoryRows, StoreError>;

    // ---- tenants and endpoints ---------------------------------------------------------------

    /// Creates a tenant whose token hashes to `token_hash`; `Conflict` if the id is taken.
    async fn create_tenant(&self, tenant: &Tenant, token_hash: &str) -> Result<(), StoreError>;

    /// Deletes a tenant and everything it owns; `false` if there was none.
    async fn delete_tenant(&self, id: &str) -> Result<bool, StoreError>;

    /// Inserts or replaces an endpoint.
    async fn put_endpoint(&self, endpoint: &Endpoint) -> Result<(), StoreError>;

    /// Deletes an endpoint; its pending deliveries become dead. `false` if there was none.
    async fn delete_endpoint(&self, tenant: &str, id: &str) -> Result<bool, StoreError>;

    // ---- events and deliveries ---------------------------------------------------------------

    /// Stores events and their deliveries in one transaction, honouring the idempotency key
    /// (a repeat on any node returns the first answer), and leases the first
    /// `request.claim` new deliveries to `request.lease.owner`.
    async fn ingest(&self, request: IngestRequest) -> Result<IngestOutcome, StoreError>;

    /// Queues an attempt's record and the delivery's new state without waiting for the commit;
    /// `done` gets the result.
    fn record_attempt(&self, record: AttemptRecord, done: RecordDone);

    /// Marks a delivery dead without an attempt (its endpoint is gone); clears its lease.
    async fn mark_dead(&self, delivery_id: &str, reason: &str) -> Result<(), StoreError>;

    /// Holds a pending delivery of `endpoint_id` without an attempt while that endpoint is
    /// stored disabled; clears its lease. A hold and an enable are ordered: a delivery held
    /// before the endpoint is stored enabled is resumed by the enable's
    /// [`Backend::resume_held`]; a hold after it sees the endpoint enabled.
    async fn hold_delivery(
        &self,
        delivery_id: &str,
        endpoint_id: &str,
    ) -> Result<HoldOutcome, StoreError>;

    /// Makes the endpoint's held deliveries pending, due at `now_ms` (claimed in order of
    /// creation); returns how many.
    async fn resume_held(&self, endpoint_id: &str, now_ms: i64) -> Result<u64, StoreError>;

    /// Makes pending, due at `now_ms`, the held deliveries of every endpoint stored enabled;
    /// returns how many. Held deliveries of an enabled endpoint are left by a crash between
    /// an enable and its resume, or by an ingest that read the endpoint disabled while it was
    /// being enabled; the periodic jobs send them on with this.
    async fn resume_stranded(&self, now_ms: i64) -> Result<u64, StoreError>;

    /// Puts a delivered or dead delivery back in the queue (replay), starting a new retry round,
    /// leased to `lease.owner`. `Conflict` while it is still pending.
    async fn requeue(
        &self,
        tenant: &str,
        event: &str,
        delivery: &str,
        lease: &Lease,
    ) -> Result<PendingDelivery, StoreError>;

    /// Clears lapsed leases (their node died), then leases up to `request.limit` pending
    /// deliveries due before `request.due_before_ms` that nobody holds, oldest due first.
    /// Bodies are not loaded.
    async fn claim(&self, request: &ClaimRequest) -> Result<Vec<PendingDelivery>, StoreError>;

    /// Extends every lease `lease.owner` holds to `lease.expires_at_ms`; returns how many.
    async fn renew_leases(&self, lease: &Lease) -> Result<u64, StoreError>;

    /// Releases `owner`'s leases (all of them, or only `deliveries`) so any node may claim them.
    async fn release_leases(
        &self,
        owner: &str,
        deliveries: Option<&[String]>,
    ) -> Result<u64, StoreError>;

    /// The envelope of an event (loaded when an attempt is sent).
    async fn event_body(&self, event_id: &str) -> Result<Option<Vec<u8>>, StoreError>;

    /// Takes one of an endpoint's `max` cluster-wide attempt slots for `lease.owner` until
    /// `lease.expires_at_ms`; `None` when all are taken. Only called when [`Backend::shared`].
    async fn acquire_endpoint_slot(
        &self,
        endpoint_id: &str,
        max: u32,
        lease: &Lease,
        now_ms: i64,
    ) -> Result<Option<u32>, StoreError>;

    /// Gives a slot back.
    async fn release_endpoint_slot(
        &self,
        endpoint_id: &str,
        slot: u32,
        owner: &str,
    ) -> Result<(), StoreError>;

    /// Registers `lease.owner` as a live node until `lease.expires_at_ms`, extends the endpoint
    /// slots it holds as far, and returns how many nodes are live at `now_ms` (this one
    /// included): each node's share of an endpoint's slots.
    async fn heartbeat_node(&self, lease: &Lease, now_ms: i64) -> Result<u32, StoreError>;

    /// Removes `owner` from the live nodes and gives back every endpoint slot it holds (at
    /// shutdown, once its attempts have ended).
    async fn leave(&self, owner: &str) -> Result<(), StoreError>;

    // ---- reads for the API -------------------------------------------------------------------

    /// One event of a tenant.
    async fn event(&self, tenant: &str, event: &str) -> Result<EventSummary, StoreError>;

    /// The deliveries of one event of a tenant.
    async fn deliveries_of_event(
        &self,
        tenant: &str,
        event: &str,
    ) -> Result<Vec<Delivery>, StoreError>;

    /// The attempts of one delivery of a tenant's event.
    async fn attempts_of_delivery(
        &self,
        tenant: &str,
        event: &str,
        delivery: &str,
    ) -> Result<Vec<Attempt>, StoreError>;

    /// Deliveries waiting (for `/metrics`).
    async fn count_pending(&self) -> Result<u64, StoreError>;

    // ---- signing keys ------------------------------------------------------------------------

    /// Every signing key, oldest first.
    async fn signing_keys(&self) -> Result<Vec<StoredSigningKey>, StoreError>;

    /// Adds a signing key (see [`KeyInsert`]); `false` when `IfNoCurrent` found a current key.
    async fn add_signing_key(
        &self,
        key: &StoredSigningKey,
        mode: KeyInsert,
    ) -> Result<bool, StoreError>;

    /// Replaces the stored private key of signing key `key.kid` (re-sealing under a new master
    /// key); moves the keys revision.
    async fn replace_signing_key_secret(&self, key: &StoredSigningKey) -> Result<(), StoreError>;

    /// Deletes keys retired before `cutoff` (unix seconds).
    async fn prune_signing_keys(&self, cutoff: i64) -> Result<u64, StoreError>;

    // ---- client certificates -----------------------------------------------------------------

    /// Inserts or replaces a client certificate record.
    async fn put_client_certificate(
        &self,
        record: &StoredClientCertificate,
    ) -> Result<(), StoreError>;

    /// The tenant's client certificate records, oldest first.
    async fn client_certificates(
        &self,
        tenant: &str,
    ) -> Result<Vec<StoredClientCertificate>, StoreError>;

    /// One client certificate record of a tenant (`NotFound` otherwise).
    async fn client_certificate(
        &self,
        tenant: &str,
        id: &str,
    ) -> Result<StoredClientCertificate, StoreError>;

    /// Deletes a client certificate record; `false` if there was none.
    async fn delete_client_certificate(&self, tenant: &str, id: &str) -> Result<bool, StoreError>;

    // ---- tenant plugins ----------------------------------------------------------------------

    /// Inserts or replaces a tenant plugin's component.
    async fn put_tenant_plugin(&self, plugin: &StoredPlugin) -> Result<(), StoreError>;

    /// Deletes a tenant plugin; `false` if there was none.
    async fn delete_tenant_plugin(&self, tenant: &str, name: &str) -> Result<bool, StoreError>;

    /// Every tenant plugin, without bytes.
    async fn tenant_plugins(&self) -> Result<Vec<StoredPluginInfo>, StoreError>;

    /// One tenant plugin with its bytes.
    async fn tenant_plugin(
        &self,
        tenant: &str,
        name: &str,
    ) -> Result<Option<StoredPlugin>, StoreError>;
    // ---- event-type catalog and recovery -----------------------------------------------------

    /// A tenant's catalog: its `strict_event_types` setting (false when never set) and its event
    /// types, by name.
    async fn catalog(&self, tenant: &str) -> Result<StoredCatalog, StoreError>;

    /// Adds an event type to its tenant's catalog; `Conflict` if the tenant has one of that
    /// name. Moves the event-types revision.
    async fn create_event_type(&self, event_type: &StoredEventType) -> Result<(), StoreError>;

    /// Replaces an event type (all but `created_at`); `NotFound` if the tenant has none of that
    /// name. Moves the event-types revision.
    async fn update_event_type(&self, event_type: &StoredEventType) -> Result<(), StoreError>;

    /// Deletes an event type; `false` if there was none. Moves the event-types revision.
    async fn delete_event_type(&self, tenant: &str, name: &str) -> Result<bool, StoreError>;

    /// Sets the tenant's `strict_event_types`. Moves the event-types revision.
    async fn set_strict_event_types(&self, tenant: &str, strict: bool) -> Result<(), StoreError>;

    /// Puts one batch of an endpoint's failed or dead deliveries back in the queue (see
    /// [`RecoverRequest`]): due now, unleased, marked recovered; a dead one starts a new retry
    /// round. Deliveries in order of id.
    async fn recover_deliveries(
        &self,
        request: &RecoverRequest,
    ) -> Result<RecoverBatch, StoreError>;
    // ---- staged client certificates ----------------------------------------------------------

    /// The staged next certificate of a tenant's client certificate record, if any.
    async fn staged_certificate(
        &self,
        tenant: &str,
        id: &str,
    ) -> Result<Option<StoredStagedCertificate>, StoreError>;

    /// Inserts or replaces the staged next certificate of a record (`NotFound` when the tenant
    /// has no record `staged.id`). Moves the certificates revision.
    async fn put_staged_certificate(
        &self,
        staged: &StoredStagedCertificate,
    ) -> Result<(), StoreError>;

    /// Drops a record's staged certificate; `false` if there was none. Moves the certificates
    /// revision.
    async fn delete_staged_certificate(&self, tenant: &str, id: &str) -> Result<bool, StoreError>;

    /// Makes the staged certificate (key, CSR, certificate) the record's current one when it is
    /// due by `now` (see [`StoredStagedCertificate::is_due`]), in one transaction; `false` when
    /// there was nothing due (another node may have promoted it already). Moves the
    /// certificates revision.
    async fn promote_staged_certificate(
        &self,
        tenant: &str,
        id: &str,
        now: i64,
    ) -> Result<bool, StoreError>;

    // ---- endpoint health, retention, periodic jobs -------------------------------------------

    /// Adds what nodes saw of endpoints' attempts to their stored health.
    async fn add_health(&self, deltas: &[HealthDelta]) -> Result<(), StoreError>;

    /// The stored health of these endpoints (those with any), rates counted up to `now_ms`.
    async fn health(
        &self,
        endpoint_ids: &[String],
        now_ms: i64,
    ) -> Result<Vec<StoredHealth>, StoreError>;

    /// Forgets an endpoint's failure streak (it was enabled again).
    async fn reset_failure_streak(&self, endpoint_id: &str) -> Result<(), StoreError>;

    /// Endpoints failing since before `failing_since_before_ms` with at least `min_failures`
    /// failures in a row.
    async fn failing_endpoints(
        &self,
        failing_since_before_ms: i64,
        min_failures: u64,
    ) -> Result<Vec<FailingEndpoint>, StoreError>;

    /// Takes or renews the lease of periodic job `job` for `lease.owner` when it is free,
    /// lapsed at `now_ms`, or already `lease.owner`'s; `false` when another node holds it.
    async fn take_job_lease(
        &self,
        job: &str,
        lease: &Lease,
        now_ms: i64,
    ) -> Result<bool, StoreError>;

    /// Records that notice `key` was sent; `false` when it had been already (by any node).
    async fn note_once(&self, key: &str, now: i64) -> Result<bool, StoreError>;

    /// Deletes (or counts, in a dry run) one batch of expired events with their deliveries and
    /// attempts (see [`PruneRequest`]), oldest first.
    async fn prune_events(&self, request: &PruneRequest) -> Result<PruneBatch, StoreError>;

    /// Deletes (or counts) idempotency keys created before `before` (unix seconds) and health
    /// buckets older than [`HEALTH_KEPT_MS`] before `now_ms`, at most `limit` of each.
    async fn prune_keys(
        &self,
        before: i64,
        now_ms: i64,
        limit: usize,
        dry_run: bool,
    ) -> Result<PruneCounts, StoreError>;

    /// Makes the space of what retention deleted reusable, once a run deleted something. SQLite
    /// reuses freed pages by itself (nothing to do); PostgreSQL vacuums the message tables, so
    /// that a database under steady retention levels off instead of waiting for autovacuum's
    /// next visit.
    async fn reclaim_space(&self) -> Result<(), StoreError> {
        Ok(())
    }

    // ---- Message log -------------------------------------------------------------------------

    /// A page of a tenant's events, newest first, filtered as `query` says (see [`LogQuery`]);
    /// one indexed query, whatever the number of events the tenant has.
    async fn log_events(&self, query: &LogQuery) -> Result<LogPage, StoreError>;

    /// One event of a tenant with every delivery and each delivery's attempts.
    async fn event_history(&self, tenant: &str, event: &str) -> Result<EventHistory, StoreError>;
}

/// Waits for the next notice of kind `wanted` (a missed burst counts as one); never returns when
/// the backend pushes no notices.
pub async fn next_notice(
    notices: &mut Option<tokio::sync::broadcast::Receiver<Notice>>,
    wanted: Notice,
) {
    use tokio::sync::broadcast::error::RecvError;
    let Some(receiver) = notices.as_mut() else {
        return std::future::pending().await;
    };
    loop {
        match receiver.recv().await {
            Ok(notice) if notice == wanted => return,
            Ok(_) => continue,
            Err(RecvError::Lagged(_)) => return,
            Err(RecvError::Closed) => return std::future::pending().await,
        }
    }
}

/// How to open the store.
#[derive(Debug, Clone)]
pub struct OpenOptions {
    /// Seals secrets before they reach the backend and unseals what it returns.
    pub sealer: Sealer,
    /// Which backend, where.
    pub location: StoreLocation,
    /// The data directory (SQLite takes its lock).
    pub data_dir: std::path::PathBuf,
    /// Writes grouped into one transaction at most.
    pub max_batch: usize,
    /// SQLite's `synchronous`.
    pub synchronous: Synchronous,
    /// PostgreSQL connections in the pool.
    pub pool_size: usize,
}

/// The store the engine holds: a backend, the in-memory directory, and the sealer that keeps
/// secrets encrypted at rest. Cloning the `Arc` is shallow; every clone sees the same directory.
///
/// Secrets never reach the backend in clear: step secrets (the fields a plugin's schema marks
/// `writeOnly` / `x-secret`, and URLs carrying a password), JWS signing private keys and mTLS
/// client private keys are sealed here on the way in and unsealed on the way out. The methods
/// that do so shadow the backend's own; every other call goes straight through (`Deref`).
pub struct Store {
    backend: Arc<dyn Backend>,
    directory: RwLock<Directory>,
    /// Moves with every change this node makes to the directory (to tell a reload that raced
    /// with one of them).
    local_changes: std::sync::atomic::AtomicU64,
    /// The change counters as they were before anything was loaded at open.
    opened_at: Revisions,
    sealer: arc_swap::ArcSwap<Sealer>,
}

impl std::ops::Deref for Store {
    type Target = dyn Backend;
    fn deref(&self) -> &Self::Target {
        self.backend.as_ref()
    }
}

impl Store {
    /// Opens the backend `options.location` names (creating and migrating its schema), and
    /// loads the directory.
    pub async fn open(options: &OpenOptions) -> Result<Arc<Self>, StoreError> {
        let backend: Arc<dyn Backend> = match &options.location {
            StoreLocation::Sqlite(path) => Arc::new(sqlite::SqliteBackend::open(
                &options.data_dir,
                path,
                options.max_batch,
                options.synchronous,
            )?),
            StoreLocation::Postgres(url) => Arc::new(
                postgres::PostgresBackend::connect(url, options.pool_size, options.max_batch)
                    .await?,
            ),
        };
        Self::with_backend(backend, options.sealer.clone()).await
    }

    /// A store over `backend`.
    pub async fn with_backend(
        backend: Arc<dyn Backend>,
        sealer: Sealer,
    ) -> Result<Arc<Self>, StoreError> {
        // The counters first: whatever changes after this is seen by the first comparison.
        let opened_at = backend.revisions().await?;
        let rows = unseal_rows(&sealer, backend.directory_rows().await?)?;
        Ok(Arc::new(Self {
            backend,
            directory: RwLock::new(Directory::from_rows(rows)),
            local_changes: std::sync::atomic::AtomicU64::new(0),
            opened_at,
            sealer: arc_swap::ArcSwap::from_pointee(sealer),
        }))
    }

    /// The change counters read at open, before the directory (and then the keys and plugins)
    /// were loaded: a change made by another node after that moves them past these.
    pub fn opened_at(&self) -> Revisions {
        self.opened_at
    }

    /// The sealer in use.
    pub fn sealer(&self) -> Arc<Sealer> {
        self.sealer.load_full()
    }

    /// Seals with `sealer` from now on (a new master key; it must still unseal what the old
    /// one sealed until [`Store::reseal_all`] has run).
    pub fn set_sealer(&self, sealer: Sealer) {
        self.sealer.store(Arc::new(sealer));
    }

    /// Reads the in-memory directory.
    pub fn directory(&self) -> std::sync::RwLockReadGuard<'_, Directory> {
        self.directory
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn directory_mut(&self) -> std::sync::RwLockWriteGuard<'_, Directory> {
        self.directory
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The directory, for a change this node just committed.
    fn directory_change(&self) -> std::sync::RwLockWriteGuard<'_, Directory> {
        let guard = self.directory_mut();
        self.local_changes
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        guard
    }

    /// Rebuilds the directory from the store (another node changed it). A change this node
    /// commits while the rows are read would be lost by replacing the directory with them: the
    /// read is then done again.
    pub async fn reload_directory(&self) -> Result<(), StoreError> {
        use std::sync::atomic::Ordering;
        for _ in 0..8 {
            let before = self.local_changes.load(Ordering::SeqCst);
            let rows = unseal_rows(&self.sealer(), self.backend.directory_rows().await?)?;
            let fresh = Directory::from_rows(rows);
            let mut directory = self.directory_mut();
            if self.local_changes.load(Ordering::SeqCst) == before {
                *directory = fresh;
                return Ok(());
            }
        }
        Err(StoreError::Conflict(
            "the directory kept changing while it was reloaded; trying again later".into(),
        ))
    }

    /// Creates a tenant whose token hashes to `token_hash`.
    pub async fn create_tenant(
        &self,
        tenant: Tenant,
        token_hash: String,
    ) -> Result<Tenant, StoreError> {
        self.backend.create_tenant(&tenant, &token_hash).await?;
        self.directory_change()
            .put_tenant(tenant.clone(), token_hash);
        Ok(tenant)
    }

    /// Deletes a tenant and everything it owns.
    pub async fn delete_tenant(&self, id: &str) -> Result<bool, StoreError> {
        let deleted = self.backend.delete_tenant(id).await?;
        self.directory_change().remove_tenant(id);
        Ok(deleted)
    }

    /// Inserts or replaces an endpoint. `secret_paths[i]` names the secret fields of step `i`'s
    /// configuration (from its plugin's schema): they are sealed in the stored copy, as is a
    /// URL that carries a password.
    pub async fn put_endpoint(
        &self,
        endpoint: Endpoint,
        secret_paths: &[Vec<SecretPath>],
    ) -> Result<Arc<Endpoint>, StoreError> {
        let sealed = seal_endpoint(&self.sealer(), &endpoint, secret_paths);
        self.backend.put_endpoint(&sealed).await?;
        let mut directory = self.directory_change();
        directory.put_endpoint(endpoint.clone());
        Ok(directory
            .endpoint(&endpoint.id)
            .unwrap_or_else(|| Arc::new(endpoint)))
    }

    /// Deletes an endpoint; its pending deliveries become dead.
    pub async fn delete_endpoint(&self, tenant: &str, id: &str) -> Result<bool, StoreError> {
        let deleted = self.backend.delete_endpoint(tenant, id).await?;
        self.directory_change().remove_endpoint(tenant, id);
        Ok(deleted)
    }
}

/// Context of sealed JWS signing keys.
const SIGNING_KEY_CONTEXT: &str = "signing-key";
/// Context of sealed mTLS client keys.
const CLIENT_KEY_CONTEXT: &str = "client-key";

impl Store {
    /// Every signing key, oldest first (private keys unsealed).
    pub async fn signing_keys(&self) -> Result<Vec<StoredSigningKey>, StoreError> {
        let mut keys = self.backend.signing_keys().await?;
        for key in &mut keys {
            key.private_key_pem = self
                .sealer()
                .unseal(SIGNING_KEY_CONTEXT, &key.private_key_pem)
                .map_err(secret_error)?;
        }
        Ok(keys)
    }

    /// Adds a signing key, its private key sealed (see [`KeyInsert`]).
    pub async fn add_signing_key(
        &self,
        key: &StoredSigningKey,
        mode: KeyInsert,
    ) -> Result<bool, StoreError> {
        let mut sealed = key.clone();
        sealed.private_key_pem = self
            .sealer()
            .seal(SIGNING_KEY_CONTEXT, &key.private_key_pem);
        self.backend.add_signing_key(&sealed, mode).await
    }

    /// Inserts or replaces a client certificate record, its private key sealed.
    pub async fn put_client_certificate(
        &self,
        record: &StoredClientCertificate,
    ) -> Result<(), StoreError> {
        let mut sealed = record.clone();
        sealed.private_key_pem = self
            .sealer()
            .seal(CLIENT_KEY_CONTEXT, &record.private_key_pem);
        self.backend.put_client_certificate(&sealed).await
    }

    /// The tenant's client certificate records (private keys unsealed).
    pub async fn client_certificates(
        &self,
        tenant: &str,
    ) -> Result<Vec<StoredClientCertificate>, StoreError> {
        let mut records = self.backend.client_certificates(tenant).await?;
        for record in &mut records {
            self.unseal_client_key(record)?;
        }
        Ok(records)
    }

    /// One client certificate record of a tenant (private key unsealed).
    pub async fn client_certificate(
        &self,
        tenant: &str,
        id: &str,
    ) -> Result<StoredClientCertificate, StoreError> {
        let mut record = self.backend.client_certificate(tenant, id).await?;
        self.unseal_client_key(&mut record)?;
        Ok(record)
    }

    /// Inserts or replaces a record's staged next certificate, its private key sealed.
    pub async fn put_staged_certificate(
        &self,
        staged: &StoredStagedCertificate,
    ) -> Result<(), StoreError> {
        let mut sealed = staged.clone();
        sealed.private_key_pem = self
            .sealer()
            .seal(CLIENT_KEY_CONTEXT, &staged.private_key_pem);
        self.backend.put_staged_certificate(&sealed).await
    }

    /// A record's staged next certificate (private key unsealed), if any.
    pub async fn staged_certificate(
        &self,
        tenant: &str,
        id: &str,
    ) -> Result<Option<StoredStagedCertificate>, StoreError> {
        let Some(mut staged) = self.backend.staged_certificate(tenant, id).await? else {
            return Ok(None);
        };
        staged.private_key_pem = self
            .sealer()
            .unseal(CLIENT_KEY_CONTEXT, &staged.private_key_pem)
            .map_err(secret_error)?;
        Ok(Some(staged))
    }

    fn unseal_client_key(&self, record: &mut StoredClientCertificate) -> Result<(), StoreError> {
        record.private_key_pem = self
            .sealer()
            .unseal(CLIENT_KEY_CONTEXT, &record.private_key_pem)
            .map_err(secret_error)?;
        Ok(())
    }

    /// Seals again, under the current master key, every secret sealed under a previous one
    /// (or stored before sealing existed). Returns how many records were rewritten. Endpoints
    /// need no schema for this: exactly the values that were sealed are sealed again.
    pub async fn reseal_all(&self) -> Result<u64, StoreError> {
        let sealer = self.sealer();
        let mut rewritten = 0;
        for key in self.backend.signing_keys().await? {
            if !sealer.is_current(&key.private_key_pem) {
                let mut sealed = key.clone();
                let clear = sealer
                    .unseal(SIGNING_KEY_CONTEXT, &key.private_key_pem)
                    .map_err(secret_error)?;
                sealed.private_key_pem = sealer.seal(SIGNING_KEY_CONTEXT, &clear);
                self.backend.replace_signing_key_secret(&sealed).await?;
                rewritten += 1;
            }
        }
        let tenants = self.directory().tenants();
        for tenant in tenants {
            for record in self.backend.client_certificates(&tenant.id).await? {
                if !sealer.is_current(&record.private_key_pem) {
                    let mut clear = record.clone();
                    self.unseal_client_key(&mut clear)?;
                    self.put_client_certificate(&clear).await?;
                    rewritten += 1;
                }
                if let Some(staged) = self
                    .backend
                    .staged_certificate(&tenant.id, &record.id)
                    .await?
                    && !sealer.is_current(&staged.private_key_pem)
                    && let Some(clear) = self.staged_certificate(&tenant.id, &record.id).await?
                {
                    self.put_staged_certificate(&clear).await?;
                    rewritten += 1;
                }
            }
        }
        for endpoint in self.backend.directory_rows().await?.endpoints {
            let mut tree = serde_json::to_value(&endpoint.spec)
                .map_err(|e| StoreError::Secret(format!("encoding an endpoint: {e}")))?;
            let mut stale = false;
            reseal_tree(&sealer, &mut tree, &mut stale).map_err(secret_error)?;
            if stale {
                let mut resealed = endpoint.clone();
                resealed.spec = serde_json::from_value(tree)
                    .map_err(|e| StoreError::Secret(format!("decoding an endpoint: {e}")))?;
                self.backend.put_endpoint(&resealed).await?;
                rewritten += 1;
            }
        }
        self.backend.flush().await?;
        self.backend.scrub().await?;
        Ok(rewritten)
    }
}

/// Seals again under the current key every sealed string of `tree` that another key sealed.
fn reseal_tree(
    sealer: &Sealer,
    tree: &mut serde_json::Value,
    stale: &mut bool,
) -> Result<(), crate::secrets::SecretError> {
    match tree {
        serde_json::Value::String(s) if Sealer::is_sealed(s) && !sealer.is_current(s) => {
            let clear = sealer.unseal(crate::secrets::ENDPOINT_CONTEXT, s)?;
            *s = sealer.seal(crate::secrets::ENDPOINT_CONTEXT, &clear);
            *stale = true;
            Ok(())
        }
        serde_json::Value::Array(items) => items
            .iter_mut()
            .try_for_each(|item| reseal_tree(sealer, item, stale)),
        serde_json::Value::Object(map) => map
            .values_mut()
            .try_for_each(|value| reseal_tree(sealer, value, stale)),
        _ => Ok(()),
    }
}

fn secret_error(error: crate::secrets::SecretError) -> StoreError {
    StoreError::Secret(error.to_string())
}

/// The stored form of an endpoint: secret step fields and a URL with a password sealed.
fn seal_endpoint(
    sealer: &Sealer,
    endpoint: &Endpoint,
    secret_paths: &[Vec<SecretPath>],
) -> Endpoint {
    let mut sealed = endpoint.clone();
    if url_has_password(&sealed.spec.url) {
        let text = serde_json::Value::String(sealed.spec.url.clone()).to_string();
        sealed.spec.url = sealer.seal(crate::secrets::ENDPOINT_CONTEXT, &text);
    }
    for (step, paths) in sealed.spec.steps.iter_mut().zip(secret_paths) {
        crate::secrets::seal_paths(sealer, &mut step.config, paths);
        seal_url_passwords(sealer, &mut step.config);
    }
    sealed
}

/// Seals every string of `tree` that is a URL with a password (e.g. a token URL).
fn seal_url_passwords(sealer: &Sealer, tree: &mut serde_json::Value) {
    match tree {
        serde_json::Value::String(s) if url_has_password(s) => {
            let text = serde_json::Value::String(s.clone()).to_string();
            *s = sealer.seal(crate::secrets::ENDPOINT_CONTEXT, &text);
        }
        serde_json::Value::Array(items) => {
            items.iter_mut().for_each(|i| seal_url_passwords(sealer, i))
        }
        serde_json::Value::Object(map) => {
            map.values_mut().for_each(|v| seal_url_passwords(sealer, v))
        }
        _ => {}
    }
}

/// True for `scheme://user:password@host…`.
pub fn url_has_password(url: &str) -> bool {
    let Some((_, rest)) = url.split_once("://") else {
        return false;
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    authority
        .rsplit_once('@')
        .is_some_and(|(userinfo, _)| userinfo.contains(':'))
}

/// Unseals the endpoints of directory rows.
fn unseal_rows(sealer: &Sealer, mut rows: DirectoryRows) -> Result<DirectoryRows, StoreError> {
    for endpoint in &mut rows.endpoints {
        if Sealer::is_sealed(&endpoint.spec.url) {
            let clear = sealer
                .unseal(crate::secrets::ENDPOINT_CONTEXT, &endpoint.spec.url)
                .map_err(secret_error)?;
            endpoint.spec.url = serde_json::from_str(&clear)
                .map_err(|_| StoreError::Secret("a sealed URL is not a JSON string".into()))?;
        }
        for step in &mut endpoint.spec.steps {
            crate::secrets::unseal_tree(sealer, &mut step.config).map_err(secret_error)?;
        }
    }
    Ok(rows)
}
