//! Tests of the SQLite backend through the [`Backend`] interface (the database is inspected
//! directly only to see lease columns the interface does not expose).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::*;
use crate::model::{DeliveryStatus, EndpointSpec, now_millis};
use crate::store::NewEvent;

const HOUR_MS: i64 = 3_600_000;

struct Fixture {
    dir: tempfile::TempDir,
    backend: SqliteBackend,
}

impl Fixture {
    async fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let backend = open(dir.path()).unwrap();
        backend
            .create_tenant(
                &Tenant {
                    id: "acme".into(),
                    name: "Acme".into(),
                    created_at: 1,
                },
                "hash-acme",
            )
            .await
            .unwrap();
        Self { dir, backend }
    }

    fn db(&self) -> PathBuf {
        db_path(self.dir.path())
    }

    fn reopen(self) -> Self {
        let Fixture { dir, backend } = self;
        drop(backend);
        let backend = open(dir.path()).unwrap();
        Self { dir, backend }
    }

    /// Ingests one event per entry of `fanouts`, each to that many endpoints, leasing the first
    /// `claim` deliveries to `owner`.
    async fn ingest(&self, fanouts: &[usize], claim: usize, owner: &str) -> IngestOutcome {
        self.ingest_keyed(fanouts, claim, owner, None).await
    }

    async fn ingest_keyed(
        &self,
        fanouts: &[usize],
        claim: usize,
        owner: &str,
        key: Option<&str>,
    ) -> IngestOutcome {
        let events = fanouts
            .iter()
            .map(|&n| NewEvent {
                id: crate::model::new_id("msg"),
                event_type: "invoice.paid".into(),
                created_at: 1,
                body: Arc::from(&b"{\"hello\":1}"[..]),
                endpoint_ids: (0..n).map(|i| format!("ep_{i}")).collect(),
                held_endpoint_ids: Vec::new(),
            })
            .collect();
        self.backend
            .ingest(IngestRequest {
                tenant: "acme".into(),
                events,
                idempotency_key: key.map(str::to_string),
                response: serde_json::json!({"ok": true}),
                lease: lease(owner, now_millis() + HOUR_MS),
                claim,
            })
            .await
            .unwrap()
    }

    async fn claim(&self, owner: &str, limit: usize, due_before_ms: i64) -> Vec<PendingDelivery> {
        self.claim_at(owner, limit, due_before_ms, now_millis())
            .await
    }

    async fn claim_at(
        &self,
        owner: &str,
        limit: usize,
        due_before_ms: i64,
        now_ms: i64,
    ) -> Vec<PendingDelivery> {
        self.backend
            .claim(&ClaimRequest {
                lease: lease(owner, now_ms + HOUR_MS),
                limit,
                due_before_ms,
                now_ms,
            })
            .await
            .unwrap()
    }

    /// `(lease_owner, lease_expires_at, status)` of a delivery, read from the file.
    fn lease_of(&self, delivery: &str) -> (Option<String>, Option<i64>, String) {
        rusqlite::Connection::open(self.db())
            .unwrap()
            .query_row(
                "SELECT lease_owner, lease_expires_at, status FROM deliveries WHERE id = ?1",
                [delivery],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .unwrap()
    }

    async fn record(&self, record: AttemptRecord) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.backend.record_attempt(
            record,
            Box::new(move |result| {
                let _ = tx.send(result);
            }),
        );
        rx.await.unwrap().unwrap();
    }
}

fn db_path(dir: &Path) -> PathBuf {
    dir.join("wasmhook.sqlite3")
}

fn open(dir: &Path) -> Result<SqliteBackend, StoreError> {
    SqliteBackend::open(dir, &db_path(dir), 64, Synchronous::Normal)
}

fn lease(owner: &str, expires_at_ms: i64) -> Lease {
    Lease {
        owner: owner.into(),
        expires_at_ms,
    }
}

