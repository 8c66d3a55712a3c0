//! The event-type catalog: a tenant's named event types, each with a description, an optional
//! JSON Schema (draft 2020-12) of its events' `data`, and a deprecated flag; and the tenant's
//! `strict_event_types` setting (endpoints may then only subscribe to known types).
//!
//! **Bounds.** A schema is at most [`MAX_SCHEMA_BYTES`] of JSON nested at most
//! [`MAX_SCHEMA_DEPTH`] levels; it may not reference anything outside itself (no retrieval);
//! its `pattern`s run on the linear-time `regex` engine with a compiled-size cap
//! ([`MAX_PATTERN_BYTES`]), so neither compiling nor validating can be driven into catastrophic
//! backtracking. A tenant holds at most [`MAX_EVENT_TYPES`] types.
//!
//! **Cache.** Ingest validates against compiled validators kept per node ([`EventTypeCache`]):
//! a tenant's catalog is read from the store on first use and each schema compiled on the first
//! event of its type; the whole cache is dropped when the store's `event_types` (or `directory`)
//! change counter moves, whichever node made the change.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use serde::Serialize;
use utoipa::ToSchema;

use crate::store::{StoredCatalog, StoredEventType};

/// Largest schema accepted, in bytes of JSON.
pub const MAX_SCHEMA_BYTES: usize = 64 * 1024;
/// Deepest nesting of arrays and objects in a schema.
pub const MAX_SCHEMA_DEPTH: usize = 32;
/// Largest compiled form of one `pattern` (bytes, the `regex` crate's size limit).
pub const MAX_PATTERN_BYTES: usize = 256 * 1024;
/// Event types of one tenant at most.
pub const MAX_EVENT_TYPES: usize = 1000;
/// Longest description, in characters.
pub const MAX_DESCRIPTION_CHARS: usize = 2000;

/// Letters, digits, `.`, `_`, `-`, `:`; 1-200 characters: the names of event types (and what
/// an event's `type` must be).
pub fn valid_event_type(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 200
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b':'))
}

/// An event type as the API shows it.
#[derive(Debug, Clone, Serialize, ToSchema, PartialEq)]
pub struct EventType {
    /// The name events carry as `type` (`invoice.paid`).
    pub name: String,
    /// Free text.
    pub description: String,
    /// JSON Schema (draft 2020-12) that an event's `data` must satisfy; `null`: any data.
    #[schema(value_type = Option<serde_json::Value>)]
    pub schema: Option<serde_json::Value>,
    /// Kept for existing producers and subscribers; new integrations should not use it.
    pub deprecated: bool,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds.
    pub updated_at: i64,
}

impl EventType {
    /// The API's view of a stored type (a schema that no longer parses shows as `null`).
    pub fn from_stored(stored: &StoredEventType) -> Self {
        Self {
            name: stored.name.clone(),
            description: stored.description.clone(),
            schema: stored
                .schema
                .as_deref()
                .and_then(|s| serde_json::from_str(s).ok()),
            deprecated: stored.deprecated,
            created_at: stored.created_at,
            updated_at: stored.updated_at,
        }
    }
}

/// A tenant's catalog settings.
#[derive(Debug, Clone, Copy, Serialize, ToSchema, PartialEq, Eq, Default)]
pub struct CatalogSettings {
    /// When on, an endpoint's `event_types` may only name types of the catalog (a `prefix.*`
    /// pattern must match at least one); `*` and an empty list (every event) stay allowed.
    pub strict_event_types: bool,
}

/// Why a schema is refused.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum SchemaError {
    /// Larger than [`MAX_SCHEMA_BYTES`].
    #[error("is {0} bytes of JSON; at most {MAX_SCHEMA_BYTES} are accepted")]
    TooLarge(usize),
    /// Nested deeper than [`MAX_SCHEMA_DEPTH`].
    #[error("is nested more than {MAX_SCHEMA_DEPTH} levels deep")]
    TooDeep,
    /// Not an object or a boolean.
    #[error("must be a JSON Schema: an object (or true/false)")]
    NotASchema,
    /// Declares another draft than 2020-12.
    #[error(
        "declares `$schema` {0}; only draft 2020-12 (https://json-schema.org/draft/2020-12/schema) is supported"
    )]
    OtherDraft(String),
    /// The validator refused it (invalid keyword values, an unresolvable `$ref`, a bad pattern).
    #[error("is not a valid draft 2020-12 schema: {0}")]
    Invalid(String),
}

/// The first place where an event's `data` breaks its type's schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// JSON pointer into `data` (`""` for `data` itself, `/items/0/price`).
    pub pointer: String,
    /// What is wrong (without the offending value).
    pub message: String,
}

