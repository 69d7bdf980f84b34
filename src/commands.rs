//! The subcommands behind the CLI: `run`, `check`, `demo` and `sim`.

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::agent::{build_orgs, Agent};
use crate::config::{self, Config, DEFAULT_LISTEN};
use crate::metrics::Metrics;
use crate::server::{self, ServerState};
use crate::sim::{SimOptions, Simulator};

/// `check`: prints every problem, one line each. Returns whether the config is valid.
pub fn check(path: &Path) -> bool {
    match config::load(path) {
        Ok(config) => {
            for warning in &config.warnings {
                println!("warning: {warning}");
            }
            println!("{}: ok ({} orgs)", path.display(), config.orgs.len());
            true
        }
        Err(error) => {
            for problem in &error.problems {
                println!("{problem}");
            }
            false
        }
    }
}

/// Loads the config or reports every problem, one line each.
pub fn load_config(path: &Path) -> anyhow::Result<Config> {
    let config = config::load(path).map_err(|error| {
        for problem in &error.problems {
            tracing::error!("{problem}");
        }
        anyhow::anyhow!("invalid configuration: {} problem(s)", error.problems.len())
    })?;
    for warning in &config.warnings {
        tracing::warn!("{warning}");
    }
    Ok(config)
}

/// `run`: the agent, until `shutdown` completes.
pub async fn run(
    config: Config,
    listen: Option<SocketAddr>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let listen = listen.or(config.listen).unwrap_or(DEFAULT_LISTEN);
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    serve(config, listener, shutdown).await
}

/// The agent on an already bound listener (tests bind port 0), until `shutdown` completes.
pub async fn serve(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    if config.web.is_some() {
        anyhow::bail!("[exporter.web] (TLS and basic auth) is not supported by this version yet");
    }
    let metrics = Arc::new(Metrics::new());
    let orgs = build_orgs(&config, &metrics)?;
    metrics.record_config_load(true);
    let ready = Arc::new(AtomicBool::new(false));
    let state = ServerState {
        metrics: metrics.clone(),
        ready: ready.clone(),
    };
    let agent = Agent::start(metrics, orgs);
    ready.store(true, Ordering::Release);
    tracing::info!(
        address = %listener.local_addr()?,
        orgs = config.orgs.len(),
        "obf-exporter running; metrics at /metrics"
    );

    // Stop order: stop scheduling, let runs in progress finish, then close the server.
    let (server_stop, mut server_stopped) = watch::channel(false);
    let server = tokio::spawn(server::serve(listener, server::router(state), async move {
        let _ = server_stopped.wait_for(|stop| *stop).await;
    }));
    shutdown.await;
    tracing::info!("shutting down: letting runs in progress finish");
    agent.stop().await;
    let _ = server_stop.send(true);
    server.await??;
    tracing::info!("stopped");
    Ok(())
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

/// `sim`: the simulator alone, with `orgs` generated clients plus the demo's clients.
pub async fn sim(listen: SocketAddr, orgs: usize) -> anyhow::Result<()> {
    let simulator = Simulator::with_generated_clients(SimOptions::default(), orgs);
    crate::demo::add_demo_clients(&simulator);
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    tracing::info!(
        address = %listener.local_addr()?,
        generated_clients = orgs,
        "OBF simulator running; generated clients are sim00000.. with secrets secret00000..; control API under /sim/"
    );
    tokio::select! {
        result = simulator.serve(listener) => result?,
        _ = shutdown_signal() => {},
    }
    Ok(())
}