fn created(outcome: IngestOutcome) -> (Vec<PendingDelivery>, usize) {
    match outcome {
        IngestOutcome::Created {
            claimed, unclaimed, ..
        } => (claimed, unclaimed),
        IngestOutcome::Replayed(_) => panic!("unexpected replay"),
    }
}

fn attempt(delivery: &str, status: DeliveryStatus, next: Option<i64>, keep: bool) -> AttemptRecord {
    AttemptRecord {
        delivery_id: delivery.into(),
        attempt: 1,
        started_at_ms: now_millis(),
        status_code: Some(500),
        latency_ms: 3,
        error: Some("boom".into()),
        response_snippet: None,
        new_status: status,
        next_attempt_at: next,
        keep_lease: keep,
    }
}

fn ids(deliveries: &[PendingDelivery]) -> Vec<String> {
    deliveries.iter().map(|d| d.delivery_id.clone()).collect()
}

#[tokio::test]
async fn ingest_leases_the_first_deliveries_and_leaves_the_rest_claimable() {
    let f = Fixture::new().await;
    let (claimed, unclaimed) = created(f.ingest(&[3], 1, "node_a").await);
    assert_eq!(claimed.len(), 1);
    assert_eq!(unclaimed, 2);
    assert!(claimed[0].body.is_some());
    let (owner, expires, _) = f.lease_of(&claimed[0].delivery_id);
    assert_eq!(owner.as_deref(), Some("node_a"));
    assert!(expires.is_some());

    let taken = f.claim("node_b", 10, now_millis() + 1_000).await;
    assert_eq!(taken.len(), 2);
    assert!(!ids(&taken).contains(&claimed[0].delivery_id));
    assert!(
        taken
            .iter()
            .all(|d| d.body.is_none() && d.event_type == "invoice.paid")
    );
    assert!(f.claim("node_c", 10, now_millis() + 1_000).await.is_empty());
    assert_eq!(f.backend.count_pending().await.unwrap(), 3);
}

#[tokio::test]
async fn ingest_claims_in_insertion_order_and_shares_each_events_body() {
    let f = Fixture::new().await;
    let (claimed, unclaimed) = created(f.ingest(&[2, 2], 3, "node_a").await);
    assert_eq!((claimed.len(), unclaimed), (3, 1));
    let first = claimed[0].body.as_ref().unwrap();
    assert!(Arc::ptr_eq(first, claimed[1].body.as_ref().unwrap()));
    assert!(!Arc::ptr_eq(first, claimed[2].body.as_ref().unwrap()));
    assert_eq!(claimed[0].event_id, claimed[1].event_id);
    assert_ne!(claimed[1].event_id, claimed[2].event_id);
    let body = f.backend.event_body(&claimed[2].event_id).await.unwrap();
    assert_eq!(body.as_deref(), Some(&b"{\"hello\":1}"[..]));
    assert_eq!(f.backend.event_body("msg_none").await.unwrap(), None);
}

#[tokio::test]
async fn claim_respects_limit_and_due_time_in_due_order() {
    let f = Fixture::new().await;
    let (_, unclaimed) = created(f.ingest(&[3], 0, "node_a").await);
    assert_eq!(unclaimed, 3);
    let now = now_millis();
    // Nothing is due before the ingest.
    assert!(f.claim("node_a", 10, now - HOUR_MS).await.is_empty());
    let all = f.claim("node_a", 10, now + 1_000).await;
    assert_eq!(all.len(), 3);
    // Push them to different due times (released to the store).
    let (a, b, c) = (
        &all[0].delivery_id,
        &all[1].delivery_id,
        &all[2].delivery_id,
    );
    f.record(attempt(
        a,
        DeliveryStatus::Pending,
        Some(now + 2_000),
        false,
    ))
    .await;
    f.record(attempt(
        b,
        DeliveryStatus::Pending,
        Some(now + 3_000),
        false,
    ))
    .await;
    f.record(attempt(
        c,
        DeliveryStatus::Pending,
        Some(now + 1_000),
        false,
    ))
    .await;

    let first = f.claim("node_b", 2, now + 10_000).await;
    assert_eq!(ids(&first), vec![c.clone(), a.clone()]);
    assert_eq!(first[0].due_ms, now + 1_000);
    assert_eq!(first[0].attempts, 1);
    // Only b is left, and only once it is due.
    assert!(f.claim("node_b", 10, now + 2_500).await.is_empty());
    assert_eq!(
        ids(&f.claim("node_c", 10, now + 3_000).await),
        vec![b.clone()]
    );
    assert!(f.claim("node_c", 10, now + 10_000).await.is_empty());
}

