//! A small, non-cryptographic random source for jitter (schedule start, backoff).
//!
//! Jitter only has to spread load; it needs no cryptographic quality, so we avoid a `rand`
//! dependency and mix a per-process random seed with a counter.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

static COUNTER: AtomicU64 = AtomicU64::new(0);

fn seed() -> &'static RandomState {
    static SEED: OnceLock<RandomState> = OnceLock::new();
    SEED.get_or_init(RandomState::new)
}

/// A uniformly distributed value in `[0, 1)`.
pub fn unit() -> f64 {
    let mut hasher = seed().build_hasher();
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    // The top 53 bits fill an f64 mantissa exactly.
    (hasher.finish() >> 11) as f64 / (1u64 << 53) as f64
}

/// A duration uniformly distributed in `[0, max]`.
pub fn up_to(max: Duration) -> Duration {
    if max.is_zero() {
        return Duration::ZERO;
    }
    // Not `mul_f64`: it panics when rounding lands above `Duration::MAX`.
    Duration::try_from_secs_f64(max.as_secs_f64() * unit())
        .unwrap_or(max)
        .min(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_stays_in_range_and_varies() {
        let values: Vec<f64> = (0..1000).map(|_| unit()).collect();
        assert!(values.iter().all(|v| (0.0..1.0).contains(v)));
        let mean = values.iter().sum::<f64>() / values.len() as f64;
        assert!((0.4..0.6).contains(&mean), "mean {mean}");
    }

    #[test]
    fn up_to_respects_bound() {
        assert_eq!(up_to(Duration::ZERO), Duration::ZERO);
        for _ in 0..100 {
            assert!(up_to(Duration::from_secs(5)) <= Duration::from_secs(5));
        }
    }
}
