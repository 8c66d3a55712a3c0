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

use super::StoreError;

/// Answers the caller once the batch's commit is known.
type Completion = Box<dyn FnOnce(Result<(), StoreError>) + Send>;
/// One write, run by the writer thread inside the batch's transaction.
type Job = Box<dyn FnOnce(&Connection) -> Completion + Send>;

/// Counters describing how well writes are grouped.
#[derive(Debug, Default)]
pub struct WriterStats {
    /// Transactions committed.
    pub commits: AtomicU64,
    /// Writes committed.
    pub writes: AtomicU64,
}

/// Handle to the writer thread. Cloning shares the thread; it stops when every handle is dropped
/// (after committing what was queued).
#[derive(Clone)]
pub struct Writer {
    sender: mpsc::UnboundedSender<Job>,
    stats: Arc<WriterStats>,
}

/// Joins the writer thread (after all `Writer` handles are gone).
pub struct WriterThread(Option<JoinHandle<()>>);

impl WriterThread {
    /// Waits for the thread to commit what was queued and exit.
    pub fn join(mut self) {
        if let Some(handle) = self.0.take() {
            let _ = handle.join();
        }
    }
}

impl Writer {
    /// Starts the writer thread on `conn`.
    pub fn start(conn: Connection, max_batch: usize) -> (Self, WriterThread) {
        let (sender, receiver) = mpsc::unbounded_channel();
        let stats = Arc::new(WriterStats::default());
        let thread_stats = stats.clone();
        let handle = std::thread::Builder::new()
            .name("wasmhook-store-writer".into())
            .spawn(move || run(conn, receiver, max_batch.max(1), &thread_stats))
            .expect("spawn the store writer thread");
        (Self { sender, stats }, WriterThread(Some(handle)))
    }

    /// Runs `op` in the next group commit and returns its result once the commit is durable.
    pub async fn write<T, F>(&self, op: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        self.submit(op, move |result| {
            let _ = tx.send(result);
        })?;
        rx.await.map_err(|_| StoreError::WriterGone)?
    }

    /// Queues `op` without waiting; `done` receives its result once committed (or failed).
    pub fn submit<T, F, D>(&self, op: F, done: D) -> Result<(), StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
        D: FnOnce(Result<T, StoreError>) + Send + 'static,
    {
        let job: Job = Box::new(move |conn| {
            let result = in_savepoint(conn, op);
            Box::new(move |commit| {
                done(match commit {
                    Ok(()) => result,
                    Err(e) => Err(e),
                })
            })
        });
        self.sender.send(job).map_err(|_| StoreError::WriterGone)
    }

    /// Grouping counters.
    pub fn stats(&self) -> &WriterStats {
        &self.stats
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
    exec(conn, "SAVEPOINT op")?;
    match op(conn) {
        Ok(value) => {
            exec(conn, "RELEASE op")?;
            Ok(value)
        }
        Err(e) => {
            exec(conn, "ROLLBACK TO op")?;
            exec(conn, "RELEASE op")?;
            Err(e)
        }
    }
}

fn run(
    conn: Connection,
    mut receiver: mpsc::UnboundedReceiver<Job>,
    max_batch: usize,
    stats: &WriterStats,
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
                completions.extend(batch.drain(..).map(|job| job(&conn)));
                exec(&conn, "COMMIT").map_err(|e| {
                    let _ = conn.execute_batch("ROLLBACK");
                    StoreError::Commit(e.to_string())
                })
            }
            Err(e) => {
                // Nothing ran. Dropping the jobs drops their answer channels: callers see
                // `WriterGone`, and nothing of theirs was written.
                batch.clear();
                Err(StoreError::Commit(e.to_string()))
            }
        };
        if outcome.is_ok() {
            stats.commits.fetch_add(1, Ordering::Relaxed);
            stats
                .writes
                .fetch_add(completions.len() as u64, Ordering::Relaxed);
        } else if let Err(e) = &outcome {
            tracing::error!(error = %e, "store commit failed");
        }
        for completion in completions.drain(..) {
            completion(outcome.clone());
        }
    }
}
