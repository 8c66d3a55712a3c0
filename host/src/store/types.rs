//! The records that cross the store's interface: what is written, what is claimed, what is read
//! back. Plain data, the same for every backend.

use std::sync::Arc;

use crate::model::{DeliveryStatus, Endpoint, Tenant};

/// Identity of a node's claims: deliveries leased to `owner` until `expires_at_ms`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The node (`node_…`, new at every start).
    pub owner: String,
    /// Unix milliseconds when the lease lapses unless renewed.
    pub expires_at_ms: i64,
}

/// A delivery the dispatcher should attempt at `due_ms`.
///
/// The event's body is **not** part of it when the delivery was claimed from the store: it is
/// loaded when the attempt is sent ([`crate::store::Store::event_body`]). Deliveries created by
/// this node's own ingest may carry the body they share with the other deliveries of the same
/// event (one copy per event, never one per delivery).
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
    /// The JSON envelope, when this node still holds it from its own ingest.
    pub body: Option<Arc<[u8]>>,
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
    /// Endpoints that get a delivery (pending: attempted now).
    pub endpoint_ids: Vec<String>,
    /// Disabled endpoints that get a held delivery (attempted once the endpoint is enabled).
    pub held_endpoint_ids: Vec<String>,
}

impl NewEvent {
    /// Deliveries this event gets, held ones included.
    pub fn deliveries(&self) -> usize {
        self.endpoint_ids.len() + self.held_endpoint_ids.len()
    }
}

/// One ingest: events stored all or none, with an optional idempotency key.
#[derive(Debug, Clone)]
pub struct IngestRequest {
    /// The tenant.
    pub tenant: String,
    /// The events.
    pub events: Vec<NewEvent>,
    /// A repeat with the same key returns the first answer.
    pub idempotency_key: Option<String>,
    /// The answer to store under the key.
    pub response: serde_json::Value,
    /// The first `claim` deliveries (in order) are leased to this node at insert time so the
    /// ingesting node sends them without a poll; the rest are left for any node to claim.
    pub lease: Lease,
    /// How many of the new deliveries to lease (the room in the node's window).
    pub claim: usize,
}

/// Result of an ingest.
#[derive(Debug)]
pub enum IngestOutcome {
    /// Stored now: the answer, and the deliveries leased to this node.
    Created {
        /// The API's answer, also stored under the idempotency key.
        response: serde_json::Value,
        /// New deliveries leased to the ingesting node (bodies attached).
        claimed: Vec<PendingDelivery>,
        /// New deliveries left unleased in the store (for any node to claim).
        unclaimed: usize,
    },
    /// The idempotency key was seen before: the first answer.
    Replayed(serde_json::Value),
}

/// What asking the store to hold a delivery came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HoldOutcome {
    /// Held: its endpoint is stored disabled.
    Held,
    /// Not held: the delivery is pending but its endpoint is stored enabled (by now).
    EndpointEnabled,
    /// Not held: the delivery is no longer pending (delivered, dead, held already, or gone).
    NotPending,
}

/// What to claim.
#[derive(Debug, Clone)]
pub struct ClaimRequest {
    /// Who claims, and until when.
    pub lease: Lease,
    /// At most this many deliveries.
    pub limit: usize,
    /// Only deliveries whose next attempt is due before this (unix ms).
    pub due_before_ms: i64,
    /// Now (unix ms): leases that lapsed before this are taken over first.
    pub now_ms: i64,
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
    /// When pending: whether the node keeps its lease (it holds the retry in memory) or releases
    /// the delivery to the store (any node claims it when due). Ignored otherwise: a delivered
    /// or dead delivery never keeps a lease.
    pub keep_lease: bool,
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

/// How a new signing key joins the others.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyInsert {
    /// Only if its algorithm has no current key yet (first use, on any node): `false` when
    /// another node got there first.
    IfNoCurrent,
    /// Retire the current key of its algorithm and make this one current.
    Rotate,
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

/// A tenant plugin's component as stored (every node loads it from here).
#[derive(Clone)]
pub struct StoredPlugin {
    /// Owner.
    pub tenant_id: String,
    /// Name without the `tenant:` prefix.
    pub name: String,
    /// Hex SHA-256 of `bytes`.
    pub sha256: String,
    /// The component.
    pub bytes: Vec<u8>,
    /// Unix seconds.
    pub updated_at: i64,
}

/// A tenant plugin without its bytes (to see what changed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredPluginInfo {
    /// Owner.
    pub tenant_id: String,
    /// Name without the `tenant:` prefix.
    pub name: String,
    /// Hex SHA-256 of the component.
    pub sha256: String,
    /// Size of the component.
    pub size: u64,
}

/// Everything the in-memory directory is built from.
#[derive(Debug, Default)]
pub struct DirectoryRows {
    /// Tenants with the SHA-256 (hex) of their token.
    pub tenants: Vec<(Tenant, String)>,
    /// Endpoints, oldest first.
    pub endpoints: Vec<Endpoint>,
}

/// Change counters of what every node must agree on. A node compares them with what it has
/// loaded and reloads what moved.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Revisions {
    /// Tenants and endpoints.
    pub directory: i64,
    /// Signing keys.
    pub keys: i64,
    /// Client certificates.
    pub certificates: i64,
    /// Tenant plugins.
    pub plugins: i64,
    /// Event-type catalogs (and their tenants' settings).
    pub event_types: i64,
}

/// Which change counter a write moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Aggregate {
    /// Tenants and endpoints.
    Directory,
    /// Signing keys.
    Keys,
    /// Client certificates.
    Certificates,
    /// Tenant plugins.
    Plugins,
    /// Event-type catalogs.
    EventTypes,
}

impl Aggregate {
    /// Name as stored in the `revisions` table.
    pub fn as_str(self) -> &'static str {
        match self {
            Aggregate::Directory => "directory",
            Aggregate::Keys => "keys",
            Aggregate::Certificates => "certificates",
            Aggregate::Plugins => "plugins",
            Aggregate::EventTypes => "event_types",
        }
    }
}

/// Counters describing how well writes are grouped.
#[derive(Debug, Clone, Copy, Default)]
pub struct WriteStats {
    /// Transactions committed.
    pub commits: u64,
    /// Writes committed.
    pub writes: u64,
}

/// What a backend tells the nodes without being asked (PostgreSQL LISTEN/NOTIFY).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notice {
    /// New or released deliveries may be waiting to be claimed.
    Work,
    /// Something every node must agree on changed: read the revisions.
    Changed,
}
