//! Outbound HTTP: hyper 1 + rustls, pooled keep-alive connections (HTTP/1.1 and HTTP/2), connect
//! and total timeouts, a bounded response read, no redirects, and a guard against requests to
//! private networks (SSRF) checked on the **resolved** address.
//!
//! The guard sits in the DNS resolver of the connector, so the address that was checked is the
//! address that is connected to (no second lookup an attacker could answer differently). Hosts
//! written as IP literals skip DNS and are checked before the request is made.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
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
///
/// Refused by default: every range of the IANA IPv4 and IPv6 special-purpose address registries
/// (RFC 6890 and successors: loopback, private, shared, link-local, documentation, benchmarking,
/// protocol assignments, multicast, reserved, …), IPv6 outside the global unicast space
/// `2000::/3`, and the IPv6 forms that embed an IPv4 address: IPv4-mapped `::ffff:0:0/96`
/// (refused when the embedded IPv4 is), IPv4-compatible `::/96` (deprecated), NAT64
/// `64:ff9b::/96` and `64:ff9b:1::/48`, 6to4 `2002::/16` and Teredo `2001::/32` (refused whole:
/// they reach whatever IPv4 address they embed through a translator or relay).
#[derive(Debug, Clone, Default)]
pub struct AddressPolicy {
    /// Refused addresses inside these networks are allowed. An IPv4-mapped address is allowed
    /// when its embedded IPv4 address (the one actually connected to) or the address itself is
    /// inside one; every other form only when the address itself is.
    pub allow_cidrs: Vec<IpNet>,
    /// Egress only to `allow_cidrs`: every other address is refused, and names other than
    /// `localhost` are refused without being resolved (no DNS query leaves the machine).
    pub allow_cidrs_only: bool,
}

impl AddressPolicy {
    /// `Ok` when `ip` may be contacted; else why not.
    pub fn check(&self, ip: IpAddr) -> Result<(), String> {
        if self.allow_cidrs_only {
            let embedded = match ip {
                IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4),
                IpAddr::V4(_) => None,
            };
            let allowed = |addr: IpAddr| self.allow_cidrs.iter().any(|net| net.contains(&addr));
            return if allowed(ip) || embedded.is_some_and(allowed) {
                Ok(())
            } else {
                Err(format!(
                    "destination {ip} refused: egress is limited to http.allow_cidrs (http.egress_allow_cidrs_only)"
                ))
            };
        }
        let Some(kind) = refused_kind(ip) else {
            return Ok(());
        };
        let embedded = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4),
            IpAddr::V4(_) => None,
        };
        let allowed = |addr: IpAddr| self.allow_cidrs.iter().any(|net| net.contains(&addr));
        if allowed(ip) || embedded.is_some_and(allowed) {
            return Ok(());
        }
        Err(format!(
            "destination {ip} refused: it is {kind} (operators can allow it with http.allow_cidrs)"
        ))
    }

    /// Why a URL host written as an IP literal (`10.0.0.1`, `[::1]`, `::1`) is refused, or
    /// `None` when it is allowed or is a name (names are checked when they are resolved). The
    /// API calls this when endpoints are created, the outbound client before every request.
    pub fn refuses_literal(&self, host: &str) -> Option<String> {
        let bare = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        let ip = bare.parse::<IpAddr>().ok()?;
        self.check(ip).err()
    }
}

