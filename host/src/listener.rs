//! The API's listener: an accept loop serving the axum router over HTTP/1.1 and HTTP/2 (prior
//! knowledge, `h2c`) with hyper-util, with the limits a server facing untrusted clients needs.
//!
//! - **Header timeout** (`api.header_read_timeout`, default 10 s): a request's headers must arrive
//!   within it (hyper's HTTP/1 `header_read_timeout`). The same bound closes a connection that
//!   stays idle that long (no request in progress): before its first byte (a client that sends
//!   nothing, or part of the HTTP/2 preface), between keep-alive requests, and on HTTP/2, where
//!   hyper has no such timeout (an idle connection is sent GOAWAY, and dropped if it has not
//!   closed one more period later).
//! - **Body timeout** (`api.body_read_timeout`, default 30 s): once a handler starts reading a
//!   request body, the whole body must arrive within it. Otherwise the read fails and the request
//!   is answered 408 (`{"error": {"code": "request_timeout", …}}`) with `connection: close`,
//!   whatever the handler made of the failed read. The clock starts at the first read, not at
//!   the request's arrival, so a handler that first waits for its turn (plugin uploads) does not
//!   eat into the client's time. Unlike an idle timeout, a body trickled a byte at a time cannot
//!   extend it.
//! - **Declared body size** ([`ListenerLimits::max_body_bytes`]): a request whose
//!   `Content-Length` exceeds the largest body any route accepts is answered 413 at once, before
//!   routing and without reading the body (nor sending `100 Continue`), with `connection: close`.
//!   Smaller bodies still meet each route's own limit as they are read (`api.max_body_kib`,
//!   `api.max_plugin_mib`).
//! - **Connections** (`api.max_connections`, default 1024): when that many are open, the loop
//!   stops accepting until one closes. Further clients wait in the kernel (in the listen backlog,
//!   and once that is full in `connect`, whose SYNs are retried): they cost the process nothing
//!   and are served in turn, rather than being accepted and closed, which a retrying client
//!   would only answer with more connections. The timeouts above bound how long a connection
//!   holds its slot without making progress (about `api.header_read_timeout` when idle or slow
//!   to send headers).
//!
//! Shutdown is graceful, as with `axum::serve(..).with_graceful_shutdown`: the listener closes,
//! idle connections are closed, requests in progress finish (HTTP/1 connections then close,
//! HTTP/2 ones are sent GOAWAY), and whatever is still open after
//! [`ListenerLimits::shutdown_grace`] is dropped.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderValue, Request, StatusCode, Version, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::future::BoxFuture;
use hyper::body::{Body as HttpBody, Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::{Instant, Sleep};
use tower::ServiceExt;

use crate::api::error::ApiError;
use crate::config::Config;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Limits of the API listener (see the module documentation).
#[derive(Debug, Clone)]
pub struct ListenerLimits {
    /// Time allowed to receive a request's headers, and longest idle time of a connection.
    pub header_read_timeout: Duration,
    /// Time allowed to receive a whole request body, from the handler's first read.
    pub body_read_timeout: Duration,
    /// Connections served at once; beyond, accepting pauses.
    pub max_connections: usize,
    /// A declared `Content-Length` above this is answered 413 at once: the largest body any
    /// route accepts.
    pub max_body_bytes: u64,
    /// How long shutdown waits for requests in progress before it drops their connections.
    pub shutdown_grace: Duration,
}

impl ListenerLimits {
    /// The limits `config` sets: `api.header_read_timeout`, `api.body_read_timeout`,
    /// `api.max_connections`; the larger of `api.max_body_kib` and `api.max_plugin_mib` as
    /// the declared-size limit; `delivery.shutdown_grace` as the shutdown grace.
    pub fn from_config(config: &Config) -> Self {
        let api = &config.api;
        let json = api.max_body_kib as u64 * 1024;
        let plugin = api.max_plugin_mib as u64 * 1024 * 1024;
        Self {
            header_read_timeout: api.header_read_timeout,
            body_read_timeout: api.body_read_timeout,
            max_connections: api.max_connections.max(1),
            max_body_bytes: json.max(plugin),
            shutdown_grace: config.delivery.shutdown_grace,
        }
    }
}

/// Serves `router` on `listener` until `shutdown` completes, then shuts down gracefully (see the
/// module documentation). Returns when every connection is closed or dropped.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ListenerLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let limits = Arc::new(limits);
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    builder.http2().timer(TokioTimer::new());
    let builder = Arc::new(builder);
    let (stop, stopped) = watch::channel(false);
    let mut connections = JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            biased;
            () = &mut shutdown => break,
            Some(done) = connections.join_next(), if !connections.is_empty() => {
                if let Err(e) = done
                    && e.is_panic()
                {
                    tracing::error!(error = %e, "an API connection task panicked");
                }
            }
            accepted = listener.accept(), if connections.len() < limits.max_connections => {
                match accepted {
                    Ok((stream, _peer)) => {
                        connections.spawn(serve_connection(
                            stream,
                            builder.clone(),
                            router.clone(),
                            limits.clone(),
                            stopped.clone(),
                        ));
                    }
                    Err(e) if is_connection_error(&e) => {}
                    Err(e) => {
                        // Out of file descriptors, most likely: wait instead of spinning.
                        tracing::warn!(error = %e, "accepting an API connection failed; retrying in 1s");
                        tokio::select! {
                            () = &mut shutdown => break,
                            () = tokio::time::sleep(Duration::from_secs(1)) => {}
                        }
                    }
                }
            }
        }
    }
    drop(listener);
    let _ = stop.send(true);
    let drained = tokio::time::timeout(limits.shutdown_grace, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            connections = connections.len(),
            grace = ?limits.shutdown_grace,
            "dropping API connections still open after the shutdown grace"
        );
        connections.shutdown().await;
    }
}

