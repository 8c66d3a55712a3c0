//! The storage contract ([`wasmhook::store::Backend`]), checked the same way against both
//! backends through [`Store::open`]: SQLite in a temporary directory, PostgreSQL on a fresh
//! database of the test server ([`crate::support::postgres::database`]). Each check is one
//! function run twice (`store_backends::sqlite::…`, `store_backends::postgres::…`); a few
//! only make sense on a store several nodes share (`store_backends::postgres_only::…`).
//!
//! The PostgreSQL tests skip (with a message) when no PostgreSQL server binaries are installed,
//! unless `WASMHOOK_TEST_STORE=postgres` asks for PostgreSQL, in which case they fail.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;
use wasmhook::config::Synchronous;
use wasmhook::model::{DeliveryStatus, Endpoint, EndpointSpec, Tenant, new_id, now_millis};
use wasmhook::secrets::{MasterKey, Sealer};
use wasmhook::store::{
    AttemptRecord, ClaimRequest, HoldOutcome, IngestOutcome, IngestRequest, KeyInsert, Lease,
    NewEvent, Notice, OpenOptions, PendingDelivery, PruneRequest, Store, StoreError, StoreLocation,
    StoredClientCertificate, StoredPlugin, StoredSigningKey,
};

use crate::support::StoreBackend;
use crate::support::postgres as pg_server;

const HOUR_MS: i64 = 3_600_000;
const TENANT: &str = "acme";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Sqlite,
    Postgres,
}

/// One store (one "node") and what it lives in.
struct Node {
    store: Arc<Store>,
    kind: Kind,
    /// The PostgreSQL URL (another node opens the same database).
    url: Option<String>,
    _dir: tempfile::TempDir,
}

fn sealer() -> Sealer {
    // Every node of a cluster shares the master key.
    Sealer::new(MasterKey::from_bytes(&[7; 32]), Vec::new())
}

fn options(location: StoreLocation, dir: &std::path::Path) -> OpenOptions {
    OpenOptions {
        sealer: sealer(),
        location,
        data_dir: dir.to_path_buf(),
        max_batch: 64,
        synchronous: Synchronous::Normal,
        pool_size: 8,
    }
}

/// True when the PostgreSQL variant cannot run here (and need not).
fn skip_postgres() -> bool {
    if pg_server::available() {
        return false;
    }
    assert_ne!(
        StoreBackend::current(),
        StoreBackend::Postgres,
        "WASMHOOK_TEST_STORE=postgres but no PostgreSQL server binaries are installed"
    );
    eprintln!("SKIPPED: no PostgreSQL server binaries");
    true
}

impl Node {
    /// A fresh store of `kind` with tenant `acme`; `None` when PostgreSQL is not available.
    async fn fresh(kind: Kind) -> Option<Self> {
        let dir = tempfile::tempdir().unwrap();
        let (location, url) = match kind {
            Kind::Sqlite => (
                StoreLocation::Sqlite(dir.path().join("wasmhook.sqlite3")),
                None,
            ),
            Kind::Postgres => {
                if skip_postgres() {
                    return None;
                }
                let url = pg_server::database().await;
                (StoreLocation::Postgres(url.clone()), Some(url))
            }
        };
        let store = Store::open(&options(location, dir.path()))
            .await
            .unwrap_or_else(|e| panic!("open the {kind:?} store: {e}"));
        store
            .create_tenant(
                Tenant {
                    id: TENANT.into(),
                    name: "Acme".into(),
                    created_at: 1,
                },
                "hash-acme".into(),
            )
            .await
            .unwrap();
        Some(Self {
            store,
            kind,
            url,
            _dir: dir,
        })
    }

    /// Another node on the same PostgreSQL database.
    async fn peer(&self) -> Self {
        let url = self.url.clone().expect("a PostgreSQL node");
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&options(StoreLocation::Postgres(url.clone()), dir.path()))
            .await
            .unwrap();
        Self {
            store,
            kind: self.kind,
            url: Some(url),
            _dir: dir,
        }
    }

    fn request(&self, fanouts: &[usize], claim: usize, lease: &Lease) -> IngestRequest {
        let events = fanouts
            .iter()
            .map(|&n| NewEvent {
                id: new_id("msg"),
                event_type: "invoice.paid".into(),
                created_at: 1,
                body: Arc::from(&b"{\"hello\":1}"[..]),
                endpoint_ids: (0..n).map(|i| format!("ep_{i}")).collect(),
                held_endpoint_ids: Vec::new(),
            })
            .collect();
        IngestRequest {
            tenant: TENANT.into(),
            events,
            idempotency_key: None,
            response: json!({"ok": true}),
            lease: lease.clone(),
            claim,
        }
    }

    /// Ingests one event per entry of `fanouts` (to that many endpoints), leasing the first
    /// `claim` deliveries under `lease`; returns what was claimed and how many were not.
    async fn ingest(
        &self,
        fanouts: &[usize],
        claim: usize,
        lease: &Lease,
    ) -> (Vec<PendingDelivery>, usize) {
        match self
            .store
            .ingest(self.request(fanouts, claim, lease))
            .await
            .unwrap()
        {
            IngestOutcome::Created {
                claimed, unclaimed, ..
            } => (claimed, unclaimed),
            IngestOutcome::Replayed(_) => panic!("replayed without a key"),
        }
    }

    async fn claim(
        &self,
        owner: &str,
        limit: usize,
        due_before_ms: i64,
        now_ms: i64,
    ) -> Vec<PendingDelivery> {
        self.store
            .claim(&ClaimRequest {
                lease: lease(owner, now_ms + HOUR_MS),
                limit,
                due_before_ms,
                now_ms,
            })
            .await
            .unwrap()
    }

    async fn record(&self, record: AttemptRecord) {
        let (done, wait) = tokio::sync::oneshot::channel();
        self.store.record_attempt(
            record,
            Box::new(move |result| {
                let _ = done.send(result);
            }),
        );
        wait.await.unwrap().unwrap();
    }

    async fn delivery_status(&self, delivery: &PendingDelivery) -> (DeliveryStatus, u32) {
        let all = self
            .store
            .deliveries_of_event(TENANT, &delivery.event_id)
            .await
            .unwrap();
        let found = all
            .iter()
            .find(|d| d.id == delivery.delivery_id)
            .expect("the delivery is listed");
        (found.status, found.attempts)
    }
}

fn lease(owner: &str, expires_at_ms: i64) -> Lease {
    Lease {
        owner: owner.into(),
        expires_at_ms,
    }
}

fn ids(deliveries: &[PendingDelivery]) -> HashSet<String> {
    deliveries.iter().map(|d| d.delivery_id.clone()).collect()
}

