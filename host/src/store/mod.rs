//! Durable state in one SQLite file (WAL): tenants, endpoints, events, deliveries, attempts,
//! idempotency keys, signing keys and client certificates.
//!
//! The store is a narrow facade so that another backend (PostgreSQL, with
//! `FOR UPDATE SKIP LOCKED` leasing for several hosts) can replace it:
//! - every write goes through the one [`writer::Writer`] thread, which commits in groups;
//! - reads use a small pool of read-only connections on blocking threads;
//! - tenants and endpoints are also kept in memory ([`Directory`]), updated after each commit, so
//!   the hot path (authenticating a call, fanning an event out) reads no database.
//!
//! One process owns a data directory at a time (an exclusive lock on `<data_dir>/lock`). When it
//! dies, even by `kill -9`, the operating system releases the lock, and the next process takes
//! over every delivery still pending: that is the lease of a crashed process expiring.

mod schema;
pub mod writer;

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use rusqlite::{Connection, OpenFlags, OptionalExtension, params};

use crate::config::Synchronous;
use crate::model::{
    Attempt, Delivery, DeliveryStatus, Endpoint, EndpointSpec, EventSummary, Tenant, now_millis,
    now_unix,
};
pub use writer::{Writer, WriterThread};

/// Why a store operation failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// SQLite refused an operation.
    #[error("database error: {0}")]
    Sqlite(String),
    /// A batch could not be committed; none of its writes happened.
    #[error("database commit failed: {0}")]
    Commit(String),
    /// The writer thread has stopped (shutting down).
    #[error("the store is shutting down")]
    WriterGone,
    /// A migration failed or the schema is newer than this binary.
    #[error("database schema: {0}")]
    Schema(String),
    /// The database could not be opened.
    #[error("cannot open database {path}: {reason}")]
    Open {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// Another process owns the data directory.
    #[error(
        "data directory {0} is in use by another wasmhook process (lock held on its `lock` file)"
    )]
    Locked(PathBuf),
    /// The thing asked for does not exist (or belongs to another tenant).
    #[error("{what} `{id}` not found")]
    NotFound {
        /// Kind of thing.
        what: &'static str,
        /// Its id.
        id: String,
    },
    /// The request conflicts with the current state.
    #[error("{0}")]
    Conflict(String),
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Sqlite(e.to_string())
    }
}

/// A delivery the dispatcher should attempt at `due_ms`.
#[derive(Debug, Clone)]
pub struct PendingDelivery {
    /// `dlv_…`.
    pub delivery_id: String,
    /// The event; also the `webhook-id`.
    pub event_id: String,
    /// The event's type.
    pub event_type: String,
    /// The endpoint.
    pub endpoint_id: String,
    /// The tenant.
    pub tenant_id: String,
    /// Attempts made so far.
    pub attempts: u32,
    /// Attempts made before the current round (a replay starts a new round).
    pub round_start: u32,
    /// Unix milliseconds of the next attempt.
    pub due_ms: i64,
    /// The JSON envelope.
    pub body: Arc<[u8]>,
}

/// An event to insert with its deliveries.
#[derive(Debug, Clone)]
pub struct NewEvent {
    /// `msg_…`.
    pub id: String,
    /// Event type.
    pub event_type: String,
    /// Unix seconds.
    pub created_at: i64,
    /// The JSON envelope, delivered as is.
    pub body: Arc<[u8]>,
    /// Endpoints that get a delivery.
    pub endpoint_ids: Vec<String>,
}

/// Result of an ingest.
#[derive(Debug)]
pub enum IngestOutcome {
    /// Stored now: the answer, and the deliveries to schedule.
    Created {
        /// The API's answer, also stored under the idempotency key.
        response: serde_json::Value,
        /// New deliveries.
        deliveries: Vec<PendingDelivery>,
    },
    /// The idempotency key was seen before: the first answer.
    Replayed(serde_json::Value),
}

/// The outcome of one attempt, to record.
#[derive(Debug, Clone)]
pub struct AttemptRecord {
    /// The delivery.
    pub delivery_id: String,
    /// Attempt number (1-based).
    pub attempt: u32,
    /// Unix milliseconds.
    pub started_at_ms: i64,
    /// HTTP status, if any.
    pub status_code: Option<u16>,
    /// Duration.
    pub latency_ms: u64,
    /// Error text, if it failed.
    pub error: Option<String>,
    /// First bytes of the response.
    pub response_snippet: Option<String>,
    /// The delivery's state after this attempt.
    pub new_status: DeliveryStatus,
    /// When pending: the next attempt.
    pub next_attempt_at: Option<i64>,
}

