//! The web console in a real headless Chromium, against a real engine and real receivers on
//! 127.0.0.1: portal links, the forms generated from plugin schemas, delivery and replay as the
//! pages show them, tenant isolation, link expiry, field errors at their field, and markup from
//! receivers and URLs rendered as text. Plus the message log's REST API (filters and cursors on
//! both store backends) and the console's headers, cookies and CSRF checks over plain HTTP.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::json;

use crate::support::browser::Browser;
use crate::support::{ADMIN, Receiver, TestEngine};

const XSS: &str = "<script>alert(1)</script>";

/// A receiver that answers 500 with [`XSS`] as its body until `healthy` is set, then 204.
async fn flaky_receiver(healthy: Arc<AtomicBool>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let healthy = healthy.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(
                    move |request: hyper::Request<hyper::body::Incoming>| {
                        let healthy = healthy.load(Ordering::SeqCst);
                        async move {
                            let _ = request.into_body().collect().await;
                            let (status, body) = if healthy { (204, "") } else { (500, XSS) };
                            Ok::<_, std::convert::Infallible>(
                                hyper::Response::builder()
                                    .status(status)
                                    .header("content-type", "text/html")
                                    .body(Full::new(Bytes::from(body)))
                                    .unwrap(),
                            )
                        }
                    },
                );
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    format!("http://{addr}/hook")
}

/// Signs in through the sign-in form with `token`.
async fn sign_in(browser: &Browser, token: &str) {
    browser.open("/console/login").await;
    browser.fill("#token", token).await;
    browser
        .click("form[action='/console/login'] button[type=submit]")
        .await;
}