/// A range of a special-purpose registry: network, prefix length, what it is.
type Range<T> = (T, u8, &'static str);

/// The IANA IPv4 special-purpose address registry, plus multicast and the limited broadcast.
/// More specific entries first (the first match names the address).
const V4_RANGES: &[Range<u32>] = &[
    (0x0000_0000, 8, "a \"this network\" (unspecified) address"),
    (0x0a00_0000, 8, "a private address"),
    (0x6440_0000, 10, "a shared (carrier-grade NAT) address"),
    (0x7f00_0000, 8, "a loopback address"),
    (0xa9fe_0000, 16, "a link-local address"),
    (0xac10_0000, 12, "a private address"),
    (0xc000_0000, 24, "an IETF protocol assignment address"),
    (0xc000_0200, 24, "a documentation address"),
    (0xc01f_c400, 24, "an AS112 address"),
    (0xc034_c100, 24, "an AMT address"),
    (0xc058_6300, 24, "a 6to4 relay anycast address"),
    (0xc0a8_0000, 16, "a private address"),
    (0xc0af_3000, 24, "an AS112 (direct delegation) address"),
    (0xc612_0000, 15, "a benchmarking address"),
    (0xc633_6400, 24, "a documentation address"),
    (0xcb00_7100, 24, "a documentation address"),
    (0xe000_0000, 4, "a multicast address"),
    (0xffff_ffff, 32, "the broadcast address"),
    (0xf000_0000, 4, "a reserved address"),
];

/// The IANA IPv6 special-purpose address registry, plus the deprecated site-local and
/// IPv4-compatible ranges and multicast. More specific entries first. The IPv4-mapped range is
/// handled apart (its embedded IPv4 address decides).
const V6_RANGES: &[Range<u128>] = &[
    (0, 128, "the unspecified address"),
    (1, 128, "the loopback address"),
    (
        0x0064_ff9b_0000_0000_0000_0000_0000_0000,
        96,
        "a NAT64 (well-known prefix) address",
    ),
    (
        0x0064_ff9b_0001_0000_0000_0000_0000_0000,
        48,
        "a NAT64 (local-use prefix) address",
    ),
    (
        0x0100_0000_0000_0000_0000_0000_0000_0000,
        64,
        "a discard-only address",
    ),
    (
        0x2001_0000_0000_0000_0000_0000_0000_0000,
        32,
        "a Teredo address",
    ),
    (
        0x2001_0002_0000_0000_0000_0000_0000_0000,
        48,
        "a benchmarking address",
    ),
    (
        0x2001_0010_0000_0000_0000_0000_0000_0000,
        28,
        "an ORCHID address",
    ),
    (
        0x2001_0020_0000_0000_0000_0000_0000_0000,
        28,
        "an ORCHIDv2 address",
    ),
    (
        0x2001_0000_0000_0000_0000_0000_0000_0000,
        23,
        "an IETF protocol assignment address",
    ),
    (
        0x2001_0db8_0000_0000_0000_0000_0000_0000,
        32,
        "a documentation address",
    ),
    (
        0x2002_0000_0000_0000_0000_0000_0000_0000,
        16,
        "a 6to4 address",
    ),
    (
        0x3fff_0000_0000_0000_0000_0000_0000_0000,
        20,
        "a documentation address",
    ),
    (
        0x5f00_0000_0000_0000_0000_0000_0000_0000,
        16,
        "a segment routing (SRv6) address",
    ),
    (
        0xfc00_0000_0000_0000_0000_0000_0000_0000,
        7,
        "a unique local (private) address",
    ),
    (
        0xfe80_0000_0000_0000_0000_0000_0000_0000,
        10,
        "a link-local address",
    ),
    (
        0xfec0_0000_0000_0000_0000_0000_0000_0000,
        10,
        "a site-local (deprecated) address",
    ),
    (
        0xff00_0000_0000_0000_0000_0000_0000_0000,
        8,
        "a multicast address",
    ),
];

fn in_range<T>(addr: T, (net, len, _): &Range<T>) -> bool
where
    T: Copy + std::ops::Shr<u32, Output = T> + PartialEq,
{
    let bits = 8 * std::mem::size_of::<T>() as u32;
    let shift = bits - u32::from(*len);
    // A shift by the full width overflows: a zero-length prefix matches everything.
    shift == bits || (addr >> shift) == (*net >> shift)
}

/// What kind of refused address `ip` is, or `None` for an address that may be contacted.
fn refused_kind(ip: IpAddr) -> Option<String> {
    match ip {
        IpAddr::V4(v4) => v4_kind(v4).map(str::to_string),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return v4_kind(v4).map(|kind| format!("the IPv4-mapped form of {v4}, {kind}"));
            }
            let bits = u128::from(v6);
            if let Some((net, len, kind)) = V6_RANGES.iter().find(|r| in_range(bits, r)) {
                // Name the IPv4 address a translator or relay would reach.
                let embedded = match (*net >> 96, *len) {
                    (0x0064_ff9b, 96) => Some(bits as u32),
                    (0x2002_0000, 16) => Some((bits >> 80) as u32),
                    (0x2001_0000, 32) => Some(!(bits as u32)),
                    _ => None,
                };
                return Some(match embedded {
                    Some(v4) => format!("{kind} (reaching {})", Ipv4Addr::from(v4)),
                    None => kind.to_string(),
                });
            }
            if bits >> 32 == 0 {
                let v4 = Ipv4Addr::from(bits as u32);
                return Some(match v4_kind(v4) {
                    Some(kind) => format!("the IPv4-compatible (deprecated) form of {v4}, {kind}"),
                    None => format!("the IPv4-compatible (deprecated) form of {v4}"),
                });
            }
            if bits >> 125 != 0b001 {
                return Some(
                    "a reserved address (outside the global unicast range 2000::/3)".into(),
                );
            }
            None
        }
    }
}

