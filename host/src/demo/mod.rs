//! `wasmhook demo`: a first run that shows every method working against receivers that check it
//! the way a tenant would.
//!
//! It starts the engine on a temporary SQLite file, starts one local receiver per method (plus
//! token routes and an mTLS receiver with its own CA), creates a tenant and one endpoint per
//! method through the API, sends events and prints a table: method, delivered, verified by the
//! receiver, latency. The same set-up ([`Lab`]) serves the end-to-end tests.

pub mod client;
pub mod pki;
pub mod receiver;

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value, json};

use crate::cli::DemoArgs;
use crate::jose::{self, SigningAlg, SigningKey};
use client::{ApiClient, CallError};
use pki::TestCa;
use receiver::{Delivered, Receiver, Verdict, judge};

/// Why the demo failed.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// The engine did not start.
    #[error("starting the engine: {0}")]
    Start(#[from] crate::engine::StartError),
    /// An API call failed.
    #[error(transparent)]
    Api(#[from] CallError),
    /// Local set-up failed.
    #[error("{0}")]
    Setup(String),
}

fn setup<E: std::fmt::Display>(context: &str) -> impl FnOnce(E) -> DemoError + '_ {
    move |e| DemoError::Setup(format!("{context}: {e}"))
}

/// A token route that issues opaque tokens and remembers them.
#[derive(Clone)]
pub struct TokenIssuer {
    issued: Arc<Mutex<HashSet<String>>>,
    fetches: Arc<AtomicU64>,
    lifetime_seconds: Arc<AtomicU64>,
}

impl Default for TokenIssuer {
    fn default() -> Self {
        Self {
            issued: Default::default(),
            fetches: Default::default(),
            lifetime_seconds: Arc::new(AtomicU64::new(300)),
        }
    }
}

impl TokenIssuer {
    /// Lifetime announced for new tokens (`expires_in`).
    pub fn set_lifetime(&self, seconds: u64) {
        self.lifetime_seconds.store(seconds, Ordering::SeqCst);
    }

    /// Lifetime announced for new tokens.
    pub fn lifetime(&self) -> u64 {
        self.lifetime_seconds.load(Ordering::SeqCst)
    }

    /// Issues a new token.
    pub fn issue(&self) -> String {
        let token = format!("tok_{}", hex::encode(rand::random::<[u8; 12]>()));
        self.issued
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(token.clone());
        self.fetches.fetch_add(1, Ordering::SeqCst);
        token
    }

    /// True when `token` was issued and not revoked.
    pub fn valid(&self, token: &str) -> bool {
        self.issued
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(token)
    }

    /// Revokes every token issued so far (the receiver will answer 401).
    pub fn revoke_all(&self) {
        self.issued
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }

    /// Tokens issued so far.
    pub fn fetches(&self) -> u64 {
        self.fetches.load(Ordering::SeqCst)
    }
}

/// One method under demonstration: its receiver and endpoint.
pub struct MethodCase {
    /// Name in the table.
    pub name: &'static str,
    /// Event type routed only to this method's endpoint.
    pub event_type: String,
    /// The receiver that checks the method.
    pub receiver: Receiver,
    /// The endpoint's id.
    pub endpoint: String,
    /// The steps of the endpoint (for making a wrong-credential twin).
    pub spec: Value,
}

/// Everything the demo (and the method tests) set up: CA, tenant keys, token routes, receivers.
pub struct Lab {
    /// The tenant's CA: signs the receivers' server certificates and our client certificate.
    pub ca: TestCa,
    /// The tenant's JWE key pair (RSA) with its certificate, as the tenant would give us.
    pub tenant_key: Arc<SigningKey>,
    /// The tenant's EC JWE key pair (P-256) with its certificate.
    pub tenant_ec_key: Arc<SigningKey>,
    /// The tenant's OAuth2 token route issuer.
    pub oauth: TokenIssuer,
    /// The tenant's custom token route issuer.
    pub custom: TokenIssuer,
    /// Token routes (kept running).
    pub token_routes: Vec<Receiver>,
    /// The methods.
    pub cases: Vec<MethodCase>,
    /// Client certificate record id.
    pub client_certificate: String,
}

