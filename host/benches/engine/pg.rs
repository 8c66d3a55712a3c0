//! A throwaway PostgreSQL server for the bench: `initdb` in a temporary directory owned by the
//! `postgres` user (initdb refuses to run as root), `postgres` listening on a free 127.0.0.1 port
//! with its socket in that directory, durable settings (fsync and synchronous_commit on, the
//! defaults), shared_buffers 256MB, max_connections 200. Stopped when dropped (also on a panic
//! or an error half-way), and its directory removed.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail};

pub struct Postgres {
    child: Child,
    pub port: u16,
    pub version: String,
    /// The cluster's files (and the socket), removed after the server stopped.
    _dir: tempfile::TempDir,
}

/// The directory with `initdb` and `postgres`: `$(pg_config --bindir)`, else the newest
/// `/usr/lib/postgresql/*/bin`.
fn bindir() -> anyhow::Result<PathBuf> {
    let from_pg_config = Command::new("pg_config")
        .arg("--bindir")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| PathBuf::from(s.trim()));
    if let Some(dir) = from_pg_config.filter(|d| d.join("initdb").exists()) {
        return Ok(dir);
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, bin)| bin).ok_or_else(|| {
        anyhow!("no PostgreSQL server binaries (pg_config --bindir, /usr/lib/postgresql/*/bin)")
    })
}

