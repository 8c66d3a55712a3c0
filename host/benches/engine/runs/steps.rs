//! Section 3, the end-to-end run with an `api-key` step, a `jws` (ES256) step, and `jws` + `jwe`.

use anyhow::anyhow;
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
    if settings.wants("steps") {
        let recipient =
            wasmhook::jose::SigningKey::generate(wasmhook::jose::SigningAlg::Rs256, "bench", 30)
                .map_err(|e| anyhow!("generating the JWE recipient: {e}"))?
                .certificate_pem;
        let variants = [
            (
                "api-key",
                json!([{"plugin": "api-key", "config": {"key": "k_bench_secret_0123456789", "header": "x-api-key"}}]),
            ),
            (
                "jws",
                json!([{"plugin": "jws", "config": {"alg": "ES256"}}]),
            ),
            (
                "jws+jwe",
                json!([{"plugin": "jws", "config": {"alg": "ES256"}}, {"plugin": "jwe", "config": {"recipient": recipient}}]),
            ),
        ];
        // WASMHOOK_BENCH_STEPS=api-key,jws,jws+jwe: a subset (for profiling one of them).
        let wanted = std::env::var("WASMHOOK_BENCH_STEPS")
            .ok()
            .filter(|v| !v.trim().is_empty());
        for (name, steps) in variants {
            if wanted
                .as_ref()
                .is_some_and(|w| !w.split(',').any(|x| x.trim() == name))
            {
                continue;
            }
            progress!(settings, "3. engine end to end with {name}: {n} events");
            let r = run_e2e(
                settings,
                sink,
                E2eSpec {
                    label: format!("e2e-{}", name.replace('+', "-")),
                    steps,
                    endpoints: 1,
                    events: n,
                    batch: 1,
                },
            )
            .await?;
            rss_rows.push((format!("3. {name}"), r.engine.peak_rss_kib));
            let x = ratio(Some(r.deliveries_per_second), run2);
            let row = report
                .add(
                    &format!("e2e.{name}"),
                    "3. steps",
                    &format!("1 endpoint, {name}"),
                    Some(r.deliveries_per_second),
                    "deliv/s",
                )
                .ratio(x, "run 2");
            if name == "api-key" {
                row.target("≥ 0.9x run 2", x.map(|x| x >= 0.9 && !r.timed_out));
            }
            row.note(e2e_note(&r));
            e2e.insert(name.into(), r);
        }
    }
    Ok(())
}