#[tokio::test]
async fn claim_uses_the_claimable_index() {
    let f = Fixture::new().await;
    let conn = rusqlite::Connection::open(f.db()).unwrap();
    let plan: Vec<String> = conn
        .prepare(
            "EXPLAIN QUERY PLAN SELECT d.id FROM deliveries d JOIN events ev ON ev.id = d.event_id
             WHERE d.status = 'pending' AND d.lease_owner IS NULL AND d.next_attempt_at <= 5
             ORDER BY d.next_attempt_at LIMIT 10",
        )
        .unwrap()
        .query_map([], |r| r.get(3))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert!(
        plan.iter()
            .any(|step| step.contains("deliveries_claimable")),
        "{plan:?}"
    );
}

#[tokio::test]
async fn an_expired_lease_is_taken_over_by_another_owners_claim() {
    let f = Fixture::new().await;
    let (claimed, _) = created(f.ingest(&[1], 1, "node_a").await);
    let id = &claimed[0].delivery_id;
    let (_, expires, _) = f.lease_of(id);
    let expires = expires.unwrap();
    let due = expires + HOUR_MS;
    // Still held at its expiry instant.
    assert!(f.claim_at("node_b", 10, due, expires).await.is_empty());
    let taken = f.claim_at("node_b", 10, due, expires + 1).await;
    assert_eq!(ids(&taken), vec![id.clone()]);
    assert_eq!(f.lease_of(id).0.as_deref(), Some("node_b"));
}

#[tokio::test]
async fn renew_extends_leases() {
    let f = Fixture::new().await;
    created(f.ingest(&[2], 2, "node_a").await);
    let now = now_millis();
    let far = now + 10 * HOUR_MS;
    assert_eq!(
        f.backend.renew_leases(&lease("node_a", far)).await.unwrap(),
        2
    );
    assert_eq!(
        f.backend.renew_leases(&lease("node_x", far)).await.unwrap(),
        0
    );
    // Past the original expiry, before the renewed one: nothing to take over.
    assert!(
        f.claim_at("node_b", 10, now + 20 * HOUR_MS, now + 2 * HOUR_MS)
            .await
            .is_empty()
    );
}

#[tokio::test]
async fn release_makes_rows_claimable() {
    let f = Fixture::new().await;
    let (claimed, _) = created(f.ingest(&[3], 3, "node_a").await);
    let due = now_millis() + 1_000;
    assert!(f.claim("node_b", 10, due).await.is_empty());
    let one = vec![claimed[0].delivery_id.clone()];
    assert_eq!(
        f.backend
            .release_leases("node_b", Some(&one))
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        f.backend
            .release_leases("node_a", Some(&one))
            .await
            .unwrap(),
        1
    );
    assert_eq!(ids(&f.claim("node_b", 10, due).await), one);
    assert_eq!(f.backend.release_leases("node_a", None).await.unwrap(), 2);
    assert_eq!(f.claim("node_c", 10, due).await.len(), 2);
}

