//! The engine as a CHILD PROCESS (`wasmhook serve`, the bench-profile binary): one fresh process
//! and data directory per run (or a restart on the same directory), so that its RSS and CPU time
//! are its own; what `/proc` says about it.

use std::io::{BufRead, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail};
use serde_json::{Value, json};

use crate::api::{Api, Counters, metric};
use crate::settings::Settings;
use crate::{ADMIN_TOKEN, CONCURRENCY};

/// The engines' master key (`WASMHOOK_MASTER_KEY`): "bench-master-key-not-a-secret-01" in hex.
const MASTER_KEY: &str = "62656e63682d6d61737465722d6b65792d6e6f742d612d7365637265742d3031";

#[derive(Clone)]
pub struct EngineOptions {
    pub label: String,
    /// `.wasm` files to place in the plugins directory before start: (file name, source path).
    pub plugin_files: Vec<(String, PathBuf)>,
    /// `--store` (default: SQLite in the data directory).
    pub store: Option<String>,
    /// `--retry-schedule` (default: the engine's).
    pub retry_schedule: Option<String>,
    /// TOML appended to the bench's config file (whole tables, e.g. `[retention]`).
    pub extra_config: String,
}

impl EngineOptions {
    pub fn new(label: impl Into<String>) -> Self {
        Self {
            label: label.into(),
            plugin_files: vec![],
            store: None,
            retry_schedule: None,
            extra_config: String::new(),
        }
    }
}

pub struct EngineProc {
    pub label: String,
    child: Child,
    pub pid: u32,
    dir: Option<tempfile::TempDir>,
    pub data_dir: PathBuf,
    store: Option<String>,
    pub api: Api,
    /// From before the data directory was made to the first healthy `/healthz`.
    pub startup: Duration,
    /// From the process's spawn to the first `/healthz` that answered 200.
    pub healthy_after_spawn: Duration,
    clock_ticks: f64,
    log_path: PathBuf,
}

#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct ProcStats {
    pub peak_rss_kib: Option<u64>,
    pub cpu_seconds: Option<f64>,
    /// `panicked at` lines in the engine's log, and the first panic message.
    pub panics: u64,
    pub first_panic: Option<String>,
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

/// A `kB` field of `/proc/<pid>/status` (`VmHWM`, `VmRSS`).
fn status_kib(pid: u32, field: &str) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
                .and_then(|v| v.split_whitespace().next().and_then(|n| n.parse().ok()))
        })
}

pub fn proc_stats(pid: u32, clock_ticks: f64) -> ProcStats {
    let peak_rss_kib = status_kib(pid, "VmHWM");
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

pub fn self_cpu_seconds(clock_ticks: f64) -> f64 {
    proc_stats(std::process::id(), clock_ticks)
        .cpu_seconds
        .unwrap_or(0.0)
}

/// What an [`RssSampler`] saw.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct RssSamples {
    pub samples: u64,
    pub max_kib: Option<u64>,
    /// `RssAnon` and `RssFile` (mapped files, shared libraries) of the largest sample.
    pub max_anon_kib: Option<u64>,
    pub max_file_kib: Option<u64>,
    pub last_kib: Option<u64>,
    pub seconds: f64,
}

/// Reads a process's `VmRSS` every `every` until stopped.
pub struct RssSampler {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<RssSamples>,
}

impl RssSampler {
    pub fn start(pid: u32, every: Duration) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let task = tokio::spawn(async move {
            let started = Instant::now();
            let mut out = RssSamples::default();
            loop {
                if let Some(kib) = status_kib(pid, "VmRSS") {
                    out.samples += 1;
                    if out.max_kib.is_none_or(|max| kib > max) {
                        out.max_kib = Some(kib);
                        out.max_anon_kib = status_kib(pid, "RssAnon");
                        out.max_file_kib = status_kib(pid, "RssFile");
                    }
                    out.last_kib = Some(kib);
                }
                if flag.load(Ordering::Relaxed) {
                    break;
                }
                tokio::time::sleep(every).await;
            }
            out.seconds = started.elapsed().as_secs_f64();
            out
        });
        Self { stop, task }
    }

    pub async fn stop(self) -> RssSamples {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.unwrap_or_default()
    }
}

impl EngineProc {
    /// A new engine on a fresh data directory.
    pub async fn start(settings: &Settings, options: EngineOptions) -> anyhow::Result<Self> {
        Self::start_in(settings, options, None).await
    }

    /// An engine on the data directory a stopped one left ([`EngineProc::stop_keeping_dir`]).
    pub async fn restart(
        settings: &Settings,
        options: EngineOptions,
        dir: tempfile::TempDir,
    ) -> anyhow::Result<Self> {
        Self::start_in(settings, options, Some(dir)).await
    }

