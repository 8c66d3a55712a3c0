//! What plugins may ask of the host: the [`HostServices`] trait, implemented by the host's
//! delivery pipeline (and by fakes in tests).

use futures::future::BoxFuture;

use super::types::{CallContext, HttpRequest, HttpResponse, LogLevel};

/// The host's side of the plugin imports (`jose`, `tokens`, `outbound`, `log`).
///
/// Errors are plain strings: they are handed to the plugin as the `err` of its import's
/// `result`, so they must not contain secrets either.
pub trait HostServices: Send + Sync + 'static {
    /// `jose.sign`: signs `payload` as a compact JWS with the host's key for `alg`.
    fn jose_sign(
        &self,
        ctx: &CallContext,
        alg: &str,
        header_json: &str,
        payload: &[u8],
    ) -> BoxFuture<'static, Result<String, String>>;

    /// `jose.encrypt`: encrypts `payload` as a compact JWE to `recipient`.
    fn jose_encrypt(
        &self,
        ctx: &CallContext,
        alg: &str,
        enc: &str,
        recipient: &str,
        header_json: &str,
        payload: &[u8],
    ) -> BoxFuture<'static, Result<String, String>>;

    /// `tokens.get-token`: a token from provider `provider` (`oauth2-client-credentials` or
    /// `tenant:x`) called with `config`, through the host's token cache.
    fn get_token(
        &self,
        ctx: &CallContext,
        provider: &str,
        config: &str,
    ) -> BoxFuture<'static, Result<String, String>>;

    /// `outbound.send` of a token provider. `allowed_hosts` comes from the runtime: parsed from
    /// the provider's config (its `allowed_hosts` array, else the host of its `token_url`; see
    /// [`super::allowed_hosts_from_config`]). The host enforces it and its address (SSRF) rules.
    /// The runtime never calls this with an empty list.
    fn send_outbound(
        &self,
        ctx: &CallContext,
        allowed_hosts: Vec<String>,
        request: HttpRequest,
    ) -> BoxFuture<'static, Result<HttpResponse, String>>;

    /// `log.log`: one line of the plugin's log (already truncated by the runtime). `ctx` is
    /// `None` outside a delivery (`info`, `validate`).
    fn log(&self, plugin: &str, ctx: Option<&CallContext>, level: LogLevel, message: &str);
}

/// A [`HostServices`] that denies everything and drops log lines to `tracing`: used for the
/// `info()` smoke call at load time and by `check_component`.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoHostServices;

impl HostServices for NoHostServices {
    fn jose_sign(
        &self,
        _: &CallContext,
        _: &str,
        _: &str,
        _: &[u8],
    ) -> BoxFuture<'static, Result<String, String>> {
        Box::pin(async { Err("jose is not available here".to_string()) })
    }

    fn jose_encrypt(
        &self,
        _: &CallContext,
        _: &str,
        _: &str,
        _: &str,
        _: &str,
        _: &[u8],
    ) -> BoxFuture<'static, Result<String, String>> {
        Box::pin(async { Err("jose is not available here".to_string()) })
    }

    fn get_token(
        &self,
        _: &CallContext,
        _: &str,
        _: &str,
    ) -> BoxFuture<'static, Result<String, String>> {
        Box::pin(async { Err("tokens are not available here".to_string()) })
    }

    fn send_outbound(
        &self,
        _: &CallContext,
        _: Vec<String>,
        _: HttpRequest,
    ) -> BoxFuture<'static, Result<HttpResponse, String>> {
        Box::pin(async { Err("outbound requests are not available here".to_string()) })
    }

    fn log(&self, plugin: &str, _: Option<&CallContext>, level: LogLevel, message: &str) {
        match level {
            LogLevel::Debug => tracing::debug!(plugin, "{message}"),
            LogLevel::Info => tracing::info!(plugin, "{message}"),
            LogLevel::Warn => tracing::warn!(plugin, "{message}"),
            LogLevel::Error => tracing::error!(plugin, "{message}"),
        }
    }
}
