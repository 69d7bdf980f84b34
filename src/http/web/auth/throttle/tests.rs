//! The throttle on a paused clock: lock-outs, the one-at-a-time slot, the bounded table.

use std::net::Ipv6Addr;

use super::*;

const A: Source = Source::V4(Ipv4Addr::new(127, 0, 0, 2));
const B: Source = Source::V4(Ipv4Addr::new(127, 0, 0, 1));

fn fail_times(throttle: &Throttle, source: Source, n: usize) {
    for _ in 0..n {
        throttle.record(source, false);
    }
}

fn locked_for(throttle: &Throttle, source: Source) -> Option<Duration> {
    match throttle.enter(source) {
        Err(Refusal::LockedOut(left)) => Some(left),
        Err(Refusal::Busy) => panic!("unexpected Busy"),
        Ok(_) => None,
    }
}

#[test]
fn sources_are_ipv4_addresses_and_ipv6_slash_64s() {
    let v4: IpAddr = "192.0.2.7".parse().unwrap();
    let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
    assert_eq!(Source::of(Some(v4)), Source::of(Some(mapped)));
    assert_eq!(Source::of(Some(v4)).to_string(), "192.0.2.7");

    let host1: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
    let host2: IpAddr = "2001:db8:1:2:ffff:ffff:ffff:ffff".parse().unwrap();
    let other: IpAddr = "2001:db8:1:3::1".parse().unwrap();
    assert_eq!(Source::of(Some(host1)), Source::of(Some(host2)));
    assert_ne!(Source::of(Some(host1)), Source::of(Some(other)));
    assert_eq!(Source::of(Some(host1)).to_string(), "2001:db8:1:2::/64");
    assert_eq!(
        Source::of(Some(IpAddr::V6(Ipv6Addr::LOCALHOST))).to_string(),
        "::/64"
    );
    assert_eq!(Source::of(None), Source::Unknown);
    assert_eq!(Source::Unknown.to_string(), "unknown");
}

#[test]
fn retry_after_is_whole_seconds_rounded_up() {
    assert_eq!(
        Refusal::LockedOut(Duration::from_millis(1)).retry_after_secs(),
        1
    );
    assert_eq!(
        Refusal::LockedOut(Duration::from_millis(1500)).retry_after_secs(),
        2
    );
    assert_eq!(
        Refusal::LockedOut(Duration::from_secs(60)).retry_after_secs(),
        60
    );
    assert_eq!(Refusal::LockedOut(Duration::ZERO).retry_after_secs(), 1);
    assert_eq!(Refusal::Busy.retry_after_secs(), 1);
}

#[tokio::test(start_paused = true)]
async fn five_failures_lock_out_for_a_second_then_each_failure_doubles_up_to_a_minute() {
    let throttle = Throttle::new(MAX_SOURCES);
    fail_times(&throttle, A, FAILURES_BEFORE_LOCKOUT - 1);
    assert_eq!(locked_for(&throttle, A), None, "four failures are allowed");
    fail_times(&throttle, A, 1);
    assert_eq!(locked_for(&throttle, A), Some(FIRST_LOCKOUT));
    assert_eq!(
        locked_for(&throttle, B),
        None,
        "other sources are not affected"
    );

    let mut expected = FIRST_LOCKOUT;
    for _ in 0..10 {
        tokio::time::advance(expected).await;
        assert_eq!(locked_for(&throttle, A), None, "the lock-out ends");
        fail_times(&throttle, A, 1);
        expected = (expected * 2).min(MAX_LOCKOUT);
        assert_eq!(locked_for(&throttle, A), Some(expected), "one more failure");
    }
    assert_eq!(expected, MAX_LOCKOUT);
}

#[tokio::test(start_paused = true)]
async fn failures_spread_over_more_than_the_window_do_not_lock_out() {
    let throttle = Throttle::new(MAX_SOURCES);
    for _ in 0..3 * FAILURES_BEFORE_LOCKOUT {
        fail_times(&throttle, A, 1);
        assert_eq!(locked_for(&throttle, A), None);
        tokio::time::advance(FAILURE_WINDOW / (FAILURES_BEFORE_LOCKOUT as u32 - 1)).await;
    }
}

#[tokio::test(start_paused = true)]
async fn a_success_or_a_quiet_spell_clears_the_record() {
    let throttle = Throttle::new(MAX_SOURCES);
    fail_times(&throttle, A, FAILURES_BEFORE_LOCKOUT);
    tokio::time::advance(FIRST_LOCKOUT).await;
    throttle.record(A, true);
    fail_times(&throttle, A, FAILURES_BEFORE_LOCKOUT - 1);
    assert_eq!(locked_for(&throttle, A), None, "back to five free failures");

    fail_times(&throttle, A, 1);
    tokio::time::advance(FIRST_LOCKOUT).await;
    fail_times(&throttle, A, 1);
    assert_eq!(locked_for(&throttle, A), Some(2 * FIRST_LOCKOUT));
    tokio::time::advance(FORGET_AFTER).await;
    fail_times(&throttle, A, 1);
    assert_eq!(locked_for(&throttle, A), None, "escalation forgotten");
}

