//! When each org's runs start: a fixed interval or a cron expression (UTC), plus jitter.
//!
//! One tokio task per org sleeps until its next planned start. Runs of one org never overlap: a
//! start that falls due while a run is still going is skipped (logged at debug), so a slow API never
//! causes a burst. Orgs that start together ramp up and spread their phases over their interval
//! ([`spread_plans`]). It knows nothing about tokens or HTTP: it calls the run it is given.

use std::collections::HashMap;
use std::future::Future;
use std::time::{Duration, SystemTime};

use std::sync::Arc;

use prometheus::Histogram;
use tokio::sync::{watch, Semaphore};
use tokio::time::Instant;

use crate::config::{CronSchedule, Schedule};
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

/// Runs `run` on `plan` until `shutdown` turns true. A run in progress is finished first. Each run
/// first takes one of the shared `slots` (which bound the probes in flight across all orgs);
/// lateness is measured when the run really starts, after its slot, so a saturated exporter shows.
pub async fn run_schedule<F, Fut>(
    plan: Plan,
    name: &str,
    lateness: Histogram,
    mut shutdown: watch::Receiver<bool>,
    slots: Arc<Semaphore>,
    mut run: F,
) where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()>,
{
    let mut previous: Option<Instant> = None;
    loop {
        let now = Instant::now();
        let planned = match &plan.schedule {
            Schedule::Interval(interval) => {
                let (planned, skipped) = plan.next_interval(*interval, previous, now);
                if skipped > 0 {
                    tracing::debug!(org = name, skipped, "run still going when due; skipped");
                }
                planned
            }
            Schedule::Cron(cron) => {
                let now_wall = SystemTime::now();
                if let Some(previous) = previous {
                    // The run took past at least one occurrence: those are skipped.
                    let missed = previous_cron_occurrence_missed(cron, previous, now, now_wall);
                    if missed {
                        tracing::debug!(org = name, "run still going when due; skipped");
                    }
                }
                match next_cron(cron, now_wall, now) {
                    Some(at) => at,
                    None => {
                        tracing::warn!(org = name, expression = %cron.expression, "cron expression has no future occurrence; not scheduling");
                        let _ = shutdown.wait_for(|stop| *stop).await;
                        return;
                    }
                }
            }
        };
        let start_at = clock::after(planned, random::up_to(plan.jitter));
        tokio::select! {
            biased;
            _ = shutdown.wait_for(|stop| *stop) => return,
            _ = tokio::time::sleep_until(start_at) => {}
        }
        // Waiting for a slot gives way to shutdown: a queued run is dropped, not started.
        let slot = tokio::select! {
            biased;
            _ = shutdown.wait_for(|stop| *stop) => return,
            slot = slots.acquire() => slot,
        };
        lateness.observe(start_at.elapsed().as_secs_f64());
        previous = Some(planned);
        run().await;
        drop(slot);
        if *shutdown.borrow() {
            return;
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
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Mutex;

    fn lateness() -> Histogram {
        Histogram::with_opts(prometheus::HistogramOpts::new("lateness", "test")).unwrap()
    }

    fn plan(interval: Duration, jitter: Duration) -> Plan {
        let now = Instant::now();
        Plan {
            schedule: Schedule::Interval(interval),
            jitter,
            first_run: now,
            phase: now,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn interval_runs_start_at_once_then_every_interval() {
        let starts = Arc::new(Mutex::new(Vec::new()));
        let (stop, shutdown) = watch::channel(false);
        let begin = Instant::now();
        let recorded = starts.clone();
        let histogram = lateness();
        let task = tokio::spawn(run_schedule(
            plan(Duration::from_secs(10), Duration::ZERO),
            "acme",
            histogram.clone(),
            shutdown,
            Arc::new(Semaphore::new(4)),
            move || {
                let recorded = recorded.clone();
                async move { recorded.lock().unwrap().push(Instant::now() - begin) }
            },
        ));
        tokio::time::sleep(Duration::from_secs(35)).await;
        stop.send(true).unwrap();
        task.await.unwrap();
        let starts = starts.lock().unwrap().clone();
        let secs: Vec<u64> = starts.iter().map(|d| d.as_secs()).collect();
        assert_eq!(secs, vec![0, 10, 20, 30]);
        assert_eq!(histogram.get_sample_count(), 4);
        assert!(histogram.get_sample_sum() < 0.001);
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_run_skips_the_ticks_it_overlaps_instead_of_bursting() {
        let starts = Arc::new(Mutex::new(Vec::new()));
        let running = Arc::new(AtomicU32::new(0));
        let (stop, shutdown) = watch::channel(false);
        let begin = Instant::now();
        let (recorded, concurrent) = (starts.clone(), running.clone());
        let task = tokio::spawn(run_schedule(
            plan(Duration::from_secs(1), Duration::ZERO),
            "slow",
            lateness(),
            shutdown,
            Arc::new(Semaphore::new(4)),
            move || {
                let (recorded, concurrent) = (recorded.clone(), concurrent.clone());
                async move {
                    assert_eq!(
                        concurrent.fetch_add(1, Ordering::SeqCst),
                        0,
                        "runs overlapped"
                    );
                    recorded
                        .lock()
                        .unwrap()
                        .push((Instant::now() - begin).as_millis());
                    tokio::time::sleep(Duration::from_millis(2500)).await;
                    concurrent.fetch_sub(1, Ordering::SeqCst);
                }
            },
        ));
        tokio::time::sleep(Duration::from_millis(9500)).await;
        stop.send(true).unwrap();
        task.await.unwrap();
        // Runs last 2.5 s: the ticks at 1 and 2 s are skipped, the next starts at 3 s, and so on.
        assert_eq!(*starts.lock().unwrap(), vec![0, 3000, 6000, 9000]);
    }

    #[tokio::test(start_paused = true)]
    async fn jitter_delays_each_start_within_its_bound_and_is_not_lateness() {
        let starts = Arc::new(Mutex::new(Vec::new()));
        let (stop, shutdown) = watch::channel(false);
        let begin = Instant::now();
        let recorded = starts.clone();
        let histogram = lateness();
        let task = tokio::spawn(run_schedule(
            plan(Duration::from_secs(10), Duration::from_secs(3)),
            "jittery",
            histogram.clone(),
            shutdown,
            Arc::new(Semaphore::new(4)),
            move || {
                let recorded = recorded.clone();
                async move { recorded.lock().unwrap().push(Instant::now() - begin) }
            },
        ));
        tokio::time::sleep(Duration::from_secs(100)).await;
        stop.send(true).unwrap();
        task.await.unwrap();
        let starts = starts.lock().unwrap().clone();
        assert_eq!(starts.len(), 10);
        for (k, start) in starts.iter().enumerate() {
            let planned = Duration::from_secs(10 * k as u64);
            assert!(*start >= planned && *start <= planned + Duration::from_secs(3));
        }
        // Only the timer's 1 ms granularity shows as lateness.
        assert!(histogram.get_sample_sum() / (histogram.get_sample_count() as f64) < 0.002);
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_lets_the_run_in_progress_finish() {
        let finished = Arc::new(AtomicU32::new(0));
        let (stop, shutdown) = watch::channel(false);
        let done = finished.clone();
        let task = tokio::spawn(run_schedule(
            plan(Duration::from_secs(60), Duration::ZERO),
            "acme",
            lateness(),
            shutdown,
            Arc::new(Semaphore::new(4)),
            move || {
                let done = done.clone();
                async move {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    done.fetch_add(1, Ordering::SeqCst);
                }
            },
        ));
        tokio::time::sleep(Duration::from_secs(1)).await;
        stop.send(true).unwrap();
        task.await.unwrap();
        assert_eq!(finished.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn interval_plans_keep_their_phase() {
        let anchor = Instant::now();
        let plan = Plan {
            schedule: Schedule::Interval(Duration::from_secs(10)),
            jitter: Duration::ZERO,
            first_run: anchor,
            phase: anchor,
        };
        let every = Duration::from_secs(10);
        // A plan whose anchor passed starts at the next tick of its phase, not at once.
        let (first, _) = plan.next_interval(every, None, anchor + Duration::from_secs(25));
        assert_eq!(first, anchor + Duration::from_secs(30));
        let (next, skipped) =
            plan.next_interval(every, Some(anchor), anchor + Duration::from_secs(31));
        assert_eq!((next, skipped), (anchor + Duration::from_secs(40), 3));
    }

    #[test]
    fn a_small_fleet_starts_at_once_on_one_phase() {
        let now = Instant::now();
        let every = Schedule::Interval(Duration::from_secs(60));
        let plans = spread_plans(now, &vec![(every, Duration::ZERO); START_GROUP]);
        assert!(plans.iter().all(|p| p.first_run == now && p.phase == now));
    }

    #[test]
    fn a_large_fleet_ramps_up_and_spreads_each_interval_over_itself() {
        let now = Instant::now();
        let minute = Schedule::Interval(Duration::from_secs(60));
        let ten = Schedule::Interval(Duration::from_secs(10));
        let cron = Schedule::Cron(CronSchedule::parse("0 * * * * *").unwrap());
        // 45 orgs every minute, then a cron org, then 25 orgs every 10 s.
        let mut orgs = vec![(minute, Duration::ZERO); 45];
        orgs.push((cron, Duration::ZERO));
        orgs.extend(vec![(ten, Duration::ZERO); 25]);
        let plans = spread_plans(now, &orgs);
        let ms = |at: Instant| (at - now).as_millis();
        let firsts: Vec<u128> = plans.iter().map(|p| ms(p.first_run)).collect();
        let phases: Vec<u128> = plans.iter().map(|p| ms(p.phase)).collect();
        // First runs: 20 per 10 ms across intervals; the cron org is not counted.
        assert_eq!(
            &firsts[..45],
            [[0; 20], [10; 20]]
                .concat()
                .iter()
                .chain(&[20; 5])
                .copied()
                .collect::<Vec<_>>()
        );
        assert_eq!(firsts[45], 0);
        assert_eq!(&firsts[46..], [vec![20; 15], vec![30; 10]].concat());
        // Phases: three groups over the minute, two over the 10 s.
        assert_eq!(
            &phases[..45],
            [vec![0; 20], vec![20_000; 20], vec![40_000; 5]].concat()
        );
        assert_eq!(&phases[46..], [vec![0; 20], vec![5_000; 5]].concat());
    }

    #[test]
    fn the_second_run_waits_a_whole_interval_then_keeps_the_phase() {
        let now = Instant::now();
        let plan = Plan {
            schedule: Schedule::Interval(Duration::from_secs(10)),
            jitter: Duration::ZERO,
            first_run: now + Duration::from_millis(30),
            phase: now + Duration::from_secs(7),
        };
        let every = Duration::from_secs(10);
        let (first, _) = plan.next_interval(every, None, now);
        assert_eq!(first, now + Duration::from_millis(30));
        // Not at 7 s (too soon after the first run) but at 17 s, then every 10 s.
        let (second, skipped) = plan.next_interval(every, Some(first), first);
        assert_eq!((second - now, skipped), (Duration::from_secs(17), 0));
        let (third, _) = plan.next_interval(every, Some(second), second);
        assert_eq!(third - now, Duration::from_secs(27));
    }

    #[tokio::test(start_paused = true)]
    async fn spread_orgs_run_on_their_phase_and_are_never_late() {
        let begin = Instant::now();
        let orgs =
            vec![(Schedule::Interval(Duration::from_secs(10)), Duration::ZERO); 2 * START_GROUP];
        let plans = spread_plans(begin, &orgs);
        let starts = Arc::new(Mutex::new(Vec::new()));
        let (stop, shutdown) = watch::channel(false);
        let histogram = lateness();
        let slots = Arc::new(Semaphore::new(64));
        let mut tasks = Vec::new();
        for (index, plan) in plans.into_iter().enumerate() {
            let recorded = starts.clone();
            tasks.push(tokio::spawn(run_schedule(
                plan,
                "org",
                histogram.clone(),
                shutdown.clone(),
                slots.clone(),
                move || {
                    let recorded = recorded.clone();
                    async move {
                        recorded
                            .lock()
                            .unwrap()
                            .push((index, (Instant::now() - begin).as_millis()))
                    }
                },
            )));
        }
        tokio::time::sleep(Duration::from_millis(25_500)).await;
        stop.send(true).unwrap();
        for task in tasks {
            task.await.unwrap();
        }
        let starts = starts.lock().unwrap().clone();
        let of = |index: usize| -> Vec<u128> {
            starts
                .iter()
                .filter(|(i, _)| *i == index)
                .map(|(_, at)| *at)
                .collect()
        };
        // Group 0: first run at 0, phase 0. Group 1: first run at 10 ms, phase 5 s.
        assert_eq!(of(0), vec![0, 10_000, 20_000]);
        assert_eq!(of(START_GROUP), vec![10, 15_000, 25_000]);
        assert_eq!(histogram.get_sample_count(), 40 + 20 + 20 + 20 + 20);
        assert!(histogram.get_sample_sum() < 0.001);
    }

    proptest::proptest! {
        /// No interval, phase or elapsed time makes the plan arithmetic panic.
        #[test]
        fn plan_arithmetic_never_panics(
            interval_secs in proptest::prelude::any::<u64>(),
            nanos in 0u32..1_000_000_000,
            offset_secs in 0u64..(1 << 40),
            count in 1usize..200,
        ) {
            let interval = Duration::new(interval_secs, nanos).max(Duration::from_nanos(1));
            let now = Instant::now();
            let plans = spread_plans(now, &vec![(Schedule::Interval(interval), interval); count]);
            let later = clock::after(now, Duration::from_secs(offset_secs));
            for plan in &plans {
                let (first, _) = plan.next_interval(interval, None, later);
                let (next, _) = plan.next_interval(interval, Some(first), later);
                proptest::prop_assert!(next >= first);
            }
        }
    }

    #[test]
    fn cron_deadlines_follow_the_wall_clock_in_utc() {
        let cron = CronSchedule::parse("0 */5 * * * *").unwrap();
        // 2026-01-01T00:01:30Z
        let wall = SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_225_690);
        let now = Instant::now();
        let at = next_cron(&cron, wall, now).unwrap();
        assert_eq!(at - now, Duration::from_secs(210));
        // The previous start at 00:00:00 with "now" at 00:06:00 passed over 00:05:00; a previous
        // start at 00:05:00 passed over nothing.
        let now_wall = SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_225_960);
        let previous = now - Duration::from_secs(360);
        assert!(previous_cron_occurrence_missed(
            &cron, previous, now, now_wall
        ));
        assert!(!previous_cron_occurrence_missed(
            &cron,
            now - Duration::from_secs(60),
            now,
            now_wall
        ));
    }
}
