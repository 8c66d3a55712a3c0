//! Run 1, the baseline: a bare hyper client posting the same envelope to the sink, same
//! concurrency as the engine's endpoint.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use anyhow::bail;
use http_body_util::{BodyExt, Full};

use crate::api::http_client;
use crate::produce::envelope;
use crate::sink::Sink;
use crate::{Bench, CONCURRENCY};

/// Measures the baseline (median of three) when a section that compares with it runs.
pub async fn section(bench: &mut Bench) -> anyhow::Result<()> {
    let settings = &bench.settings;
    if !(settings.wants("baseline") || settings.wants("e2e") || settings.wants("cluster")) {
        return Ok(());
    }
    let n = settings.events;
    progress!(
        settings,
        "1. baseline: bare hyper client → sink, {CONCURRENCY} concurrent, {n} requests"
    );
    // Median of three (it is short and the machine is shared).
    let mut rates = Vec::new();
    for _ in 0..3 {
        rates.push(baseline(&bench.sink, n).await?);
    }
    rates.sort_by(f64::total_cmp);
    let rate = rates[1];
    progress!(settings, "  baseline: {rate:.0} requests/s");
    bench.report.add(
        "baseline",
        "1. baseline",
        &format!("bare hyper client → sink ({CONCURRENCY} concurrent)"),
        Some(rate),
        "req/s",
    );
    bench.baseline = Some(rate);
    Ok(())
}

async fn baseline(sink: &Arc<Sink>, n: u64) -> anyhow::Result<f64> {
    let client = http_client(CONCURRENCY);
    let url: Arc<str> = sink.url().into();
    let body = envelope(0);
    let send = {
        let client = client.clone();
        let url = url.clone();
        move |i: u64| {
            let request = hyper::Request::builder()
                .method("POST")
                .uri(&*url)
                .header("content-type", "application/json")
                .header("user-agent", "wasmhook/bench")
                .header("webhook-id", format!("msg_{i:026}"))
                .header("webhook-timestamp", "1735689600")
                .body(Full::new(body.clone()))
                .expect("valid request");
            let client = client.clone();
            async move {
                let response = client.request(request).await?;
                let status = response.status().as_u16();
                response.into_body().collect().await?;
                anyhow::Ok(status)
            }
        }
    };
    // Warm-up: open the connections.
    let warm: Vec<_> = (0..CONCURRENCY as u64)
        .map(|i| tokio::spawn(send(i)))
        .collect();
    for w in warm {
        w.await??;
    }
    let before = sink.count();
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = (0..CONCURRENCY)
        .map(|_| {
            let (next, send) = (next.clone(), send.clone());
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n {
                        break;
                    }
                    let status = send(i).await?;
                    if status != 204 {
                        bail!("sink answered {status}");
                    }
                }
                anyhow::Ok(())
            })
        })
        .collect();
    for t in tasks {
        t.await??;
    }
    let elapsed = started.elapsed();
    let got = sink.count() - before;
    if got != n {
        bail!("baseline: sink counted {got} of {n}");
    }
    Ok(n as f64 / elapsed.as_secs_f64())
}
