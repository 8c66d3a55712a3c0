//! The use cases of the event-type catalog: list, read, create, change and delete a tenant's
//! event types, its `strict_event_types` setting, and the two checks the catalog imposes: an
//! event's `data` against its type's schema (at ingest) and an endpoint's subscriptions (when
//! the tenant is strict).

use std::sync::Arc;

use super::Engine;
use crate::event_types::{
    CatalogSettings, EventType, MAX_DESCRIPTION_CHARS, MAX_EVENT_TYPES, TenantCatalog, compile,
    valid_event_type,
};
use crate::model::now_unix;
use crate::store::{StoreError, StoredEventType};

/// Why a catalog use case failed.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// The store refused or failed (`NotFound`, `Conflict`, …).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// An input field is wrong.
    #[error("{field}: {message}")]
    Invalid {
        /// The field (`name`, `schema`, `event_types[1]`).
        field: String,
        /// Why.
        message: String,
    },
}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> CatalogError {
    CatalogError::Invalid {
        field: field.into(),
        message: message.into(),
    }
}

/// What to create, or (each `Some`) what to change.
#[derive(Debug, Clone, Default)]
pub struct EventTypeChange {
    /// Free text.
    pub description: Option<String>,
    /// `Some(None)` removes the schema.
    pub schema: Option<Option<serde_json::Value>>,
    /// The deprecated flag.
    pub deprecated: Option<bool>,
}

/// Checks a change's fields; returns the schema as stored text (`Some(None)`: removed).
fn checked(change: &EventTypeChange) -> Result<Option<Option<String>>, CatalogError> {
    if let Some(description) = &change.description
        && description.chars().count() > MAX_DESCRIPTION_CHARS
    {
        return Err(invalid(
            "description",
            format!("must be at most {MAX_DESCRIPTION_CHARS} characters"),
        ));
    }
    match &change.schema {
        None => Ok(None),
        Some(None) => Ok(Some(None)),
        Some(Some(schema)) => {
            compile(schema).map_err(|e| invalid("schema", e.to_string()))?;
            Ok(Some(Some(schema.to_string())))
        }
    }
}

impl Engine {
    /// The tenant's event types, by name.
    pub async fn list_event_types(&self, tenant: &str) -> Result<Vec<EventType>, StoreError> {
        let catalog = self.store.catalog(tenant).await?;
        Ok(catalog
            .event_types
            .iter()
            .map(EventType::from_stored)
            .collect())
    }

    /// One event type of the tenant (`NotFound` otherwise).
    pub async fn event_type(&self, tenant: &str, name: &str) -> Result<EventType, StoreError> {
        self.store
            .catalog(tenant)
            .await?
            .event_types
            .iter()
            .find(|t| t.name == name)
            .map(EventType::from_stored)
            .ok_or_else(|| StoreError::NotFound {
                what: "event type",
                id: name.to_string(),
            })
    }

    /// Adds an event type to the tenant's catalog (its schema checked and compiled first);
    /// `Conflict` if the name is taken.
    pub async fn create_event_type(
        &self,
        tenant: &str,
        name: &str,
        change: EventTypeChange,
    ) -> Result<EventType, CatalogError> {
        if !valid_event_type(name) {
            return Err(invalid(
                "name",
                "must be 1-200 characters of letters, digits, '.', '_', '-' and ':'",
            ));
        }
        let schema = checked(&change)?;
        let existing = self.store.catalog(tenant).await?.event_types.len();
        if existing >= MAX_EVENT_TYPES {
            return Err(invalid(
                "name",
                format!("the tenant already has {existing} event types, the most allowed"),
            ));
        }
        let now = now_unix();
        let stored = StoredEventType {
            tenant_id: tenant.to_string(),
            name: name.to_string(),
            description: change.description.unwrap_or_default(),
            schema: schema.flatten(),
            deprecated: change.deprecated.unwrap_or(false),
            created_at: now,
            updated_at: now,
        };
        self.store.create_event_type(&stored).await?;
        self.event_types.invalidate();
        Ok(EventType::from_stored(&stored))
    }

    /// Changes an event type of the tenant (`NotFound` if it has none of that name).
    pub async fn update_event_type(
        &self,
        tenant: &str,
        name: &str,
        change: EventTypeChange,
    ) -> Result<EventType, CatalogError> {
        let schema = checked(&change)?;
        let current = self
            .store
            .catalog(tenant)
            .await?
            .event_types
            .into_iter()
            .find(|t| t.name == name)
            .ok_or_else(|| StoreError::NotFound {
                what: "event type",
                id: name.to_string(),
            })?;
        let stored = StoredEventType {
            description: change.description.unwrap_or(current.description.clone()),
            schema: schema.unwrap_or(current.schema.clone()),
            deprecated: change.deprecated.unwrap_or(current.deprecated),
            updated_at: now_unix().max(current.updated_at),
            ..current
        };
        self.store.update_event_type(&stored).await?;
        self.event_types.invalidate();
        Ok(EventType::from_stored(&stored))
    }

    /// Deletes an event type; `false` if there was none. Endpoints subscribed to it keep their
    /// subscription (events of the type are no longer validated).
    pub async fn delete_event_type(&self, tenant: &str, name: &str) -> Result<bool, StoreError> {
        let deleted = self.store.delete_event_type(tenant, name).await?;
        self.event_types.invalidate();
        Ok(deleted)
    }

    /// The tenant's catalog settings.
    pub async fn catalog_settings(&self, tenant: &str) -> Result<CatalogSettings, StoreError> {
        Ok(CatalogSettings {
            strict_event_types: self.store.catalog(tenant).await?.strict_event_types,
        })
    }

    /// Changes the tenant's catalog settings. Turning `strict_event_types` on does not check
    /// the existing endpoints: it applies to their next change.
    pub async fn set_catalog_settings(
        &self,
        tenant: &str,
        settings: CatalogSettings,
    ) -> Result<CatalogSettings, StoreError> {
        self.store
            .set_strict_event_types(tenant, settings.strict_event_types)
            .await?;
        self.event_types.invalidate();
        Ok(settings)
    }

    /// The tenant's catalog as this node caches it (read from the store on first use).
    pub async fn tenant_catalog(&self, tenant: &str) -> Result<Arc<TenantCatalog>, StoreError> {
        match self.event_types.get(tenant) {
            Ok(catalog) => Ok(catalog),
            Err(generation) => {
                let catalog = Arc::new(TenantCatalog::from_stored(
                    self.store.catalog(tenant).await?,
                ));
                self.event_types.insert(tenant, generation, catalog.clone());
                Ok(catalog)
            }
        }
    }

    /// When the tenant is strict, checks that each of an endpoint's subscription patterns
    /// names a known type (a `prefix.*` pattern must match at least one; `*` is allowed).
    pub async fn check_subscriptions(
        &self,
        tenant: &str,
        patterns: &[String],
    ) -> Result<(), CatalogError> {
        let catalog = self.tenant_catalog(tenant).await?;
        if !catalog.strict {
            return Ok(());
        }
        for (i, pattern) in patterns.iter().enumerate() {
            if pattern == "*" || catalog.knows(pattern) {
                continue;
            }
            if pattern.ends_with(".*") && catalog.matches(pattern) {
                continue;
            }
            return Err(invalid(
                format!("event_types[{i}]"),
                format!(
                    "`{pattern}` is not in the tenant's event-type catalog, and the tenant has \
                     strict_event_types on (add the type under /v1/tenants/{tenant}/event-types)"
                ),
            ));
        }
        Ok(())
    }
}