/// Checks a schema's size and shape and compiles it.
pub fn compile(schema: &serde_json::Value) -> Result<jsonschema::Validator, SchemaError> {
    let size = serde_json::to_vec(schema).map(|v| v.len()).unwrap_or(0);
    if size > MAX_SCHEMA_BYTES {
        return Err(SchemaError::TooLarge(size));
    }
    if depth(schema) > MAX_SCHEMA_DEPTH {
        return Err(SchemaError::TooDeep);
    }
    if !(schema.is_object() || schema.is_boolean()) {
        return Err(SchemaError::NotASchema);
    }
    if let Some(declared) = schema.get("$schema") {
        let known = declared.as_str().is_some_and(|s| {
            s.trim_end_matches('#') == "https://json-schema.org/draft/2020-12/schema"
        });
        if !known {
            return Err(SchemaError::OtherDraft(declared.to_string()));
        }
    }
    jsonschema::draft202012::options()
        .offline()
        .with_pattern_options(
            jsonschema::PatternOptions::regex()
                .size_limit(MAX_PATTERN_BYTES)
                .dfa_size_limit(MAX_PATTERN_BYTES),
        )
        .build(schema)
        .map_err(|e| SchemaError::Invalid(e.masked().to_string()))
}

/// Nesting depth of arrays and objects (a scalar is 0), without recursion.
fn depth(value: &serde_json::Value) -> usize {
    let mut deepest = 0;
    let mut stack = vec![(value, 0usize)];
    while let Some((node, level)) = stack.pop() {
        let children: Box<dyn Iterator<Item = &serde_json::Value>> = match node {
            serde_json::Value::Array(items) => Box::new(items.iter()),
            serde_json::Value::Object(map) => Box::new(map.values()),
            _ => continue,
        };
        deepest = deepest.max(level + 1);
        if deepest > MAX_SCHEMA_DEPTH {
            return deepest;
        }
        stack.extend(children.map(|child| (child, level + 1)));
    }
    deepest
}

/// The first violation of `data` against `validator`, if any.
pub fn first_violation(
    validator: &jsonschema::Validator,
    data: &serde_json::Value,
) -> Option<Violation> {
    validator.iter_errors(data).next().map(|error| Violation {
        pointer: error.instance_path().as_str().to_string(),
        message: error.masked().to_string(),
    })
}

/// One type of a cached catalog.
struct CachedType {
    deprecated: bool,
    schema: Option<serde_json::Value>,
    /// Compiled on first use; `None` inside when the stored schema no longer compiles (it was
    /// checked when stored: only a change of the validator crate could do that), which lets
    /// events through rather than refusing every one.
    validator: OnceLock<Option<Arc<jsonschema::Validator>>>,
}

/// A tenant's catalog as one node holds it.
pub struct TenantCatalog {
    /// The tenant's `strict_event_types`.
    pub strict: bool,
    types: HashMap<String, CachedType>,
}

impl TenantCatalog {
    /// Builds the catalog from its stored rows.
    pub fn from_stored(stored: StoredCatalog) -> Self {
        let types = stored
            .event_types
            .into_iter()
            .map(|t| {
                let schema = t
                    .schema
                    .as_deref()
                    .and_then(|s| serde_json::from_str(s).ok());
                (
                    t.name,
                    CachedType {
                        deprecated: t.deprecated,
                        schema,
                        validator: OnceLock::new(),
                    },
                )
            })
            .collect();
        Self {
            strict: stored.strict_event_types,
            types,
        }
    }

    /// True when the catalog has a type named `name`.
    pub fn knows(&self, name: &str) -> bool {
        self.types.contains_key(name)
    }

    /// True when the catalog's type `name` is deprecated.
    pub fn is_deprecated(&self, name: &str) -> bool {
        self.types.get(name).is_some_and(|t| t.deprecated)
    }

    /// True when some type of the catalog matches the subscription `pattern` (an exact name,
    /// `prefix.*` or `*`).
    pub fn matches(&self, pattern: &str) -> bool {
        let patterns = [pattern.to_string()];
        self.types
            .keys()
            .any(|name| crate::model::matches_event_types(&patterns, name))
    }

    /// The compiled schema of type `name`, if it has one.
    pub fn validator(&self, name: &str) -> Option<Arc<jsonschema::Validator>> {
        let cached = self.types.get(name)?;
        let schema = cached.schema.as_ref()?;
        cached
            .validator
            .get_or_init(|| match compile(schema) {
                Ok(v) => Some(Arc::new(v)),
                Err(e) => {
                    tracing::warn!(event_type = %name, error = %e, "a stored event schema does not compile; its events are not validated");
                    None
                }
            })
            .clone()
    }
}

