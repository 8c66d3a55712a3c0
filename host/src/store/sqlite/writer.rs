//! The one writer: a thread that owns the write connection and commits writes in groups.
//!
//! Every write is a closure sent over a channel. The thread takes whatever has queued up (up to
//! `max_batch`), runs each closure inside its own SAVEPOINT (a failing write rolls back alone and
//! does not poison its neighbours), commits once, and only then answers each caller. So a burst of
//! N concurrent ingests costs one fsync, not N, and nobody is told "accepted" before the data is
//! durable.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;

use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot};

use super::connection::OrStore;
use crate::store::{StoreError, WriteStats};

/// Answers the caller once the batch's commit is known.
type Completion = Box<dyn FnOnce(Result<(), StoreError>) + Send>;
/// One write. Called with the connection, it runs inside the batch's transaction; called with
/// `None` (the write will not run: the writer is gone or the batch could not begin), it only
/// hands back its completion, to be told why.
type Job = Box<dyn FnOnce(Option<&Connection>) -> Completion + Send>;

/// Counters describing how well writes are grouped.
#[derive(Debug, Default)]
struct Counters {
    commits: AtomicU64,
    writes: AtomicU64,
}

/// Handle to the writer thread. Cloning shares the thread; it stops when every handle is dropped
/// (after committing what was queued).
#[derive(Clone)]
pub(super) struct Writer {
    sender: mpsc::UnboundedSender<Job>,
    counters: Arc<Counters>,
}

/// Joins the writer thread (after all `Writer` handles are gone).
pub(super) struct WriterThread(Option<JoinHandle<()>>);

impl WriterThread {
    /// Waits for the thread to commit what was queued and exit. Does nothing when called on the
    /// writer thread itself (the last handle dropped by one of its own completions).
    pub(super) fn join(&mut self) {
        if let Some(handle) = self.0.take()
            && handle.thread().id() != std::thread::current().id()
        {
            let _ = handle.join();
        }
    }
}

impl Writer {
    /// Starts the writer thread on `conn`.
    pub(super) fn start(
        conn: Connection,
        max_batch: usize,
    ) -> Result<(Self, WriterThread), StoreError> {
        let (sender, receiver) = mpsc::unbounded_channel();
        let counters = Arc::new(Counters::default());
        let thread_counters = counters.clone();
        let handle = std::thread::Builder::new()
            .name("wasmhook-store-writer".into())
            .spawn(move || run(conn, receiver, max_batch.max(1), &thread_counters))
            .map_err(|e| StoreError::Database(format!("cannot start the store writer: {e}")))?;
        Ok((Self { sender, counters }, WriterThread(Some(handle))))
    }

    /// A handle whose thread is already gone (every write answers `WriterGone`): what a closing
    /// backend swaps in for its real handle, so that the thread sees its last sender dropped.
    pub(super) fn stopped() -> Self {
        let (sender, _) = mpsc::unbounded_channel();
        Self {
            sender,
            counters: Arc::new(Counters::default()),
        }
    }

    /// Runs `op` in the next group commit and returns its result once the commit is durable.
    pub(super) async fn write<T, F>(&self, op: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        self.submit(op, move |result| {
            let _ = tx.send(result);
        });
        rx.await.map_err(|_| StoreError::WriterGone)?
    }

    /// Queues `op` without waiting; `done` receives its result once committed (or why it was
    /// not: `WriterGone` if the writer has stopped).
    pub(super) fn submit<T, F, D>(&self, op: F, done: D)
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
        D: FnOnce(Result<T, StoreError>) + Send + 'static,
    {
        let job: Job = Box::new(move |conn| {
            let result = conn.map(|conn| in_savepoint(conn, op));
            Box::new(move |commit| {
                done(match (commit, result) {
                    (Ok(()), Some(result)) => result,
                    (Ok(()), None) => Err(StoreError::WriterGone),
                    (Err(e), _) => Err(e),
                })
            })
        });
        if let Err(mpsc::error::SendError(job)) = self.sender.send(job) {
            job(None)(Err(StoreError::WriterGone));
        }
    }

    /// Grouping counters.
    pub(super) fn stats(&self) -> WriteStats {
        WriteStats {
            commits: self.counters.commits.load(Ordering::Relaxed),
            writes: self.counters.writes.load(Ordering::Relaxed),
        }
    }
}

/// Runs one of the writer's own statements (`BEGIN`, `SAVEPOINT`, ...) from the statement cache:
/// they run several times per write, so they are parsed once.
fn exec(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(|_| ())
}

fn in_savepoint<T>(
    conn: &Connection,
    op: impl FnOnce(&Connection) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    exec(conn, "SAVEPOINT op").db()?;
    match op(conn) {
        Ok(value) => {
            exec(conn, "RELEASE op").db()?;
            Ok(value)
        }
        Err(e) => {
            exec(conn, "ROLLBACK TO op").db()?;
            exec(conn, "RELEASE op").db()?;
            Err(e)
        }
    }
}

fn run(
    conn: Connection,
    mut receiver: mpsc::UnboundedReceiver<Job>,
    max_batch: usize,
    counters: &Counters,
) {
    let mut batch: Vec<Job> = Vec::with_capacity(max_batch);
    let mut completions: Vec<Completion> = Vec::with_capacity(max_batch);
    while let Some(first) = receiver.blocking_recv() {
        batch.push(first);
        while batch.len() < max_batch {
            match receiver.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let outcome = match exec(&conn, "BEGIN IMMEDIATE") {
            Ok(()) => {
                completions.extend(batch.drain(..).map(|job| job(Some(&conn))));
                exec(&conn, "COMMIT").map_err(|e| {
                    let _ = conn.execute_batch("ROLLBACK");
                    StoreError::Commit(e.to_string())
                })
            }
            Err(e) => {
                // Nothing ran: every caller is told why, and nothing of theirs was written.
                completions.extend(batch.drain(..).map(|job| job(None)));
                Err(StoreError::Commit(e.to_string()))
            }
        };
        match &outcome {
            Ok(()) => {
                counters.commits.fetch_add(1, Ordering::Relaxed);
                counters
                    .writes
                    .fetch_add(completions.len() as u64, Ordering::Relaxed);
            }
            Err(e) => tracing::error!(error = %e, "store commit failed"),
        }
        for completion in completions.drain(..) {
            completion(outcome.clone());
        }
    }
}
