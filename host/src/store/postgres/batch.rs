//! Write batching: a task that takes whatever writes have queued (up to `max_batch`, waiting
//! at most [`GATHER`] for more), hands them to a commit function that writes them in one
//! transaction, and loops. While a batch commits the next one queues, so N concurrent writers
//! cost one commit (one WAL flush on the server), not N.
//!
//! Up to `in_flight` batches commit at once, each on its own connection: with one, a node's
//! writes wait a whole round of statements and commit per batch however idle the server is.
//! Only writes that cannot touch the same rows may use more than one (new events and their
//! deliveries do; two records of one delivery's attempts could be applied out of order).
//!
//! [`Batcher::flush`] queues a marker behind everything submitted so far and waits until the
//! batch that carries it and every batch before it are committed (the queue is FIFO).

use std::future::Future;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;

use crate::store::StoreError;

/// How long a batch waits for more writes once it has one (when the queue was not already
/// enough to fill it).
pub(super) const GATHER: Duration = Duration::from_millis(1);

/// A write's share of a batch (a batch holds `max_batch` at most, and always at least one job).
pub(super) trait Weighted {
    /// Rows (or so) the job writes.
    fn weight(&self) -> usize {
        1
    }
}

enum Message<J> {
    Job(J),
    Flush(oneshot::Sender<()>),
}

/// Handle to a batching task. The task commits what is queued and stops once every handle is
/// dropped.
pub(super) struct Batcher<J> {
    sender: mpsc::UnboundedSender<Message<J>>,
}

impl<J: Weighted + Send + 'static> Batcher<J> {
    /// Starts the task: `commit` writes one batch in one transaction and answers its jobs; at
    /// most `in_flight` commits run at once (see the module documentation).
    pub(super) fn start<F, Fut>(max_batch: usize, in_flight: usize, commit: F) -> Self
    where
        F: FnMut(Vec<J>) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let (sender, receiver) = mpsc::unbounded_channel();
        tokio::spawn(run(receiver, max_batch.max(1), in_flight.max(1), commit));
        Self { sender }
    }

    /// Queues a job; gives it back when the task is gone.
    pub(super) fn submit(&self, job: J) -> Result<(), J> {
        self.sender
            .send(Message::Job(job))
            .map_err(|mpsc::error::SendError(message)| match message {
                Message::Job(job) => job,
                Message::Flush(_) => unreachable!("a job was sent"),
            })
    }

    /// Waits until every job submitted before this call has been committed (or failed).
    pub(super) async fn flush(&self) -> Result<(), StoreError> {
        let (done, wait) = oneshot::channel();
        self.sender
            .send(Message::Flush(done))
            .map_err(|_| StoreError::WriterGone)?;
        wait.await.map_err(|_| StoreError::WriterGone)
    }
}

/// One batch being gathered.
struct Gathering<J> {
    jobs: Vec<J>,
    weight: usize,
    flushes: Vec<oneshot::Sender<()>>,
    /// A job that did not fit; it starts the next batch.
    carry: Option<J>,
}

impl<J: Weighted> Gathering<J> {
    /// Takes `message`; false when the batch is full (the job that did not fit is carried).
    fn take(&mut self, message: Message<J>, max_batch: usize) -> bool {
        match message {
            Message::Flush(done) => self.flushes.push(done),
            Message::Job(job) => {
                let weight = job.weight().max(1);
                if !self.jobs.is_empty() && self.weight + weight > max_batch {
                    self.carry = Some(job);
                    return false;
                }
                self.weight += weight;
                self.jobs.push(job);
            }
        }
        self.weight < max_batch
    }
}

async fn run<J, F, Fut>(
    mut receiver: mpsc::UnboundedReceiver<Message<J>>,
    max_batch: usize,
    in_flight: usize,
    mut commit: F,
) where
    J: Weighted + Send + 'static,
    F: FnMut(Vec<J>) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let mut carry: Option<J> = None;
    let mut commits = JoinSet::new();
    loop {
        // A free commit first: while none is, the queue fills the next batch.
        while commits.len() >= in_flight {
            commits.join_next().await;
        }
        let mut batch = Gathering {
            jobs: Vec::new(),
            weight: 0,
            flushes: Vec::new(),
            carry: None,
        };
        let mut room = match carry.take() {
            Some(job) => batch.take(Message::Job(job), max_batch),
            None => match receiver.recv().await {
                Some(message) => batch.take(message, max_batch),
                None => break,
            },
        };
        // Whatever is queued already.
        while room {
            match receiver.try_recv() {
                Ok(message) => room = batch.take(message, max_batch),
                Err(_) => break,
            }
        }
        // A moment for more, unless someone waits on a flush or there is nothing to write.
        if room && batch.flushes.is_empty() && !batch.jobs.is_empty() {
            let deadline = tokio::time::Instant::now() + GATHER;
            while room {
                match tokio::time::timeout_at(deadline, receiver.recv()).await {
                    Ok(Some(message)) => room = batch.take(message, max_batch),
                    Ok(None) | Err(_) => break,
                }
            }
        }
        carry = batch.carry.take();
        if !batch.jobs.is_empty() {
            commits.spawn(commit(batch.jobs));
        }
        if !batch.flushes.is_empty() {
            // Everything submitted before the marker is in this batch or an earlier one.
            while commits.join_next().await.is_some() {}
            for done in batch.flushes {
                let _ = done.send(());
            }
        }
    }
    // Every handle is gone: what was taken still commits.
    while commits.join_next().await.is_some() {}
}

