//! The stop signal of an org's schedule: raised once by the agent, awaited by the org's task.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::sync::Notify;

/// A flag that turns true once and stays so; clones share it. Not a `watch` channel: that
/// allocates about 340 bytes per org (eight wait lists), this about 60, which at 10,000 orgs
/// is 2.8 MB of resident memory.
#[derive(Clone, Default)]
pub struct StopSignal(Arc<Shared>);

#[derive(Default)]
struct Shared {
    stopped: AtomicBool,
    notify: Notify,
}

impl StopSignal {
    pub fn new() -> Self {
        Self::default()
    }

    /// Raises the signal and wakes every task waiting in [`StopSignal::stopped`].
    pub fn stop(&self) {
        self.0.stopped.store(true, Ordering::Release);
        self.0.notify.notify_waiters();
    }

    pub fn is_stopped(&self) -> bool {
        self.0.stopped.load(Ordering::Acquire)
    }

    /// Completes once the signal is raised (at once if it already was).
    pub async fn stopped(&self) {
        let notified = self.0.notify.notified();
        tokio::pin!(notified);
        // Registered before the flag is read: a `stop` between the two still wakes this waiter.
        notified.as_mut().enable();
        if self.is_stopped() {
            return;
        }
        notified.await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn waiters_wake_on_stop_and_later_waits_complete_at_once() {
        let signal = StopSignal::new();
        let waiters: Vec<_> = (0..3)
            .map(|_| {
                let signal = signal.clone();
                tokio::spawn(async move { signal.stopped().await })
            })
            .collect();
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(
            waiters.iter().all(|w| !w.is_finished()),
            "nothing raised yet"
        );
        assert!(!signal.is_stopped());
        signal.stop();
        for waiter in waiters {
            tokio::time::timeout(Duration::from_secs(1), waiter)
                .await
                .expect("woken by stop")
                .unwrap();
        }
        assert!(signal.is_stopped());
        tokio::time::timeout(Duration::from_secs(1), signal.stopped())
            .await
            .expect("already raised: completes at once");
    }
}
