//! The real `wasmhook` binary as a child process (crash and cluster tests): spawned with flags,
//! waited for on `/healthz`, killed (SIGKILL) when dropped so a failing test leaves nothing
//! running. Its stderr goes to `<data_dir>/engine.log` (see [`EngineProcess::log`]).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{ADMIN, Api};

/// An engine process; killed when dropped.
pub struct EngineProcess {
    child: Child,
    /// The admin API of this process.
    pub api: Api,
    /// Its API port on 127.0.0.1.
    pub port: u16,
    /// Its data directory.
    pub data_dir: PathBuf,
}

impl Drop for EngineProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl std::ops::Deref for EngineProcess {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.child
    }
}

impl std::ops::DerefMut for EngineProcess {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.child
    }
}

impl EngineProcess {
    /// What the process wrote to stderr so far (the last 8 KiB).
    pub fn log(&self) -> String {
        let text = std::fs::read_to_string(self.data_dir.join("engine.log")).unwrap_or_default();
        let start = text.len().saturating_sub(8192);
        let start = (start..text.len())
            .find(|i| text.is_char_boundary(*i))
            .unwrap_or(0);
        text[start..].to_string()
    }

    /// Waits until `/healthz` answers 200 (60 s at most); panics with the log if the process
    /// exits first.
    pub async fn wait_healthy(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("the engine exited early: {status}\n{}", self.log());
            }
            if let Ok(Ok((200, _))) =
                tokio::time::timeout(Duration::from_secs(1), try_get(&self.api, "/healthz")).await
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "engine not healthy within 60 s\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Starts `wasmhook serve` on `127.0.0.1:port` with `data_dir`, 127.0.0.1 allowed as a
/// destination, a 200 ms retry schedule, the auth+security policy off, the admin token
/// [`ADMIN`], the compiled-code cache shared by the tests, and `extra` flags (e.g.
/// `--store <url>`, `--lease-ttl 3s`).
pub fn spawn_engine(data_dir: &Path, port: u16, extra: &[&str]) -> EngineProcess {
    spawn_engine_with(data_dir, port, extra, "")
}

/// [`spawn_engine`] with more configuration: `toml` is appended to the config file (which
/// already has a `[plugins]` table; start others, e.g. `[delivery]`).
pub fn spawn_engine_with(data_dir: &Path, port: u16, extra: &[&str], toml: &str) -> EngineProcess {
    std::fs::create_dir_all(data_dir).unwrap();
    let config = data_dir.join("test.toml");
    std::fs::write(
        &config,
        format!(
            "[plugins]\ncache_dir = {:?}\n{toml}\n",
            super::shared_cache_dir().to_str().unwrap()
        ),
    )
    .unwrap();
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(data_dir.join("engine.log"))
        .unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_wasmhook"))
        .arg("serve")
        .args(["--config", config.to_str().unwrap()])
        .args(["--data-dir", data_dir.to_str().unwrap()])
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--allow-cidr", "127.0.0.1/32"])
        .args(["--retry-schedule", "200ms,200ms,200ms"])
        .args(["--require-auth-and-security", "false"])
        .args(extra)
        .env("WASMHOOK_ADMIN_TOKEN", ADMIN)
        .env("RUST_LOG", "warn")
        .env_remove("WASMHOOK_CONFIG")
        .env_remove("WASMHOOK_STORE")
        .env_remove("WASMHOOK_LEASE_TTL")
        .env_remove("WASMHOOK_MASTER_KEY")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start the wasmhook binary");
    EngineProcess {
        child,
        api: Api::new(format!("http://127.0.0.1:{port}"), ADMIN),
        port,
        data_dir: data_dir.to_path_buf(),
    }
}

/// A port free on 127.0.0.1 right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// GET `path`, `Err` instead of a panic when the API is unreachable.
pub async fn try_get(api: &Api, path: &str) -> Result<(u16, serde_json::Value), ()> {
    let api = api.clone();
    let path = path.to_string();
    tokio::spawn(async move { api.get(&path).await })
        .await
        .map_err(|_| ())
}
