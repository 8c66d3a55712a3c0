//! Helpers of the plugin runtime tests: guest components and a `HostServices` double that records
//! what plugins ask (the full engine path is covered by the other modules).

use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use wasmhook::plugins::{CallContext, HostServices, HttpRequest, HttpResponse, LogLevel};

/// Bytes of the guest component built from crate `name` (`api_key` or `api-key`).
pub fn guest(name: &str) -> Vec<u8> {
    let crate_name = name.replace('_', "-");
    let path = wasmhook::guests::path(&crate_name)
        .unwrap_or_else(|| panic!("no guest component {crate_name}"));
    std::fs::read(path).unwrap_or_else(|e| panic!("reading {path}: {e}"))
}

/// The bytes of a guest component (kept as a macro so the ported tests read as before).
macro_rules! guest_or_skip {
    ($name:expr) => {
        crate::support::plugin_host::guest($name)
    };
}
pub(crate) use guest_or_skip;

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
        self.outbound
            .lock()
            .unwrap()
            .push((allowed_hosts.clone(), request.url.clone()));
        Box::pin(async move {
            // The engine's own allow-list check, so the runtime tests exercise the real rule.
            wasmhook::pipeline::check_allowed_host(&request.url, &allowed_hosts)?;
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
