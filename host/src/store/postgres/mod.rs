//! STUB: replaced by the real backend.
#![allow(unused_variables)]
use super::*;

/// Stub.
pub struct PostgresBackend;

#[async_trait::async_trait]
impl Backend for PostgresBackend {
    fn kind(&self) -> &'static str {
        todo!("PostgresBackend")
    }
    fn shared(&self) -> bool {
        todo!("PostgresBackend")
    }
    fn write_stats(&self) -> WriteStats {
        todo!("PostgresBackend")
    }
    async fn flush(&self) -> Result<(), StoreError> {
        todo!("PostgresBackend")
    }
    async fn revisions(&self) -> Result<Revisions, StoreError> {
        todo!("PostgresBackend")
    }
    async fn directory_rows(&self) -> Result<DirectoryRows, StoreError> {
        todo!("PostgresBackend")
    }
    async fn create_tenant(&self, tenant: &Tenant, token_hash: &str) -> Result<(), StoreError> {
        todo!("PostgresBackend")
    }
    async fn delete_tenant(&self, id: &str) -> Result<bool, StoreError> {
        todo!("PostgresBackend")
    }
    async fn put_endpoint(&self, endpoint: &Endpoint) -> Result<(), StoreError> {
        todo!("PostgresBackend")
    }
    async fn delete_endpoint(&self, tenant: &str, id: &str) -> Result<bool, StoreError> {
        todo!("PostgresBackend")
    }
    async fn ingest(&self, request: IngestRequest) -> Result<IngestOutcome, StoreError> {
        todo!("PostgresBackend")
    }
    fn record_attempt(&self, record: AttemptRecord, done: RecordDone) {
        todo!("PostgresBackend")
    }
    async fn mark_dead(&self, delivery_id: &str, reason: &str) -> Result<(), StoreError> {
        todo!("PostgresBackend")
    }
    async fn requeue( &self, tenant: &str, event: &str, delivery: &str, lease: &Lease, ) -> Result<PendingDelivery, StoreError> {
        todo!("PostgresBackend")
    }
    async fn claim(&self, request: &ClaimRequest) -> Result<Vec<PendingDelivery>, StoreError> {
        todo!("PostgresBackend")
    }
    async fn renew_leases(&self, lease: &Lease) -> Result<u64, StoreError> {
        todo!("PostgresBackend")
    }
    async fn release_leases( &self, owner: &str, deliveries: Option<&[String]>, ) -> Result<u64, StoreError> {
        todo!("PostgresBackend")
    }
    async fn event_body(&self, event_id: &str) -> Result<Option<Vec<u8>>, StoreError> {
        todo!("PostgresBackend")
    }
    async fn acquire_endpoint_slot( &self, endpoint_id: &str, max: u32, lease: &Lease, now_ms: i64, ) -> Result<Option<u32>, StoreError> {
        todo!("PostgresBackend")
    }
    async fn release_endpoint_slot( &self, endpoint_id: &str, slot: u32, owner: &str, ) -> Result<(), StoreError> {
        todo!("PostgresBackend")
    }
    async fn event(&self, tenant: &str, event: &str) -> Result<EventSummary, StoreError> {
        todo!("PostgresBackend")
    }
    async fn deliveries_of_event( &self, tenant: &str, event: &str, ) -> Result<Vec<Delivery>, StoreError> {
        todo!("PostgresBackend")
    }
    async fn attempts_of_delivery( &self, tenant: &str, event: &str, delivery: &str, ) -> Result<Vec<Attempt>, StoreError> {
        todo!("PostgresBackend")
    }
    async fn count_pending(&self) -> Result<u64, StoreError> {
        todo!("PostgresBackend")
    }
    async fn signing_keys(&self) -> Result<Vec<StoredSigningKey>, StoreError> {
        todo!("PostgresBackend")
    }
    async fn add_signing_key( &self, key: &StoredSigningKey, mode: KeyInsert, ) -> Result<bool, StoreError> {
        todo!("PostgresBackend")
    }
    async fn replace_signing_key_secret(&self, key: &StoredSigningKey) -> Result<(), StoreError> {
        todo!()
    }
    async fn prune_signing_keys(&self, cutoff: i64) -> Result<u64, StoreError> {
        todo!("PostgresBackend")
    }
    async fn put_client_certificate( &self, record: &StoredClientCertificate, ) -> Result<(), StoreError> {
        todo!("PostgresBackend")
    }
    async fn client_certificates( &self, tenant: &str, ) -> Result<Vec<StoredClientCertificate>, StoreError> {
        todo!("PostgresBackend")
    }
    async fn client_certificate( &self, tenant: &str, id: &str, ) -> Result<StoredClientCertificate, StoreError> {
        todo!("PostgresBackend")
    }
    async fn delete_client_certificate(&self, tenant: &str, id: &str) -> Result<bool, StoreError> {
        todo!("PostgresBackend")
    }
    async fn put_tenant_plugin(&self, plugin: &StoredPlugin) -> Result<(), StoreError> {
        todo!("PostgresBackend")
    }
    async fn delete_tenant_plugin(&self, tenant: &str, name: &str) -> Result<bool, StoreError> {
        todo!("PostgresBackend")
    }
    async fn tenant_plugins(&self) -> Result<Vec<StoredPluginInfo>, StoreError> {
        todo!("PostgresBackend")
    }
    async fn tenant_plugin( &self, tenant: &str, name: &str, ) -> Result<Option<StoredPlugin>, StoreError> {
        todo!("PostgresBackend")
    }
}
impl PostgresBackend {
    /// Stub.
    pub async fn connect(_url: &str, _pool: usize, _max_batch: usize) -> Result<Self, StoreError> {
        todo!()
    }
}