impl TenantCatalog {
    /// Checks an event's `data` (JSON text) against its type's schema, if the type has one;
    /// the error is the first violation.
    pub fn check_data(
        &self,
        event_type: &str,
        data: &serde_json::value::RawValue,
    ) -> Result<(), Violation> {
        let Some(validator) = self.validator(event_type) else {
            return Ok(());
        };
        let value: serde_json::Value = serde_json::from_str(data.get()).map_err(|e| Violation {
            pointer: String::new(),
            message: format!("cannot be read as JSON: {e}"),
        })?;
        match first_violation(&validator, &value) {
            Some(violation) => Err(violation),
            None => Ok(()),
        }
    }
}

/// Every tenant's catalog as this node last read it. Cloning the `Arc` is shallow.
#[derive(Default)]
pub struct EventTypeCache {
    state: Mutex<CacheState>,
}

#[derive(Default)]
struct CacheState {
    /// Moves at every invalidation: a catalog read before one is not kept.
    generation: u64,
    tenants: HashMap<String, Arc<TenantCatalog>>,
}

impl EventTypeCache {
    fn state(&self) -> std::sync::MutexGuard<'_, CacheState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The tenant's cached catalog, with the generation to hand to [`EventTypeCache::insert`]
    /// when there is none.
    pub fn get(&self, tenant: &str) -> Result<Arc<TenantCatalog>, u64> {
        let state = self.state();
        state.tenants.get(tenant).cloned().ok_or(state.generation)
    }

    /// Keeps a catalog read at `generation` (unless the cache was invalidated since).
    pub fn insert(&self, tenant: &str, generation: u64, catalog: Arc<TenantCatalog>) {
        let mut state = self.state();
        if state.generation == generation {
            state.tenants.insert(tenant.to_string(), catalog);
        }
    }

    /// Drops every cached catalog (something changed in the store).
    pub fn invalidate(&self) {
        let mut state = self.state();
        state.generation += 1;
        state.tenants.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn schemas_are_bounded_and_must_be_2020_12() {
        let deep = (0..40).fold(
            json!({"type": "string"}),
            |inner, _| json!({"type": "object", "properties": {"a": inner}}),
        );
        assert_eq!(compile(&deep).err(), Some(SchemaError::TooDeep));
        let big = json!({"description": "x".repeat(MAX_SCHEMA_BYTES)});
        assert!(matches!(compile(&big), Err(SchemaError::TooLarge(_))));
        assert!(matches!(
            compile(&json!({"$schema": "http://json-schema.org/draft-07/schema#"})),
            Err(SchemaError::OtherDraft(_))
        ));
        assert_eq!(compile(&json!(5)).err(), Some(SchemaError::NotASchema));
        assert!(matches!(
            compile(&json!({"type": "nonsense"})),
            Err(SchemaError::Invalid(_))
        ));
        assert!(matches!(
            compile(&json!({"$ref": "https://example.com/remote.json"})),
            Err(SchemaError::Invalid(_))
        ));
        // Look-arounds need backtracking: the linear-time engine refuses them.
        assert!(matches!(
            compile(&json!({"type": "string", "pattern": "(?=a)a"})),
            Err(SchemaError::Invalid(_))
        ));
        compile(
            &json!({"$schema": "https://json-schema.org/draft/2020-12/schema", "type": "object"}),
        )
        .unwrap();
    }

    #[test]
    fn the_first_violation_names_its_pointer_without_the_value() {
        let validator = compile(&json!({
            "type": "object",
            "required": ["amount"],
            "properties": {
                "amount": {"type": "integer", "minimum": 0},
                "items": {"type": "array", "items": {"properties": {"sku": {"type": "string"}}}}
            }
        }))
        .unwrap();
        assert_eq!(first_violation(&validator, &json!({"amount": 3})), None);
        let v = first_violation(
            &validator,
            &json!({"amount": 1, "items": [{"sku": "a"}, {"sku": 12345}]}),
        )
        .unwrap();
        assert_eq!(v.pointer, "/items/1/sku");
        assert!(!v.message.contains("12345"), "{}", v.message);
        let v = first_violation(&validator, &json!({})).unwrap();
        assert_eq!(v.pointer, "");
        assert!(v.message.contains("amount"), "{}", v.message);
    }

    #[test]
    fn the_cache_drops_what_was_read_before_an_invalidation() {
        let cache = EventTypeCache::default();
        let generation = cache.get("t").err().unwrap();
        cache.invalidate();
        let catalog = Arc::new(TenantCatalog::from_stored(StoredCatalog::default()));
        cache.insert("t", generation, catalog.clone());
        let generation = cache.get("t").err().expect("stale read not kept");
        cache.insert("t", generation, catalog);
        assert!(cache.get("t").is_ok());
        cache.invalidate();
        assert!(cache.get("t").is_err());
    }
}