/// Mints a portal link through the API.
async fn portal_link(engine: &TestEngine, tenant: &str, body: serde_json::Value) -> String {
    let (status, answer) = engine
        .api
        .post(&format!("/v1/tenants/{tenant}/portal-links"), body)
        .await;
    assert_eq!(status, 201, "{answer}");
    answer["url"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn a_portal_link_lets_a_tenant_build_an_api_key_and_jwe_endpoint_and_see_it_delivered() {
    let engine = TestEngine::start().await;
    engine.tenant("acme").await;
    // A catalog: the endpoint form offers its types.
    for event_type in [
        json!({"name": "invoice.paid", "description": "An invoice was paid"}),
        json!({"name": "invoice.voided", "description": "", "deprecated": true}),
    ] {
        let (status, body) = engine
            .api
            .post("/v1/tenants/acme/event-types", event_type)
            .await;
        assert_eq!(status, 201, "{body}");
    }
    let receiver = Receiver::ok().await;
    let browser = Browser::start(&engine.server.url()).await;

    // The operator signs in with the admin token and mints a portal link for acme.
    sign_in(&browser, ADMIN).await;
    browser.wait_for_path("/console/admin/tenants").await;
    browser.screenshot("operator-tenants").await;
    browser
        .click("form[action='/console/admin/tenants/acme/portal-link'] button.mint")
        .await;
    let link = browser
        .find("#portal-link")
        .await
        .prop("value")
        .await
        .unwrap()
        .unwrap();
    assert!(link.contains("/console/portal?token="), "{link}");
    for page in [
        "/console/admin/plugins",
        "/console/admin/keys",
        "/console/admin/queue",
    ] {
        browser.open(page).await;
        assert!(browser.find("h1").await.text().await.unwrap().len() > 2);
        browser
            .screenshot(&format!("operator-{}", page.rsplit('/').next().unwrap()))
            .await;
    }
    // The plugins page follows the directory live: a plugin dropped in shows up, then its
    // failed replacement, without reloading the page.
    browser.open("/console/admin/plugins").await;
    assert!(!browser.source().await.contains("livecheck"));
    let dir = engine.server.engine.config.plugins_dir();
    std::fs::write(
        dir.join("livecheck.wasm"),
        crate::support::plugin_host::guest("swap_v1"),
    )
    .unwrap();
    browser
        .wait_for_text_in_place("livecheck", Duration::from_secs(15))
        .await;
    std::fs::write(dir.join("livecheck.wasm"), b"not wasm").unwrap();
    browser
        .wait_for_text_in_place("previous version serving", Duration::from_secs(15))
        .await;
    assert_eq!(
        browser.path().await,
        "/console/admin/plugins",
        "never navigated"
    );
    browser.click("form[action='/console/logout'] button").await;
    browser.wait_for_path("/console/login").await;

    // The tenant opens the link and lands on its endpoints.
    browser.open(&link).await;
    browser.wait_for_path("/console/t/acme/endpoints").await;
    browser
        .click("a.button[href='/console/t/acme/endpoints/new']")
        .await;

    // Steps are added first; each brings the form its plugin's schema describes.
    browser.choose("#f-add-plugin", "api-key").await;
    browser.click("button[value=add]").await;
    browser.find("#f-steps-0-config-key").await; // the page with the first step
    browser.choose("#f-add-plugin", "jwe").await;
    browser.click("button[value=add]").await;
    // The page with both steps (the one before had step 0 already: reading it while the
    // navigation is under way would hold an element about to go stale).
    browser.find("#f-steps-1-config-alg").await;
    let key = browser.find("#f-steps-0-config-key").await;
    assert_eq!(key.attr("type").await.unwrap().as_deref(), Some("password"));
    assert_eq!(
        browser
            .find("#f-steps-0-config-header")
            .await
            .prop("value")
            .await
            .unwrap()
            .as_deref(),
        Some("x-api-key"),
        "defaults are filled in"
    );
    assert_eq!(
        browser
            .find("#f-steps-1-config-alg")
            .await
            .prop("value")
            .await
            .unwrap()
            .as_deref(),
        Some("RSA-OAEP-256"),
        "an enum is a select holding its default"
    );
    let recipient = wasmhook::demo::pki::TestCa::new("receiver").cert_pem();

    // A URL the API refuses: its error appears next to the URL field.
    browser.fill("#f-url", "ftp://example.com/hook").await;
    // The catalog's types are checkboxes (a deprecated one marked); patterns are typed.
    assert!(
        browser
            .text("#f-catalog-types")
            .await
            .contains("deprecated"),
        "{}",
        browser.text("#f-catalog-types").await
    );
    browser
        .click("input[name=catalog_types][value='invoice.paid']")
        .await;
    browser.fill("#f-event-types", "order.*").await;
    browser.fill("#f-steps-0-config-key", "k-123").await;
    browser
        .fill("#f-steps-1-config-recipient", &recipient)
        .await;
    // The test CA's key is an EC key: ECDH-ES from the enum's select.
    browser.choose("#f-steps-1-config-alg", "ECDH-ES").await;
    browser.click("#save").await;
    let error = browser.text(".field.invalid #f-url-error").await;
    assert!(error.contains("http://"), "{error}");
    assert_eq!(
        browser
            .find("#f-url")
            .await
            .attr("aria-describedby")
            .await
            .unwrap()
            .as_deref(),
        Some("f-url-hint f-url-error")
    );
    browser.screenshot("tenant-endpoint-field-error").await;
    // A secret typed in is not written back into the page.
    assert!(!browser.source().await.contains("k-123"));

    browser.fill("#f-url", &receiver.url()).await;
    browser.fill("#f-steps-0-config-key", "k-123").await;
    browser.click("#save").await;
    browser
        .wait_for_text("Saved.", Duration::from_secs(5))
        .await;
    assert_eq!(browser.path().await, "/console/t/acme/endpoints");
    browser.screenshot("tenant-endpoints").await;

    // Stored as the forms said.
    let (_, endpoints) = engine.api.get("/v1/tenants/acme/endpoints").await;
    let endpoint = &endpoints[0];
    assert_eq!(endpoint["event_types"], json!(["invoice.paid", "order.*"]));
    assert_eq!(endpoint["steps"][0]["plugin"], "api-key");
    assert_eq!(endpoint["steps"][0]["config"]["header"], "x-api-key");
    assert_eq!(endpoint["steps"][1]["plugin"], "jwe");
    assert_eq!(endpoint["steps"][1]["config"]["alg"], "ECDH-ES");
    let id = endpoint["id"].as_str().unwrap();

    // The edit form shows the stored secret as write-only, and saving keeps it.
    browser
        .click(&format!("a[href='/console/t/acme/endpoints/{id}']"))
        .await;
    assert_eq!(
        browser
            .find("#f-steps-0-config-key")
            .await
            .prop("value")
            .await
            .unwrap()
            .as_deref(),
        Some("")
    );
    assert!(!browser.source().await.contains("k-123"));

    // A test event is sent and shown delivered.
    browser.click("#send-test").await;
    browser.find("dd code.event-type").await;
    browser
        .wait_for_text("delivered", Duration::from_secs(10))
        .await;
    assert_eq!(browser.text(".delivery .status").await, "delivered");
    browser.screenshot("tenant-event").await;
    let got = receiver.wait_for(1, Duration::from_secs(5)).await;
    assert_eq!(got[0].header("x-api-key"), Some("k-123"));
    assert_eq!(got[0].header("content-type"), Some("application/jose"));

    browser.open("/console/t/acme/events").await;
    assert!(browser.text("tbody").await.contains("invoice.paid"));
    browser.screenshot("tenant-messages").await;
    for page in ["certificates", "plugins", "verify"] {
        browser.open(&format!("/console/t/acme/{page}")).await;
        browser.find("h1").await;
        browser.screenshot(&format!("tenant-{page}")).await;
    }
    assert!(browser.text("#snippet-node").await.contains("jwtVerify"));

    // Phone width: the same page still lays out (no horizontal scroll of the page itself).
    browser.client.set_window_size(390, 844).await.unwrap();
    browser.open("/console/t/acme/events").await;
    let overflow = browser
        .client
        .execute(
            "return document.documentElement.scrollWidth <= window.innerWidth + 1;",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(overflow, json!(true));
    browser.screenshot("tenant-messages-phone").await;
    browser.close().await;
}

#[tokio::test]
async fn failed_attempts_show_their_error_replay_delivers_and_markup_stays_text() {
    let engine = TestEngine::start().await;
    let (_, token) = engine.tenant("acme").await;
    let healthy = Arc::new(AtomicBool::new(false));
    let url = flaky_receiver(healthy.clone()).await;
    let endpoint = engine
        .endpoint(
            "acme",
            json!({"url": url, "event_types": ["order.created"], "description": XSS}),
        )
        .await;
    let event = engine.event("acme", "order.created", json!({"n": 1})).await;
    let deliveries = engine
        .settled("acme", &event, Duration::from_secs(10))
        .await;
    assert_eq!(deliveries[0]["status"], "dead");

    let browser = Browser::start(&engine.server.url()).await;
    sign_in(&browser, &token).await;
    // The click returns before the redirect lands: wait for it, not read it.
    browser.wait_for_path("/console/t/acme/endpoints").await;
    browser
        .open(&format!("/console/t/acme/events/{event}"))
        .await;
    let rows = browser.find_all("tr.attempt").await;
    assert_eq!(rows.len(), 3, "one row per attempt");
    for row in &rows {
        let text = row.text().await.unwrap();
        assert!(text.contains("500"), "{text}");
        assert!(text.contains("receiver answered 500"), "{text}");
    }
    // The receiver's markup is shown as text, never run.
    assert_eq!(browser.text("pre.snippet").await, XSS);
    assert!(
        browser.client.get_alert_text().await.is_err(),
        "no alert ran"
    );
    assert!(!browser.source().await.contains(XSS));
    browser.screenshot("tenant-event-dead").await;

    // Replay turns the dead delivery into a delivered one.
    healthy.store(true, Ordering::SeqCst);
    browser.click("button.replay").await;
    browser
        .wait_for_text("delivered", Duration::from_secs(10))
        .await;
    assert_eq!(browser.text(".delivery .status").await, "delivered");
    assert_eq!(browser.find_all("tr.attempt").await.len(), 4);

    // Recover since a time re-sends what died since then.
    healthy.store(false, Ordering::SeqCst);
    let second = engine.event("acme", "order.created", json!({"n": 2})).await;
    let deliveries = engine
        .settled("acme", &second, Duration::from_secs(10))
        .await;
    assert_eq!(deliveries[0]["status"], "dead");
    healthy.store(true, Ordering::SeqCst);
    browser
        .open(&format!("/console/t/acme/endpoints/{endpoint}"))
        .await;
    let since = time::OffsetDateTime::now_utc() - time::Duration::hours(1);
    let since = format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}",
        since.year(),
        u8::from(since.month()),
        since.day(),
        since.hour(),
        since.minute()
    );
    browser
        .client
        .execute(
            "document.getElementById('f-recover-since').value = arguments[0];",
            vec![json!(since)],
        )
        .await
        .unwrap();
    browser.click("#recover").await;
    browser
        .wait_for_text("Recovery queued.", Duration::from_secs(10))
        .await;
    let deliveries = engine
        .settled("acme", &second, Duration::from_secs(10))
        .await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut status = deliveries[0]["status"].clone();
    while status != "delivered" && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
        status = engine
            .settled("acme", &second, Duration::from_secs(10))
            .await[0]["status"]
            .clone();
    }
    assert_eq!(status, "delivered", "recovered from the console");

    // An event type filter with markup comes back as text in the filter's control.
    browser
        .open("/console/t/acme/events?type=%3Cscript%3Ealert(1)%3C%2Fscript%3E")
        .await;
    assert_eq!(
        browser
            .find("#f-type")
            .await
            .prop("value")
            .await
            .unwrap()
            .as_deref(),
        Some(XSS)
    );
    assert!(browser.client.get_alert_text().await.is_err());
    assert!(!browser.source().await.contains(XSS));
    browser.open("/console/t/acme/endpoints").await;
    assert!(browser.client.get_alert_text().await.is_err());
    browser.close().await;
}

