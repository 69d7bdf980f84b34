//! The subcommands behind the CLI: `run`, `check`, `demo` and `sim`.

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use anyhow::Context;
use obf_sim::{SimOptions, Simulator};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config::{self, Config, DEFAULT_LISTEN};
use crate::controller::{self, ConfigSource, Controller, WebGuards};
use crate::metrics::Metrics;
use crate::server::{self, ServerState};
use crate::shard::Shard;

/// `check`: prints every problem, one line each. Returns whether the config is valid.
///
/// Synchronous (there is no runtime): it cannot hang anyway, since every file is opened
/// without blocking, must be a regular file and is read up to a cap (`config::file`).
pub fn check(path: &Path) -> bool {
    match config::load(path) {
        Ok(config) => {
            for warning in &config.warnings {
                println!("warning: {warning}");
            }
            println!(
                "{}: ok ({})",
                path.display(),
                count(config.orgs.len(), "org")
            );
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
    crate::web::fds::raise_nofile_limit();
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
            for problem in &error.problems {
                tracing::error!("{problem}");
            }
            anyhow::anyhow!("invalid configuration: {} problem(s)", error.problems.len())
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
    let controller = Controller::start(source, shard, metrics, &config, web.clone()).await?;
    let ready = Arc::new(AtomicBool::new(true));
    let state = ServerState {
        controller: controller.clone(),
        ready: ready.clone(),
    };
    let limits = crate::web::Limits::for_this_process();
    tracing::info!(
        address = %listener.local_addr()?,
        orgs = config.orgs.len(),
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
    let router = crate::web::protect(server::router(state), Some(web.auth.clone()));
    let tls = web.tls.clone().map(crate::web::TlsHandshaker::new);
    let server = tokio::spawn(crate::web::serve(listener, tls, router, limits, stopped));
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

/// Output of the `probe` command.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ProbeFormat {
    Text,
    Json,
}

/// `probe`: probes every org (or one) now, prints one line per org (or JSON) and returns whether
/// all succeeded. Respects the token rules: orgs sharing a credential share one token.
pub async fn probe(
    path: &Path,
    org: Option<&str>,
    format: ProbeFormat,
    shard: Option<Shard>,
) -> anyhow::Result<bool> {
    let source = ConfigSource::File(path.to_path_buf());
    let mut config = first_config(&source, shard).await?;
    if let Some(name) = org {
        config.orgs.retain(|o| o.name.as_str() == name);
        if config.orgs.is_empty() {
            anyhow::bail!(
                "unknown org {name:?}: not in {} (or not in this shard)",
                path.display()
            );
        }
    }
    let metrics = Metrics::new();
    let orgs = crate::agent::build_orgs(&config, &metrics).await?;
    let slots = Arc::new(tokio::sync::Semaphore::new(
        crate::agent::MAX_PROBES_IN_FLIGHT,
    ));
    let mut tasks = tokio::task::JoinSet::new();
    for (index, org) in orgs.into_iter().enumerate() {
        let slots = slots.clone();
        tasks.spawn(async move {
            let _slot = slots.acquire().await;
            (index, org.probe().await)
        });
    }
    let mut reports = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        reports.push(joined?);
    }
    reports.sort_by_key(|(index, _)| *index);
    let reports: Vec<_> = reports.into_iter().map(|(_, report)| report).collect();
    match format {
        ProbeFormat::Json => println!("{}", serde_json::to_string_pretty(&reports)?),
        ProbeFormat::Text => print!("{}", probe_table(&reports)),
    }
    Ok(reports.iter().all(|r| r.success))
}

/// `n` and `noun`, pluralised with an `s` ("1 org", "2 orgs").
fn count(n: usize, noun: &str) -> String {
    match n {
        1 => format!("1 {noun}"),
        n => format!("{n} {noun}s"),
    }
}

const PROBE_COLUMNS: [&str; 8] = [
    "ORG",
    "RESULT",
    "REASON",
    "STATUS",
    "PING_MS",
    "TOKEN_MS",
    "TOKEN_EXPIRES",
    "SUBSCRIPTION_ENDS",
];

/// The `probe` table: a header and one line per report, each column as wide as its widest cell
/// (a long org name or a `no_token (token: ...)` reason shifts the columns rather than breaking
/// them). Numbers are right-aligned.
fn probe_table(reports: &[crate::probe::ProbeReport]) -> String {
    let rows: Vec<[String; 8]> = std::iter::once(PROBE_COLUMNS.map(str::to_owned))
        .chain(reports.iter().map(probe_cells))
        .collect();
    let mut widths = [0; 8];
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in &rows {
        let cells: Vec<String> = row
            .iter()
            .zip(widths)
            .enumerate()
            .map(|(column, (cell, width))| match column {
                3..=5 => format!("{cell:>width$}"),
                _ => format!("{cell:<width$}"),
            })
            .collect();
        out.push_str(cells.join(" ").trim_end());
        out.push('\n');
    }
    out
}

/// The reason column: `no_token` alone hides why there is no token (the simulator or OBF is
/// unreachable, the request was rate-limited, the credentials were refused), so the token
/// request's own failure is shown beside it; `not sent` when this probe sent none (spacing,
/// backoff, or another org of the same credential asked first: see `--format json`'s `detail`).
fn probe_reason(report: &crate::probe::ProbeReport) -> String {
    use crate::reason::Reason;
    match (report.reason, report.token_failure) {
        (None, _) => "-".to_string(),
        (Some(Reason::NoToken), Some(token)) => format!("no_token (token: {token})"),
        (Some(Reason::NoToken), None) => "no_token (token: not sent)".to_string(),
        (Some(reason), _) => reason.as_str().to_string(),
    }
}

fn probe_cells(report: &crate::probe::ProbeReport) -> [String; 8] {
    let ms = |s: Option<f64>| s.map_or("-".to_string(), |s| format!("{:.1}", s * 1000.0));
    let time = |t: Option<f64>| {
        t.map_or("-".to_string(), |t| {
            // `t` may be a server's paid_until: bounded to what RFC 3339 can print (year 9999).
            let secs = std::time::Duration::try_from_secs_f64(t.clamp(0.0, 253_402_300_799.0))
                .unwrap_or_default();
            let at = crate::clock::wall_after(std::time::UNIX_EPOCH, secs);
            humantime::format_rfc3339_seconds(at).to_string()
        })
    };
    [
        report.org.clone(),
        if report.success { "ok" } else { "FAILED" }.to_string(),
        probe_reason(report),
        report.status.map_or("-".to_string(), |s| s.to_string()),
        ms(report.ping_seconds),
        ms(report.token_seconds),
        time(report.token_expires_at),
        time(report.subscription_ends.map(|s| s as f64)),
    ]
}

/// `healthcheck`: GET the URL; healthy on a 2xx answer within 5 s.
pub async fn healthcheck(url: &str, insecure: bool) -> bool {
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(5))
        .tls_danger_accept_invalid_certs(insecure)
        .build();
    let result = match client {
        Ok(client) => client.get(url).send().await,
        Err(error) => {
            eprintln!("healthcheck: {error}");
            return false;
        }
    };
    match result {
        Ok(response) if response.status().is_success() => true,
        Ok(response) => {
            eprintln!("healthcheck: {url} answered {}", response.status());
            false
        }
        Err(error) => {
            eprintln!("healthcheck: {url}: {error}");
            false
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::{ProbeReport, TokenUse};
    use crate::reason::Reason;

    fn report(org: &str, reason: Option<Reason>, token_failure: Option<Reason>) -> ProbeReport {
        ProbeReport {
            org: org.to_string(),
            success: reason.is_none(),
            reason,
            status: reason.is_none().then_some(200),
            ping_seconds: reason.is_none().then_some(0.0123),
            token: match token_failure {
                Some(_) => TokenUse::Failed,
                None => TokenUse::Fetched,
            },
            token_seconds: Some(0.002),
            token_failure,
            token_expires_at: None,
            credentials_valid: None,
            credentials_last_verified: None,
            subscription_ends: None,
            finished_at: 0.0,
            detail: None,
        }
    }

    #[test]
    fn org_counts_are_singular_or_plural() {
        assert_eq!(count(0, "org"), "0 orgs");
        assert_eq!(count(1, "org"), "1 org");
        assert_eq!(count(2, "org"), "2 orgs");
    }

    #[test]
    fn a_missing_token_shows_why_the_token_request_failed() {
        let down = report("down", Some(Reason::NoToken), Some(Reason::Connect));
        assert_eq!(probe_reason(&down), "no_token (token: connect)");
        let limited = report("limited", Some(Reason::NoToken), Some(Reason::RateLimited));
        assert_eq!(probe_reason(&limited), "no_token (token: rate_limited)");
        let mut waiting = report("waiting", Some(Reason::NoToken), None);
        waiting.token = TokenUse::None;
        assert_eq!(probe_reason(&waiting), "no_token (token: not sent)");
        let refused = report("refused", Some(Reason::Forbidden), None);
        assert_eq!(probe_reason(&refused), "forbidden");
        assert_eq!(probe_reason(&report("fine", None, None)), "-");
    }

    #[test]
    fn the_probe_table_widens_columns_to_fit_and_keeps_them_aligned() {
        let table = probe_table(&[
            report("a-rather-long-organisation-name", None, None),
            report("down", Some(Reason::NoToken), Some(Reason::InvalidResponse)),
        ]);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 3, "{table}");
        assert!(lines[0].starts_with("ORG "), "{table}");
        // Every column starts at the same offset on every line.
        let start = |line: &str, cell: &str| line.find(cell).expect(cell);
        let reason_at = start(lines[0], "REASON");
        assert_eq!(
            start(lines[2], "no_token (token: invalid_response)"),
            reason_at
        );
        assert!(lines[1][reason_at..].starts_with("- "), "{table}");
        let status_end = start(lines[0], "STATUS") + "STATUS".len();
        assert_eq!(start(lines[1], "200") + 3, status_end, "{table}");
        assert!(lines[1].contains(" 12.3 "), "{table}");
    }
}