fn attempt(
    delivery: &PendingDelivery,
    status: DeliveryStatus,
    next: Option<i64>,
    keep: bool,
) -> AttemptRecord {
    AttemptRecord {
        delivery_id: delivery.delivery_id.clone(),
        attempt: delivery.attempts + 1,
        started_at_ms: now_millis(),
        status_code: Some(if status == DeliveryStatus::Delivered {
            200
        } else {
            500
        }),
        latency_ms: 3,
        error: (status != DeliveryStatus::Delivered).then(|| "HTTP 500".to_string()),
        response_snippet: Some("ok\0(with a NUL)".into()),
        new_status: status,
        next_attempt_at: next,
        keep_lease: keep,
    }
}

fn endpoint(id: &str) -> Endpoint {
    Endpoint {
        id: id.into(),
        tenant_id: TENANT.into(),
        spec: EndpointSpec {
            url: "http://127.0.0.1:9/hook".into(),
            event_types: Vec::new(),
            steps: Vec::new(),
            tls: None,
            enabled: true,
            max_concurrency: None,
            description: None,
            system_events: false,
        },
        created_at: 1,
        updated_at: 1,
    }
}

fn signing_key(kid: &str, created_at: i64) -> StoredSigningKey {
    StoredSigningKey {
        kid: kid.into(),
        alg: "ES256".into(),
        private_key_pem: format!("private key of {kid}"),
        certificate_pem: format!("certificate of {kid}"),
        created_at,
        retired_at: None,
    }
}

// ---- the checks -------------------------------------------------------------------------------

async fn ingest_claims_at_insert_and_leaves_the_rest_claimable(kind: Kind) {
    let Some(node) = Node::fresh(kind).await else {
        return;
    };
    let now = now_millis();
    let request = node.request(&[3, 3], 4, &lease("node_a", now + HOUR_MS));
    let bodies: Vec<Arc<[u8]>> = request.events.iter().map(|e| e.body.clone()).collect();
    let event_ids: Vec<String> = request.events.iter().map(|e| e.id.clone()).collect();
    let IngestOutcome::Created {
        response,
        claimed,
        unclaimed,
    } = node.store.ingest(request).await.unwrap()
    else {
        panic!("replayed without a key");
    };
    assert_eq!(response, json!({"ok": true}));
    assert_eq!((claimed.len(), unclaimed), (4, 2));
    // The first four in order: the three of the first event, then one of the second.
    assert!(claimed[..3].iter().all(|d| d.event_id == event_ids[0]));
    assert_eq!(claimed[3].event_id, event_ids[1]);
    for delivery in &claimed {
        let body = delivery
            .body
            .as_ref()
            .expect("a claimed delivery holds its body");
        let index = event_ids
            .iter()
            .position(|e| *e == delivery.event_id)
            .unwrap();
        assert!(
            Arc::ptr_eq(body, &bodies[index]),
            "the body is the request's own Arc, not a copy"
        );
        assert_eq!((delivery.attempts, delivery.round_start), (0, 0));
        assert_eq!(delivery.tenant_id, TENANT);
        assert_eq!(delivery.event_type, "invoice.paid");
    }
    assert_eq!(node.store.count_pending().await.unwrap(), 6);
    // Another node claims exactly the two left, never one leased at insert.
    let rest = node.claim("node_b", 100, now + 1000, now).await;
    assert_eq!(rest.len(), 2, "{rest:?}");
    assert!(ids(&rest).is_disjoint(&ids(&claimed)));
    assert!(
        rest.iter().all(|d| d.body.is_none()),
        "claims load no bodies"
    );
    assert!(node.claim("node_c", 100, now + 1000, now).await.is_empty());
}

async fn claim_honours_limit_due_time_and_leases(kind: Kind) {
    let Some(node) = Node::fresh(kind).await else {
        return;
    };
    let now = now_millis();
    let (_, unclaimed) = node.ingest(&[5], 0, &lease("node_a", now + HOUR_MS)).await;
    assert_eq!(unclaimed, 5);
    let first = node.claim("node_a", 2, now + 1000, now).await;
    assert_eq!(first.len(), 2);
    let second = node.claim("node_b", 10, now + 1000, now).await;
    assert_eq!(second.len(), 3);
    assert!(ids(&first).is_disjoint(&ids(&second)));
    assert!(
        node.claim("node_c", 10, now + 1000, now).await.is_empty(),
        "never a leased row"
    );

    // Two retries released to the store, due in one and two hours.
    node.record(attempt(
        &first[0],
        DeliveryStatus::Pending,
        Some(now + 2 * HOUR_MS),
        false,
    ))
    .await;
    node.record(attempt(
        &first[1],
        DeliveryStatus::Pending,
        Some(now + HOUR_MS),
        false,
    ))
    .await;
    assert!(
        node.claim("node_c", 10, now + 1000, now).await.is_empty(),
        "not due yet"
    );
    let due = node.claim("node_c", 10, now + 3 * HOUR_MS, now).await;
    assert_eq!(
        due.iter()
            .map(|d| d.delivery_id.as_str())
            .collect::<Vec<_>>(),
        vec![first[1].delivery_id.as_str(), first[0].delivery_id.as_str()],
        "oldest due first"
    );
    assert_eq!(due[0].due_ms, now + HOUR_MS);
    assert_eq!(due[0].attempts, 1);
}

async fn a_lapsed_lease_is_taken_over_by_another_owner(kind: Kind) {
    let Some(node) = Node::fresh(kind).await else {
        return;
    };
    let now = now_millis();
    let (claimed, _) = node.ingest(&[2], 2, &lease("node_a", now + 500)).await;
    assert_eq!(claimed.len(), 2);
    assert!(
        node.claim("node_b", 10, now + 1000, now).await.is_empty(),
        "the lease still holds"
    );
    let later = now + 1000;
    let taken = node.claim("node_b", 10, later + 1000, later).await;
    assert_eq!(
        ids(&taken),
        ids(&claimed),
        "node_a's lapsed leases go to node_b"
    );
    assert_eq!(
        node.store
            .renew_leases(&lease("node_a", later + HOUR_MS))
            .await
            .unwrap(),
        0,
        "node_a holds nothing any more"
    );
}

async fn renewing_extends_every_lease_of_the_owner(kind: Kind) {
    let Some(node) = Node::fresh(kind).await else {
        return;
    };
    let now = now_millis();
    node.ingest(&[3], 3, &lease("node_a", now + 500)).await;
    let renewed = node
        .store
        .renew_leases(&lease("node_a", now + HOUR_MS))
        .await
        .unwrap();
    assert_eq!(renewed, 3);
    let later = now + 1000;
    assert!(
        node.claim("node_b", 10, later + 1000, later)
            .await
            .is_empty(),
        "renewed leases do not lapse"
    );
}