#[tokio::test]
async fn record_attempt_keeps_the_lease_only_when_asked_and_still_pending() {
    let f = Fixture::new().await;
    let (claimed, _) = created(f.ingest(&[3], 3, "node_a").await);
    let next = Some(now_millis() + 1_000);
    let (kept, released, delivered) = (
        &claimed[0].delivery_id,
        &claimed[1].delivery_id,
        &claimed[2].delivery_id,
    );
    f.record(attempt(kept, DeliveryStatus::Pending, next, true))
        .await;
    f.record(attempt(released, DeliveryStatus::Pending, next, false))
        .await;
    f.record(attempt(delivered, DeliveryStatus::Delivered, None, true))
        .await;
    assert_eq!(f.lease_of(kept).0.as_deref(), Some("node_a"));
    assert_eq!(f.lease_of(released), (None, None, "pending".into()));
    assert_eq!(f.lease_of(delivered), (None, None, "delivered".into()));

    let attempts = f
        .backend
        .attempts_of_delivery("acme", &claimed[2].event_id, delivered)
        .await
        .unwrap();
    assert_eq!(attempts.len(), 1);
    assert_eq!(attempts[0].outcome, "success");
    let listed = f
        .backend
        .deliveries_of_event("acme", &claimed[0].event_id)
        .await
        .unwrap();
    assert_eq!(listed.len(), 3);
    assert_eq!(f.backend.count_pending().await.unwrap(), 2);
}

#[tokio::test]
async fn mark_dead_and_requeue_move_the_lease() {
    let f = Fixture::new().await;
    let (claimed, _) = created(f.ingest(&[1], 1, "node_a").await);
    let d = &claimed[0];
    let pending = f
        .backend
        .requeue("acme", &d.event_id, &d.delivery_id, &lease("node_b", 7))
        .await;
    assert!(matches!(pending, Err(StoreError::Conflict(_))));
    f.backend
        .mark_dead(&d.delivery_id, "endpoint disabled")
        .await
        .unwrap();
    assert_eq!(f.lease_of(&d.delivery_id), (None, None, "dead".into()));
    let requeued = f
        .backend
        .requeue("acme", &d.event_id, &d.delivery_id, &lease("node_b", 7))
        .await
        .unwrap();
    assert!(requeued.body.is_none());
    assert_eq!(
        f.lease_of(&d.delivery_id),
        (Some("node_b".into()), Some(7), "pending".into())
    );
    let missing = f
        .backend
        .requeue("acme", &d.event_id, "dlv_none", &lease("node_b", 7))
        .await;
    assert!(matches!(missing, Err(StoreError::NotFound { .. })));
}

#[tokio::test]
async fn a_repeated_idempotency_key_replays_the_first_answer() {
    let f = Fixture::new().await;
    created(f.ingest_keyed(&[2], 2, "node_a", Some("k1")).await);
    match f.ingest_keyed(&[2], 2, "node_a", Some("k1")).await {
        IngestOutcome::Replayed(value) => assert_eq!(value, serde_json::json!({"ok": true})),
        IngestOutcome::Created { .. } => panic!("stored twice"),
    }
    assert_eq!(f.backend.count_pending().await.unwrap(), 2);
}

fn signing_key(kid: &str, created_at: i64) -> StoredSigningKey {
    StoredSigningKey {
        kid: kid.into(),
        alg: "ES256".into(),
        private_key_pem: "private".into(),
        certificate_pem: "certificate".into(),
        created_at,
        retired_at: None,
    }
}

#[tokio::test]
async fn if_no_current_does_not_insert_twice_and_rotate_retires() {
    let f = Fixture::new().await;
    let keys = &f.backend;
    assert!(
        keys.add_signing_key(&signing_key("k1", 10), KeyInsert::IfNoCurrent)
            .await
            .unwrap()
    );
    assert!(
        !keys
            .add_signing_key(&signing_key("k2", 11), KeyInsert::IfNoCurrent)
            .await
            .unwrap()
    );
    assert_eq!(keys.signing_keys().await.unwrap().len(), 1);
    assert_eq!(keys.revisions().await.unwrap().keys, 1);
    assert!(
        keys.add_signing_key(&signing_key("k3", 12), KeyInsert::Rotate)
            .await
            .unwrap()
    );
    let all = keys.signing_keys().await.unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!((all[0].kid.as_str(), all[0].retired_at), ("k1", Some(12)));
    assert_eq!(all[1].retired_at, None);
    let mut resealed = signing_key("k3", 12);
    resealed.private_key_pem = "sealed".into();
    keys.replace_signing_key_secret(&resealed).await.unwrap();
    let all = keys.signing_keys().await.unwrap();
    assert_eq!(all[1].private_key_pem, "sealed");
    assert_eq!(keys.revisions().await.unwrap().keys, 3);
    assert_eq!(keys.prune_signing_keys(13).await.unwrap(), 1);
    assert_eq!(keys.revisions().await.unwrap().keys, 4);
}