/// `id -u NAME` / `id -g NAME`.
fn id_of(flag: &str, user: Option<&str>) -> anyhow::Result<u32> {
    let mut command = Command::new("id");
    command.arg(flag);
    if let Some(user) = user {
        command.arg(user);
    }
    let out = command.output().context("running id")?;
    if !out.status.success() {
        bail!("id {flag} {}: no such user", user.unwrap_or(""));
    }
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .map_err(|e| anyhow!("id {flag}: {e}"))
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// A command run as `postgres` when this process is root (initdb and postgres refuse root).
fn as_postgres(program: &Path, dir: &Path, user: Option<(u32, u32)>) -> Command {
    use std::os::unix::process::CommandExt as _;
    let mut command = Command::new(program);
    command
        .current_dir(dir)
        .env("HOME", dir)
        .env("LC_ALL", "C")
        .env_remove("PGDATA")
        .env_remove("PGPORT")
        .env_remove("PGHOST")
        .stdin(Stdio::null());
    if let Some((uid, gid)) = user {
        command.uid(uid).gid(gid);
    }
    command
}

impl Postgres {
    /// Creates a cluster and starts the server; `log` gets its output.
    pub async fn start(log: &Path) -> anyhow::Result<Self> {
        let bin = bindir()?;
        let user = if id_of("-u", None)? == 0 {
            Some((
                id_of("-u", Some("postgres"))?,
                id_of("-g", Some("postgres"))?,
            ))
        } else {
            None
        };
        let dir = tempfile::Builder::new()
            .prefix("wasmhook-bench-pg-")
            .tempdir()?;
        if user.is_some() {
            let status = Command::new("chown")
                .arg("postgres:postgres")
                .arg(dir.path())
                .status()?;
            if !status.success() {
                bail!("chown postgres {}: {status}", dir.path().display());
            }
        }
        let data = dir.path().join("data");
        let out = as_postgres(&bin.join("initdb"), dir.path(), user)
            .arg("-D")
            .arg(&data)
            .args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C"])
            // initdb's own final fsync of the new files only; the server runs with fsync on.
            .arg("--no-sync")
            .output()
            .context("running initdb")?;
        if !out.status.success() {
            bail!(
                "initdb failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let port = free_port()?;
        let log_file = std::fs::File::create(log)?;
        let child = as_postgres(&bin.join("postgres"), dir.path(), user)
            .arg("-D")
            .arg(&data)
            .arg("-p")
            .arg(port.to_string())
            .arg("-c")
            .arg("listen_addresses=127.0.0.1")
            .arg("-c")
            .arg(format!("unix_socket_directories={}", dir.path().display()))
            .args(["-c", "shared_buffers=256MB", "-c", "max_connections=200"])
            .args(["-c", "fsync=on", "-c", "synchronous_commit=on"])
            // Every autovacuum run in the log, with what it removed and how long it took.
            .args(["-c", "log_autovacuum_min_duration=0"])
            .args(preload_arguments())
            .stdout(log_file.try_clone()?)
            .stderr(log_file)
            .spawn()
            .context("starting postgres")?;
        let mut pg = Self {
            child,
            port,
            version: String::new(),
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = pg.child.try_wait()? {
                bail!("postgres exited at start ({status}); see {}", log.display());
            }
            match pg.connect("postgres").await {
                Ok(client) => {
                    let rows = client.simple_query("SHOW server_version").await?;
                    pg.version = rows
                        .iter()
                        .find_map(|m| match m {
                            tokio_postgres::SimpleQueryMessage::Row(r) => {
                                r.get(0).map(str::to_string)
                            }
                            _ => None,
                        })
                        .unwrap_or_default();
                    break;
                }
                Err(e) if Instant::now() > deadline => {
                    bail!("postgres did not accept connections within 60 s: {e}")
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
        Ok(pg)
    }

    async fn connect(&self, db: &str) -> anyhow::Result<tokio_postgres::Client> {
        let (client, connection) = tokio_postgres::connect(
            &format!(
                "host=127.0.0.1 port={} user=postgres dbname={db}",
                self.port
            ),
            tokio_postgres::NoTls,
        )
        .await?;
        tokio::spawn(connection);
        Ok(client)
    }

    /// The statements that took the server's time in database `db` since the last call, most
    /// first (`WASMHOOK_BENCH_PG_STATEMENTS=1` loads `pg_stat_statements`; empty without it).
    pub async fn top_statements(&self, db: &str, limit: i64) -> anyhow::Result<Vec<String>> {
        if !statements_profile() {
            return Ok(Vec::new());
        }
        let client = self.connect(db).await?;
        client
            .simple_query("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            .await?;
        let rows = client
            .query(
                "SELECT calls, total_exec_time, rows, left(regexp_replace(query, '\\s+', ' ', 'g'), 110)
                 FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid
                 WHERE d.datname = $1 ORDER BY total_exec_time DESC LIMIT $2",
                &[&db, &limit],
            )
            .await?;
        client
            .simple_query("SELECT pg_stat_statements_reset()")
            .await?;
        Ok(rows
            .iter()
            .map(|r| {
                let (calls, total, rows, query): (i64, f64, i64, String) =
                    (r.get(0), r.get(1), r.get(2), r.get(3));
                format!("{total:9.0} ms {calls:8} calls {rows:9} rows  {query}")
            })
            .collect())
    }

    /// The size of database `db` on disk (KiB); 0 when it cannot be read.
    pub async fn database_kib(&self, db: &str) -> u64 {
        let Ok(client) = self.connect("postgres").await else {
            return 0;
        };
        match client
            .query_one("SELECT pg_database_size($1)", &[&db])
            .await
        {
            Ok(row) => u64::try_from(row.get::<_, i64>(0)).unwrap_or(0) / 1024,
            Err(_) => 0,
        }
    }

    /// What a database holds right now: deliveries not finished (pending, held: retention
    /// keeps them), and the events' live and dead rows as the server's statistics count them
    /// (dead ones wait for a vacuum). `None` when the database cannot be read.
    pub async fn backlog(&self, db: &str) -> Option<Backlog> {
        let client = self.connect(db).await.ok()?;
        let row = client
            .query_one(
                "SELECT (SELECT count(*) FROM deliveries WHERE status NOT IN ('delivered', 'dead')),
                        (SELECT n_live_tup FROM pg_stat_user_tables WHERE relname = 'events'),
                        (SELECT n_dead_tup FROM pg_stat_user_tables WHERE relname = 'events')",
                &[],
            )
            .await
            .ok()?;
        Some(Backlog {
            unfinished_deliveries: row.try_get(0).ok()?,
            live_events: row.try_get::<_, Option<i64>>(1).ok()?.unwrap_or(0),
            dead_event_rows: row.try_get::<_, Option<i64>>(2).ok()?.unwrap_or(0),
        })
    }

    /// A new, empty database; its URL for `--store`.
    pub async fn create_database(&self, name: &str) -> anyhow::Result<String> {
        let client = self.connect("postgres").await?;
        client
            .simple_query(&format!("DROP DATABASE IF EXISTS {name}"))
            .await?;
        client
            .simple_query(&format!("CREATE DATABASE {name}"))
            .await
            .with_context(|| format!("CREATE DATABASE {name}"))?;
        Ok(format!(
            "postgres://postgres@127.0.0.1:{}/{name}?sslmode=disable",
            self.port
        ))
    }

    /// CPU seconds of the server: the postmaster, its children that exited (reaped) and those
    /// still running.
    pub fn cpu_seconds(&self, clock_ticks: f64) -> f64 {
        let pid = self.child.id();
        let fields = |pid: u32| -> Option<Vec<String>> {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let rest = &stat[stat.rfind(')')? + 2..];
            Some(rest.split_whitespace().map(str::to_string).collect())
        };
        let ticks = |f: &[String], range: std::ops::Range<usize>| -> f64 {
            range
                .filter_map(|i| f.get(i)?.parse::<f64>().ok())
                .sum::<f64>()
        };
        // After `(comm) `: ppid is index 1, utime 11, stime 12, cutime 13, cstime 14.
        let mut total = fields(pid).map(|f| ticks(&f, 11..15)).unwrap_or(0.0);
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Some(child) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            if let Some(f) = fields(child)
                && f.get(1).and_then(|p| p.parse::<u32>().ok()) == Some(pid)
            {
                total += ticks(&f, 11..13);
            }
        }
        total / clock_ticks
    }

    /// Fast shutdown (SIGINT), SIGKILL after 15 s.
    pub fn stop(&mut self) {
        if !matches!(self.child.try_wait(), Ok(None)) {
            return;
        }
        let _ = Command::new("kill")
            .arg("-INT")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if !matches!(self.child.try_wait(), Ok(None)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!("postgres did not stop within 15 s of SIGINT: killing it");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.stop();
    }
}

/// What a database holds at one moment (see [`Postgres::backlog`]).
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Backlog {
    pub unfinished_deliveries: i64,
    pub live_events: i64,
    pub dead_event_rows: i64,
}

/// Whether an environment switch of the bench is on.
fn switch(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| !v.is_empty() && v != "0")
}

/// Whether the bench's server profiles its statements (`WASMHOOK_BENCH_PG_STATEMENTS`).
fn statements_profile() -> bool {
    switch("WASMHOOK_BENCH_PG_STATEMENTS")
}

/// The server's extra settings: `pg_stat_statements` for the statement profile, and with
/// `WASMHOOK_BENCH_PG_EXPLAIN=1` `auto_explain`, which writes the plan of every statement that
/// took 30 ms or more into the server's log (`target/bench/logs/postgres*.log`).
fn preload_arguments() -> Vec<String> {
    let mut libraries = Vec::new();
    let mut arguments = Vec::new();
    if statements_profile() {
        libraries.push("pg_stat_statements");
    }
    if switch("WASMHOOK_BENCH_PG_EXPLAIN") {
        libraries.push("auto_explain");
        arguments.extend([
            "-c".to_string(),
            "auto_explain.log_min_duration=30ms".to_string(),
        ]);
    }
    if !libraries.is_empty() {
        arguments.extend([
            "-c".to_string(),
            format!("shared_preload_libraries={}", libraries.join(",")),
        ]);
    }
    arguments
}