#[tokio::test]
async fn a_portal_link_reaches_only_its_tenant_and_expires() {
    let engine = TestEngine::start().await;
    engine.tenant("acme").await;
    let (_, globex_token) = engine.tenant("globex").await;
    let globex_endpoint = engine
        .endpoint("globex", json!({"url": "http://127.0.0.1:9/hook"}))
        .await;
    let globex_event = engine.event("globex", "x.y", json!({})).await;

    // Only the operator mints links.
    let (status, _) = engine
        .api
        .with_token(&globex_token)
        .post("/v1/tenants/globex/portal-links", json!({}))
        .await;
    assert_eq!(status, 403);
    let (status, body) = engine
        .api
        .post("/v1/tenants/acme/portal-links", json!({"expires_in": 0}))
        .await;
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (422, Some("expires_in"))
    );

    let browser = Browser::start(&engine.server.url()).await;
    // Long enough for a loaded machine's first navigation (4 s once expired before Chromium
    // got there), short enough to wait out below; expiry is checked in whole seconds.
    let link = portal_link(&engine, "acme", json!({"expires_in": 8, "read_only": true})).await;
    let minted = std::time::Instant::now();
    browser.open(&link).await;
    browser.wait_for_path("/console/t/acme/endpoints").await;
    assert!(browser.text("header").await.contains("(read-only)"));
    assert!(
        browser
            .find_all("a.button[href$='/endpoints/new']")
            .await
            .is_empty()
    );

    for page in [
        "/console/t/globex/endpoints".to_string(),
        format!("/console/t/globex/endpoints/{globex_endpoint}"),
        format!("/console/t/globex/events/{globex_event}"),
        "/console/t/globex/events".to_string(),
        "/console/t/nobody/endpoints".to_string(),
        "/console/admin/tenants".to_string(),
    ] {
        browser.open(&page).await;
        assert_eq!(browser.text("main h1").await, "404 Not Found", "{page}");
        assert!(!browser.source().await.contains(&globex_endpoint));
    }
    browser.screenshot("tenant-404").await;

    // Past its expiry the link opens nothing.
    tokio::time::sleep(Duration::from_secs(9).saturating_sub(minted.elapsed())).await;
    browser.open("/console/t/acme/endpoints").await;
    browser.click("form[action='/console/logout'] button").await;
    browser.wait_for_path("/console/login").await;
    browser.open(&link).await;
    assert_eq!(browser.text("main h1").await, "401 Unauthorized");
    assert!(browser.text("main").await.contains("expired"));
    browser.open("/console/t/acme/endpoints").await;
    assert_eq!(browser.path().await, "/console/login");
    // A forged token opens nothing either.
    browser.open(&format!("{link}x")).await;
    assert_eq!(browser.text("main h1").await, "401 Unauthorized");
    browser.close().await;
}