#[tokio::test]
async fn writes_move_their_revision_and_deleting_a_tenant_moves_all() {
    let f = Fixture::new().await;
    let b = &f.backend;
    assert_eq!(
        b.revisions().await.unwrap(),
        Revisions {
            directory: 1,
            ..Default::default()
        }
    );
    let spec: EndpointSpec =
        serde_json::from_value(serde_json::json!({"url": "http://x"})).unwrap();
    b.put_endpoint(&Endpoint {
        id: "ep_1".into(),
        tenant_id: "acme".into(),
        spec,
        created_at: 1,
        updated_at: 1,
    })
    .await
    .unwrap();
    b.put_client_certificate(&StoredClientCertificate {
        id: "cc_1".into(),
        tenant_id: "acme".into(),
        name: "main".into(),
        private_key_pem: "key".into(),
        csr_pem: None,
        certificate_pem: None,
        created_at: 1,
        updated_at: 1,
    })
    .await
    .unwrap();
    b.put_tenant_plugin(&StoredPlugin {
        tenant_id: "acme".into(),
        name: "sign".into(),
        sha256: "ab".into(),
        bytes: vec![1, 2, 3],
        updated_at: 1,
    })
    .await
    .unwrap();
    assert_eq!(
        b.revisions().await.unwrap(),
        Revisions {
            directory: 2,
            keys: 0,
            certificates: 1,
            plugins: 1,
            ..Default::default()
        }
    );
    let rows = b.directory_rows().await.unwrap();
    assert_eq!(rows.tenants.len(), 1);
    assert_eq!(rows.tenants[0].1, "hash-acme");
    assert_eq!(rows.endpoints.len(), 1);
    assert!(b.delete_tenant("acme").await.unwrap());
    assert!(!b.delete_tenant("acme").await.unwrap());
    assert_eq!(
        b.revisions().await.unwrap(),
        Revisions {
            directory: 3,
            keys: 1,
            certificates: 2,
            plugins: 2,
            ..Default::default()
        }
    );
    assert!(b.tenant_plugins().await.unwrap().is_empty());
}

#[tokio::test]
async fn deleting_an_endpoint_kills_its_pending_deliveries_and_their_leases() {
    let f = Fixture::new().await;
    let spec: EndpointSpec =
        serde_json::from_value(serde_json::json!({"url": "http://x"})).unwrap();
    f.backend
        .put_endpoint(&Endpoint {
            id: "ep_0".into(),
            tenant_id: "acme".into(),
            spec,
            created_at: 1,
            updated_at: 1,
        })
        .await
        .unwrap();
    let (claimed, _) = created(f.ingest(&[1], 1, "node_a").await);
    assert!(f.backend.delete_endpoint("acme", "ep_0").await.unwrap());
    assert_eq!(
        f.lease_of(&claimed[0].delivery_id),
        (None, None, "dead".into())
    );
}

#[tokio::test]
async fn an_unreadable_endpoint_spec_names_the_endpoint() {
    let f = Fixture::new().await;
    rusqlite::Connection::open(f.db())
        .unwrap()
        .execute(
            "INSERT INTO endpoints (id, tenant_id, spec, created_at, updated_at) VALUES ('ep_bad', 'acme', 'nope', 1, 1)",
            [],
        )
        .unwrap();
    match f.backend.directory_rows().await {
        Err(StoreError::Schema(message)) => assert!(message.contains("ep_bad"), "{message}"),
        other => panic!("{:?}", other.map(|rows| rows.endpoints.len())),
    }
}

