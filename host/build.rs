//! Builds the Wasm guests (built-in plugins, the tenant example, the hostile test plugins) for
//! `wasm32-wasip2` and exposes them to the host as generated constants.
//!
//! The guests live in their own cargo workspace (`plugins/Cargo.toml`), which also lists
//! `examples/tenant-token-provider` and `tests/guests/*`. They are compiled by a nested
//! `cargo build` with its **own target directory**: sharing the host's would deadlock on cargo's
//! build-directory lock. The pattern is wasmtime's `crates/test-programs/artifacts/build.rs`.
//!
//! Generated (`$OUT_DIR/guests.rs`):
//! - `BUILT_IN_PLUGINS: &[(&str, &[u8])]`: every crate under `plugins/`, embedded in the binary;
//! - `GUEST_COMPONENTS: &[(&str, &str)]`: name and path of every guest component (tests and the
//!   demo copy them into plugin directories or upload them).

use std::env;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

const TARGET: &str = "wasm32-wasip2";

fn main() {
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let root = manifest_dir
        .parent()
        .expect("host/ has a parent")
        .to_path_buf();
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("set by cargo"));

    for watched in [
        "wit",
        "plugins",
        "examples/tenant-token-provider",
        "tests/guests",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(watched).display());
    }
    println!("cargo:rerun-if-env-changed=WASMHOOK_GUEST_TARGET_DIR");

    let guest_target_dir = env::var_os("WASMHOOK_GUEST_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| host_target_dir(&out_dir).join("wasm-guests"));

    ensure_target_installed();
    build_guests(&root, &guest_target_dir);

    let artifacts = guest_target_dir.join(TARGET).join("release");
    let built_in = crate_names(&root.join("plugins"));
    let examples: Vec<String> = crate_names(&root.join("examples"))
        .into_iter()
        .filter(|name| {
            // Only the Wasm examples are guest crates (they declare the guest workspace).
            let manifest = root.join("examples").join(name).join("Cargo.toml");
            fs::read_to_string(manifest).is_ok_and(|text| text.contains("../../plugins"))
        })
        .collect();
    let mut others = crate_names(&root.join("tests/guests"));
    others.extend(examples.iter().cloned());

    let mut generated = String::new();
    embed_components(
        &mut generated,
        "Built-in plugins compiled from `plugins/`: (plugin name, component bytes).",
        "BUILT_IN_PLUGINS",
        &built_in,
        &artifacts,
    );
    embed_components(
        &mut generated,
        "Example components from `examples/` (the demo uploads them): (crate name, bytes).",
        "EXAMPLE_COMPONENTS",
        &examples,
        &artifacts,
    );
    generated.push_str(
        "/// Every guest component built from this repository: (crate name, path of the .wasm).\n\
         pub const GUEST_COMPONENTS: &[(&str, &str)] = &[\n",
    );
    for name in built_in.iter().chain(&others) {
        let path = artifact(&artifacts, name);
        writeln!(
            generated,
            "    ({name:?}, {:?}),",
            path.display().to_string()
        )
        .unwrap();
    }
    generated.push_str("];\n");
    fs::write(out_dir.join("guests.rs"), generated).expect("write guests.rs");
}

/// Appends `pub const NAME: &[(&str, &[u8])]` embedding the components of `crates`.
fn embed_components(out: &mut String, doc: &str, name: &str, crates: &[String], artifacts: &Path) {
    writeln!(out, "/// {doc}\npub const {name}: &[(&str, &[u8])] = &[").unwrap();
    for crate_name in crates {
        let path = artifact(artifacts, crate_name);
        writeln!(
            out,
            "    ({crate_name:?}, include_bytes!({:?})),",
            path.display()
        )
        .unwrap();
    }
    out.push_str("];\n\n");
}

/// `target/` of the host build, derived from `OUT_DIR` (`target/<profile>/build/<pkg>/out`).
fn host_target_dir(out_dir: &Path) -> PathBuf {
    out_dir
        .ancestors()
        .nth(4)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| out_dir.join("guest-build"))
}

/// Makes sure the Wasm target is installed for the toolchain building us.
///
/// Under rustup (which sets `RUSTUP_TOOLCHAIN` for the toolchain it runs), a missing target is
/// installed with `rustup target add`, saying so; without rustup the build stops at once with the
/// command to run, instead of a cryptic error after minutes of compiling.
fn ensure_target_installed() {
    println!("cargo:rerun-if-env-changed=RUSTUP_TOOLCHAIN");
    if target_installed() {
        return;
    }
    if let Ok(toolchain) = env::var("RUSTUP_TOOLCHAIN") {
        println!(
            "cargo:warning=installing the {TARGET} target for toolchain {toolchain} (rustup target add {TARGET} --toolchain {toolchain})"
        );
        eprintln!("wasmhook: running `rustup target add {TARGET} --toolchain {toolchain}`");
        let status = Command::new("rustup")
            .args(["target", "add", TARGET, "--toolchain", &toolchain])
            .status();
        match status {
            Ok(status) if status.success() && target_installed() => return,
            Ok(status) => panic!(
                "\n\n`rustup target add {TARGET} --toolchain {toolchain}` failed ({status}).\n\
                 wasmhook builds its plugins for {TARGET}; install it and build again.\n\n"
            ),
            Err(error) => panic!(
                "\n\ncould not run rustup to install {TARGET} ({error}).\n\
                 Run: rustup target add {TARGET} --toolchain {toolchain}\n\n"
            ),
        }
    }
    panic!(
        "\n\nwasmhook builds its plugins for {TARGET}, which is not installed for this toolchain.\n\
         Run: rustup target add {TARGET}\n\n"
    );
}

/// Whether the sysroot of the compiler building us holds the standard library for [`TARGET`].
fn target_installed() -> bool {
    let rustc = env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let sysroot = Command::new(&rustc)
        .args(["--print", "sysroot"])
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .map(|s| PathBuf::from(s.trim()));
    match sysroot {
        Some(sysroot) => sysroot.join("lib/rustlib").join(TARGET).exists(),
        // Cannot tell: let the guest build report what it finds.
        None => true,
    }
}

fn build_guests(root: &Path, target_dir: &Path) {
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.arg("build")
        .arg("--manifest-path")
        .arg(root.join("plugins/Cargo.toml"))
        .args(["--workspace", "--release", "--locked", "--target", TARGET])
        .env("CARGO_TARGET_DIR", target_dir)
        // Flags meant for the host must not leak into the guests.
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_BUILD_RUSTFLAGS")
        .env_remove("CARGO_PROFILE_RELEASE_DEBUG")
        .env_remove("CARGO_PRIMARY_PACKAGE")
        .env_remove("RUSTC_WORKSPACE_WRAPPER");
    let status = cmd
        .status()
        .expect("failed to run cargo for the Wasm guests");
    assert!(
        status.success(),
        "building the Wasm guests failed (cargo build --manifest-path plugins/Cargo.toml --target {TARGET} --release)"
    );
}

/// Names of the component (cdylib) crates in the sub-directories of `dir`, sorted.
fn crate_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                // Components are the cdylib crates; others (shared guest libraries) are not.
                .filter(|entry| {
                    fs::read_to_string(entry.path().join("Cargo.toml"))
                        .is_ok_and(|manifest| manifest.contains("cdylib"))
                })
                .filter_map(|entry| entry.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

fn artifact(artifacts: &Path, crate_name: &str) -> PathBuf {
    let path = artifacts.join(format!("{}.wasm", crate_name.replace('-', "_")));
    assert!(
        path.is_file(),
        "guest component {} was not built",
        path.display()
    );
    path
}
