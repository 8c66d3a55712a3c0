//! The PostgreSQL backend: one database shared by every node.
//!
//! - [`pool`]: the URL's configuration, TLS (rustls, webpki roots, the URL's `sslmode`), the
//!   connection pool.
//! - [`schema`]: migrations under an advisory lock (nodes starting together do not race).
//! - [`batch`], [`attempts`], [`ingest`]: the hot path's writes grouped into one transaction
//!   each (attempt records, and ingests without an idempotency key), with multi-row statements.
//! - [`queue`]: claims (`FOR UPDATE SKIP LOCKED` under leases), leases, endpoint slots.
//! - [`listen`]: LISTEN/NOTIFY wake-ups on a connection of their own.
//! - [`directory`], [`keys`], [`plugins`]: what every node must agree on, each write moving its
//!   change counter and notifying the nodes in the same transaction.
//! - [`reads`]: what the API reads.
//!
//! No PostgreSQL type leaves this module; errors are [`StoreError`]s, never with the URL's
//! password.

mod attempts;
mod batch;
mod catalog;
mod directory;
mod error;
mod ingest;
mod keys;
mod lifecycle;
mod listen;
mod log;
mod plugins;
mod pool;
mod queue;
mod reads;
mod schema;
mod staged;

use tokio::sync::{broadcast, oneshot};

use self::batch::Batcher;
use self::listen::Listener;
use self::pool::Db;
use super::{
    AttemptRecord, Backend, ClaimRequest, DirectoryRows, IngestOutcome, IngestRequest, KeyInsert,
    Lease, Notice, PendingDelivery, RecordDone, RecoverBatch, RecoverRequest, Revisions,
    StoreError, StoredCatalog, StoredClientCertificate, StoredEventType, StoredPlugin,
    StoredPluginInfo, StoredSigningKey, StoredStagedCertificate, WriteStats, redact_url,
};
use super::{EventHistory, LogPage, LogQuery};
use super::{FailingEndpoint, HealthDelta, PruneBatch, PruneCounts, PruneRequest, StoredHealth};
use crate::model::{Attempt, Delivery, Endpoint, EventSummary, Tenant};

/// The PostgreSQL backend: a pool, the two write batchers and the listening connection.
/// Dropping it stops listening; the batchers commit what was queued and stop.
pub struct PostgresBackend {
    db: Db,
    records: Batcher<attempts::RecordJob>,
    ingests: Batcher<ingest::IngestJob>,
    listener: Listener,
}

impl PostgresBackend {
    /// Connects to the database at `url` (a pool of `pool_size` connections, and one more for
    /// LISTEN), applies the migrations it has not seen, and starts the write batchers (at most
    /// `max_batch` writes per transaction). Fails within a few seconds with
    /// [`StoreError::Open`] when the server cannot be reached, and with
    /// [`StoreError::Schema`] when the database is newer than this binary.
    pub async fn connect(
        url: &str,
        pool_size: usize,
        max_batch: usize,
    ) -> Result<Self, StoreError> {
        let location = redact_url(url);
        let open = |reason: String| StoreError::Open {
            location: location.clone(),
            reason: with_hint(reason),
        };
        let config = pool::config(url, &location)?;
        let deadline = pool::connect_deadline(&config);
        let tls = pool::tls().map_err(open)?;
        let pool = pool::build(config.clone(), tls.clone(), pool_size).map_err(open)?;
        let db = Db::new(pool);
        let mut client = match tokio::time::timeout(deadline, db.get()).await {
            Ok(Ok(client)) => client,
            Ok(Err(e)) => return Err(open(unwrap_reason(e))),
            Err(_) => return Err(open(format!("no answer within {deadline:?}"))),
        };
        schema::migrate(&mut client).await?;
        drop(client);
        let listener = Listener::start(config, tls, deadline)
            .await
            .map_err(|e| open(format!("cannot LISTEN: {e}")))?;
        tracing::info!(store = %location, pool_size, "connected to PostgreSQL");
        Ok(Self {
            records: attempts::start(db.clone(), max_batch),
            ingests: ingest::start(db.clone(), max_batch),
            db,
            listener,
        })
    }
}