    async fn start_in(
        settings: &Settings,
        options: EngineOptions,
        dir: Option<tempfile::TempDir>,
    ) -> anyhow::Result<Self> {
        // Write back what earlier runs left dirty, so that it does not slow this run's fsyncs.
        let _ = Command::new("sync").status();
        let started = Instant::now();
        let dir = match dir {
            Some(dir) => dir,
            None => tempfile::Builder::new()
                .prefix(&format!("wasmhook-bench-{}-", options.label))
                .tempdir()?,
        };
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
                 [store]\nsynchronous = \"FULL\"\n\n{extra}",
                cache = settings.cache_dir.display().to_string(),
                extra = options.extra_config
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
        command
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
            .arg(ADMIN_TOKEN);
        if let Some(store) = &options.store {
            command.arg("--store").arg(store);
        }
        if let Some(schedule) = &options.retry_schedule {
            command.arg("--retry-schedule").arg(schedule);
        }
        let spawned = Instant::now();
        let mut child = command
            .env_remove("WASMHOOK_CONFIG")
            .env_remove("WASMHOOK_LISTEN")
            .env_remove("WASMHOOK_DATA_DIR")
            .env_remove("WASMHOOK_STORE")
            .env_remove("WASMHOOK_PLUGINS_DIR")
            .env_remove("WASMHOOK_ADMIN_TOKEN")
            .env_remove("WASMHOOK_ALLOW_CIDRS")
            .env_remove("WASMHOOK_RETRY_SCHEDULE")
            .env_remove("WASMHOOK_LEASE_TTL")
            // One master key for every engine: the nodes of a cluster unseal each other's
            // secrets, and the bench reopens a stopped engine's store.
            .env("WASMHOOK_MASTER_KEY", MASTER_KEY)
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
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let healthy_after_spawn = spawned.elapsed();
        Ok(Self {
            label: options.label,
            child,
            pid,
            dir: Some(dir),
            data_dir,
            store: options.store,
            api,
            startup: started.elapsed(),
            healthy_after_spawn,
            clock_ticks: settings.clock_ticks,
            log_path,
        })
    }

    pub fn plugins_dir(&self) -> PathBuf {
        self.data_dir.join("plugins")
    }

    pub async fn counters(&self) -> anyhow::Result<Counters> {
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
    pub async fn tenant(&self, id: &str) -> anyhow::Result<String> {
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

    pub async fn endpoint(&self, tenant: &str, token: &str, spec: Value) -> anyhow::Result<String> {
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

    /// Peak RSS and CPU, then SIGTERM and wait (SIGKILL after 30 s); the panics in its log.
    async fn shutdown(&mut self) -> anyhow::Result<ProcStats> {
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
        Ok(stats)
    }

    /// Stops the engine ([`EngineProc::shutdown`]). With `check_pending`, opens the stopped
    /// engine's store and counts deliveries still pending.
    pub async fn stop(
        mut self,
        check_pending: bool,
        keep: bool,
    ) -> anyhow::Result<(ProcStats, Option<u64>)> {
        let stats = self.shutdown().await?;
        let pending = if check_pending {
            Some(count_pending(self.store.as_deref(), &self.data_dir).await?)
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

    /// Stops the engine and hands its data directory over (for [`EngineProc::restart`]).
    pub async fn stop_keeping_dir(mut self) -> anyhow::Result<(ProcStats, tempfile::TempDir)> {
        let stats = self.shutdown().await?;
        let dir = self.dir.take().expect("the engine holds its directory");
        Ok((stats, dir))
    }
}

/// Opens a store (the engine using it is stopped, or shares it) and counts the deliveries still
/// pending.
pub async fn count_pending(store: Option<&str>, data_dir: &Path) -> anyhow::Result<u64> {
    use wasmhook::secrets::{MasterKey, Sealer};
    use wasmhook::store::{OpenOptions, Store, StoreLocation};
    let location = StoreLocation::parse(store, data_dir).map_err(|e| anyhow!("{e}"))?;
    let store = Store::open(&OpenOptions {
        sealer: Sealer::new(
            MasterKey::parse(MASTER_KEY, "the bench's master key").map_err(|e| anyhow!("{e}"))?,
            vec![],
        ),
        location,
        data_dir: data_dir.to_path_buf(),
        max_batch: 16,
        synchronous: wasmhook::config::Synchronous::Full,
        pool_size: 2,
    })
    .await
    .map_err(|e| anyhow!("reopening the store: {e}"))?;
    let n = store
        .count_pending()
        .await
        .map_err(|e| anyhow!("counting pending deliveries: {e}"))?;
    drop(store);
    Ok(n)
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
