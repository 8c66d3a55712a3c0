//! Section "console": page loads of the web console's message log for a tenant with 10,000
//! events (one delivery each, delivered to the sink), through the engine's HTTP listener with a
//! signed-in session cookie. Measured: the first page (newest 50), a deep page (a cursor 9,000
//! events back), a type filter, and a status filter that matches nothing (the worst case: the
//! store walks every event of the tenant). Target: under 100 ms each (p95). Only with
//! `WASMHOOK_BENCH_ONLY=console` or a full run.

use std::time::{Duration, Instant};

use anyhow::{anyhow, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde_json::json;

use crate::engine_proc::{EngineOptions, EngineProc};
use crate::report::{ms, percentile};
use crate::{ADMIN_TOKEN, Bench};

/// Events of the tenant.
const EVENTS: u64 = 10_000;
/// Events per batch while filling it.
const BATCH: u64 = 500;
/// Loads of each page.
const LOADS: usize = 40;

/// `GET path` with `cookie`: status, `Set-Cookie` values, body.
async fn get(
    engine: &EngineProc,
    method: &str,
    path: &str,
    cookie: &str,
    form: Option<String>,
) -> anyhow::Result<(u16, Vec<String>, Bytes)> {
    let mut request = hyper::Request::builder()
        .method(method)
        .uri(format!("{}{path}", engine.api.base));
    if !cookie.is_empty() {
        request = request.header("cookie", cookie);
    }
    if form.is_some() {
        request = request.header("content-type", "application/x-www-form-urlencoded");
    }
    let request = request.body(Full::new(Bytes::from(form.unwrap_or_default())))?;
    let response = engine.api.client.request(request).await?;
    let status = response.status().as_u16();
    let cookies = response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or("").to_string())
        .collect();
    let body = response.into_body().collect().await?.to_bytes();
    Ok((status, cookies, body))
}

/// Signs in with the admin token through the sign-in form; the session cookie.
async fn sign_in(engine: &EngineProc) -> anyhow::Result<String> {
    let (_, cookies, _) = get(engine, "GET", "/console/login", "", None).await?;
    let pre = cookies
        .iter()
        .find(|c| c.starts_with("wh_console_login="))
        .ok_or_else(|| anyhow!("no pre-session cookie"))?;
    let value = pre.split_once('=').map(|(_, v)| v).unwrap_or("");
    let (status, cookies, _) = get(
        engine,
        "POST",
        "/console/login",
        pre,
        Some(format!("_csrf={value}&token={ADMIN_TOKEN}")),
    )
    .await?;
    if status != 303 {
        bail!("sign-in answered {status}");
    }
    cookies
        .into_iter()
        .find(|c| c.starts_with("wh_console="))
        .ok_or_else(|| anyhow!("no session cookie"))
}

pub async fn section(bench: &mut Bench) -> anyhow::Result<()> {
    let Bench {
        settings,
        sink,
        report,
        rss_rows,
        ..
    } = bench;
    if !settings.wants("console") {
        return Ok(());
    }
    progress!(
        settings,
        "console: a tenant with {EVENTS} events, message log page loads"
    );
    let engine = EngineProc::start(settings, EngineOptions::new("console")).await?;
    let token = engine.tenant("bench").await?;
    engine
        .endpoint(
            "bench",
            &token,
            json!({"url": sink.url(), "event_types": ["bench.*"]}),
        )
        .await?;
    let base = sink.count();
    for b in 0..EVENTS / BATCH {
        let events: Vec<_> = (0..BATCH)
            .map(|i| {
                let kind = if (b * BATCH + i).is_multiple_of(10) {
                    "bench.rare"
                } else {
                    "bench.event"
                };
                json!({"type": kind, "data": {"i": b * BATCH + i}})
            })
            .collect();
        let (status, body) = engine
            .api
            .json(
                "POST",
                "/v1/tenants/bench/events/batch",
                Some(&token),
                Some(json!({"events": events})),
            )
            .await?;
        if status != 202 {
            bail!("batch answered {status}: {body}");
        }
    }
    let deadline = Instant::now() + settings.run_deadline();
    while sink.count() - base < EVENTS {
        if Instant::now() > deadline {
            bail!("only {} of {EVENTS} delivered", sink.count() - base);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let cookie = sign_in(&engine).await?;
    // A cursor 9,000 events back, from the REST API's pages.
    let mut cursor = String::new();
    let mut skipped = 0;
    while skipped < 9_000 {
        let path = format!("/v1/tenants/bench/events?limit=200&cursor={cursor}");
        let (_, page) = engine.api.json("GET", &path, Some(&token), None).await?;
        cursor = page["next_cursor"]
            .as_str()
            .ok_or_else(|| anyhow!("no next cursor after {skipped}"))?
            .to_string();
        skipped += 200;
    }
    let pages = [
        (
            "first",
            "newest 50".to_string(),
            "/console/t/bench/events".to_string(),
        ),
        (
            "deep",
            "a page 9,000 events back".into(),
            format!("/console/t/bench/events?cursor={cursor}"),
        ),
        (
            "type",
            "type filter (1 in 10 events)".into(),
            "/console/t/bench/events?type=bench.rare".into(),
        ),
        (
            "nomatch",
            "status filter matching nothing (scans all)".into(),
            "/console/t/bench/events?status=dead".into(),
        ),
        ("event", "one event with its attempts".into(), String::new()),
    ];
    let (_, first) = engine
        .api
        .json(
            "GET",
            "/v1/tenants/bench/events?limit=1",
            Some(&token),
            None,
        )
        .await?;
    let event_id = first["events"][0]["id"].as_str().unwrap_or("").to_string();
    for (id, label, path) in pages {
        let path = if path.is_empty() {
            format!("/console/t/bench/events/{event_id}")
        } else {
            path
        };
        let mut times = Vec::with_capacity(LOADS);
        let mut size = 0;
        for _ in 0..LOADS {
            let started = Instant::now();
            let (status, _, body) = get(&engine, "GET", &path, &cookie, None).await?;
            times.push(started.elapsed());
            if status != 200 {
                bail!("{path} answered {status}");
            }
            size = body.len();
        }
        times.sort();
        let p50 = ms(percentile(&times, 50.0));
        let p95 = ms(percentile(&times, 95.0));
        progress!(
            settings,
            "  {label}: p50 {:.1} ms, p95 {:.1} ms ({size} bytes)",
            p50.unwrap_or(0.0),
            p95.unwrap_or(0.0)
        );
        report
            .add(
                &format!("console.{id}"),
                "console",
                &format!("message log, {EVENTS} events: {label}, p95"),
                p95,
                "ms",
            )
            .target("< 100 ms", p95.map(|v| v < 100.0))
            .note(format!(
                "p50 {:.1} ms, {LOADS} loads, {size} bytes",
                p50.unwrap_or(0.0)
            ));
    }
    let (stats, _) = engine.stop(false, settings.keep).await?;
    rss_rows.push(("console".into(), stats.peak_rss_kib));
    Ok(())
}
