//! Outbound HTTP: hyper 1 + rustls, pooled keep-alive connections (HTTP/1.1 and HTTP/2), connect
//! and total timeouts, a bounded response read, no redirects, and a guard against requests to
//! private networks (SSRF) checked on the **resolved** address.
//!
//! The guard sits in the DNS resolver of the connector, so the address that was checked is the
//! address that is connected to (no second lookup an attacker could answer differently). Hosts
//! written as IP literals skip DNS and are checked before the request is made.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::connect::dns::Name;
use hyper_util::rt::TokioExecutor;
use ipnet::IpNet;

use crate::plugins::{HttpRequest, HttpResponse};

/// Why a request could not be completed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SendError {
    /// The URL is not an absolute http(s) URL.
    #[error("invalid URL `{url}`: {reason}")]
    InvalidUrl {
        /// The URL.
        url: String,
        /// Why.
        reason: String,
    },
    /// A header or method is not valid HTTP.
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// The destination is a private, loopback or otherwise internal address.
    #[error("{0}")]
    Refused(String),
    /// The TLS handshake failed.
    #[error("TLS: {0}")]
    Tls(String),
    /// Connecting or exchanging failed.
    #[error("connection: {0}")]
    Connection(String),
    /// The whole attempt took longer than allowed.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
}

/// Which destinations are allowed.
#[derive(Debug, Clone, Default)]
pub struct AddressPolicy {
    /// Internal addresses inside these networks are allowed.
    pub allow_cidrs: Vec<IpNet>,
}

impl AddressPolicy {
    /// `Ok` when `ip` may be contacted; else why not.
    pub fn check(&self, ip: IpAddr) -> Result<(), String> {
        let ip = match ip {
            IpAddr::V6(v6) => v6
                .to_ipv4_mapped()
                .map(IpAddr::V4)
                .unwrap_or(IpAddr::V6(v6)),
            v4 => v4,
        };
        match internal_kind(ip) {
            None => Ok(()),
            Some(_) if self.allow_cidrs.iter().any(|net| net.contains(&ip)) => Ok(()),
            Some(kind) => Err(format!(
                "destination {ip} refused: it is a {kind} address (operators can allow it with http.allow_cidrs)"
            )),
        }
    }
}

/// The kind of internal address `ip` is, or `None` for a public one.
fn internal_kind(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            if v4.is_loopback() {
                Some("loopback")
            } else if v4.is_private() {
                Some("private")
            } else if v4.is_link_local() {
                Some("link-local")
            } else if v4.is_unspecified() || a == 0 {
                Some("unspecified")
            } else if a == 100 && (64..128).contains(&b) {
                Some("shared (carrier-grade NAT)")
            } else if v4.is_broadcast() || v4.is_multicast() || a >= 240 {
                Some("broadcast, multicast or reserved")
            } else if v4.is_documentation() || (a == 198 && (b == 18 || b == 19)) {
                Some("documentation or benchmarking")
            } else {
                None
            }
        }
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            if v6.is_loopback() {
                Some("loopback")
            } else if v6.is_unspecified() {
                Some("unspecified")
            } else if (first & 0xfe00) == 0xfc00 {
                Some("unique local (private)")
            } else if (first & 0xffc0) == 0xfe80 {
                Some("link-local")
            } else if v6.is_multicast() {
                Some("multicast")
            } else {
                None
            }
        }
    }
}

/// A DNS resolver that drops internal addresses the policy does not allow.
#[derive(Clone)]
struct GuardedResolver {
    policy: Arc<AddressPolicy>,
}

impl tower::Service<Name> for GuardedResolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let policy = self.policy.clone();
        Box::pin(async move {
            let host = name.as_str().to_string();
            let resolved: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let mut refusals = Vec::new();
            let allowed: Vec<SocketAddr> = resolved
                .into_iter()
                .filter(|addr| match policy.check(addr.ip()) {
                    Ok(()) => true,
                    Err(why) => {
                        refusals.push(why);
                        false
                    }
                })
                .collect();
            if allowed.is_empty() {
                let why = refusals
                    .into_iter()
                    .next()
                    .unwrap_or_else(|| "no addresses".into());
                return Err(std::io::Error::new(
                    std::io::ErrorKind::PermissionDenied,
                    RefusedDestination(format!("{host} resolves to no allowed address: {why}")),
                ));
            }
            Ok(allowed.into_iter())
        })
    }
}

/// Marker error for a destination refused by the policy (found again in the error chain).
#[derive(Debug)]
struct RefusedDestination(String);

impl std::fmt::Display for RefusedDestination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for RefusedDestination {}

type PooledClient = Client<HttpsConnector<HttpConnector<GuardedResolver>>, Full<Bytes>>;

/// Timeouts and limits of outbound requests.
#[derive(Debug, Clone)]
pub struct HttpLimits {
    /// Connecting.
    pub connect_timeout: Duration,
    /// The whole exchange.
    pub request_timeout: Duration,
    /// Response bytes read at most (the rest is dropped).
    pub max_response_bytes: usize,
}