const OAUTH_ID: &str = "demo-client";
const OAUTH_SECRET: &str = "demo-client-secret-4f1e";
const CUSTOM_KEY: &str = "tenant-api-key-77aa";
/// Secret of the Standard Webhooks method.
pub const WEBHOOK_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn header_is(d: &Delivered, name: &str, expected: &str) -> Verdict {
    match d.header(name) {
        Some(v) if v == expected => Verdict::accept(format!("{name} matches")),
        Some(_) => Verdict::reject(401, format!("wrong {name}")),
        None => Verdict::reject(401, format!("missing {name}")),
    }
}

async fn fetch_jwks(engine_url: &str) -> Option<String> {
    let (status, jwks) = ApiClient::new(engine_url, "")
        .send("GET", "/.well-known/jwks.json", Vec::new(), &[])
        .await;
    (status == 200).then(|| jwks.to_string())
}

/// Verifies a JWS the way a tenant does: against the engine's published JWKS.
pub async fn verify_jws(
    engine_url: &str,
    token: &str,
    webhook_id: Option<&str>,
) -> Result<Value, String> {
    let jwks = fetch_jwks(engine_url).await.ok_or("JWKS unavailable")?;
    let (payload, header) = jose::verify_with_jwks(&jwks, token).map_err(|e| e.to_string())?;
    let claims: Value = serde_json::from_slice(&payload).map_err(|e| e.to_string())?;
    if header.get("typ").and_then(Value::as_str) != Some("JWT") {
        return Err("typ is not JWT".into());
    }
    if webhook_id.is_some() && claims.get("jti").and_then(Value::as_str) != webhook_id {
        return Err("jti differs from webhook-id".into());
    }
    Ok(claims)
}

fn body_text(d: &Delivered) -> String {
    String::from_utf8_lossy(&d.body).trim().to_string()
}

/// Standard Webhooks signature check (`v1,<base64 HMAC-SHA256(id.timestamp.body)>`).
pub fn verify_standard_webhooks(secret: &str, d: &Delivered) -> bool {
    let key = base64::engine::general_purpose::STANDARD
        .decode(secret.trim_start_matches("whsec_"))
        .unwrap_or_default();
    let (Some(id), Some(ts), Some(signatures)) = (
        d.header("webhook-id"),
        d.header("webhook-timestamp"),
        d.header("webhook-signature"),
    ) else {
        return false;
    };
    let Ok(pkey) = openssl::pkey::PKey::hmac(&key) else {
        return false;
    };
    let Ok(mut signer) = openssl::sign::Signer::new(openssl::hash::MessageDigest::sha256(), &pkey)
    else {
        return false;
    };
    let message = [id.as_bytes(), b".", ts.as_bytes(), b".", &d.body].concat();
    let Ok(mac) = signer.sign_oneshot_to_vec(&message) else {
        return false;
    };
    let expected = format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac)
    );
    signatures.split(' ').any(|s| s == expected)
}

/// A receiver that accepts a JWT body only when its signature verifies against the JWKS.
async fn jws_receiver(engine: String) -> Result<Receiver, DemoError> {
    Receiver::start(
        None,
        judge(move |d: Delivered| {
            let engine = engine.clone();
            async move {
                if d.header("content-type") != Some("application/jwt") {
                    return Verdict::reject(415, "expected application/jwt");
                }
                match verify_jws(&engine, &body_text(&d), d.header("webhook-id")).await {
                    Ok(_) => Verdict::accept("signature verified against the JWKS"),
                    Err(e) => Verdict::reject(401, e),
                }
            }
        }),
    )
    .await
    .map_err(setup("receiver"))
}

/// A receiver that accepts a JWE only when `key` decrypts it to the envelope.
async fn jwe_receiver(key: Arc<SigningKey>) -> Result<Receiver, DemoError> {
    Receiver::start(
        None,
        judge(move |d: Delivered| {
            let key = key.clone();
            async move {
                match jose::decrypt_with_private_key(key.private_key_pem(), &body_text(&d)) {
                    Ok((payload, _)) => {
                        let envelope: Value = serde_json::from_slice(&payload).unwrap_or_default();
                        if envelope["id"].as_str() == d.header("webhook-id") {
                            Verdict::accept("decrypted with the tenant's key")
                        } else {
                            Verdict::reject(400, "decrypted payload is not the envelope")
                        }
                    }
                    Err(e) => Verdict::reject(400, e.to_string()),
                }
            }
        }),
    )
    .await
    .map_err(setup("receiver"))
}