/// A raw HTTP request to the engine: status, headers, body text.
async fn http(
    base: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, http::HeaderMap, String) {
    let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .build_http::<Full<Bytes>>();
    let mut request = hyper::Request::builder()
        .method(method)
        .uri(format!("{base}{path}"));
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let response = client
        .request(
            request
                .body(Full::new(Bytes::from(body.to_string())))
                .unwrap(),
        )
        .await
        .unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, headers, String::from_utf8_lossy(&body).into_owned())
}

fn cookie_value(headers: &http::HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .map(str::to_string)
}

#[tokio::test]
async fn console_answers_carry_a_strict_csp_and_session_cookies_are_strict_and_csrf_checked() {
    let engine = TestEngine::start().await;
    let (_, token) = engine.tenant("acme").await;
    let base = engine.server.url();
    let (status, headers, page) = http(&base, "GET", "/console/login", &[], "").await;
    assert_eq!(status, 200);
    assert_eq!(
        headers["content-security-policy"],
        wasmhook::console::CONTENT_SECURITY_POLICY
    );
    assert!(!page.contains("<script>"), "no inline script");
    assert!(!page.contains("style="), "no inline style");
    let pre = cookie_value(&headers, "wh_console_login").unwrap();
    let pre_value = pre
        .split(';')
        .next()
        .unwrap()
        .split_once('=')
        .unwrap()
        .1
        .to_string();

    // Without the pre-session token, sign-in is refused.
    let (status, _, _) = http(
        &base,
        "POST",
        "/console/login",
        &[("content-type", "application/x-www-form-urlencoded")],
        &format!("token={token}"),
    )
    .await;
    assert_eq!(status, 403);
    let form = format!("_csrf={pre_value}&token={token}");
    let cookie = format!("wh_console_login={pre_value}");
    let (status, headers, _) = http(
        &base,
        "POST",
        "/console/login",
        &[
            ("content-type", "application/x-www-form-urlencoded"),
            ("cookie", &cookie),
            ("x-forwarded-proto", "https"),
        ],
        &form,
    )
    .await;
    assert_eq!(status, 303);
    let session = cookie_value(&headers, "wh_console").unwrap();
    for flag in ["HttpOnly", "SameSite=Strict", "Path=/console", "Secure"] {
        assert!(session.contains(flag), "{session}");
    }
    let (_, headers, _) = http(
        &base,
        "POST",
        "/console/login",
        &[
            ("content-type", "application/x-www-form-urlencoded"),
            ("cookie", &cookie),
        ],
        &form,
    )
    .await;
    assert!(
        !cookie_value(&headers, "wh_console")
            .unwrap()
            .contains("Secure"),
        "plain HTTP: no Secure"
    );
    let session = session.split(';').next().unwrap().to_string();

    // A form without the session's CSRF token is refused, and changes nothing.
    let (status, _, _) = http(
        &base,
        "POST",
        "/console/t/acme/endpoints/new",
        &[
            ("content-type", "application/x-www-form-urlencoded"),
            ("cookie", &session),
        ],
        "op=save&url=http%3A%2F%2F127.0.0.1%3A9%2F",
    )
    .await;
    assert_eq!(status, 403);
    let (_, endpoints) = engine.api.get("/v1/tenants/acme/endpoints").await;
    assert_eq!(endpoints, json!([]));
    // Assets are served from the binary.
    let (status, headers, _) = http(&base, "GET", "/console/assets/app.js", &[], "").await;
    assert_eq!(status, 200);
    assert!(
        headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/javascript")
    );
}

