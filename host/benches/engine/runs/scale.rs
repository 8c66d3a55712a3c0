//! Section 6, throughput with 1, 10 and 100 endpoints (an event type each).

use serde_json::json;

use crate::Bench;
use crate::report::ratio;
use crate::runs::e2e::{E2eSpec, e2e_note, run_e2e};

pub async fn section(bench: &mut Bench) -> anyhow::Result<()> {
    let Bench {
        settings,
        sink,
        report,
        e2e,
        rss_rows,
        ..
    } = bench;
    let (settings, sink) = (&*settings, &*sink);
    let n = settings.events;
    let run2 = e2e.get("no-step").map(|r| r.deliveries_per_second);
    if settings.wants("scale") {
        if let Some(r) = e2e.get("no-step") {
            report
                .add(
                    "scale.1",
                    "6. endpoints",
                    "1 endpoint (= run 2)",
                    Some(r.deliveries_per_second),
                    "deliv/s",
                )
                .ratio(Some(1.0), "1 endpoint");
        }
        for endpoints in [10usize, 100] {
            progress!(
                settings,
                "6. {endpoints} endpoints, {n} events spread over them"
            );
            let r = run_e2e(
                settings,
                sink,
                E2eSpec {
                    label: format!("e2e-{endpoints}-endpoints"),
                    steps: json!([]),
                    endpoints,
                    events: n,
                    batch: 1,
                },
            )
            .await?;
            rss_rows.push((format!("6. {endpoints} endpoints"), r.engine.peak_rss_kib));
            report
                .add(
                    &format!("scale.{endpoints}"),
                    "6. endpoints",
                    &format!("{endpoints} endpoints, own event type each"),
                    Some(r.deliveries_per_second),
                    "deliv/s",
                )
                .ratio(ratio(Some(r.deliveries_per_second), run2), "1 endpoint")
                .note(e2e_note(&r));
            e2e.insert(format!("{endpoints}-endpoints"), r);
        }
    }
    Ok(())
}
