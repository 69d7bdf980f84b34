//! Builds and runs the agent: the first config load, the HTTP server with its protection, the
//! controller and its schedules, SIGHUP reloads, the shutdown signal and the process settings
//! (open-file limit, malloc arenas). `run` and `demo` start the agent through here; nothing below
//! (`fleet`, `http`, ...) starts anything on its own.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config::shard::Shard;
use crate::config::{Config, DEFAULT_LISTEN};
use crate::fleet::controller::{self, ConfigSource, Controller};
use crate::http::web::WebGuards;
use crate::http::{server, ServerState};
use crate::metrics::Metrics;

/// `run`: the agent, until `shutdown` completes.
pub async fn run(
    source: ConfigSource,
    shard: Option<Shard>,
    listen: Option<SocketAddr>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let config = first_config(&source, shard).await?;
    let listen = listen.or(config.listen).unwrap_or(DEFAULT_LISTEN);
    // Before the cap on inbound connections is derived from the limit.
    crate::http::web::fds::raise_nofile_limit();
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    serve_source(config, source, shard, listener, shutdown).await
}

/// Loads the first config (off the async workers, with a time limit), logging every problem and
/// warning.
pub async fn first_config(source: &ConfigSource, shard: Option<Shard>) -> anyhow::Result<Config> {
    let config = controller::load_off_worker(source, shard)
        .await
        .map_err(|error| {
            let problems = error.lines();
            for problem in &problems {
                tracing::error!("{problem}");
            }
            anyhow::anyhow!("invalid configuration: {} problem(s)", problems.len())
        })?;
    for warning in &config.warnings {
        tracing::warn!("{warning}");
    }
    if let Some(shard) = shard {
        tracing::info!(%shard, orgs = config.orgs.len(), "sharding: this process handles its share of the orgs");
    }
    Ok(config)
}

/// The agent until `shutdown` completes; reloads from `source` on SIGHUP and `POST /-/reload`.
pub async fn serve_source(
    config: Config,
    source: ConfigSource,
    shard: Option<Shard>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let web = WebGuards::from_config(&config)?;
    let metrics = Arc::new(Metrics::new());
    let orgs = config.orgs.len();
    // Moved: each org keeps its own settings; a reload reads the source anew.
    let controller = Controller::start(source, shard, metrics, config, web.clone()).await?;
    let ready = Arc::new(AtomicBool::new(true));
    let state = ServerState {
        controller: controller.clone(),
        ready: ready.clone(),
    };
    let limits = crate::http::web::Limits::for_this_process();
    tracing::info!(
        address = %listener.local_addr()?,
        orgs,
        tls = web.tls.is_some(),
        max_connections = limits.max_connections,
        "obf-exporter running; metrics at /metrics"
    );
    let reloads = tokio::spawn(reload_on_sighup(controller.clone()));

    // Stop order: stop scheduling, let runs in progress finish, then close the server.
    let (server_stop, mut server_stopped) = watch::channel(false);
    let stopped = async move {
        let _ = server_stopped.wait_for(|stop| *stop).await;
    };
    let router = crate::http::web::protect(server::router(state), Some(web.auth.clone()));
    let tls = web.tls.clone().map(crate::http::web::TlsHandshaker::new);
    let server = tokio::spawn(crate::http::web::serve(
        listener, tls, router, limits, stopped,
    ));
    shutdown.await;
    tracing::info!("shutting down: letting runs in progress finish");
    ready.store(false, std::sync::atomic::Ordering::Release);
    reloads.abort();
    controller.stop().await;
    let _ = server_stop.send(true);
    server.await?;
    tracing::info!("stopped");
    Ok(())
}

/// Reloads the config on every SIGHUP.
async fn reload_on_sighup(controller: Arc<Controller>) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut hangups = match signal(SignalKind::hangup()) {
            Ok(hangups) => hangups,
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGHUP; reload with POST /-/reload");
                return;
            }
        };
        while hangups.recv().await.is_some() {
            tracing::info!("SIGHUP: reloading the configuration");
            let _ = controller.reload().await;
        }
    }
    #[cfg(not(unix))]
    drop(controller);
}

/// Completes on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
}

/// Caps glibc's malloc arenas. glibc gives each thread that allocates its own arena (up to 8 per
/// core), and each keeps freed memory; DNS lookups and rendering run on short-lived blocking
/// threads, so the arenas multiply resident memory for no speed gain in a mostly idle agent.
pub fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator tunable; called before other threads allocate.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}
