//! Keeps each org's schedule task alive. A task that ends abnormally (a panic: a bug, since every
//! error is handled) is logged at error with the org and the panic message, counted in
//! `obf_exporter_task_restarts_total` and restarted after a backoff (1 s doubling to 60 s); until
//! the restarted org completes a run again it is listed in [`Recovering`], which `/-/ready`
//! reports. Silently losing an org is the outcome this module exists to rule out.
//!
//! It knows nothing about what the task does: the agent hands it a closure that starts one.

use std::any::Any;
use std::collections::BTreeSet;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus::IntCounter;
use tokio::sync::watch;
use tokio::time::Instant;

/// The wait before the first restart.
pub const RESTART_FIRST: Duration = Duration::from_secs(1);
/// The backoff doubles per restart up to this; a task that then ran this long before failing
/// again starts over from [`RESTART_FIRST`]. Long enough that a task panicking at every run does
/// not flood the log, short enough that an org recovers within a scrape interval or two.
pub const RESTART_MAX: Duration = Duration::from_secs(60);

/// Orgs whose task was restarted and has not completed a run since. Clones share the set.
#[derive(Clone, Default)]
pub struct Recovering(Arc<Mutex<BTreeSet<String>>>);

impl Recovering {
    /// The orgs, by name.
    pub fn names(&self) -> Vec<String> {
        self.lock().iter().cloned().collect()
    }

    /// `org` completed a run: it is healthy again.
    pub fn completed_run(&self, org: &str) {
        let mut set = self.lock();
        // Almost always empty: the check keeps a run's bookkeeping to one uncontended lock.
        if !set.is_empty() {
            set.remove(org);
        }
    }

    /// `org` is no longer configured.
    pub fn forget(&self, org: &str) {
        self.lock().remove(org);
    }

    fn insert(&self, org: &str) {
        self.lock().insert(org.to_owned());
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeSet<String>> {
        // Every write is one insert or remove: a panic elsewhere cannot leave the set half-done.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// What a supervised task needs besides the closure that starts it.
pub struct Supervision {
    /// The org, for logs and [`Recovering`].
    pub name: String,
    /// Turns true when the org is stopped: no restart after that.
    pub shutdown: watch::Receiver<bool>,
    pub restarts: IntCounter,
    pub recovering: Recovering,
}

/// Runs the task `start(restarts_so_far)` returns on its own tokio task until it ends normally
/// (the org was stopped), restarting it whenever it panics. `start` gets 0 the first time.
pub async fn supervise<F, Fut>(mut s: Supervision, mut start: F)
where
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let mut backoff = RESTART_FIRST;
    let mut restarted = 0u32;
    loop {
        let started = Instant::now();
        let error = match tokio::spawn(start(restarted)).await {
            Ok(()) => return,
            // Only when the runtime itself shuts down.
            Err(error) if error.is_cancelled() => return,
            Err(error) => error,
        };
        if started.elapsed() >= RESTART_MAX {
            backoff = RESTART_FIRST;
        }
        let payload = error.into_panic();
        let message = panic_message(payload.as_ref());
        s.restarts.inc();
        s.recovering.insert(&s.name);
        tracing::error!(
            org = %s.name,
            panic = %message,
            restart_in = ?backoff,
            "schedule task ended abnormally; restarting it"
        );
        tokio::select! {
            biased;
            _ = s.shutdown.wait_for(|stop| *stop) => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = backoff.saturating_mul(2).min(RESTART_MAX);
        restarted = restarted.saturating_add(1);
    }
}

/// The text a panic was raised with, when it has one.
fn panic_message(payload: &(dyn Any + Send)) -> &str {
    if let Some(text) = payload.downcast_ref::<&'static str>() {
        text
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text
    } else {
        "(no message)"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn counter() -> IntCounter {
        IntCounter::new("restarts", "test").unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn a_panicking_task_is_restarted_with_a_doubling_backoff_and_counted() {
        let (stop, shutdown) = watch::channel(false);
        let restarts = counter();
        let recovering = Recovering::default();
        let starts = Arc::new(Mutex::new(Vec::new()));
        let begin = Instant::now();
        let (recorded, seen) = (starts.clone(), recovering.clone());
        let supervisor = tokio::spawn(supervise(
            Supervision {
                name: "acme".into(),
                shutdown: shutdown.clone(),
                restarts: restarts.clone(),
                recovering: recovering.clone(),
            },
            move |restarted| {
                recorded.lock().unwrap().push(begin.elapsed().as_secs());
                let (mut shutdown, seen) = (shutdown.clone(), seen.clone());
                async move {
                    if restarted < 3 {
                        panic!("overflow when adding duration to instant");
                    }
                    // The restarted task completes a run, then waits to be stopped.
                    seen.completed_run("acme");
                    let _ = shutdown.wait_for(|stop| *stop).await;
                }
            },
        ));
        tokio::time::sleep(Duration::from_millis(6500)).await;
        assert_eq!(restarts.get(), 3);
        // Panics at 0, 1 (after 1 s), 3 (after 2 s); the fourth start, at 7 s, is yet to come.
        assert_eq!(*starts.lock().unwrap(), vec![0, 1, 3]);
        assert_eq!(recovering.names(), vec!["acme".to_string()]);
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(*starts.lock().unwrap(), vec![0, 1, 3, 7]);
        assert!(recovering.names().is_empty(), "ran again: recovered");
        stop.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(1), supervisor)
            .await
            .expect("stops")
            .unwrap();
        assert_eq!(restarts.get(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn the_backoff_is_capped_and_stopping_ends_the_wait() {
        let (stop, shutdown) = watch::channel(false);
        let restarts = counter();
        let calls = Arc::new(AtomicU32::new(0));
        let count = calls.clone();
        let supervisor = tokio::spawn(supervise(
            Supervision {
                name: "always".into(),
                shutdown,
                restarts: restarts.clone(),
                recovering: Recovering::default(),
            },
            move |_| {
                count.fetch_add(1, Ordering::SeqCst);
                async { panic!("always") }
            },
        ));
        // 1 + 2 + 4 + 8 + 16 + 32 + 60 + 60 = 183 s: 9 starts.
        tokio::time::sleep(Duration::from_secs(184)).await;
        assert_eq!(calls.load(Ordering::SeqCst), 9);
        stop.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(1), supervisor)
            .await
            .expect("stop ends the backoff wait")
            .unwrap();
        assert_eq!(restarts.get(), 9);
    }

    #[test]
    fn panic_messages_are_read_from_both_payload_types() {
        assert_eq!(panic_message(&"static"), "static");
        assert_eq!(panic_message(&String::from("owned")), "owned");
        assert_eq!(panic_message(&42u32), "(no message)");
    }
}
