//! What each duration key accepts: the bound shared by all of them (365 days) and each key's
//! lower bound, with why. `check` and `run` both validate through [`bounded`], so they accept
//! exactly the same values.

use std::time::Duration;

/// The longest value any duration key accepts: 365 days. A longer interval or timeout cannot be
/// meant (a yearly probe already means "never"), and the bound keeps every deadline the agent
/// computes (now + interval, + jitter, + timeout) far from the clock's overflow.
pub(crate) const MAX_DURATION: Duration = Duration::from_secs(365 * 86400);
/// How `MAX_DURATION` is spelled in messages (humantime would print 365 days as "11months 30days
/// 3h 50m 24s": its year is 365.25 days).
const MAX_DURATION_TEXT: &str = "365 days";

/// What one duration key accepts, besides [`MAX_DURATION`].
#[derive(Clone, Copy)]
pub(super) struct Bounds {
    /// The smallest non-zero value.
    min: Duration,
    /// Whether "0s" is accepted (it means "none" or "off").
    zero_ok: bool,
}

/// `interval`: one probe (a token request, a ping, maybe a subscription check) per second and
/// org is already far more than a credential watch needs; below that a typo ("1ns") floods OBF.
pub(super) const INTERVAL_BOUNDS: Bounds = Bounds {
    min: Duration::from_secs(1),
    zero_ok: false,
};
/// `timeout`: a loopback round trip takes well under a millisecond, a TLS handshake to OBF tens
/// of milliseconds; below 100 ms every request would time out.
pub(super) const TIMEOUT_BOUNDS: Bounds = Bounds {
    min: Duration::from_millis(100),
    zero_ok: false,
};
/// `token_min_interval`: the server's own spacing is 10 s; below 100 ms the spacing rule would
/// not space anything.
pub(super) const TOKEN_MIN_INTERVAL_BOUNDS: Bounds = Bounds {
    min: Duration::from_millis(100),
    zero_ok: false,
};
/// `token_max_age`: a token reused for less than a second is a token per request.
pub(super) const TOKEN_MAX_AGE_BOUNDS: Bounds = Bounds {
    min: Duration::from_secs(1),
    zero_ok: false,
};
/// `subscription_check_interval`: "0s" turns the check off; otherwise at least a second, like
/// `interval` (the check runs at most once per run anyway).
pub(super) const SUBSCRIPTION_BOUNDS: Bounds = Bounds {
    min: Duration::from_secs(1),
    zero_ok: true,
};
/// `credential_check_interval`: "0s" turns the check off; when on, it must also be at least
/// `token_min_interval` (checked across keys).
pub(super) const CREDENTIAL_CHECK_BOUNDS: Bounds = Bounds {
    min: Duration::from_secs(1),
    zero_ok: true,
};
/// `jitter` and `token_refresh_margin`: zero is a fine value; only the upper bound applies
/// (and jitter < interval, margin < max age, checked across keys).
pub(super) const ANY_UP_TO_MAX: Bounds = Bounds {
    min: Duration::ZERO,
    zero_ok: true,
};

/// A humantime duration (`"90s"`, `"1h 30m"`).
pub(crate) fn duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text).map_err(|e| format!("invalid duration {text:?}: {e}"))
}

/// A duration within `bounds` and at most [`MAX_DURATION`]. `check` and `run` both validate
/// through here, so they accept exactly the same values.
pub(super) fn bounded(text: &str, bounds: Bounds) -> Result<Duration, String> {
    let value = duration(text)?;
    if value > MAX_DURATION {
        return Err(format!(
            "must be at most {MAX_DURATION_TEXT} (the longest duration any key accepts), got \
             {text:?}"
        ));
    }
    if value.is_zero() {
        return match bounds.zero_ok {
            true => Ok(value),
            false => Err(format!("must be greater than zero, got {text:?}")),
        };
    }
    if value < bounds.min {
        return Err(format!(
            "must be at least {}, got {text:?}",
            humantime::format_duration(bounds.min)
        ));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_use_humantime() {
        assert_eq!(duration("1h 30m"), Ok(Duration::from_secs(5400)));
        let err = duration("5").expect_err("no unit");
        assert!(err.starts_with("invalid duration \"5\": "), "{err}");
        assert!(bounded("0s", TIMEOUT_BOUNDS).is_err());
    }

    #[test]
    fn every_duration_key_has_an_upper_bound_of_a_year() {
        let all = [
            INTERVAL_BOUNDS,
            TIMEOUT_BOUNDS,
            TOKEN_MIN_INTERVAL_BOUNDS,
            TOKEN_MAX_AGE_BOUNDS,
            SUBSCRIPTION_BOUNDS,
            ANY_UP_TO_MAX,
        ];
        for bounds in all {
            assert_eq!(bounded("365days", bounds), Ok(MAX_DURATION));
            let err = bounded("400000000000y", bounds).unwrap_err();
            assert_eq!(
                err,
                "must be at most 365 days (the longest duration any key accepts), got \
                 \"400000000000y\""
            );
            assert!(bounded("366days", bounds).is_err());
        }
    }

    #[test]
    fn lower_bounds_name_the_minimum() {
        assert_eq!(
            bounded("1ns", INTERVAL_BOUNDS).unwrap_err(),
            "must be at least 1s, got \"1ns\""
        );
        assert_eq!(
            bounded("99ms", TIMEOUT_BOUNDS).unwrap_err(),
            "must be at least 100ms, got \"99ms\""
        );
        assert_eq!(bounded("1s", INTERVAL_BOUNDS), Ok(Duration::from_secs(1)));
        assert_eq!(
            bounded("100ms", TIMEOUT_BOUNDS),
            Ok(Duration::from_millis(100))
        );
        // "0s" turns the subscription check off, but 1 ms is a mistake.
        assert_eq!(bounded("0s", SUBSCRIPTION_BOUNDS), Ok(Duration::ZERO));
        assert!(bounded("1ms", SUBSCRIPTION_BOUNDS).is_err());
        assert_eq!(bounded("0s", ANY_UP_TO_MAX), Ok(Duration::ZERO));
    }
}
