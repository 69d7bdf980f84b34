//! Owns the running configuration: the first load, reloads (SIGHUP, `POST /-/reload`) and the
//! shard filter. A reload validates the whole new file first; an invalid one changes nothing.
//!
//! Every file a load reads (config, secrets, CA, TLS) is read on a blocking thread under
//! [`LOAD_TIMEOUT`], never on an async worker: a stalled file system cannot freeze the server or
//! the probes. The rest of a reload (applying the parsed config) does no file I/O.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Mutex;

use crate::config::shard::Shard;
use crate::config::{self, Config, ConfigError};
use crate::fleet::agent::{Agent, Changes, OrgList};
use crate::fleet::org::Org;
use crate::fleet::supervisor::Recovering;
use crate::metrics::Metrics;
use crate::obf::client::BuildError;

/// Where the configuration comes from.
#[derive(Clone)]
pub enum ConfigSource {
    /// A file, re-read (with its secrets) on every reload.
    File(PathBuf),
    /// A fixed config (the demo); reloads re-apply it.
    Fixed(Box<Config>),
}

/// Why a configuration was not applied (at start or on a reload). Its `Display` is every line
/// of [`ReloadError::lines`], joined by newlines. No variant has an error `source`: each one's
/// text already holds its cause, and a source would print it twice in an `{:#}` chain.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The file is not usable: every problem in it.
    #[error("{0}")]
    Config(ConfigError),
    /// The blocking thread that read the files failed (it panicked or was cancelled).
    #[error("reading the configuration failed: {0}")]
    LoadFailed(tokio::task::JoinError),
    /// Reading the files took longer than the limit given (see [`LOAD_TIMEOUT`]).
    #[error(
        "reading the configuration (config, secret, CA and TLS files) took longer than {}; is a \
         file on a stalled mount?",
        humantime::format_duration(*.0)
    )]
    LoadTimedOut(Duration),
    /// An earlier load that timed out is still blocked reading files; no second thread is started
    /// behind it, so stuck threads cannot pile up one per reload.
    #[error(
        "an earlier read of the configuration is still blocked (a file on a stalled mount?); not \
         starting another until it returns"
    )]
    PreviousLoadBlocked,
    /// The fleet could not be built from the valid config (an HTTP client).
    #[error("{0}")]
    Build(BuildError),
    /// `[exporter.web]` names TLS files but the config holds no TLS server config for them
    /// (`config::load` builds one whenever both files are set, so this is a wiring mistake).
    #[error("exporter.web: TLS files set but not loaded")]
    TlsNotLoaded,
    /// A reload asked for after shutdown began.
    #[error("shutting down")]
    ShuttingDown,
}

impl ReloadError {
    /// One line per problem: how `run` logs it and how a rejected reload is logged.
    pub fn lines(&self) -> Vec<String> {
        match self {
            Self::Config(error) => error.lines(),
            single => vec![single.to_string()],
        }
    }
}

impl From<ConfigError> for ReloadError {
    fn from(error: ConfigError) -> Self {
        Self::Config(error)
    }
}

pub struct Controller {
    source: ConfigSource,
    shard: Option<Shard>,
    metrics: Arc<Metrics>,
    agent: Mutex<Option<Agent>>,
    orgs: OrgList,
    recovering: Recovering,
    web: Box<dyn FollowsConfig>,
    /// Set while a reload's files are being read (see [`blocking_with_timeout`]).
    loading: Arc<AtomicBool>,
}

/// A part outside the fleet that follows the configuration: the HTTP endpoints' protection
/// (`http::web::WebGuards`). Declared here so that the controller drives it without knowing the
/// HTTP side (which imports the fleet, not the other way round).
pub trait FollowsConfig: Send + Sync {
    /// Applies the reloaded `config`, before the fleet does: an error rejects the whole reload.
    fn apply(&self, config: &Config) -> Result<(), ReloadError>;
}

/// How long loading a config (reading the file, its secrets, CA and TLS files) may take. The
/// files are small and local, so this only ever fires on a stalled file system (a hung NFS or
/// FUSE mount), where waiting longer would not help.
pub const LOAD_TIMEOUT: Duration = Duration::from_secs(10);

/// [`load`] on a blocking thread, given at most [`LOAD_TIMEOUT`] (the first load; reloads go
/// through [`Controller::reload`]). On timeout the thread is left to finish on its own (a blocked
/// read cannot be cancelled); its result is dropped.
pub async fn load_off_worker(
    source: &ConfigSource,
    shard: Option<Shard>,
) -> Result<Config, ReloadError> {
    load_with_flag(source, shard, &Arc::new(AtomicBool::new(false))).await
}

async fn load_with_flag(
    source: &ConfigSource,
    shard: Option<Shard>,
    running: &Arc<AtomicBool>,
) -> Result<Config, ReloadError> {
    let source = source.clone();
    blocking_with_timeout(LOAD_TIMEOUT, running, move || load(&source, shard)).await
}

/// Clears a load's running flag when its blocking thread ends, however it ends.
struct LoadRunning(Arc<AtomicBool>);

