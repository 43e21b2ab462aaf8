//! Starts the engine and the configured listeners, and shuts them down gracefully.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::Config;
use crate::engine::Engine;
use crate::error::{Error, Result};

/// A running tidemark: engine plus listeners.
pub struct Server {
    /// Bound REST address, when `[listen] http` is set.
    pub http_addr: Option<SocketAddr>,
    /// Bound PostgreSQL wire protocol address, when `[listen] pg` is set.
    pub pg_addr: Option<SocketAddr>,
    /// Bound Arrow Flight SQL address, when `[listen] flight` is set.
    pub flight_addr: Option<SocketAddr>,
    /// The engine the listeners serve.
    pub engine: Arc<Engine>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Server {
    /// Starts the engine and every configured listener on the current runtime.
    pub async fn start(config: Arc<Config>) -> Result<Server> {
        let (tx, rx) = watch::channel(false);
        let engine = Engine::start(config.clone(), rx.clone()).await?;
        let mut tasks = Vec::new();
        let mut http_addr = None;
        if let Some(addr) = &config.listen.http {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| Error::Config(format!("cannot listen on {addr}: {e}")))?;
            http_addr = Some(listener.local_addr().map_err(|e| Error::internal(e.to_string()))?);
            let mut app = crate::frontend::http::router(engine.clone());
            if config.console.enabled {
                app = app.merge(crate::frontend::console::router());
            }
            tasks.push(serve_http(listener, app, (config.tls.as_ref(), &engine), rx.clone())?);
            tracing::info!(addr = %http_addr.unwrap_or_else(|| ([0, 0, 0, 0], 0).into()), "REST listening");
        }
        let mut pg_addr = None;
        if let Some(addr) = &config.listen.pg {
            let (bound, task) =
                crate::frontend::pgwire::serve(&config, addr, engine.clone(), rx.clone()).await?;
            tracing::info!(addr = %bound, "PostgreSQL wire protocol listening");
            pg_addr = Some(bound);
            tasks.push(task);
        }
        let mut flight_addr = None;
        if let Some(addr) = &config.listen.flight {
            let (bound, task) =
                crate::frontend::flight::serve(&config, addr, engine.clone(), rx.clone()).await?;
            tracing::info!(addr = %bound, "Arrow Flight SQL listening");
            flight_addr = Some(bound);
            tasks.push(task);
        }
        Ok(Server { http_addr, pg_addr, flight_addr, engine, shutdown: tx, tasks })
    }

    /// Stops accepting, lets in-flight statements finish within `limits.shutdown_deadline`,
    /// then cancels the rest (their warehouse queries too) and waits for the listeners.
    pub async fn shutdown(self) {
        let deadline = self.engine.config().limits.shutdown_deadline.get();
        let _ = self.shutdown.send(true);
        let stopped = self.engine.drain(deadline).await;
        if stopped > 0 {
            tracing::warn!(stopped, "cancelled in-flight statements at the shutdown deadline");
        }
        for t in self.tasks {
            if tokio::time::timeout(Duration::from_secs(5), t).await.is_err() {
                tracing::warn!("a listener did not stop within 5 s");
            }
        }
    }

    /// Serves until SIGINT or SIGTERM, then shuts down gracefully.
    pub async fn run_until_signal(self) {
        wait_for_signal().await;
        tracing::info!("shutting down");
        self.shutdown().await;
    }
}

/// Serves the REST router on `listener` (over TLS when configured) until `stop` flips.
fn serve_http(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    (tls, engine): (Option<&crate::config::TlsConfig>, &Arc<Engine>),
    mut stop: watch::Receiver<bool>,
) -> Result<JoinHandle<()>> {
    use crate::frontend::counted::CountedListener;
    let stopped = async move {
        let _ = stop.wait_for(|v| *v).await;
    };
    let Some(tls) = tls else {
        let listener = CountedListener::new(listener, engine.clone(), "rest");
        return Ok(tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(stopped).await {
                tracing::error!(error = %e, "HTTP listener failed");
            }
        }));
    };
    let acceptor = crate::frontend::auth::tls_acceptor_for(&tls.cert, &tls.key, b"http/1.1")?;
    let listener = crate::frontend::tls::TlsListener::new(listener, acceptor)
        .map_err(|e| Error::internal(e.to_string()))?;
    let listener = CountedListener::new(listener, engine.clone(), "rest");
    Ok(tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(stopped).await {
            tracing::error!(error = %e, "HTTPS listener failed");
        }
    }))
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn wait_for_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