fn v4_kind(v4: Ipv4Addr) -> Option<&'static str> {
    let bits = u32::from(v4);
    V4_RANGES
        .iter()
        .find(|r| in_range(bits, r))
        .map(|(_, _, kind)| *kind)
}

/// Takes `user:password@` out of `uri`; returns the URI without it and the matching Basic
/// `authorization` value (user and password percent-decoded).
fn split_userinfo(uri: http::Uri) -> Result<(http::Uri, Option<http::HeaderValue>), String> {
    let Some(authority) = uri.authority().map(|a| a.as_str().to_string()) else {
        return Ok((uri, None));
    };
    let Some((userinfo, host_port)) = authority.rsplit_once('@') else {
        return Ok((uri, None));
    };
    let decode = |text: &str| {
        percent_decode(text)
            .ok_or_else(|| "the URL's user or password is not valid percent-encoding".to_string())
    };
    let (user, password) = match userinfo.split_once(':') {
        Some((user, password)) => (decode(user)?, decode(password)?),
        None => (decode(userinfo)?, String::new()),
    };
    let credentials = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        format!("{user}:{password}"),
    );
    let mut header = http::HeaderValue::from_str(&format!("Basic {credentials}"))
        .map_err(|_| "the URL's credentials cannot be sent".to_string())?;
    header.set_sensitive(true);
    let mut parts = uri.into_parts();
    parts.authority = Some(
        host_port
            .parse()
            .map_err(|_| "the URL's host is not valid".to_string())?,
    );
    let uri = http::Uri::from_parts(parts).map_err(|e| e.to_string())?;
    Ok((uri, Some(header)))
}