impl Lab {
    /// Sets up every method for `tenant` on the engine at `engine_url`, through the API with the
    /// tenant's token.
    pub async fn set_up(
        engine_url: &str,
        api: &ApiClient,
        tenant: &str,
    ) -> Result<Self, DemoError> {
        let ca = TestCa::new("Acme Webhook CA");
        let tenant_key = Arc::new(
            tokio::task::spawn_blocking(|| {
                SigningKey::generate(SigningAlg::Rs256, "Acme webhook encryption", 365)
            })
            .await
            .map_err(setup("key task"))?
            .map_err(setup("tenant key"))?,
        );
        let tenant_ec_key = Arc::new(
            SigningKey::generate(SigningAlg::Es256, "Acme webhook encryption (EC)", 365)
                .map_err(setup("tenant EC key"))?,
        );
        let oauth = TokenIssuer::default();
        let custom = TokenIssuer::default();

        // Token routes.
        let issuer = oauth.clone();
        let oauth_route = Receiver::start(
            None,
            judge(move |d: Delivered| {
                let issuer = issuer.clone();
                async move {
                    let expected = format!(
                        "Basic {}",
                        base64::engine::general_purpose::STANDARD.encode(format!("{OAUTH_ID}:{OAUTH_SECRET}"))
                    );
                    let form = body_text(&d);
                    if d.header("authorization") != Some(expected.as_str()) {
                        return Verdict::reject(401, "invalid_client");
                    }
                    if !form.split('&').any(|p| p == "grant_type=client_credentials") {
                        return Verdict::reject(400, "unsupported_grant_type");
                    }
                    Verdict::json(json!({"access_token": issuer.issue(), "token_type": "Bearer", "expires_in": issuer.lifetime()}))
                }
            }),
        )
        .await
        .map_err(setup("token route"))?;
        let issuer = custom.clone();
        let custom_route = Receiver::start(
            None,
            judge(move |d: Delivered| {
                let issuer = issuer.clone();
                async move {
                    let body: Value = serde_json::from_slice(&d.body).unwrap_or_default();
                    if d.header("x-tenant-key") != Some(CUSTOM_KEY) || body["clientId"] != OAUTH_ID || body["clientSecret"] != OAUTH_SECRET {
                        return Verdict::reject(403, "denied");
                    }
                    Verdict::json(json!({"result": {"auth": {"token": issuer.issue(), "ttlSeconds": issuer.lifetime()}}}))
                }
            }),
        )
        .await
        .map_err(setup("custom token route"))?;

        // Our client certificate: CSR generated by the engine, signed by the tenant's CA.
        let cert = api
            .expect(
                "POST",
                &format!("/v1/tenants/{tenant}/client-certificates"),
                Some(json!({"name": "demo mTLS"})),
                201,
            )
            .await?;
        let client_certificate = cert["id"].as_str().unwrap_or_default().to_string();
        let signed = ca.sign_csr(cert["csr_pem"].as_str().unwrap_or_default());
        api.expect(
            "PUT",
            &format!("/v1/tenants/{tenant}/client-certificates/{client_certificate}/certificate"),
            Some(json!({"certificate_pem": signed})),
            200,
        )
        .await?;

        // A tenant-owned token provider, uploaded as a component.
        if let Some((_, bytes)) = crate::guests::EXAMPLE_COMPONENTS
            .iter()
            .find(|(n, _)| *n == "tenant-token-provider")
        {
            let (status, body) = api
                .send(
                    "PUT",
                    &format!("/v1/tenants/{tenant}/plugins/acme-token"),
                    bytes.to_vec(),
                    &[("content-type", "application/wasm")],
                )
                .await;
            if status != 200 {
                return Err(DemoError::Setup(format!(
                    "uploading the tenant token provider: {status} {body}"
                )));
            }
        }

        let api_key = format!("demo-key-{}", hex::encode(rand::random::<[u8; 8]>()));
        let basic = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{OAUTH_ID}:{OAUTH_SECRET}"))
        );
        let engine = engine_url.to_string();
        let mut cases = Vec::new();

        let receiver = {
            let key = api_key.clone();
            Receiver::start(
                None,
                judge(move |d: Delivered| {
                    let key = key.clone();
                    async move { header_is(&d, "x-api-key", &key) }
                }),
            )
            .await
            .map_err(setup("receiver"))?
        };
        cases.push((
            "api-key",
            receiver,
            json!([{"plugin": "api-key", "config": {"header": "x-api-key", "key": api_key}}]),
            None,
        ));

