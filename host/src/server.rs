//! A running node: the [`Engine`] with the admin API served in front of it. Wires the two and
//! holds no business logic: [`start`] starts both, [`Server::shutdown`] stops both gracefully.

use std::net::SocketAddr;
use std::sync::Arc;

use crate::config::Config;
use crate::engine::{Engine, StartError};

/// A running engine with its API server.
pub struct Server {
    /// The engine.
    pub engine: Arc<Engine>,
    /// Where the API listens.
    pub addr: SocketAddr,
    shutdown: tokio::sync::watch::Sender<bool>,
    server_task: tokio::task::JoinHandle<()>,
}

/// Starts an engine and serves the API on `config.listen`.
pub async fn start(config: Config) -> Result<Server, StartError> {
    let listen = config.listen;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|source| StartError::Io {
            context: format!("listening on {listen}"),
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| StartError::Io {
        context: "reading the listen address".into(),
        source,
    })?;
    let engine = Engine::start(config).await?;
    let router = crate::api::router(engine.clone()).merge(crate::console::router(engine.clone()));
    let (shutdown, mut shutdown_rx) = tokio::sync::watch::channel(false);
    let limits = crate::listener::ListenerLimits::from_config(&engine.config);
    let server_task = tokio::spawn(crate::listener::serve(
        listener,
        router,
        limits,
        async move {
            let _ = shutdown_rx.wait_for(|stop| *stop).await;
        },
    ));
    tracing::info!(%addr, store = engine.store.kind(), "wasmhook is running");
    Ok(Server {
        engine,
        addr,
        shutdown,
        server_task,
    })
}

impl Server {
    /// Base URL of the API (`http://127.0.0.1:8080`).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops accepting requests and new attempts, waits (bounded) for attempts in flight,
    /// commits their records and releases this node's leases.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        let _ = self.server_task.await;
        self.engine.shutdown().await;
    }
}
