//! Follows client secret files: every [`POLL_INTERVAL`] it re-reads each distinct secret file of
//! the running orgs and installs a changed secret as a reload of that credential would: the
//! token is dropped (the next run requests one with the new secret, spacing kept), schedules are
//! untouched, and one info line names the orgs and the client, never the secret.
//!
//! Polling by path, not inotify: a file rewritten in place, an editor or Vault agent renaming a
//! new file over it, and Kubernetes' atomic `..data` symlink swap all look the same to a read by
//! path, with no new crate and on every kind of mount. The cost is one read of a few bytes per
//! file per 5 s. All files of a round are read on one blocking thread under [`READ_TIMEOUT`]; a
//! round that outlasts it (a stalled mount) is left to finish and the next rounds are skipped
//! until it has, so stalled reads never pile up threads. A file that cannot be read, or is
//! empty, keeps the secret in use and is warned about once per distinct problem.
//!
//! It does not know about orgs or schedules: the agent hands it the [`Followed`] credentials.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use secrecy::SecretString;
use tokio::task::JoinHandle;

use crate::fleet::client_secret::{self, SecretHolder, READ_TIMEOUT};
use crate::obf::token::TokenCache;

/// How often secret files are re-read. A change is in use within this plus one run of the org.
pub const POLL_INTERVAL: Duration = Duration::from_secs(5);

/// A credential whose secret comes from a file.
pub struct Followed {
    pub path: PathBuf,
    pub holder: Arc<SecretHolder>,
    pub tokens: Arc<TokenCache>,
    /// The orgs using it, for the log line.
    pub orgs: Vec<String>,
    pub client_id: String,
}

type ReadResults = Vec<(PathBuf, Result<SecretString, String>)>;
type Reader = Arc<dyn Fn(&std::path::Path) -> Result<SecretString, String> + Send + Sync>;

/// Re-reads the files of `followed()` every [`POLL_INTERVAL`], forever (abort the task to stop).
pub async fn follow(followed: impl Fn() -> Vec<Followed> + Send + 'static) {
    let mut ticks = tokio::time::interval(POLL_INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await; // the first tick is immediate; the files were just read by the load
    let mut watcher = Watcher::new(Arc::new(client_secret::read_file), READ_TIMEOUT);
    loop {
        ticks.tick().await;
        watcher.round(followed()).await;
    }
}

/// What one round did, for tests.
#[derive(Debug, Default, PartialEq, Eq)]
struct Round {
    /// The previous round's read is still running: nothing was read.
    skipped: bool,
    /// This round's read outlasted [`READ_TIMEOUT`].
    stalled: bool,
    /// Client ids whose secret was replaced.
    changed: Vec<String>,
    /// Files warned about in this round.
    warned: Vec<PathBuf>,
}

struct Watcher {
    read: Reader,
    /// [`READ_TIMEOUT`], shorter in tests.
    timeout: Duration,
    /// A read that outlasted its timeout and has not ended yet.
    pending: Option<JoinHandle<ReadResults>>,
    /// The last problem warned about, per file.
    problems: BTreeMap<PathBuf, String>,
}

impl Watcher {
    fn new(read: Reader, timeout: Duration) -> Self {
        Watcher {
            read,
            timeout,
            pending: None,
            problems: BTreeMap::new(),
        }
    }

    async fn round(&mut self, followed: Vec<Followed>) -> Round {
        let mut round = Round::default();
        if let Some(pending) = &self.pending {
            if !pending.is_finished() {
                round.skipped = true;
                return round;
            }
            // Its results are stale by now: this round reads again.
            self.pending = None;
            tracing::info!("the stalled read of secret files has ended; following them again");
        }
        let paths: BTreeSet<PathBuf> = followed.iter().map(|f| f.path.clone()).collect();
        self.problems.retain(|path, _| paths.contains(path));
        if paths.is_empty() {
            return round;
        }
        let read = self.read.clone();
        let mut job = tokio::task::spawn_blocking(move || {
            paths
                .into_iter()
                .map(|path| {
                    let result = read(&path);
                    (path, result)
                })
                .collect::<ReadResults>()
        });
        let results = match tokio::time::timeout(self.timeout, &mut job).await {
            Ok(Ok(results)) => results,
            Ok(Err(error)) => {
                tracing::warn!(%error, "reading the secret files failed; the secrets in use are kept");
                return round;
            }
            Err(_) => {
                tracing::warn!(
                    "reading the secret files took longer than {} s (a stalled mount?); the \
                     secrets in use are kept and the files are not read again until that read ends",
                    self.timeout.as_secs()
                );
                self.pending = Some(job);
                round.stalled = true;
                return round;
            }
        };
        self.apply(followed, results, &mut round);
        round
    }

    fn apply(&mut self, followed: Vec<Followed>, results: ReadResults, round: &mut Round) {
        let mut secrets = BTreeMap::new();
        for (path, result) in results {
            match result {
                Ok(secret) => {
                    if self.problems.remove(&path).is_some() {
                        tracing::info!(
                            file = %client_secret::shown_path(&path),
                            "secret file readable again"
                        );
                    }
                    secrets.insert(path, secret);
                }
                Err(problem) => {
                    if self.problems.get(&path) != Some(&problem) {
                        tracing::warn!("{problem}; the secret in use is kept");
                        round.warned.push(path.clone());
                        self.problems.insert(path, problem);
                    }
                }
            }
        }
        for credential in followed {
            let Some(secret) = secrets.get(&credential.path) else {
                continue;
            };
            let installed = credential.tokens.change_credentials(|| {
                credential
                    .holder
                    .replace_from_file(&credential.path, secret.clone())
            });
            if installed {
                tracing::info!(
                    orgs = ?credential.orgs,
                    client_id = %credential.client_id,
                    file = %client_secret::shown_path(&credential.path),
                    "secret file changed: the token is dropped and the next token request uses the new secret"
                );
                round.changed.push(credential.client_id);
            }
        }
    }
}

#[cfg(test)]
mod tests;
