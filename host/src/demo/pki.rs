//! Demo and test PKI: rcgen certificate authorities, rustls server configurations and real HTTPS servers
//! (hyper, HTTP/1.1 + HTTP/2) on 127.0.0.1 for end-to-end tests of TLS and mTLS delivery.
//!
//! Demo and test code: helpers panic with a message on failure (never used by `serve`).
#![allow(dead_code)] // The demo uses a subset; the tests use the rest.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, CertifiedIssuer,
    DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use time::{Duration, OffsetDateTime};
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::TlsAcceptor;

/// A test certificate authority (self-signed rcgen CA certificate and its key).
pub struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl std::fmt::Debug for TestCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCa").finish_non_exhaustive()
    }
}

fn leaf_params(cn: &str, sans: Vec<String>) -> CertificateParams {
    let mut params = CertificateParams::new(sans).expect("valid subject alternative names");
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    params.distinguished_name = dn;
    let now = OffsetDateTime::now_utc();
    params.not_before = now - Duration::days(1);
    params.not_after = now + Duration::days(30);
    params.is_ca = IsCa::NoCa;
    params.use_authority_key_identifier_extension = true;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params
}

impl TestCa {
    /// A new CA with common name `name` (ECDSA P-256 key), valid from yesterday for a year.
    pub fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("empty SAN list");
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, name);
        dn.push(DnType::OrganizationName, "wasmhook tests");
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let now = OffsetDateTime::now_utc();
        params.not_before = now - Duration::days(1);
        params.not_after = now + Duration::days(365);
        let key = KeyPair::generate().expect("generate CA key");
        let issuer = CertifiedIssuer::self_signed(params, key).expect("self-sign CA certificate");
        Self { issuer }
    }

    /// The CA certificate, PEM.
    pub fn cert_pem(&self) -> String {
        self.issuer.pem()
    }

    /// The CA certificate, DER.
    pub fn cert_der(&self) -> CertificateDer<'static> {
        self.issuer.der().clone()
    }

    /// Server certificate for 127.0.0.1 and localhost (IP SAN + DNS SAN), returns
    /// (chain pem = leaf + CA, key pem).
    pub fn issue_server_cert(&self) -> (String, String) {
        let mut params = leaf_params(
            "localhost",
            vec!["localhost".to_string(), "127.0.0.1".to_string()],
        );
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.issue(params)
    }

    /// Client certificate issued to a new key, returns (chain pem = leaf + CA, key pem).
    pub fn issue_client_cert(&self, cn: &str) -> (String, String) {
        let mut params = leaf_params(cn, Vec::new());
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.issue(params)
    }

    /// Sign a CSR PEM (as `tls::generate_csr` makes) → certificate PEM (leaf only), valid for
    /// client authentication from yesterday for 30 days.
    pub fn sign_csr(&self, csr_pem: &str) -> String {
        let mut csr = CertificateSigningRequestParams::from_pem(csr_pem).expect("parse CSR PEM");
        let now = OffsetDateTime::now_utc();
        csr.params.not_before = now - Duration::days(1);
        csr.params.not_after = now + Duration::days(30);
        csr.params.is_ca = IsCa::NoCa;
        csr.params.use_authority_key_identifier_extension = true;
        csr.params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        csr.params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        csr.signed_by(&self.issuer).expect("sign CSR").pem()
    }

    fn issue(&self, params: CertificateParams) -> (String, String) {
        let key = KeyPair::generate().expect("generate leaf key");
        let cert = params.signed_by(&key, &self.issuer).expect("sign leaf");
        (
            format!("{}{}", cert.pem(), self.issuer.pem()),
            key.serialize_pem(),
        )
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn certs_from_pem(pem: &str) -> Vec<CertificateDer<'static>> {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .expect("parse certificate PEM");
    assert!(!certs.is_empty(), "no certificate in PEM");
    certs
}

/// rustls `ServerConfig` serving `server_chain_pem`/`server_key_pem`; if `client_ca_pem` is
/// `Some`, REQUIRES a client certificate issued by it (`WebPkiClientVerifier`), else no client
/// auth. ALPN h2 + http/1.1. Ring provider.
pub fn server_config(
    server_chain_pem: &str,
    server_key_pem: &str,
    client_ca_pem: Option<&str>,
) -> Arc<ServerConfig> {
    let provider = provider();
    let verifier = match client_ca_pem {
        Some(pem) => {
            let mut roots = RootCertStore::empty();
            for cert in certs_from_pem(pem) {
                roots.add(cert).expect("client CA usable as trust anchor");
            }
            WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .build()
                .expect("build client verifier")
        }
        None => WebPkiClientVerifier::no_client_auth(),
    };
    let key = PrivateKeyDer::from_pem_slice(server_key_pem.as_bytes()).expect("parse server key");
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs_from_pem(server_chain_pem), key)
        .expect("server certificate and key");
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Arc::new(config)
}

/// Start an HTTPS server on 127.0.0.1:0 (hyper-util auto builder, HTTP/1.1 + HTTP/2) calling
/// `handler` for every request with the request head, the full body and the client's
/// certificate chain (DER, empty if none). The handler returns (status, body).
///
/// Returns the bound address and the accept loop's handle; aborting (or dropping the runtime)
/// stops the server and every connection it serves. Failed TLS handshakes are ignored (the
/// client sees them).
pub async fn start_https_server<F>(
    config: Arc<ServerConfig>,
    handler: F,
) -> (SocketAddr, JoinHandle<()>)
where
    F: Fn(http::request::Parts, Bytes, Vec<CertificateDer<'static>>) -> (u16, Vec<u8>)
        + Send
        + Sync
        + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().expect("local address");
    let acceptor = TlsAcceptor::from(config);
    let handler = Arc::new(handler);
    let handle = tokio::spawn(async move {
        // Connections live in this set: aborting the accept loop drops (aborts) them too.
        let mut connections = JoinSet::new();
        loop {
            let (tcp, _) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(pair) => pair,
                    Err(_) => continue,
                },
                Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            };
            let acceptor = acceptor.clone();
            let handler = handler.clone();
            connections.spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let peer_chain: Vec<CertificateDer<'static>> = tls
                    .get_ref()
                    .1
                    .peer_certificates()
                    .map(|certs| certs.iter().map(|c| c.clone().into_owned()).collect())
                    .unwrap_or_default();
                let service = service_fn(move |req: http::Request<Incoming>| {
                    let handler = handler.clone();
                    let peer_chain = peer_chain.clone();
                    async move {
                        let (parts, body) = req.into_parts();
                        let body = match body.collect().await {
                            Ok(collected) => collected.to_bytes(),
                            Err(_) => Bytes::new(),
                        };
                        let (status, out) = handler(parts, body, peer_chain);
                        let mut response = http::Response::new(Full::new(Bytes::from(out)));
                        *response.status_mut() = http::StatusCode::from_u16(status)
                            .unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
                        Ok::<_, Infallible>(response)
                    }
                });
                let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                let _ = builder.serve_connection(TokioIo::new(tls), service).await;
            });
        }
    });
    (addr, handle)
}
