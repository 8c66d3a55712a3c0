//! The seed's methods end to end, each checked by a receiver the way the tenant would: API key,
//! Basic, Bearer (OAuth2 and a tenant-uploaded token component), JWS (against the published
//! JWKS), JWE (with the tenant's private key), nested JWS+JWE, Standard Webhooks HMAC and mutual
//! TLS with a CSR-issued client certificate.

use std::time::Duration;

use serde_json::{Value, json};
use wasmhook::demo::Lab;
use wasmhook::demo::client::ApiClient;
use wasmhook::demo::pki::TestCa;
use wasmhook::demo::receiver::{Receiver, Verdict, judge};

use crate::support::TestEngine;

struct Setup {
    engine: TestEngine,
    tenant: String,
    lab: Lab,
}

async fn set_up() -> Setup {
    let engine = TestEngine::start_with(|c| {
        c.delivery.retry_schedule = vec![Duration::from_millis(100)];
    })
    .await;
    let (tenant, token) = engine.tenant("acme").await;
    let api = ApiClient::new(engine.server.url(), token);
    let lab = Lab::set_up(&engine.server.url(), &api, &tenant)
        .await
        .expect("lab set-up");
    Setup {
        engine,
        tenant,
        lab,
    }
}

impl Setup {
    async fn deliver(&self, event_type: &str) -> (String, Vec<Value>) {
        let event = self
            .engine
            .event(&self.tenant, event_type, json!({"amount": 12}))
            .await;
        let deliveries = self
            .engine
            .settled(&self.tenant, &event, Duration::from_secs(20))
            .await;
        (event, deliveries)
    }

    async fn endpoint(&self, spec: Value) -> String {
        self.engine.endpoint(&self.tenant, spec).await
    }

