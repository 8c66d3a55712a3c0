//! The local receiver ("sink"): hyper 1, HTTP/1.1, answers 204 and counts.

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;

pub struct Sink {
    pub addr: std::net::SocketAddr,
    pub count: AtomicU64,
    /// Requests missing `webhook-id` or `webhook-timestamp`.
    pub malformed: AtomicU64,
    /// (x-plugin-version, arrival) of every request carrying the header.
    pub versions: Mutex<Vec<(u8, Instant)>>,
}

impl Sink {
    pub fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }
}

pub async fn start_sink() -> anyhow::Result<Arc<Sink>> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let sink = Arc::new(Sink {
        addr: listener.local_addr()?,
        count: AtomicU64::new(0),
        malformed: AtomicU64::new(0),
        versions: Mutex::new(Vec::new()),
    });
    let shared = sink.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            let sink = shared.clone();
            tokio::spawn(async move {
                let service =
                    hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
                        let sink = sink.clone();
                        async move {
                            let (parts, body) = request.into_parts();
                            let _ = body.collect().await;
                            if parts.method == hyper::Method::POST {
                                if !parts.headers.contains_key("webhook-id")
                                    || !parts.headers.contains_key("webhook-timestamp")
                                {
                                    sink.malformed.fetch_add(1, Ordering::Relaxed);
                                }
                                if let Some(v) = parts.headers.get("x-plugin-version") {
                                    let version = v
                                        .as_bytes()
                                        .first()
                                        .map(|b| b.wrapping_sub(b'0'))
                                        .unwrap_or(0);
                                    sink.versions
                                        .lock()
                                        .unwrap()
                                        .push((version, Instant::now()));
                                }
                                sink.count.fetch_add(1, Ordering::Relaxed);
                            }
                            let status = if parts.method == hyper::Method::POST {
                                204
                            } else {
                                405
                            };
                            Ok::<_, Infallible>(
                                hyper::Response::builder()
                                    .status(status)
                                    .body(Empty::<Bytes>::new())
                                    .unwrap(),
                            )
                        }
                    });
                let _ = hyper::server::conn::http1::Builder::new()
                    .keep_alive(true)
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(sink)
}