/// A stored JWS signing key (private part included: for the host's own use only).
#[derive(Clone)]
pub struct StoredSigningKey {
    /// Key id.
    pub kid: String,
    /// JOSE algorithm name.
    pub alg: String,
    /// PKCS#8 PEM.
    pub private_key_pem: String,
    /// Self-signed certificate PEM.
    pub certificate_pem: String,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds when a newer key took over.
    pub retired_at: Option<i64>,
}

/// A stored client certificate record (private part included: for the host's own use only).
#[derive(Clone)]
pub struct StoredClientCertificate {
    /// `cc_…`.
    pub id: String,
    /// Owner.
    pub tenant_id: String,
    /// Name given by the tenant.
    pub name: String,
    /// The key; never leaves the host.
    pub private_key_pem: String,
    /// The CSR, when the key was generated here.
    pub csr_pem: Option<String>,
    /// The signed certificate (chain), once uploaded.
    pub certificate_pem: Option<String>,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds.
    pub updated_at: i64,
}

/// In-memory copy of tenants and endpoints, updated after each committed change.
#[derive(Default)]
pub struct Directory {
    tenants: HashMap<String, Tenant>,
    tenant_by_token_hash: HashMap<String, String>,
    endpoints: HashMap<String, Arc<Endpoint>>,
    /// Each tenant's endpoints, oldest first (the same `Arc`s as in `endpoints`): an event's
    /// fan-out walks this list without a lookup per endpoint.
    endpoints_by_tenant: HashMap<String, Vec<Arc<Endpoint>>>,
}

impl Directory {
    /// The tenant, if it exists.
    pub fn tenant(&self, id: &str) -> Option<&Tenant> {
        self.tenants.get(id)
    }

    /// The tenant whose token hashes to `hash`.
    pub fn tenant_by_token_hash(&self, hash: &str) -> Option<&Tenant> {
        self.tenant_by_token_hash
            .get(hash)
            .and_then(|id| self.tenants.get(id))
    }

    /// Every tenant, by id.
    pub fn tenants(&self) -> Vec<Tenant> {
        let mut all: Vec<Tenant> = self.tenants.values().cloned().collect();
        all.sort_by(|a, b| a.id.cmp(&b.id));
        all
    }

    /// The endpoint, if it exists.
    pub fn endpoint(&self, id: &str) -> Option<Arc<Endpoint>> {
        self.endpoints.get(id).cloned()
    }

    /// The tenant's endpoints, oldest first.
    pub fn endpoints_of(&self, tenant: &str) -> Vec<Arc<Endpoint>> {
        self.endpoints_by_tenant
            .get(tenant)
            .cloned()
            .unwrap_or_default()
    }