async fn released_leases_are_claimable_again(kind: Kind) {
    let Some(node) = Node::fresh(kind).await else {
        return;
    };
    let now = now_millis();
    let (claimed, _) = node.ingest(&[3], 3, &lease("node_a", now + HOUR_MS)).await;
    let mut notices = node.store.notices();
    let one = vec![claimed[0].delivery_id.clone()];
    assert_eq!(
        node.store
            .release_leases("node_a", Some(&one))
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        node.store
            .release_leases("node_b", Some(&one))
            .await
            .unwrap(),
        0,
        "only the owner's leases"
    );
    if let Some(notices) = notices.as_mut() {
        let notice = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                if let Ok(Notice::Work) = notices.recv().await {
                    return;
                }
            }
        })
        .await;
        assert!(notice.is_ok(), "releasing leases notifies work");
    }
    let again = node.claim("node_b", 10, now + 1000, now).await;
    assert_eq!(ids(&again), ids(&claimed[..1]));
    assert_eq!(node.store.release_leases("node_a", None).await.unwrap(), 2);
    let rest = node.claim("node_c", 10, now + 1000, now).await;
    assert_eq!(ids(&rest), ids(&claimed[1..]));
}

async fn recording_attempts_moves_deliveries_and_their_leases(kind: Kind) {
    let Some(node) = Node::fresh(kind).await else {
        return;
    };
    let now = now_millis();
    let owner = lease("node_a", now + HOUR_MS);
    let (claimed, _) = node.ingest(&[3], 3, &owner).await;
    // Delivered: the lease goes.
    node.record(attempt(&claimed[0], DeliveryStatus::Delivered, None, true))
        .await;
    // Pending, kept in memory: the lease stays.
    node.record(attempt(
        &claimed[1],
        DeliveryStatus::Pending,
        Some(now + 100),
        true,
    ))
    .await;
    // Dead: the lease goes, whatever was asked.
    node.record(attempt(&claimed[2], DeliveryStatus::Dead, None, true))
        .await;
    node.store.flush().await.unwrap();
    assert_eq!(
        node.delivery_status(&claimed[0]).await,
        (DeliveryStatus::Delivered, 1)
    );
    assert_eq!(
        node.delivery_status(&claimed[1]).await,
        (DeliveryStatus::Pending, 1)
    );
    assert_eq!(
        node.delivery_status(&claimed[2]).await,
        (DeliveryStatus::Dead, 1)
    );
    assert_eq!(
        node.store.renew_leases(&owner).await.unwrap(),
        1,
        "only the pending delivery kept its lease"
    );
    let attempts = node
        .store
        .attempts_of_delivery(TENANT, &claimed[0].event_id, &claimed[0].delivery_id)
        .await
        .unwrap();
    assert_eq!(attempts.len(), 1);
    assert_eq!(attempts[0].outcome, "success");
    assert_eq!(attempts[0].status_code, Some(200));
    assert!(
        attempts[0]
            .response_snippet
            .as_deref()
            .unwrap()
            .starts_with("ok")
    );
    assert_eq!(node.store.count_pending().await.unwrap(), 1);
    // The same attempt recorded again replaces its record.
    let mut again = attempt(&claimed[0], DeliveryStatus::Delivered, None, false);
    again.status_code = Some(204);
    node.record(again).await;
    let attempts = node
        .store
        .attempts_of_delivery(TENANT, &claimed[0].event_id, &claimed[0].delivery_id)
        .await
        .unwrap();
    assert_eq!(attempts.len(), 1);
    assert_eq!(attempts[0].status_code, Some(204));

    // Many records at once (batched) all land.
    let (many, _) = node.ingest(&[50], 50, &owner).await;
    let waits: Vec<_> = many
        .iter()
        .map(|d| {
            let (done, wait) = tokio::sync::oneshot::channel();
            node.store.record_attempt(
                attempt(d, DeliveryStatus::Delivered, None, false),
                Box::new(move |result| {
                    let _ = done.send(result);
                }),
            );
            wait
        })
        .collect();
    node.store.flush().await.unwrap();
    for wait in waits {
        wait.await.unwrap().unwrap();
    }
    for d in &many {
        assert_eq!(
            node.delivery_status(d).await,
            (DeliveryStatus::Delivered, 1)
        );
    }
    let stats = node.store.write_stats();
    assert!(stats.writes >= stats.commits, "{stats:?}");
}

async fn replay_and_dead_without_an_attempt(kind: Kind) {
    let Some(node) = Node::fresh(kind).await else {
        return;
    };
    let now = now_millis();
    let owner = lease("node_a", now + HOUR_MS);
    let (claimed, _) = node.ingest(&[2], 2, &owner).await;
    let pending = node
        .store
        .requeue(
            TENANT,
            &claimed[0].event_id,
            &claimed[0].delivery_id,
            &owner,
        )
        .await;
    assert!(
        matches!(pending, Err(StoreError::Conflict(_))),
        "{pending:?}"
    );
    node.record(attempt(&claimed[0], DeliveryStatus::Dead, None, false))
        .await;
    let requeued = node
        .store
        .requeue(
            TENANT,
            &claimed[0].event_id,
            &claimed[0].delivery_id,
            &lease("node_b", now + HOUR_MS),
        )
        .await
        .unwrap();
    assert_eq!((requeued.attempts, requeued.round_start), (1, 1));
    assert_eq!(
        node.delivery_status(&claimed[0]).await,
        (DeliveryStatus::Pending, 1)
    );
    assert!(
        node.claim("node_c", 10, now + HOUR_MS, now)
            .await
            .is_empty(),
        "the replay is leased to node_b"
    );
    let missing = node
        .store
        .requeue(TENANT, &claimed[0].event_id, "dlv_nope", &owner)
        .await;
    assert!(
        matches!(missing, Err(StoreError::NotFound { .. })),
        "{missing:?}"
    );

    node.store
        .mark_dead(&claimed[1].delivery_id, "endpoint is disabled")
        .await
        .unwrap();
    let listed = node
        .store
        .deliveries_of_event(TENANT, &claimed[1].event_id)
        .await
        .unwrap();
    let dead = listed
        .iter()
        .find(|d| d.id == claimed[1].delivery_id)
        .unwrap();
    assert_eq!(dead.status, DeliveryStatus::Dead);
    assert_eq!(dead.last_error.as_deref(), Some("endpoint is disabled"));
    assert_eq!(node.store.renew_leases(&owner).await.unwrap(), 0);

    // Deleting an endpoint kills its pending deliveries.
    node.store
        .put_endpoint(endpoint("ep_0"), &[])
        .await
        .unwrap();
    let request = node.request(&[1], 0, &owner);
    let event_id = request.events[0].id.clone();
    node.store.ingest(request).await.unwrap();
    assert!(node.store.delete_endpoint(TENANT, "ep_0").await.unwrap());
    assert!(!node.store.delete_endpoint(TENANT, "ep_0").await.unwrap());
    let listed = node
        .store
        .deliveries_of_event(TENANT, &event_id)
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].status, DeliveryStatus::Dead);
    assert_eq!(
        listed[0].last_error.as_deref(),
        Some("endpoint was deleted")
    );
    let body = node.store.event_body(&claimed[0].event_id).await.unwrap();
    assert_eq!(body.as_deref(), Some(&b"{\"hello\":1}"[..]));
    assert_eq!(node.store.event_body("msg_nope").await.unwrap(), None);
    let event = node
        .store
        .event(TENANT, &claimed[0].event_id)
        .await
        .unwrap();
    assert_eq!(event.envelope, json!({"hello": 1}));
    assert!(matches!(
        node.store.event("other", &claimed[0].event_id).await,
        Err(StoreError::NotFound { .. })
    ));
}

