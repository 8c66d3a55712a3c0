//! A small JSON client of the admin API (the demo drives the engine the way a user would).

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

/// Client of one engine's API with one token.
#[derive(Clone)]
pub struct ApiClient {
    base: String,
    token: String,
    client: Client<HttpConnector, Full<Bytes>>,
}

/// A failed call: status and the error body.
#[derive(Debug, thiserror::Error)]
#[error("{method} {path} answered {status}: {body}")]
pub struct CallError {
    /// Method.
    pub method: String,
    /// Path.
    pub path: String,
    /// Status (0 when the API could not be reached).
    pub status: u16,
    /// Body.
    pub body: String,
}

impl ApiClient {
    /// A client of `base` (`http://127.0.0.1:8080`) sending `token`.
    pub fn new(base: impl Into<String>, token: impl Into<String>) -> Self {
        Self {
            base: base.into(),
            token: token.into(),
            client: Client::builder(TokioExecutor::new()).build(HttpConnector::new()),
        }
    }

    /// The same API with another token.
    pub fn with_token(&self, token: impl Into<String>) -> Self {
        Self {
            token: token.into(),
            ..self.clone()
        }
    }

    /// Sends `body` with `content_type`; returns status and the answer (JSON, or a JSON string
    /// for other bodies, `null` when empty).
    pub async fn send(
        &self,
        method: &str,
        path: &str,
        body: Vec<u8>,
        headers: &[(&str, &str)],
    ) -> (u16, Value) {
        let mut builder = hyper::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base));
        if !self.token.is_empty() {
            builder = builder.header("authorization", format!("Bearer {}", self.token));
        }
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let Ok(request) = builder.body(Full::new(Bytes::from(body))) else {
            return (0, Value::String("invalid request".into()));
        };
        let response = match self.client.request(request).await {
            Ok(r) => r,
            Err(e) => return (0, Value::String(e.to_string())),
        };
        let status = response.status().as_u16();
        let bytes = response
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        (status, value)
    }

    /// `send` that expects `expected` and returns the answer, or the error.
    pub async fn expect(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
        expected: u16,
    ) -> Result<Value, CallError> {
        let (bytes, headers): (Vec<u8>, &[(&str, &str)]) = match &body {
            Some(b) => (
                b.to_string().into_bytes(),
                &[("content-type", "application/json")],
            ),
            None => (Vec::new(), &[]),
        };
        let (status, value) = self.send(method, path, bytes, headers).await;
        if status == expected {
            Ok(value)
        } else {
            Err(CallError {
                method: method.into(),
                path: path.into(),
                status,
                body: value.to_string(),
            })
        }
    }

    /// GET expecting 200.
    pub async fn get(&self, path: &str) -> Result<Value, CallError> {
        self.expect("GET", path, None, 200).await
    }
}
