//! The client secret of one credential as the agent uses it now, and re-reading secret files.
//!
//! Every org of a credential holds the same [`SecretHolder`] and reads it at each token request.
//! It changes when a reload brings another secret, when its file changes (`secret_watch` polls
//! the files) or when the probe, about to report a rejection, finds a new secret in the file.
//! What a change does to the token is the token cache's business
//! ([`crate::obf::token::TokenCache::change_credentials`]); this module only holds, compares and reads.
//! Secret files are always read through the bounded reader, on a blocking thread, under
//! [`READ_TIMEOUT`]. Nothing here prints a secret: `Debug` shows the source only.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard};
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use subtle::ConstantTimeEq;

use crate::config::{self, SecretSource};

/// How long one read of secret files may take. They are tens of bytes on a local disk or a
/// tmpfs; only a stalled mount (a hung NFS or FUSE file system) takes longer, and waiting longer
/// would not help. The blocked thread cannot be cancelled: it is left to finish, and no second
/// read is started while it runs (see [`SecretHolder::reread`] and `secret_watch`).
pub const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// One credential's secret and where it comes from.
pub struct SecretHolder {
    held: RwLock<Held>,
    /// A re-read before a rejection is running (perhaps stuck on a stalled mount).
    rereading: Arc<AtomicBool>,
}

struct Held {
    secret: SecretString,
    source: SecretSource,
}

impl fmt::Debug for SecretHolder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretHolder")
            .field("source", &self.read().source)
            .finish_non_exhaustive()
    }
}

/// What re-reading the secret's source found.
#[derive(Debug)]
pub enum Reread {
    /// The source is the environment or the config file: it cannot have changed.
    NotAFile,
    /// The file holds the secret that was sent.
    Unchanged,
    /// The file holds another secret.
    Changed { path: PathBuf, secret: SecretString },
    /// The file could not be read (the message names no secret), or a read is still running.
    Failed(String),
}

impl SecretHolder {
    pub fn new(secret: SecretString, source: SecretSource) -> Self {
        SecretHolder {
            held: RwLock::new(Held { secret, source }),
            rereading: Arc::default(),
        }
    }

    fn read(&self) -> RwLockReadGuard<'_, Held> {
        // Writers replace both fields in one assignment: a panic cannot leave them half-changed.
        self.held.read().unwrap_or_else(|e| e.into_inner())
    }

    /// The secret to send now.
    pub fn current(&self) -> SecretString {
        self.read().secret.clone()
    }

    pub fn source(&self) -> SecretSource {
        self.read().source.clone()
    }

    /// Makes `secret` from `source` the one in use; says whether the secret differs from the
    /// one it replaces.
    pub fn replace(&self, secret: SecretString, source: SecretSource) -> bool {
        let mut held = self.held.write().unwrap_or_else(|e| e.into_inner());
        let changed = !same(&held.secret, &secret);
        *held = Held { secret, source };
        changed
    }

    /// Makes `secret`, just read from `path`, the one in use if the holder still follows that
    /// file (a reload may have pointed it elsewhere meanwhile) and it differs; says whether it did.
    pub fn replace_from_file(&self, path: &Path, secret: SecretString) -> bool {
        let mut held = self.held.write().unwrap_or_else(|e| e.into_inner());
        let follows = matches!(&held.source, SecretSource::File(p) if p == path);
        if !follows || same(&held.secret, &secret) {
            return false;
        }
        held.secret = secret;
        true
    }

    /// Re-reads the secret's file (off the async workers, at most [`READ_TIMEOUT`]) and compares
    /// it with `sent`, the secret a refused request carried.
    pub async fn reread(&self, sent: &SecretString) -> Reread {
        let SecretSource::File(path) = self.source() else {
            return Reread::NotAFile;
        };
        if self.rereading.swap(true, Ordering::AcqRel) {
            return Reread::Failed("an earlier read of the secret file has not finished".into());
        }
        let busy = ClearOnDrop(self.rereading.clone());
        let read_path = path.clone();
        let job = tokio::task::spawn_blocking(move || {
            // Cleared when the read ends, even if the waiting side gave up on it.
            let _busy = busy;
            read_file(&read_path)
        });
        match tokio::time::timeout(READ_TIMEOUT, job).await {
            Ok(Ok(Ok(secret))) if same(&secret, sent) => Reread::Unchanged,
            Ok(Ok(Ok(secret))) => Reread::Changed { path, secret },
            Ok(Ok(Err(problem))) => Reread::Failed(problem),
            Ok(Err(error)) => Reread::Failed(format!("reading the secret file failed: {error}")),
            Err(_) => Reread::Failed(format!(
                "reading the secret file took longer than {} s; is it on a stalled mount?",
                READ_TIMEOUT.as_secs()
            )),
        }
    }
}

