//! A tenant's webhook receiver in Rust (josekit): checks the API key, decrypts a JWE with the
//! tenant's private key, verifies the JWS against wasmhook's published JWKS, and dedupes on
//! `webhook-id`.
//!
//! ```sh
//! WASMHOOK_URL=http://127.0.0.1:8080 API_KEY=717e... PRIVATE_KEY=tenant-key.pem \
//!     cargo run --example receiver -- 127.0.0.1:9000
//! ```

use std::collections::HashSet;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use josekit::jwe::RSA_OAEP_256;
use josekit::jwk::{Jwk, JwkSet};
use josekit::jws::{ES256, EdDSA, JwsVerifier, PS256, RS256};

struct Settings {
    wasmhook_url: String,
    api_key: Option<String>,
    private_key_pem: Option<Vec<u8>>,
    seen: Mutex<HashSet<String>>,
}

/// Fetches the JWKS (a real receiver caches it and refetches on an unknown `kid`).
async fn jwks(url: &str) -> Result<JwkSet, String> {
    let client: hyper_util::client::legacy::Client<_, http_body_util::Empty<Bytes>> =
        hyper_util::client::legacy::Client::builder(TokioExecutor::new())
            .build(hyper_util::client::legacy::connect::HttpConnector::new());
    let uri: hyper::Uri = format!("{url}/.well-known/jwks.json")
        .parse()
        .map_err(|e| format!("{e}"))?;
    let response = client.get(uri).await.map_err(|e| e.to_string())?;
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    JwkSet::from_bytes(&body).map_err(|e| e.to_string())
}

fn verifier_for(jwk: &Jwk) -> Result<Box<dyn JwsVerifier>, String> {
    let verifier: Box<dyn JwsVerifier> = match jwk.algorithm() {
        Some("RS256") => Box::new(RS256.verifier_from_jwk(jwk).map_err(|e| e.to_string())?),
        Some("PS256") => Box::new(PS256.verifier_from_jwk(jwk).map_err(|e| e.to_string())?),
        Some("ES256") => Box::new(ES256.verifier_from_jwk(jwk).map_err(|e| e.to_string())?),
        Some("EdDSA") => Box::new(EdDSA.verifier_from_jwk(jwk).map_err(|e| e.to_string())?),
        other => return Err(format!("unsupported alg {other:?}")),
    };
    Ok(verifier)
}

async fn check(
    settings: &Settings,
    headers: &hyper::HeaderMap,
    body: Bytes,
) -> Result<String, (u16, String)> {
    if let Some(key) = &settings.api_key
        && headers.get("x-api-key").and_then(|v| v.to_str().ok()) != Some(key.as_str())
    {
        return Err((401, "wrong API key".into()));
    }
    let mut payload =
        String::from_utf8(body.to_vec()).map_err(|_| (400, "body is not UTF-8".to_string()))?;
    // JWE: decrypt with our private key (a nested JWT carries `cty: JWT`).
    if payload.split('.').count() == 5 {
        let pem = settings
            .private_key_pem
            .as_ref()
            .ok_or((400, "JWE received but no PRIVATE_KEY".to_string()))?;
        let decrypter = RSA_OAEP_256
            .decrypter_from_pem(pem)
            .map_err(|e| (500, e.to_string()))?;
        let (inner, _header) = josekit::jwe::deserialize_compact(&payload, &decrypter)
            .map_err(|e| (400, e.to_string()))?;
        payload = String::from_utf8(inner)
            .map_err(|_| (400, "decrypted payload is not UTF-8".to_string()))?;
    }
    // JWS: verify against the JWKS, selecting the key by `kid`.
    if payload.split('.').count() == 3 {
        let set = jwks(&settings.wasmhook_url).await.map_err(|e| (503, e))?;
        let header_json = payload.split('.').next().unwrap_or_default();
        let header: serde_json::Value = serde_json::from_slice(
            &base64::Engine::decode(
                &base64::engine::general_purpose::URL_SAFE_NO_PAD,
                header_json,
            )
            .map_err(|e| (400, e.to_string()))?,
        )
        .map_err(|e| (400, e.to_string()))?;
        let kid = header["kid"].as_str().unwrap_or_default();
        let jwk = set
            .get(kid)
            .first()
            .copied()
            .ok_or((401, format!("unknown kid {kid}")))?;
        let verifier = verifier_for(jwk).map_err(|e| (401, e))?;
        let (claims, _) = josekit::jws::deserialize_compact(&payload, verifier.as_ref())
            .map_err(|e| (401, e.to_string()))?;
        payload =
            String::from_utf8(claims).map_err(|_| (400, "claims are not UTF-8".to_string()))?;
    }
    let envelope: serde_json::Value =
        serde_json::from_str(&payload).map_err(|e| (400, e.to_string()))?;
    let id = envelope["id"].as_str().unwrap_or_default().to_string();
    let first_time = settings
        .seen
        .lock()
        .map(|mut seen| seen.insert(id.clone()))
        .unwrap_or(true);
    Ok(format!(
        "{} {} {}",
        if first_time { "new" } else { "duplicate" },
        envelope["type"],
        id
    ))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9000".into());
    let settings = Arc::new(Settings {
        wasmhook_url: std::env::var("WASMHOOK_URL")
            .unwrap_or_else(|_| "http://127.0.0.1:8080".into()),
        api_key: std::env::var("API_KEY").ok(),
        private_key_pem: std::env::var("PRIVATE_KEY")
            .ok()
            .map(std::fs::read)
            .transpose()?,
        seen: Mutex::new(HashSet::new()),
    });
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    eprintln!("receiving webhooks on http://{addr}/");
    loop {
        let (stream, _) = listener.accept().await?;
        let settings = settings.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
                let settings = settings.clone();
                async move {
                    let (parts, body) = request.into_parts();
                    let body = body
                        .collect()
                        .await
                        .map(|b| b.to_bytes())
                        .unwrap_or_default();
                    let (status, text) = match check(&settings, &parts.headers, body).await {
                        Ok(summary) => {
                            eprintln!("accepted: {summary}");
                            (204, String::new())
                        }
                        Err((status, why)) => {
                            eprintln!("refused ({status}): {why}");
                            (status, why)
                        }
                    };
                    let mut response = hyper::Response::new(Full::new(Bytes::from(text)));
                    *response.status_mut() = hyper::StatusCode::from_u16(status)
                        .unwrap_or(hyper::StatusCode::BAD_REQUEST);
                    Ok::<_, Infallible>(response)
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
