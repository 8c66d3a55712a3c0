//! The use cases behind the API: each takes checked input, does the work through the store,
//! the dispatcher and the registry, and answers in domain terms. The HTTP layer only maps
//! requests and errors.

use sha2::{Digest, Sha256};

use super::Engine;
use crate::model::Endpoint;
use crate::model::now_unix;
use crate::plugins::{LoadError, PluginKind, PluginStatus};
use crate::secrets::{SecretPath, secret_paths_of_schema};
use crate::store::{
    IngestOutcome, IngestRequest, NewEvent, PendingDelivery, StoreError, StoredPlugin,
};

/// Why a use case failed.
#[derive(Debug, thiserror::Error)]
pub enum UseCaseError {
    /// The store refused or failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A plugin was refused (the message says why).
    #[error(transparent)]
    Plugin(#[from] LoadError),
}

impl Engine {
    /// The secret fields of each step of `endpoint`, as its plugins' config schemas declare
    /// them (`writeOnly` / `x-secret`). A step whose plugin is not loaded declares none. A
    /// bearer-style step (a `provider_config` object) also gets its token provider's secret
    /// fields under `provider_config`: the provider is the step's `provider`, else the default
    /// its plugin's schema gives `provider` (`bearer`: `oauth2-client-credentials`).
    pub fn secret_paths(&self, endpoint: &Endpoint) -> Vec<Vec<SecretPath>> {
        let tenant = &endpoint.tenant_id;
        endpoint
            .spec
            .steps
            .iter()
            .map(|step| {
                let Ok(plugin) = self.registry.resolve(tenant, &step.plugin) else {
                    return Vec::new();
                };
                let schema = &plugin.info().config_schema;
                let mut paths = secret_paths_of_schema(schema);
                let provider = step
                    .config
                    .get("provider")
                    .or_else(|| schema.pointer("/properties/provider/default"))
                    .and_then(|p| p.as_str());
                if let Some(provider) = provider
                    && step
                        .config
                        .get("provider_config")
                        .is_some_and(|c| c.is_object())
                    && let Ok(token) = self.registry.resolve(tenant, provider)
                    && token.info().kind == PluginKind::TokenProvider
                {
                    for mut path in secret_paths_of_schema(&token.info().config_schema) {
                        path.insert(0, "provider_config".to_string());
                        paths.push(path);
                    }
                }
                paths
            })
            .collect()
    }

    /// Stores an endpoint (created or changed), its secrets sealed, and serves it at once on
    /// this node; the others reload it within `store.poll_interval`.
    pub async fn put_endpoint(
        &self,
        endpoint: Endpoint,
    ) -> Result<std::sync::Arc<Endpoint>, StoreError> {
        let paths = self.secret_paths(&endpoint);
        self.store.put_endpoint(endpoint, &paths).await
    }

    /// Ingests events: stores them and their deliveries (all or none, honouring the
    /// idempotency key on every node), leases to this node as many new deliveries as its window
    /// has room for and schedules them; the rest wait in the store for whichever node has room.
    /// Returns the answer (the first answer for a repeated key).
    pub async fn ingest(
        &self,
        tenant: &str,
        events: Vec<NewEvent>,
        idempotency_key: Option<String>,
        response: serde_json::Value,
    ) -> Result<serde_json::Value, StoreError> {
        let count = events.len() as u64;
        let deliveries: usize = events.iter().map(|e| e.endpoint_ids.len()).sum();
        let room = self.dispatcher.reserve(deliveries);
        let outcome = self
            .store
            .ingest(IngestRequest {
                tenant: tenant.to_string(),
                events,
                idempotency_key,
                response,
                lease: self.dispatcher.lease(),
                claim: room,
            })
            .await;
        match outcome {
            Ok(IngestOutcome::Created {
                response,
                claimed,
                unclaimed,
            }) => {
                self.metrics.events_ingested.inc_by(count);
                self.dispatcher
                    .unreserve(room.saturating_sub(claimed.len()));
                self.dispatcher.enqueue_reserved(claimed);
                if unclaimed > 0 {
                    self.dispatcher.note_backlog();
                }
                Ok(response)
            }
            Ok(IngestOutcome::Replayed(response)) => {
                self.dispatcher.unreserve(room);
                Ok(response)
            }
            Err(e) => {
                self.dispatcher.unreserve(room);
                Err(e)
            }
        }
    }

    /// Replays a delivered or dead delivery now, with a fresh retry schedule.
    pub async fn replay(
        &self,
        tenant: &str,
        event: &str,
        delivery: &str,
    ) -> Result<PendingDelivery, StoreError> {
        let job = self
            .store
            .requeue(tenant, event, delivery, &self.dispatcher.lease())
            .await?;
        self.dispatcher.enqueue(vec![job.clone()]);
        Ok(job)
    }

    /// Checks, compiles and stores a tenant's plugin, then makes it live here; other nodes
    /// load it from the store when they see the change.
    pub async fn put_tenant_plugin(
        &self,
        tenant: &str,
        name: &str,
        bytes: &[u8],
    ) -> Result<PluginStatus, UseCaseError> {
        let stored = StoredPlugin {
            tenant_id: tenant.to_string(),
            name: name.to_string(),
            sha256: hex::encode(Sha256::digest(bytes)),
            bytes: bytes.to_vec(),
            updated_at: now_unix(),
        };
        let store = self.store.clone();
        Ok(self
            .registry
            .put_tenant_plugin(tenant, name, bytes, async move {
                store.put_tenant_plugin(&stored).await
            })
            .await?)
    }

    /// Deletes a tenant plugin everywhere. `false` if there was none.
    pub async fn delete_tenant_plugin(
        &self,
        tenant: &str,
        name: &str,
    ) -> Result<bool, UseCaseError> {
        let stored = self.store.delete_tenant_plugin(tenant, name).await?;
        let live = self.registry.delete_tenant_plugin(tenant, name).await;
        Ok(stored || live)
    }

    /// Deletes a tenant with its endpoints, events, deliveries, certificates and plugins.
    pub async fn delete_tenant(&self, tenant: &str) -> Result<bool, StoreError> {
        let deleted = self.store.delete_tenant(tenant).await?;
        self.registry.forget_tenant(tenant).await;
        self.tls.client_certificates_changed();
        Ok(deleted)
    }

    /// Rotates the master key that seals secrets at rest, without downtime. With a generated
    /// key (`<data_dir>/master-key`), a new key is generated and the old one kept as previous;
    /// with a configured key (`secrets.master_key`, the same on every node), the operator has
    /// already made the new key current and the old one previous on every node. Either way every
    /// secret is then sealed again under the current key.
    pub async fn rotate_master_key(&self) -> Result<MasterKeyRotation, UseCaseError> {
        if self.config.secrets.master_key.is_none() {
            let sealer = crate::secrets::rotate_key_file(&self.config.data_dir)
                .map_err(|e| StoreError::Secret(e.to_string()))?;
            self.store.set_sealer(sealer);
        }
        let resealed = self.store.reseal_all().await?;
        let sealer = self.store.sealer();
        Ok(MasterKeyRotation {
            key_id: sealer.key_id().to_string(),
            previous_key_ids: sealer.previous_key_ids(),
            resealed,
        })
    }
}

/// What a master key rotation did.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct MasterKeyRotation {
    /// Id of the key that seals from now on (the first 8 bytes of its SHA-256, hex).
    pub key_id: String,
    /// Ids of earlier keys that still unseal.
    pub previous_key_ids: Vec<String>,
    /// Records sealed again under the new key.
    pub resealed: u64,
}
