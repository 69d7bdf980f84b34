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
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use prometheus::IntCounter;
use tokio::time::Instant;

use crate::fleet::stop::StopSignal;

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
    /// Raised when the org is stopped: no restart after that.
    pub shutdown: StopSignal,
    pub restarts: IntCounter,
    pub recovering: Recovering,
}

/// Runs the task `start(restarts_so_far)` returns until it ends normally (the org was stopped),
/// restarting it whenever it panics. `start` gets 0 the first time.
///
/// The task runs inside this future, not on a tokio task of its own: a second task per org cost
/// about 0.9 KB of memory per org. A panic is caught where the task is polled ([`CatchPanic`]),
/// as tokio does for a spawned task. A plain function returning the future, not an `async fn`,
/// which would keep `s` and `start` twice (as passed and as moved into its body).
#[allow(clippy::manual_async_fn)] // on purpose: see above
pub fn supervise<F, Fut>(s: Supervision, mut start: F) -> impl Future<Output = ()>
where
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = ()>,
{
    async move {
        let mut backoff = RESTART_FIRST;
        let mut restarted = 0u32;
        loop {
            let started = Instant::now();
            // Boxed: the task's state is then not part of this future's while it waits to restart.
            let Err(payload) = CatchPanic(Box::pin(start(restarted))).await else {
                return;
            };
            if started.elapsed() >= RESTART_MAX {
                backoff = RESTART_FIRST;
            }
            let message = panic_message(payload.as_ref());
            s.restarts.inc();
            s.recovering.insert(&s.name);
            tracing::error!(
                org = %s.name,
                panic = %message,
                restart_in = ?backoff,
                "schedule task ended abnormally; restarting it"
            );
            // Boxed, as it is rare: a timer and a waiter in every org's task would cost ~0.2 KB each.
            let stopped = Box::pin(async {
                tokio::select! {
                    biased;
                    _ = s.shutdown.stopped() => true,
                    _ = tokio::time::sleep(backoff) => false,
                }
            });
            if stopped.await {
                return;
            }
            backoff = backoff.saturating_mul(2).min(RESTART_MAX);
            restarted = restarted.saturating_add(1);
        }
    }
}

/// Polls a future, turning a panic inside it into `Err(payload)`. The future is dropped after a
/// panic, never polled again; shared state it may have left half-changed is behind locks whose
/// poisoning every user ignores on purpose (each write is one step).
struct CatchPanic<F>(Pin<Box<F>>);

impl<F: Future<Output = ()>> Future for CatchPanic<F> {
    type Output = Result<(), Box<dyn Any + Send>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let task = self.get_mut().0.as_mut();
        match std::panic::catch_unwind(AssertUnwindSafe(|| task.poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(())) => Poll::Ready(Ok(())),
            Err(payload) => Poll::Ready(Err(payload)),
        }
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
        let stop = StopSignal::new();
        let shutdown = stop.clone();
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
                let (shutdown, seen) = (shutdown.clone(), seen.clone());
                async move {
                    if restarted < 3 {
                        panic!("overflow when adding duration to instant");
                    }
                    // The restarted task completes a run, then waits to be stopped.
                    seen.completed_run("acme");
                    shutdown.stopped().await;
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
        stop.stop();
        tokio::time::timeout(Duration::from_secs(1), supervisor)
            .await
            .expect("stops")
            .unwrap();
        assert_eq!(restarts.get(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn the_backoff_is_capped_and_stopping_ends_the_wait() {
        let stop = StopSignal::new();
        let shutdown = stop.clone();
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
        stop.stop();
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