#[tokio::test]
async fn tenant_plugins_are_upserted_listed_read_and_deleted() {
    let f = Fixture::new().await;
    let plugin = |name: &str, bytes: Vec<u8>| StoredPlugin {
        tenant_id: "acme".into(),
        name: name.into(),
        sha256: format!("sha-{}", bytes.len()),
        bytes,
        updated_at: 1,
    };
    let b = &f.backend;
    b.put_tenant_plugin(&plugin("z", vec![1])).await.unwrap();
    b.put_tenant_plugin(&plugin("a", vec![1, 2])).await.unwrap();
    b.put_tenant_plugin(&plugin("a", vec![1, 2, 3]))
        .await
        .unwrap();
    let infos = b.tenant_plugins().await.unwrap();
    assert_eq!(
        infos,
        vec![
            StoredPluginInfo {
                tenant_id: "acme".into(),
                name: "a".into(),
                sha256: "sha-3".into(),
                size: 3,
            },
            StoredPluginInfo {
                tenant_id: "acme".into(),
                name: "z".into(),
                sha256: "sha-1".into(),
                size: 1,
            },
        ]
    );
    let a = b.tenant_plugin("acme", "a").await.unwrap().unwrap();
    assert_eq!(a.bytes, vec![1, 2, 3]);
    assert!(b.delete_tenant_plugin("acme", "a").await.unwrap());
    assert!(!b.delete_tenant_plugin("acme", "a").await.unwrap());
    assert!(b.tenant_plugin("acme", "a").await.unwrap().is_none());
}

#[cfg(unix)]
#[tokio::test]
async fn files_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let root = tempfile::tempdir().unwrap();
    let data_dir = root.path().join("nested").join("data");
    let backend = open(&data_dir).unwrap();
    backend.flush().await.unwrap();
    let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&data_dir), 0o700);
    assert_eq!(mode(&db_path(&data_dir)), 0o600);
    assert_eq!(mode(&data_dir.join("lock")), 0o600);
    let wal = data_dir.join("wasmhook.sqlite3-wal");
    if wal.exists() {
        assert_eq!(mode(&wal), 0o600);
    }
}

#[tokio::test]
async fn the_lock_refuses_a_second_open_until_the_first_is_gone() {
    let f = Fixture::new().await;
    assert!(matches!(open(f.dir.path()), Err(StoreError::Locked(_))));
    let f = f.reopen();
    assert_eq!(f.backend.kind(), "sqlite");
    assert!(!f.backend.shared());
}

#[tokio::test]
async fn reopening_clears_every_lease() {
    let f = Fixture::new().await;
    let (claimed, _) = created(f.ingest(&[2], 2, "node_a").await);
    let due = now_millis() + 1_000;
    assert!(f.claim("node_b", 10, due).await.is_empty());
    let f = f.reopen();
    assert_eq!(f.lease_of(&claimed[0].delivery_id).0, None);
    assert_eq!(f.claim("node_b", 10, due).await.len(), 2);
}

#[tokio::test]
async fn flush_waits_for_submitted_attempts_and_counts_writes() {
    let f = Fixture::new().await;
    let (claimed, _) = created(f.ingest(&[1], 1, "node_a").await);
    let recorded = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = recorded.clone();
    f.backend.record_attempt(
        attempt(&claimed[0].delivery_id, DeliveryStatus::Dead, None, false),
        Box::new(move |result| flag.store(result.is_ok(), std::sync::atomic::Ordering::SeqCst)),
    );
    f.backend.flush().await.unwrap();
    assert!(recorded.load(std::sync::atomic::Ordering::SeqCst));
    assert_eq!(f.lease_of(&claimed[0].delivery_id).2, "dead");
    let stats = f.backend.write_stats();
    assert!(stats.writes >= 4 && stats.commits >= 1, "{stats:?}");
}

