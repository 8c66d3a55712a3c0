//! Producers: what an event looks like, and tasks posting events to the engine's API.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::{Value, json};

use crate::EVENT_TYPE;
use crate::api::Api;

#[derive(Debug, Default)]
pub struct Produced {
    pub accepted: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    pub last_event_id: Option<String>,
    pub elapsed: Duration,
}

pub fn event_body(event_type: &str, i: u64) -> Bytes {
    Bytes::from(format!(
        r#"{{"type":"{event_type}","resource":{{"type":"invoice","id":"in_{i}"}},"data":{{"invoice":"in_{i}","customer":"cus_0042","amount_cents":129900,"currency":"EUR","status":"paid","lines":[{{"sku":"plan-pro","quantity":1}},{{"sku":"seat","quantity":12}}],"metadata":{{"source":"bench","attempt_tag":"none"}}}}}}"#
    ))
}

/// The envelope the engine builds for `event_body` (what the sink receives without steps).
pub fn envelope(i: u64) -> Bytes {
    let body: Value = serde_json::from_slice(&event_body(EVENT_TYPE, i)).expect("valid JSON");
    Bytes::from(
        json!({"id": "msg_01jbenchbenchbenchbenchbench", "type": EVENT_TYPE, "created_at": "2025-01-01T00:00:00Z",
               "resource": body["resource"], "data": body["data"]})
        .to_string(),
    )
}

pub struct ProduceSpec {
    /// The nodes: POST k goes to `apis[k % apis.len()]` (round robin).
    pub apis: Vec<Api>,
    pub tenant: String,
    pub token: String,
    pub event_types: Vec<String>,
    pub producers: usize,
    pub limit: u64,
    /// Events per second (paced closed loop), or as fast as possible.
    pub rate: Option<f64>,
    /// Events per POST (more than 1: `POST /events/batch`).
    pub batch: u64,
    pub stop: Arc<AtomicBool>,
}

impl ProduceSpec {
    /// As fast as possible, one node, until `limit` events.
    pub fn new(api: &Api, tenant: &str, token: &str, event_types: Vec<String>) -> Self {
        Self {
            apis: vec![api.clone()],
            tenant: tenant.into(),
            token: token.into(),
            event_types,
            producers: crate::CONCURRENCY,
            limit: 0,
            rate: None,
            batch: 1,
            stop: Arc::new(AtomicBool::new(false)),
        }
    }
}

/// `producers` tasks posting events (keep-alive; `batch` per POST) until `limit` events or
/// `stop`.
pub async fn produce(spec: ProduceSpec) -> Produced {
    let next = Arc::new(AtomicU64::new(0));
    let batch = spec.batch.max(1);
    let path: Arc<str> = if batch > 1 {
        format!("/v1/tenants/{}/events/batch", spec.tenant).into()
    } else {
        format!("/v1/tenants/{}/events", spec.tenant).into()
    };
    let token: Arc<str> = spec.token.into();
    let types = Arc::new(spec.event_types);
    let apis = Arc::new(spec.apis);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..spec.producers {
        let (apis, next, path, token, types, stop) = (
            apis.clone(),
            next.clone(),
            path.clone(),
            token.clone(),
            types.clone(),
            spec.stop.clone(),
        );
        let (limit, rate) = (spec.limit, spec.rate);
        tasks.push(tokio::spawn(async move {
            let mut out = Produced::default();
            loop {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let i = next.fetch_add(batch, Ordering::Relaxed);
                if i >= limit {
                    break;
                }
                let count = batch.min(limit - i);
                if let Some(rate) = rate {
                    tokio::time::sleep_until(
                        (started + Duration::from_secs_f64(i as f64 / rate)).into(),
                    )
                    .await;
                }
                let event_type = |j: u64| &types[(j % types.len() as u64) as usize];
                let body = if batch > 1 {
                    let mut body = b"{\"events\":[".to_vec();
                    for j in i..i + count {
                        if j > i {
                            body.push(b',');
                        }
                        body.extend_from_slice(&event_body(event_type(j), j));
                    }
                    body.extend_from_slice(b"]}");
                    Bytes::from(body)
                } else {
                    event_body(event_type(i), i)
                };
                let api = &apis[((i / batch) % apis.len() as u64) as usize];
                match api.call("POST", &path, Some(&token), Some(body)).await {
                    Ok((202, body)) => {
                        out.accepted += count;
                        if i + count == limit || out.last_event_id.is_none() || i % 1024 == 0 {
                            let answer = serde_json::from_slice::<Value>(&body).ok();
                            out.last_event_id = answer.and_then(|v| {
                                let last = if batch > 1 {
                                    v["events"].as_array()?.last()?.clone()
                                } else {
                                    v
                                };
                                last["id"].as_str().map(str::to_string)
                            });
                        }
                    }
                    Ok((status, body)) => {
                        out.errors += count;
                        out.first_error.get_or_insert_with(|| {
                            format!("{status} {}", String::from_utf8_lossy(&body))
                        });
                    }
                    Err(e) => {
                        out.errors += count;
                        out.first_error.get_or_insert_with(|| e.to_string());
                    }
                }
            }
            out
        }));
    }
    let mut total = Produced::default();
    for task in tasks {
        if let Ok(out) = task.await {
            total.accepted += out.accepted;
            total.errors += out.errors;
            if total.first_error.is_none() {
                total.first_error = out.first_error;
            }
            if out.last_event_id.is_some() {
                total.last_event_id = out.last_event_id;
            }
        }
    }
    total.elapsed = started.elapsed();
    total
}
