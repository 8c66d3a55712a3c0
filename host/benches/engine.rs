//! End-to-end benchmark of the engine through its HTTP API: `cargo bench --bench engine`.
//!
//! The engine runs as a CHILD PROCESS (`wasmhook serve`, the bench-profile binary), one fresh
//! process and data directory per run, so that its peak RSS (`VmHWM`) and CPU time are its own.
//! This process runs the load generators and a fast local receiver ("sink": hyper 1, HTTP/1.1,
//! answers 204 and counts). Everything is on 127.0.0.1.
//!
//! Sections (progress on stderr, ONE table on stdout, the same as JSON in
//! `target/bench/engine.json`):
//!
//! - micro: the store's group commit (`Store::open(dir, 1 | 1024, FULL)`, concurrent `ingest`)
//!   and the per-call cost of a Wasm step (fresh instance + `apply` of `api-key`) against a
//!   native function doing the same header insertion;
//! 1. baseline: a bare hyper client posting the same envelope to the sink, same concurrency as the
//!    engine's endpoint;
//! 2. engine end to end: N events through `POST /events` (64 producers, keep-alive), delivered to
//!    the sink; timed from the first POST until the sink has N requests, `/metrics` counts N
//!    successes and a `/healthz` (which flushes the store's writer) has returned;
//! 3. the same with an `api-key` step, a `jws` (ES256) step, and `jws` + `jwe`;
//! 4. ingest alone (no endpoint): an open loop at 5,000/s on a fresh engine (after `sync`, so the
//!    earlier runs' writeback does not stall it), then a closed loop at high concurrency;
//! 5. hot swap of a directory plugin under load: 100 atomic replacements (v1/v2 alternating);
//! 6. peak RSS of the engine per run, and throughput with 1, 10 and 100 endpoints.
//!
//! Environment: `WASMHOOK_BENCH_EVENTS` (default 50000), `WASMHOOK_BENCH_QUICK=1` (about 10x
//! smaller), `WASMHOOK_BENCH_ONLY=micro,baseline,e2e,steps,ingest,swap,scale` (a subset, for
//! profiling), `WASMHOOK_BENCH_STEPS=api-key,jws,jws+jwe` (a subset of run 3),
//! `WASMHOOK_BENCH_KEEP=1` (keep the engines' data directories),
//! `WASMHOOK_BENCH_ENGINE_WRAPPER="perf record -g -o f --"` (run the engine under a profiler).

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::io::{BufRead, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value, json};

const ADMIN_TOKEN: &str = "bench-admin-token-0123456789abcdef";
/// Concurrency of the endpoint, of the baseline client and of the producers.
const CONCURRENCY: usize = 64;
/// Producers of the closed-loop ingest-only run.
const INGEST_PRODUCERS: usize = 128;
/// Open-loop ingest rate.
const OPEN_LOOP_RATE: f64 = 5000.0;
const EVENT_TYPE: &str = "bench.event";
/// Events per `POST /events/batch` in run 2b.
const BATCH: u64 = 100;

type HttpClient = Client<HttpConnector, Full<Bytes>>;

// ---------------------------------------------------------------------------------------------
// settings, progress, results

struct Settings {
    events: u64,
    quick: bool,
    only: Option<Vec<String>>,
    keep: bool,
    workspace: PathBuf,
    out_dir: PathBuf,
    cache_dir: PathBuf,
    clock_ticks: f64,
    started: Instant,
}

impl Settings {
    fn from_env() -> Self {
        let quick = std::env::var("WASMHOOK_BENCH_QUICK").is_ok_and(|v| !v.is_empty() && v != "0");
        let events = std::env::var("WASMHOOK_BENCH_EVENTS")
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
            .filter(|n| *n > 0)
            .unwrap_or(if quick { 5_000 } else { 50_000 });
        let only = std::env::var("WASMHOOK_BENCH_ONLY")
            .ok()
            .filter(|v| !v.trim().is_empty())
            .map(|v| v.split(',').map(|s| s.trim().to_string()).collect());
        let keep = std::env::var("WASMHOOK_BENCH_KEEP").is_ok_and(|v| !v.is_empty() && v != "0");
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("host/ has a parent")
            .to_path_buf();
        let out_dir = workspace.join("target").join("bench");
        let cache_dir = out_dir.join("plugin-cache");
        let clock_ticks = Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse::<f64>().ok())
            .unwrap_or(100.0);
        Self {
            events,
            quick,
            only,
            keep,
            workspace,
            out_dir,
            cache_dir,
            clock_ticks,
            started: Instant::now(),
        }
    }

    fn wants(&self, section: &str) -> bool {
        self.only
            .as_ref()
            .is_none_or(|only| only.iter().any(|s| s == section))
    }

    fn scaled(&self, full: u64, quick: u64) -> u64 {
        if self.quick { quick } else { full }
    }
}

macro_rules! progress {
    ($s:expr, $($arg:tt)*) => {
        eprintln!("[{:>7.1}s] {}", $s.started.elapsed().as_secs_f64(), format!($($arg)*))
    };
}

/// One line of the table.
#[derive(Clone, serde::Serialize)]
struct Row {
    id: String,
    section: String,
    measurement: String,
    value: Option<f64>,
    unit: String,
    ratio: Option<f64>,
    ratio_to: Option<String>,
    target: Option<String>,
    pass: Option<bool>,
    note: String,
}

#[derive(Default)]
struct Report {
    rows: Vec<Row>,
    details: BTreeMap<String, Value>,
}

impl Report {
    fn add(
        &mut self,
        id: &str,
        section: &str,
        measurement: &str,
        value: Option<f64>,
        unit: &str,
    ) -> &mut Row {
        self.rows.push(Row {
            id: id.into(),
            section: section.into(),
            measurement: measurement.into(),
            value,
            unit: unit.into(),
            ratio: None,
            ratio_to: None,
            target: None,
            pass: None,
            note: String::new(),
        });
        self.rows.last_mut().expect("just pushed")
    }
}

impl Row {
    fn ratio(&mut self, ratio: Option<f64>, to: &str) -> &mut Self {
        self.ratio = ratio;
        self.ratio_to = Some(to.into());
        self
    }

    fn target(&mut self, target: &str, pass: Option<bool>) -> &mut Self {
        self.target = Some(target.into());
        self.pass = pass;
        self
    }

    fn note(&mut self, note: impl Into<String>) -> &mut Self {
        self.note = note.into();
        self
    }
}

fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    }
}

fn fmt_value(v: f64) -> String {
    if v == 0.0 {
        "0".into()
    } else if v.abs() >= 1000.0 {
        let s = format!("{v:.0}");
        // thousands separators
        let (sign, digits) = if let Some(d) = s.strip_prefix('-') {
            ("-", d)
        } else {
            ("", s.as_str())
        };
        let mut out = String::new();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i) % 3 == 0 {
                out.push(',');
            }
            out.push(c);
        }
        format!("{sign}{out}")
    } else if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else if v.abs() >= 0.1 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

