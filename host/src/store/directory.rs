//! The in-memory directory of tenants and endpoints: the hot path (authenticating a call,
//! fanning an event out) reads it instead of the database. Built from [`DirectoryRows`], updated
//! after each committed change on this node, and rebuilt when another node changed the store.

use std::collections::HashMap;
use std::sync::Arc;

use super::DirectoryRows;
use crate::model::{Endpoint, Tenant};

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

    /// The tenant's endpoints subscribed to `event_type`, oldest first: enabled ones get a
    /// pending delivery, disabled ones a held one.
    pub fn subscribers(&self, tenant: &str, event_type: &str) -> Subscribers {
        self.select(tenant, |e| e.subscribes_to(event_type))
    }

    /// The tenant's endpoints that receive its system events, oldest first.
    pub fn system_subscribers(&self, tenant: &str) -> Subscribers {
        self.select(tenant, |e| e.spec.system_events)
    }

    fn select(&self, tenant: &str, wanted: impl Fn(&Endpoint) -> bool) -> Subscribers {
        let mut subscribers = Subscribers::default();
        for endpoint in self.endpoints_by_tenant.get(tenant).into_iter().flatten() {
            if wanted(endpoint) {
                if endpoint.spec.enabled {
                    subscribers.attempted.push(endpoint.id.clone());
                } else {
                    subscribers.held.push(endpoint.id.clone());
                }
            }
        }
        subscribers
    }

    pub(crate) fn put_tenant(&mut self, tenant: Tenant, token_hash: String) {
        self.tenant_by_token_hash
            .insert(token_hash, tenant.id.clone());
        self.tenants.insert(tenant.id.clone(), tenant);
    }

    pub(crate) fn remove_tenant(&mut self, id: &str) {
        self.tenants.remove(id);
        self.tenant_by_token_hash.retain(|_, tenant| tenant != id);
        for endpoint in self.endpoints_by_tenant.remove(id).unwrap_or_default() {
            self.endpoints.remove(&endpoint.id);
        }
    }

    pub(crate) fn put_endpoint(&mut self, endpoint: Endpoint) {
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

    pub(crate) fn remove_endpoint(&mut self, tenant: &str, id: &str) {
        self.endpoints.remove(id);
        if let Some(list) = self.endpoints_by_tenant.get_mut(tenant) {
            list.retain(|e| e.id != id);
        }
    }
}

impl Directory {
    /// Builds the directory from the store's rows.
    pub fn from_rows(rows: DirectoryRows) -> Self {
        let mut directory = Directory::default();
        for (tenant, hash) in rows.tenants {
            directory.put_tenant(tenant, hash);
        }
        for endpoint in rows.endpoints {
            directory.put_endpoint(endpoint);
        }
        directory
    }
}

/// The endpoints an event goes to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Subscribers {
    /// Enabled endpoints: their deliveries are attempted.
    pub attempted: Vec<String>,
    /// Disabled endpoints: their deliveries are held until the endpoint is enabled.
    pub held: Vec<String>,
}

impl Subscribers {
    /// Deliveries the event gets.
    pub fn len(&self) -> usize {
        self.attempted.len() + self.held.len()
    }

    /// True when the event goes nowhere.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
