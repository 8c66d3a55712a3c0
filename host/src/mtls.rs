//! Per-endpoint TLS: which client certificate the host presents and which issuers it trusts for
//! the receiver. Builds the rustls configuration from the endpoint's `tls` settings and the
//! tenant's client certificate record, and caches it until either changes.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::http::TlsChoice;
use crate::model::Endpoint;
use crate::store::Store;

/// Resolves endpoints to TLS configurations.
pub struct TlsResolver {
    store: Arc<Store>,
    generation: AtomicU64,
    cache: Mutex<HashMap<String, (i64, u64, TlsChoice)>>,
}

impl TlsResolver {
    /// A resolver reading client certificates from `store`.
    pub fn new(store: Arc<Store>) -> Self {
        Self {
            store,
            generation: AtomicU64::new(0),
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// Call after any client certificate changed: configurations are rebuilt on next use.
    pub fn client_certificates_changed(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
    }

    /// The TLS configuration for `endpoint`, or `None` for the default (public roots, no client
    /// certificate).
    pub async fn for_endpoint(&self, endpoint: &Endpoint) -> Result<Option<TlsChoice>, String> {
        let Some(settings) = &endpoint.spec.tls else {
            return Ok(None);
        };
        if settings.client_certificate.is_none() && settings.trusted_issuers.is_none() {
            return Ok(None);
        }
        let generation = self.generation.load(Ordering::SeqCst);
        if let Some((updated_at, cached_generation, choice)) = self
            .cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&endpoint.id)
            && *updated_at == endpoint.updated_at
            && *cached_generation == generation
        {
            return Ok(Some(choice.clone()));
        }
        let identity = match &settings.client_certificate {
            None => None,
            Some(id) => {
                let record = self
                    .store
                    .client_certificate(&endpoint.tenant_id, id)
                    .await
                    .map_err(|e| format!("client certificate: {e}"))?;
                let Some(chain) = record.certificate_pem else {
                    return Err(format!(
                        "client certificate `{id}` has no signed certificate yet: upload it with PUT /v1/tenants/{}/client-certificates/{id}/certificate",
                        endpoint.tenant_id
                    ));
                };
                Some((chain, record.private_key_pem))
            }
        };
        let config = crate::tls::client_config(
            settings.trusted_issuers.as_deref(),
            identity
                .as_ref()
                .map(|(chain, key)| (chain.as_str(), key.as_str())),
        )
        .map_err(|e| format!("TLS settings: {e}"))?;
        let choice = TlsChoice {
            key: format!("{}@{}#{generation}", endpoint.id, endpoint.updated_at),
            config,
        };
        self.cache.lock().unwrap_or_else(|p| p.into_inner()).insert(
            endpoint.id.clone(),
            (endpoint.updated_at, generation, choice.clone()),
        );
        Ok(Some(choice))
    }
}