fn render_table(rows: &[Row]) -> String {
    let header = [
        "section",
        "measurement",
        "value",
        "unit",
        "ratio",
        "vs",
        "target",
        "ok",
        "note",
    ];
    let cells: Vec<[String; 9]> = rows
        .iter()
        .map(|r| {
            [
                r.section.clone(),
                r.measurement.clone(),
                r.value.map(fmt_value).unwrap_or_else(|| "n/a".into()),
                r.unit.clone(),
                r.ratio.map(|x| format!("{x:.2}x")).unwrap_or_default(),
                r.ratio_to.clone().unwrap_or_default(),
                r.target.clone().unwrap_or_default(),
                match r.pass {
                    Some(true) => "yes".into(),
                    Some(false) => "NO".into(),
                    None => String::new(),
                },
                r.note.clone(),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &cells {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cols: &[String]| -> String {
        let mut s = String::from("|");
        for (i, (c, w)) in cols.iter().zip(widths).enumerate() {
            let pad = w - c.chars().count();
            if i == 2 || i == 4 {
                s.push_str(&format!(" {}{} |", " ".repeat(pad), c));
            } else {
                s.push_str(&format!(" {}{} |", c, " ".repeat(pad)));
            }
        }
        s
    };
    let mut out = String::new();
    out.push_str(&line(&header.map(String::from)));
    out.push('\n');
    out.push('|');
    for w in widths {
        out.push_str(&format!("{}|", "-".repeat(w + 2)));
    }
    out.push('\n');
    for row in &cells {
        out.push_str(&line(row));
        out.push('\n');
    }
    out
}

fn percentile(sorted: &[Duration], p: f64) -> Option<Duration> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

fn ms(d: Option<Duration>) -> Option<f64> {
    d.map(|d| d.as_secs_f64() * 1000.0)
}

// ---------------------------------------------------------------------------------------------
// the sink

struct Sink {
    addr: std::net::SocketAddr,
    count: AtomicU64,
    /// Requests missing `webhook-id` or `webhook-timestamp`.
    malformed: AtomicU64,
    /// (x-plugin-version, arrival) of every request carrying the header.
    versions: Mutex<Vec<(u8, Instant)>>,
}

impl Sink {
    fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }
}

async fn start_sink() -> anyhow::Result<Arc<Sink>> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let sink = Arc::new(Sink {
        addr: listener.local_addr()?,
        count: AtomicU64::new(0),
        malformed: AtomicU64::new(0),
        versions: Mutex::new(Vec::new()),
    });
    let shared = sink.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            let sink = shared.clone();
            tokio::spawn(async move {
                let service =
                    hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
                        let sink = sink.clone();
                        async move {
                            let (parts, body) = request.into_parts();
                            let _ = body.collect().await;
                            if parts.method == hyper::Method::POST {
                                if !parts.headers.contains_key("webhook-id")
                                    || !parts.headers.contains_key("webhook-timestamp")
                                {
                                    sink.malformed.fetch_add(1, Ordering::Relaxed);
                                }
                                if let Some(v) = parts.headers.get("x-plugin-version") {
                                    let version = v
                                        .as_bytes()
                                        .first()
                                        .map(|b| b.wrapping_sub(b'0'))
                                        .unwrap_or(0);
                                    sink.versions
                                        .lock()
                                        .unwrap()
                                        .push((version, Instant::now()));
                                }
                                sink.count.fetch_add(1, Ordering::Relaxed);
                            }
                            let status = if parts.method == hyper::Method::POST {
                                204
                            } else {
                                405
                            };
                            Ok::<_, Infallible>(
                                hyper::Response::builder()
                                    .status(status)
                                    .body(Empty::<Bytes>::new())
                                    .unwrap(),
                            )
                        }
                    });
                let _ = hyper::server::conn::http1::Builder::new()
                    .keep_alive(true)
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(sink)
}

// ---------------------------------------------------------------------------------------------
// HTTP client of the API

fn http_client(max_idle: usize) -> HttpClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(max_idle)
        .build(connector)
}

#[derive(Clone)]
struct Api {
    base: Arc<str>,
    client: HttpClient,
}

impl Api {
    fn new(base: &str) -> Self {
        Self {
            base: base.into(),
            client: http_client(1024),
        }
    }

    async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Bytes>,
    ) -> anyhow::Result<(u16, Bytes)> {
        let mut builder = hyper::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base));
        if let Some(token) = token {
            builder = builder.header("authorization", format!("Bearer {token}"));
        }
        if body.is_some() {
            builder = builder.header("content-type", "application/json");
        }
        let request = builder.body(Full::new(body.unwrap_or_default()))?;
        let response = self.client.request(request).await?;
        let status = response.status().as_u16();
        let bytes = response.into_body().collect().await?.to_bytes();
        Ok((status, bytes))
    }

    async fn json(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> anyhow::Result<(u16, Value)> {
        let (status, bytes) = self
            .call(
                method,
                path,
                token,
                body.map(|b| Bytes::from(b.to_string())),
            )
            .await?;
        let value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        Ok((status, value))
    }
}

#[derive(Debug, Default, Clone, Copy)]
struct Counters {
    success: f64,
    failure: f64,
    dead: f64,
    deliveries_dead: f64,
}

/// Value of `name{outcome="label"}` in a Prometheus/OpenMetrics text.
fn metric(text: &str, name: &str, outcome: &str) -> f64 {
    let prefix = format!("{name}{{outcome=\"{outcome}\"}}");
    text.lines()
        .filter_map(|l| l.strip_prefix(&prefix))
        .filter_map(|rest| rest.split_whitespace().next())
        .filter_map(|v| v.parse::<f64>().ok())
        .next()
        .unwrap_or(0.0)
}

// ---------------------------------------------------------------------------------------------
// the engine as a child process

#[derive(Clone)]
struct EngineOptions {
    label: String,
    /// `.wasm` files to place in the plugins directory before start: (file name, source path).
    plugin_files: Vec<(String, PathBuf)>,
}

struct EngineProc {
    label: String,
    child: Child,
    pid: u32,
    dir: Option<tempfile::TempDir>,
    data_dir: PathBuf,
    api: Api,
    startup: Duration,
    clock_ticks: f64,
    log_path: PathBuf,
}

#[derive(Debug, Default, Clone, serde::Serialize)]
struct ProcStats {
    peak_rss_kib: Option<u64>,
    cpu_seconds: Option<f64>,
    /// `panicked at` lines in the engine's log, and the first panic message.
    panics: u64,
    first_panic: Option<String>,
}

/// Counts the panics in an engine log (after the engine stopped).
fn scan_panics(log: &Path) -> (u64, Option<String>) {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let mut count = 0;
    let mut first = None;
    for (i, line) in lines.iter().enumerate() {
        if line.contains("panicked at") {
            count += 1;
            if first.is_none() {
                let message = lines.get(i + 1).copied().unwrap_or("");
                first = Some(format!("{} {}", line.trim(), message.trim()));
            }
        }
    }
    (count, first)
}

fn proc_stats(pid: u32, clock_ticks: f64) -> ProcStats {
    let peak_rss_kib = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.split_whitespace().next().and_then(|n| n.parse().ok()))
        });
    let cpu_seconds = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            // Fields after the `(comm)`: state is field 3; utime 14, stime 15.
            let rest = &s[s.rfind(')')? + 2..];
            let fields: Vec<&str> = rest.split_whitespace().collect();
            let utime: f64 = fields.get(11)?.parse().ok()?;
            let stime: f64 = fields.get(12)?.parse().ok()?;
            Some((utime + stime) / clock_ticks)
        });
    ProcStats {
        peak_rss_kib,
        cpu_seconds,
        panics: 0,
        first_panic: None,
    }
}

fn self_cpu_seconds(clock_ticks: f64) -> f64 {
    proc_stats(std::process::id(), clock_ticks)
        .cpu_seconds
        .unwrap_or(0.0)
}

