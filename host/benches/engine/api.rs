//! An HTTP client of the engine's API, and what `/metrics` says.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

pub type HttpClient = Client<HttpConnector, Full<Bytes>>;

pub fn http_client(max_idle: usize) -> HttpClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(max_idle)
        .build(connector)
}

#[derive(Clone)]
pub struct Api {
    pub base: Arc<str>,
    pub client: HttpClient,
}

impl Api {
    pub fn new(base: &str) -> Self {
        Self {
            base: base.into(),
            client: http_client(1024),
        }
    }

    pub async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Bytes>,
    ) -> anyhow::Result<(u16, Bytes)> {
        let mut builder = hyper::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base));
        if let Some(token) = token {
            builder = builder.header("authorization", format!("Bearer {token}"));
        }
        if body.is_some() {
            builder = builder.header("content-type", "application/json");
        }
        let request = builder.body(Full::new(body.unwrap_or_default()))?;
        let response = self.client.request(request).await?;
        let status = response.status().as_u16();
        let bytes = response.into_body().collect().await?.to_bytes();
        Ok((status, bytes))
    }

    pub async fn json(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> anyhow::Result<(u16, Value)> {
        let (status, bytes) = self
            .call(
                method,
                path,
                token,
                body.map(|b| Bytes::from(b.to_string())),
            )
            .await?;
        let value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        Ok((status, value))
    }
}

#[derive(Debug, Default, Clone, Copy)]
pub struct Counters {
    pub success: f64,
    pub failure: f64,
    pub dead: f64,
    pub deliveries_dead: f64,
}

/// Value of `name{outcome="label"}` in a Prometheus/OpenMetrics text.
pub fn metric(text: &str, name: &str, outcome: &str) -> f64 {
    let prefix = format!("{name}{{outcome=\"{outcome}\"}}");
    text.lines()
        .filter_map(|l| l.strip_prefix(&prefix))
        .filter_map(|rest| rest.split_whitespace().next())
        .filter_map(|v| v.parse::<f64>().ok())
        .next()
        .unwrap_or(0.0)
}

impl std::ops::AddAssign for Counters {
    fn add_assign(&mut self, other: Self) {
        self.success += other.success;
        self.failure += other.failure;
        self.dead += other.dead;
        self.deliveries_dead += other.deliveries_dead;
    }
}
