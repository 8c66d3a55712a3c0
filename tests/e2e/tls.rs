//! The TLS building blocks against real HTTPS servers: mTLS over h2 and HTTP/1.1, with a CA-issued
//! identity and with a certificate signed from the host's own CSR; refusals without an identity
//! and for a server certificate from another issuer.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use wasmhook::demo::pki::{TestCa, server_config, start_https_server};
use wasmhook::tls::{check_certificate, client_config, generate_csr};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// One POST over a fresh TLS connection; returns (negotiated ALPN, status, body).
/// Fails after 20 s rather than hanging the test.
async fn post(
    config: Arc<rustls::ClientConfig>,
    addr: SocketAddr,
    server_name: &str,
    body: &'static [u8],
) -> Result<(Vec<u8>, u16, Bytes), BoxError> {
    let attempt = post_once(config, addr, server_name, body);
    tokio::time::timeout(std::time::Duration::from_secs(20), attempt)
        .await
        .map_err(|_| "request timed out")?
}

async fn post_once(
    config: Arc<rustls::ClientConfig>,
    addr: SocketAddr,
    server_name: &str,
    body: &'static [u8],
) -> Result<(Vec<u8>, u16, Bytes), BoxError> {
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from(server_name.to_owned())?;
    let tls = TlsConnector::from(config).connect(name, tcp).await?;
    let alpn = tls.get_ref().1.alpn_protocol().unwrap_or_default().to_vec();
    let request = http::Request::post(format!("https://{server_name}/hook"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from_static(body)))?;
    let response = if alpn == b"h2" {
        let (mut sender, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls)).await?;
        tokio::spawn(conn);
        sender.send_request(request).await?
    } else {
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
        tokio::spawn(conn);
        sender.send_request(request).await?
    };
    let status = response.status().as_u16();
    let body = response.into_body().collect().await?.to_bytes();
    Ok((alpn, status, body))
}

/// The rustls error somewhere in `err`'s source chain (directly or inside an `io::Error`).
fn rustls_error(err: &BoxError) -> Option<rustls::Error> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err.as_ref());
    while let Some(e) = source {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return Some(tls.clone());
        }
        if let Some(tls) = e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        {
            return Some(tls.clone());
        }
        source = e.source();
    }
    None
}

fn is_unknown_issuer(err: &BoxError) -> bool {
    matches!(
        rustls_error(err),
        Some(rustls::Error::InvalidCertificate(
            rustls::CertificateError::UnknownIssuer
        ))
    )
}

#[tokio::test]
async fn mtls_request_succeeds_with_identity_and_fails_without() {
    let ca = TestCa::new("Receiver CA");
    let (server_chain, server_key) = ca.issue_server_cert();
    let server = server_config(&server_chain, &server_key, Some(&ca.cert_pem()));
    let (addr, handle) = start_https_server(server, |parts, body, peer| {
        let reply = format!(
            "{} {} {} bytes, {} client certs",
            parts.method,
            parts.uri.path(),
            body.len(),
            peer.len()
        );
        (202, reply.into_bytes())
    })
    .await;

    let (client_chain, client_key) = ca.issue_client_cert("wasmhook-client");
    let config = client_config(Some(&ca.cert_pem()), Some((&client_chain, &client_key))).unwrap();
    for name in ["127.0.0.1", "localhost"] {
        let (alpn, status, body) = post(config.clone(), addr, name, b"{\"x\":1}")
            .await
            .unwrap();
        assert_eq!(alpn, b"h2");
        assert_eq!(status, 202);
        assert_eq!(body, "POST /hook 7 bytes, 2 client certs");
    }

    // HTTP/1.1 only client also works.
    let mut h1 = (*config).clone();
    h1.alpn_protocols = vec![b"http/1.1".to_vec()];
    let (alpn, status, _) = post(Arc::new(h1), addr, "127.0.0.1", b"{}").await.unwrap();
    assert_eq!((alpn.as_slice(), status), (&b"http/1.1"[..], 202));

    // A CSR made by generate_csr and signed by the CA is a working identity.
    let (csr_key, csr) = generate_csr("csr-client", &[]).unwrap();
    let csr_cert = ca.sign_csr(&csr);
    check_certificate(&csr_cert, &csr_key).unwrap();
    let config = client_config(Some(&ca.cert_pem()), Some((&csr_cert, &csr_key))).unwrap();
    let (_, status, body) = post(config, addr, "localhost", b"").await.unwrap();
    assert_eq!(status, 202);
    assert_eq!(body, "POST /hook 0 bytes, 1 client certs");

    // Without identity the server refuses the connection.
    let config = client_config(Some(&ca.cert_pem()), None).unwrap();
    let err = post(config, addr, "127.0.0.1", b"{}").await.unwrap_err();
    // With HTTP/2 the alert arrives after the client's handshake and h2 keeps only its text.
    let debug = format!("{err:?}");
    assert!(
        matches!(
            rustls_error(&err),
            Some(rustls::Error::AlertReceived(
                rustls::AlertDescription::CertificateRequired
            ))
        ) || debug.contains("received fatal alert: CertificateRequired"),
        "{debug}"
    );

    // A client certificate from another CA is refused as well.
    let other = TestCa::new("Other CA");
    let (other_chain, other_key) = other.issue_client_cert("intruder");
    let config = client_config(Some(&ca.cert_pem()), Some((&other_chain, &other_key))).unwrap();
    let err = post(config, addr, "127.0.0.1", b"{}").await.unwrap_err();
    let debug = format!("{err:?}");
    assert!(
        matches!(rustls_error(&err), Some(rustls::Error::AlertReceived(_)))
            || debug.contains("received fatal alert"),
        "{debug}"
    );

    handle.abort();
}

#[tokio::test]
async fn server_without_client_auth_sees_no_client_cert() {
    let ca = TestCa::new("Plain CA");
    let (chain, key) = ca.issue_server_cert();
    let (addr, handle) = start_https_server(server_config(&chain, &key, None), |_, body, peer| {
        assert!(peer.is_empty());
        (200, body.to_vec())
    })
    .await;
    let config = client_config(Some(&ca.cert_pem()), None).unwrap();
    let (_, status, body) = post(config, addr, "localhost", b"echo").await.unwrap();
    assert_eq!((status, &body[..]), (200, &b"echo"[..]));
    handle.abort();
}

#[tokio::test]
async fn server_cert_from_other_ca_is_unknown_issuer() {
    let server_ca = TestCa::new("Server CA");
    let trusted = TestCa::new("Tenant's trusted CA");
    let (chain, key) = server_ca.issue_server_cert();
    let (addr, handle) = start_https_server(server_config(&chain, &key, None), |_, _, _| {
        (200, Vec::new())
    })
    .await;

    let config = client_config(Some(&trusted.cert_pem()), None).unwrap();
    let err = post(config, addr, "127.0.0.1", b"{}").await.unwrap_err();
    assert!(
        is_unknown_issuer(&err),
        "expected UnknownIssuer, got {err:?}"
    );

    // Public roots do not know the test CA either.
    let config = client_config(None, None).unwrap();
    let err = post(config, addr, "localhost", b"{}").await.unwrap_err();
    assert!(
        is_unknown_issuer(&err),
        "expected UnknownIssuer, got {err:?}"
    );

    // Trusting the right CA works.
    let config = client_config(Some(&server_ca.cert_pem()), None).unwrap();
    assert_eq!(post(config, addr, "127.0.0.1", b"{}").await.unwrap().1, 200);
    handle.abort();
}
