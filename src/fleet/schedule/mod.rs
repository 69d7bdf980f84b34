//! When each org's runs start: a fixed interval or a cron expression (UTC), plus jitter.
//!
//! One tokio task per org sleeps until its next planned start. Runs of one org never overlap: a
//! start that falls due while a run is still going is skipped (logged at debug), so a slow API never
//! causes a burst. Orgs that start together ramp up and spread their phases over their interval
//! ([`spread_plans`]). It knows nothing about tokens or HTTP: it calls the run it is given.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::time::{Duration, SystemTime};

use std::sync::Arc;

use prometheus::Histogram;
use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::config::{CronSchedule, Schedule};
use crate::fleet::stop::StopSignal;
use crate::{clock, random};

/// Orgs started at once, and the size of the groups a large fleet on one interval is split into.
pub const START_GROUP: usize = 20;
/// Time between two groups of first runs: 20 per 10 ms, 2,000 orgs per second.
pub const START_STEP: Duration = Duration::from_millis(10);

/// The plan of one org's runs.
pub struct Plan {
    pub schedule: Schedule,
    pub jitter: Duration,
    /// Interval plans: when the first run starts.
    pub first_run: Instant,
    /// Interval plans: later runs start at `phase + k * interval`, the first of them at least one
    /// interval after the first run.
    pub phase: Instant,
}

/// Plans for orgs that start together at `now` (at start, or added or changed by a reload), in
/// their config order. Why not all at `now`: a fleet on one interval would then fall due in the
/// same instant every time, queue behind the probe slots (lateness) and hit the API in bursts.
/// - First runs start in groups of [`START_GROUP`], one group per [`START_STEP`] (10,000 orgs
///   within 5 s; up to 20 orgs at once, as before).
/// - The orgs sharing an interval are split into groups of [`START_GROUP`] whose phases are
///   spread evenly over the interval. Up to 20 orgs per interval keep one phase, the start's.
///
/// Cron plans are unaffected: they run at the matches of their expression.
pub fn spread_plans(now: Instant, orgs: &[(Schedule, Duration)]) -> Vec<Plan> {
    let mut per_interval: HashMap<Duration, usize> = HashMap::new();
    for (schedule, _) in orgs {
        if let Schedule::Interval(interval) = schedule {
            *per_interval.entry(*interval).or_default() += 1;
        }
    }
    let mut seen_per_interval: HashMap<Duration, usize> = HashMap::new();
    let mut started = 0;
    orgs.iter()
        .map(|(schedule, jitter)| {
            let (mut first_run, mut phase) = (now, now);
            if let Schedule::Interval(interval) = schedule {
                first_run = clock::after(
                    now,
                    clock::times(START_STEP, (started / START_GROUP) as u64),
                );
                started += 1;
                let seen = seen_per_interval.entry(*interval).or_default();
                let groups = per_interval[interval].div_ceil(START_GROUP);
                let group = *seen / START_GROUP;
                *seen += 1;
                phase = clock::after(now, clock::fraction(*interval, group as u64, groups as u64));
            }
            Plan {
                schedule: schedule.clone(),
                jitter: *jitter,
                first_run,
                phase,
            }
        })
        .collect()
}

impl Plan {
    /// The first planned start at or after `now` for an interval plan, and how many planned starts
    /// before it were passed over since `after`.
    fn next_interval(
        &self,
        interval: Duration,
        after: Option<Instant>,
        now: Instant,
    ) -> (Instant, u64) {
        let Some(previous) = after else {
            // First run: as planned, or at the next tick of its phase if a whole interval has
            // passed since.
            if now < clock::after(self.first_run, interval) {
                return (self.first_run, 0);
            }
            return (self.first_tick_at_or_after(interval, now), 0);
        };
        let next = self.first_tick_at_or_after(interval, clock::after(previous, interval));
        if next >= now {
            return (next, 0);
        }
        let ticks = ticks_until(next, interval, now);
        (clock::after(next, clock::times(interval, ticks)), ticks)
    }

