//! Watching the plugin directory: notify + notify-debouncer-full (200 ms), with every batch of
//! events fed to ONE loader task that rescans the directory (so loads and swaps never race).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use notify::event::ModifyKind;
use notify::{EventKind, RecursiveMode};
use notify_debouncer_full::{DebounceEventResult, Debouncer, RecommendedCache, new_debouncer};
use tokio::sync::mpsc;

use super::error::LoadError;
use super::registry::{PluginRegistry, directory_plugin_name};

/// Debounce window: an atomic rename or a copy produces several events; one rescan follows.
const DEBOUNCE: Duration = Duration::from_millis(200);

/// Stops watching (and the loader task) when dropped. Loaded plugins stay loaded.
pub struct WatchGuard {
    _debouncer: Debouncer<notify::RecommendedWatcher, RecommendedCache>,
    task: tokio::task::JoinHandle<()>,
    dir: PathBuf,
}

impl std::fmt::Debug for WatchGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WatchGuard")
            .field("dir", &self.dir)
            .finish()
    }
}

impl Drop for WatchGuard {
    fn drop(&mut self) {
        self.task.abort();
        tracing::info!(dir = %self.dir.display(), "stopped watching the plugin directory");
    }
}

/// Whether an event may change which plugin files exist or what they contain.
fn is_content_change(kind: &EventKind) -> bool {
    match kind {
        EventKind::Access(_) => false,
        EventKind::Modify(ModifyKind::Metadata(_)) => false,
        EventKind::Create(_) | EventKind::Modify(_) | EventKind::Remove(_) => true,
        EventKind::Any | EventKind::Other => true,
    }
}

impl PluginRegistry {
    /// Loads every `*.wasm` in `dir` now, then watches it:
    ///
    /// - `x.wasm` added → plugin `x` (`x_y.wasm` → `x-y`); a directory plugin with a built-in's
    ///   name replaces the built-in.
    /// - file replaced (operators publish by atomic rename) → the new version is swapped in
    ///   after it loads; if it fails, the last good version stays live and the status shows
    ///   `failed` with `last_error`.
    /// - file removed → the plugin is gone (`resolve` says "its file was removed"), or the
    ///   built-in of that name serves again.
    ///
    /// Hidden files (`.x.wasm.tmp`) are ignored. Returns a guard that stops watching on drop.
    pub async fn watch_directory(self: &Arc<Self>, dir: PathBuf) -> Result<WatchGuard, LoadError> {
        let watch_err = |reason: String| LoadError::Watch {
            path: dir.display().to_string(),
            reason,
        };
        if !dir.is_dir() {
            return Err(watch_err("not a directory".into()));
        }
        // Canonical path, so that slots' `path.parent()` compare equal to it.
        let dir = dir.canonicalize().map_err(|e| watch_err(e.to_string()))?;

        // Start watching before the initial scan so that nothing published meanwhile is missed
        // (the first batch then just finds everything up to date).
        let (tx, mut rx) = mpsc::unbounded_channel::<()>();
        let mut debouncer = new_debouncer(DEBOUNCE, None, move |res: DebounceEventResult| {
            match res {
                Ok(events) => {
                    // Our own rescans open and read the files: opens/reads (Access) and
                    // metadata changes must not trigger another rescan (that would loop).
                    let relevant = events.iter().any(|ev| {
                        is_content_change(&ev.kind)
                            && ev.paths.iter().any(|p| directory_plugin_name(p).is_some())
                    });
                    if relevant {
                        let _ = tx.send(());
                    }
                }
                Err(errors) => {
                    for e in errors {
                        tracing::warn!(error = %e, "plugin directory watch error");
                    }
                    // Something may have been missed: rescan.
                    let _ = tx.send(());
                }
            }
        })
        .map_err(|e| watch_err(e.to_string()))?;
        debouncer
            .watch(&dir, RecursiveMode::NonRecursive)
            .map_err(|e| watch_err(e.to_string()))?;

        self.rescan_directory(&dir).await?;
        tracing::info!(dir = %dir.display(), "watching the plugin directory");

        let registry = Arc::clone(self);
        let task_dir = dir.clone();
        let task = tokio::spawn(async move {
            while rx.recv().await.is_some() {
                // Coalesce whatever else is queued: one rescan covers it.
                while rx.try_recv().is_ok() {}
                if let Err(e) = registry.rescan_directory(&task_dir).await {
                    tracing::warn!(dir = %task_dir.display(), error = %e, "plugin directory rescan failed");
                }
                registry.watch_generation.send_modify(|g| *g += 1);
            }
        });
        Ok(WatchGuard {
            _debouncer: debouncer,
            task,
            dir,
        })
    }
}