/// The ids of every event in the database, in order.
fn event_ids(conn: &rusqlite::Connection) -> Vec<String> {
    conn.prepare("SELECT id FROM events ORDER BY id")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

/// Ingests events with `fanouts` deliveries each, records every delivery delivered, and
/// returns a retention request under which they are all expired (`limit` per batch).
async fn delivered_events(f: &Fixture, fanouts: &[usize], limit: usize) -> PruneRequest {
    let deliveries = fanouts.iter().sum();
    let (claimed, _) = created(f.ingest(fanouts, deliveries, "node-a").await);
    assert_eq!(claimed.len(), deliveries);
    for delivery in &claimed {
        f.record(attempt(
            &delivery.delivery_id,
            DeliveryStatus::Delivered,
            None,
            false,
        ))
        .await;
    }
    let now = crate::model::now_unix();
    PruneRequest {
        tenant: None,
        except: Vec::new(),
        delivered_before: now + 10,
        dead_before: now + 10,
        after: None,
        limit,
        dry_run: false,
    }
}

#[tokio::test]
async fn retention_deletes_expired_events_and_keeps_one_replayed_after_it_was_read() {
    let f = Fixture::new().await;
    let request = delivered_events(&f, &[1, 1, 1], 2).await;
    // The first batch reads two candidates (the limit) on a reader ...
    let conn = rusqlite::Connection::open(f.db()).unwrap();
    let candidates = lifecycle::expired_events(&conn, &request).unwrap();
    assert_eq!(candidates.len(), 2);
    // ... one of them is replayed before the writer gets to it: it must stay.
    conn.execute(
        "UPDATE deliveries SET status = 'pending' WHERE event_id = ?1",
        [&candidates[0]],
    )
    .unwrap();
    // The writer's slice gets the candidates as they were read.
    let counts = lifecycle::delete_expired(&conn, &request, &candidates).unwrap();
    assert_eq!(counts.events, 1, "{counts:?}");
    assert_eq!(counts.deliveries, 1);
    assert_eq!(counts.attempts, 1);
    let left = event_ids(&conn);
    assert_eq!(left.len(), 2);
    assert!(left.contains(&candidates[0]), "the replayed event stays");
    assert!(!left.contains(&candidates[1]), "the expired one went");
    // Through the backend: the next batch after the cursor takes the third; then nothing is
    // left (the replayed one is pending).
    let next = PruneRequest {
        after: Some(candidates[1].clone()),
        ..request.clone()
    };
    let batch = f.backend.prune_events(&next).await.unwrap();
    assert_eq!(batch.counts.events, 1, "{:?}", batch.counts);
    assert!(
        batch.last.is_some(),
        "a batch that looked at events goes on"
    );
    let end = PruneRequest {
        after: batch.last,
        ..request
    };
    assert!(f.backend.prune_events(&end).await.unwrap().last.is_none());
}

#[tokio::test]
async fn retention_deletes_a_list_longer_than_a_slice_and_keeps_each_replayed_one() {
    let f = Fixture::new().await;
    // 45 events (more than two slices), two deliveries each.
    let request = delivered_events(&f, &[2; 45], 100).await;
    let conn = rusqlite::Connection::open(f.db()).unwrap();
    let candidates = lifecycle::expired_events(&conn, &request).unwrap();
    assert_eq!(candidates.len(), 45);
    // Every tenth is replayed (one of its two deliveries) after it was read: those stay.
    let replayed: Vec<&String> = candidates.iter().step_by(10).collect();
    for event in &replayed {
        conn.execute(
            "UPDATE deliveries SET status = 'pending'
             WHERE id = (SELECT min(id) FROM deliveries WHERE event_id = ?1)",
            [event],
        )
        .unwrap();
    }
    let counts = lifecycle::delete_expired(&conn, &request, &candidates).unwrap();
    assert_eq!(
        (counts.events, counts.deliveries, counts.attempts),
        (40, 80, 80),
        "{counts:?}"
    );
    let left = event_ids(&conn);
    assert_eq!(left, replayed.into_iter().cloned().collect::<Vec<_>>());
    let deliveries: i64 = conn
        .query_row("SELECT count(*) FROM deliveries", [], |r| r.get(0))
        .unwrap();
    assert_eq!(
        deliveries, 10,
        "both deliveries of each replayed event stay"
    );
}