    /// The first tick of the phase (`phase + k * interval`, k ≥ 0) at or after `at`.
    fn first_tick_at_or_after(&self, interval: Duration, at: Instant) -> Instant {
        if at <= self.phase {
            return self.phase;
        }
        let ticks = ticks_until(self.phase, interval, at);
        clock::after(self.phase, clock::times(interval, ticks))
    }
}

/// How many whole intervals from `from` are needed to reach `now` or later.
fn ticks_until(from: Instant, interval: Duration, now: Instant) -> u64 {
    let behind = now.saturating_duration_since(from).as_nanos();
    let step = interval.as_nanos().max(1);
    u64::try_from(behind.div_ceil(step)).unwrap_or(u64::MAX)
}

/// The next cron occurrence after `now_wall`, as a monotonic deadline.
fn next_cron(cron: &CronSchedule, now_wall: SystemTime, now: Instant) -> Option<Instant> {
    let at = cron.next_after(now_wall)?;
    let wait = at.duration_since(now_wall).unwrap_or(Duration::ZERO);
    Some(clock::after(now, wait))
}

/// Runs `run` on `plan` until `shutdown` is raised. A run in progress is finished first. Each run
/// first takes one of the shared `slots` (which bound the probes in flight across all orgs);
/// lateness is measured when the run really starts, after its slot, so a saturated exporter shows.
///
/// `name` names the org in logs. A plain function returning the future, not an `async fn`: an
/// `async fn` keeps its arguments twice (as passed and as moved into its body), and this future
/// lives in every org's task.
#[allow(clippy::manual_async_fn)] // on purpose: see above
pub fn run_schedule<F, Fut>(
    plan: Plan,
    name: impl fmt::Display,
    lateness: Histogram,
    shutdown: StopSignal,
    slots: Arc<Semaphore>,
    mut run: F,
) -> impl Future<Output = ()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()>,
{
    async move {
        let mut previous: Option<Instant> = None;
        loop {
            let now = Instant::now();
            let planned = match &plan.schedule {
                Schedule::Interval(interval) => {
                    let (planned, skipped) = plan.next_interval(*interval, previous, now);
                    if skipped > 0 {
                        tracing::debug!(org = %name, skipped, "run still going when due; skipped");
                    }
                    planned
                }
                Schedule::Cron(cron) => {
                    let now_wall = SystemTime::now();
                    if let Some(previous) = previous {
                        // The run took past at least one occurrence: those are skipped.
                        let missed = previous_cron_occurrence_missed(cron, previous, now, now_wall);
                        if missed {
                            tracing::debug!(org = %name, "run still going when due; skipped");
                        }
                    }
                    match next_cron(cron, now_wall, now) {
                        Some(at) => at,
                        None => {
                            tracing::warn!(org = %name, expression = %cron.expression, "cron expression has no future occurrence; not scheduling");
                            shutdown.stopped().await;
                            return;
                        }
                    }
                }
            };
            let start_at = clock::after(planned, random::up_to(plan.jitter));
            tokio::select! {
                biased;
                _ = shutdown.stopped() => return,
                _ = tokio::time::sleep_until(start_at) => {}
            }
            // Waiting for a slot gives way to shutdown: a queued run is dropped, not started.
            let slot = tokio::select! {
                biased;
                _ = shutdown.stopped() => return,
                slot = slots.acquire() => slot,
            };
            lateness.observe(start_at.elapsed().as_secs_f64());
            previous = Some(planned);
            run().await;
            drop(slot);
            if shutdown.is_stopped() {
                return;
            }
        }
    }
}

/// Whether a cron occurrence fell between the previous planned start and now.
fn previous_cron_occurrence_missed(
    cron: &CronSchedule,
    previous: Instant,
    now: Instant,
    now_wall: SystemTime,
) -> bool {
    let since = now.saturating_duration_since(previous);
    let previous_wall = now_wall.checked_sub(since).unwrap_or(now_wall);
    cron.next_after(previous_wall)
        .is_some_and(|next| next < now_wall)
}

#[cfg(test)]
mod tests;
