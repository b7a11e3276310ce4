//! Running tidepool: bind the configured listeners, serve until SIGINT/SIGTERM, then drain —
//! stop accepting, let sessions finish their transactions (up to `shutdown_timeout`), close pools.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;

use crate::app::App;
use crate::config::Config;

/// Addresses actually bound (useful when a config asks for port 0).
#[derive(Debug, Clone, Default)]
pub struct Bound {
    pub pg: Option<SocketAddr>,
    pub http: Option<SocketAddr>,
    pub admin: Option<SocketAddr>,
}

/// A started server: its app and bound addresses; `stop` drains it.
pub struct Running {
    pub app: Arc<App>,
    pub bound: Bound,
}

/// Binds every configured listener and starts serving in background tasks.
pub async fn start(config: Config) -> anyhow::Result<Running> {
    let app = App::new(config)?;
    let s = &app.config.server;
    let mut bound = Bound::default();
    if let Some(addr) = s.pg_listen {
        let l = TcpListener::bind(addr).await.map_err(|e| anyhow::anyhow!("cannot listen on {addr} (pg_listen): {e}"))?;
        bound.pg = Some(l.local_addr()?);
        app.tracker.spawn(crate::frontend::pg::listen(app.clone(), l));
    }
    if let Some(addr) = s.admin_listen {
        let l = TcpListener::bind(addr).await.map_err(|e| anyhow::anyhow!("cannot listen on {addr} (admin_listen): {e}"))?;
        bound.admin = Some(l.local_addr()?);
        tokio::spawn(crate::admin::serve(app.clone(), l));
    }
    if let Some(addr) = s.http_listen {
        let l = TcpListener::bind(addr).await.map_err(|e| anyhow::anyhow!("cannot listen on {addr} (http_listen): {e}"))?;
        bound.http = Some(l.local_addr()?);
        app.tracker.spawn(crate::frontend::http::serve(app.clone(), l));
    }
    Ok(Running { app, bound })
}

impl Running {
    /// Stops accepting, waits for sessions to end (bounded), closes the pools.
    pub async fn stop(self) {
        let app = self.app;
        app.shutdown.cancel();
        app.tracker.close();
        let grace = app.config.server.shutdown_timeout;
        if tokio::time::timeout(grace, app.tracker.wait()).await.is_err() {
            tracing::warn!(remaining = app.tracker.len(), "shutdown_timeout reached; closing remaining sessions");
        }
        for db in app.databases.values() {
            db.close_pools();
        }
        app.stopped.cancel();
    }
}

/// Waits for SIGINT or SIGTERM.
pub async fn signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        tokio::select! {
            _ = ctrl_c => {}
            _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

/// `tidepool serve`: run until a signal, then drain.
pub async fn serve(config: Config) -> anyhow::Result<()> {
    let running = start(config).await?;
    let b = &running.bound;
    tracing::info!(pg = ?b.pg, http = ?b.http, admin = ?b.admin, "tidepool is ready");
    tokio::select! {
        () = signal() => {}
        () = running.app.stop_requested.cancelled() => tracing::info!("SHUTDOWN from the admin console"),
    }
    tracing::info!("shutting down: draining sessions");
    running.stop().await;
    Ok(())
}
