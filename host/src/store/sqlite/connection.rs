//! Connections: how one is opened (pragmas), the pool of read-only ones the reads run on, and
//! the translation of SQLite's errors into [`StoreError`] (no `rusqlite` type leaves
//! `store::sqlite`).

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use crate::config::Synchronous;
use crate::store::StoreError;

/// Read-only connections kept open between reads at most.
const POOLED_READERS: usize = 8;

/// `?` on a `rusqlite` result: the error becomes [`StoreError::Database`] with SQLite's text.
pub(super) trait OrStore<T> {
    /// The value, or SQLite's error as a [`StoreError`].
    fn db(self) -> Result<T, StoreError>;
}

impl<T> OrStore<T> for rusqlite::Result<T> {
    fn db(self) -> Result<T, StoreError> {
        self.map_err(StoreError::database)
    }
}

/// Opens `path` with `flags` and sets the per-connection pragmas (busy timeout, foreign keys,
/// `synchronous`).
pub(super) fn open_connection(
    path: &Path,
    flags: OpenFlags,
    synchronous: Synchronous,
) -> Result<Connection, StoreError> {
    let conn = Connection::open_with_flags(path, flags).map_err(|e| StoreError::Open {
        location: path.display().to_string(),
        reason: e.to_string(),
    })?;
    conn.busy_timeout(Duration::from_secs(5)).db()?;
    conn.pragma_update(None, "foreign_keys", true).db()?;
    conn.pragma_update(
        None,
        "synchronous",
        match synchronous {
            Synchronous::Full => "FULL",
            Synchronous::Normal => "NORMAL",
        },
    )
    .db()?;
    Ok(conn)
}

/// The read side: read-only connections to the database file, opened on demand and pooled.
/// WAL lets them read while the writer commits.
pub(super) struct Readers {
    path: PathBuf,
    pool: Mutex<Vec<Connection>>,
    /// Reads running at once, at most [`POOLED_READERS`]: each holds a connection (with its page
    /// cache) and a blocking thread, so an unbounded number of them would let memory follow the
    /// load (every attempt of a claimed delivery reads its event's body).
    running: tokio::sync::Semaphore,
}

impl Readers {
    /// Readers of the database at `path` (none is opened yet).
    pub(super) fn new(path: PathBuf) -> Self {
        Self {
            path,
            pool: Mutex::new(Vec::new()),
            running: tokio::sync::Semaphore::new(POOLED_READERS),
        }
    }

    /// The database file.
    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `op` on a pooled read-only connection on a blocking thread.
    pub(super) async fn read<T, F>(self: &std::sync::Arc<Self>, op: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let permit = self
            .running
            .acquire()
            .await
            .map_err(|_| StoreError::WriterGone)?;
        let readers = self.clone();
        let result = tokio::task::spawn_blocking(move || {
            let pooled = readers.pool.lock().ok().and_then(|mut pool| pool.pop());
            let conn = match pooled {
                Some(conn) => conn,
                None => open_connection(
                    &readers.path,
                    OpenFlags::SQLITE_OPEN_READ_ONLY,
                    Synchronous::Normal,
                )?,
            };
            let result = op(&conn);
            if let Ok(mut pool) = readers.pool.lock()
                && pool.len() < POOLED_READERS
            {
                pool.push(conn);
            }
            result
        })
        .await
        .map_err(|e| StoreError::Database(format!("read task failed: {e}")))?;
        drop(permit);
        result
    }
}