/// `reason`, with what to do about it when that is not obvious.
fn with_hint(reason: String) -> String {
    if reason.contains("invalid peer certificate") {
        format!(
            "{reason} (the server's certificate must chain to a public root CA of the webpki \
             roots and name the host of the URL; `sslmode=disable` turns TLS off)"
        )
    } else {
        reason
    }
}

/// The reason inside an error met while opening.
fn unwrap_reason(error: StoreError) -> String {
    match error {
        StoreError::Unavailable(reason) | StoreError::Database(reason) => reason,
        other => other.to_string(),
    }
}

#[async_trait::async_trait]
impl Backend for PostgresBackend {
    fn kind(&self) -> &'static str {
        "postgres"
    }

    fn shared(&self) -> bool {
        true
    }

    fn notices(&self) -> Option<broadcast::Receiver<Notice>> {
        Some(self.listener.subscribe())
    }

    fn write_stats(&self) -> WriteStats {
        self.db.stats()
    }

    async fn scrub(&self) -> Result<(), StoreError> {
        // Rewritten rows leave dead versions with the old ciphertexts in the tables' pages until
        // they are vacuumed; VACUUM FULL rewrites these (small) tables into new files. What
        // the server's WAL archive keeps is the operator's to expire.
        let client = self.db.get().await?;
        client
            .batch_execute("VACUUM FULL endpoints, signing_keys, client_certificates")
            .await
            .map_err(error::pg)?;
        Ok(())
    }

    async fn flush(&self) -> Result<(), StoreError> {
        let (records, ingests) = tokio::join!(self.records.flush(), self.ingests.flush());
        records.and(ingests)
    }

    async fn revisions(&self) -> Result<Revisions, StoreError> {
        directory::revisions(&self.db).await
    }

    async fn directory_rows(&self) -> Result<DirectoryRows, StoreError> {
        directory::directory_rows(&self.db).await
    }

    async fn create_tenant(&self, tenant: &Tenant, token_hash: &str) -> Result<(), StoreError> {
        directory::create_tenant(&self.db, tenant, token_hash).await
    }

    async fn delete_tenant(&self, id: &str) -> Result<bool, StoreError> {
        directory::delete_tenant(&self.db, id).await
    }

    async fn put_endpoint(&self, endpoint: &Endpoint) -> Result<(), StoreError> {
        directory::put_endpoint(&self.db, endpoint).await
    }

    async fn delete_endpoint(&self, tenant: &str, id: &str) -> Result<bool, StoreError> {
        directory::delete_endpoint(&self.db, tenant, id).await
    }

    async fn ingest(&self, request: IngestRequest) -> Result<IngestOutcome, StoreError> {
        if let Some(key) = request.idempotency_key.clone() {
            return ingest::keyed(&self.db, request, &key).await;
        }
        let (answer, wait) = oneshot::channel();
        if self
            .ingests
            .submit(ingest::IngestJob { request, answer })
            .is_err()
        {
            return Err(StoreError::WriterGone);
        }
        wait.await.unwrap_or(Err(StoreError::WriterGone))
    }

    fn record_attempt(&self, record: AttemptRecord, done: RecordDone) {
        if let Err(job) = self.records.submit(attempts::RecordJob { record, done }) {
            (job.done)(Err(StoreError::WriterGone));
        }
    }

    async fn mark_dead(&self, delivery_id: &str, reason: &str) -> Result<(), StoreError> {
        queue::mark_dead(&self.db, delivery_id, reason).await
    }

    async fn hold_delivery(
        &self,
        delivery_id: &str,
        endpoint_id: &str,
    ) -> Result<crate::store::HoldOutcome, StoreError> {
        lifecycle::hold(&self.db, delivery_id, endpoint_id).await
    }

    async fn resume_held(&self, endpoint_id: &str, now_ms: i64) -> Result<u64, StoreError> {
        lifecycle::resume_held(&self.db, endpoint_id, now_ms).await
    }

    async fn resume_stranded(&self, now_ms: i64) -> Result<u64, StoreError> {
        lifecycle::resume_stranded(&self.db, now_ms).await
    }

    async fn add_health(&self, deltas: &[HealthDelta]) -> Result<(), StoreError> {
        lifecycle::add_health(&self.db, deltas).await
    }

    async fn health(
        &self,
        endpoint_ids: &[String],
        now_ms: i64,
    ) -> Result<Vec<StoredHealth>, StoreError> {
        lifecycle::health(&self.db, endpoint_ids, now_ms).await
    }

    async fn reset_failure_streak(&self, endpoint_id: &str) -> Result<(), StoreError> {
        lifecycle::reset_failure_streak(&self.db, endpoint_id).await
    }

    async fn failing_endpoints(
        &self,
        failing_since_before_ms: i64,
        min_failures: u64,
    ) -> Result<Vec<FailingEndpoint>, StoreError> {
        lifecycle::failing_endpoints(&self.db, failing_since_before_ms, min_failures).await
    }

    async fn take_job_lease(
        &self,
        job: &str,
        lease: &Lease,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        lifecycle::take_job_lease(&self.db, job, lease, now_ms).await
    }

    async fn note_once(&self, key: &str, now: i64) -> Result<bool, StoreError> {
        lifecycle::note_once(&self.db, key, now).await
    }

    async fn prune_events(&self, request: &PruneRequest) -> Result<PruneBatch, StoreError> {
        lifecycle::prune_events(&self.db, request).await
    }

    async fn reclaim_space(&self) -> Result<(), StoreError> {
        lifecycle::vacuum_messages(&self.db).await
    }

    async fn prune_keys(
        &self,
        before: i64,
        now_ms: i64,
        limit: usize,
        dry_run: bool,
    ) -> Result<PruneCounts, StoreError> {
        lifecycle::prune_keys(&self.db, before, now_ms, limit, dry_run).await
    }

    async fn requeue(
        &self,
        tenant: &str,
        event: &str,
        delivery: &str,
        lease: &Lease,
    ) -> Result<PendingDelivery, StoreError> {
        queue::requeue(&self.db, tenant, event, delivery, lease).await
    }

    async fn claim(&self, request: &ClaimRequest) -> Result<Vec<PendingDelivery>, StoreError> {
        queue::claim(&self.db, request).await
    }

    async fn renew_leases(&self, lease: &Lease) -> Result<u64, StoreError> {
        queue::renew(&self.db, lease).await
    }

    async fn release_leases(
        &self,
        owner: &str,
        deliveries: Option<&[String]>,
    ) -> Result<u64, StoreError> {
        queue::release(&self.db, owner, deliveries).await
    }

    async fn event_body(&self, event_id: &str) -> Result<Option<Vec<u8>>, StoreError> {
        queue::event_body(&self.db, event_id).await
    }

    async fn acquire_endpoint_slot(
        &self,
        endpoint_id: &str,
        max: u32,
        lease: &Lease,
        now_ms: i64,
    ) -> Result<Option<u32>, StoreError> {
        queue::acquire_slot(&self.db, endpoint_id, max, lease, now_ms).await
    }

    async fn release_endpoint_slot(
        &self,
        endpoint_id: &str,
        slot: u32,
        owner: &str,
    ) -> Result<(), StoreError> {
        queue::release_slot(&self.db, endpoint_id, slot, owner).await
    }

    async fn heartbeat_node(&self, lease: &Lease, now_ms: i64) -> Result<u32, StoreError> {
        queue::heartbeat_node(&self.db, lease, now_ms).await
    }

    async fn leave(&self, owner: &str) -> Result<(), StoreError> {
        queue::leave(&self.db, owner).await
    }

    async fn event(&self, tenant: &str, event: &str) -> Result<EventSummary, StoreError> {
        reads::event(&self.db, tenant, event).await
    }

    async fn deliveries_of_event(
        &self,
        tenant: &str,
        event: &str,
    ) -> Result<Vec<Delivery>, StoreError> {
        reads::deliveries_of_event(&self.db, tenant, event).await
    }

    async fn attempts_of_delivery(
        &self,
        tenant: &str,
        event: &str,
        delivery: &str,
    ) -> Result<Vec<Attempt>, StoreError> {
        reads::attempts_of_delivery(&self.db, tenant, event, delivery).await
    }

    async fn count_pending(&self) -> Result<u64, StoreError> {
        reads::count_pending(&self.db).await
    }

    async fn signing_keys(&self) -> Result<Vec<StoredSigningKey>, StoreError> {
        keys::signing_keys(&self.db).await
    }

    async fn add_signing_key(
        &self,
        key: &StoredSigningKey,
        mode: KeyInsert,
    ) -> Result<bool, StoreError> {
        keys::add_signing_key(&self.db, key, mode).await
    }

    async fn replace_signing_key_secret(&self, key: &StoredSigningKey) -> Result<(), StoreError> {
        keys::replace_secret(&self.db, key).await
    }

    async fn prune_signing_keys(&self, cutoff: i64) -> Result<u64, StoreError> {
        keys::prune_signing_keys(&self.db, cutoff).await
    }

    async fn put_client_certificate(
        &self,
        record: &StoredClientCertificate,
    ) -> Result<(), StoreError> {
        keys::put_client_certificate(&self.db, record).await
    }

    async fn client_certificates(
        &self,
        tenant: &str,
    ) -> Result<Vec<StoredClientCertificate>, StoreError> {
        keys::client_certificates(&self.db, tenant).await
    }

    async fn client_certificate(
        &self,
        tenant: &str,
        id: &str,
    ) -> Result<StoredClientCertificate, StoreError> {
        keys::client_certificate(&self.db, tenant, id).await
    }

    async fn delete_client_certificate(&self, tenant: &str, id: &str) -> Result<bool, StoreError> {
        keys::delete_client_certificate(&self.db, tenant, id).await
    }

    async fn put_tenant_plugin(&self, plugin: &StoredPlugin) -> Result<(), StoreError> {
        plugins::put(&self.db, plugin).await
    }

    async fn delete_tenant_plugin(&self, tenant: &str, name: &str) -> Result<bool, StoreError> {
        plugins::delete(&self.db, tenant, name).await
    }

    async fn tenant_plugins(&self) -> Result<Vec<StoredPluginInfo>, StoreError> {
        plugins::list(&self.db).await
    }

    async fn tenant_plugin(
        &self,
        tenant: &str,
        name: &str,
    ) -> Result<Option<StoredPlugin>, StoreError> {
        plugins::get(&self.db, tenant, name).await
    }
    async fn catalog(&self, tenant: &str) -> Result<StoredCatalog, StoreError> {
        catalog::catalog(&self.db, tenant).await
    }

    async fn create_event_type(&self, event_type: &StoredEventType) -> Result<(), StoreError> {
        catalog::create(&self.db, event_type).await
    }

    async fn update_event_type(&self, event_type: &StoredEventType) -> Result<(), StoreError> {
        catalog::update(&self.db, event_type).await
    }

    async fn delete_event_type(&self, tenant: &str, name: &str) -> Result<bool, StoreError> {
        catalog::delete(&self.db, tenant, name).await
    }

    async fn set_strict_event_types(&self, tenant: &str, strict: bool) -> Result<(), StoreError> {
        catalog::set_strict(&self.db, tenant, strict).await
    }

    async fn recover_deliveries(
        &self,
        request: &RecoverRequest,
    ) -> Result<RecoverBatch, StoreError> {
        catalog::recover(&self.db, request).await
    }
    async fn staged_certificate(
        &self,
        tenant: &str,
        id: &str,
    ) -> Result<Option<StoredStagedCertificate>, StoreError> {
        staged::get(&self.db, tenant, id).await
    }

    async fn put_staged_certificate(
        &self,
        record: &StoredStagedCertificate,
    ) -> Result<(), StoreError> {
        staged::put(&self.db, record).await
    }

    async fn delete_staged_certificate(&self, tenant: &str, id: &str) -> Result<bool, StoreError> {
        staged::delete(&self.db, tenant, id).await
    }

    async fn promote_staged_certificate(
        &self,
        tenant: &str,
        id: &str,
        now: i64,
    ) -> Result<bool, StoreError> {
        staged::promote(&self.db, tenant, id, now).await
    }

    async fn log_events(&self, query: &LogQuery) -> Result<LogPage, StoreError> {
        log::log_events(&self.db, query).await
    }

    async fn event_history(&self, tenant: &str, event: &str) -> Result<EventHistory, StoreError> {
        log::event_history(&self.db, tenant, event).await
    }
}
