//! Per-endpoint TLS: which client certificate the host presents and which issuers it trusts for
//! the receiver. Builds the rustls configuration from the endpoint's `tls` settings and the
//! tenant's client certificate record, and caches it until either changes.
//!
//! **Staged certificates.** A record may hold a staged next certificate with its own key. Once
//! it is due (uploaded, and its `activate_at` reached), every node presents it on new
//! connections (the connection pool's key changes with the identity; requests already on a
//! connection finish on it) and one of them makes it the record's current certificate in the
//! store. A receiver that trusts both issuers sees no failed request during the switch.

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
    /// By endpoint: its `updated_at`, the generation, until when (unix seconds) the choice
    /// holds (a staged certificate due later), and the choice.
    cache: Mutex<HashMap<String, Cached>>,
}

struct Cached {
    updated_at: i64,
    generation: u64,
    until: Option<i64>,
    choice: TlsChoice,
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
        let now = crate::model::now_unix();
        if let Some(cached) = self
            .cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&endpoint.id)
            && cached.updated_at == endpoint.updated_at
            && cached.generation == generation
            && cached.until.is_none_or(|until| now < until)
        {
            return Ok(Some(cached.choice.clone()));
        }
        let mut until = None;
        let mut staged_in_use = false;
        let identity = match &settings.client_certificate {
            None => None,
            Some(id) => {
                let tenant = &endpoint.tenant_id;
                let record = self
                    .store
                    .client_certificate(tenant, id)
                    .await
                    .map_err(|e| format!("client certificate: {e}"))?;
                let staged = self
                    .store
                    .staged_certificate(tenant, id)
                    .await
                    .map_err(|e| format!("client certificate: {e}"))?;
                match staged {
                    Some(staged) if staged.is_due(now) => {
                        self.promote(tenant, id, now);
                        staged_in_use = true;
                        staged
                            .certificate_pem
                            .map(|chain| (chain, staged.private_key_pem))
                    }
                    staged => {
                        until = staged
                            .filter(|s| s.certificate_pem.is_some())
                            .and_then(|s| s.activate_at);
                        let Some(chain) = record.certificate_pem else {
                            return Err(format!(
                                "client certificate `{id}` has no signed certificate yet: upload it with PUT /v1/tenants/{tenant}/client-certificates/{id}/certificate"
                            ));
                        };
                        Some((chain, record.private_key_pem))
                    }
                }
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
            key: format!(
                "{}@{}#{generation}{}",
                endpoint.id,
                endpoint.updated_at,
                if staged_in_use { "+staged" } else { "" }
            ),
            config,
        };
        self.cache.lock().unwrap_or_else(|p| p.into_inner()).insert(
            endpoint.id.clone(),
            Cached {
                updated_at: endpoint.updated_at,
                generation,
                until,
                choice: choice.clone(),
            },
        );
        Ok(Some(choice))
    }

    /// Makes a due staged certificate the record's current one in the store, in the
    /// background (the identity in use does not change: the promoted certificate is the staged
    /// one). Nodes racing here promote once.
    fn promote(&self, tenant: &str, id: &str, now: i64) {
        let (store, tenant, id) = (self.store.clone(), tenant.to_string(), id.to_string());
        tokio::spawn(async move {
            if let Err(e) = store.promote_staged_certificate(&tenant, &id, now).await {
                tracing::warn!(error = %e, %tenant, certificate = %id, "cannot promote a staged client certificate; trying again when the configuration is next rebuilt");
            }
        });
    }
}
