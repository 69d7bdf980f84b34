//! The watcher's rounds against real files: in place, renamed over, Kubernetes' `..data` swap,
//! unreadable and empty files, and a stalled read.

use super::*;
use crate::config::SecretSource;
use crate::obf::token::{IssuedToken, TokenPolicy};
use secrecy::ExposeSecret;
use std::path::Path;
use std::sync::mpsc;

const POLICY: TokenPolicy = TokenPolicy {
    refresh_margin: Duration::from_secs(60),
    min_interval: Duration::from_secs(10),
    max_age: Duration::from_secs(3600),
    check_interval: Duration::ZERO,
};

struct Dir(PathBuf);

impl Dir {
    fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "obf-exporter-watch-{tag}-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Dir(dir)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A credential following `path`, with `secret` in use and a cached token.
async fn credential(path: &Path, secret: &str) -> (Arc<SecretHolder>, Arc<TokenCache>) {
    let holder = Arc::new(SecretHolder::new(
        SecretString::from(secret),
        SecretSource::File(path.to_path_buf()),
    ));
    let tokens = Arc::new(TokenCache::new(POLICY));
    let acquired = tokens
        .acquire(Duration::from_secs(1), None, || async {
            Ok(IssuedToken {
                access_token: SecretString::from("token"),
                expires_in: Some(Duration::from_secs(300)),
            })
        })
        .await;
    assert!(acquired.token.is_some());
    (holder, tokens)
}

fn followed(
    path: &Path,
    holder: &Arc<SecretHolder>,
    tokens: &Arc<TokenCache>,
) -> Arc<Vec<Followed>> {
    Arc::new(vec![Followed {
        path: path.to_path_buf(),
        holder: holder.clone(),
        tokens: tokens.clone(),
        orgs: vec!["acme".into()],
        client_id: "ACME".into(),
    }])
}

fn watcher() -> Watcher {
    Watcher::new(Arc::new(client_secret::read_file), READ_TIMEOUT)
}

/// Writes `contents` to a new file and renames it over `path`, as editors and Vault agents do.
fn rename_over(path: &Path, contents: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, contents).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

#[tokio::test]
async fn a_file_rewritten_in_place_is_followed_and_the_token_dropped() {
    let dir = Dir::new("in-place");
    let path = dir.0.join("secret");
    std::fs::write(&path, "old\n").unwrap();
    let (holder, tokens) = credential(&path, "old").await;
    let mut watcher = watcher();
    let round = watcher.round(followed(&path, &holder, &tokens)).await;
    assert_eq!(round, Round::default(), "nothing changed yet");
    assert!(tokens.snapshot().token_expires_at.is_some(), "token kept");

    std::fs::write(&path, "new\n").unwrap();
    let round = watcher.round(followed(&path, &holder, &tokens)).await;
    assert_eq!(round.changed, ["ACME"]);
    assert_eq!(holder.current().expose_secret(), "new");
    assert_eq!(tokens.snapshot().token_expires_at, None, "token dropped");
    assert_eq!(
        tokens.snapshot().credentials_valid,
        Some(true),
        "validity kept"
    );
    let round = watcher.round(followed(&path, &holder, &tokens)).await;
    assert!(round.changed.is_empty(), "applied once");
}

#[tokio::test]
async fn a_file_renamed_over_is_followed() {
    let dir = Dir::new("rename");
    let path = dir.0.join("secret");
    std::fs::write(&path, "old").unwrap();
    let (holder, tokens) = credential(&path, "old").await;
    rename_over(&path, "new\n");
    let round = watcher().round(followed(&path, &holder, &tokens)).await;
    assert_eq!(round.changed, ["ACME"]);
    assert_eq!(holder.current().expose_secret(), "new");
}

#[tokio::test]
async fn a_kubernetes_data_symlink_swap_is_followed() {
    // Kubernetes: secret -> ..data/secret, ..data -> ..<timestamp>; an update writes a new
    // timestamped directory, points ..data_tmp at it and renames ..data_tmp over ..data.
    let dir = Dir::new("k8s");
    let mount = &dir.0;
    std::fs::create_dir(mount.join("..2024_01")).unwrap();
    std::fs::write(mount.join("..2024_01/secret"), "old\n").unwrap();
    std::os::unix::fs::symlink("..2024_01", mount.join("..data")).unwrap();
    std::os::unix::fs::symlink("..data/secret", mount.join("secret")).unwrap();
    let path = mount.join("secret");
    let (holder, tokens) = credential(&path, "old").await;
    let mut watcher = watcher();
    assert!(watcher
        .round(followed(&path, &holder, &tokens))
        .await
        .changed
        .is_empty());

    std::fs::create_dir(mount.join("..2024_02")).unwrap();
    std::fs::write(mount.join("..2024_02/secret"), "new\n").unwrap();
    std::os::unix::fs::symlink("..2024_02", mount.join("..data_tmp")).unwrap();
    std::fs::rename(mount.join("..data_tmp"), mount.join("..data")).unwrap();
    std::fs::remove_dir_all(mount.join("..2024_01")).unwrap();
    let round = watcher.round(followed(&path, &holder, &tokens)).await;
    assert_eq!(round.changed, ["ACME"]);
    assert_eq!(holder.current().expose_secret(), "new");
}

#[tokio::test]
async fn an_unreadable_or_empty_file_keeps_the_secret_and_is_warned_about_once_per_problem() {
    let dir = Dir::new("problems");
    let path = dir.0.join("secret");
    std::fs::write(&path, "old\n").unwrap();
    let (holder, tokens) = credential(&path, "old").await;
    let mut watcher = watcher();

    std::fs::write(&path, "").unwrap();
    let round = watcher.round(followed(&path, &holder, &tokens)).await;
    assert_eq!(round.warned, std::slice::from_ref(&path));
    let round = watcher.round(followed(&path, &holder, &tokens)).await;
    assert!(
        round.warned.is_empty(),
        "the same problem is not warned again"
    );

    std::fs::remove_file(&path).unwrap();
    let round = watcher.round(followed(&path, &holder, &tokens)).await;
    assert_eq!(
        round.warned,
        std::slice::from_ref(&path),
        "a different problem is"
    );
    assert_eq!(holder.current().expose_secret(), "old");
    assert!(tokens.snapshot().token_expires_at.is_some(), "token kept");

    std::fs::write(&path, "old\n").unwrap();
    let round = watcher.round(followed(&path, &holder, &tokens)).await;
    assert_eq!(round, Round::default());
    std::fs::write(&path, "").unwrap();
    let round = watcher.round(followed(&path, &holder, &tokens)).await;
    assert_eq!(round.warned, [path], "warned again after it was fixed");
}

#[tokio::test]
async fn a_holder_pointed_elsewhere_by_a_reload_is_not_overwritten() {
    let dir = Dir::new("moved");
    let path = dir.0.join("secret");
    std::fs::write(&path, "new\n").unwrap();
    let (holder, tokens) = credential(&path, "old").await;
    let stale = followed(&path, &holder, &tokens);
    holder.replace(SecretString::from("env"), SecretSource::Env("X".into()));
    let round = watcher().round(stale).await;
    assert!(round.changed.is_empty());
    assert_eq!(holder.current().expose_secret(), "env");
}

#[tokio::test]
async fn a_stalled_read_skips_rounds_until_it_ends() {
    let (release, released) = mpsc::channel::<()>();
    let released = std::sync::Mutex::new(released);
    let reader: Reader = Arc::new(move |_: &Path| {
        // Blocks like a read on a hung mount, until the test lets it go (bounded).
        let _ = released
            .lock()
            .unwrap()
            .recv_timeout(Duration::from_secs(30));
        Ok(SecretString::from("new"))
    });
    let path = PathBuf::from("/stalled/secret");
    let (holder, tokens) = credential(&path, "old").await;
    let mut watcher = Watcher::new(reader, Duration::from_millis(200));
    let round = watcher.round(followed(&path, &holder, &tokens)).await;
    assert!(round.stalled, "{round:?}");
    let round = watcher.round(followed(&path, &holder, &tokens)).await;
    assert!(round.skipped, "{round:?}");
    assert_eq!(holder.current().expose_secret(), "old");

    release.send(()).unwrap();
    for _ in 0..500 {
        if watcher.pending.as_ref().is_some_and(|p| p.is_finished()) {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    release.send(()).unwrap(); // for the next round's read
    let round = watcher.round(followed(&path, &holder, &tokens)).await;
    assert_eq!(round.changed, ["ACME"], "{round:?}");
}

#[tokio::test]
async fn an_unchanged_file_is_not_read_again_and_a_replaced_one_is() {
    let dir = Dir::new("stamp");
    let path = dir.0.join("secret");
    std::fs::write(&path, "old").unwrap();
    let (holder, tokens) = credential(&path, "old").await;
    let reads = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = reads.clone();
    let reader: Reader = Arc::new(move |path: &Path| {
        counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        client_secret::read_file(path)
    });
    let mut watcher = Watcher::new(reader, READ_TIMEOUT);
    // The file was written just now: trusting its stamp needs no racy window here.
    watcher.racy_window = Duration::ZERO;
    let count = || reads.load(std::sync::atomic::Ordering::SeqCst);

    watcher.round(followed(&path, &holder, &tokens)).await;
    assert_eq!(count(), 1, "the first round reads");
    for _ in 0..3 {
        let round = watcher.round(followed(&path, &holder, &tokens)).await;
        assert_eq!(round, Round::default());
    }
    assert_eq!(count(), 1, "an unchanged file is only stat'ed");

    rename_over(&path, "new");
    let round = watcher.round(followed(&path, &holder, &tokens)).await;
    assert_eq!(count(), 2, "a new inode is read");
    assert_eq!(round.changed, ["ACME"]);
    assert_eq!(holder.current().expose_secret(), "new");

    std::fs::remove_file(&path).unwrap();
    let round = watcher.round(followed(&path, &holder, &tokens)).await;
    assert_eq!(count(), 3, "a missing file is read, and warned about");
    assert_eq!(round.warned, std::slice::from_ref(&path));
    std::fs::write(&path, "newer").unwrap();
    watcher.round(followed(&path, &holder, &tokens)).await;
    assert_eq!(holder.current().expose_secret(), "newer");
}

#[test]
fn a_stamp_changed_within_the_racy_window_is_not_trusted() {
    let at = |secs: i64, nanos: i64| Stamp {
        dev: 1,
        ino: 2,
        size: 3,
        mtime: (secs, nanos),
        ctime: (secs, nanos),
    };
    let now = UNIX_EPOCH + Duration::new(1_000, 500);
    let window = Duration::from_secs(2);
    assert!(at(1_000, 0).racy(now, window), "changed this second");
    assert!(at(998, 500).racy(now, window), "exactly the window ago");
    assert!(!at(998, 499).racy(now, window), "settled");
    assert!(!at(10, 0).racy(now, window));
    assert!(at(2_000, 0).racy(now, window), "a clock behind the file");
    let mut later_ctime = at(10, 0);
    later_ctime.ctime = (999, 0);
    assert!(
        later_ctime.racy(now, window),
        "the later of mtime and ctime counts"
    );
}
