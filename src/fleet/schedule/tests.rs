//! Planning and running schedules under a paused clock: intervals, cron, jitter, skipped starts,
//! lateness and the phase spread of orgs that start together.

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
    let stop = StopSignal::new();
    let shutdown = stop.clone();
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
    stop.stop();
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
    let stop = StopSignal::new();
    let shutdown = stop.clone();
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
    stop.stop();
    task.await.unwrap();
    // Runs last 2.5 s: the ticks at 1 and 2 s are skipped, the next starts at 3 s, and so on.
    assert_eq!(*starts.lock().unwrap(), vec![0, 3000, 6000, 9000]);
}

#[tokio::test(start_paused = true)]
async fn jitter_delays_each_start_within_its_bound_and_is_not_lateness() {
    let starts = Arc::new(Mutex::new(Vec::new()));
    let stop = StopSignal::new();
    let shutdown = stop.clone();
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
    stop.stop();
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
    let stop = StopSignal::new();
    let shutdown = stop.clone();
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
    stop.stop();
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
    let (next, skipped) = plan.next_interval(every, Some(anchor), anchor + Duration::from_secs(31));
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
    let orgs = vec![(Schedule::Interval(Duration::from_secs(10)), Duration::ZERO); 2 * START_GROUP];
    let plans = spread_plans(begin, &orgs);
    let starts = Arc::new(Mutex::new(Vec::new()));
    let stop = StopSignal::new();
    let shutdown = stop.clone();
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
    stop.stop();
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