        let receiver = {
            let basic = basic.clone();
            Receiver::start(
                None,
                judge(move |d: Delivered| {
                    let basic = basic.clone();
                    async move { header_is(&d, "authorization", &basic) }
                }),
            )
            .await
            .map_err(setup("receiver"))?
        };
        cases.push(("basic-auth", receiver, json!([{"plugin": "basic-auth", "config": {"client_id": OAUTH_ID, "client_secret": OAUTH_SECRET}}]), None));

        let bearer_judge = |issuer: TokenIssuer| {
            judge(move |d: Delivered| {
                let issuer = issuer.clone();
                async move {
                    match d
                        .header("authorization")
                        .and_then(|v| v.strip_prefix("Bearer "))
                    {
                        Some(token) if issuer.valid(token) => {
                            Verdict::accept("token issued by our route")
                        }
                        Some(_) => Verdict::reject(401, "unknown or revoked token"),
                        None => Verdict::reject(401, "missing bearer token"),
                    }
                }
            })
        };
        let receiver = Receiver::start(None, bearer_judge(oauth.clone()))
            .await
            .map_err(setup("receiver"))?;
        cases.push((
            "bearer (OAuth2)",
            receiver,
            json!([{"plugin": "bearer", "config": {"provider": "oauth2-client-credentials", "provider_config": {
                "token_url": format!("http://127.0.0.1:{}/token", oauth_route.addr.port()),
                "client_id": OAUTH_ID, "client_secret": OAUTH_SECRET, "scope": "webhooks"}}}]),
            None,
        ));
        let receiver = Receiver::start(None, bearer_judge(custom.clone()))
            .await
            .map_err(setup("receiver"))?;
        cases.push((
            "bearer (tenant plugin)",
            receiver,
            json!([{"plugin": "bearer", "config": {"provider": "tenant:acme-token", "provider_config": {
                "token_url": format!("http://127.0.0.1:{}/auth", custom_route.addr.port()),
                "client_id": OAUTH_ID, "client_secret": OAUTH_SECRET, "api_key": CUSTOM_KEY}}}]),
            None,
        ));
        let receiver = Receiver::start(None, bearer_judge(custom.clone()))
            .await
            .map_err(setup("receiver"))?;
        cases.push((
            "bearer (http-token)",
            receiver,
            json!([{"plugin": "bearer", "config": {"provider": "http-token", "provider_config": {
                "token_url": format!("http://127.0.0.1:{}/auth", custom_route.addr.port()),
                "method": "POST",
                "headers": {"content-type": "application/json", "x-tenant-key": CUSTOM_KEY},
                "body": json!({"clientId": OAUTH_ID, "clientSecret": OAUTH_SECRET}).to_string(),
                "token_pointer": "/result/auth/token",
                "expires_in_pointer": "/result/auth/ttlSeconds"}}}]),
            None,
        ));

        for (name, alg) in [
            ("jws (ES256)", "ES256"),
            ("jws (RS256)", "RS256"),
            ("jws (EdDSA)", "EdDSA"),
        ] {
            cases.push((
                name,
                jws_receiver(engine.clone()).await?,
                json!([{"plugin": "jws", "config": {"alg": alg, "iss": "wasmhook-demo"}}]),
                None,
            ));
        }

        let receiver = jwe_receiver(tenant_key.clone()).await?;
        cases.push((
            "jwe (RSA-OAEP-256)",
            receiver,
            json!([{"plugin": "jwe", "config": {"recipient": tenant_key.certificate_pem}}]),
            None,
        ));
        cases.push((
            "jwe (ECDH-ES+A256KW)",
            jwe_receiver(tenant_ec_key.clone()).await?,
            json!([{"plugin": "jwe", "config": {"recipient": tenant_ec_key.certificate_pem, "alg": "ECDH-ES+A256KW"}}]),
            None,
        ));