/// A hold and an enable are ordered by the store, not by a node's view of the endpoint: a hold
/// after the endpoint is stored enabled is refused, and deliveries left held on an enabled
/// endpoint (a crash between an enable and its resume) are resumed by `resume_stranded`.
async fn holds_follow_the_stored_endpoint_state_and_stranded_holds_resume(kind: Kind) {
    let Some(node) = Node::fresh(kind).await else {
        return;
    };
    let now = now_millis();
    let owner = lease("node_a", now + HOUR_MS);
    let mut disabled = endpoint("ep_0");
    disabled.spec.enabled = false;
    node.store
        .put_endpoint(disabled.clone(), &[])
        .await
        .unwrap();
    node.store
        .put_endpoint(endpoint("ep_1"), &[])
        .await
        .unwrap();
    // Two events to ep_0 and ep_1; one more held at ingest (ep_0 was disabled then).
    let (claimed, _) = node.ingest(&[2, 2], 4, &owner).await;
    let mut request = node.request(&[1], 0, &owner);
    request.events[0].held_endpoint_ids = std::mem::take(&mut request.events[0].endpoint_ids);
    let held_at_ingest = request.events[0].id.clone();
    node.store.ingest(request).await.unwrap();
    let to = |endpoint: &str| -> Vec<&PendingDelivery> {
        claimed
            .iter()
            .filter(|d| d.endpoint_id == endpoint)
            .collect()
    };
    let (first, second) = (to("ep_0")[0], to("ep_0")[1]);

    // ep_0 is stored disabled: its delivery is held; ep_1 is enabled: its delivery is not.
    let hold = |delivery: &PendingDelivery, endpoint: &'static str| {
        let id = delivery.delivery_id.clone();
        let store = &node.store;
        async move { store.hold_delivery(&id, endpoint).await.unwrap() }
    };
    assert_eq!(hold(first, "ep_0").await, HoldOutcome::Held);
    assert_eq!(
        hold(first, "ep_0").await,
        HoldOutcome::NotPending,
        "held already"
    );
    assert_eq!(
        hold(to("ep_1")[0], "ep_1").await,
        HoldOutcome::EndpointEnabled
    );
    assert_eq!(
        node.delivery_status(to("ep_1")[0]).await.0,
        DeliveryStatus::Pending
    );
    assert_eq!(
        node.store.resume_stranded(now).await.unwrap(),
        0,
        "ep_0 is disabled"
    );

    // ep_0 is stored enabled, and nothing resumed its held deliveries (a crash).
    node.store
        .put_endpoint(endpoint("ep_0"), &[])
        .await
        .unwrap();
    assert_eq!(
        hold(second, "ep_0").await,
        HoldOutcome::EndpointEnabled,
        "a hold after the enable is refused"
    );
    assert_eq!(
        node.delivery_status(second).await.0,
        DeliveryStatus::Pending
    );
    assert_eq!(node.delivery_status(first).await.0, DeliveryStatus::Held);
    assert_eq!(node.store.resume_stranded(now).await.unwrap(), 2);
    assert_eq!(node.delivery_status(first).await.0, DeliveryStatus::Pending);
    let listed = node
        .store
        .deliveries_of_event(TENANT, &held_at_ingest)
        .await
        .unwrap();
    assert_eq!(listed[0].status, DeliveryStatus::Pending);
    assert_eq!(node.store.resume_stranded(now).await.unwrap(), 0, "once");
    // Resumed deliveries are claimable, due now.
    let ids_claimed = ids(&node.claim("node_b", 10, now + 1, now).await);
    assert!(ids_claimed.contains(&first.delivery_id), "{ids_claimed:?}");
    assert!(ids_claimed.contains(&listed[0].id), "{ids_claimed:?}");
}

async fn an_idempotent_repeat_returns_the_first_answer(kind: Kind) {
    let Some(node) = Node::fresh(kind).await else {
        return;
    };
    let now = now_millis();
    let owner = lease("node_a", now + HOUR_MS);
    let mut first = node.request(&[2], 1, &owner);
    first.idempotency_key = Some("k1".into());
    first.response = json!({"n": 1});
    let IngestOutcome::Created {
        claimed, unclaimed, ..
    } = node.store.ingest(first).await.unwrap()
    else {
        panic!("the first use of a key is stored");
    };
    assert_eq!((claimed.len(), unclaimed), (1, 1));
    let mut repeat = node.request(&[2], 1, &owner);
    repeat.idempotency_key = Some("k1".into());
    repeat.response = json!({"n": 2});
    match node.store.ingest(repeat).await.unwrap() {
        IngestOutcome::Replayed(answer) => assert_eq!(answer, json!({"n": 1})),
        other => panic!("a repeat must replay: {other:?}"),
    }
    assert_eq!(
        node.store.count_pending().await.unwrap(),
        2,
        "the repeat stored nothing"
    );

    // Two at once with the same key (on two nodes where there can be two): one is stored.
    let other = match kind {
        Kind::Postgres => Some(node.peer().await),
        Kind::Sqlite => None,
    };
    let second_store = other.as_ref().map_or(&node.store, |n| &n.store).clone();
    for round in 0..5 {
        let key = format!("race-{round}");
        let mut a = node.request(&[1], 1, &owner);
        a.idempotency_key = Some(key.clone());
        a.response = json!({"who": "a"});
        let mut b = node.request(&[1], 1, &owner);
        b.idempotency_key = Some(key);
        b.response = json!({"who": "b"});
        let (sa, sb) = (node.store.clone(), second_store.clone());
        let (ra, rb) = tokio::join!(
            tokio::spawn(async move { sa.ingest(a).await }),
            tokio::spawn(async move { sb.ingest(b).await })
        );
        let outcomes = [ra.unwrap().unwrap(), rb.unwrap().unwrap()];
        let created: Vec<&serde_json::Value> = outcomes
            .iter()
            .filter_map(|o| match o {
                IngestOutcome::Created { response, .. } => Some(response),
                IngestOutcome::Replayed(_) => None,
            })
            .collect();
        let replayed: Vec<&serde_json::Value> = outcomes
            .iter()
            .filter_map(|o| match o {
                IngestOutcome::Replayed(answer) => Some(answer),
                IngestOutcome::Created { .. } => None,
            })
            .collect();
        assert_eq!((created.len(), replayed.len()), (1, 1), "{outcomes:?}");
        assert_eq!(created[0], replayed[0], "the replay is the stored answer");
    }
    assert_eq!(node.store.count_pending().await.unwrap(), 2 + 5);
}

