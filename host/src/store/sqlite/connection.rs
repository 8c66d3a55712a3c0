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

/// How many bytes of a transaction's sub-journal SQLite keeps in memory before it moves it to a
/// temporary file (SQLite's default: 64 KiB).
///
/// The sub-journal keeps the original of every page a savepoint changes, and every write of a
/// group commit runs in a savepoint of its own. Once retention frees pages, new rows reuse
/// them, and a retention slice changes a few dozen pages itself: at 64 KiB most groups
/// spilled, and each spill opened, wrote and at the commit closed a temporary file on the
/// writer thread. Profiled in the soak (5,000 events/s with the pruner every second), that was
/// a third of the writer time the pruner added. 4 MiB holds the sub-journal of any usual group
/// in memory and still bounds it: a larger one (a batch of large events) spills as before.
const SUBJOURNAL_IN_MEMORY: i32 = 4 << 20;

/// Sets the process-wide SQLite options, once, before the first connection opens.
fn configure_sqlite() {
    static CONFIGURED: std::sync::Once = std::sync::Once::new();
    CONFIGURED.call_once(|| {
        // SAFETY: `sqlite3_config` must run before SQLite is initialised and while no other
        // thread uses SQLite; `Once` runs this before this process opens its first connection
        // (`open_connection` is the only place connections are opened). Where SQLite was
        // initialised already (by another library in the process), it refuses with
        // SQLITE_MISUSE and changes nothing, which only costs the spill above.
        let rc = unsafe {
            rusqlite::ffi::sqlite3_config(
                rusqlite::ffi::SQLITE_CONFIG_STMTJRNL_SPILL,
                SUBJOURNAL_IN_MEMORY,
            )
        };
        if rc != rusqlite::ffi::SQLITE_OK {
            tracing::debug!(
                rc,
                "SQLite was initialised already; its sub-journal spill stays at its default"
            );
        }
    });
}

/// Opens `path` with `flags` and sets the per-connection pragmas (busy timeout, foreign keys,
/// `synchronous`).
pub(super) fn open_connection(
    path: &Path,
    flags: OpenFlags,
    synchronous: Synchronous,
) -> Result<Connection, StoreError> {
    configure_sqlite();
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
