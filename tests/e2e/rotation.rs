//! Secret rotation with an overlap for `standard-webhooks`, verified by the Standard Webhooks
//! reference library (PyPI `standardwebhooks`, pinned, installed into a virtual environment
//! under the target directory): during the overlap a receiver holding the old secret and one
//! holding the new secret both verify; after it, only the new one does.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::json;

use crate::support::{Received, Receiver, TestEngine};

/// The reference library's version.
const STANDARDWEBHOOKS: &str = "1.1.0";

const OLD: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const NEW: &str = "whsec_bmV3LXNlY3JldC1mb3Itcm90YXRpb24tdGVzdA==";

const VERIFY: &str = r#"
import json, sys
from standardwebhooks.webhooks import Webhook
case = json.load(sys.stdin)
try:
    Webhook(case["secret"]).verify(case["body"], case["headers"])
    print("verified")
except Exception as error:
    print("refused: " + type(error).__name__)
"#;

/// The venv's python with the pinned library, installed on first use; `None` (after a loud
/// message) only when there is no Python 3 at all. An installation that fails is a failure.
fn reference_library() -> Option<PathBuf> {
    if Command::new("python3").arg("--version").output().is_err() {
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED rotation::standard_webhooks_*: no python3 on this machine, so the Standard \
             Webhooks reference library cannot run (scripts/test installs python3-venv)"
        );
        return None;
    }
    let venv = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("standardwebhooks-{STANDARDWEBHOOKS}-venv"));
    let python = venv.join("bin/python");
    let installed = || {
        Command::new(&python)
            .args(["-c", "import importlib.metadata as m, sys; sys.exit(m.version('standardwebhooks') != sys.argv[1])", STANDARDWEBHOOKS])
            .status()
            .is_ok_and(|s| s.success())
    };
    if !installed() {
        let status = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .expect("python3 -m venv");
        assert!(
            status.success(),
            "python3 -m venv {} failed (install python3-venv)",
            venv.display()
        );
        let status = Command::new(venv.join("bin/pip"))
            .args([
                "install",
                "-q",
                &format!("standardwebhooks=={STANDARDWEBHOOKS}"),
            ])
            .status()
            .expect("pip install");
        assert!(
            status.success(),
            "pip install standardwebhooks=={STANDARDWEBHOOKS} failed"
        );
        assert!(
            installed(),
            "standardwebhooks {STANDARDWEBHOOKS} not importable after install"
        );
    }
    Some(python)
}