impl EngineProc {
    async fn start(settings: &Settings, options: EngineOptions) -> anyhow::Result<Self> {
        // Write back what earlier runs left dirty, so that it does not slow this run's fsyncs.
        let _ = Command::new("sync").status();
        let started = Instant::now();
        let dir = tempfile::Builder::new()
            .prefix(&format!("wasmhook-bench-{}-", options.label))
            .tempdir()?;
        let data_dir = dir.path().to_path_buf();
        let plugins_dir = data_dir.join("plugins");
        std::fs::create_dir_all(&plugins_dir)?;
        std::fs::create_dir_all(&settings.cache_dir)?;
        for (name, source) in &options.plugin_files {
            std::fs::copy(source, plugins_dir.join(name))
                .with_context(|| format!("copying {}", source.display()))?;
        }
        let config_path = data_dir.join("bench.toml");
        std::fs::write(
            &config_path,
            format!(
                "[delivery]\nmax_in_flight = 512\nendpoint_concurrency = {CONCURRENCY}\n\n\
                 [plugins]\nrequire_auth_and_security = false\ncache_dir = {cache:?}\n\n\
                 [store]\nsynchronous = \"FULL\"\n",
                cache = settings.cache_dir.display().to_string()
            ),
        )?;
        let logs = settings.out_dir.join("logs");
        std::fs::create_dir_all(&logs)?;
        let log_path = logs.join(format!("{}.log", options.label));
        let thread_log_path = log_path.clone();
        // WASMHOOK_BENCH_ENGINE_WRAPPER="valgrind --tool=callgrind ..." runs the engine under a
        // profiler (the arguments are split on whitespace).
        let wrapper: Vec<String> = std::env::var("WASMHOOK_BENCH_ENGINE_WRAPPER")
            .unwrap_or_default()
            .split_whitespace()
            .map(str::to_string)
            .collect();
        let mut command = match wrapper.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(env!("CARGO_BIN_EXE_wasmhook"));
                c
            }
            None => Command::new(env!("CARGO_BIN_EXE_wasmhook")),
        };
        let mut child = command
            .arg("serve")
            .arg("--config")
            .arg(&config_path)
            .arg("--data-dir")
            .arg(&data_dir)
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--plugins-dir")
            .arg(&plugins_dir)
            .arg("--allow-cidr")
            .arg("127.0.0.1/32")
            .arg("--admin-token")
            .arg(ADMIN_TOKEN)
            .env_remove("WASMHOOK_CONFIG")
            .env_remove("WASMHOOK_LISTEN")
            .env_remove("WASMHOOK_DATA_DIR")
            .env_remove("WASMHOOK_PLUGINS_DIR")
            .env_remove("WASMHOOK_ADMIN_TOKEN")
            .env_remove("WASMHOOK_ALLOW_CIDRS")
            .env_remove("WASMHOOK_RETRY_SCHEDULE")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting the wasmhook binary")?;
        let pid = child.id();
        let stderr = child.stderr.take().expect("piped");
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        std::thread::spawn(move || {
            let mut log = std::fs::File::create(&thread_log_path).ok();
            let mut tx = Some(tx);
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(log) = log.as_mut() {
                    let _ = writeln!(log, "{line}");
                }
                if let Some(rest) = line.split("wasmhook listening on ").nth(1)
                    && let (Some(url), Some(tx)) = (rest.split_whitespace().next(), tx.take())
                {
                    let _ = tx.send(url.to_string());
                }
            }
        });
        let url = tokio::task::spawn_blocking(move || rx.recv_timeout(Duration::from_secs(120)))
            .await?
            .map_err(|_| {
                anyhow!(
                    "the engine ({}) did not report its address; see target/bench/logs/{}.log",
                    options.label,
                    options.label
                )
            });
        let url = match url {
            Ok(url) => url,
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(e);
            }
        };
        let api = Api::new(&url);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok((200, _)) = api.call("GET", "/healthz", None, None).await {
                break;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                bail!("the engine ({}) never became healthy", options.label);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(Self {
            label: options.label,
            child,
            pid,
            dir: Some(dir),
            data_dir,
            api,
            startup: started.elapsed(),
            clock_ticks: settings.clock_ticks,
            log_path,
        })
    }

    fn plugins_dir(&self) -> PathBuf {
        self.data_dir.join("plugins")
    }

    async fn counters(&self) -> anyhow::Result<Counters> {
        let (status, text) = self.api.call("GET", "/metrics", None, None).await?;
        if status != 200 {
            bail!("/metrics answered {status}");
        }
        let text = String::from_utf8_lossy(&text);
        Ok(Counters {
            success: metric(&text, "wasmhook_deliveries_total", "success"),
            failure: metric(&text, "wasmhook_attempts_total", "failure"),
            dead: metric(&text, "wasmhook_attempts_total", "dead"),
            deliveries_dead: metric(&text, "wasmhook_deliveries_total", "dead"),
        })
    }

    /// Creates tenant `id`; returns its token.
    async fn tenant(&self, id: &str) -> anyhow::Result<String> {
        let (status, body) = self
            .api
            .json(
                "POST",
                "/v1/tenants",
                Some(ADMIN_TOKEN),
                Some(json!({"id": id, "name": id})),
            )
            .await?;
        if status != 201 {
            bail!("creating tenant {id}: {status} {body}");
        }
        body["token"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| anyhow!("no token in {body}"))
    }

    async fn endpoint(&self, tenant: &str, token: &str, spec: Value) -> anyhow::Result<String> {
        let (status, body) = self
            .api
            .json(
                "POST",
                &format!("/v1/tenants/{tenant}/endpoints"),
                Some(token),
                Some(spec),
            )
            .await?;
        if status != 201 {
            bail!("creating an endpoint: {status} {body}");
        }
        body["id"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| anyhow!("no id in {body}"))
    }

    /// Peak RSS and CPU, then SIGTERM and wait (SIGKILL after 30 s). With `check_pending`, opens
    /// the stopped engine's store and counts deliveries still pending.
    async fn stop(
        mut self,
        check_pending: bool,
        keep: bool,
    ) -> anyhow::Result<(ProcStats, Option<u64>)> {
        let mut stats = proc_stats(self.pid, self.clock_ticks);
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.pid.to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if self.child.try_wait()?.is_some() {
                break;
            }
            if Instant::now() > deadline {
                eprintln!(
                    "engine {} did not stop within 30 s of SIGTERM: killing it",
                    self.label
                );
                let _ = self.child.kill();
                let _ = self.child.wait();
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Let the log thread write the last lines.
        tokio::time::sleep(Duration::from_millis(50)).await;
        (stats.panics, stats.first_panic) = scan_panics(&self.log_path);
        if stats.panics > 0 {
            eprintln!(
                "  engine {} PANICKED {} times; first: {}",
                self.label,
                stats.panics,
                stats.first_panic.as_deref().unwrap_or("?")
            );
        }
        let pending = if check_pending {
            let store = wasmhook::store::Store::open(
                &self.data_dir,
                16,
                wasmhook::config::Synchronous::Full,
            )
            .map_err(|e| anyhow!("reopening the store: {e}"))?;
            let n = store
                .count_pending()
                .await
                .map_err(|e| anyhow!("counting pending deliveries: {e}"))?;
            drop(store);
            Some(n)
        } else {
            None
        };
        if let Some(dir) = self.dir.take()
            && keep
        {
            let path = dir.keep();
            eprintln!(
                "kept the data directory of {}: {}",
                self.label,
                path.display()
            );
        }
        Ok((stats, pending))
    }
}

