//! mTLS rotation with a staged certificate: a client certificate record holds a staged next
//! certificate with its own key (new CSR while the current stays live) and switches to it at
//! `activate_at`, or when it is uploaded, with no failed delivery during the switch. The
//! receiver is a real TLS server on 127.0.0.1 requiring client certificates from either of two
//! issuers.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use wasmhook::demo::pki::{TestCa, server_config, start_https_server};
use wasmhook::model::{now_unix, rfc3339};

use crate::support::TestEngine;

/// (when, SHA-256 of the client's leaf certificate) of every request.
type Seen = Arc<Mutex<Vec<(Instant, String)>>>;

async fn receiver(server_ca: &TestCa, client_cas: &[&TestCa]) -> (String, Seen) {
    let (chain, key) = server_ca.issue_server_cert();
    let trusted: String = client_cas.iter().map(|ca| ca.cert_pem()).collect();
    let seen: Seen = Arc::default();
    let log = seen.clone();
    let (addr, _server) = start_https_server(
        server_config(&chain, &key, Some(&trusted)),
        move |_, _, peer| {
            let leaf = peer
                .first()
                .map(|der| hex::encode(Sha256::digest(der.as_ref())))
                .unwrap_or_default();
            log.lock().unwrap().push((Instant::now(), leaf));
            (200, b"ok".to_vec())
        },
    )
    .await;
    (format!("https://127.0.0.1:{}/hook", addr.port()), seen)
}

