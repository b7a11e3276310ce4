//! Running tidepool: bind the configured listeners, serve until SIGINT/SIGTERM, then drain —
//! stop accepting, let sessions finish their transactions (up to `shutdown_timeout`), close pools,
//! leave the `[cluster]` (its membership and leases removed from Redis, best effort).
//! SIGHUP re-reads the config file ([`crate::reload`]).

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
    let s = &app.config().server;
    tokio::spawn(crate::stats::period::run(app.clone()));
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
        let grace = app.config().server.shutdown_timeout;
        if tokio::time::timeout(grace, app.tracker.wait()).await.is_err() {
            tracing::warn!(remaining = app.tracker.len(), "shutdown_timeout reached; closing remaining sessions");
        }
        for db in app.databases().iter() {
            db.close_pools();
        }
        // Leave the cluster: the other nodes get this node's share of each budget at once
        // (bounded by `redis_timeout`; an unreachable Redis does not hold the stop up).
        if let Some(c) = &app.cluster {
            c.leave().await;
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

/// Reloads the config on every SIGHUP until `app` stops (Unix only).
pub fn reload_on_sighup(app: &Arc<App>) -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
        let app = app.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = app.stopped.cancelled() => return,
                    r = hup.recv() => if r.is_none() { return },
                }
                tracing::info!("SIGHUP: reloading the configuration");
                // The outcome is logged by `reload`; a rejected file leaves everything as it was.
                let _ = crate::reload::reload(&app).await;
            }
        });
    }
    #[cfg(not(unix))]
    let _ = app;
    Ok(())
}

/// `tidepool serve`: run until a signal, then drain. With `path` (the file `config` was read
/// from), SIGHUP and the console's RELOAD re-read it.
pub async fn serve(config: Config, path: Option<std::path::PathBuf>) -> anyhow::Result<()> {
    let running = start(config).await?;
    if let Some(p) = path {
        *running.app.config_path.lock() = Some(p);
        reload_on_sighup(&running.app)?;
    }
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
