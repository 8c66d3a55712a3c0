//! The records of the event-type catalog and of recovery that cross the store's interface.

/// An event type of a tenant's catalog, as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEventType {
    /// Owner.
    pub tenant_id: String,
    /// The type's name (`invoice.paid`), unique per tenant.
    pub name: String,
    /// Free text.
    pub description: String,
    /// The JSON Schema (draft 2020-12) of the events' `data`, as JSON text; `None`: any data.
    pub schema: Option<String>,
    /// Kept for existing producers and subscribers, not for new ones.
    pub deprecated: bool,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds.
    pub updated_at: i64,
}

/// A tenant's catalog: its settings and its event types, read together.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StoredCatalog {
    /// Endpoints may only subscribe to types of the catalog.
    pub strict_event_types: bool,
    /// The types, by name.
    pub event_types: Vec<StoredEventType>,
}

/// One batch of a recovery: the failed or dead deliveries of one endpoint, put back in the queue
/// due now and unleased (whichever node has room claims them, as paced as any other work).
#[derive(Debug, Clone)]
pub struct RecoverRequest {
    /// The tenant.
    pub tenant: String,
    /// The endpoint.
    pub endpoint: String,
    /// Only deliveries of events created at or after this (unix seconds).
    pub since: i64,
    /// Only deliveries whose id sorts after this one (the previous batch's last).
    pub after: Option<String>,
    /// At most this many deliveries.
    pub limit: usize,
    /// Now (unix milliseconds): a pending delivery counts as failed when its next attempt is
    /// later than this, nobody holds it and no recovery moved it yet.
    pub now_ms: i64,
}

/// What one recovery batch did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoverBatch {
    /// Deliveries put back in the queue.
    pub requeued: u64,
    /// The id of the last one (the next batch starts after it); `None` when there were none.
    pub last: Option<String>,
}
