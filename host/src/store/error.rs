//! Why a store operation failed, in terms that mean something outside the store: no backend
//! type leaks through (the backend's own error is kept as text in the source chain).

use std::path::PathBuf;

/// Why a store operation failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The database refused or failed an operation.
    #[error("database error: {0}")]
    Database(String),
    /// A batch could not be committed; none of its writes happened.
    #[error("database commit failed: {0}")]
    Commit(String),
    /// The database cannot be reached (connection refused, pool exhausted, timed out).
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// The writer has stopped (shutting down).
    #[error("the store is shutting down")]
    WriterGone,
    /// A migration failed or the schema is newer than this binary.
    #[error("database schema: {0}")]
    Schema(String),
    /// The database could not be opened.
    #[error("cannot open database {location}: {reason}")]
    Open {
        /// The file or server (never with a password).
        location: String,
        /// Why.
        reason: String,
    },
    /// `store.url` is not a URL this binary can use.
    #[error("invalid store.url: {0}")]
    InvalidUrl(String),
    /// Another process owns the data directory.
    #[error(
        "data directory {0} is in use by another wasmhook process (lock held on its `lock` file)"
    )]
    Locked(PathBuf),
    /// The thing asked for does not exist (or belongs to another tenant).
    #[error("{what} `{id}` not found")]
    NotFound {
        /// Kind of thing.
        what: &'static str,
        /// Its id.
        id: String,
    },
    /// A stored secret cannot be unsealed (wrong or missing master key, damaged value).
    #[error("secrets: {0}")]
    Secret(String),
    /// The request conflicts with the current state.
    #[error("{0}")]
    Conflict(String),
}

impl StoreError {
    /// A database error from any backend's error type.
    pub(crate) fn database(error: impl std::fmt::Display) -> Self {
        StoreError::Database(error.to_string())
    }
}