    /// Ids of the tenant's endpoints subscribed to `event_type`, oldest first.
    pub fn subscribers(&self, tenant: &str, event_type: &str) -> Vec<String> {
        self.endpoints_by_tenant
            .get(tenant)
            .map(|endpoints| {
                endpoints
                    .iter()
                    .filter(|e| e.subscribes_to(event_type))
                    .map(|e| e.id.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    fn put_tenant(&mut self, tenant: Tenant, token_hash: String) {
        self.tenant_by_token_hash
            .insert(token_hash, tenant.id.clone());
        self.tenants.insert(tenant.id.clone(), tenant);
    }

    fn remove_tenant(&mut self, id: &str) {
        self.tenants.remove(id);
        self.tenant_by_token_hash.retain(|_, tenant| tenant != id);
        for endpoint in self.endpoints_by_tenant.remove(id).unwrap_or_default() {
            self.endpoints.remove(&endpoint.id);
        }
    }

    fn put_endpoint(&mut self, endpoint: Endpoint) {
        let endpoint = Arc::new(endpoint);
        let list = self
            .endpoints_by_tenant
            .entry(endpoint.tenant_id.clone())
            .or_default();
        match list.iter_mut().find(|e| e.id == endpoint.id) {
            Some(slot) => *slot = endpoint.clone(),
            None => list.push(endpoint.clone()),
        }
        self.endpoints.insert(endpoint.id.clone(), endpoint);
    }

    fn remove_endpoint(&mut self, tenant: &str, id: &str) {
        self.endpoints.remove(id);
        if let Some(list) = self.endpoints_by_tenant.get_mut(tenant) {
            list.retain(|e| e.id != id);
        }
    }
}

/// The store: writer, readers and directory.
pub struct Store {
    writer: Writer,
    _writer_thread: WriterThread,
    readers: Mutex<Vec<Connection>>,
    path: PathBuf,
    directory: RwLock<Directory>,
    _lock: File,
}

fn open_connection(
    path: &Path,
    flags: OpenFlags,
    synchronous: Synchronous,
) -> Result<Connection, StoreError> {
    let conn = Connection::open_with_flags(path, flags).map_err(|e| StoreError::Open {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    conn.pragma_update(None, "foreign_keys", true)?;
    conn.pragma_update(
        None,
        "synchronous",
        match synchronous {
            Synchronous::Full => "FULL",
            Synchronous::Normal => "NORMAL",
        },
    )?;
    Ok(conn)
}

impl Store {
    /// Opens (creating if needed) the database in `data_dir`, takes the directory's lock, runs
    /// migrations and loads the directory.
    pub fn open(
        data_dir: &Path,
        max_batch: usize,
        synchronous: Synchronous,
    ) -> Result<Arc<Self>, StoreError> {
        std::fs::create_dir_all(data_dir).map_err(|e| StoreError::Open {
            path: data_dir.to_path_buf(),
            reason: e.to_string(),
        })?;
        let lock = File::create(data_dir.join("lock")).map_err(|e| StoreError::Open {
            path: data_dir.join("lock"),
            reason: e.to_string(),
        })?;
        if lock.try_lock().is_err() {
            return Err(StoreError::Locked(data_dir.to_path_buf()));
        }
        let path = data_dir.join("wasmhook.sqlite3");
        let mut conn = open_connection(&path, OpenFlags::default(), synchronous)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        schema::migrate(&mut conn)?;
        let directory = load_directory(&conn)?;
        // WAL checkpoints stay SQLite's automatic ones, inside the writer's commit: a checkpoint
        // thread of its own (PASSIVE every 250 ms) was measured and made ingest p99 at 5,000/s
        // worse, 2.4 -> 41 ms, as its database fsyncs queued the writer's WAL fsyncs behind them.
        // Room for every statement the writer runs (its own BEGIN/SAVEPOINT/... included).
        conn.set_prepared_statement_cache_capacity(64);
        let (writer, writer_thread) = Writer::start(conn, max_batch);
        Ok(Arc::new(Self {
            writer,
            _writer_thread: writer_thread,
            readers: Mutex::new(Vec::new()),
            path,
            directory: RwLock::new(directory),
            _lock: lock,
        }))
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The writer (for its statistics).
    pub fn writer(&self) -> &Writer {
        &self.writer
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

    /// Waits until every write queued so far is committed (the writer is FIFO: a no-op queued
    /// now commits after all of them).
    pub async fn flush(&self) -> Result<(), StoreError> {
        self.writer.write(|_| Ok(())).await
    }

    /// Runs `op` on a pooled read-only connection on a blocking thread.
    pub async fn read<T, F>(self: &Arc<Self>, op: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let store = self.clone();
        tokio::task::spawn_blocking(move || {
            let pooled = store.readers.lock().ok().and_then(|mut pool| pool.pop());
            let conn = match pooled {
                Some(conn) => conn,
                None => open_connection(
                    &store.path,
                    OpenFlags::SQLITE_OPEN_READ_ONLY,
                    Synchronous::Normal,
                )?,
            };
            let result = op(&conn);
            if let Ok(mut pool) = store.readers.lock()
                && pool.len() < 8
            {
                pool.push(conn);
            }
            result
        })
        .await
        .map_err(|e| StoreError::Sqlite(format!("read task failed: {e}")))?
    }

    // ---- tenants -------------------------------------------------------------------------

    /// Creates a tenant whose token hashes to `token_hash`.
    pub async fn create_tenant(
        &self,
        tenant: Tenant,
        token_hash: String,
    ) -> Result<Tenant, StoreError> {
        let (t, h) = (tenant.clone(), token_hash.clone());
        self.writer
            .write(move |conn| {
                let exists: bool =
                    conn.query_row("SELECT EXISTS(SELECT 1 FROM tenants WHERE id = ?1)", [&t.id], |r| r.get(0))?;
                if exists {
                    return Err(StoreError::Conflict(format!("tenant `{}` already exists", t.id)));
                }
                conn.execute(
                    "INSERT INTO tenants (id, name, token_hash, created_at) VALUES (?1, ?2, ?3, ?4)",
                    params![t.id, t.name, h, t.created_at],
                )?;
                Ok(())
            })
            .await?;
        self.directory_mut().put_tenant(tenant.clone(), token_hash);
        Ok(tenant)
    }

    /// Deletes a tenant and everything it owns.
    pub async fn delete_tenant(&self, id: &str) -> Result<bool, StoreError> {
        let id_owned = id.to_string();
        let deleted = self
            .writer
            .write(move |conn| {
                Ok(conn.execute("DELETE FROM tenants WHERE id = ?1", [&id_owned])? > 0)
            })
            .await?;
        self.directory_mut().remove_tenant(id);
        Ok(deleted)
    }

    // ---- endpoints -----------------------------------------------------------------------

    /// Inserts or replaces an endpoint.
    pub async fn put_endpoint(&self, endpoint: Endpoint) -> Result<Arc<Endpoint>, StoreError> {
        let e = endpoint.clone();
        let spec =
            serde_json::to_string(&e.spec).map_err(|err| StoreError::Sqlite(err.to_string()))?;
        self.writer
            .write(move |conn| {
                conn.execute(
                    "INSERT INTO endpoints (id, tenant_id, spec, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT(id) DO UPDATE SET spec = excluded.spec, updated_at = excluded.updated_at",
                    params![e.id, e.tenant_id, spec, e.created_at, e.updated_at],
                )?;
                Ok(())
            })
            .await?;
        let mut directory = self.directory_mut();
        directory.put_endpoint(endpoint.clone());
        Ok(directory
            .endpoint(&endpoint.id)
            .unwrap_or_else(|| Arc::new(endpoint)))
    }

    /// Deletes an endpoint; its pending deliveries become dead when they come due.
    pub async fn delete_endpoint(&self, tenant: &str, id: &str) -> Result<bool, StoreError> {
        let (t, i) = (tenant.to_string(), id.to_string());
        let deleted = self
            .writer
            .write(move |conn| {
                let n = conn.execute("DELETE FROM endpoints WHERE id = ?1 AND tenant_id = ?2", [&i, &t])?;
                conn.execute(
                    "UPDATE deliveries SET status = 'dead', next_attempt_at = NULL, last_error = 'endpoint was deleted', updated_at = ?2
                     WHERE endpoint_id = ?1 AND status = 'pending'",
                    params![i, now_unix()],
                )?;
                Ok(n > 0)
            })
            .await?;
        self.directory_mut().remove_endpoint(tenant, id);
        Ok(deleted)
    }

    // ---- events --------------------------------------------------------------------------

    /// Stores events and their deliveries in one transaction, honouring the idempotency key.
    pub async fn ingest(
        &self,
        tenant: &str,
        events: Vec<NewEvent>,
        idempotency_key: Option<String>,
        response: serde_json::Value,
    ) -> Result<IngestOutcome, StoreError> {
        let tenant = tenant.to_string();
        self.writer
            .write(move |conn| {
                if let Some(key) = &idempotency_key {
                    let previous: Option<String> = conn
                        .query_row(
                            "SELECT response FROM idempotency_keys WHERE tenant_id = ?1 AND key = ?2",
                            [&tenant, key],
                            |r| r.get(0),
                        )
                        .optional()?;
                    if let Some(previous) = previous {
                        let value = serde_json::from_str(&previous).unwrap_or(serde_json::Value::Null);
                        return Ok(IngestOutcome::Replayed(value));
                    }
                }
                let now_s = now_unix();
                let now_ms = now_millis();
                let mut deliveries = Vec::new();
                {
                    let mut insert_event = conn.prepare_cached(
                        "INSERT INTO events (id, tenant_id, type, body, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                    )?;
                    let mut insert_delivery = conn.prepare_cached(
                        "INSERT INTO deliveries (id, event_id, endpoint_id, tenant_id, status, attempts, next_attempt_at, updated_at)
                         VALUES (?1, ?2, ?3, ?4, 'pending', 0, ?5, ?6)",
                    )?;
                    for event in &events {
                        insert_event.execute(params![
                            event.id,
                            tenant,
                            event.event_type,
                            &event.body[..],
                            event.created_at
                        ])?;
                        for endpoint in &event.endpoint_ids {
                            let id = crate::model::new_id("dlv");
                            insert_delivery.execute(params![id, event.id, endpoint, tenant, now_ms, now_s])?;
                            deliveries.push(PendingDelivery {
                                delivery_id: id,
                                event_id: event.id.clone(),
                                event_type: event.event_type.clone(),
                                endpoint_id: endpoint.clone(),
                                tenant_id: tenant.clone(),
                                attempts: 0,
                                round_start: 0,
                                due_ms: now_ms,
                                body: event.body.clone(),
                            });
                        }
                    }
                }
                if let Some(key) = &idempotency_key {
                    conn.execute(
                        "INSERT INTO idempotency_keys (tenant_id, key, response, created_at) VALUES (?1, ?2, ?3, ?4)",
                        params![tenant, key, response.to_string(), now_s],
                    )?;
                }
                Ok(IngestOutcome::Created { response, deliveries })
            })
            .await
    }

    /// Records an attempt and the delivery's new state. Does not wait for the commit: `done`
    /// gets the result.
    pub fn record_attempt(
        &self,
        record: AttemptRecord,
        done: impl FnOnce(Result<(), StoreError>) + Send + 'static,
    ) -> Result<(), StoreError> {
        self.writer.submit(
            move |conn| {
                let outcome = match record.new_status {
                    DeliveryStatus::Delivered => "success",
                    DeliveryStatus::Pending => "failure",
                    DeliveryStatus::Dead => "dead",
                };
                conn.prepare_cached(
                    "INSERT OR REPLACE INTO attempts (delivery_id, attempt, started_at, status_code, latency_ms, outcome, error, response_snippet)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                )?
                .execute(params![
                    record.delivery_id,
                    record.attempt,
                    record.started_at_ms,
                    record.status_code,
                    record.latency_ms as i64,
                    outcome,
                    record.error,
                    record.response_snippet
                ])?;
                conn.prepare_cached(
                    "UPDATE deliveries SET status = ?2, attempts = ?3, next_attempt_at = ?4, last_status = ?5, last_error = ?6, updated_at = ?7
                     WHERE id = ?1",
                )?
                .execute(params![
                    record.delivery_id,
                    record.new_status.as_str(),
                    record.attempt,
                    record.next_attempt_at,
                    record.status_code,
                    record.error,
                    now_unix()
                ])?;
                Ok(())
            },
            done,
        )
    }

    /// Marks a delivery dead without an attempt (its endpoint is gone or disabled).
    pub fn mark_dead(&self, delivery_id: &str, reason: &str) {
        let (id, reason) = (delivery_id.to_string(), reason.to_string());
        let _ = self.writer.submit(
            move |conn| {
                conn.execute(
                    "UPDATE deliveries SET status = 'dead', next_attempt_at = NULL, last_error = ?2, updated_at = ?3 WHERE id = ?1",
                    params![id, reason, now_unix()],
                )?;
                Ok(())
            },
            |result: Result<(), StoreError>| {
                if let Err(e) = result {
                    tracing::error!(error = %e, "could not mark a delivery dead");
                }
            },
        );
    }

    /// Puts a delivered or dead delivery back in the queue (replay), starting a new retry round.
    pub async fn requeue(
        &self,
        tenant: &str,
        event: &str,
        delivery: &str,
    ) -> Result<PendingDelivery, StoreError> {
        let (t, e, d) = (tenant.to_string(), event.to_string(), delivery.to_string());
        self.writer
            .write(move |conn| {
                let row = conn
                    .query_row(
                        "SELECT d.status, d.attempts, d.endpoint_id, ev.type, ev.body FROM deliveries d JOIN events ev ON ev.id = d.event_id
                         WHERE d.id = ?1 AND d.event_id = ?2 AND d.tenant_id = ?3",
                        [&d, &e, &t],
                        |r| {
                            Ok((
                                r.get::<_, String>(0)?,
                                r.get::<_, u32>(1)?,
                                r.get::<_, String>(2)?,
                                r.get::<_, String>(3)?,
                                r.get::<_, Vec<u8>>(4)?,
                            ))
                        },
                    )
                    .optional()?;
                let Some((status, attempts, endpoint_id, event_type, body)) = row else {
                    return Err(StoreError::NotFound { what: "delivery", id: d });
                };
                if status == "pending" {
                    return Err(StoreError::Conflict(format!(
                        "delivery `{d}` is still pending; only delivered or dead deliveries can be replayed"
                    )));
                }
                let now_ms = now_millis();
                conn.execute(
                    "UPDATE deliveries SET status = 'pending', round_start = attempts, next_attempt_at = ?2, updated_at = ?3 WHERE id = ?1",
                    params![d, now_ms, now_unix()],
                )?;
                Ok(PendingDelivery {
                    delivery_id: d,
                    event_id: e,
                    event_type,
                    endpoint_id,
                    tenant_id: t,
                    attempts,
                    round_start: attempts,
                    due_ms: now_ms,
                    body: body.into(),
                })
            })
            .await
    }

    /// Every pending delivery (at start-up: what a previous process left).
    pub async fn pending_deliveries(self: &Arc<Self>) -> Result<Vec<PendingDelivery>, StoreError> {
        self.read(|conn| {
            let mut stmt = conn.prepare(
                "SELECT d.id, d.event_id, ev.type, d.endpoint_id, d.tenant_id, d.attempts, d.round_start, d.next_attempt_at, ev.body
                 FROM deliveries d JOIN events ev ON ev.id = d.event_id WHERE d.status = 'pending'",
            )?;
            let rows = stmt.query_map([], |r| {
                Ok(PendingDelivery {
                    delivery_id: r.get(0)?,
                    event_id: r.get(1)?,
                    event_type: r.get(2)?,
                    endpoint_id: r.get(3)?,
                    tenant_id: r.get(4)?,
                    attempts: r.get(5)?,
                    round_start: r.get(6)?,
                    due_ms: r.get::<_, Option<i64>>(7)?.unwrap_or(0),
                    body: r.get::<_, Vec<u8>>(8)?.into(),
                })
            })?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    /// One event of a tenant.
    pub async fn event(
        self: &Arc<Self>,
        tenant: &str,
        event: &str,
    ) -> Result<EventSummary, StoreError> {
        let (t, e) = (tenant.to_string(), event.to_string());
        self.read(move |conn| {
            conn.query_row(
                "SELECT id, type, created_at, body FROM events WHERE id = ?1 AND tenant_id = ?2",
                [&e, &t],
                |r| {
                    let body: Vec<u8> = r.get(3)?;
                    Ok(EventSummary {
                        id: r.get(0)?,
                        event_type: r.get(1)?,
                        created_at: r.get(2)?,
                        envelope: serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
                    })
                },
            )
            .optional()?
            .ok_or(StoreError::NotFound {
                what: "event",
                id: e,
            })
        })
        .await
    }

    /// The deliveries of one event of a tenant.
    pub async fn deliveries_of_event(
        self: &Arc<Self>,
        tenant: &str,
        event: &str,
    ) -> Result<Vec<Delivery>, StoreError> {
        let (t, e) = (tenant.to_string(), event.to_string());
        self.read(move |conn| {
            let exists: bool = conn.query_row(
                "SELECT EXISTS(SELECT 1 FROM events WHERE id = ?1 AND tenant_id = ?2)",
                [&e, &t],
                |r| r.get(0),
            )?;
            if !exists {
                return Err(StoreError::NotFound { what: "event", id: e });
            }
            let mut stmt = conn.prepare(
                "SELECT id, event_id, endpoint_id, status, attempts, next_attempt_at, last_status, last_error, updated_at
                 FROM deliveries WHERE event_id = ?1 AND tenant_id = ?2 ORDER BY id",
            )?;
            let rows = stmt.query_map([&e, &t], |r| {
                Ok(Delivery {
                    id: r.get(0)?,
                    event_id: r.get(1)?,
                    endpoint_id: r.get(2)?,
                    status: DeliveryStatus::parse(&r.get::<_, String>(3)?).unwrap_or(DeliveryStatus::Pending),
                    attempts: r.get(4)?,
                    next_attempt_at: r.get(5)?,
                    last_status_code: r.get(6)?,
                    last_error: r.get(7)?,
                    updated_at: r.get(8)?,
                })
            })?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    /// The attempts of one delivery of a tenant's event.
    pub async fn attempts_of_delivery(
        self: &Arc<Self>,
        tenant: &str,
        event: &str,
        delivery: &str,
    ) -> Result<Vec<Attempt>, StoreError> {
        let (t, e, d) = (tenant.to_string(), event.to_string(), delivery.to_string());
        self.read(move |conn| {
            let exists: bool = conn.query_row(
                "SELECT EXISTS(SELECT 1 FROM deliveries WHERE id = ?1 AND event_id = ?2 AND tenant_id = ?3)",
                [&d, &e, &t],
                |r| r.get(0),
            )?;
            if !exists {
                return Err(StoreError::NotFound { what: "delivery", id: d });
            }
            let mut stmt = conn.prepare(
                "SELECT attempt, started_at, status_code, latency_ms, outcome, error, response_snippet
                 FROM attempts WHERE delivery_id = ?1 ORDER BY attempt",
            )?;
            let rows = stmt.query_map([&d], |r| {
                Ok(Attempt {
                    attempt: r.get(0)?,
                    started_at: r.get(1)?,
                    status_code: r.get(2)?,
                    latency_ms: r.get::<_, i64>(3)?.max(0) as u64,
                    outcome: r.get(4)?,
                    error: r.get(5)?,
                    response_snippet: r.get(6)?,
                })
            })?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    /// Deliveries waiting, by tenant-independent count (for `/metrics`).
    pub async fn count_pending(self: &Arc<Self>) -> Result<u64, StoreError> {
        let count: i64 = self
            .read(|conn| {
                Ok(conn.query_row(
                    "SELECT COUNT(*) FROM deliveries WHERE status = 'pending'",
                    [],
                    |r| r.get(0),
                )?)
            })
            .await?;
        Ok(count.max(0) as u64)
    }

    // ---- signing keys --------------------------------------------------------------------

    /// Every signing key, oldest first.
    pub async fn signing_keys(self: &Arc<Self>) -> Result<Vec<StoredSigningKey>, StoreError> {
        self.read(|conn| {
            let mut stmt = conn.prepare(
                "SELECT kid, alg, private_key_pem, certificate_pem, created_at, retired_at FROM signing_keys ORDER BY created_at, kid",
            )?;
            let rows = stmt.query_map([], |r| {
                Ok(StoredSigningKey {
                    kid: r.get(0)?,
                    alg: r.get(1)?,
                    private_key_pem: r.get(2)?,
                    certificate_pem: r.get(3)?,
                    created_at: r.get(4)?,
                    retired_at: r.get(5)?,
                })
            })?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    /// Adds `key` as the current key for its algorithm, retiring the previous one.
    pub async fn add_signing_key(&self, key: StoredSigningKey) -> Result<(), StoreError> {
        self.writer
            .write(move |conn| {
                conn.execute(
                    "UPDATE signing_keys SET retired_at = ?2 WHERE alg = ?1 AND retired_at IS NULL",
                    params![key.alg, key.created_at],
                )?;
                conn.execute(
                    "INSERT INTO signing_keys (kid, alg, private_key_pem, certificate_pem, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![key.kid, key.alg, key.private_key_pem, key.certificate_pem, key.created_at],
                )?;
                Ok(())
            })
            .await
    }

    /// Deletes retired keys retired before `cutoff` (unix seconds).
    pub async fn prune_signing_keys(&self, cutoff: i64) -> Result<usize, StoreError> {
        self.writer
            .write(move |conn| {
                Ok(conn.execute(
                    "DELETE FROM signing_keys WHERE retired_at IS NOT NULL AND retired_at < ?1",
                    [cutoff],
                )?)
            })
            .await
    }

    // ---- client certificates -------------------------------------------------------------

    /// Inserts or replaces a client certificate record.
    pub async fn put_client_certificate(
        &self,
        record: StoredClientCertificate,
    ) -> Result<(), StoreError> {
        self.writer
            .write(move |conn| {
                conn.execute(
                    "INSERT INTO client_certificates (id, tenant_id, name, private_key_pem, csr_pem, certificate_pem, created_at, updated_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                     ON CONFLICT(id) DO UPDATE SET private_key_pem = excluded.private_key_pem, csr_pem = excluded.csr_pem,
                       certificate_pem = excluded.certificate_pem, name = excluded.name, updated_at = excluded.updated_at",
                    params![
                        record.id,
                        record.tenant_id,
                        record.name,
                        record.private_key_pem,
                        record.csr_pem,
                        record.certificate_pem,
                        record.created_at,
                        record.updated_at
                    ],
                )?;
                Ok(())
            })
            .await
    }

    /// The tenant's client certificate records.
    pub async fn client_certificates(
        self: &Arc<Self>,
        tenant: &str,
    ) -> Result<Vec<StoredClientCertificate>, StoreError> {
        let t = tenant.to_string();
        self.read(move |conn| {
            let mut stmt = conn.prepare(
                "SELECT id, tenant_id, name, private_key_pem, csr_pem, certificate_pem, created_at, updated_at
                 FROM client_certificates WHERE tenant_id = ?1 ORDER BY created_at, id",
            )?;
            let rows = stmt.query_map([&t], client_certificate_row)?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    /// One client certificate record of a tenant.
    pub async fn client_certificate(
        self: &Arc<Self>,
        tenant: &str,
        id: &str,
    ) -> Result<StoredClientCertificate, StoreError> {
        let (t, i) = (tenant.to_string(), id.to_string());
        self.read(move |conn| {
            conn.query_row(
                "SELECT id, tenant_id, name, private_key_pem, csr_pem, certificate_pem, created_at, updated_at
                 FROM client_certificates WHERE tenant_id = ?1 AND id = ?2",
                [&t, &i],
                client_certificate_row,
            )
            .optional()?
            .ok_or(StoreError::NotFound { what: "client certificate", id: i })
        })
        .await
    }

    /// Deletes a client certificate record.
    pub async fn delete_client_certificate(
        &self,
        tenant: &str,
        id: &str,
    ) -> Result<bool, StoreError> {
        let (t, i) = (tenant.to_string(), id.to_string());
        self.writer
            .write(move |conn| {
                Ok(conn.execute(
                    "DELETE FROM client_certificates WHERE tenant_id = ?1 AND id = ?2",
                    [&t, &i],
                )? > 0)
            })
            .await
    }
}

fn client_certificate_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<StoredClientCertificate> {
    Ok(StoredClientCertificate {
        id: r.get(0)?,
        tenant_id: r.get(1)?,
        name: r.get(2)?,
        private_key_pem: r.get(3)?,
        csr_pem: r.get(4)?,
        certificate_pem: r.get(5)?,
        created_at: r.get(6)?,
        updated_at: r.get(7)?,
    })
}

fn load_directory(conn: &Connection) -> Result<Directory, StoreError> {
    let mut directory = Directory::default();
    let mut stmt = conn.prepare("SELECT id, name, token_hash, created_at FROM tenants")?;
    let tenants = stmt.query_map([], |r| {
        Ok((
            Tenant {
                id: r.get(0)?,
                name: r.get(1)?,
                created_at: r.get(3)?,
            },
            r.get::<_, String>(2)?,
        ))
    })?;
    for row in tenants {
        let (tenant, hash) = row?;
        directory.put_tenant(tenant, hash);
    }
    let mut stmt = conn.prepare(
        "SELECT id, tenant_id, spec, created_at, updated_at FROM endpoints ORDER BY created_at, id",
    )?;
    let endpoints = stmt.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
            r.get(3)?,
            r.get(4)?,
        ))
    })?;
    for row in endpoints {
        let (id, tenant_id, spec, created_at, updated_at) = row?;
        let spec: EndpointSpec = serde_json::from_str(&spec).map_err(|e| {
            StoreError::Schema(format!("endpoint `{id}` has an unreadable spec: {e}"))
        })?;
        directory.put_endpoint(Endpoint {
            id,
            tenant_id,
            spec,
            created_at,
            updated_at,
        });
    }
    Ok(directory)
}