fn fingerprint(record: &Value) -> String {
    record["certificate"]["sha256_fingerprint"]
        .as_str()
        .unwrap_or_else(|| panic!("no certificate in {record}"))
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_staged_certificate_takes_over_with_no_failed_delivery() {
    let engine = TestEngine::start().await;
    let (tenant, _) = engine.tenant("acme").await;
    let (server_ca, first_ca, next_ca) = (
        TestCa::new("Receiver CA"),
        TestCa::new("Client CA 1"),
        TestCa::new("Client CA 2"),
    );
    let (url, seen_log) = receiver(&server_ca, &[&first_ca, &next_ca]).await;
    let certificates = format!("/v1/tenants/{tenant}/client-certificates");

    let (status, record) = engine
        .api
        .post(&certificates, json!({"name": "main"}))
        .await;
    assert_eq!(status, 201, "{record}");
    let id = record["id"].as_str().unwrap().to_string();
    let record_path = format!("{certificates}/{id}");
    let signed = first_ca.sign_csr(record["csr_pem"].as_str().unwrap());
    let (status, record) = engine
        .api
        .json(
            "PUT",
            &format!("{record_path}/certificate"),
            json!({"certificate_pem": signed}),
        )
        .await;
    assert_eq!(status, 200, "{record}");
    let first = fingerprint(&record);
    engine
        .endpoint(
            &tenant,
            json!({"url": url, "tls": {"client_certificate": id, "trusted_issuers": server_ca.cert_pem()}}),
        )
        .await;

    // Deliveries all along, every 25 ms.
    let producer = {
        let api = engine.api.clone();
        let tenant = tenant.clone();
        tokio::spawn(async move {
            let mut events = Vec::new();
            let end = Instant::now() + Duration::from_millis(4500);
            while Instant::now() < end {
                let (status, body) = api
                    .post(
                        &format!("/v1/tenants/{tenant}/events"),
                        json!({"type": "tick", "data": {}}),
                    )
                    .await;
                assert_eq!(status, 202, "{body}");
                events.push(body["id"].as_str().unwrap().to_string());
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            events
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Stage the next key: a new CSR while the current certificate stays live.
    let (status, staged) = engine
        .api
        .post(
            &format!("{record_path}/next"),
            json!({"common_name": "main-2"}),
        )
        .await;
    assert_eq!(status, 200, "{staged}");
    assert_eq!(staged["next"]["status"], "awaiting_certificate");
    assert_eq!(fingerprint(&staged), first);
    assert!(!staged.to_string().contains("PRIVATE KEY"));
    let csr = staged["next"]["csr_pem"].as_str().unwrap();
    assert_ne!(csr, record["csr_pem"].as_str().unwrap(), "a new key");
    // A certificate for another key is refused.
    let (status, refused) = engine
        .api
        .json(
            "PUT",
            &format!("{record_path}/next/certificate"),
            json!({"certificate_pem": signed}),
        )
        .await;
    assert_eq!(
        (status, refused["error"]["field"].as_str()),
        (422, Some("certificate_pem"))
    );
    let next_signed = next_ca.sign_csr(csr);
    let activate_at = now_unix() + 2;
    let (status, scheduled) = engine
        .api
        .json(
            "PUT",
            &format!("{record_path}/next/certificate"),
            json!({"certificate_pem": next_signed, "activate_at": rfc3339(activate_at)}),
        )
        .await;
    assert_eq!(status, 200, "{scheduled}");
    assert_eq!(scheduled["next"]["status"], "scheduled");
    assert_eq!(
        fingerprint(&scheduled),
        first,
        "still the current certificate"
    );
    let next = scheduled["next"]["certificate"]["sha256_fingerprint"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(next, first);

    let events = producer.await.unwrap();
    assert!(events.len() > 60, "{} events", events.len());
    for event in &events {
        let deliveries = engine
            .settled(&tenant, event, Duration::from_secs(10))
            .await;
        assert_eq!(deliveries[0]["status"], "delivered", "{deliveries:?}");
        assert_eq!(
            deliveries[0]["attempts"], 1,
            "no failed attempt: {deliveries:?}"
        );
    }
    let seen = seen_log.lock().unwrap().clone();
    assert_eq!(seen.len(), events.len(), "one request per event");
    let with = |fp: &str| seen.iter().filter(|(_, f)| f == fp).count();
    assert!(
        with(&first) > 10 && with(&next) > 10,
        "first {} next {}",
        with(&first),
        with(&next)
    );
    assert_eq!(
        with(&first) + with(&next),
        seen.len(),
        "only the two certificates"
    );
    // The switch happened once: past a request already on its way, nothing with the first
    // certificate after the first with the next.
    let switched = seen.iter().find(|(_, f)| f == &next).unwrap().0;
    assert!(
        seen.iter()
            .filter(|(at, _)| *at > switched + Duration::from_millis(300))
            .all(|(_, f)| f == &next),
        "the first certificate came back"
    );
    let (_, record) = engine.api.get(&record_path).await;
    assert_eq!(
        fingerprint(&record),
        next,
        "the next certificate is the record's own now"
    );
    assert!(record.get("next").is_none(), "{record}");

    // Without `activate_at`: the switch happens at the upload.
    let (_, staged) = engine
        .api
        .post(&format!("{record_path}/next"), json!({}))
        .await;
    let third_signed = first_ca.sign_csr(staged["next"]["csr_pem"].as_str().unwrap());
    let (status, now_active) = engine
        .api
        .json(
            "PUT",
            &format!("{record_path}/next/certificate"),
            json!({"certificate_pem": third_signed}),
        )
        .await;
    assert_eq!(status, 200, "{now_active}");
    assert!(now_active.get("next").is_none(), "{now_active}");
    let third = fingerprint(&now_active);
    assert!(third != first && third != next);
    let event = engine.event(&tenant, "tick", json!({})).await;
    let deliveries = engine
        .settled(&tenant, &event, Duration::from_secs(10))
        .await;
    assert_eq!(deliveries[0]["status"], "delivered");
    let last = seen_log.lock().unwrap().last().cloned().unwrap();
    assert_eq!(last.1, third, "presented at once");
    // Dropping a staged certificate keeps the current one.
    engine
        .api
        .post(&format!("{record_path}/next"), json!({}))
        .await;
    let (status, kept) = engine.api.delete(&format!("{record_path}/next")).await;
    assert_eq!(status, 200, "{kept}");
    assert_eq!(fingerprint(&kept), third);
    assert_eq!(
        engine.api.delete(&format!("{record_path}/next")).await.0,
        404
    );
    assert_eq!(
        engine
            .api
            .post(&format!("{certificates}/cc_nope/next"), json!({}))
            .await
            .0,
        404
    );
    let (status, body) = engine
        .api
        .json(
            "PUT",
            &format!("{record_path}/next/certificate"),
            json!({"certificate_pem": "x"}),
        )
        .await;
    assert_eq!(status, 404, "nothing staged: {body}");
}
