//! The SQLite backend: one file (WAL), one node.
//!
//! - Every write goes through the one writer thread (`writer`), which runs each write in its
//!   own SAVEPOINT and commits whatever queued up together in one transaction (one fsync for a
//!   burst of writes). Callers are answered only once their write is durable.
//! - Reads run on a small pool of read-only connections on blocking threads (`connection`).
//! - One process owns a data directory at a time: an exclusive lock on `<data_dir>/lock`
//!   (`files`). When it dies, even by `kill -9`, the operating system releases the lock; the
//!   next process clears every lease at open (their owner is gone), so what the dead process
//!   held is claimable at once.
//!
//! The SQL lives in one file per concern: `directory` (tenants, endpoints, change counters),
//! `deliveries` (ingest, attempts, leases), `reads` (what the API reads back), `keys`,
//! `certificates`, `plugins`; `schema` holds the migrations.
//!
//! Leases work as for a shared store (a claim takes lapsed leases over first), but with one node
//! there is nobody to coordinate with: [`Backend::shared`] is false, and an endpoint's
//! cluster-wide attempt slots are the dispatcher's local limit (the slot calls always succeed).

mod catalog;
mod certificates;
mod connection;
mod deliveries;
mod directory;
mod files;
mod keys;
mod lifecycle;
mod log;
mod plugins;
mod reads;
mod schema;
mod staged;
mod writer;

use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use rusqlite::{Connection, OpenFlags};

use self::connection::{OrStore, Readers, open_connection};
use self::writer::{Writer, WriterThread};
use super::{
    AttemptRecord, Backend, ClaimRequest, DirectoryRows, IngestOutcome, IngestRequest, KeyInsert,
    Lease, PendingDelivery, RecordDone, RecoverBatch, RecoverRequest, Revisions, StoreError,
    StoredCatalog, StoredClientCertificate, StoredEventType, StoredPlugin, StoredPluginInfo,
    StoredSigningKey, StoredStagedCertificate, WriteStats,
};
use super::{EventHistory, LogPage, LogQuery};
use super::{FailingEndpoint, HealthDelta, PruneBatch, PruneCounts, PruneRequest, StoredHealth};
use crate::config::Synchronous;
use crate::model::{Attempt, Delivery, Endpoint, EventSummary, Tenant};

/// Prepared statements the writer keeps parsed: room for every statement it runs (its own
/// `BEGIN`/`SAVEPOINT`/... included).
const STATEMENT_CACHE: usize = 64;

/// The store in one SQLite file, owned by this process (see the module documentation).
pub struct SqliteBackend {
    writer: Writer,
    writer_thread: WriterThread,
    readers: Arc<Readers>,
    /// Holds the data directory's lock; released last, once the writer thread is done.
    _lock: File,
}

impl SqliteBackend {
    /// Opens the database at `path`, owned through `data_dir`: creates `data_dir` (0700) if
    /// needed, takes its lock (`Locked` when another process holds it), creates the database
    /// file (0600) if needed, switches it to WAL, runs the migrations, clears every lease (a
    /// previous process died holding them) and starts the writer, which commits at most
    /// `max_batch` writes per transaction with `synchronous`.
    pub fn open(
        data_dir: &Path,
        path: &Path,
        max_batch: usize,
        synchronous: Synchronous,
    ) -> Result<Self, StoreError> {
        files::ensure_private_dir(data_dir)?;
        let lock = files::lock_data_dir(data_dir)?;
        files::create_database_file(path)?;
        let mut conn = open_connection(path, OpenFlags::default(), synchronous)?;
        conn.pragma_update(None, "journal_mode", "WAL").db()?;
        // Freed cell space is zeroed where that costs no extra I/O: a row rewritten under a new
        // master key leaves no readable old ciphertext in its page.
        conn.pragma_update(None, "secure_delete", "FAST").db()?;
        schema::migrate(&mut conn)?;
        clear_leases(&conn)?;
        // WAL checkpoints stay SQLite's automatic ones, inside the writer's commit: a checkpoint
        // thread of its own (PASSIVE every 250 ms) was measured and made ingest p99 at 5,000/s
        // worse, 2.4 -> 41 ms, as its database fsyncs queued the writer's WAL fsyncs behind them.
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        let (writer, writer_thread) = Writer::start(conn, max_batch)?;
        Ok(Self {
            writer,
            writer_thread,
            readers: Arc::new(Readers::new(path.to_path_buf())),
            _lock: lock,
        })
    }