async fn revisions_move_on_each_aggregate(kind: Kind) {
    let Some(node) = Node::fresh(kind).await else {
        return;
    };
    let store = &node.store;
    let r0 = store.revisions().await.unwrap();
    store
        .create_tenant(
            Tenant {
                id: "globex".into(),
                name: "Globex".into(),
                created_at: 2,
            },
            "hash-globex".into(),
        )
        .await
        .unwrap();
    let duplicate = store
        .create_tenant(
            Tenant {
                id: "globex".into(),
                name: "Globex again".into(),
                created_at: 3,
            },
            "hash-globex-2".into(),
        )
        .await;
    assert!(
        matches!(duplicate, Err(StoreError::Conflict(_))),
        "{duplicate:?}"
    );
    let r1 = store.revisions().await.unwrap();
    assert!(r1.directory > r0.directory);
    assert_eq!(
        (r1.keys, r1.certificates, r1.plugins),
        (r0.keys, r0.certificates, r0.plugins)
    );

    let mut ep = endpoint("ep_g");
    ep.tenant_id = "globex".into();
    store.put_endpoint(ep, &[]).await.unwrap();
    let r2 = store.revisions().await.unwrap();
    assert!(r2.directory > r1.directory);
    let rows = store.directory_rows().await.unwrap();
    assert!(rows.endpoints.iter().any(|e| e.id == "ep_g"));
    assert!(
        rows.tenants
            .iter()
            .any(|(t, hash)| t.id == "globex" && hash == "hash-globex")
    );

    assert!(
        store
            .add_signing_key(&signing_key("k1", 10), KeyInsert::IfNoCurrent)
            .await
            .unwrap()
    );
    let r3 = store.revisions().await.unwrap();
    assert!(r3.keys > r2.keys);
    assert_eq!(r3.directory, r2.directory);

    store
        .put_client_certificate(&StoredClientCertificate {
            id: "cc_1".into(),
            tenant_id: "globex".into(),
            name: "main".into(),
            private_key_pem: "client private key".into(),
            csr_pem: Some("csr".into()),
            certificate_pem: None,
            created_at: 5,
            updated_at: 5,
        })
        .await
        .unwrap();
    let r4 = store.revisions().await.unwrap();
    assert!(r4.certificates > r3.certificates);
    let record = store.client_certificate("globex", "cc_1").await.unwrap();
    assert_eq!(record.private_key_pem, "client private key");
    assert_eq!(store.client_certificates("globex").await.unwrap().len(), 1);
    assert!(matches!(
        store.client_certificate(TENANT, "cc_1").await,
        Err(StoreError::NotFound { .. })
    ));

    store
        .put_tenant_plugin(&StoredPlugin {
            tenant_id: "globex".into(),
            name: "signer".into(),
            sha256: "ab".repeat(32),
            bytes: vec![0, 97, 115, 109],
            updated_at: 6,
        })
        .await
        .unwrap();
    let r5 = store.revisions().await.unwrap();
    assert!(r5.plugins > r4.plugins);

    assert!(store.delete_tenant("globex").await.unwrap());
    let r6 = store.revisions().await.unwrap();
    assert!(
        r6.directory > r5.directory
            && r6.keys > r5.keys
            && r6.certificates > r5.certificates
            && r6.plugins > r5.plugins,
        "deleting a tenant moves every counter: {r5:?} -> {r6:?}"
    );
    assert!(!store.delete_tenant("globex").await.unwrap());
    assert!(store.tenant_plugins().await.unwrap().is_empty());
    assert!(
        store
            .client_certificates("globex")
            .await
            .unwrap()
            .is_empty()
    );
    let rows = store.directory_rows().await.unwrap();
    assert!(!rows.endpoints.iter().any(|e| e.id == "ep_g"));
}

async fn a_first_signing_key_is_inserted_once_under_concurrency(kind: Kind) {
    let Some(node) = Node::fresh(kind).await else {
        return;
    };
    let peer = match kind {
        Kind::Postgres => Some(node.peer().await),
        Kind::Sqlite => None,
    };
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let store = match (&peer, i % 2) {
                (Some(peer), 1) => peer.store.clone(),
                _ => node.store.clone(),
            };
            tokio::spawn(async move {
                store
                    .add_signing_key(
                        &signing_key(&format!("kid_{i}"), 100),
                        KeyInsert::IfNoCurrent,
                    )
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut inserted = 0;
    for task in tasks {
        inserted += usize::from(task.await.unwrap());
    }
    assert_eq!(inserted, 1, "exactly one first key");
    let keys = node.store.signing_keys().await.unwrap();
    assert_eq!(keys.len(), 1);
    let first = keys[0].kid.clone();
    assert!(
        keys[0].private_key_pem.starts_with("private key of"),
        "unsealed on the way out"
    );

    assert!(
        node.store
            .add_signing_key(&signing_key("kid_rotated", 200), KeyInsert::Rotate)
            .await
            .unwrap()
    );
    let keys = node.store.signing_keys().await.unwrap();
    assert_eq!(keys.len(), 2);
    let old = keys.iter().find(|k| k.kid == first).unwrap();
    let new = keys.iter().find(|k| k.kid == "kid_rotated").unwrap();
    assert_eq!(old.retired_at, Some(200));
    assert_eq!(new.retired_at, None);
    assert_eq!(node.store.prune_signing_keys(150).await.unwrap(), 0);
    assert_eq!(node.store.prune_signing_keys(201).await.unwrap(), 1);
    assert_eq!(node.store.signing_keys().await.unwrap().len(), 1);
}

async fn tenant_plugins_put_list_get_delete(kind: Kind) {
    let Some(node) = Node::fresh(kind).await else {
        return;
    };
    let store = &node.store;
    let plugin = |name: &str, bytes: Vec<u8>| StoredPlugin {
        tenant_id: TENANT.into(),
        name: name.into(),
        sha256: format!("sha-of-{name}-{}", bytes.len()),
        bytes,
        updated_at: 7,
    };
    store
        .put_tenant_plugin(&plugin("b", vec![1; 10]))
        .await
        .unwrap();
    store
        .put_tenant_plugin(&plugin("a", vec![0, 255, 3]))
        .await
        .unwrap();
    store
        .put_tenant_plugin(&plugin("b", vec![2; 20]))
        .await
        .unwrap();
    let list = store.tenant_plugins().await.unwrap();
    assert_eq!(
        list.iter()
            .map(|p| (p.name.as_str(), p.size))
            .collect::<Vec<_>>(),
        vec![("a", 3), ("b", 20)]
    );
    assert_eq!(list[1].sha256, "sha-of-b-20");
    let got = store.tenant_plugin(TENANT, "a").await.unwrap().unwrap();
    assert_eq!(got.bytes, vec![0, 255, 3]);
    assert!(store.tenant_plugin(TENANT, "zzz").await.unwrap().is_none());
    assert!(store.tenant_plugin("other", "a").await.unwrap().is_none());
    assert!(store.delete_tenant_plugin(TENANT, "a").await.unwrap());
    assert!(!store.delete_tenant_plugin(TENANT, "a").await.unwrap());
    assert_eq!(store.tenant_plugins().await.unwrap().len(), 1);
}

async fn one_bad_ingest_fails_alone(kind: Kind) {
    let Some(node) = Node::fresh(kind).await else {
        return;
    };
    let owner = lease("node_a", now_millis() + HOUR_MS);
    // Concurrent ingests are grouped into one transaction: the one the database refuses (its
    // tenant does not exist) must not take its neighbours down with it.
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let mut request = node.request(&[2], 1, &owner);
            if i == 7 {
                request.tenant = "nobody".into();
            }
            let store = node.store.clone();
            tokio::spawn(async move { store.ingest(request).await })
        })
        .collect();
    let mut failed = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(IngestOutcome::Created {
                claimed, unclaimed, ..
            }) => {
                assert_eq!((claimed.len(), unclaimed), (1, 1))
            }
            Ok(IngestOutcome::Replayed(_)) => panic!("replayed without a key"),
            Err(_) => failed += 1,
        }
    }
    assert_eq!(failed, 1);
    assert_eq!(node.store.count_pending().await.unwrap(), 19 * 2);
}