impl Drop for EngineProc {
    // A run that fails half-way must not leave its engine running.
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// producers

#[derive(Debug, Default)]
struct Produced {
    accepted: u64,
    errors: u64,
    first_error: Option<String>,
    last_event_id: Option<String>,
    elapsed: Duration,
}

fn event_body(event_type: &str, i: u64) -> Bytes {
    Bytes::from(format!(
        r#"{{"type":"{event_type}","resource":{{"type":"invoice","id":"in_{i}"}},"data":{{"invoice":"in_{i}","customer":"cus_0042","amount_cents":129900,"currency":"EUR","status":"paid","lines":[{{"sku":"plan-pro","quantity":1}},{{"sku":"seat","quantity":12}}],"metadata":{{"source":"bench","attempt_tag":"none"}}}}}}"#
    ))
}

/// The envelope the engine builds for `event_body` (what the sink receives without steps).
fn envelope(i: u64) -> Bytes {
    let body: Value = serde_json::from_slice(&event_body(EVENT_TYPE, i)).expect("valid JSON");
    Bytes::from(
        json!({"id": "msg_01jbenchbenchbenchbenchbench", "type": EVENT_TYPE, "created_at": "2025-01-01T00:00:00Z",
               "resource": body["resource"], "data": body["data"]})
        .to_string(),
    )
}

struct ProduceSpec {
    api: Api,
    tenant: String,
    token: String,
    event_types: Vec<String>,
    producers: usize,
    limit: u64,
    /// Events per second (paced closed loop), or as fast as possible.
    rate: Option<f64>,
    /// Events per POST (more than 1: `POST /events/batch`).
    batch: u64,
    stop: Arc<AtomicBool>,
}

/// `producers` tasks posting single events (keep-alive) until `limit` events or `stop`.
async fn produce(spec: ProduceSpec) -> Produced {
    let next = Arc::new(AtomicU64::new(0));
    let batch = spec.batch.max(1);
    let path: Arc<str> = if batch > 1 {
        format!("/v1/tenants/{}/events/batch", spec.tenant).into()
    } else {
        format!("/v1/tenants/{}/events", spec.tenant).into()
    };
    let token: Arc<str> = spec.token.into();
    let types = Arc::new(spec.event_types);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..spec.producers {
        let (api, next, path, token, types, stop) = (
            spec.api.clone(),
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

// ---------------------------------------------------------------------------------------------
// 1. baseline

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

// ---------------------------------------------------------------------------------------------
// 2, 3, 6: end-to-end runs

struct E2eSpec {
    label: String,
    steps: Value,
    endpoints: usize,
    events: u64,
    /// Events per POST: 1 = `POST /events`, more = `POST /events/batch`.
    batch: u64,
}

#[derive(Debug, Default, serde::Serialize)]
struct E2eResult {
    label: String,
    events: u64,
    accepted: u64,
    errors: u64,
    delivered_at_sink: u64,
    success_metric: f64,
    failures: f64,
    dead: f64,
    ingest_seconds: f64,
    seconds: f64,
    deliveries_per_second: f64,
    timed_out: bool,
    startup_seconds: f64,
    engine: ProcStats,
    engine_cpu_us_per_delivery: Option<f64>,
    bench_cpu_us_per_delivery: Option<f64>,
    pending_after_stop: Option<u64>,
    last_event_status: Option<String>,
    first_error: Option<String>,
}

async fn wait_delivered(
    engine: &EngineProc,
    sink: &Sink,
    base: u64,
    n: u64,
    deadline: Instant,
) -> anyhow::Result<(bool, Counters)> {
    // The sink first (in-process, cheap), then the engine's own count, then a flush of the store.
    // No progress at all for 20 s counts as a time-out too (a broken engine fails fast).
    let (mut last, mut last_change) = (sink.count(), Instant::now());
    while sink.count() - base < n {
        let now = Instant::now();
        if sink.count() != last {
            (last, last_change) = (sink.count(), now);
        }
        if now > deadline || now - last_change > Duration::from_secs(20) {
            eprintln!(
                "  no delivery for {:.0}s or past the deadline: giving up on this run",
                (now - last_change).as_secs_f64()
            );
            return Ok((true, engine.counters().await.unwrap_or_default()));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    loop {
        let counters = engine.counters().await?;
        if counters.success >= n as f64 {
            let (status, _) = engine.api.call("GET", "/healthz", None, None).await?;
            if status != 200 {
                bail!("/healthz answered {status}");
            }
            return Ok((false, counters));
        }
        if Instant::now() > deadline {
            return Ok((true, counters));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn run_deadline(settings: &Settings) -> Duration {
    Duration::from_secs(settings.scaled(300, 90))
}

async fn run_e2e(
    settings: &Settings,
    sink: &Arc<Sink>,
    spec: E2eSpec,
) -> anyhow::Result<E2eResult> {
    let engine = EngineProc::start(
        settings,
        EngineOptions {
            label: spec.label.clone(),
            plugin_files: vec![],
        },
    )
    .await?;
    let token = engine.tenant("bench").await?;
    let mut types = Vec::new();
    for j in 0..spec.endpoints {
        let event_type = if spec.endpoints == 1 {
            EVENT_TYPE.to_string()
        } else {
            format!("bench.t{j}")
        };
        engine
            .endpoint(
                "bench",
                &token,
                json!({"url": sink.url(), "event_types": [event_type], "steps": spec.steps, "max_concurrency": CONCURRENCY}),
            )
            .await?;
        types.push(event_type);
    }
    progress!(
        settings,
        "  {}: engine up in {:.2}s, {} endpoint(s); posting {} events",
        spec.label,
        engine.startup.as_secs_f64(),
        spec.endpoints,
        spec.events
    );
    let base = sink.count();
    let cpu_before = proc_stats(engine.pid, settings.clock_ticks)
        .cpu_seconds
        .unwrap_or(0.0);
    let self_before = self_cpu_seconds(settings.clock_ticks);
    let started = Instant::now();
    let produced = produce(ProduceSpec {
        api: engine.api.clone(),
        tenant: "bench".into(),
        token: token.clone(),
        event_types: types,
        producers: CONCURRENCY,
        limit: spec.events,
        rate: None,
        batch: spec.batch,
        stop: Arc::new(AtomicBool::new(false)),
    })
    .await;
    progress!(
        settings,
        "  {}: {} accepted in {:.2}s ({:.0}/s), {} delivered so far",
        spec.label,
        produced.accepted,
        produced.elapsed.as_secs_f64(),
        produced.accepted as f64 / produced.elapsed.as_secs_f64(),
        sink.count() - base
    );
    let (timed_out, counters) = wait_delivered(
        &engine,
        sink,
        base,
        produced.accepted,
        started + run_deadline(settings),
    )
    .await?;
    let elapsed = started.elapsed();
    let delivered = sink.count() - base;
    let cpu_after = proc_stats(engine.pid, settings.clock_ticks)
        .cpu_seconds
        .unwrap_or(0.0);
    let self_after = self_cpu_seconds(settings.clock_ticks);
    let last_event_status = match &produced.last_event_id {
        Some(id) => engine
            .api
            .json(
                "GET",
                &format!("/v1/tenants/bench/events/{id}/deliveries"),
                Some(&token),
                None,
            )
            .await
            .ok()
            .and_then(|(_, v)| {
                v.get(0)
                    .and_then(|d| d["status"].as_str())
                    .map(str::to_string)
            }),
        None => None,
    };
    let startup_seconds = engine.startup.as_secs_f64();
    let (stats, pending) = engine.stop(!timed_out, settings.keep).await?;
    let result = E2eResult {
        label: spec.label.clone(),
        events: spec.events,
        accepted: produced.accepted,
        errors: produced.errors,
        delivered_at_sink: delivered,
        success_metric: counters.success,
        failures: counters.failure,
        dead: counters.dead,
        ingest_seconds: produced.elapsed.as_secs_f64(),
        seconds: elapsed.as_secs_f64(),
        deliveries_per_second: delivered.min(produced.accepted) as f64 / elapsed.as_secs_f64(),
        timed_out,
        startup_seconds,
        engine: stats,
        engine_cpu_us_per_delivery: (delivered > 0)
            .then(|| (cpu_after - cpu_before) * 1e6 / delivered as f64),
        bench_cpu_us_per_delivery: (delivered > 0)
            .then(|| (self_after - self_before) * 1e6 / delivered as f64),
        pending_after_stop: pending,
        last_event_status,
        first_error: produced.first_error,
    };
    progress!(
        settings,
        "  {}: {:.0} deliveries/s ({} in {:.2}s){}; engine peak RSS {} MiB, engine CPU {:.1} µs/delivery, bench CPU {:.1} µs/delivery",
        spec.label,
        result.deliveries_per_second,
        delivered,
        result.seconds,
        if timed_out { " TIMED OUT" } else { "" },
        result
            .engine
            .peak_rss_kib
            .map(|k| format!("{:.1}", k as f64 / 1024.0))
            .unwrap_or_else(|| "?".into()),
        result.engine_cpu_us_per_delivery.unwrap_or(f64::NAN),
        result.bench_cpu_us_per_delivery.unwrap_or(f64::NAN),
    );
    if let Some(e) = &result.first_error {
        progress!(
            settings,
            "  {}: {} producer errors, first: {e}",
            spec.label,
            result.errors
        );
    }
    Ok(result)
}

// ---------------------------------------------------------------------------------------------
// 4. ingest alone

#[derive(Debug, Default, serde::Serialize)]
struct IngestResult {
    closed_loop_events_per_second: f64,
    closed_loop_errors: u64,
    open_loop_rate: f64,
    open_loop_requests: u64,
    open_loop_errors: u64,
    open_loop_achieved_rate: f64,
    p50_ms: Option<f64>,
    p90_ms: Option<f64>,
    p99_ms: Option<f64>,
    p999_ms: Option<f64>,
    max_ms: Option<f64>,
    max_start_lag_ms: f64,
    engine: ProcStats,
}

/// Open loop: request i is sent at start + i/rate whatever the previous ones do. Latency is from
/// the send to the full answer.
async fn open_loop(
    api: &Api,
    path: &str,
    token: &str,
    rate: f64,
    duration: Duration,
) -> (Vec<Duration>, u64, f64, Duration) {
    let total = (rate * duration.as_secs_f64()).round() as u64;
    let path: Arc<str> = path.into();
    let token: Arc<str> = token.into();
    let start = Instant::now() + Duration::from_millis(20);
    let mut handles = Vec::with_capacity(total as usize);
    let mut max_lag = Duration::ZERO;
    for i in 0..total {
        let at = start + Duration::from_secs_f64(i as f64 / rate);
        tokio::time::sleep_until(at.into()).await;
        max_lag = max_lag.max(Instant::now().saturating_duration_since(at));
        let (api, path, token) = (api.clone(), path.clone(), token.clone());
        handles.push(tokio::spawn(async move {
            let sent = Instant::now();
            let result = api
                .call(
                    "POST",
                    &path,
                    Some(&token),
                    Some(event_body("bench.nobody", i)),
                )
                .await;
            (sent.elapsed(), matches!(result, Ok((202, _))))
        }));
    }
    let sending = start.elapsed();
    let mut latencies = Vec::with_capacity(handles.len());
    let mut errors = 0;
    for h in handles {
        match h.await {
            Ok((latency, true)) => latencies.push(latency),
            _ => errors += 1,
        }
    }
    latencies.sort();
    (
        latencies,
        errors,
        total as f64 / sending.as_secs_f64(),
        max_lag,
    )
}

async fn run_ingest(settings: &Settings) -> anyhow::Result<IngestResult> {
    let engine = EngineProc::start(
        settings,
        EngineOptions {
            label: "ingest".into(),
            plugin_files: vec![],
        },
    )
    .await?;
    let token = engine.tenant("bench").await?;
    let n = settings.events;

    // Latency first, at a steady 5,000/s on a fresh engine: the earlier runs' dirty pages are
    // written back beforehand (`sync`), so that the kernel's writeback of THEIR data does not
    // stall this engine's fsyncs, and the closed-loop burst comes after, not before.
    let _ = std::process::Command::new("sync").status();
    let path = "/v1/tenants/bench/events";
    let warm = Duration::from_secs(1);
    let measure = Duration::from_secs(settings.scaled(5, 2));
    progress!(
        settings,
        "  ingest: open loop at {OPEN_LOOP_RATE:.0}/s: {:.0}s warm-up, then {:.0}s measured",
        warm.as_secs_f64(),
        measure.as_secs_f64()
    );
    let _ = open_loop(&engine.api, path, &token, OPEN_LOOP_RATE, warm).await;
    let (lat, errors, achieved, lag) =
        open_loop(&engine.api, path, &token, OPEN_LOOP_RATE, measure).await;

    progress!(
        settings,
        "  ingest: closed loop, {INGEST_PRODUCERS} producers, {n} events, no endpoint"
    );
    let produced = produce(ProduceSpec {
        api: engine.api.clone(),
        tenant: "bench".into(),
        token: token.clone(),
        event_types: vec!["bench.nobody".into()],
        producers: INGEST_PRODUCERS,
        limit: n,
        rate: None,
        batch: 1,
        stop: Arc::new(AtomicBool::new(false)),
    })
    .await;
    let closed = produced.accepted as f64 / produced.elapsed.as_secs_f64();
    progress!(
        settings,
        "  ingest: {closed:.0} events/s accepted ({} errors)",
        produced.errors
    );
    let (stats, _) = engine.stop(false, settings.keep).await?;
    let result = IngestResult {
        closed_loop_events_per_second: closed,
        closed_loop_errors: produced.errors,
        open_loop_rate: OPEN_LOOP_RATE,
        open_loop_requests: lat.len() as u64 + errors,
        open_loop_errors: errors,
        open_loop_achieved_rate: achieved,
        p50_ms: ms(percentile(&lat, 50.0)),
        p90_ms: ms(percentile(&lat, 90.0)),
        p99_ms: ms(percentile(&lat, 99.0)),
        p999_ms: ms(percentile(&lat, 99.9)),
        max_ms: ms(lat.last().copied()),
        max_start_lag_ms: lag.as_secs_f64() * 1000.0,
        engine: stats,
    };
    progress!(
        settings,
        "  ingest: open loop {:.0}/s achieved, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms, {} errors",
        achieved,
        result.p50_ms.unwrap_or(f64::NAN),
        result.p99_ms.unwrap_or(f64::NAN),
        result.max_ms.unwrap_or(f64::NAN),
        errors
    );
    Ok(result)
}

// ---------------------------------------------------------------------------------------------
// 5. hot swap

#[derive(Debug, Default, serde::Serialize)]
struct SwapResult {
    swaps: usize,
    interval_ms: f64,
    pacing_events_per_second: f64,
    events: u64,
    errors: u64,
    delivered_at_sink: u64,
    success_metric: f64,
    failures: f64,
    dead_attempts: f64,
    dead_deliveries: f64,
    deliveries_per_second: f64,
    timed_out: bool,
    observed: usize,
    not_observed: usize,
    latency_p50_ms: Option<f64>,
    latency_max_ms: Option<f64>,
    latencies_ms: Vec<f64>,
    final_version_served: Option<String>,
    pending_after_stop: Option<u64>,
    engine: ProcStats,
}

async fn run_hot_swap(
    settings: &Settings,
    sink: &Arc<Sink>,
    rate: f64,
) -> anyhow::Result<SwapResult> {
    let v1 = PathBuf::from(
        wasmhook::guests::path("swap-v1").ok_or_else(|| anyhow!("no swap-v1 guest"))?,
    );
    let v2 = PathBuf::from(
        wasmhook::guests::path("swap-v2").ok_or_else(|| anyhow!("no swap-v2 guest"))?,
    );
    let bytes = [std::fs::read(&v1)?, std::fs::read(&v2)?];
    let engine = EngineProc::start(
        settings,
        EngineOptions {
            label: "hot-swap".into(),
            plugin_files: vec![("swap.wasm".into(), v1.clone())],
        },
    )
    .await?;
    let token = engine.tenant("bench").await?;
    engine
        .endpoint(
            "bench",
            &token,
            json!({"url": sink.url(), "event_types": [EVENT_TYPE], "steps": [{"plugin": "swap", "config": {}}], "max_concurrency": CONCURRENCY}),
        )
        .await?;
    let swaps = settings.scaled(100, 10) as usize;
    let interval = Duration::from_millis(500);
    progress!(
        settings,
        "  hot-swap: {swaps} replacements every {} ms while events are posted at {rate:.0}/s (64 producers)",
        interval.as_millis()
    );
    sink.versions.lock().unwrap().clear();
    let base = sink.count();
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let producer = tokio::spawn(produce(ProduceSpec {
        api: engine.api.clone(),
        tenant: "bench".into(),
        token: token.clone(),
        event_types: vec![EVENT_TYPE.into()],
        producers: CONCURRENCY,
        limit: u64::MAX,
        rate: Some(rate),
        batch: 1,
        stop: stop.clone(),
    }));
    // Let the stream settle on v1 first.
    tokio::time::sleep(interval).await;
    let plugins_dir = engine.plugins_dir();
    let mut renames: Vec<(u8, Instant)> = Vec::with_capacity(swaps);
    let first = Instant::now();
    for k in 0..swaps {
        tokio::time::sleep_until((first + interval * k as u32).into()).await;
        let version: u8 = if k % 2 == 0 { 2 } else { 1 };
        let staging = plugins_dir.join(".swap.wasm.tmp");
        std::fs::write(&staging, &bytes[version as usize - 1])?;
        std::fs::rename(&staging, plugins_dir.join("swap.wasm"))?;
        renames.push((version, Instant::now()));
    }
    tokio::time::sleep(interval).await;
    stop.store(true, Ordering::Relaxed);
    let produced = producer.await?;
    let (timed_out, counters) = wait_delivered(
        &engine,
        sink,
        base,
        produced.accepted,
        Instant::now() + run_deadline(settings),
    )
    .await?;
    let elapsed = started.elapsed();
    let delivered = sink.count() - base;
    let final_version_served = engine
        .api
        .json("GET", "/v1/plugins", Some(ADMIN_TOKEN), None)
        .await
        .ok()
        .and_then(|(_, list)| {
            list.as_array()?
                .iter()
                .find(|p| p["name"] == "swap")
                .and_then(|p| p["info"]["version"].as_str().map(str::to_string))
        });
    let (stats, pending) = engine.stop(!timed_out, settings.keep).await?;

    // For each rename: the first arrival carrying its version after it (and before the next
    // rename, which brings the other version back).
    let arrivals = std::mem::take(&mut *sink.versions.lock().unwrap());
    let mut latencies = Vec::new();
    let mut not_observed = 0;
    for (k, (version, at)) in renames.iter().enumerate() {
        let until = renames.get(k + 1).map(|(_, t)| *t);
        let seen = arrivals
            .iter()
            .filter(|(v, t)| *v == *version && *t > *at && until.is_none_or(|u| *t <= u))
            .map(|(_, t)| *t)
            .min();
        match seen {
            Some(t) => latencies.push(t - *at),
            None => not_observed += 1,
        }
    }
    latencies.sort();
    let result = SwapResult {
        swaps,
        interval_ms: interval.as_secs_f64() * 1000.0,
        pacing_events_per_second: rate,
        events: produced.accepted,
        errors: produced.errors,
        delivered_at_sink: delivered,
        success_metric: counters.success,
        failures: counters.failure,
        dead_attempts: counters.dead,
        dead_deliveries: counters.deliveries_dead,
        deliveries_per_second: delivered as f64 / elapsed.as_secs_f64(),
        timed_out,
        observed: latencies.len(),
        not_observed,
        latency_p50_ms: ms(percentile(&latencies, 50.0)),
        latency_max_ms: ms(latencies.last().copied()),
        latencies_ms: latencies
            .iter()
            .map(|d| (d.as_secs_f64() * 1e5).round() / 100.0)
            .collect(),
        final_version_served,
        pending_after_stop: pending,
        engine: stats,
    };
    progress!(
        settings,
        "  hot-swap: {} events, {} delivered, failures {} dead {}; swap→first new delivery p50 {:.1} ms max {:.1} ms ({} of {} seen)",
        result.events,
        delivered,
        result.failures,
        result.dead_attempts,
        result.latency_p50_ms.unwrap_or(f64::NAN),
        result.latency_max_ms.unwrap_or(f64::NAN),
        result.observed,
        swaps
    );
    Ok(result)
}

// ---------------------------------------------------------------------------------------------
// micro-benchmarks

#[derive(Debug, Default, serde::Serialize)]
struct GroupCommit {
    max_batch: usize,
    events_per_second: f64,
    commits: u64,
    writes: u64,
    mean_group: f64,
}

async fn group_commit(
    max_batch: usize,
    duration: Duration,
    tasks: usize,
) -> anyhow::Result<GroupCommit> {
    use wasmhook::model::{Tenant, new_id, now_unix};
    use wasmhook::store::{NewEvent, Store};
    let dir = tempfile::Builder::new()
        .prefix("wasmhook-bench-store-")
        .tempdir()?;
    let store = Store::open(dir.path(), max_batch, wasmhook::config::Synchronous::Full)
        .map_err(|e| anyhow!("{e}"))?;
    store
        .create_tenant(
            Tenant {
                id: "bench".into(),
                name: "bench".into(),
                created_at: now_unix(),
            },
            "00".repeat(32),
        )
        .await
        .map_err(|e| anyhow!("{e}"))?;
    let body: Arc<[u8]> = envelope(0).to_vec().into();
    let commits0 = store.writer().stats().commits.load(Ordering::Relaxed);
    let writes0 = store.writer().stats().writes.load(Ordering::Relaxed);
    let started = Instant::now();
    let deadline = started + duration;
    let handles: Vec<_> = (0..tasks)
        .map(|_| {
            let (store, body) = (store.clone(), body.clone());
            tokio::spawn(async move {
                let mut done = 0u64;
                while Instant::now() < deadline {
                    let event = NewEvent {
                        id: new_id("msg"),
                        event_type: EVENT_TYPE.into(),
                        created_at: now_unix(),
                        body: body.clone(),
                        endpoint_ids: vec!["ep_bench".into()],
                    };
                    store
                        .ingest("bench", vec![event], None, json!({}))
                        .await
                        .map_err(|e| anyhow!("{e}"))?;
                    done += 1;
                }
                anyhow::Ok(done)
            })
        })
        .collect();
    let mut total = 0;
    for h in handles {
        total += h.await??;
    }
    let elapsed = started.elapsed();
    let commits = store.writer().stats().commits.load(Ordering::Relaxed) - commits0;
    let writes = store.writer().stats().writes.load(Ordering::Relaxed) - writes0;
    Ok(GroupCommit {
        max_batch,
        events_per_second: total as f64 / elapsed.as_secs_f64(),
        commits,
        writes,
        mean_group: if commits > 0 {
            writes as f64 / commits as f64
        } else {
            0.0
        },
    })
}

#[derive(Debug, Default, serde::Serialize)]
struct StepCost {
    calls: u64,
    wasm_us_per_call: f64,
    wasm_concurrent_calls_per_second: f64,
    native_us_per_call: f64,
    load_ms: f64,
}

/// What `api-key` does, natively: parse the config, replace the header.
fn native_api_key(
    config: &str,
    mut request: wasmhook::plugins::HttpRequest,
) -> Result<wasmhook::plugins::HttpRequest, String> {
    let config: Value = serde_json::from_str(config).map_err(|e| e.to_string())?;
    let key = config
        .get("key")
        .and_then(Value::as_str)
        .filter(|k| !k.is_empty())
        .ok_or("key is required")?;
    let header = config
        .get("header")
        .and_then(Value::as_str)
        .unwrap_or("x-api-key");
    if !header
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+.^_`|~-".contains(&b))
    {
        return Err("invalid header".into());
    }
    request
        .headers
        .retain(|(name, _)| !name.eq_ignore_ascii_case(header));
    request.headers.push((header.to_string(), key.to_string()));
    Ok(request)
}

/// Per-call cost of `api-key`'s `apply` with the given instance reuse (NEVER = a fresh instance
/// per call; the default = warm instances of the same endpoint), and the native equivalent.
async fn step_cost(
    settings: &Settings,
    calls: u64,
    reuse: wasmhook::plugins::InstanceReuse,
) -> anyhow::Result<StepCost> {
    use wasmhook::plugins::{
        CallContext, HostServices, HttpRequest, NoHostServices, PluginRuntime, RuntimeLimits,
    };
    let bytes = wasmhook::guests::BUILT_IN_PLUGINS
        .iter()
        .find(|(name, _)| *name == "api-key")
        .map(|(_, b)| *b)
        .ok_or_else(|| anyhow!("no built-in api-key plugin"))?;
    std::fs::create_dir_all(&settings.cache_dir)?;
    let runtime = PluginRuntime::new(RuntimeLimits {
        reuse,
        ..RuntimeLimits::default()
    })
    .map_err(|e| anyhow!("plugin runtime: {e}"))?;
    let load_started = Instant::now();
    let plugin = runtime
        .load("api-key", bytes, Some(&settings.cache_dir))
        .await
        .map_err(|e| anyhow!("loading api-key: {e}"))?;
    let load_ms = load_started.elapsed().as_secs_f64() * 1000.0;
    let host: Arc<dyn HostServices> = Arc::new(NoHostServices);
    let ctx = CallContext {
        tenant: "bench".into(),
        endpoint: "ep_bench".into(),
        event_id: "msg_01jbenchbenchbenchbenchbench".into(),
        event_type: EVENT_TYPE.into(),
        attempt: 1,
        timestamp: 1_735_689_600,
    };
    let config = r#"{"key":"k_bench_secret_0123456789","header":"x-api-key"}"#;
    let request = HttpRequest {
        method: "POST".into(),
        url: "http://127.0.0.1:9/hook".into(),
        headers: vec![
            ("content-type".into(), "application/json".into()),
            ("user-agent".into(), "wasmhook/0.1.0".into()),
            (
                "webhook-id".into(),
                "msg_01jbenchbenchbenchbenchbench".into(),
            ),
            ("webhook-timestamp".into(), "1735689600".into()),
        ],
        body: envelope(0).to_vec(),
    };
    // Correctness, then warm-up.
    let out = plugin
        .apply(&ctx, config, request.clone(), host.clone())
        .await
        .map_err(|e| anyhow!("apply: {e}"))?;
    if out.header("x-api-key") != Some("k_bench_secret_0123456789") {
        bail!("api-key did not add its header: {:?}", out.headers);
    }
    let native = native_api_key(config, request.clone()).map_err(|e| anyhow!(e))?;
    if native.header("x-api-key") != out.header("x-api-key")
        || native.headers.len() != out.headers.len()
    {
        bail!("the native baseline does not do what api-key does");
    }
    for _ in 0..(calls / 10).max(20) {
        plugin
            .apply(&ctx, config, request.clone(), host.clone())
            .await
            .map_err(|e| anyhow!("apply: {e}"))?;
    }
    let started = Instant::now();
    for _ in 0..calls {
        let out = plugin
            .apply(&ctx, config, request.clone(), host.clone())
            .await
            .map_err(|e| anyhow!("apply: {e}"))?;
        std::hint::black_box(out);
    }
    let wasm_us = started.elapsed().as_secs_f64() * 1e6 / calls as f64;

    // Two concurrent callers (the machine has 2 cores): calls/s.
    let started = Instant::now();
    let per_task = calls / 2;
    let handles: Vec<_> = (0..2)
        .map(|_| {
            let (plugin, host, ctx, request) =
                (plugin.clone(), host.clone(), ctx.clone(), request.clone());
            tokio::spawn(async move {
                for _ in 0..per_task {
                    let out = plugin
                        .apply(&ctx, config, request.clone(), host.clone())
                        .await
                        .map_err(|e| anyhow!("apply: {e}"))?;
                    std::hint::black_box(out);
                }
                anyhow::Ok(())
            })
        })
        .collect();
    for h in handles {
        h.await??;
    }
    let concurrent = (per_task * 2) as f64 / started.elapsed().as_secs_f64();

    let native_calls = calls.max(1000) * 100;
    let started = Instant::now();
    for _ in 0..native_calls {
        let out = native_api_key(std::hint::black_box(config), request.clone())
            .map_err(|e| anyhow!(e))?;
        std::hint::black_box(out);
    }
    let native_us = started.elapsed().as_secs_f64() * 1e6 / native_calls as f64;
    Ok(StepCost {
        calls,
        wasm_us_per_call: wasm_us,
        wasm_concurrent_calls_per_second: concurrent,
        native_us_per_call: native_us,
        load_ms,
    })
}

// ---------------------------------------------------------------------------------------------
// main

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    if let Err(e) = runtime.block_on(run()) {
        eprintln!("benchmark failed: {e:#}");
        std::process::exit(1);
    }
}

fn mib(kib: Option<u64>) -> Option<f64> {
    kib.map(|k| k as f64 / 1024.0)
}

async fn run() -> anyhow::Result<()> {
    let settings = Settings::from_env();
    std::fs::create_dir_all(&settings.out_dir)?;
    let loadavg = std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .trim()
        .to_string();
    progress!(
        settings,
        "wasmhook engine benchmark: {} events per run{}; engine binary {}; load average {loadavg}",
        settings.events,
        if settings.quick { " (QUICK)" } else { "" },
        env!("CARGO_BIN_EXE_wasmhook")
    );
    let mut report = Report::default();
    let n = settings.events;

    let sink = start_sink().await?;

    // ---- 1. baseline ----
    let baseline_rate = if settings.wants("baseline") || settings.wants("e2e") {
        progress!(
            settings,
            "1. baseline: bare hyper client → sink, {CONCURRENCY} concurrent, {n} requests"
        );
        // Median of three (it is short and the machine is shared).
        let mut rates = Vec::new();
        for _ in 0..3 {
            rates.push(baseline(&sink, n).await?);
        }
        rates.sort_by(f64::total_cmp);
        let rate = rates[1];
        progress!(settings, "  baseline: {rate:.0} requests/s");
        report.add(
            "baseline",
            "1. baseline",
            &format!("bare hyper client → sink ({CONCURRENCY} concurrent)"),
            Some(rate),
            "req/s",
        );
        Some(rate)
    } else {
        None
    };

    let mut e2e: BTreeMap<String, E2eResult> = BTreeMap::new();
    let mut rss_rows: Vec<(String, Option<u64>)> = Vec::new();

    // ---- 2. engine end to end ----
    if settings.wants("e2e") || settings.wants("steps") || settings.wants("scale") {
        progress!(
            settings,
            "2. engine end to end: {n} events, 1 endpoint, no step"
        );
        let r = run_e2e(
            &settings,
            &sink,
            E2eSpec {
                label: "e2e-no-step".into(),
                steps: json!([]),
                endpoints: 1,
                events: n,
                batch: 1,
            },
        )
        .await?;
        rss_rows.push(("2. no step".into(), r.engine.peak_rss_kib));
        e2e.insert("no-step".into(), r);
    }
    if settings.wants("e2e") {
        progress!(
            settings,
            "2b. the same, posted {BATCH} events per POST /events/batch"
        );
        let r = run_e2e(
            &settings,
            &sink,
            E2eSpec {
                label: "e2e-no-step-batched".into(),
                steps: json!([]),
                endpoints: 1,
                events: n,
                batch: BATCH,
            },
        )
        .await?;
        rss_rows.push(("2b. batched".into(), r.engine.peak_rss_kib));
        e2e.insert("no-step-batched".into(), r);
    }
    let run2 = e2e.get("no-step").map(|r| r.deliveries_per_second);
    if let Some(r) = e2e.get("no-step") {
        let x = ratio(Some(r.deliveries_per_second), baseline_rate);
        report
            .add(
                "e2e.no_step",
                "2. end to end",
                "1 endpoint, no step: ingest→deliver→record",
                Some(r.deliveries_per_second),
                "deliv/s",
            )
            .ratio(x, "baseline")
            .target("≥ 0.5x baseline", x.map(|x| x >= 0.5 && !r.timed_out))
            .note(e2e_note(r));
    }
    if let Some(r) = e2e.get("no-step-batched") {
        report
            .add(
                "e2e.no_step_batched",
                "2. end to end",
                &format!("the same, {BATCH} events per POST /events/batch"),
                Some(r.deliveries_per_second),
                "deliv/s",
            )
            .ratio(
                ratio(Some(r.deliveries_per_second), baseline_rate),
                "baseline",
            )
            .note(e2e_note(r));
    }

    // ---- 3. steps ----
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
                &settings,
                &sink,
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

    // ---- 4. ingest ----
    if settings.wants("ingest") {
        progress!(settings, "4. ingest alone (tenant without endpoints)");
        let r = run_ingest(&settings).await?;
        rss_rows.push(("4. ingest".into(), r.engine.peak_rss_kib));
        report
            .add(
                "ingest.closed",
                "4. ingest",
                &format!("POST /events, {INGEST_PRODUCERS} concurrent, no endpoint"),
                Some(r.closed_loop_events_per_second),
                "events/s",
            )
            .ratio(ratio(Some(r.closed_loop_events_per_second), run2), "run 2")
            .note(format!("{} errors", r.closed_loop_errors));
        let note = format!(
            "achieved {:.0}/s, {} requests, {} errors",
            r.open_loop_achieved_rate, r.open_loop_requests, r.open_loop_errors
        );
        report
            .add(
                "ingest.open.p50",
                "4. ingest",
                "open loop 5,000/s: p50 latency",
                r.p50_ms,
                "ms",
            )
            .note(note);
        report
            .add(
                "ingest.open.p99",
                "4. ingest",
                "open loop 5,000/s: p99 latency",
                r.p99_ms,
                "ms",
            )
            .target(
                "≤ 5 ms",
                r.p99_ms.map(|p| p <= 5.0 && r.open_loop_errors == 0),
            );
        report
            .add(
                "ingest.open.max",
                "4. ingest",
                "open loop 5,000/s: max latency",
                r.max_ms,
                "ms",
            )
            .note(format!(
                "p99.9 {:.2} ms; sender max lag {:.2} ms",
                r.p999_ms.unwrap_or(f64::NAN),
                r.max_start_lag_ms
            ));
        report.details.insert("ingest".into(), json!(r));
    }

    // ---- 5. hot swap ----
    if settings.wants("swap") {
        let rate = e2e
            .get("api-key")
            .or(e2e.get("no-step"))
            .map(|r| 0.8 * r.deliveries_per_second)
            .unwrap_or(1000.0)
            .max(100.0);
        progress!(settings, "5. hot swap under load");
        let r = run_hot_swap(&settings, &sink, rate).await?;
        rss_rows.push(("5. hot swap".into(), r.engine.peak_rss_kib));
        let failed = r.failures + r.dead_attempts + r.dead_deliveries;
        let complete =
            r.delivered_at_sink == r.events && r.success_metric as u64 == r.events && !r.timed_out;
        report
            .add(
                "swap.failures",
                "5. hot swap",
                &format!("{} renames under load: failed attempts + dead", r.swaps),
                Some(failed),
                "count",
            )
            .target("0", Some(failed == 0.0 && r.errors == 0 && complete))
            .note(format!(
                "{} events at {:.0}/s, {} delivered, success metric {}, pending after stop {}",
                r.events,
                r.pacing_events_per_second,
                r.delivered_at_sink,
                r.success_metric,
                r.pending_after_stop
                    .map(|p| p.to_string())
                    .unwrap_or_else(|| "?".into())
            ));
        report
            .add(
                "swap.p50",
                "5. hot swap",
                "rename → first delivery with new version: median",
                r.latency_p50_ms,
                "ms",
            )
            .note(format!(
                "{} of {} swaps seen at the sink; debounce 200 ms",
                r.observed, r.swaps
            ));
        report.add(
            "swap.max",
            "5. hot swap",
            "rename → first delivery with new version: max",
            r.latency_max_ms,
            "ms",
        );
        report.add(
            "swap.rate",
            "5. hot swap",
            "deliveries/s during the swaps (paced)",
            Some(r.deliveries_per_second),
            "deliv/s",
        );
        report.details.insert("hot_swap".into(), json!(r));
    }

    // ---- 6. scale ----
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
                &settings,
                &sink,
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
    // ---- micro (last: its fsync storm must not disturb the end-to-end runs) ----
    if settings.wants("micro") {
        let seconds = Duration::from_millis(settings.scaled(3000, 1000));
        progress!(
            settings,
            "micro: store group commit, 256 concurrent ingests, synchronous=FULL, {:.0}s each",
            seconds.as_secs_f64()
        );
        let one = group_commit(1, seconds, 256).await?;
        progress!(
            settings,
            "  max_batch=1: {:.0} events/s ({} commits)",
            one.events_per_second,
            one.commits
        );
        let many = group_commit(1024, seconds, 256).await?;
        progress!(
            settings,
            "  max_batch=1024: {:.0} events/s (mean group {:.1})",
            many.events_per_second,
            many.mean_group
        );
        report
            .add(
                "micro.store.batch1",
                "micro: store",
                "ingest, max_batch=1 (fsync per event)",
                Some(one.events_per_second),
                "events/s",
            )
            .note(format!("{} commits", one.commits));
        let r = ratio(Some(many.events_per_second), Some(one.events_per_second));
        report
            .add(
                "micro.store.batch1024",
                "micro: store",
                "ingest, max_batch=1024 (group commit)",
                Some(many.events_per_second),
                "events/s",
            )
            .ratio(r, "max_batch=1")
            .note(format!("mean group {:.1} writes/commit", many.mean_group));
        report
            .details
            .insert("micro_group_commit".into(), json!([one, many]));

        let calls = settings.scaled(3000, 300);
        progress!(
            settings,
            "micro: plugin step cost, {calls} sequential apply() of api-key, fresh and warm instances"
        );
        let modes = [
            (
                "fresh",
                "fresh instance",
                wasmhook::plugins::InstanceReuse::NEVER,
            ),
            (
                "warm",
                "warm instance",
                wasmhook::plugins::InstanceReuse::default(),
            ),
        ];
        let mut fresh_us = None;
        for (key, what, reuse) in modes {
            match step_cost(&settings, calls, reuse).await {
                Ok(cost) => {
                    progress!(
                        settings,
                        "  api-key ({what}): {:.1} µs/call (wasm), {:.2} µs/call native; {:.0} calls/s with 2 callers",
                        cost.wasm_us_per_call,
                        cost.native_us_per_call,
                        cost.wasm_concurrent_calls_per_second
                    );
                    if key == "fresh" {
                        fresh_us = Some(cost.wasm_us_per_call);
                        report.add(
                            "micro.step.native",
                            "micro: step",
                            "native header insertion (parse config + set header)",
                            Some(cost.native_us_per_call),
                            "µs/call",
                        );
                    }
                    let row = report
                        .add(
                            &format!("micro.step.{key}"),
                            "micro: step",
                            &format!("api-key: {what} + apply()"),
                            Some(cost.wasm_us_per_call),
                            "µs/call",
                        )
                        .ratio(
                            ratio(Some(cost.wasm_us_per_call), Some(cost.native_us_per_call)),
                            "native",
                        );
                    if key == "warm" {
                        row.note(format!(
                            "{:.1}x faster than a fresh instance",
                            fresh_us.unwrap_or(f64::NAN) / cost.wasm_us_per_call
                        ));
                    } else {
                        row.note(format!("load {:.0} ms", cost.load_ms));
                    }
                    report.add(
                        &format!("micro.step.{key}2"),
                        "micro: step",
                        &format!("api-key apply(), {what}, 2 concurrent callers"),
                        Some(cost.wasm_concurrent_calls_per_second),
                        "calls/s",
                    );
                    report
                        .details
                        .insert(format!("micro_step_{key}"), json!(cost));
                }
                Err(e) => {
                    progress!(
                        settings,
                        "  plugin step micro-benchmark ({what}) failed: {e:#}"
                    );
                    report
                        .add(
                            &format!("micro.step.{key}"),
                            "micro: step",
                            &format!("api-key: {what} + apply()"),
                            None,
                            "µs/call",
                        )
                        .note(format!("failed: {e}"));
                }
            }
        }
    }

    for (label, kib) in &rss_rows {
        report.add(
            &format!("rss.{label}"),
            "6. peak RSS",
            &format!("engine VmHWM: {label}"),
            mib(*kib),
            "MiB",
        );
    }
    if let Some(max) = rss_rows.iter().filter_map(|(_, k)| *k).max() {
        report.add(
            "rss.max",
            "6. peak RSS",
            "engine VmHWM: max over runs",
            mib(Some(max)),
            "MiB",
        );
    }
    report.details.insert("e2e".into(), json!(e2e));

    // ---- output ----
    let table = render_table(&report.rows);
    let total = settings.started.elapsed();
    println!();
    println!(
        "wasmhook engine benchmark — {} events/run{}, {} cores, total {:.0}s, load average at start {loadavg}",
        n,
        if settings.quick { " (QUICK)" } else { "" },
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0),
        total.as_secs_f64()
    );
    print!("{table}");
    // A subset (WASMHOOK_BENCH_ONLY / _STEPS, for profiling) must not replace the full report.
    let partial = settings.only.is_some()
        || std::env::var("WASMHOOK_BENCH_STEPS").is_ok_and(|v| !v.trim().is_empty());
    let json_path = settings.out_dir.join(if partial {
        "engine-partial.json"
    } else {
        "engine.json"
    });
    let document = json!({
        "benchmark": "wasmhook engine",
        "command": "cargo bench --bench engine",
        "events_per_run": n,
        "quick": settings.quick,
        "concurrency": CONCURRENCY,
        "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "load_average_at_start": loadavg,
        "total_seconds": total.as_secs_f64(),
        "unix_time": std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0),
        "rows": report.rows,
        "details": report.details,
        "table": table,
    });
    std::fs::write(&json_path, serde_json::to_string_pretty(&document)?)?;
    println!("JSON: {}", json_path.display());
    let _ = settings.workspace;
    Ok(())
}

fn e2e_note(r: &E2eResult) -> String {
    let mut parts = vec![format!("{} in {:.1}s", r.delivered_at_sink, r.seconds)];
    if let Some(cpu) = r.engine_cpu_us_per_delivery {
        parts.push(format!("engine CPU {cpu:.0} µs/deliv"));
    }
    if r.failures > 0.0 || r.dead > 0.0 {
        parts.push(format!("failures {} dead {}", r.failures, r.dead));
    }
    if r.errors > 0 {
        parts.push(format!("{} POST errors", r.errors));
    }
    if let Some(p) = r.pending_after_stop
        && p > 0
    {
        parts.push(format!("{p} pending after stop"));
    }
    if r.engine.panics > 0 {
        parts.push(format!("engine panicked {}x", r.engine.panics));
    }
    if r.timed_out {
        parts.push("TIMED OUT".into());
    }
    parts.join(", ")
}