    async fn write<T, F>(&self, op: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        self.writer.write(op).await
    }

    async fn read<T, F>(&self, op: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        self.readers.read(op).await
    }
}

/// Clears every lease: this process owns the file, so whoever held them is gone.
fn clear_leases(conn: &Connection) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE deliveries SET lease_owner = NULL, lease_expires_at = NULL WHERE lease_owner IS NOT NULL",
        [],
    )
    .db()?;
    Ok(())
}

impl Drop for SqliteBackend {
    /// Lets the writer commit what was queued and stop before the lock is released, so that the
    /// next owner of the directory never overlaps with this one's last writes.
    fn drop(&mut self) {
        self.writer = Writer::stopped();
        self.writer_thread.join();
    }
}

#[async_trait::async_trait]
impl Backend for SqliteBackend {
    fn kind(&self) -> &'static str {
        "sqlite"
    }

    fn shared(&self) -> bool {
        false
    }

    fn write_stats(&self) -> WriteStats {
        self.writer.stats()
    }

    async fn scrub(&self) -> Result<(), StoreError> {
        // Old page versions live on in the WAL until a checkpoint: copy the latest pages into the
        // database file and truncate the log (on a connection of its own: a checkpoint cannot
        // run inside the writer's transactions).
        let path = self.readers.path().to_path_buf();
        tokio::task::spawn_blocking(move || {
            let conn = open_connection(&path, OpenFlags::default(), Synchronous::Full)?;
            conn.pragma_update(None, "secure_delete", "ON").db()?;
            let busy: i64 = conn
                .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |row| row.get(0))
                .db()?;
            if busy != 0 {
                return Err(StoreError::Database(
                    "the WAL checkpoint was blocked by a reader; run the rotation again".into(),
                ));
            }
            Ok(())
        })
        .await
        .map_err(|e| StoreError::Database(format!("scrub task failed: {e}")))?
    }

    async fn flush(&self) -> Result<(), StoreError> {
        // The writer is FIFO: a no-op queued now commits after everything queued before it.
        self.write(|_| Ok(())).await
    }

    async fn revisions(&self) -> Result<Revisions, StoreError> {
        self.read(directory::revisions).await
    }

    async fn directory_rows(&self) -> Result<DirectoryRows, StoreError> {
        self.read(directory::directory_rows).await
    }

    async fn create_tenant(&self, tenant: &Tenant, token_hash: &str) -> Result<(), StoreError> {
        let (tenant, token_hash) = (tenant.clone(), token_hash.to_string());
        self.write(move |conn| directory::create_tenant(conn, &tenant, &token_hash))
            .await
    }

    async fn delete_tenant(&self, id: &str) -> Result<bool, StoreError> {
        let id = id.to_string();
        self.write(move |conn| directory::delete_tenant(conn, &id))
            .await
    }

    async fn put_endpoint(&self, endpoint: &Endpoint) -> Result<(), StoreError> {
        let spec = serde_json::to_string(&endpoint.spec).map_err(StoreError::database)?;
        let endpoint = endpoint.clone();
        self.write(move |conn| directory::put_endpoint(conn, &endpoint, &spec))
            .await
    }

    async fn delete_endpoint(&self, tenant: &str, id: &str) -> Result<bool, StoreError> {
        let (tenant, id) = (tenant.to_string(), id.to_string());
        self.write(move |conn| directory::delete_endpoint(conn, &tenant, &id))
            .await
    }

    async fn ingest(&self, request: IngestRequest) -> Result<IngestOutcome, StoreError> {
        self.write(move |conn| deliveries::ingest(conn, request))
            .await
    }

    fn record_attempt(&self, record: AttemptRecord, done: RecordDone) {
        self.writer
            .submit(move |conn| deliveries::record_attempt(conn, &record), done);
    }

    async fn mark_dead(&self, delivery_id: &str, reason: &str) -> Result<(), StoreError> {
        let (id, reason) = (delivery_id.to_string(), reason.to_string());
        self.write(move |conn| deliveries::mark_dead(conn, &id, &reason))
            .await
    }

    async fn hold_delivery(
        &self,
        delivery_id: &str,
        endpoint_id: &str,
    ) -> Result<crate::store::HoldOutcome, StoreError> {
        let (id, endpoint) = (delivery_id.to_string(), endpoint_id.to_string());
        self.write(move |conn| lifecycle::hold(conn, &id, &endpoint))
            .await
    }

    async fn resume_held(&self, endpoint_id: &str, now_ms: i64) -> Result<u64, StoreError> {
        let id = endpoint_id.to_string();
        self.write(move |conn| lifecycle::resume_held(conn, &id, now_ms))
            .await
    }

    async fn resume_stranded(&self, now_ms: i64) -> Result<u64, StoreError> {
        self.write(move |conn| lifecycle::resume_stranded(conn, now_ms))
            .await
    }

    async fn add_health(&self, deltas: &[HealthDelta]) -> Result<(), StoreError> {
        let deltas = deltas.to_vec();
        self.write(move |conn| lifecycle::add_health(conn, &deltas))
            .await
    }

    async fn health(
        &self,
        endpoint_ids: &[String],
        now_ms: i64,
    ) -> Result<Vec<StoredHealth>, StoreError> {
        let ids = endpoint_ids.to_vec();
        self.read(move |conn| lifecycle::health(conn, &ids, now_ms))
            .await
    }

    async fn reset_failure_streak(&self, endpoint_id: &str) -> Result<(), StoreError> {
        let id = endpoint_id.to_string();
        self.write(move |conn| lifecycle::reset_failure_streak(conn, &id))
            .await
    }

    async fn failing_endpoints(
        &self,
        failing_since_before_ms: i64,
        min_failures: u64,
    ) -> Result<Vec<FailingEndpoint>, StoreError> {
        self.read(move |conn| {
            lifecycle::failing_endpoints(conn, failing_since_before_ms, min_failures)
        })
        .await
    }

    async fn take_job_lease(
        &self,
        job: &str,
        lease: &Lease,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let (job, lease) = (job.to_string(), lease.clone());
        self.write(move |conn| lifecycle::take_job_lease(conn, &job, &lease, now_ms))
            .await
    }

    async fn note_once(&self, key: &str, now: i64) -> Result<bool, StoreError> {
        let key = key.to_string();
        self.write(move |conn| lifecycle::note_once(conn, &key, now))
            .await
    }

    async fn prune_events(&self, request: &PruneRequest) -> Result<PruneBatch, StoreError> {
        // The candidates are read on a reader; the writer only deletes, a few events per
        // background write (each checked again), so that an ingest waits behind one small slice
        // at most. A dry run counts on the same reader.
        let read = request.clone();
        let (ids, dry_counts) = self
            .read(move |conn| {
                let ids = lifecycle::expired_events(conn, &read)?;
                let counts = if read.dry_run {
                    Some(lifecycle::count_expired(conn, &ids)?)
                } else {
                    None
                };
                Ok((ids, counts))
            })
            .await?;
        let last = ids.last().cloned();
        let counts = match dry_counts {
            Some(counts) => counts,
            None => {
                let slices = ids.chunks(lifecycle::SLICE).map(|slice| {
                    let (request, slice) = (request.clone(), slice.to_vec());
                    self.writer.write_background(move |conn| {
                        lifecycle::delete_expired(conn, &request, &slice)
                    })
                });
                let mut counts = PruneCounts::default();
                for slice in futures::future::join_all(slices).await {
                    counts += slice?;
                }
                counts
            }
        };
        Ok(PruneBatch { counts, last })
    }

    async fn prune_keys(
        &self,
        before: i64,
        now_ms: i64,
        limit: usize,
        dry_run: bool,
    ) -> Result<PruneCounts, StoreError> {
        if dry_run {
            self.read(move |conn| lifecycle::prune_keys(conn, before, now_ms, limit, true))
                .await
        } else {
            self.writer
                .write_background(move |conn| {
                    lifecycle::prune_keys(conn, before, now_ms, limit, false)
                })
                .await
        }
    }

    async fn requeue(
        &self,
        tenant: &str,
        event: &str,
        delivery: &str,
        lease: &Lease,
    ) -> Result<PendingDelivery, StoreError> {
        let (tenant, event, delivery) =
            (tenant.to_string(), event.to_string(), delivery.to_string());
        let lease = lease.clone();
        self.write(move |conn| deliveries::requeue(conn, &tenant, &event, &delivery, &lease))
            .await
    }

    async fn claim(&self, request: &ClaimRequest) -> Result<Vec<PendingDelivery>, StoreError> {
        let request = request.clone();
        self.write(move |conn| deliveries::claim(conn, &request))
            .await
    }

    async fn renew_leases(&self, lease: &Lease) -> Result<u64, StoreError> {
        let lease = lease.clone();
        self.write(move |conn| deliveries::renew_leases(conn, &lease))
            .await
    }

    async fn release_leases(
        &self,
        owner: &str,
        deliveries: Option<&[String]>,
    ) -> Result<u64, StoreError> {
        let owner = owner.to_string();
        let ids = deliveries.map(<[String]>::to_vec);
        self.write(move |conn| deliveries::release_leases(conn, &owner, ids.as_deref()))
            .await
    }

    async fn event_body(&self, event_id: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let id = event_id.to_string();
        self.read(move |conn| deliveries::event_body(conn, &id))
            .await
    }

    /// One node: the dispatcher's local per-endpoint limit already is the cluster's, so every
    /// slot request succeeds (slot 0) without touching the database.
    async fn acquire_endpoint_slot(
        &self,
        _endpoint_id: &str,
        _max: u32,
        _lease: &Lease,
        _now_ms: i64,
    ) -> Result<Option<u32>, StoreError> {
        Ok(Some(0))
    }

    /// Nothing to give back (see [`Backend::acquire_endpoint_slot`]).
    async fn release_endpoint_slot(
        &self,
        _endpoint_id: &str,
        _slot: u32,
        _owner: &str,
    ) -> Result<(), StoreError> {
        Ok(())
    }

    /// One node, by the data-dir lock.
    async fn heartbeat_node(&self, _lease: &Lease, _now_ms: i64) -> Result<u32, StoreError> {
        Ok(1)
    }

    /// Nothing to leave (see [`Backend::heartbeat_node`]).
    async fn leave(&self, _owner: &str) -> Result<(), StoreError> {
        Ok(())
    }

    async fn event(&self, tenant: &str, event: &str) -> Result<EventSummary, StoreError> {
        let (tenant, event) = (tenant.to_string(), event.to_string());
        self.read(move |conn| reads::event(conn, &tenant, &event))
            .await
    }

    async fn deliveries_of_event(
        &self,
        tenant: &str,
        event: &str,
    ) -> Result<Vec<Delivery>, StoreError> {
        let (tenant, event) = (tenant.to_string(), event.to_string());
        self.read(move |conn| reads::deliveries_of_event(conn, &tenant, &event))
            .await
    }

    async fn attempts_of_delivery(
        &self,
        tenant: &str,
        event: &str,
        delivery: &str,
    ) -> Result<Vec<Attempt>, StoreError> {
        let (tenant, event, delivery) =
            (tenant.to_string(), event.to_string(), delivery.to_string());
        self.read(move |conn| reads::attempts_of_delivery(conn, &tenant, &event, &delivery))
            .await
    }

    async fn count_pending(&self) -> Result<u64, StoreError> {
        self.read(reads::count_pending).await
    }

    async fn signing_keys(&self) -> Result<Vec<StoredSigningKey>, StoreError> {
        self.read(keys::signing_keys).await
    }

    async fn add_signing_key(
        &self,
        key: &StoredSigningKey,
        mode: KeyInsert,
    ) -> Result<bool, StoreError> {
        let key = key.clone();
        self.write(move |conn| keys::add_signing_key(conn, &key, mode))
            .await
    }

    async fn replace_signing_key_secret(&self, key: &StoredSigningKey) -> Result<(), StoreError> {
        let key = key.clone();
        self.write(move |conn| keys::replace_secret(conn, &key))
            .await
    }

    async fn prune_signing_keys(&self, cutoff: i64) -> Result<u64, StoreError> {
        self.write(move |conn| keys::prune_signing_keys(conn, cutoff))
            .await
    }

    async fn put_client_certificate(
        &self,
        record: &StoredClientCertificate,
    ) -> Result<(), StoreError> {
        let record = record.clone();
        self.write(move |conn| certificates::put(conn, &record))
            .await
    }

    async fn client_certificates(
        &self,
        tenant: &str,
    ) -> Result<Vec<StoredClientCertificate>, StoreError> {
        let tenant = tenant.to_string();
        self.read(move |conn| certificates::list(conn, &tenant))
            .await
    }

    async fn client_certificate(
        &self,
        tenant: &str,
        id: &str,
    ) -> Result<StoredClientCertificate, StoreError> {
        let (tenant, id) = (tenant.to_string(), id.to_string());
        self.read(move |conn| certificates::get(conn, &tenant, &id))
            .await
    }

    async fn delete_client_certificate(&self, tenant: &str, id: &str) -> Result<bool, StoreError> {
        let (tenant, id) = (tenant.to_string(), id.to_string());
        self.write(move |conn| certificates::delete(conn, &tenant, &id))
            .await
    }

    async fn put_tenant_plugin(&self, plugin: &StoredPlugin) -> Result<(), StoreError> {
        let plugin = plugin.clone();
        self.write(move |conn| plugins::put(conn, &plugin)).await
    }

    async fn delete_tenant_plugin(&self, tenant: &str, name: &str) -> Result<bool, StoreError> {
        let (tenant, name) = (tenant.to_string(), name.to_string());
        self.write(move |conn| plugins::delete(conn, &tenant, &name))
            .await
    }

    async fn tenant_plugins(&self) -> Result<Vec<StoredPluginInfo>, StoreError> {
        self.read(plugins::list).await
    }

    async fn tenant_plugin(
        &self,
        tenant: &str,
        name: &str,
    ) -> Result<Option<StoredPlugin>, StoreError> {
        let (tenant, name) = (tenant.to_string(), name.to_string());
        self.read(move |conn| plugins::get(conn, &tenant, &name))
            .await
    }
    async fn catalog(&self, tenant: &str) -> Result<StoredCatalog, StoreError> {
        let tenant = tenant.to_string();
        self.read(move |conn| catalog::catalog(conn, &tenant)).await
    }

    async fn create_event_type(&self, event_type: &StoredEventType) -> Result<(), StoreError> {
        let event_type = event_type.clone();
        self.write(move |conn| catalog::create(conn, &event_type))
            .await
    }

    async fn update_event_type(&self, event_type: &StoredEventType) -> Result<(), StoreError> {
        let event_type = event_type.clone();
        self.write(move |conn| catalog::update(conn, &event_type))
            .await
    }

    async fn delete_event_type(&self, tenant: &str, name: &str) -> Result<bool, StoreError> {
        let (tenant, name) = (tenant.to_string(), name.to_string());
        self.write(move |conn| catalog::delete(conn, &tenant, &name))
            .await
    }

    async fn set_strict_event_types(&self, tenant: &str, strict: bool) -> Result<(), StoreError> {
        let tenant = tenant.to_string();
        self.write(move |conn| catalog::set_strict(conn, &tenant, strict))
            .await
    }

    async fn recover_deliveries(
        &self,
        request: &RecoverRequest,
    ) -> Result<RecoverBatch, StoreError> {
        let request = request.clone();
        self.write(move |conn| catalog::recover(conn, &request))
            .await
    }
    async fn staged_certificate(
        &self,
        tenant: &str,
        id: &str,
    ) -> Result<Option<StoredStagedCertificate>, StoreError> {
        let (tenant, id) = (tenant.to_string(), id.to_string());
        self.read(move |conn| staged::get(conn, &tenant, &id)).await
    }

    async fn put_staged_certificate(
        &self,
        record: &StoredStagedCertificate,
    ) -> Result<(), StoreError> {
        let record = record.clone();
        self.write(move |conn| staged::put(conn, &record)).await
    }

    async fn delete_staged_certificate(&self, tenant: &str, id: &str) -> Result<bool, StoreError> {
        let (tenant, id) = (tenant.to_string(), id.to_string());
        self.write(move |conn| staged::delete(conn, &tenant, &id))
            .await
    }

    async fn promote_staged_certificate(
        &self,
        tenant: &str,
        id: &str,
        now: i64,
    ) -> Result<bool, StoreError> {
        let (tenant, id) = (tenant.to_string(), id.to_string());
        self.write(move |conn| staged::promote(conn, &tenant, &id, now))
            .await
    }

    async fn log_events(&self, query: &LogQuery) -> Result<LogPage, StoreError> {
        let query = query.clone();
        self.read(move |conn| log::log_events(conn, &query)).await
    }

    async fn event_history(&self, tenant: &str, event: &str) -> Result<EventHistory, StoreError> {
        let (tenant, event) = (tenant.to_string(), event.to_string());
        self.read(move |conn| log::event_history(conn, &tenant, &event))
            .await
    }
}

#[cfg(test)]
mod tests;