#[tokio::test(start_paused = true)]
async fn one_verification_per_source_at_a_time_in_arrival_order() {
    let throttle = Arc::new(Throttle::new(MAX_SOURCES));
    let first = throttle.turn(throttle.enter(A).unwrap()).await.unwrap();

    let (order_tx, mut order_rx) = tokio::sync::mpsc::unbounded_channel();
    let mut waiters = Vec::new();
    for i in 0..3 {
        let ticket = throttle.enter(A).unwrap();
        let (throttle, order_tx) = (throttle.clone(), order_tx.clone());
        waiters.push(tokio::spawn(async move {
            let turn = throttle.turn(ticket).await.unwrap();
            order_tx.send(i).unwrap();
            tokio::time::sleep(Duration::from_millis(10)).await;
            drop(turn);
        }));
        tokio::task::yield_now().await;
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(order_rx.try_recv().is_err(), "all wait for the first");

    // Another source is not held up.
    let other = tokio::time::timeout(
        Duration::from_millis(1),
        throttle.turn(throttle.enter(B).unwrap()),
    )
    .await;
    assert!(matches!(other, Ok(Ok(_))));

    drop(first);
    for waiter in waiters {
        waiter.await.unwrap();
    }
    let order: Vec<i32> = std::iter::from_fn(|| order_rx.try_recv().ok()).collect();
    assert_eq!(order, [0, 1, 2]);
}

#[tokio::test(start_paused = true)]
async fn pending_requests_per_source_are_bounded() {
    let throttle = Throttle::new(MAX_SOURCES);
    let tickets: Vec<Ticket> = (0..MAX_PENDING_PER_SOURCE)
        .map(|_| throttle.enter(A).unwrap())
        .collect();
    assert_eq!(throttle.enter(A).err(), Some(Refusal::Busy));
    assert!(throttle.enter(B).is_ok(), "per source");
    drop(tickets);
    assert!(throttle.enter(A).is_ok(), "free again once they are done");
}

#[tokio::test(start_paused = true)]
async fn waiters_are_refused_without_a_turn_when_a_lockout_starts_meanwhile() {
    let throttle = Arc::new(Throttle::new(MAX_SOURCES));
    let first = throttle.turn(throttle.enter(A).unwrap()).await.unwrap();
    let waiting = throttle.enter(A).unwrap();
    let waiter = {
        let throttle = throttle.clone();
        tokio::spawn(async move { throttle.turn(waiting).await.map(|_| ()) })
    };
    tokio::task::yield_now().await;
    fail_times(&throttle, A, FAILURES_BEFORE_LOCKOUT);
    drop(first);
    assert_eq!(
        waiter.await.unwrap(),
        Err(Refusal::LockedOut(FIRST_LOCKOUT))
    );
}

#[tokio::test(start_paused = true)]
async fn the_table_is_bounded_dropping_forgettable_sources_first_then_the_oldest() {
    let throttle = Throttle::new(3);
    let source = |i: u8| Source::V4(Ipv4Addr::new(10, 0, 0, i));
    let tick = || tokio::time::advance(Duration::from_millis(1));
    fail_times(&throttle, source(1), FAILURES_BEFORE_LOCKOUT);
    tick().await;
    fail_times(&throttle, source(2), FAILURES_BEFORE_LOCKOUT);
    tick().await;
    throttle.record(source(3), true);
    tick().await;

    throttle.record(source(4), false);
    let known = |i| throttle.knows(source(i));
    assert_eq!(
        [known(1), known(2), known(3), known(4)],
        [true, true, false, true],
        "3 had nothing worth keeping"
    );
    tick().await;
    throttle.record(source(5), false);
    assert_eq!(
        [known(1), known(2), known(4), known(5)],
        [false, true, true, true],
        "then the least recently seen goes"
    );

    for i in 6..=255 {
        throttle.record(source(i), false);
    }
    assert_eq!(throttle.len(), 3, "a spray of addresses stays bounded");
}

#[test]
fn warnings_come_at_most_every_ten_seconds_and_count_what_they_held_back() {
    let start = Instant::now();
    let mut limit = WarnLimit::default();
    assert_eq!(limit.due(start), Some(1));
    for ms in [1, 1000, 9999] {
        assert_eq!(limit.due(start + Duration::from_millis(ms)), None);
    }
    assert_eq!(limit.due(start + WARN_EVERY), Some(4));
    assert_eq!(limit.due(start + WARN_EVERY * 3), Some(1));
}

#[tokio::test(start_paused = true)]
async fn a_full_table_of_active_sources_drops_its_oldest_sixteenth_at_once() {
    let throttle = Throttle::new(32);
    let source = |i: u8| Source::V4(Ipv4Addr::new(10, 0, 1, i));
    for i in 0..32 {
        throttle.record(source(i), false);
        tokio::time::advance(Duration::from_millis(1)).await;
    }
    throttle.record(source(32), false);
    assert_eq!(throttle.len(), 31);
    assert!(!throttle.knows(source(0)) && !throttle.knows(source(1)));
    assert!(throttle.knows(source(2)) && throttle.knows(source(32)));
}
