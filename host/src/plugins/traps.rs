//! Turning a failed call (a trap, or a host-side error while running the guest) into a clear
//! message.

use std::time::Duration;

use wasmtime::Trap;

use super::engine::RuntimeLimits;
use super::error::chain;
use super::host_imports::StoreState;

/// Longest stderr excerpt put into an error message.
const MAX_STDERR_IN_ERROR: usize = 1024;

/// Describes why a call failed, for a `PluginError::Trap { reason }`.
pub(crate) fn describe(
    err: &wasmtime::Error,
    state: &StoreState,
    limits: &RuntimeLimits,
) -> String {
    let base = if state.limiter.memory_limit_hit {
        format!(
            "exceeded its memory limit of {}",
            human_bytes(limits.max_memory_bytes)
        )
    } else {
        match err.downcast_ref::<Trap>() {
            Some(Trap::Interrupt) => format!(
                "exceeded its CPU deadline of {}",
                human_duration(limits.call_deadline)
            ),
            Some(Trap::StackOverflow) => "overflowed its stack (call stack exhausted)".to_string(),
            Some(Trap::UnreachableCodeReached) => {
                "panicked or aborted (wasm `unreachable` instruction executed)".to_string()
            }
            Some(Trap::MemoryOutOfBounds) => "out of bounds memory access".to_string(),
            Some(other) => other.to_string(),
            None => chain(err),
        }
    };
    match stderr_excerpt(&state.stderr.contents()) {
        Some(stderr) => format!("{base}; stderr: {stderr}"),
        None => base,
    }
}

/// Whether the error is a WebAssembly trap (as opposed to a host-side failure).
pub(crate) fn is_trap(err: &wasmtime::Error, state: &StoreState) -> bool {
    state.limiter.memory_limit_hit || err.downcast_ref::<Trap>().is_some()
}

/// The guest's stderr on one line, without Rust's backtrace hint, cut to a sane length.
pub(crate) fn stderr_excerpt(bytes: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(bytes);
    let joined = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("note: run with `RUST_BACKTRACE"))
        .collect::<Vec<_>>()
        .join(" ");
    if joined.is_empty() {
        return None;
    }
    Some(super::host_imports::truncate(&joined, MAX_STDERR_IN_ERROR).to_string())
}

/// `64 MiB`, `512 KiB`, or `1000 bytes`.
pub(crate) fn human_bytes(n: usize) -> String {
    if n >= 1 << 20 && n.is_multiple_of(1 << 20) {
        format!("{} MiB", n >> 20)
    } else if n >= 1 << 10 && n.is_multiple_of(1 << 10) {
        format!("{} KiB", n >> 10)
    } else {
        format!("{n} bytes")
    }
}

/// `2s`, `1500ms`.
pub(crate) fn human_duration(d: Duration) -> String {
    if d.subsec_nanos() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(human_bytes(64 << 20), "64 MiB");
        assert_eq!(human_bytes(4096), "4 KiB");
        assert_eq!(human_bytes(1000), "1000 bytes");
        assert_eq!(human_duration(Duration::from_secs(2)), "2s");
        assert_eq!(human_duration(Duration::from_millis(250)), "250ms");
        let panic = b"\nthread '<unnamed>' panicked at src/lib.rs:9:5:\nboom\nnote: run with `RUST_BACKTRACE=1` environment variable to display a backtrace\n";
        assert_eq!(
            stderr_excerpt(panic).as_deref(),
            Some("thread '<unnamed>' panicked at src/lib.rs:9:5: boom")
        );
        assert_eq!(stderr_excerpt(b"\n\n"), None);
    }
}
