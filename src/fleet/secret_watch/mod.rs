//! Follows client secret files: every [`POLL_INTERVAL`] it checks each distinct secret file of
//! the running orgs and installs a changed secret as a reload of that credential would: the
//! token is dropped (the next run requests one with the new secret, spacing kept), schedules are
//! untouched, and one info line names the orgs and the client, never the secret.
//!
//! Polling by path, not inotify: a file rewritten in place, an editor or Vault agent renaming a
//! new file over it, and Kubernetes' atomic `..data` symlink swap all look the same to a lookup
//! by path, with no new crate and on every kind of mount. A file is only read again when its
//! [`Stamp`] (inode, size, change times) differs from the last read's: an unchanged file costs
//! one `stat` per round (reading every file made the watcher most of the agent's CPU at 10,000
//! orgs probed every minute). All files of a round are checked on one blocking thread under
//! [`READ_TIMEOUT`]; a round that outlasts it (a stalled mount) is left to finish and the next
//! rounds are skipped until it has, so stalled reads never pile up threads. A file that cannot be
//! read, or is empty, keeps the secret in use and is warned about once per distinct problem.
//!
//! It does not know about orgs or schedules: the agent hands it the [`Followed`] credentials.

use std::collections::{HashMap, HashSet};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

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

/// The files a round read (changed or never read), with what they held: unchanged files are
/// not listed. With the stamps, handed back from the blocking thread.
type RoundResult = (
    HashMap<PathBuf, Stamp>,
    Vec<(PathBuf, Result<SecretString, String>)>,
);
type Reader = Arc<dyn Fn(&Path) -> Result<SecretString, String> + Send + Sync>;

/// A file's change time within this of the clock when it was stamped may hide a later write in
/// the same timestamp tick (filesystems with 1 s or 2 s timestamps): such a file is read again
/// at the next round, however it looks.
const RACY_WINDOW: Duration = Duration::from_secs(2);

/// What tells a file's content changed without reading it, following symlinks as a read does:
/// a rename over it or Kubernetes' `..data` swap changes the inode, a write the size or the
/// modification and change times (nanoseconds where the filesystem keeps them).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Stamp {
    fn of(path: &Path) -> Option<Stamp> {
        let meta = std::fs::metadata(path).ok()?;
        Some(Stamp {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            ctime: (meta.ctime(), meta.ctime_nsec()),
        })
    }

    /// Whether a write after `now` could leave this stamp as it is (see [`RACY_WINDOW`]).
    fn racy(&self, now: SystemTime, window: Duration) -> bool {
        let changed = self.ctime.max(self.mtime);
        let now = now.duration_since(UNIX_EPOCH).unwrap_or_default();
        let now = (
            i64::try_from(now.as_secs()).unwrap_or(i64::MAX),
            i64::from(now.subsec_nanos()),
        );
        let settled = (now.0.saturating_sub(window.as_secs() as i64), now.1);
        changed >= settled
    }
}

/// Checks the files of `followed()` every [`POLL_INTERVAL`], forever (abort the task to stop).
/// `followed()` is called every round: it should hand out a list kept up to date by reloads, not
/// build one (at 10,000 orgs building it was a large part of a round's cost).
pub async fn follow(followed: impl Fn() -> Arc<Vec<Followed>> + Send + 'static) {
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
    pending: Option<JoinHandle<RoundResult>>,
    /// The list of the last round: the maps are pruned when a reload hands out another.
    last: Option<Arc<Vec<Followed>>>,
    /// The last problem warned about, per file.
    problems: HashMap<PathBuf, String>,
    /// The stamp of each file's last good read, unless it was racy.
    stamps: HashMap<PathBuf, Stamp>,
    /// [`RACY_WINDOW`]; zero in tests, whose files are always just written.
    racy_window: Duration,
}

impl Watcher {
    fn new(read: Reader, timeout: Duration) -> Self {
        Watcher {
            read,
            timeout,
            pending: None,
            last: None,
            problems: HashMap::new(),
            stamps: HashMap::new(),
            racy_window: RACY_WINDOW,
        }
    }

    async fn round(&mut self, followed: Arc<Vec<Followed>>) -> Round {
        let mut round = Round::default();
        if let Some(pending) = &self.pending {
            if !pending.is_finished() {
                round.skipped = true;
                return round;
            }
            // Its results are stale by now, and its stamps gone with it: this round reads all.
            self.pending = None;
            tracing::info!("the stalled read of secret files has ended; following them again");
        }
        if !self
            .last
            .as_ref()
            .is_some_and(|last| Arc::ptr_eq(last, &followed))
        {
            let paths: HashSet<&Path> = followed.iter().map(|f| f.path.as_path()).collect();
            self.problems
                .retain(|path, _| paths.contains(path.as_path()));
            self.stamps.retain(|path, _| paths.contains(path.as_path()));
            self.last = Some(followed.clone());
        }
        if followed.is_empty() {
            return round;
        }
        let read = self.read.clone();
        let window = self.racy_window;
        let mut stamps = std::mem::take(&mut self.stamps);
        let list = followed.clone();
        let mut job = tokio::task::spawn_blocking(move || {
            let mut reads = Vec::new();
            for path in list.iter().map(|f| &f.path) {
                let now = SystemTime::now();
                let stamp = Stamp::of(path);
                if stamp.is_some() && stamp == stamps.get(path).copied() {
                    continue;
                }
                let result = read(path);
                match stamp.filter(|s| result.is_ok() && !s.racy(now, window)) {
                    Some(stamp) => stamps.insert(path.clone(), stamp),
                    None => stamps.remove(path),
                };
                reads.push((path.clone(), result));
            }
            (stamps, reads)
        });
        let reads = match tokio::time::timeout(self.timeout, &mut job).await {
            Ok(Ok((stamps, reads))) => {
                self.stamps = stamps;
                reads
            }
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
        if !reads.is_empty() {
            self.apply(&followed, reads, &mut round);
        }
        round
    }

    fn apply(
        &mut self,
        followed: &[Followed],
        reads: Vec<(PathBuf, Result<SecretString, String>)>,
        round: &mut Round,
    ) {
        let mut secrets = HashMap::new();
        for (path, result) in reads {
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
        if secrets.is_empty() {
            return;
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
                round.changed.push(credential.client_id.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests;