async fn deleting_a_tenant_removes_its_messages_and_keeps_the_others(kind: Kind) {
    let Some(node) = Node::fresh(kind).await else {
        return;
    };
    node.store
        .create_tenant(
            Tenant {
                id: "globex".into(),
                name: "Globex".into(),
                created_at: 1,
            },
            "hash-globex".into(),
        )
        .await
        .unwrap();
    let owner = lease("node_a", now_millis() + HOUR_MS);
    let mut theirs = node.request(&[2, 1], 3, &owner);
    theirs.tenant = "globex".into();
    let IngestOutcome::Created { claimed, .. } = node.store.ingest(theirs).await.unwrap() else {
        panic!("replayed without a key");
    };
    node.record(attempt(&claimed[0], DeliveryStatus::Delivered, None, false))
        .await;
    let (ours, _) = node.ingest(&[1, 1], 2, &owner).await;
    assert_eq!(node.store.count_pending().await.unwrap(), 4);

    assert!(node.store.delete_tenant("globex").await.unwrap());
    assert_eq!(
        node.store.count_pending().await.unwrap(),
        2,
        "theirs went, ours stay"
    );
    for delivery in &claimed {
        assert!(matches!(
            node.store
                .deliveries_of_event("globex", &delivery.event_id)
                .await,
            Err(StoreError::NotFound { .. })
        ));
    }
    assert_eq!(
        node.delivery_status(&ours[0]).await,
        (DeliveryStatus::Pending, 0)
    );
    if let Some(url) = &node.url {
        // No row of theirs is left behind (the message tables have no foreign keys here).
        let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(connection);
        for table in ["events", "deliveries"] {
            let left: i64 = client
                .query_one(
                    &format!("SELECT count(*) FROM {table} WHERE tenant_id = 'globex'"),
                    &[],
                )
                .await
                .unwrap()
                .get(0);
            assert_eq!(left, 0, "{table}");
        }
        let attempts: i64 = client
            .query_one("SELECT count(*) FROM attempts", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(
            attempts, 0,
            "the attempt of their delivered delivery went too"
        );
    }
}

macro_rules! on_both_backends {
    ($($check:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $check() {
                    super::$check(super::Kind::Sqlite).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $check() {
                    super::$check(super::Kind::Postgres).await;
                }
            )*
        }
    };
}

on_both_backends!(
    ingest_claims_at_insert_and_leaves_the_rest_claimable,
    claim_honours_limit_due_time_and_leases,
    a_lapsed_lease_is_taken_over_by_another_owner,
    renewing_extends_every_lease_of_the_owner,
    released_leases_are_claimable_again,
    recording_attempts_moves_deliveries_and_their_leases,
    replay_and_dead_without_an_attempt,
    holds_follow_the_stored_endpoint_state_and_stranded_holds_resume,
    an_idempotent_repeat_returns_the_first_answer,
    revisions_move_on_each_aggregate,
    a_first_signing_key_is_inserted_once_under_concurrency,
    tenant_plugins_put_list_get_delete,
    one_bad_ingest_fails_alone,
    deleting_a_tenant_removes_its_messages_and_keeps_the_others,
);

/// What only a store several nodes share does: cluster-wide endpoint slots, notifications,
/// nodes opening one database together, and PostgreSQL's own failure modes.
mod postgres_only {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn endpoint_slots_never_exceed_max_under_concurrent_acquirers() {
        let Some(node) = Node::fresh(Kind::Postgres).await else {
            return;
        };
        let peer = node.peer().await;
        assert!(node.store.shared());
        assert_eq!(node.store.kind(), "postgres");
        const MAX: u32 = 2;
        let live = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let granted = Arc::new(AtomicUsize::new(0));
        let deadline = Instant::now() + Duration::from_secs(3);
        let tasks: Vec<_> = (0..20)
            .map(|i| {
                let store = if i % 2 == 0 {
                    node.store.clone()
                } else {
                    peer.store.clone()
                };
                let (live, most, granted) = (live.clone(), most.clone(), granted.clone());
                tokio::spawn(async move {
                    let owner = format!("node_{i}");
                    while Instant::now() < deadline {
                        let now = now_millis();
                        let slot = store
                            .acquire_endpoint_slot(
                                "ep_slots",
                                MAX,
                                &lease(&owner, now + 60_000),
                                now,
                            )
                            .await
                            .unwrap();
                        let Some(slot) = slot else {
                            tokio::time::sleep(Duration::from_millis(1)).await;
                            continue;
                        };
                        assert!(slot < MAX);
                        let holding = live.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(holding, Ordering::SeqCst);
                        granted.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(2)).await;
                        live.fetch_sub(1, Ordering::SeqCst);
                        store
                            .release_endpoint_slot("ep_slots", slot, &owner)
                            .await
                            .unwrap();
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        let (most, granted) = (most.load(Ordering::SeqCst), granted.load(Ordering::SeqCst));
        eprintln!("endpoint slots: {granted} granted, at most {most} held at once");
        assert!(most <= MAX as usize, "{most} slots held at once, max {MAX}");
        assert_eq!(most, MAX as usize, "both slots were used");
        assert!(granted > 20, "{granted}");

        // A lapsed slot is taken over; a live one is not; releasing needs the owner.
        let now = now_millis();
        let a = node
            .store
            .acquire_endpoint_slot("ep_x", 1, &lease("a", now + 100), now)
            .await
            .unwrap();
        assert_eq!(a, Some(0));
        let b = node
            .store
            .acquire_endpoint_slot("ep_x", 1, &lease("b", now + HOUR_MS), now)
            .await
            .unwrap();
        assert_eq!(b, None);
        let later = now + 1000;
        let b = node
            .store
            .acquire_endpoint_slot("ep_x", 1, &lease("b", later + HOUR_MS), later)
            .await
            .unwrap();
        assert_eq!(b, Some(0));
        node.store
            .release_endpoint_slot("ep_x", 0, "a")
            .await
            .unwrap();
        let c = node
            .store
            .acquire_endpoint_slot("ep_x", 1, &lease("c", later + HOUR_MS), later)
            .await
            .unwrap();
        assert_eq!(c, None, "a could not release b's slot");
        node.store
            .release_endpoint_slot("ep_x", 0, "b")
            .await
            .unwrap();
        let c = node
            .store
            .acquire_endpoint_slot("ep_x", 1, &lease("c", later + HOUR_MS), later)
            .await
            .unwrap();
        assert_eq!(c, Some(0));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn nodes_register_by_heartbeat_and_leaving_frees_their_slots() {
        let Some(node) = Node::fresh(Kind::Postgres).await else {
            return;
        };
        let peer = node.peer().await;
        let now = now_millis();
        assert_eq!(
            node.store
                .heartbeat_node(&lease("a", now + HOUR_MS), now)
                .await
                .unwrap(),
            1
        );
        assert_eq!(
            peer.store
                .heartbeat_node(&lease("b", now + HOUR_MS), now)
                .await
                .unwrap(),
            2,
            "both nodes are live"
        );
        // A node whose registration lapsed no longer counts.
        assert_eq!(
            node.store
                .heartbeat_node(&lease("c", now + 100), now)
                .await
                .unwrap(),
            3
        );
        let later = now + 1000;
        assert_eq!(
            node.store
                .heartbeat_node(&lease("a", later + HOUR_MS), later)
                .await
                .unwrap(),
            2
        );

        // A heartbeat extends the node's slots: one taken until `now + 100` is still held later.
        let slot = node
            .store
            .acquire_endpoint_slot("ep_n", 1, &lease("a", now + 100), now)
            .await
            .unwrap();
        assert_eq!(slot, Some(0));
        node.store
            .heartbeat_node(&lease("a", later + HOUR_MS), later)
            .await
            .unwrap();
        let taken = peer
            .store
            .acquire_endpoint_slot("ep_n", 1, &lease("b", later + HOUR_MS), later)
            .await
            .unwrap();
        assert_eq!(taken, None, "a's slot was renewed with its registration");

        // Leaving gives the slots back and drops the node from the count.
        node.store.leave("a").await.unwrap();
        let taken = peer
            .store
            .acquire_endpoint_slot("ep_n", 1, &lease("b", later + HOUR_MS), later)
            .await
            .unwrap();
        assert_eq!(taken, Some(0));
        assert_eq!(
            peer.store
                .heartbeat_node(&lease("b", later + HOUR_MS), later)
                .await
                .unwrap(),
            1
        );
    }

    async fn wait_for(receiver: &mut tokio::sync::broadcast::Receiver<Notice>, want: Notice) {
        tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                match receiver.recv().await {
                    Ok(notice) if notice == want => return,
                    Ok(_) => continue,
                    Err(e) => panic!("notices: {e}"),
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("no {want:?} notice"));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn nodes_are_woken_by_work_and_changes() {
        let Some(a) = Node::fresh(Kind::Postgres).await else {
            return;
        };
        let b = a.peer().await;
        let mut notices = b.store.notices().expect("PostgreSQL pushes notices");
        let now = now_millis();
        a.ingest(&[2], 1, &lease("node_a", now + HOUR_MS)).await;
        wait_for(&mut notices, Notice::Work).await;
        a.store.put_endpoint(endpoint("ep_n"), &[]).await.unwrap();
        wait_for(&mut notices, Notice::Changed).await;
        // B sees A's change once it reloads.
        b.store.reload_directory().await.unwrap();
        assert!(b.store.directory().endpoint("ep_n").is_some());
    }

    /// A retention batch that has read its candidates while a replay of one of them is in
    /// flight (its delivery's row updated, not yet committed) keeps that delivery and its event:
    /// the delete waits for the replay and checks the status again.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_replay_in_flight_during_a_retention_batch_keeps_its_delivery() {
        let Some(node) = Node::fresh(Kind::Postgres).await else {
            return;
        };
        let url = node.url.clone().unwrap();
        let now = now_millis();
        let (claimed, _) = node
            .ingest(&[1, 1], 2, &lease("node_a", now + HOUR_MS))
            .await;
        for delivery in &claimed {
            node.record(attempt(delivery, DeliveryStatus::Delivered, None, false))
                .await;
        }
        let (mut replayer, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(connection);
        let replay = replayer.transaction().await.unwrap();
        replay
            .execute(
                "UPDATE deliveries SET status = 'pending' WHERE id = $1",
                &[&claimed[0].delivery_id],
            )
            .await
            .unwrap();
        let unix_now = now / 1000;
        let request = PruneRequest {
            tenant: None,
            except: Vec::new(),
            delivered_before: unix_now + 10,
            dead_before: unix_now + 10,
            after: None,
            limit: 10,
            dry_run: false,
        };
        let store = node.store.clone();
        let prune = tokio::spawn(async move { store.prune_events(&request).await });
        // The batch read both events (the replay is not committed) and now waits for the row.
        let (watcher, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(connection);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let waiting: i64 = watcher
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity
                     WHERE datname = current_database() AND wait_event_type = 'Lock'",
                    &[],
                )
                .await
                .unwrap()
                .get(0);
            if waiting > 0 {
                break;
            }
            assert!(
                !prune.is_finished(),
                "the batch did not wait for the replay"
            );
            assert!(Instant::now() < deadline, "the batch never waited");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        replay.commit().await.unwrap();
        let batch = prune.await.unwrap().unwrap();
        assert_eq!(batch.counts.events, 1, "{:?}", batch.counts);
        assert_eq!(batch.counts.deliveries, 1, "{:?}", batch.counts);
        assert_eq!(batch.counts.attempts, 1, "{:?}", batch.counts);
        assert_eq!(
            node.delivery_status(&claimed[0]).await,
            (DeliveryStatus::Pending, 1),
            "the replayed delivery stays"
        );
        let gone = node
            .store
            .deliveries_of_event(TENANT, &claimed[1].event_id)
            .await;
        assert!(
            matches!(gone, Err(StoreError::NotFound { .. })),
            "the other event went: {gone:?}"
        );
    }

    /// Sequential scans of the message tables so far, as the server counts them once every
    /// store connection has ended (a backend reports its counts when it exits).
    async fn seq_scans(watcher: &tokio_postgres::Client) -> Vec<(String, i64)> {
        let ended: Vec<i32> = watcher
            .query(
                "WITH store AS MATERIALIZED (
                     SELECT pid FROM pg_stat_activity
                     WHERE datname = current_database() AND application_name = 'wasmhook'
                       AND pid <> pg_backend_pid()
                 )
                 SELECT pid FROM store WHERE pg_terminate_backend(pid)",
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|row| row.get(0))
            .collect();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            // Only the ended ones: the store's listener connects again by itself.
            let left: i64 = watcher
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity WHERE pid = ANY($1)",
                    &[&ended],
                )
                .await
                .unwrap()
                .get(0);
            if left == 0 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the store's connections did not end"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        watcher
            .batch_execute("SELECT pg_stat_clear_snapshot()")
            .await
            .unwrap();
        watcher
            .query(
                "SELECT relname::text, seq_scan FROM pg_stat_user_tables
                 WHERE relname IN ('events', 'deliveries', 'attempts') ORDER BY relname",
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|row| (row.get(0), row.get(1)))
            .collect()
    }

    /// Retention finds and deletes through the indexes however large the tables are: a batch
    /// that read a whole table (the planner hashed `deliveries` and `attempts` for each batch
    /// of 200 events) could never keep up with ingest.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn retention_batches_on_large_tables_read_no_table_whole() {
        let Some(node) = Node::fresh(Kind::Postgres).await else {
            return;
        };
        let url = node.url.clone().unwrap();
        let (watcher, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(connection);
        // 30,000 delivered events of long ago (ids below any ULID of today), each with one
        // delivery and one attempt, and the statistics of tables that size.
        watcher
            .batch_execute(
                "INSERT INTO events (id, tenant_id, type, body, created_at)
                     SELECT 'msg_0000000' || lpad(i::text, 6, '0'), 'acme', 'invoice.paid',
                            '\\x7b7d'::bytea, 1000
                     FROM generate_series(1, 30000) i;
                 INSERT INTO deliveries (id, event_id, endpoint_id, tenant_id, status, attempts,
                                         updated_at)
                     SELECT 'dlv_0000000' || lpad(i::text, 6, '0'),
                            'msg_0000000' || lpad(i::text, 6, '0'), 'ep_old', 'acme',
                            'delivered', 1, 1000
                     FROM generate_series(1, 30000) i;
                 INSERT INTO attempts (delivery_id, attempt, started_at, latency_ms, outcome)
                     SELECT 'dlv_0000000' || lpad(i::text, 6, '0'), 1, 1000000, 1, 'success'
                     FROM generate_series(1, 30000) i;
                 ANALYZE events, deliveries, attempts;",
            )
            .await
            .unwrap();
        let before = seq_scans(&watcher).await;
        let unix_now = now_millis() / 1000;
        let mut request = PruneRequest {
            tenant: None,
            except: Vec::new(),
            delivered_before: unix_now - 60,
            dead_before: unix_now - 60,
            after: None,
            limit: 200,
            dry_run: false,
        };
        let mut pruned = 0;
        for _ in 0..3 {
            let batch = node.store.prune_events(&request).await.unwrap();
            assert_eq!(
                (batch.counts.deliveries, batch.counts.attempts),
                (batch.counts.events, batch.counts.events),
                "{:?}",
                batch.counts
            );
            pruned += batch.counts.events;
            request.after = batch.last;
        }
        assert_eq!(pruned, 600, "three batches of 200 events");
        let after = seq_scans(&watcher).await;
        assert_eq!(
            before, after,
            "sequential scans of events, deliveries, attempts (before, after the batches)"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn notices_and_the_pool_survive_lost_connections() {
        let Some(node) = Node::fresh(Kind::Postgres).await else {
            return;
        };
        let url = node.url.clone().unwrap();
        let mut notices = node.store.notices().unwrap();
        let (admin, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(connection);
        let killed = admin
            .query(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                 WHERE datname = current_database() AND pid <> pg_backend_pid()",
                &[],
            )
            .await
            .unwrap()
            .len();
        assert!(
            killed >= 2,
            "the pool's and the listener's connections: {killed}"
        );
        // The listener reconnects and says that anything may have changed.
        wait_for(&mut notices, Notice::Changed).await;
        let now = now_millis();
        let (claimed, unclaimed) = node.ingest(&[2], 1, &lease("node_a", now + HOUR_MS)).await;
        assert_eq!((claimed.len(), unclaimed), (1, 1));
        wait_for(&mut notices, Notice::Work).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn nodes_starting_together_migrate_once_and_a_newer_schema_is_refused() {
        if skip_postgres() {
            return;
        }
        let url = pg_server::database().await;
        let dir = tempfile::tempdir().unwrap();
        let opens: Vec<_> = (0..4)
            .map(|_| {
                let options = options(StoreLocation::Postgres(url.clone()), dir.path());
                tokio::spawn(async move { Store::open(&options).await.map(|_| ()) })
            })
            .collect();
        for open in opens {
            open.await.unwrap().unwrap();
        }
        let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(connection);
        // Each migration applied once: as many rows as versions, 1 to the latest.
        let row = client
            .query_one(
                "SELECT count(*), count(DISTINCT version), COALESCE(max(version), 0)::BIGINT FROM schema_migrations",
                &[],
            )
            .await
            .unwrap();
        let (rows, distinct, latest): (i64, i64, i64) = (row.get(0), row.get(1), row.get(2));
        assert!(
            latest >= 1 && rows == latest && distinct == latest,
            "{rows} rows, {distinct} versions, latest {latest}"
        );
        client
            .execute(
                "INSERT INTO schema_migrations (version, applied_at) VALUES (999, 0)",
                &[],
            )
            .await
            .unwrap();
        let newer = Store::open(&options(StoreLocation::Postgres(url.clone()), dir.path())).await;
        assert!(
            matches!(newer, Err(StoreError::Schema(_))),
            "{:?}",
            newer.err()
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_unreachable_server_fails_fast_without_the_password() {
        let dir = tempfile::tempdir().unwrap();
        // Nothing listens on port 1.
        let url = "postgres://app:hunter2@127.0.0.1:1/hooks?sslmode=disable";
        let started = Instant::now();
        let error = Store::open(&options(StoreLocation::Postgres(url.into()), dir.path()))
            .await
            .err()
            .expect("no server there");
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{:?}",
            started.elapsed()
        );
        let text = error.to_string();
        assert!(matches!(error, StoreError::Open { .. }), "{text}");
        assert!(!text.contains("hunter2"), "{text}");
        assert!(text.contains("127.0.0.1:1"), "{text}");
    }
}