/// Errors that concern one connection only (the next `accept` may succeed at once).
fn is_connection_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset
    )
}

/// Serves one connection until it closes, is idle too long, or shutdown drops it.
async fn serve_connection(
    stream: TcpStream,
    builder: Arc<auto::Builder<TokioExecutor>>,
    router: Router,
    limits: Arc<ListenerLimits>,
    mut stopped: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let activity = Arc::new(Activity::new());
    let service = TowerToHyperService::new(Guard {
        router,
        limits: limits.clone(),
        activity: activity.clone(),
    });
    let mut connection = std::pin::pin!(builder.serve_connection(TokioIo::new(stream), service));
    let idle = limits.header_read_timeout;
    // Set once the connection was asked to close because it was idle: it is dropped then.
    let mut drop_at: Option<Instant> = None;
    let mut stopping = false;
    loop {
        let check_at = activity.idle_deadline(idle);
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "API connection ended with an error");
                }
                return;
            }
            () = tokio::time::sleep_until(check_at), if drop_at.is_none() => {
                if activity.idle_for(idle) {
                    connection.as_mut().graceful_shutdown();
                    drop_at = Some(Instant::now() + idle);
                }
            }
            () = tokio::time::sleep_until(drop_at.unwrap_or(check_at)), if drop_at.is_some() => {
                tracing::debug!("dropping an idle API connection that did not close");
                return;
            }
            _ = stopped.wait_for(|stop| *stop), if !stopping => {
                stopping = true;
                connection.as_mut().graceful_shutdown();
            }
        }
    }
}

/// When a connection last started or finished a request, and how many are in progress.
struct Activity {
    epoch: Instant,
    in_flight: AtomicUsize,
    /// Milliseconds from `epoch` to the last start or end of a request.
    last_ms: AtomicU64,
}

impl Activity {
    fn new() -> Self {
        Self {
            epoch: Instant::now(),
            in_flight: AtomicUsize::new(0),
            last_ms: AtomicU64::new(0),
        }
    }

    fn touch(&self) {
        let ms = self.epoch.elapsed().as_millis().min(u64::MAX as u128) as u64;
        self.last_ms.store(ms, Ordering::SeqCst);
    }

    fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        self.touch();
        InFlight(self.clone())
    }

    fn last(&self) -> Instant {
        self.epoch + Duration::from_millis(self.last_ms.load(Ordering::SeqCst))
    }

    /// When the connection will have been idle for `idle` if nothing happens meanwhile (while
    /// a request is in progress: one period from now, to look again).
    fn idle_deadline(&self, idle: Duration) -> Instant {
        if self.in_flight.load(Ordering::SeqCst) > 0 {
            Instant::now() + idle
        } else {
            self.last() + idle
        }
    }

    /// No request in progress, and none started or ended for `idle`.
    fn idle_for(&self, idle: Duration) -> bool {
        self.in_flight.load(Ordering::SeqCst) == 0 && self.last() + idle <= Instant::now()
    }
}

/// A request in progress; it ends when its response body is dropped (sent, or abandoned).
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.touch();
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The router behind the request limits: the declared size check, the body deadline and the
/// in-progress accounting.
#[derive(Clone)]
struct Guard {
    router: Router,
    limits: Arc<ListenerLimits>,
    activity: Arc<Activity>,
}

impl tower::Service<Request<Incoming>> for Guard {
    type Response = Response;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Incoming>) -> Self::Future {
        let in_flight = self.activity.begin();
        let version = request.version();
        // hyper gives the exact declared `Content-Length` as the lower bound.
        let declared = request.body().size_hint().lower();
        let max = self.limits.max_body_bytes;
        if declared > max {
            let response = refusal(
                version,
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                format!(
                    "the request declares a body of {declared} bytes; the engine accepts at most {max} (api.max_body_kib, and api.max_plugin_mib for plugin uploads)"
                ),
            );
            return Box::pin(async move { Ok(tracked(response, in_flight)) });
        }
        let timeout = self.limits.body_read_timeout;
        let timed_out = Arc::new(AtomicBool::new(false));
        let request = request.map(|body| {
            Body::new(DeadlineBody {
                inner: body,
                timeout,
                deadline: None,
                timed_out: timed_out.clone(),
            })
        });
        let router = self.router.clone();
        Box::pin(async move {
            let response = match router.oneshot(request).await {
                Ok(response) => response,
                Err(never) => match never {},
            };
            let response = if timed_out.load(Ordering::SeqCst) {
                tracing::debug!(?timeout, "a request body did not arrive in time");
                refusal(
                    version,
                    StatusCode::REQUEST_TIMEOUT,
                    "request_timeout",
                    format!(
                        "the request body did not arrive within {} (api.body_read_timeout)",
                        humantime::format_duration(timeout)
                    ),
                )
            } else {
                response
            };
            Ok(tracked(response, in_flight))
        })
    }
}

/// An API error answer that also closes an HTTP/1 connection (whose request body is unread).
fn refusal(version: Version, status: StatusCode, code: &'static str, message: String) -> Response {
    let mut response = ApiError {
        status,
        code,
        field: None,
        message,
    }
    .into_response();
    if matches!(
        version,
        Version::HTTP_09 | Version::HTTP_10 | Version::HTTP_11
    ) {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

/// `response` with the request counted in progress until its body is dropped.
fn tracked(response: Response, in_flight: InFlight) -> Response {
    response.map(|inner| {
        Body::new(TrackedBody {
            inner,
            _in_flight: in_flight,
        })
    })
}

/// A response body holding its request's [`InFlight`] mark.
struct TrackedBody {
    inner: Body,
    _in_flight: InFlight,
}

impl HttpBody for TrackedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A request body that fails once `timeout` has passed since its first read.
struct DeadlineBody {
    inner: Incoming,
    timeout: Duration,
    deadline: Option<Pin<Box<Sleep>>>,
    timed_out: Arc<AtomicBool>,
}

/// The error a [`DeadlineBody`] fails with.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within {0:?}")]
struct BodyTimedOut(Duration);

impl HttpBody for DeadlineBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        let timeout = this.timeout;
        let deadline = this
            .deadline
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        if deadline.as_mut().poll(cx).is_ready() {
            this.timed_out.store(true, Ordering::SeqCst);
            return Poll::Ready(Some(Err(Box::new(BodyTimedOut(timeout)))));
        }
        Pin::new(&mut this.inner)
            .poll_frame(cx)
            .map(|frame| frame.map(|result| result.map_err(BoxError::from)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
