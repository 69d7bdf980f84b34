//! Time arithmetic that cannot panic: deadlines saturate at "far in the future" instead of
//! overflowing. Every `Instant`/`SystemTime` + `Duration` the agent computes from configured or
//! server-provided values goes through here. It knows nothing about what the times are for.

use std::time::{Duration, SystemTime};

use tokio::time::Instant;

/// Later than anything the agent plans (config durations are at most a year), and far below
/// where any clock overflows. tokio's own "far future" is 30 years too.
pub const FAR: Duration = Duration::from_secs(30 * 365 * 86400);

/// `at + wait`, with `wait` cut to [`FAR`]: a deadline that is never reached rather than a panic.
pub fn after(at: Instant, wait: Duration) -> Instant {
    // `at + FAR` can only fail on a clock some 30 years from overflowing: then keep `at`.
    at.checked_add(wait.min(FAR)).unwrap_or(at)
}

/// `at + wait` on the wall clock, with `wait` cut to [`FAR`].
pub fn wall_after(at: SystemTime, wait: Duration) -> SystemTime {
    at.checked_add(wait.min(FAR)).unwrap_or(at)
}

/// `step * count`, saturating at [`Duration::MAX`].
pub fn times(step: Duration, count: u64) -> Duration {
    let nanos = step.as_nanos().saturating_mul(u128::from(count));
    from_nanos(nanos)
}

/// `whole * numerator / denominator` (a fraction of `whole`, e.g. a phase), exact to the
/// nanosecond and saturating; `whole` when `denominator` is 0.
pub fn fraction(whole: Duration, numerator: u64, denominator: u64) -> Duration {
    if denominator == 0 {
        return whole;
    }
    let (nanos, n, d) = (
        whole.as_nanos(),
        u128::from(numerator),
        u128::from(denominator),
    );
    // Split so no product overflows: `r * n < d * n < 2^128`.
    let (q, r) = (nanos / d, nanos % d);
    from_nanos(q.saturating_mul(n).saturating_add(r * n / d))
}

fn from_nanos(nanos: u128) -> Duration {
    const NANOS_PER_SEC: u128 = 1_000_000_000;
    match u64::try_from(nanos / NANOS_PER_SEC) {
        // The remainder is below 10^9, so it fits a u32.
        Ok(secs) => Duration::new(secs, (nanos % NANOS_PER_SEC) as u32),
        Err(_) => Duration::MAX,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn huge_waits_saturate_at_far() {
        let now = Instant::now();
        assert_eq!(after(now, Duration::MAX), now + FAR);
        assert_eq!(
            after(now, Duration::from_secs(5)),
            now + Duration::from_secs(5)
        );
        let wall = SystemTime::now();
        assert_eq!(wall_after(wall, Duration::MAX), wall + FAR);
    }

    #[test]
    fn products_saturate_and_fractions_are_exact() {
        assert_eq!(times(Duration::MAX, 2), Duration::MAX);
        assert_eq!(times(Duration::from_secs(10), 3), Duration::from_secs(30));
        assert_eq!(
            fraction(Duration::from_secs(60), 1, 3),
            Duration::from_secs(20)
        );
        assert_eq!(fraction(Duration::MAX, u64::MAX, u64::MAX), Duration::MAX);
        assert_eq!(
            fraction(Duration::from_secs(1), 1, 0),
            Duration::from_secs(1)
        );
    }

    proptest! {
        #[test]
        fn no_input_panics(secs in any::<u64>(), nanos in 0u32..1_000_000_000, k in any::<u64>(), d in any::<u64>()) {
            let step = Duration::new(secs, nanos);
            let now = Instant::now();
            prop_assert!(after(now, step) >= now);
            prop_assert!(wall_after(SystemTime::now(), step) >= SystemTime::UNIX_EPOCH);
            let product = times(step, k);
            prop_assert!(product >= step || k == 0);
            prop_assert!(fraction(step, k.min(d), d) <= step);
        }
    }
}