/// `%41` → `A`; `None` for a broken escape or bytes that are not UTF-8.
fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
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
            if policy.allow_cidrs_only && host != "localhost" {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::PermissionDenied,
                    RefusedDestination(format!(
                        "{host} refused: egress is limited to the addresses of http.allow_cidrs (http.egress_allow_cidrs_only); names are not resolved"
                    )),
                ));
            }
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
        // Never the URL itself in an error: it may carry a password.
        let shown = crate::store::redact_url(&request.url);
        let uri: http::Uri =
            request
                .url
                .parse()
                .map_err(|e: http::uri::InvalidUri| SendError::InvalidUrl {
                    url: shown.clone(),
                    reason: e.to_string(),
                })?;
        match uri.scheme_str() {
            Some("http") | Some("https") => {}
            _ => {
                return Err(SendError::InvalidUrl {
                    url: shown.clone(),
                    reason: "scheme must be http or https".into(),
                });
            }
        }
        let host = uri.host().ok_or_else(|| SendError::InvalidUrl {
            url: shown.clone(),
            reason: "no host".into(),
        })?;
        if let Some(why) = self.policy.refuses_literal(host) {
            return Err(SendError::Refused(why));
        }
        // `user:password@` in the URL becomes a Basic `authorization` header (unless a step set
        // one), and leaves the URI: hyper would neither send it nor keep it out of its logs.
        let (uri, basic) = split_userinfo(uri).map_err(|reason| SendError::InvalidUrl {
            url: shown.clone(),
            reason,
        })?;
        let method = http::Method::from_bytes(request.method.as_bytes()).map_err(|_| {
            SendError::InvalidRequest(format!("method `{}` is not valid", request.method))
        })?;
        let mut builder = http::Request::builder().method(method).uri(uri);
        let has_authorization = request
            .headers
            .iter()
            .any(|(name, _)| name.eq_ignore_ascii_case("authorization"));
        if let Some(basic) = basic.filter(|_| !has_authorization) {
            builder = builder.header(http::header::AUTHORIZATION, basic);
        }
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
            ..Default::default()
        };
        let only = AddressPolicy {
            allow_cidrs: vec!["127.0.0.1/32".parse().unwrap()],
            allow_cidrs_only: true,
        };
        only.check("127.0.0.1".parse().unwrap()).unwrap();
        assert!(only.check("8.8.8.8".parse().unwrap()).is_err());
        assert!(only.check("2606:4700::1111".parse().unwrap()).is_err());
        allowing.check("127.0.0.1".parse().unwrap()).unwrap();
        assert!(allowing.check("127.0.0.2".parse().unwrap()).is_err());
    }

    /// Every range of the special-purpose registries at its edges, the IPv4-embedding IPv6
    /// forms, and ordinary public addresses.
    #[test]
    fn special_purpose_ranges_table() {
        let policy = AddressPolicy::default();
        let table: &[(&str, bool)] = &[
            // IPv4
            ("0.0.0.0", true),
            ("0.255.255.255", true),
            ("1.0.0.0", false),
            ("9.255.255.255", false),
            ("10.0.0.0", true),
            ("10.255.255.255", true),
            ("11.0.0.0", false),
            ("100.63.255.255", false),
            ("100.64.0.0", true),
            ("100.127.255.255", true),
            ("100.128.0.0", false),
            ("126.255.255.255", false),
            ("127.0.0.1", true),
            ("127.255.255.255", true),
            ("128.0.0.0", false),
            ("169.253.255.255", false),
            ("169.254.0.0", true),
            ("169.254.169.254", true),
            ("169.254.255.255", true),
            ("169.255.0.0", false),
            ("172.15.255.255", false),
            ("172.16.0.0", true),
            ("172.31.255.255", true),
            ("172.32.0.0", false),
            ("191.255.255.255", false),
            ("192.0.0.0", true),
            ("192.0.0.255", true),
            ("192.0.1.0", false),
            ("192.0.2.0", true),
            ("192.0.2.255", true),
            ("192.0.3.0", false),
            ("192.31.195.255", false),
            ("192.31.196.0", true),
            ("192.31.196.255", true),
            ("192.31.197.0", false),
            ("192.52.193.0", true),
            ("192.52.193.255", true),
            ("192.52.194.0", false),
            ("192.88.98.255", false),
            ("192.88.99.0", true),
            ("192.88.99.255", true),
            ("192.88.100.0", false),
            ("192.167.255.255", false),
            ("192.168.0.0", true),
            ("192.168.255.255", true),
            ("192.169.0.0", false),
            ("192.175.47.255", false),
            ("192.175.48.0", true),
            ("192.175.48.255", true),
            ("192.175.49.0", false),
            ("198.17.255.255", false),
            ("198.18.0.0", true),
            ("198.19.255.255", true),
            ("198.20.0.0", false),
            ("198.51.99.255", false),
            ("198.51.100.0", true),
            ("198.51.100.255", true),
            ("198.51.101.0", false),
            ("203.0.112.255", false),
            ("203.0.113.0", true),
            ("203.0.113.255", true),
            ("203.0.114.0", false),
            ("223.255.255.255", false),
            ("224.0.0.0", true),
            ("239.255.255.255", true),
            ("240.0.0.0", true),
            ("255.255.255.254", true),
            ("255.255.255.255", true),
            ("1.1.1.1", false),
            ("8.8.8.8", false),
            ("93.184.216.34", false),
            // IPv6
            ("::", true),
            ("::1", true),
            ("::2", true),
            ("::7f00:1", true),
            ("::808:808", true),
            ("::ffff:127.0.0.1", true),
            ("::ffff:10.0.0.1", true),
            ("::ffff:169.254.169.254", true),
            ("::ffff:0.0.0.0", true),
            ("::ffff:8.8.8.8", false),
            ("::ffff:1.1.1.1", false),
            ("::1:0:0:0", true),
            ("64:ff9b::", true),
            ("64:ff9b::a00:1", true),
            ("64:ff9b::808:808", true),
            ("64:ff9b::ffff:ffff", true),
            ("64:ff9b:1::", true),
            ("64:ff9b:1:ffff:ffff:ffff:ffff:ffff", true),
            ("64:ff9b:2::1", true),
            ("100::", true),
            ("100::ffff:ffff:ffff:ffff", true),
            ("100:0:0:1::", true),
            ("1fff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", true),
            ("2000::", false),
            ("2000:ffff:ffff:ffff:ffff:ffff:ffff:ffff", false),
            ("2001::", true),
            ("2001:0:ffff:ffff:ffff:ffff:ffff:ffff", true),
            ("2001:0:4136:e378:8000:63bf:3fff:fdd2", true),
            ("2001:1::1", true),
            ("2001:2::", true),
            ("2001:2:0:ffff:ffff:ffff:ffff:ffff", true),
            ("2001:3::1", true),
            ("2001:10::", true),
            ("2001:1f:ffff:ffff:ffff:ffff:ffff:ffff", true),
            ("2001:20::", true),
            ("2001:2f:ffff:ffff:ffff:ffff:ffff:ffff", true),
            ("2001:1ff:ffff:ffff:ffff:ffff:ffff:ffff", true),
            ("2001:200::", false),
            ("2001:db7:ffff:ffff:ffff:ffff:ffff:ffff", false),
            ("2001:db8::", true),
            ("2001:db8:ffff:ffff:ffff:ffff:ffff:ffff", true),
            ("2001:db9::", false),
            ("2001:4860:4860::8888", false),
            ("2001:ffff:ffff:ffff:ffff:ffff:ffff:ffff", false),
            ("2002::", true),
            ("2002:7f00:1::", true),
            ("2002:ffff:ffff:ffff:ffff:ffff:ffff:ffff", true),
            ("2003::", false),
            ("2606:4700::1111", false),
            ("2a00:1450:4001:82a::200e", false),
            ("3ffe:ffff:ffff:ffff:ffff:ffff:ffff:ffff", false),
            ("3fff::", true),
            ("3fff:fff:ffff:ffff:ffff:ffff:ffff:ffff", true),
            ("3fff:1000::", false),
            ("4000::", true),
            ("5f00::", true),
            ("5f00:ffff:ffff:ffff:ffff:ffff:ffff:ffff", true),
            ("fbff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", true),
            ("fc00::", true),
            ("fd00::1", true),
            ("fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", true),
            ("fe80::", true),
            ("fe80::1", true),
            ("febf:ffff:ffff:ffff:ffff:ffff:ffff:ffff", true),
            ("fec0::", true),
            ("feff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", true),
            ("ff00::", true),
            ("ff02::1", true),
            ("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", true),
        ];
        for (address, refused) in table {
            let ip: IpAddr = address.parse().unwrap();
            let verdict = policy.check(ip);
            assert_eq!(verdict.is_err(), *refused, "{address}: {verdict:?}");
            if let Err(why) = verdict {
                assert!(
                    why.contains("refused") && why.contains(&ip.to_string()),
                    "{why}"
                );
            }
            // As a URL host, bracketed for IPv6, the literal check agrees.
            let host = if ip.is_ipv6() {
                format!("[{address}]")
            } else {
                address.to_string()
            };
            assert_eq!(policy.refuses_literal(&host).is_some(), *refused, "{host}");
        }
    }

    #[test]
    fn refusals_name_the_range_and_the_embedded_address() {
        let policy = AddressPolicy::default();
        let why = |ip: &str| policy.check(ip.parse().unwrap()).unwrap_err();
        assert!(
            why("::7f00:1").contains("IPv4-compatible"),
            "{}",
            why("::7f00:1")
        );
        assert!(why("::7f00:1").contains("loopback"), "{}", why("::7f00:1"));
        assert!(why("::ffff:127.0.0.1").contains("IPv4-mapped form of 127.0.0.1, a loopback"));
        assert!(
            why("64:ff9b::a00:1").contains("NAT64"),
            "{}",
            why("64:ff9b::a00:1")
        );
        assert!(why("64:ff9b::a00:1").contains("10.0.0.1"));
        assert!(
            why("2002:7f00:1::").contains("6to4") && why("2002:7f00:1::").contains("127.0.0.1")
        );
        assert!(why("2001:0:4136:e378:8000:63bf:3fff:fdd2").contains("Teredo"));
        assert!(why("2001:0:4136:e378:8000:63bf:3fff:fdd2").contains("192.0.2.45"));
        assert!(why("169.254.169.254").contains("link-local"));
        // Names are not literals: they are checked when resolved.
        assert_eq!(policy.refuses_literal("localhost"), None);
        assert_eq!(policy.refuses_literal("example.com"), None);
        assert_eq!(policy.refuses_literal("[not-an-ip]"), None);
    }

    #[test]
    fn url_credentials_become_a_basic_header_and_leave_the_uri() {
        let (uri, basic) = split_userinfo(
            "https://hook%40user:p%3Ass@example.com:8443/a?b=1"
                .parse()
                .unwrap(),
        )
        .unwrap();
        assert_eq!(uri.to_string(), "https://example.com:8443/a?b=1");
        let basic = basic.unwrap();
        assert!(basic.is_sensitive());
        let expected =
            base64::Engine::encode(&base64::engine::general_purpose::STANDARD, "hook@user:p:ss");
        assert_eq!(basic.to_str().unwrap(), format!("Basic {expected}"));
        let (plain, none) = split_userinfo("http://example.com/x".parse().unwrap()).unwrap();
        assert_eq!(plain.to_string(), "http://example.com/x");
        assert!(none.is_none());
        assert!(split_userinfo("http://a:%zz@example.com/".parse().unwrap()).is_err());
    }

    #[test]
    fn allow_cidrs_permit_exact_addresses_not_their_embeddings() {
        let policy = AddressPolicy {
            allow_cidrs: vec![
                "127.0.0.1/32".parse().unwrap(),
                "64:ff9b::a00:1/128".parse().unwrap(),
            ],
            ..Default::default()
        };
        let ok = |ip: &str| policy.check(ip.parse().unwrap()).is_ok();
        assert!(ok("127.0.0.1"));
        // The mapped form connects to the embedded address, which is allowed.
        assert!(ok("::ffff:127.0.0.1"));
        // The other forms reach another host (a translator, a relay): not allowed by the IPv4 CIDR.
        assert!(!ok("::7f00:1"));
        assert!(!ok("64:ff9b::7f00:1"));
        assert!(!ok("2002:7f00:1::1"));
        assert!(ok("64:ff9b::a00:1"));
        assert!(!ok("64:ff9b::a00:2"));
        assert!(!ok("127.0.0.2"));
        assert_eq!(policy.refuses_literal("[::ffff:127.0.0.1]"), None);
        assert!(policy.refuses_literal("[::1]").is_some());
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
