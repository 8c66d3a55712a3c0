//! LISTEN/NOTIFY: a connection of its own (not from the pool) listens on `wasmhook_work` (new or
//! released deliveries) and `wasmhook_changes` (tenants, endpoints, keys, certificates, plugins),
//! and turns each notification into a [`Notice`] on a broadcast channel (a receiver that lags
//! misses some, which only means it looks a little later).
//!
//! A task watches the connection (it pings it now and then: a server that vanished without a
//! word is noticed too) and reconnects with backoff when it is lost, then sends both notices,
//! as anything may have happened meanwhile. The task stops when the backend is dropped.

use std::time::Duration;

use futures::StreamExt;
use tokio::sync::broadcast;
use tokio::task::JoinHandle;
use tokio_postgres::AsyncMessage;
use tokio_postgres_rustls::MakeRustlsConnect;

use super::error::describe;
use crate::store::Notice;

/// The channel of new or released work.
pub(super) const WORK_CHANNEL: &str = "wasmhook_work";
/// The channel of changes every node must agree on.
pub(super) const CHANGES_CHANNEL: &str = "wasmhook_changes";

/// Notices buffered per receiver.
const CAPACITY: usize = 64;
/// First wait before reconnecting; doubled after each failure up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// How often the connection is pinged, and how long an answer may take.
const PING_EVERY: Duration = Duration::from_secs(15);
const PING_TIMEOUT: Duration = Duration::from_secs(10);

/// The listening task and its channel. Dropping it stops the task (and closes the connection).
pub(super) struct Listener {
    sender: broadcast::Sender<Notice>,
    task: JoinHandle<()>,
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Listener {
    /// Connects and listens (an error if the first connection fails), then keeps listening in
    /// a task.
    pub(super) async fn start(
        config: tokio_postgres::Config,
        tls: MakeRustlsConnect,
        deadline: Duration,
    ) -> Result<Self, String> {
        let (sender, _) = broadcast::channel(CAPACITY);
        let session = Session::open(&config, &tls, &sender, deadline).await?;
        let task = tokio::spawn(supervise(config, tls, sender.clone(), session, deadline));
        Ok(Self { sender, task })
    }

    /// A new receiver of the notices.
    pub(super) fn subscribe(&self) -> broadcast::Receiver<Notice> {
        self.sender.subscribe()
    }
}

/// Aborts the task when dropped.
struct AbortOnDrop(JoinHandle<Option<String>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// One listening connection: the client (for LISTEN and the pings) and the task that drives
/// the connection and forwards its notifications.
struct Session {
    client: tokio_postgres::Client,
    driver: AbortOnDrop,
}

impl Session {
    async fn open(
        config: &tokio_postgres::Config,
        tls: &MakeRustlsConnect,
        sender: &broadcast::Sender<Notice>,
        deadline: Duration,
    ) -> Result<Self, String> {
        let (client, mut connection) =
            match tokio::time::timeout(deadline, config.connect(tls.clone())).await {
                Ok(Ok(connected)) => connected,
                Ok(Err(e)) => return Err(describe(&e)),
                Err(_) => return Err(format!("no answer within {deadline:?}")),
            };
        let sender = sender.clone();
        let driver = AbortOnDrop(tokio::spawn(async move {
            let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
            while let Some(message) = messages.next().await {
                match message {
                    Ok(AsyncMessage::Notification(notification)) => {
                        let notice = match notification.channel() {
                            WORK_CHANNEL => Notice::Work,
                            CHANGES_CHANNEL => Notice::Changed,
                            _ => continue,
                        };
                        // No receiver is fine.
                        let _ = sender.send(notice);
                    }
                    Ok(AsyncMessage::Notice(notice)) => {
                        tracing::debug!(notice = %notice, "PostgreSQL notice on the LISTEN connection");
                    }
                    Ok(_) => {}
                    Err(e) => return Some(describe(&e)),
                }
            }
            None
        }));
        let statement = format!("LISTEN {WORK_CHANNEL}; LISTEN {CHANGES_CHANNEL}");
        let listen = client.batch_execute(&statement);
        match tokio::time::timeout(deadline, listen).await {
            Ok(Ok(())) => Ok(Self { client, driver }),
            Ok(Err(e)) => Err(describe(&e)),
            Err(_) => Err(format!("LISTEN had no answer within {deadline:?}")),
        }
    }

    /// Returns why the connection was lost, once it is.
    async fn lost(&mut self) -> String {
        let mut ping = tokio::time::interval(PING_EVERY);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ping.tick().await;
        loop {
            tokio::select! {
                ended = &mut self.driver.0 => {
                    return match ended {
                        Ok(Some(error)) => error,
                        Ok(None) => "the connection was closed".to_string(),
                        Err(e) => format!("its task ended: {e}"),
                    };
                }
                _ = ping.tick() => {
                    match tokio::time::timeout(PING_TIMEOUT, self.client.simple_query("")).await {
                        Ok(Ok(_)) => {}
                        Ok(Err(e)) => return describe(&e),
                        Err(_) => return format!("no answer to a ping within {PING_TIMEOUT:?}"),
                    }
                }
            }
        }
    }
}

async fn supervise(
    config: tokio_postgres::Config,
    tls: MakeRustlsConnect,
    sender: broadcast::Sender<Notice>,
    mut session: Session,
    deadline: Duration,
) {
    loop {
        let why = session.lost().await;
        drop(session);
        tracing::warn!(reason = %why, "lost the PostgreSQL LISTEN connection; reconnecting");
        let mut backoff = MIN_BACKOFF;
        session = loop {
            tokio::time::sleep(backoff).await;
            match Session::open(&config, &tls, &sender, deadline).await {
                Ok(session) => break session,
                Err(error) => {
                    tracing::warn!(%error, retry_in = ?backoff, "cannot reconnect the PostgreSQL LISTEN connection");
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        };
        tracing::info!("listening to PostgreSQL notifications again");
        // Whatever was notified while disconnected was missed: look at everything.
        let _ = sender.send(Notice::Work);
        let _ = sender.send(Notice::Changed);
    }
}