#[tokio::test]
async fn the_message_log_api_filters_and_pages_by_cursor_newest_first() {
    let engine = TestEngine::start().await;
    engine.tenant("acme").await;
    let ok = Receiver::ok().await;
    let healthy = Arc::new(AtomicBool::new(false));
    let failing = flaky_receiver(healthy).await;
    let good = engine
        .endpoint("acme", json!({"url": ok.url(), "event_types": ["a.*"]}))
        .await;
    let bad = engine
        .endpoint("acme", json!({"url": failing, "event_types": ["b.x"]}))
        .await;
    let mut ids = Vec::new();
    for i in 0..7 {
        let event_type = if i % 2 == 0 { "a.x" } else { "b.x" };
        ids.push((
            engine.event("acme", event_type, json!({"i": i})).await,
            event_type,
        ));
    }
    for (id, _) in &ids {
        engine.settled("acme", id, Duration::from_secs(10)).await;
    }

    // Every page newest first, no event twice, all of them in the end.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/tenants/acme/events?limit=3&cursor={c}"),
            None => "/v1/tenants/acme/events?limit=3".to_string(),
        };
        let (status, page) = engine.api.get(&path).await;
        assert_eq!(status, 200, "{page}");
        let events = page["events"].as_array().unwrap();
        assert!(events.len() <= 3);
        seen.extend(events.iter().map(|e| e["id"].as_str().unwrap().to_string()));
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => break,
        }
    }
    let newest_first: Vec<String> = ids.iter().rev().map(|(id, _)| id.clone()).collect();
    assert_eq!(seen, newest_first);
    assert_eq!(seen.iter().collect::<HashSet<_>>().len(), 7);

    let (_, page) = engine.api.get("/v1/tenants/acme/events?type=b.x").await;
    assert_eq!(page["events"].as_array().unwrap().len(), 3);
    let (_, page) = engine.api.get("/v1/tenants/acme/events?status=dead").await;
    let dead = page["events"].as_array().unwrap();
    assert_eq!(dead.len(), 3);
    assert!(
        dead.iter()
            .all(|e| e["type"] == "b.x" && e["dead"] == 1 && e["delivered"] == 0)
    );
    let (_, page) = engine
        .api
        .get(&format!(
            "/v1/tenants/acme/events?endpoint={good}&status=delivered"
        ))
        .await;
    assert_eq!(page["events"].as_array().unwrap().len(), 4);
    let (_, page) = engine
        .api
        .get(&format!(
            "/v1/tenants/acme/events?endpoint={bad}&status=delivered"
        ))
        .await;
    assert_eq!(page["events"], json!([]));
    let (_, page) = engine
        .api
        .get("/v1/tenants/acme/events?before=2000-01-01T00:00:00Z")
        .await;
    assert_eq!(page["events"], json!([]));
    let (_, page) = engine
        .api
        .get("/v1/tenants/acme/events?after=2000-01-01T00:00:00Z&limit=200")
        .await;
    assert_eq!(page["events"].as_array().unwrap().len(), 7);
    for (query, field) in [
        ("status=lost", "status"),
        ("cursor=nope", "cursor"),
        ("limit=0", "limit"),
        ("limit=201", "limit"),
        ("after=yesterday", "after"),
    ] {
        let (status, body) = engine
            .api
            .get(&format!("/v1/tenants/acme/events?{query}"))
            .await;
        assert_eq!(
            (status, body["error"]["field"].as_str()),
            (422, Some(field)),
            "{query}: {body}"
        );
    }

    // One event with its deliveries and their attempts.
    let (dead_id, _) = ids.iter().find(|(_, t)| *t == "b.x").unwrap();
    let (status, history) = engine
        .api
        .get(&format!("/v1/tenants/acme/events/{dead_id}/history"))
        .await;
    assert_eq!(status, 200, "{history}");
    assert_eq!(history["event"]["id"], dead_id.as_str());
    let attempts = history["deliveries"][0]["attempt_log"].as_array().unwrap();
    assert_eq!(attempts.len(), 3);
    assert_eq!(attempts[0]["status_code"], 500);
    assert_eq!(attempts[0]["response_snippet"], XSS);

    // Another tenant sees none of it.
    let (_, other) = engine.tenant("globex").await;
    let (status, _) = engine
        .api
        .with_token(&other)
        .get("/v1/tenants/acme/events")
        .await;
    assert_eq!(status, 404);
    let (status, _) = engine
        .api
        .with_token(&other)
        .get(&format!("/v1/tenants/acme/events/{dead_id}/history"))
        .await;
    assert_eq!(status, 404);

    // Documented.
    let (_, openapi) = engine.api.get("/openapi.json").await;
    assert!(openapi["paths"]["/v1/tenants/{tenant}/events"]["get"].is_object());
    assert!(openapi["paths"]["/v1/tenants/{tenant}/events"]["post"].is_object());
    assert!(openapi["paths"]["/v1/tenants/{tenant}/events/{event}/history"]["get"].is_object());
    assert!(openapi["paths"]["/v1/tenants/{tenant}/portal-links"]["post"].is_object());
}
