//! A throwaway PostgreSQL server for this test process, started once on first use from the
//! system's binaries (`pg_config --bindir`, else `/usr/lib/postgresql/*/bin`, else `PATH`).
//!
//! - `initdb -A trust -U postgres --no-sync` into a fresh directory under `/tmp`, then
//!   `postgres -h 127.0.0.1 -p <free port> -k <dir> -c fsync=off -c max_connections=300`
//!   (fsync off: tests need no durability across power loss; the benchmark runs with it on).
//! - As root (initdb refuses to run as root), the directory is handed to the `postgres` system
//!   user and both programs run as that user (`runuser -u postgres --`, else `su postgres`).
//! - The server is started by a small `sh` watchdog that also polls this test process's pid:
//!   when the test binary exits, however it exits (normally, panicking, killed with SIGKILL),
//!   the watchdog stops the server within a second and deletes its directory. Nothing is left
//!   running after the tests.
//!
//! [`database`] creates a fresh database per call, so tests (and the nodes of one test) share
//! the server but never each other's data.

use std::io::{Read, Seek};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The running server.
struct Server {
    port: u16,
    dir: PathBuf,
    /// The watchdog shell (kept so it is not reaped early; it ends with this process).
    _watchdog: std::process::Child,
}

static SERVER: OnceLock<Server> = OnceLock::new();

/// Where the PostgreSQL server binaries are, if anywhere: `pg_config --bindir`, else the newest
/// `/usr/lib/postgresql/<version>/bin`, else the directory of `initdb` on `PATH`.
pub fn bindir() -> Option<PathBuf> {
    let has_server = |dir: &Path| dir.join("initdb").is_file() && dir.join("postgres").is_file();
    if let Ok(out) = Command::new("pg_config")
        .arg("--bindir")
        .stderr(Stdio::null())
        .output()
        && out.status.success()
    {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if has_server(&dir) {
            return Some(dir);
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            has_server(&bin).then_some((version, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Some(bin);
    }
    std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path).find_map(|dir| {
            let initdb = std::fs::canonicalize(dir.join("initdb")).ok()?;
            let bin = initdb.parent()?.to_path_buf();
            has_server(&bin).then_some(bin)
        })
    })
}

/// True when PostgreSQL server binaries are installed (tests that need one may skip otherwise).
pub fn available() -> bool {
    bindir().is_some()
}

/// `postgres://postgres@127.0.0.1:<port>/postgres` (the maintenance database). Starts the
/// server on first use (blocking, up to ~30 s).
pub fn server_url() -> String {
    format!("postgres://postgres@127.0.0.1:{}/postgres", server().port)
}

/// Creates a fresh, empty database `t_<n>_<random>` on the test server (starting it on first
/// use) and returns its URL, `postgres://postgres@127.0.0.1:<port>/<db>`.
pub async fn database() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let port = tokio::task::spawn_blocking(|| server().port)
        .await
        .expect("the PostgreSQL test server starts");
    let name = format!(
        "t_{}_{:08x}",
        COUNTER.fetch_add(1, Ordering::Relaxed),
        rand::random::<u32>()
    );
    let admin = format!("postgres://postgres@127.0.0.1:{port}/postgres");
    let (client, connection) = tokio_postgres::connect(&admin, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| {
            panic!(
                "connecting to the PostgreSQL test server ({admin}): {}",
                describe(&e)
            )
        });
    let connection = tokio::spawn(connection);
    client
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .unwrap_or_else(|e| panic!("CREATE DATABASE {name}: {}", describe(&e)));
    drop(client);
    let _ = connection.await;
    format!("postgres://postgres@127.0.0.1:{port}/{name}")
}

/// A PostgreSQL error with the server's message (`Display` alone says only "db error").
pub fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{e}: {db}"),
        None => format!("{e:?}"),
    }
}

fn server() -> &'static Server {
    SERVER.get_or_init(start)
}