/// The error to give every job of a batch that could not be committed.
pub(super) fn batch_error(error: StoreError) -> StoreError {
    match error {
        StoreError::Database(text) => StoreError::Commit(text),
        other => other,
    }
}

/// True when a failed batch is worth retrying job by job: the database refused something (one
/// bad job fails its whole batch), as opposed to being unreachable.
pub(super) fn retry_one_by_one(error: &StoreError, jobs: usize) -> bool {
    jobs > 1 && matches!(error, StoreError::Database(_) | StoreError::Commit(_))
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};

    use super::*;

    struct Job(usize, usize);

    impl Weighted for Job {
        fn weight(&self) -> usize {
            self.1
        }
    }

    /// The ids of each committed batch, in commit order.
    type Seen = Arc<Mutex<Vec<Vec<usize>>>>;

    fn recording(max_batch: usize) -> (Batcher<Job>, Seen) {
        let batches = Arc::new(Mutex::new(Vec::new()));
        let seen = batches.clone();
        let batcher = Batcher::start(max_batch, 1, move |jobs: Vec<Job>| {
            let seen = seen.clone();
            async move {
                // A commit takes a while: what is submitted meanwhile queues for the next.
                tokio::time::sleep(Duration::from_millis(5)).await;
                seen.lock()
                    .unwrap()
                    .push(jobs.iter().map(|j| j.0).collect());
            }
        });
        (batcher, batches)
    }

    #[tokio::test]
    async fn batches_keep_order_stay_within_max_and_flush_waits_for_all() {
        let (batcher, batches) = recording(4);
        for i in 0..10 {
            assert!(batcher.submit(Job(i, 1)).is_ok());
        }
        batcher.flush().await.unwrap();
        let batches = batches.lock().unwrap().clone();
        assert!(
            batches.iter().all(|b| !b.is_empty() && b.len() <= 4),
            "{batches:?}"
        );
        assert_eq!(batches.concat(), (0..10).collect::<Vec<_>>());
        assert!(batches.len() <= 4, "grouped: {batches:?}");
    }

    #[tokio::test]
    async fn a_heavy_job_starts_the_next_batch_and_always_fits_alone() {
        let (batcher, batches) = recording(10);
        for (i, weight) in [3, 3, 9, 30, 1].into_iter().enumerate() {
            assert!(batcher.submit(Job(i, weight)).is_ok());
        }
        batcher.flush().await.unwrap();
        let batches = batches.lock().unwrap().clone();
        assert_eq!(batches, vec![vec![0, 1], vec![2], vec![3], vec![4]]);
    }

    #[tokio::test]
    async fn several_commits_run_at_once_within_the_limit_and_flush_waits_for_all() {
        let running = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let committed = Arc::new(Mutex::new(Vec::new()));
        let batcher = {
            let (running, most, committed) = (running.clone(), most.clone(), committed.clone());
            Batcher::start(2, 3, move |jobs: Vec<Job>| {
                let (running, most, committed) = (running.clone(), most.clone(), committed.clone());
                async move {
                    let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(now, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    committed.lock().unwrap().extend(jobs.iter().map(|j| j.0));
                    running.fetch_sub(1, Ordering::SeqCst);
                }
            })
        };
        for i in 0..20 {
            assert!(batcher.submit(Job(i, 1)).is_ok());
        }
        batcher.flush().await.unwrap();
        let mut committed = committed.lock().unwrap().clone();
        committed.sort();
        assert_eq!(
            committed,
            (0..20).collect::<Vec<_>>(),
            "flush waited for all"
        );
        assert_eq!(most.load(Ordering::SeqCst), 3, "three at once, never more");
    }

    #[tokio::test]
    async fn flush_with_nothing_queued_returns() {
        let (batcher, batches) = recording(4);
        batcher.flush().await.unwrap();
        assert!(batches.lock().unwrap().is_empty());
    }
}
