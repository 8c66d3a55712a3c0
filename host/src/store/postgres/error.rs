//! The translation of `tokio-postgres` and `deadpool` errors into [`StoreError`]: no PostgreSQL
//! type leaves `store::postgres`. A connection that is down, refused, timed out or shut down
//! becomes [`StoreError::Unavailable`]; whatever the server refused becomes
//! [`StoreError::Database`] with the server's message (its `Display` alone says "db error").
//! Neither ever holds the URL, so never its password.

use deadpool_postgres::PoolError;
use tokio_postgres::error::SqlState;

use crate::store::StoreError;

/// The error's text with the server's message and its cause, when it has them.
pub(super) fn describe(error: &tokio_postgres::Error) -> String {
    if let Some(db) = error.as_db_error() {
        return db.to_string();
    }
    match std::error::Error::source(error) {
        Some(cause) => format!("{error}: {cause}"),
        None => error.to_string(),
    }
}

/// True when the error says the connection (not the statement) failed.
pub(super) fn is_connection_error(error: &tokio_postgres::Error) -> bool {
    if let Some(code) = error.code() {
        let code = code.code();
        return code.starts_with("08")
            || code == SqlState::ADMIN_SHUTDOWN.code()
            || code == SqlState::CRASH_SHUTDOWN.code()
            || code == SqlState::CANNOT_CONNECT_NOW.code()
            || code == SqlState::TOO_MANY_CONNECTIONS.code();
    }
    if error.is_closed() {
        return true;
    }
    let cause = std::error::Error::source(error);
    cause.is_some_and(|c| c.downcast_ref::<std::io::Error>().is_some())
        || error.to_string().starts_with("timeout")
        || error.to_string().starts_with("error connecting")
        || error.to_string().starts_with("error communicating")
        || error.to_string().starts_with("error performing TLS")
}

/// A statement's or connection's error as a [`StoreError`].
pub(super) fn pg(error: tokio_postgres::Error) -> StoreError {
    if is_connection_error(&error) {
        StoreError::Unavailable(describe(&error))
    } else {
        StoreError::Database(describe(&error))
    }
}

/// A pool's error as a [`StoreError`].
pub(super) fn pool(error: PoolError) -> StoreError {
    match error {
        PoolError::Backend(e) => match pg(e) {
            StoreError::Database(text) => StoreError::Unavailable(text),
            other => other,
        },
        PoolError::Timeout(deadpool_postgres::TimeoutType::Wait) => StoreError::Unavailable(
            "no pooled PostgreSQL connection became free in time (store.pool_size may be too \
             small, or the server slow)"
                .to_string(),
        ),
        PoolError::Timeout(_) => StoreError::Unavailable(
            "connecting to PostgreSQL timed out (the server is unreachable or slow)".to_string(),
        ),
        PoolError::Closed => StoreError::WriterGone,
        other => StoreError::Unavailable(other.to_string()),
    }
}

/// `?` on a `tokio-postgres` result: the error becomes a [`StoreError`].
pub(super) trait OrStore<T> {
    /// The value, or the error as a [`StoreError`].
    fn db(self) -> Result<T, StoreError>;
}

impl<T> OrStore<T> for Result<T, tokio_postgres::Error> {
    fn db(self) -> Result<T, StoreError> {
        self.map_err(pg)
    }
}

impl<T> OrStore<T> for Result<T, PoolError> {
    fn db(self) -> Result<T, StoreError> {
        self.map_err(pool)
    }
}

/// True when `error` is a unique violation (a row with that key exists).
pub(super) fn is_unique_violation(error: &tokio_postgres::Error) -> bool {
    error.code() == Some(&SqlState::UNIQUE_VIOLATION)
}