/// True when this process runs as root (initdb and postgres refuse to).
fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let line = status.lines().find(|l| l.starts_with("Uid:"))?;
            // Uid: real effective saved filesystem
            line.split_whitespace().nth(2).map(|euid| euid == "0")
        })
        .unwrap_or_else(|| {
            Command::new("id")
                .arg("-u")
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
                .unwrap_or(false)
        })
}

/// Single-quotes `s` for `sh`.
fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// A command running `script` with `sh -c`, as the `postgres` user when `as_postgres`.
fn shell(script: &str, as_postgres: bool) -> Command {
    if !as_postgres {
        let mut command = Command::new("sh");
        command.arg("-c").arg(script);
        return command;
    }
    let runuser = ["/usr/sbin/runuser", "/sbin/runuser", "/usr/bin/runuser"]
        .into_iter()
        .find(|p| Path::new(p).exists());
    match runuser {
        Some(runuser) => {
            let mut command = Command::new(runuser);
            command.args(["-u", "postgres", "--", "sh", "-c", script]);
            command
        }
        None => {
            let mut command = Command::new("su");
            command.args(["postgres", "-s", "/bin/sh", "-c", script]);
            command
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn read_log(path: &Path) -> String {
    let mut text = String::new();
    if let Ok(mut file) = std::fs::File::open(path) {
        // The end is what explains a failure.
        let len = file.metadata().map(|m| m.len()).unwrap_or(0);
        let _ = file.seek(std::io::SeekFrom::Start(len.saturating_sub(8192)));
        let _ = file.read_to_string(&mut text);
    }
    text
}

fn start() -> Server {
    let began = Instant::now();
    let bin = bindir().unwrap_or_else(|| {
        panic!(
            "no PostgreSQL server binaries (initdb, postgres): neither `pg_config --bindir` nor \
             /usr/lib/postgresql/*/bin has them; install PostgreSQL (apt-get install postgresql) \
             or run scripts/test, which does"
        )
    });
    let root = is_root();
    // Under /tmp as root: the postgres user must be able to reach it (a TMPDIR under /root
    // would not be traversable).
    let dir = if root {
        tempfile::Builder::new()
            .prefix("wasmhook-pg-")
            .tempdir_in("/tmp")
    } else {
        tempfile::Builder::new().prefix("wasmhook-pg-").tempdir()
    }
    .expect("a temporary directory for PostgreSQL")
    .keep();
    if root {
        let status = Command::new("chown")
            .args(["postgres:", dir.to_str().unwrap()])
            .status()
            .expect("run chown");
        assert!(
            status.success(),
            "chown postgres: {} failed (is there a `postgres` system user?)",
            dir.display()
        );
    }
    let data = dir.join("data");
    let log = dir.join("server.log");
    let initdb_log = dir.join("initdb.log");
    let dir_s = dir.to_str().unwrap();
    let initdb = format!(
        "{} -D {} -A trust -U postgres --no-sync -E UTF8 --locale=C >{} 2>&1",
        quote(bin.join("initdb").to_str().unwrap()),
        quote(data.to_str().unwrap()),
        quote(initdb_log.to_str().unwrap()),
    );
    let status = shell(&initdb, root)
        .stdin(Stdio::null())
        .status()
        .expect("run initdb");
    if !status.success() {
        let text = read_log(&initdb_log);
        let _ = std::fs::remove_dir_all(&dir);
        panic!("initdb failed ({status}):\n{text}");
    }

    // A port chosen free can be taken before postgres binds it: try a few.
    let mut last_failure = String::new();
    for _ in 0..3 {
        let port = free_port();
        // The watchdog: starts postgres and waits for it; beside it, a watcher polls this test
        // process (through /proc, which needs no permission on another user's process) and,
        // once it is gone, stops postgres (immediate shutdown: nothing here needs to survive)
        // and deletes the directory. The shell ends when postgres does, for whatever reason.
        let script = format!(
            r#"{postgres} -D {data} -k {dir} -h 127.0.0.1 -p {port} -c fsync=off -c max_connections=300 >>{log} 2>&1 </dev/null &
pg=$!
echo $pg > {dir}/server.pid
(
  while [ -d /proc/{watched} ]; do sleep 0.5; done
  kill -QUIT $pg 2>/dev/null
  sleep 5
  kill -KILL $pg 2>/dev/null
) </dev/null >/dev/null 2>&1 &
watcher=$!
wait $pg
status=$?
kill $watcher 2>/dev/null
[ -d /proc/{watched} ] || rm -rf {dir}
exit $status
"#,
            postgres = quote(bin.join("postgres").to_str().unwrap()),
            data = quote(data.to_str().unwrap()),
            dir = quote(dir_s),
            log = quote(log.to_str().unwrap()),
            watched = std::process::id(),
        );
        let mut watchdog = shell(&script, root)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the PostgreSQL watchdog");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if ready(&bin, port) {
                eprintln!(
                    "PostgreSQL test server on 127.0.0.1:{port} (data {}) ready in {:?}",
                    data.display(),
                    began.elapsed()
                );
                return Server {
                    port,
                    dir,
                    _watchdog: watchdog,
                };
            }
            if let Ok(Some(_)) = watchdog.try_wait() {
                // postgres exited: the watchdog saw it and ended.
                last_failure = read_log(&log);
                break;
            }
            if Instant::now() > deadline {
                let _ = watchdog.kill();
                if let Ok(pid) = std::fs::read_to_string(dir.join("server.pid")) {
                    let _ = Command::new("kill").args(["-KILL", pid.trim()]).status();
                }
                let text = read_log(&log);
                let _ = std::fs::remove_dir_all(&dir);
                panic!(
                    "PostgreSQL did not accept connections on 127.0.0.1:{port} within 30 s; its log:\n{text}"
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        if !last_failure.contains("could not bind") && !last_failure.contains("in use") {
            break;
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    panic!("PostgreSQL failed to start; its log:\n{last_failure}");
}

/// True when the server accepts connections (`pg_isready`, else a TCP connect).
fn ready(bin: &Path, port: u16) -> bool {
    let pg_isready = bin.join("pg_isready");
    if pg_isready.is_file() {
        return Command::new(pg_isready)
            .args(["-q", "-h", "127.0.0.1", "-p", &port.to_string(), "-U"])
            .arg("postgres")
            .args(["-d", "postgres"])
            .stdin(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
    }
    std::net::TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_millis(200),
    )
    .is_ok()
}

/// The server's directory (its log is `server.log` there).
pub fn server_dir() -> PathBuf {
    server().dir.clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn connect(url: &str) -> tokio_postgres::Client {
        let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
            .await
            .unwrap_or_else(|e| panic!("connect {url}: {}", describe(&e)));
        tokio::spawn(connection);
        client
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_test_server_starts_once_and_each_database_is_fresh() {
        if !available()
            && super::super::StoreBackend::current() == super::super::StoreBackend::Sqlite
        {
            eprintln!("SKIPPED: no PostgreSQL server binaries");
            return;
        }
        let (a, b) = (database().await, database().await);
        assert_ne!(a, b);
        let port = |url: &str| {
            url.rsplit_once(':')
                .unwrap()
                .1
                .split('/')
                .next()
                .unwrap()
                .to_string()
        };
        assert_eq!(port(&a), port(&b), "one server");
        assert_eq!(port(&server_url()), port(&a));
        let first = connect(&a).await;
        first
            .batch_execute("CREATE TABLE mine (x int); INSERT INTO mine VALUES (1)")
            .await
            .unwrap();
        let second = connect(&b).await;
        let err = second.query("SELECT x FROM mine", &[]).await.unwrap_err();
        assert!(
            describe(&err).contains("\"mine\" does not exist"),
            "{err:?}"
        );
        let settings = connect(&server_url()).await;
        let fsync: String = settings.query_one("SHOW fsync", &[]).await.unwrap().get(0);
        let max: String = settings
            .query_one("SHOW max_connections", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!((fsync.as_str(), max.as_str()), ("off", "300"));
        eprintln!(
            "test server {} (dir {}): {a}, {b}",
            server_url(),
            server_dir().display()
        );
    }
}
