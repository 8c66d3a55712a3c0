//! What the run was asked to do (environment), where it writes, and the progress lines.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

/// Progress on stderr, prefixed with the seconds since the bench started.
macro_rules! progress {
    ($s:expr, $($arg:tt)*) => {
        eprintln!("[{:>7.1}s] {}", $s.started.elapsed().as_secs_f64(), format!($($arg)*))
    };
}

pub struct Settings {
    pub events: u64,
    pub quick: bool,
    pub only: Option<Vec<String>>,
    pub keep: bool,
    pub out_dir: PathBuf,
    pub cache_dir: PathBuf,
    pub clock_ticks: f64,
    pub started: Instant,
}

impl Settings {
    pub fn from_env() -> Self {
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
            out_dir,
            cache_dir,
            clock_ticks,
            started: Instant::now(),
        }
    }

    pub fn wants(&self, section: &str) -> bool {
        self.only
            .as_ref()
            .is_none_or(|only| only.iter().any(|s| s == section))
    }

    pub fn scaled(&self, full: u64, quick: u64) -> u64 {
        if self.quick { quick } else { full }
    }

    /// How long one end-to-end run may take before it counts as timed out.
    pub fn run_deadline(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.scaled(300, 90))
    }
}