/// The TLS settings a request uses: a cache key and the rustls configuration.
#[derive(Clone)]
pub struct TlsChoice {
    /// Identifies the configuration (connection pools are kept per key).
    pub key: String,
    /// The configuration.
    pub config: Arc<rustls::ClientConfig>,
}

/// A received response.
#[derive(Debug, Clone)]
pub struct Received {
    /// The response (body cut at the limit).
    pub response: HttpResponse,
    /// Time from the start of the request to the end of the read.
    pub latency: Duration,
}

impl Received {
    /// The `Retry-After` delay, when the receiver sent one (seconds or an HTTP date).
    pub fn retry_after(&self) -> Option<Duration> {
        let value = self
            .response
            .headers
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case("retry-after"))
            .map(|(_, v)| v.trim())?;
        if let Ok(seconds) = value.parse::<u64>() {
            return Some(Duration::from_secs(seconds));
        }
        let when =
            time::OffsetDateTime::parse(value, &time::format_description::well_known::Rfc2822)
                .ok()?;
        let delta = when - time::OffsetDateTime::now_utc();
        Some(Duration::from_secs(delta.whole_seconds().max(0) as u64))
    }
}

/// The outbound HTTP client: one connection pool per TLS configuration.
pub struct HttpClient {
    policy: Arc<AddressPolicy>,
    limits: HttpLimits,
    default_tls: Arc<rustls::ClientConfig>,
    clients: Mutex<HashMap<String, PooledClient>>,
}

