//! Receivers that check what they get the way a tenant would: plain HTTP or HTTPS (optionally
//! demanding a client certificate), each request judged by an async function. Used by the demo
//! and by the end-to-end tests.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use futures::future::BoxFuture;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::CertificateDer;

/// A request as a receiver got it.
#[derive(Debug, Clone)]
pub struct Delivered {
    /// When it arrived.
    pub at: Instant,
    /// Method.
    pub method: String,
    /// Path and query.
    pub path: String,
    /// Headers.
    pub headers: http::HeaderMap,
    /// Body.
    pub body: Bytes,
    /// The client's certificate chain (mTLS), empty without one.
    pub client_chain: Vec<CertificateDer<'static>>,
}

impl Delivered {
    /// A header as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// A receiver's answer and whether the request passed its check.
#[derive(Debug, Clone)]
pub struct Verdict {
    /// HTTP status to answer.
    pub status: u16,
    /// Body to answer.
    pub body: Vec<u8>,
    /// The request passed the check.
    pub accepted: bool,
    /// What the check found.
    pub note: String,
}

impl Verdict {
    /// 204, accepted.
    pub fn accept(note: impl Into<String>) -> Self {
        Self {
            status: 204,
            body: Vec::new(),
            accepted: true,
            note: note.into(),
        }
    }

    /// 200 with a JSON body, accepted.
    pub fn json(value: serde_json::Value) -> Self {
        Self {
            status: 200,
            body: value.to_string().into_bytes(),
            accepted: true,
            note: String::new(),
        }
    }

    /// Refused with `status`.
    pub fn reject(status: u16, note: impl Into<String>) -> Self {
        let note = note.into();
        Self {
            status,
            body: note.clone().into_bytes(),
            accepted: false,
            note,
        }
    }
}

/// Decides on one request.
pub type Judge = Arc<dyn Fn(Delivered) -> BoxFuture<'static, Verdict> + Send + Sync>;

/// A request with the verdict it got.
#[derive(Debug, Clone)]
pub struct Judged {
    /// The request.
    pub request: Delivered,
    /// The verdict.
    pub verdict: Verdict,
}

/// A running receiver.
#[derive(Clone)]
pub struct Receiver {
    /// Where it listens.
    pub addr: SocketAddr,
    tls: bool,
    log: Arc<Mutex<Vec<Judged>>>,
    task: Arc<tokio::task::JoinHandle<()>>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        if Arc::strong_count(&self.task) == 1 {
            self.task.abort();
        }
    }
}

impl Receiver {
    /// Starts on 127.0.0.1 (HTTPS when `tls` is given) judging each request with `judge`.
    pub async fn start(
        tls: Option<Arc<rustls::ServerConfig>>,
        judge: Judge,
    ) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let log = Arc::new(Mutex::new(Vec::new()));
        let is_tls = tls.is_some();
        let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
        let shared = log.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (judge, log, acceptor) = (judge.clone(), shared.clone(), acceptor.clone());
                tokio::spawn(async move {
                    match acceptor {
                        None => serve(TokioIo::new(stream), Vec::new(), judge, log).await,
                        Some(acceptor) => {
                            let Ok(tls) = acceptor.accept(stream).await else {
                                return;
                            };
                            let chain = tls
                                .get_ref()
                                .1
                                .peer_certificates()
                                .map(|c| c.iter().map(|c| c.clone().into_owned()).collect())
                                .unwrap_or_default();
                            serve(TokioIo::new(tls), chain, judge, log).await
                        }
                    }
                });
            }
        });
        Ok(Self {
            addr,
            tls: is_tls,
            log,
            task: Arc::new(task),
        })
    }

    /// URL of the receiver (`https://127.0.0.1:port/webhooks` or `http://…`).
    pub fn url(&self) -> String {
        format!(
            "{}://127.0.0.1:{}/webhooks",
            if self.tls { "https" } else { "http" },
            self.addr.port()
        )
    }

    /// Every request judged so far.
    pub fn judged(&self) -> Vec<Judged> {
        self.log.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Requests accepted so far.
    pub fn accepted(&self) -> usize {
        self.judged().iter().filter(|j| j.verdict.accepted).count()
    }
}

async fn serve<I>(
    io: I,
    chain: Vec<CertificateDer<'static>>,
    judge: Judge,
    log: Arc<Mutex<Vec<Judged>>>,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
        let (judge, log, chain) = (judge.clone(), log.clone(), chain.clone());
        async move {
            let (parts, body) = request.into_parts();
            let body = body
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            let delivered = Delivered {
                at: Instant::now(),
                method: parts.method.to_string(),
                path: parts
                    .uri
                    .path_and_query()
                    .map(|p| p.to_string())
                    .unwrap_or_default(),
                headers: parts.headers,
                body,
                client_chain: chain,
            };
            let verdict = judge(delivered.clone()).await;
            let mut response = hyper::Response::new(Full::new(Bytes::from(verdict.body.clone())));
            *response.status_mut() = http::StatusCode::from_u16(verdict.status)
                .unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
            if verdict.status == 200 {
                response.headers_mut().insert(
                    http::header::CONTENT_TYPE,
                    http::HeaderValue::from_static("application/json"),
                );
            }
            log.lock().unwrap_or_else(|p| p.into_inner()).push(Judged {
                request: delivered,
                verdict,
            });
            Ok::<_, Infallible>(response)
        }
    });
    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
        .serve_connection(io, service)
        .await;
}

/// Wraps an async closure as a [`Judge`].
pub fn judge<F, Fut>(f: F) -> Judge
where
    F: Fn(Delivered) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Verdict> + Send + 'static,
{
    Arc::new(move |d| Box::pin(f(d)))
}