    async fn last_error(&self, event: &str, deliveries: &[Value]) -> String {
        let attempts = self
            .engine
            .attempts(&self.tenant, event, deliveries[0]["id"].as_str().unwrap())
            .await;
        attempts.last().unwrap()["error"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_method_is_accepted_by_a_receiver_that_checks_it() {
    let s = set_up().await;
    for case in &s.lab.cases {
        let (event, deliveries) = s.deliver(&case.event_type).await;
        assert_eq!(deliveries.len(), 1);
        let error = if deliveries[0]["status"] == "delivered" {
            String::new()
        } else {
            s.last_error(&event, &deliveries).await
        };
        assert_eq!(
            deliveries[0]["status"], "delivered",
            "{}: {error}",
            case.name
        );
        let judged = case.receiver.judged();
        assert!(
            judged.iter().any(|j| j.verdict.accepted),
            "{}: receiver did not verify: {:?}",
            case.name,
            judged.iter().map(|j| &j.verdict.note).collect::<Vec<_>>()
        );
    }
    // The tenant's own token component was uploaded through the API and used.
    assert!(s.lab.custom.fetches() >= 1);
    let (_, plugins) = s
        .engine
        .api
        .get(&format!("/v1/tenants/{}/plugins", s.tenant))
        .await;
    assert!(plugins.to_string().contains("acme-token"), "{plugins}");
    s.engine.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_credentials_are_rejected_by_the_receivers() {
    let s = set_up().await;
    let url = |name: &str| s.lab.case(name).unwrap().receiver.url();
    let twins = [
        (
            "api-key",
            json!([{"plugin": "api-key", "config": {"header": "x-api-key", "key": "wrong"}}]),
            "401",
        ),
        (
            "basic-auth",
            json!([{"plugin": "basic-auth", "config": {"client_id": "demo-client", "client_secret": "wrong"}}]),
            "401",
        ),
        (
            "jwe (RSA-OAEP-256)",
            json!([{"plugin": "jwe", "config": {"recipient": TestCa::new("other").cert_pem()}}]),
            "",
        ),
        ("jws (ES256)", json!([]), "415"),
    ];
    for (i, (name, steps, expected)) in twins.into_iter().enumerate() {
        let event_type = format!("wrong.{i}");
        s.endpoint(json!({"url": url(name), "event_types": [event_type], "steps": steps}))
            .await;
        let (event, deliveries) = s.deliver(&event_type).await;
        assert_eq!(
            deliveries[0]["status"], "dead",
            "{name}: a wrong credential must not be accepted"
        );
        let error = s.last_error(&event, &deliveries).await;
        assert!(error.contains(expected), "{name}: {error}");
    }
    // Bearer with a wrong client secret: the token route refuses, the attempt says why.
    let bearer = s.lab.case("bearer (OAuth2)").unwrap();
    let mut steps = bearer.spec["steps"].clone();
    steps[0]["config"]["provider_config"]["client_secret"] = json!("wrong");
    s.endpoint(
        json!({"url": bearer.receiver.url(), "event_types": ["wrong.bearer"], "steps": steps}),
    )
    .await;
    let (event, deliveries) = s.deliver("wrong.bearer").await;
    assert_eq!(deliveries[0]["status"], "dead");
    let error = s.last_error(&event, &deliveries).await;
    assert!(
        error.contains("401") && !error.contains("wrong"),
        "the error names the refusal, never the secret: {error}"
    );
    // mTLS endpoint without our client certificate: the receiver's handshake refuses us.
    let mtls = s.lab.case("mTLS").unwrap();
    s.endpoint(json!({"url": mtls.receiver.url(), "event_types": ["wrong.mtls"], "tls": {"trusted_issuers": s.lab.ca.cert_pem()}})).await;
    let (event, deliveries) = s.deliver("wrong.mtls").await;
    assert_eq!(deliveries[0]["status"], "dead");
    let error = s.last_error(&event, &deliveries).await;
    assert!(
        error.contains("TLS") || error.contains("connection"),
        "{error}"
    );
    s.engine.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_then_encrypt_round_trips_to_the_envelope() {
    let s = set_up().await;
    let case = s.lab.case("jws + jwe (nested)").unwrap();
    let (event, deliveries) = s.deliver(&case.event_type).await;
    assert_eq!(deliveries[0]["status"], "delivered");
    let request = &case.receiver.judged()[0].request;
    assert_eq!(request.header("content-type"), Some("application/jwt"));
    let token = String::from_utf8(request.body.to_vec()).unwrap();
    let (inner, header) =
        wasmhook::jose::decrypt_with_private_key(s.lab.tenant_key.private_key_pem(), &token)
            .unwrap();
    assert_eq!(header["cty"], "JWT");
    assert_eq!(header["alg"], "RSA-OAEP-256");
    assert_eq!(header["enc"], "A256GCM");
    let claims = wasmhook::demo::verify_jws(
        &s.engine.server.url(),
        &String::from_utf8(inner).unwrap(),
        Some(&event),
    )
    .await
    .unwrap();
    assert_eq!(claims["id"], event);
    assert_eq!(claims["jti"], event);
    assert_eq!(claims["data"], json!({"amount": 12}));
    assert_eq!(claims["resource"]["id"], "in_1");
    assert!(claims["iat"].as_u64().is_some());
    s.engine.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bearer_tokens_are_cached_refetched_once_on_401_and_refreshed_on_expiry() {
    let s = set_up().await;
    let case = s.lab.case("bearer (OAuth2)").unwrap();
    for _ in 0..5 {
        let (_, deliveries) = s.deliver(&case.event_type).await;
        assert_eq!(deliveries[0]["status"], "delivered");
    }
    assert_eq!(s.lab.oauth.fetches(), 1, "one token serves many deliveries");

    // The receiver stops accepting the token: exactly one refetch, no attempt spent.
    s.lab.oauth.revoke_all();
    let (event, deliveries) = s.deliver(&case.event_type).await;
    assert_eq!(deliveries[0]["status"], "delivered");
    assert_eq!(
        deliveries[0]["attempts"], 1,
        "the 401 retry does not spend an attempt"
    );
    assert_eq!(s.lab.oauth.fetches(), 2);
    let attempts = s
        .engine
        .attempts(&s.tenant, &event, deliveries[0]["id"].as_str().unwrap())
        .await;
    assert_eq!(attempts.len(), 1);
    let statuses: Vec<u16> = case
        .receiver
        .judged()
        .iter()
        .rev()
        .take(2)
        .map(|j| j.verdict.status)
        .collect();
    assert_eq!(
        statuses,
        vec![204, 401],
        "the receiver saw the refused token, then the fresh one"
    );

    // Short-lived tokens are refreshed before they expire.
    s.lab.oauth.set_lifetime(1);
    s.lab.oauth.revoke_all();
    s.deliver(&case.event_type).await; // 401 → fetch a 1-second token
    let fetched = s.lab.oauth.fetches();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let (_, deliveries) = s.deliver(&case.event_type).await;
    assert_eq!(deliveries[0]["status"], "delivered");
    assert_eq!(
        s.lab.oauth.fetches(),
        fetched + 1,
        "an expired token is refreshed, not sent"
    );
    s.engine.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mtls_refuses_a_receiver_certificate_from_another_issuer() {
    let s = set_up().await;
    // The CSR flow produced an active record.
    let (_, record) = s
        .engine
        .api
        .get(&format!(
            "/v1/tenants/{}/client-certificates/{}",
            s.tenant, s.lab.client_certificate
        ))
        .await;
    assert_eq!(record["status"], "active", "{record}");
    assert!(record.get("private_key_pem").is_none() && !record.to_string().contains("PRIVATE KEY"));
    // Importing an existing certificate and key is possible too; a mismatched pair is refused.
    let (chain, key) = s.lab.ca.issue_client_cert("imported");
    let path = format!("/v1/tenants/{}/client-certificates", s.tenant);
    let (status, imported) = s
        .engine
        .api
        .post(
            &path,
            json!({"name": "imported", "certificate_pem": chain, "private_key_pem": key}),
        )
        .await;
    assert_eq!(status, 201, "{imported}");
    assert_eq!(imported["status"], "active");
    let (_, other_key) = s.lab.ca.issue_client_cert("other");
    let (status, refused) = s
        .engine
        .api
        .post(
            &path,
            json!({"name": "bad", "certificate_pem": chain, "private_key_pem": other_key}),
        )
        .await;
    assert_eq!(status, 422, "{refused}");
    assert_eq!(refused["error"]["field"], "certificate_pem");
    assert!(!refused.to_string().contains("PRIVATE KEY"));
    // A receiver whose certificate comes from another CA.
    let other = TestCa::new("Impostor CA");
    let (chain, key) = other.issue_server_cert();
    let impostor = Receiver::start(
        Some(wasmhook::demo::pki::server_config(&chain, &key, None)),
        judge(|_| async { Verdict::accept("should never be reached") }),
    )
    .await
    .unwrap();
    s.endpoint(json!({"url": impostor.url(), "event_types": ["impostor"],
        "tls": {"client_certificate": s.lab.client_certificate, "trusted_issuers": s.lab.ca.cert_pem()}}))
        .await;
    let (event, deliveries) = s.deliver("impostor").await;
    assert_eq!(deliveries[0]["status"], "dead");
    let error = s.last_error(&event, &deliveries).await;
    assert!(error.contains("not issued by"), "{error}");
    assert!(impostor.judged().is_empty());
    s.engine.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_signed_before_and_after_a_key_rotation_both_verify() {
    let s = set_up().await;
    let case = s.lab.case("jws (ES256)").unwrap();
    s.deliver(&case.event_type).await;
    let (status, rotated) = s
        .engine
        .api
        .post("/v1/keys/rotate", json!({"alg": "ES256"}))
        .await;
    assert_eq!(status, 200, "{rotated}");
    s.deliver(&case.event_type).await;
    let judged = case.receiver.judged();
    assert_eq!(judged.len(), 2);
    let url = s.engine.server.url();
    let mut kids = Vec::new();
    for j in &judged {
        assert!(j.verdict.accepted, "{}", j.verdict.note);
        let token = String::from_utf8(j.request.body.to_vec()).unwrap();
        // Both still verify against the JWKS published now.
        wasmhook::demo::verify_jws(&url, &token, None)
            .await
            .unwrap();
        let header: Value =
            serde_json::from_slice(&base64_url(token.split('.').next().unwrap())).unwrap();
        kids.push(header["kid"].as_str().unwrap().to_string());
    }
    assert_ne!(kids[0], kids[1], "the rotation changed the signing key");
    let jwks = ApiClient::new(url, "")
        .get("/.well-known/jwks.json")
        .await
        .unwrap();
    for kid in &kids {
        let key = jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["kid"] == *kid)
            .expect("both keys published");
        assert!(
            key["x5c"][0].as_str().is_some_and(|c| !c.is_empty()),
            "published with its certificate: {key}"
        );
    }
    s.engine.server.shutdown().await;
}

fn base64_url(text: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text)
        .unwrap()
}