/// rustls configuration trusting the public web roots.
pub fn public_roots_config() -> Arc<rustls::ClientConfig> {
    let roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("ring supports the default protocol versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Arc::new(config)
}

impl HttpClient {
    /// A client applying `policy` and `limits`.
    pub fn new(policy: AddressPolicy, limits: HttpLimits) -> Self {
        Self {
            policy: Arc::new(policy),
            limits,
            default_tls: public_roots_config(),
            clients: Mutex::new(HashMap::new()),
        }
    }

    /// The address policy.
    pub fn policy(&self) -> &AddressPolicy {
        &self.policy
    }

    fn client(&self, tls: Option<&TlsChoice>) -> PooledClient {
        let key = tls.map(|t| t.key.as_str()).unwrap_or("default");
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(client) = clients.get(key) {
            return client.clone();
        }
        let mut http = HttpConnector::new_with_resolver(GuardedResolver {
            policy: self.policy.clone(),
        });
        http.enforce_http(false);
        http.set_connect_timeout(Some(self.limits.connect_timeout));
        http.set_nodelay(true);
        let config = tls
            .map(|t| t.config.clone())
            .unwrap_or_else(|| self.default_tls.clone());
        // hyper-rustls sets ALPN itself from the enabled HTTP versions.
        let mut config = (*config).clone();
        config.alpn_protocols.clear();
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(config)
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .build(https);
        clients.insert(key.to_string(), client.clone());
        client
    }

    /// Forgets the connection pool of a TLS configuration (after it changed).
    pub fn forget(&self, key: &str) {
        self.clients
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
    }

    /// Sends `request`, reading at most the configured number of response bytes.
    pub async fn send(
        &self,
        request: HttpRequest,
        tls: Option<&TlsChoice>,
    ) -> Result<Received, SendError> {
        let started = Instant::now();
        let uri: http::Uri =
            request
                .url
                .parse()
                .map_err(|e: http::uri::InvalidUri| SendError::InvalidUrl {
                    url: request.url.clone(),
                    reason: e.to_string(),
                })?;
        match uri.scheme_str() {
            Some("http") | Some("https") => {}
            _ => {
                return Err(SendError::InvalidUrl {
                    url: request.url.clone(),
                    reason: "scheme must be http or https".into(),
                });
            }
        }
        let host = uri.host().ok_or_else(|| SendError::InvalidUrl {
            url: request.url.clone(),
            reason: "no host".into(),
        })?;
        if let Ok(ip) = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
        {
            self.policy.check(ip).map_err(SendError::Refused)?;
        }
        let method = http::Method::from_bytes(request.method.as_bytes()).map_err(|_| {
            SendError::InvalidRequest(format!("method `{}` is not valid", request.method))
        })?;
        let mut builder = http::Request::builder().method(method).uri(uri);
        for (name, value) in &request.headers {
            let name = http::HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                SendError::InvalidRequest(format!("header name `{name}` is not valid"))
            })?;
            let value = http::HeaderValue::from_str(value).map_err(|_| {
                SendError::InvalidRequest(format!("value of header `{name}` is not valid"))
            })?;
            builder = builder.header(name, value);
        }
        let outgoing = builder
            .body(Full::new(Bytes::from(request.body)))
            .map_err(|e| SendError::InvalidRequest(e.to_string()))?;
        let client = self.client(tls);
        let limit = self.limits.max_response_bytes;
        let exchange = async move {
            let response = client.request(outgoing).await.map_err(classify_error)?;
            let (parts, mut body) = response.into_parts();
            let mut collected = Vec::new();
            while collected.len() < limit {
                match body.frame().await {
                    Some(Ok(frame)) => {
                        if let Ok(data) = frame.into_data() {
                            let room = limit - collected.len();
                            collected.extend_from_slice(&data[..data.len().min(room)]);
                        }
                    }
                    Some(Err(e)) => {
                        return Err(SendError::Connection(format!("reading the response: {e}")));
                    }
                    None => break,
                }
            }
            let headers = parts
                .headers
                .iter()
                .map(|(k, v)| {
                    (
                        k.as_str().to_string(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect();
            Ok(HttpResponse {
                status: parts.status.as_u16(),
                headers,
                body: collected,
            })
        };
        let response = tokio::time::timeout(self.limits.request_timeout, exchange)
            .await
            .map_err(|_| SendError::Timeout(self.limits.request_timeout))??;
        Ok(Received {
            response,
            latency: started.elapsed(),
        })
    }
}

/// Turns a hyper client error into a message that says what went wrong.
fn classify_error(error: hyper_util::client::legacy::Error) -> SendError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&error);
    let mut chain = Vec::new();
    while let Some(err) = source {
        // An io::Error's `source()` skips its own inner error: look inside it too.
        let inner = err
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .map(|e| e as &(dyn std::error::Error + 'static));
        for candidate in [Some(err), inner].into_iter().flatten() {
            if let Some(refused) = candidate.downcast_ref::<RefusedDestination>() {
                return SendError::Refused(refused.0.clone());
            }
            if let Some(tls) = candidate.downcast_ref::<rustls::Error>() {
                return SendError::Tls(describe_tls_error(tls));
            }
        }
        let text = err.to_string();
        if chain.last() != Some(&text) {
            chain.push(text);
        }
        source = err.source();
    }
    let text = chain.join(": ");
    // Some layers keep only the text of the TLS error; recognise the common ones by it.
    if text.contains("invalid peer certificate: UnknownIssuer") {
        return SendError::Tls(describe_tls_error(&rustls::Error::InvalidCertificate(
            rustls::CertificateError::UnknownIssuer,
        )));
    }
    if text.contains("received fatal alert") || text.contains("invalid peer certificate") {
        return SendError::Tls(text);
    }
    SendError::Connection(text)
}

fn describe_tls_error(error: &rustls::Error) -> String {
    use rustls::{CertificateError, Error};
    match error {
        Error::InvalidCertificate(CertificateError::UnknownIssuer) => {
            "the receiver's certificate is not issued by a trusted issuer (for an endpoint with `tls.trusted_issuers`: not by the issuer the tenant gave)".into()
        }
        Error::InvalidCertificate(CertificateError::NotValidForName)
        | Error::InvalidCertificate(CertificateError::NotValidForNameContext { .. }) => {
            "the receiver's certificate is not valid for the endpoint's host name".into()
        }
        Error::InvalidCertificate(CertificateError::Expired)
        | Error::InvalidCertificate(CertificateError::ExpiredContext { .. }) => {
            "the receiver's certificate has expired".into()
        }
        Error::AlertReceived(alert) => format!(
            "the receiver refused the handshake ({alert:?}); for mutual TLS check that the endpoint's client certificate is one it accepts"
        ),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_addresses_are_refused_unless_allowed() {
        let policy = AddressPolicy::default();
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "192.168.1.1",
            "172.16.0.1",
            "169.254.169.254",
            "::1",
            "fe80::1",
            "fd00::1",
            "100.64.0.1",
            "0.0.0.0",
            "::ffff:127.0.0.1",
        ] {
            let err = policy.check(ip.parse().unwrap()).unwrap_err();
            assert!(err.contains("refused"), "{ip}: {err}");
        }
        for ip in ["93.184.216.34", "2606:4700::1111", "8.8.8.8"] {
            policy.check(ip.parse().unwrap()).unwrap();
        }
        let allowing = AddressPolicy {
            allow_cidrs: vec!["127.0.0.1/32".parse().unwrap()],
        };
        allowing.check("127.0.0.1".parse().unwrap()).unwrap();
        assert!(allowing.check("127.0.0.2".parse().unwrap()).is_err());
    }

    #[test]
    fn retry_after_in_seconds_and_dates() {
        let received = |value: &str| Received {
            response: HttpResponse {
                status: 429,
                headers: vec![("Retry-After".into(), value.into())],
                body: vec![],
            },
            latency: Duration::ZERO,
        };
        assert_eq!(received("7").retry_after(), Some(Duration::from_secs(7)));
        assert_eq!(
            received("Sun, 06 Nov 1994 08:49:37 GMT").retry_after(),
            Some(Duration::ZERO)
        );
        assert_eq!(received("soon").retry_after(), None);
    }
}