/// Whether the reference library verifies `request` with `secret`.
fn verifies(python: &PathBuf, secret: &str, request: &Received) -> bool {
    let headers: serde_json::Map<String, serde_json::Value> =
        ["webhook-id", "webhook-timestamp", "webhook-signature"]
            .iter()
            .map(|name| {
                (
                    name.to_string(),
                    json!(request.header(name).unwrap_or_default()),
                )
            })
            .collect();
    let case = json!({
        "secret": secret,
        "body": String::from_utf8(request.body.to_vec()).unwrap(),
        "headers": headers,
    });
    let mut child = Command::new(python)
        .args(["-c", VERIFY])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(case.to_string().as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    let answer = String::from_utf8_lossy(&output.stdout).trim().to_string();
    assert!(
        answer == "verified" || answer.starts_with("refused: "),
        "the verifier said {answer:?}"
    );
    answer == "verified"
}

fn signatures(request: &Received) -> usize {
    request
        .header("webhook-signature")
        .unwrap_or_default()
        .split(' ')
        .count()
}

#[tokio::test]
async fn standard_webhooks_rotation_signs_with_both_secrets_during_the_overlap() {
    let Some(python) = reference_library() else {
        return;
    };
    let engine = TestEngine::start().await;
    let (tenant, _) = engine.tenant("acme").await;
    let receiver = Receiver::ok().await;
    let endpoint = engine
        .endpoint(
            &tenant,
            json!({"url": receiver.url(), "steps": [{"plugin": "standard-webhooks", "config": {"secret": OLD}}]}),
        )
        .await;
    let rotate = format!("/v1/tenants/{tenant}/endpoints/{endpoint}/steps/0/rotate-secret");

    engine.event(&tenant, "invoice.paid", json!({"n": 1})).await;
    let before = receiver.wait_for(1, Duration::from_secs(10)).await[0].clone();
    assert_eq!(signatures(&before), 1);
    assert!(verifies(&python, OLD, &before));
    assert!(!verifies(&python, NEW, &before));

    let (status, shown) = engine
        .api
        .post(&rotate, json!({"secret": NEW, "overlap_seconds": 1}))
        .await;
    assert_eq!(status, 200, "{shown}");
    let config = &shown["steps"][0]["config"];
    assert_eq!(config["secret"], "wh:redacted");
    assert_eq!(config["previous_secret"], "wh:redacted");
    let expires = config["previous_secret_expires"]
        .as_str()
        .unwrap()
        .to_string();
    let text = shown.to_string();
    assert!(
        !text.contains(&OLD[6..]) && !text.contains(&NEW[6..]),
        "{text}"
    );
    // Sealed at rest, the previous secret too.
    for secret in [OLD, NEW] {
        let clear = engine
            .count_rows(&format!("endpoints WHERE spec LIKE '%{}%'", &secret[6..]))
            .await;
        assert_eq!(clear, 0, "a secret is stored in clear");
    }

    // During the overlap: both signatures; either secret verifies.
    engine.event(&tenant, "invoice.paid", json!({"n": 2})).await;
    let during = receiver.wait_for(2, Duration::from_secs(10)).await[1].clone();
    let timestamp: i64 = during.header("webhook-timestamp").unwrap().parse().unwrap();
    let until =
        time::OffsetDateTime::parse(&expires, &time::format_description::well_known::Rfc3339)
            .unwrap()
            .unix_timestamp();
    assert!(
        timestamp < until,
        "the attempt came after the overlap ({timestamp} >= {until}): too slow a machine?"
    );
    assert_eq!(
        signatures(&during),
        2,
        "{:?}",
        during.header("webhook-signature")
    );
    assert!(
        verifies(&python, OLD, &during),
        "the old secret verifies during the overlap"
    );
    assert!(
        verifies(&python, NEW, &during),
        "the new secret verifies during the overlap"
    );

    // After it: only the new secret.
    let wait = (until * 1000 - wasmhook::model::now_millis()).max(0) as u64 + 200;
    tokio::time::sleep(Duration::from_millis(wait)).await;
    engine.event(&tenant, "invoice.paid", json!({"n": 3})).await;
    let after = receiver.wait_for(3, Duration::from_secs(10)).await[2].clone();
    assert_eq!(signatures(&after), 1);
    assert!(
        !verifies(&python, OLD, &after),
        "the old secret no longer verifies"
    );
    assert!(verifies(&python, NEW, &after));

    // Refusals name their field and never echo a secret.
    for (body, field) in [
        (json!({"secret": NEW}), "secret"),
        (json!({"secret": "whsec_not base64!"}), "secret"),
        (
            json!({"secret": "whsec_c2Vjb25k", "overlap_seconds": 99_999_999}),
            "overlap_seconds",
        ),
        (json!({"secret": "whsec_c2Vjb25k", "extra": 1}), "extra"),
    ] {
        let (status, answer) = engine.api.post(&rotate, body).await;
        assert_eq!(
            (status, answer["error"]["field"].as_str()),
            (422, Some(field)),
            "{answer}"
        );
        assert!(!answer.to_string().contains("base64!"), "{answer}");
    }
    let (status, answer) = engine
        .api
        .post(
            &format!("/v1/tenants/{tenant}/endpoints/{endpoint}/steps/1/rotate-secret"),
            json!({"secret": NEW}),
        )
        .await;
    assert_eq!(
        (status, answer["error"]["field"].as_str()),
        (422, Some("steps[1]")),
        "{answer}"
    );
    let plain = engine
        .endpoint(&tenant, json!({"url": receiver.url(), "steps": [{"plugin": "api-key", "config": {"key": "k"}}]}))
        .await;
    let (status, answer) = engine
        .api
        .post(
            &format!("/v1/tenants/{tenant}/endpoints/{plain}/steps/0/rotate-secret"),
            json!({"secret": NEW}),
        )
        .await;
    assert_eq!(
        (status, answer["error"]["field"].as_str()),
        (422, Some("steps[0].plugin")),
        "{answer}"
    );
    assert_eq!(
        engine
            .api
            .post(
                &format!("/v1/tenants/{tenant}/endpoints/ep_nope/steps/0/rotate-secret"),
                json!({"secret": NEW})
            )
            .await
            .0,
        404
    );
}