        let receiver = {
            let (key, engine) = (tenant_key.clone(), engine.clone());
            Receiver::start(
                None,
                judge(move |d: Delivered| {
                    let (key, engine) = (key.clone(), engine.clone());
                    async move {
                        let (inner, header) = match jose::decrypt_with_private_key(
                            key.private_key_pem(),
                            &body_text(&d),
                        ) {
                            Ok(x) => x,
                            Err(e) => return Verdict::reject(400, e.to_string()),
                        };
                        if header.get("cty").and_then(Value::as_str) != Some("JWT") {
                            return Verdict::reject(400, "nested JWT must say cty: JWT");
                        }
                        match verify_jws(
                            &engine,
                            &String::from_utf8_lossy(&inner),
                            d.header("webhook-id"),
                        )
                        .await
                        {
                            Ok(_) => Verdict::accept("decrypted, then signature verified"),
                            Err(e) => Verdict::reject(401, e),
                        }
                    }
                }),
            )
            .await
            .map_err(setup("receiver"))?
        };
        cases.push((
            "jws + jwe (nested)",
            receiver,
            json!([{"plugin": "jws", "config": {"alg": "PS256"}}, {"plugin": "jwe", "config": {"recipient": tenant_key.certificate_pem}}]),
            None,
        ));

        let receiver = Receiver::start(
            None,
            judge(|d: Delivered| async move {
                if verify_standard_webhooks(WEBHOOK_SECRET, &d) {
                    Verdict::accept("HMAC verified")
                } else {
                    Verdict::reject(401, "bad webhook-signature")
                }
            }),
        )
        .await
        .map_err(setup("receiver"))?;
        cases.push((
            "standard-webhooks",
            receiver,
            json!([{"plugin": "standard-webhooks", "config": {"secret": WEBHOOK_SECRET}}]),
            None,
        ));

        let (server_chain, server_key) = ca.issue_server_cert();
        let tls = pki::server_config(&server_chain, &server_key, Some(&ca.cert_pem()));
        let receiver = Receiver::start(
            Some(tls),
            judge(|d: Delivered| async move {
                if d.client_chain.is_empty() {
                    Verdict::reject(401, "no client certificate")
                } else {
                    Verdict::accept("client certificate from the tenant's CA")
                }
            }),
        )
        .await
        .map_err(setup("receiver"))?;
        cases.push((
            "mTLS",
            receiver,
            json!([]),
            Some(
                json!({"client_certificate": client_certificate, "trusted_issuers": ca.cert_pem()}),
            ),
        ));

        let mut built = Vec::new();
        for (i, (name, receiver, steps, tls)) in cases.into_iter().enumerate() {
            let event_type = format!("demo.method{i}");
            let mut spec = json!({"url": receiver.url(), "event_types": [event_type], "steps": steps, "description": name});
            if let Some(tls) = tls {
                spec["tls"] = tls;
            }
            let endpoint = api
                .expect(
                    "POST",
                    &format!("/v1/tenants/{tenant}/endpoints"),
                    Some(spec.clone()),
                    201,
                )
                .await?;
            built.push(MethodCase {
                name,
                event_type,
                receiver,
                endpoint: endpoint["id"].as_str().unwrap_or_default().to_string(),
                spec,
            });
        }
        Ok(Self {
            ca,
            tenant_key,
            tenant_ec_key,
            oauth,
            custom,
            token_routes: vec![oauth_route, custom_route],
            cases: built,
            client_certificate,
        })
    }

    /// The case named `name`.
    pub fn case(&self, name: &str) -> Option<&MethodCase> {
        self.cases.iter().find(|c| c.name == name)
    }
}