/// Clears the flag when dropped.
struct ClearOnDrop(Arc<AtomicBool>);

impl Drop for ClearOnDrop {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

/// Whether two secrets are equal, in time that does not depend on where they differ.
pub fn same(a: &SecretString, b: &SecretString) -> bool {
    a.expose_secret()
        .as_bytes()
        .ct_eq(b.expose_secret().as_bytes())
        .into()
}

/// Reads a secret file as the config load does (bounded reader, one trailing newline trimmed,
/// empty refused). Blocking: call it on a blocking thread. The error names no secret.
pub fn read_file(path: &Path) -> Result<SecretString, String> {
    config::secret::read_file(path).map(SecretString::from)
}

/// The path as logs may show it (not if it could be a secret pasted into the wrong key).
pub fn shown_path(path: &Path) -> String {
    config::secret::shown_path(&path.to_string_lossy())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(s: &str) -> SecretString {
        SecretString::from(s)
    }

    fn scratch(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "obf-exporter-client-secret-{tag}-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn debug_shows_the_source_but_never_the_secret() {
        let holder = SecretHolder::new(secret("hunter2-value"), SecretSource::Inline);
        let shown = format!("{holder:?}");
        assert!(shown.contains("Inline"), "{shown}");
        assert!(!shown.contains("hunter2"), "{shown}");
    }

    #[test]
    fn replace_says_whether_the_secret_changed() {
        let holder = SecretHolder::new(secret("a"), SecretSource::Inline);
        assert!(!holder.replace(secret("a"), SecretSource::Env("X".into())));
        assert_eq!(holder.source(), SecretSource::Env("X".into()));
        assert!(holder.replace(secret("b"), SecretSource::Inline));
        assert_eq!(holder.current().expose_secret(), "b");
        assert!(same(&secret("abc"), &secret("abc")));
        assert!(!same(&secret("abc"), &secret("abd")));
        assert!(!same(&secret("abc"), &secret("abcd")));
    }

    #[test]
    fn a_file_secret_is_installed_only_while_the_holder_follows_that_file() {
        let path = PathBuf::from("/run/secrets/acme");
        let holder = SecretHolder::new(secret("old"), SecretSource::File(path.clone()));
        assert!(!holder.replace_from_file(&path, secret("old")));
        assert!(!holder.replace_from_file(Path::new("/elsewhere"), secret("new")));
        assert!(holder.replace_from_file(&path, secret("new")));
        assert_eq!(holder.current().expose_secret(), "new");
    }

    #[tokio::test]
    async fn reread_compares_the_file_with_the_secret_sent() {
        let dir = scratch("reread");
        let path = dir.join("secret");
        std::fs::write(&path, "old\n").unwrap();
        let holder = SecretHolder::new(secret("old"), SecretSource::File(path.clone()));
        assert!(matches!(
            holder.reread(&secret("old")).await,
            Reread::Unchanged
        ));
        std::fs::write(&path, "new\n").unwrap();
        match holder.reread(&secret("old")).await {
            Reread::Changed { path: p, secret } => {
                assert_eq!(p, path);
                assert_eq!(secret.expose_secret(), "new");
            }
            other => panic!("{other:?}"),
        }
        std::fs::write(&path, "").unwrap();
        match holder.reread(&secret("old")).await {
            Reread::Failed(problem) => assert!(problem.ends_with("is empty"), "{problem}"),
            other => panic!("{other:?}"),
        }
        let inline = SecretHolder::new(secret("x"), SecretSource::Inline);
        assert!(matches!(
            inline.reread(&secret("y")).await,
            Reread::NotAFile
        ));
        let _ = std::fs::remove_dir_all(dir);
    }
}
