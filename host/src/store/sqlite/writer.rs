//! The one writer: a thread that owns the write connection and commits writes in groups.
//!
//! Every write is a closure sent over a channel. The thread takes whatever has queued up (up to
//! `max_batch`), runs each closure inside its own SAVEPOINT (a failing write rolls back alone and
//! does not poison its neighbours), commits once, and only then answers each caller. So a burst of
//! N concurrent ingests costs one fsync, not N, and nobody is told "accepted" before the data is
//! durable.
//!
//! Background writes (retention's deletes, [`Writer::write_background`]) never join a group
//! that is waiting: they wait while other writes are queued and start a transaction of their
//! own when the queue is empty, or once they have waited [`BACKGROUND_MAX_WAIT`] (so they make
//! progress under any load). The writes that queue while one runs then join its commit instead
//! of waiting for a commit of its own after it. An ingest is so held up by at most one small
//! background write, never by a group that grew with one, nor by a commit that is not its own.

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

/// A queued write and whether it is background work.
struct Queued {
    job: Job,
    background: bool,
}

/// Background writes waiting for a quiet moment, with when each was queued.
type Deferred = std::collections::VecDeque<(std::time::Instant, Job)>;

/// A background write runs at the latest this long after it was queued, however busy the
/// writer is.
const BACKGROUND_MAX_WAIT: std::time::Duration = std::time::Duration::from_millis(100);

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
    sender: mpsc::UnboundedSender<Queued>,
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

    /// Like [`Writer::write`], as background work (see the module documentation).
    pub(super) async fn write_background<T, F>(&self, op: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        self.queue(op, true, move |result| {
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
        self.queue(op, false, done)
    }

    fn queue<T, F, D>(&self, op: F, background: bool, done: D)
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
        if let Err(mpsc::error::SendError(queued)) = self.sender.send(Queued { job, background }) {
            (queued.job)(None)(Err(StoreError::WriterGone));
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
    mut receiver: mpsc::UnboundedReceiver<Queued>,
    max_batch: usize,
    counters: &Counters,
) {
    let mut batch: Vec<Job> = Vec::with_capacity(max_batch);
    let mut completions: Vec<Completion> = Vec::with_capacity(max_batch);
    // Background writes waiting for a quiet moment, with when they were queued.
    let mut deferred = Deferred::new();
    let mut open = true;
    loop {
        // Foreground writes first: whatever is queued (waiting for one when nothing is).
        let take = |queued: Queued, batch: &mut Vec<Job>, deferred: &mut Deferred| {
            if queued.background {
                deferred.push_back((std::time::Instant::now(), queued.job));
            } else {
                batch.push(queued.job);
            }
        };
        if open && deferred.is_empty() {
            match receiver.blocking_recv() {
                Some(queued) => take(queued, &mut batch, &mut deferred),
                None => open = false,
            }
        }
        while open && batch.len() < max_batch {
            match receiver.try_recv() {
                Ok(queued) => take(queued, &mut batch, &mut deferred),
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => open = false,
            }
        }
        // A background write runs alone when nothing else waits, or once it waited too long.
        let overdue = deferred
            .front()
            .is_some_and(|(at, _)| at.elapsed() >= BACKGROUND_MAX_WAIT);
        if (batch.is_empty() || overdue)
            && let Some((_, job)) = deferred.pop_front()
        {
            if !batch.is_empty() {
                commit_group(&conn, &mut batch, &mut completions, counters, || None);
            }
            batch.push(job);
            // What queued while the background write ran joins its commit (up to a group).
            let mut room = max_batch.saturating_sub(1);
            let joining = || {
                while room > 0 && open {
                    match receiver.try_recv() {
                        Ok(queued) if queued.background => {
                            deferred.push_back((std::time::Instant::now(), queued.job));
                        }
                        Ok(queued) => {
                            room -= 1;
                            return Some(queued.job);
                        }
                        Err(mpsc::error::TryRecvError::Empty) => return None,
                        Err(mpsc::error::TryRecvError::Disconnected) => open = false,
                    }
                }
                None
            };
            commit_group(&conn, &mut batch, &mut completions, counters, joining);
            continue;
        }
        if batch.is_empty() {
            if !open && deferred.is_empty() {
                return;
            }
            continue;
        }
        commit_group(&conn, &mut batch, &mut completions, counters, || None);
    }
}

/// Runs the writes of `batch` in one transaction, then those `joining` hands over (until it
/// has none), commits, and answers each.
fn commit_group(
    conn: &Connection,
    batch: &mut Vec<Job>,
    completions: &mut Vec<Completion>,
    counters: &Counters,
    mut joining: impl FnMut() -> Option<Job>,
) {
    let outcome = match exec(conn, "BEGIN IMMEDIATE") {
        Ok(()) => {
            completions.extend(batch.drain(..).map(|job| job(Some(conn))));
            while let Some(job) = joining() {
                completions.push(job(Some(conn)));
            }
            exec(conn, "COMMIT").map_err(|e| {
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

#[cfg(test)]
mod tests {
    use std::sync::mpsc as std_mpsc;
    use std::time::Duration;

    use super::*;

    /// A writer on a fresh database file with one table, `t(v)`.
    fn writer(dir: &tempfile::TempDir) -> (Writer, WriterThread) {
        let conn = Connection::open(dir.path().join("w.sqlite3")).unwrap();
        conn.execute_batch("PRAGMA journal_mode = WAL; CREATE TABLE t (v INTEGER NOT NULL);")
            .unwrap();
        Writer::start(conn, 16).unwrap()
    }

    fn insert(v: i64) -> impl FnOnce(&Connection) -> Result<(), StoreError> + Send + 'static {
        move |conn| {
            conn.execute("INSERT INTO t (v) VALUES (?1)", [v]).db()?;
            Ok(())
        }
    }

    /// A write of `v` (background or not) that holds the writer from when it starts until the
    /// returned sender is used; returns once it has started.
    async fn holding_write(
        writer: &Writer,
        background: bool,
        v: i64,
    ) -> (
        tokio::task::JoinHandle<Result<(), StoreError>>,
        std_mpsc::Sender<()>,
    ) {
        let (started_tx, started) = std_mpsc::channel();
        let (release, release_rx) = std_mpsc::channel::<()>();
        let op = move |conn: &Connection| {
            started_tx.send(()).unwrap();
            release_rx.recv().unwrap();
            insert(v)(conn)
        };
        let writer = writer.clone();
        let held = tokio::spawn(async move {
            if background {
                writer.write_background(op).await
            } else {
                writer.write(op).await
            }
        });
        tokio::task::spawn_blocking(move || started.recv().unwrap())
            .await
            .unwrap();
        (held, release)
    }

    #[tokio::test]
    async fn writes_queued_while_a_background_write_runs_join_its_commit_and_fail_alone() {
        let dir = tempfile::tempdir().unwrap();
        let (writer, mut thread) = writer(&dir);
        let (background, release) = holding_write(&writer, true, 1).await;
        let before = writer.stats();
        // Queued while the background write runs: one that succeeds, one that fails.
        let (ok_tx, ok_rx) = oneshot::channel();
        writer.submit(insert(2), move |r| ok_tx.send(r).unwrap());
        let (bad_tx, bad_rx) = oneshot::channel();
        writer.submit(
            |conn: &Connection| {
                conn.execute("INSERT INTO t (v) VALUES (NULL)", []).db()?;
                Ok(())
            },
            move |r| bad_tx.send(r).unwrap(),
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
        release.send(()).unwrap();
        background.await.unwrap().unwrap();
        ok_rx.await.unwrap().unwrap();
        let err = bad_rx.await.unwrap().unwrap_err();
        assert!(err.to_string().contains("NOT NULL"), "{err}");
        let after = writer.stats();
        assert_eq!(
            (after.commits - before.commits, after.writes - before.writes),
            (1, 3),
            "the background write and the two queued during it share one commit"
        );
        let values: Vec<i64> = writer
            .write(|conn| {
                conn.prepare("SELECT v FROM t ORDER BY v")
                    .db()?
                    .query_map([], |r| r.get(0))
                    .db()?
                    .collect::<Result<_, _>>()
                    .db()
            })
            .await
            .unwrap();
        assert_eq!(values, vec![1, 2], "the failing write rolled back alone");
        drop(writer);
        thread.join();
    }

    #[tokio::test]
    async fn a_background_write_waits_for_queued_writes_and_commits_apart_from_them() {
        let dir = tempfile::tempdir().unwrap();
        let (writer, mut thread) = writer(&dir);
        // Hold the writer in a foreground write while a background and a foreground one queue.
        let (first, release) = holding_write(&writer, false, 1).await;
        let order = Arc::new(std::sync::Mutex::new(Vec::new()));
        let background = tokio::spawn({
            let (writer, order) = (writer.clone(), order.clone());
            async move {
                writer
                    .write_background(move |conn| {
                        order.lock().unwrap().push("background");
                        insert(3)(conn)
                    })
                    .await
            }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        let foreground = tokio::spawn({
            let (writer, order) = (writer.clone(), order.clone());
            async move {
                writer
                    .write(move |conn| {
                        order.lock().unwrap().push("foreground");
                        insert(2)(conn)
                    })
                    .await
            }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        let before = writer.stats();
        release.send(()).unwrap();
        first.await.unwrap().unwrap();
        foreground.await.unwrap().unwrap();
        background.await.unwrap().unwrap();
        assert_eq!(
            *order.lock().unwrap(),
            vec!["foreground", "background"],
            "the background write waited for the write queued after it"
        );
        let after = writer.stats();
        assert!(after.commits - before.commits >= 2, "{before:?} {after:?}");
        drop(writer);
        thread.join();
    }
}