/// Runs the demo and prints its table.
pub async fn run(args: DemoArgs) -> Result<(), DemoError> {
    let dir = tempfile::Builder::new()
        .prefix("wasmhook-demo-")
        .tempdir()
        .map_err(setup("temporary directory"))?;
    let admin = format!("demo-admin-{}", hex::encode(rand::random::<[u8; 12]>()));
    let mut config = crate::config::Config {
        data_dir: dir.path().to_path_buf(),
        listen: "127.0.0.1:0".parse().map_err(setup("address"))?,
        admin_token: Some(admin.clone()),
        ..Default::default()
    };
    config.http.allow_cidrs = vec!["127.0.0.1/32".parse().map_err(setup("cidr"))?];
    config.delivery.retry_schedule = vec![Duration::from_secs(1), Duration::from_secs(2)];
    // Each demo endpoint shows one method alone; production keeps this policy on.
    config.plugins.require_auth_and_security = false;
    println!(
        "wasmhook demo: starting the engine on {}",
        config
            .store_location()
            .map(|location| location.redacted())
            .unwrap_or_default()
    );
    let server = crate::server::start(config).await?;
    let url = server.url();
    let api = ApiClient::new(url.clone(), admin.clone());
    let created = api
        .expect(
            "POST",
            "/v1/tenants",
            Some(json!({"id": "acme", "name": "Acme Corp"})),
            201,
        )
        .await?;
    let tenant_api = api.with_token(created["token"].as_str().unwrap_or_default());
    let lab = Lab::set_up(&url, &tenant_api, "acme").await?;
    // Signing keys are made on first use; make them now so the table shows delivery latency.
    for alg in ["ES256", "RS256", "PS256", "EdDSA"] {
        api.expect("POST", "/v1/keys/rotate", Some(json!({ "alg": alg })), 200)
            .await?;
    }

    let started = Instant::now();
    let mut events = Vec::new();
    for case in &lab.cases {
        for i in 0..args.events.max(1) {
            let answer = tenant_api
                .expect("POST", "/v1/tenants/acme/events", Some(json!({"type": case.event_type, "resource": {"type": "invoice", "id": format!("in_{i}")}, "data": {"amount": 1000 + i}})), 202)
                .await?;
            events.push((
                case.name,
                answer["id"].as_str().unwrap_or_default().to_string(),
            ));
        }
    }
    // Wait until every delivery left `pending` (bounded).
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut rows: Vec<(&str, usize, usize, Vec<u64>)> = lab
        .cases
        .iter()
        .map(|c| (c.name, 0, 0, Vec::new()))
        .collect();
    loop {
        let mut pending = 0;
        for row in rows.iter_mut() {
            row.1 = 0;
            row.3.clear();
        }
        for (name, event) in &events {
            let deliveries = tenant_api
                .get(&format!("/v1/tenants/acme/events/{event}/deliveries"))
                .await?;
            for delivery in deliveries.as_array().into_iter().flatten() {
                match delivery["status"].as_str() {
                    Some("pending") => pending += 1,
                    Some("delivered") => {
                        if let Some(row) = rows.iter_mut().find(|r| r.0 == *name) {
                            row.1 += 1;
                            let attempts = tenant_api
                                .get(&format!(
                                    "/v1/tenants/acme/events/{event}/deliveries/{}/attempts",
                                    delivery["id"].as_str().unwrap_or_default()
                                ))
                                .await?;
                            if let Some(ms) = attempts
                                .as_array()
                                .and_then(|a| a.last())
                                .and_then(|a| a["latency_ms"].as_u64())
                            {
                                row.3.push(ms);
                            }
                        }
                    }
                    _ => {}
                }
            }
        }
        if pending == 0 || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let per_method = args.events.max(1);
    println!();
    println!(
        "{:<24} {:>10} {:>22} {:>12}",
        "method", "delivered", "verified by receiver", "latency p50"
    );
    println!("{}", "-".repeat(72));
    let mut all_ok = true;
    for (case, row) in lab.cases.iter().zip(rows.iter_mut()) {
        row.2 = case.receiver.accepted();
        row.3.sort_unstable();
        let p50 = row
            .3
            .get(row.3.len() / 2)
            .map(|ms| match ms {
                0 => "<1 ms".to_string(),
                ms => format!("{ms} ms"),
            })
            .unwrap_or_else(|| "-".into());
        all_ok &= row.1 == per_method && row.2 >= per_method;
        println!(
            "{:<24} {:>10} {:>22} {:>12}",
            row.0,
            format!("{}/{per_method}", row.1),
            format!("{}/{per_method}", row.2.min(per_method)),
            p50
        );
    }
    println!("{}", "-".repeat(72));
    println!(
        "{} events in {:.2} s; tokens fetched: OAuth2 route {}, tenant's custom route {}",
        events.len(),
        started.elapsed().as_secs_f64(),
        lab.oauth.fetches(),
        lab.custom.fetches()
    );
    server.shutdown().await;
    let kept = if args.keep { Some(dir.keep()) } else { None };
    match kept {
        Some(path) => {
            println!(
                "\nThe demo's database is kept at {}",
                path.join("wasmhook.sqlite3").display()
            );
            println!(
                "Run the engine on it:  wasmhook serve --data-dir {} --admin-token {admin}",
                path.display()
            );
        }
        None => {
            println!("\nThe demo's database was a temporary file (use --keep to keep it).");
            println!(
                "Run the engine for real:  wasmhook serve   (data in {}; admin token written to <data dir>/admin-token)",
                crate::config::default_data_dir().display()
            );
        }
    }
    if all_ok {
        Ok(())
    } else {
        Err(DemoError::Setup(
            "some methods were not delivered and verified (see the table)".into(),
        ))
    }
}
