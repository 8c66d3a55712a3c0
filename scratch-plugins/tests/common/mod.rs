//! Shared helpers for the plugin runtime tests: guest files and a fake `HostServices`.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use scratch_plugins::plugins::{CallContext, HostServices, HttpRequest, HttpResponse, LogLevel};

/// Directory of the built guest components.
pub fn guest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/wasm-guests/wasm32-wasip2/release")
}

/// Bytes of guest `name` (`api_key`), or `None` with a message when it has not been built.
pub fn guest(name: &str) -> Option<Vec<u8>> {
    let path = guest_dir().join(format!("{name}.wasm"));
    match std::fs::read(&path) {
        Ok(b) => Some(b),
        Err(_) => {
            eprintln!(
                "SKIPPED: guest {} is missing; build it with `cd plugins && CARGO_TARGET_DIR=../target/wasm-guests cargo build --target wasm32-wasip2 --release --workspace`",
                path.display()
            );
            None
        }
    }
}

/// Returns early from the test when a guest is missing.
#[macro_export]
macro_rules! guest_or_skip {
    ($name:expr) => {
        match common::guest($name) {
            Some(b) => b,
            None => return,
        }
    };
}

pub fn ctx() -> CallContext {
    CallContext {
        tenant: "t1".into(),
        endpoint: "ep1".into(),
        event_id: "evt_1".into(),
        event_type: "invoice.paid".into(),
        attempt: 1,
        timestamp: 1_700_000_000,
    }
}

pub fn request() -> HttpRequest {
    HttpRequest {
        method: "POST".into(),
        url: "https://receiver.example.com/hooks".into(),
        headers: vec![("content-type".into(), "application/json".into())],
        body: br#"{"type":"invoice.paid"}"#.to_vec(),
    }
}

/// A fake host: enforces the allowed hosts on outbound requests (answers a fixed token response
/// for allowed ones) and records log lines and outbound calls.
#[derive(Default)]
pub struct FakeHost {
    pub logs: Mutex<Vec<(String, LogLevel, String)>>,
    pub outbound: Mutex<Vec<(Vec<String>, String)>>,
}

impl FakeHost {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }
}

fn host_of(url: &str) -> String {
    let rest = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
    rest.split(['/', '?', '#'])
        .next()
        .unwrap_or("")
        .to_ascii_lowercase()
}

impl HostServices for FakeHost {
    fn jose_sign(
        &self,
        _ctx: &CallContext,
        alg: &str,
        _header_json: &str,
        payload: &[u8],
    ) -> BoxFuture<'static, Result<String, String>> {
        let out = format!("fake-jws.{alg}.{}", payload.len());
        Box::pin(async move { Ok(out) })
    }

    fn jose_encrypt(
        &self,
        _ctx: &CallContext,
        alg: &str,
        enc: &str,
        _recipient: &str,
        _header_json: &str,
        payload: &[u8],
    ) -> BoxFuture<'static, Result<String, String>> {
        let out = format!("fake-jwe.{alg}.{enc}.{}", payload.len());
        Box::pin(async move { Ok(out) })
    }

    fn get_token(
        &self,
        _ctx: &CallContext,
        provider: &str,
        _config: &str,
    ) -> BoxFuture<'static, Result<String, String>> {
        let out = format!("token-from-{provider}");
        Box::pin(async move { Ok(out) })
    }

    fn send_outbound(
        &self,
        _ctx: &CallContext,
        allowed_hosts: Vec<String>,
        request: HttpRequest,
    ) -> BoxFuture<'static, Result<HttpResponse, String>> {
        let host = host_of(&request.url);
        self.outbound
            .lock()
            .unwrap()
            .push((allowed_hosts.clone(), request.url.clone()));
        Box::pin(async move {
            if !allowed_hosts.contains(&host) {
                return Err(format!(
                    "outbound request to `{host}` refused: not in the provider's allowed hosts {allowed_hosts:?}"
                ));
            }
            Ok(HttpResponse {
                status: 200,
                headers: vec![("content-type".into(), "application/json".into())],
                body: br#"{"access_token":"tok_123","token_type":"Bearer","expires_in":3600}"#
                    .to_vec(),
            })
        })
    }

    fn log(&self, plugin: &str, _ctx: Option<&CallContext>, level: LogLevel, message: &str) {
        self.logs
            .lock()
            .unwrap()
            .push((plugin.to_string(), level, message.to_string()));
    }
}
