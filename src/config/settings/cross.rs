//! The checks that involve two settings at once: jitter against interval, the refresh margin
//! against the token's maximum age, the credential check against the token spacing.

use std::time::Duration;

use super::super::report::Problems;
use super::super::Schedule;
use super::slot::{Source, Sourced};

/// The values that are checked against each other.
pub(super) struct Pairs<'a> {
    pub schedule: Option<&'a Sourced<Schedule>>,
    pub jitter: Option<&'a Sourced<Duration>>,
    pub margin: Option<&'a Sourced<Duration>>,
    pub max_age: Option<&'a Sourced<Duration>>,
    pub min_interval: Option<&'a Sourced<Duration>>,
    pub check: Option<&'a Sourced<Duration>>,
}

impl Pairs<'_> {
    /// jitter < interval, token_refresh_margin < token_max_age, and credential_check_interval
    /// zero or at least token_min_interval (a check more often than requests are allowed
    /// could never happen on time). Unless `check_all`, a pair
    /// is only checked when the org set one of its two values: pairs from `[defaults]` alone
    /// were checked once by [`Layer::check_defaults`](super::Layer::check_defaults).
    pub(super) fn check(&self, ctx: &str, check_all: bool, p: &mut Problems) {
        let here = |a: &Source, b: &Source| {
            check_all || matches!(a, Source::Org(_)) || matches!(b, Source::Org(_))
        };
        if let (Some(schedule), Some(jitter)) = (self.schedule, self.jitter) {
            if let Schedule::Interval(interval) = schedule.value {
                if jitter.value >= interval && here(&schedule.source, &jitter.source) {
                    p.at(
                        ctx,
                        format!(
                            "jitter ({}, {}) must be less than interval ({}, {})",
                            humantime::format_duration(jitter.value),
                            jitter.source,
                            humantime::format_duration(interval),
                            schedule.source
                        ),
                    );
                }
            }
        }
        if let (Some(margin), Some(max_age)) = (self.margin, self.max_age) {
            if margin.value >= max_age.value && here(&margin.source, &max_age.source) {
                p.at(
                    ctx,
                    format!(
                        "token_refresh_margin ({}, {}) must be less than token_max_age ({}, {})",
                        humantime::format_duration(margin.value),
                        margin.source,
                        humantime::format_duration(max_age.value),
                        max_age.source
                    ),
                );
            }
        }
        if let (Some(check), Some(min_interval)) = (self.check, self.min_interval) {
            let on = !check.value.is_zero();
            if on && check.value < min_interval.value && here(&check.source, &min_interval.source) {
                p.at(
                    ctx,
                    format!(
                        "credential_check_interval ({}, {}) must be at least token_min_interval \
                         ({}, {}), or \"0s\" to turn the check off",
                        humantime::format_duration(check.value),
                        check.source,
                        humantime::format_duration(min_interval.value),
                        min_interval.source
                    ),
                );
            }
        }
    }
}