impl Drop for LoadRunning {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

/// Runs `read` on a blocking thread and waits at most `limit` for it. `running` is set while a
/// read runs and cleared when its thread returns, even after the caller gave up waiting: while an
/// earlier read that timed out is still blocked, no new one is started, so a file on a stalled
/// mount blocks one thread, not one per reload.
async fn blocking_with_timeout<F>(
    limit: Duration,
    running: &Arc<AtomicBool>,
    read: F,
) -> Result<Config, ReloadError>
where
    F: FnOnce() -> Result<Config, ReloadError> + Send + 'static,
{
    if running.swap(true, Ordering::AcqRel) {
        return Err(ReloadError::PreviousLoadBlocked);
    }
    let guard = LoadRunning(running.clone());
    let task = tokio::task::spawn_blocking(move || {
        let _running = guard;
        read()
    });
    match tokio::time::timeout(limit, task).await {
        Ok(Ok(result)) => result,
        Ok(Err(error)) => Err(ReloadError::LoadFailed(error)),
        Err(_) => Err(ReloadError::LoadTimedOut(limit)),
    }
}

/// Loads the config from `source` and keeps only the orgs of `shard`. Reads files: call it where
/// blocking is fine (`check`), else through [`load_off_worker`].
pub fn load(source: &ConfigSource, shard: Option<Shard>) -> Result<Config, ReloadError> {
    let mut config = match source {
        ConfigSource::File(path) => config::load(path)?,
        ConfigSource::Fixed(config) => (**config).clone(),
    };
    if let Some(shard) = shard {
        config
            .orgs
            .retain(|org| shard.owns(&org.host, &org.client_id));
    }
    Ok(config)
}

impl Controller {
    /// Applies the first config and starts the schedules.
    pub async fn start(
        source: ConfigSource,
        shard: Option<Shard>,
        metrics: Arc<Metrics>,
        config: Config,
        web: impl FollowsConfig + 'static,
    ) -> Result<Arc<Self>, ReloadError> {
        let mut agent = Agent::new(metrics.clone());
        metrics.set_shard(shard);
        agent.apply(config).await.map_err(ReloadError::Build)?;
        metrics.record_config_load(true);
        let orgs = agent.org_list();
        let recovering = agent.recovering();
        Ok(Arc::new(Controller {
            source,
            shard,
            metrics,
            agent: Mutex::new(Some(agent)),
            orgs,
            recovering,
            web: Box::new(web),
            loading: Arc::new(AtomicBool::new(false)),
        }))
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The configured orgs, by name.
    pub fn orgs(&self) -> Vec<Arc<Org>> {
        let orgs = self.orgs.read().unwrap_or_else(|e| e.into_inner());
        orgs.values().cloned().collect()
    }

    /// Orgs whose schedule task was restarted after a panic and has not completed a run since.
    pub fn recovering_orgs(&self) -> Vec<String> {
        self.recovering.names()
    }

    pub fn org(&self, name: &str) -> Option<Arc<Org>> {
        let orgs = self.orgs.read().unwrap_or_else(|e| e.into_inner());
        orgs.get(name).cloned()
    }

    /// Re-reads the config; applies it only if it is valid as a whole.
    pub async fn reload(&self) -> Result<Changes, ReloadError> {
        let mut agent = self.agent.lock().await;
        let Some(agent) = agent.as_mut() else {
            return Err(ReloadError::ShuttingDown);
        };
        let result = match load_with_flag(&self.source, self.shard, &self.loading).await {
            Ok(config) => {
                for warning in &config.warnings {
                    tracing::warn!("{warning}");
                }
                // TLS files first: if they are broken, nothing of the new config is applied.
                match self.web.apply(&config) {
                    Ok(()) => agent.apply(config).await.map_err(ReloadError::Build),
                    Err(error) => Err(error),
                }
            }
            Err(error) => Err(error),
        };
        match &result {
            Ok(changes) => {
                self.metrics.record_config_load(true);
                tracing::info!(
                    added = ?changes.added,
                    changed = ?changes.changed,
                    relabelled = ?changes.relabelled,
                    secret_changed = ?changes.rotated,
                    removed = ?changes.removed,
                    unchanged = changes.unchanged,
                    "configuration reloaded"
                );
            }
            Err(error) => {
                self.metrics.record_config_load(false);
                for problem in error.lines() {
                    tracing::error!("reload rejected: {problem}");
                }
                tracing::error!(
                    "configuration reload failed; the previous configuration keeps running"
                );
            }
        }
        result
    }

    /// Stops scheduling and waits for runs in progress.
    pub async fn stop(&self) {
        if let Some(agent) = self.agent.lock().await.take() {
            agent.stop().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn empty_config() -> Config {
        Config {
            listen: None,
            web: None,
            orgs: Vec::new(),
            warnings: Vec::new(),
            latency_histograms: Default::default(),
        }
    }

    #[tokio::test]
    async fn a_blocked_load_is_not_joined_by_another_until_it_returns() {
        let running = Arc::new(AtomicBool::new(false));
        let (release, blocked) = std::sync::mpsc::channel::<()>();
        let limit = Duration::from_millis(50);
        let first = blocking_with_timeout(limit, &running, move || {
            // A read on a stalled mount: returns only when the test lets it.
            let _ = blocked.recv();
            Ok(empty_config())
        })
        .await;
        assert!(
            matches!(first, Err(ReloadError::LoadTimedOut(_))),
            "{first:?}"
        );
        let second = blocking_with_timeout(limit, &running, || Ok(empty_config())).await;
        assert!(
            matches!(second, Err(ReloadError::PreviousLoadBlocked)),
            "{second:?}"
        );
        release.send(()).expect("the first load still waits");
        // Bounded: the released thread clears the flag at once.
        for _ in 0..200 {
            if !running.load(Ordering::Acquire) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let third = blocking_with_timeout(limit, &running, || Ok(empty_config())).await;
        assert!(third.is_ok(), "{third:?}");
    }
}
