//! When an org is probed: a fixed interval or a cron expression (six fields, seconds first,
//! evaluated in UTC). Parsing and next-run arithmetic live here; the scheduler that sleeps
//! on them does not.

use std::fmt;
use std::time::{Duration, SystemTime};

use chrono::{DateTime, Utc};
use croner::parser::{CronParser, Seconds, Year};
use croner::Cron;

/// How often an org is probed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Schedule {
    /// Every this long (never zero).
    Interval(Duration),
    /// At each match of a cron expression, in UTC.
    Cron(CronSchedule),
}

/// A parsed cron expression with the text it came from.
#[derive(Clone)]
pub struct CronSchedule {
    /// The expression as written in the config.
    pub expression: String,
    /// Boxed: a parsed pattern is a few hundred bytes, and `Schedule` is passed around by value.
    cron: Box<Cron>,
}

impl CronSchedule {
    /// Parses a six-field expression (`sec min hour day-of-month month day-of-week`).
    ///
    /// Five-field (classic crontab) expressions are refused rather than silently given a
    /// seconds field, so `*/5 * * * *` cannot be misread as "every 5 minutes" by one reader
    /// and "every 5 seconds" by another.
    pub fn parse(expression: &str) -> Result<Self, String> {
        let fields = expression.split_whitespace().count();
        let is_nickname = expression.trim_start().starts_with('@');
        if !is_nickname && fields != 6 {
            return Err(format!(
                "invalid cron expression {expression:?}: has {fields} fields, expected 6 fields, \
                 seconds first (e.g. \"0 */5 * * * *\" for every 5 minutes)"
            ));
        }
        let parser = CronParser::builder()
            .seconds(Seconds::Required)
            .year(Year::Disallowed)
            .build();
        let cron = parser.parse(expression).map_err(|e| {
            format!("invalid cron expression {expression:?} (6 fields, seconds first): {e}")
        })?;
        // A pattern that can never fire (e.g. 30 February) parses fine; catch it here
        // rather than leave the org silently unscheduled.
        let probe_from =
            DateTime::<Utc>::from(SystemTime::UNIX_EPOCH + Duration::from_secs(1 << 30));
        if cron.find_next_occurrence(&probe_from, false).is_err() {
            return Err(format!(
                "cron expression {expression:?} never matches any time"
            ));
        }
        Ok(Self {
            expression: expression.to_owned(),
            cron: Box::new(cron),
        })
    }

    /// The first matching time strictly after `t`, in UTC; `None` if there is none.
    pub fn next_after(&self, t: SystemTime) -> Option<SystemTime> {
        let from = DateTime::<Utc>::from(t);
        let next = self.cron.find_next_occurrence(&from, false).ok()?;
        // croner works in whole seconds; make "strictly after" hold for sub-second `t` too.
        if next > from {
            Some(next.into())
        } else {
            let later = from.checked_add_signed(chrono::TimeDelta::seconds(1))?;
            self.cron
                .find_next_occurrence(&later, true)
                .ok()
                .map(Into::into)
        }
    }
}

impl fmt::Debug for CronSchedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("CronSchedule")
            .field(&self.expression)
            .finish()
    }
}

impl PartialEq for CronSchedule {
    fn eq(&self, other: &Self) -> bool {
        self.expression == other.expression
    }
}

impl Eq for CronSchedule {}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64, nanos: u32) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::new(secs, nanos)
    }

    // 2024-01-01T12:03:20Z
    const NOON_PAST: u64 = 1_704_110_600;

    #[test]
    fn every_five_minutes_fires_on_the_next_multiple_of_five() {
        let cron = CronSchedule::parse("0 */5 * * * *").expect("valid");
        // 12:03:20 -> 12:05:00
        assert_eq!(
            cron.next_after(at(NOON_PAST, 0)),
            Some(at(NOON_PAST + 100, 0))
        );
    }

    #[test]
    fn next_after_is_strictly_after() {
        let cron = CronSchedule::parse("0 */5 * * * *").expect("valid");
        let on_match = NOON_PAST + 100; // 12:05:00
        assert_eq!(
            cron.next_after(at(on_match, 0)),
            Some(at(on_match + 300, 0))
        );
        assert_eq!(
            cron.next_after(at(on_match, 500_000_000)),
            Some(at(on_match + 300, 0))
        );
        // Half a second before a match still gets that match.
        assert_eq!(
            cron.next_after(at(on_match - 1, 500_000_000)),
            Some(at(on_match, 0))
        );
    }

    #[test]
    fn evaluation_is_in_utc() {
        let cron = CronSchedule::parse("0 0 3 * * *").expect("valid");
        // 2024-01-01T12:03:20Z -> 2024-01-02T03:00:00Z
        assert_eq!(
            cron.next_after(at(NOON_PAST, 0)),
            Some(at(1_704_164_400, 0))
        );
    }

    #[test]
    fn nicknames_are_accepted() {
        let cron = CronSchedule::parse("@hourly").expect("valid");
        // 12:03:20 -> 13:00:00
        assert_eq!(
            cron.next_after(at(NOON_PAST, 0)),
            Some(at(NOON_PAST + 3400, 0))
        );
    }

    #[test]
    fn five_fields_are_refused_with_a_hint() {
        let err = CronSchedule::parse("*/5 * * * *").expect_err("5 fields");
        assert!(err.contains("6 fields, seconds first"), "{err}");
    }

    #[test]
    fn garbage_is_refused() {
        let err = CronSchedule::parse("0 61 * * * *").expect_err("minute 61");
        assert!(err.contains("invalid cron expression"), "{err}");
        assert!(
            CronSchedule::parse("0 0 0 30 2 *").is_err(),
            "30 February never comes"
        );
        assert!(CronSchedule::parse("a b c d e f").is_err());
    }

    #[test]
    fn equality_is_by_expression() {
        let a = CronSchedule::parse("0 */5 * * * *").expect("valid");
        let b = CronSchedule::parse("0 */5 * * * *").expect("valid");
        assert_eq!(Schedule::Cron(a), Schedule::Cron(b));
    }
}
