//! The `wasmhook` binary.

use std::process::ExitCode;

use clap::Parser;
use wasmhook::cli::{Cli, Command, PluginCommand};

/// mimalloc instead of glibc's malloc: the engine allocates and frees small buffers from many
/// threads (requests, envelopes, statements); glibc's malloc/free were ~15 % of the engine's CPU
/// in the end-to-end benchmark.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
                tracing_subscriber::EnvFilter::new(match cli.command {
                    // The demo prints a table; the engine's own log would drown it.
                    Command::Demo(_) => "warn",
                    _ => "info,wasmtime=warn,cranelift=warn",
                })
            }),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Serve(args) => serve(args).await,
            Command::Demo(args) => wasmhook::demo::run(args).await.map_err(|e| e.to_string()),
            Command::Plugin(PluginCommand::Check { file }) => {
                wasmhook::cli::check_plugin(&file).await
            }
            Command::Prune(args) => wasmhook::cli::prune(args).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(args: wasmhook::cli::ServeArgs) -> Result<(), String> {
    let config = args.into_config().map_err(|e| e.to_string())?;
    let server = wasmhook::server::start(config)
        .await
        .map_err(|e| e.to_string())?;
    eprintln!(
        "wasmhook listening on {} (data in {})",
        server.url(),
        server.engine.config.data_dir.display()
    );
    shutdown_signal().await;
    tracing::info!("shutting down: finishing attempts in flight");
    server.shutdown().await;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
