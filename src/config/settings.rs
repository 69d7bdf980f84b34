//! The overridable settings (`[defaults]` and the same keys in each `[[org]]`): parsing each
//! table's values, layering org over defaults over built-in defaults, and the checks that
//! involve two settings at once (jitter vs interval, refresh margin vs max age).
//!
//! Every resolved value remembers which key it came from, so a cross-check names the keys
//! the user actually has to change.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::file;
use super::host::normalize_host;
use super::raw::RawSettings;
use super::report::{join, Problems};
use super::{ApiVersion, AuthMode, CaFile, CronSchedule, Schedule};

pub(crate) const DEFAULT_HOST: &str = "https://openbadgefactory.com";
pub(crate) const DEFAULT_INTERVAL: Duration = Duration::from_secs(60);
pub(crate) const DEFAULT_JITTER: Duration = Duration::ZERO;
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
pub(crate) const DEFAULT_TOKEN_REFRESH_MARGIN: Duration = Duration::from_secs(60);
pub(crate) const DEFAULT_TOKEN_MIN_INTERVAL: Duration = Duration::from_secs(10);
pub(crate) const DEFAULT_TOKEN_MAX_AGE: Duration = Duration::from_secs(3600);
pub(crate) const DEFAULT_SUBSCRIPTION_CHECK_INTERVAL: Duration = Duration::from_secs(3600);
/// With OBF's 5 h tokens, a revocation the server does not apply to tokens already issued is
/// still seen within an hour, for 24 token requests per credential per day instead of ~5.
pub(crate) const DEFAULT_CREDENTIAL_CHECK_INTERVAL: Duration = Duration::from_secs(3600);

/// The longest value any duration key accepts: 365 days. A longer interval or timeout cannot be
/// meant (a yearly probe already means "never"), and the bound keeps every deadline the agent
/// computes (now + interval, + jitter, + timeout) far from the clock's overflow.
pub(crate) const MAX_DURATION: Duration = Duration::from_secs(365 * 86400);
/// How `MAX_DURATION` is spelled in messages (humantime would print 365 days as "11months 30days
/// 3h 50m 24s": its year is 365.25 days).
const MAX_DURATION_TEXT: &str = "365 days";

/// What one duration key accepts, besides [`MAX_DURATION`].
#[derive(Clone, Copy)]
struct Bounds {
    /// The smallest non-zero value.
    min: Duration,
    /// Whether "0s" is accepted (it means "none" or "off").
    zero_ok: bool,
}

/// `interval`: one probe (a token request, a ping, maybe a subscription check) per second and
/// org is already far more than a credential watch needs; below that a typo ("1ns") floods OBF.
const INTERVAL_BOUNDS: Bounds = Bounds {
    min: Duration::from_secs(1),
    zero_ok: false,
};
/// `timeout`: a loopback round trip takes well under a millisecond, a TLS handshake to OBF tens
/// of milliseconds; below 100 ms every request would time out.
const TIMEOUT_BOUNDS: Bounds = Bounds {
    min: Duration::from_millis(100),
    zero_ok: false,
};
/// `token_min_interval`: the server's own spacing is 10 s; below 100 ms the spacing rule would
/// not space anything.
const TOKEN_MIN_INTERVAL_BOUNDS: Bounds = Bounds {
    min: Duration::from_millis(100),
    zero_ok: false,
};
/// `token_max_age`: a token reused for less than a second is a token per request.
const TOKEN_MAX_AGE_BOUNDS: Bounds = Bounds {
    min: Duration::from_secs(1),
    zero_ok: false,
};
/// `subscription_check_interval`: "0s" turns the check off; otherwise at least a second, like
/// `interval` (the check runs at most once per run anyway).
const SUBSCRIPTION_BOUNDS: Bounds = Bounds {
    min: Duration::from_secs(1),
    zero_ok: true,
};
/// `credential_check_interval`: "0s" turns the check off; when on, it must also be at least
/// `token_min_interval` (checked across keys).
const CREDENTIAL_CHECK_BOUNDS: Bounds = Bounds {
    min: Duration::from_secs(1),
    zero_ok: true,
};
/// `jitter` and `token_refresh_margin`: zero is a fine value; only the upper bound applies
/// (and jitter < interval, margin < max age, checked across keys).
const ANY_UP_TO_MAX: Bounds = Bounds {
    min: Duration::ZERO,
    zero_ok: true,
};

/// Which layer a value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Source {
    Builtin,
    Defaults(String),
    Org(String),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Builtin => f.write_str("built-in default"),
            Self::Defaults(path) | Self::Org(path) => write!(f, "from {path}"),
        }
    }
}

/// A value and the key it came from.
#[derive(Debug, Clone)]
pub(crate) struct Sourced<T> {
    pub value: T,
    pub source: Source,
}

/// One table's value for one key.
#[derive(Debug, Clone)]
pub(crate) enum Slot<T> {
    /// Not in this table: fall through to the next layer.
    Unset,
    /// Present but unusable; already reported.
    Invalid,
    Set(Sourced<T>),
}

impl<T: Clone> Slot<T> {
    /// This layer's value, else `lower`'s, else `builtin`. `None` means an invalid value was
    /// chosen (already reported), so checks depending on it are skipped.
    fn over(&self, lower: &Slot<T>, builtin: Option<T>) -> Option<Option<Sourced<T>>> {
        match (self, lower) {
            (Slot::Set(v), _) | (Slot::Unset, Slot::Set(v)) => Some(Some(v.clone())),
            (Slot::Invalid, _) | (Slot::Unset, Slot::Invalid) => None,
            (Slot::Unset, Slot::Unset) => Some(builtin.map(|value| Sourced {
                value,
                source: Source::Builtin,
            })),
        }
    }

    /// Like [`Slot::over`] for keys that always have a built-in default.
    fn over_or(&self, lower: &Slot<T>, builtin: T) -> Option<Sourced<T>> {
        self.over(lower, Some(builtin)).flatten()
    }
}

/// The parsed overridable keys of one table.
#[derive(Debug, Clone)]
pub(crate) struct Layer {
    host: Slot<String>,
    api: Slot<ApiVersion>,
    auth: Slot<AuthMode>,
    schedule: Slot<Schedule>,
    jitter: Slot<Duration>,
    timeout: Slot<Duration>,
    token_refresh_margin: Slot<Duration>,
    token_min_interval: Slot<Duration>,
    token_max_age: Slot<Duration>,
    subscription_check_interval: Slot<Duration>,
    credential_check_interval: Slot<Duration>,
    ca_file: Slot<CaFile>,
}

/// Whether a layer is `[defaults]` or an org.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Level {
    Defaults,
    Org,
}

/// The settings of one org with every layer applied.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub host: Sourced<String>,
    pub api: ApiVersion,
    pub auth: Sourced<AuthMode>,
    pub schedule: Schedule,
    pub jitter: Duration,
    pub timeout: Duration,
    pub token_refresh_margin: Sourced<Duration>,
    pub token_min_interval: Sourced<Duration>,
    pub token_max_age: Sourced<Duration>,
    pub subscription_check_interval: Duration,
    /// `Duration::ZERO`: off.
    pub credential_check_interval: Sourced<Duration>,
    pub ca_file: Option<Sourced<CaFile>>,
}

impl Layer {
    /// An empty layer: every key unset.
    pub(crate) fn empty() -> Self {
        Self {
            host: Slot::Unset,
            api: Slot::Unset,
            auth: Slot::Unset,
            schedule: Slot::Unset,
            jitter: Slot::Unset,
            timeout: Slot::Unset,
            token_refresh_margin: Slot::Unset,
            token_min_interval: Slot::Unset,
            token_max_age: Slot::Unset,
            subscription_check_interval: Slot::Unset,
            credential_check_interval: Slot::Unset,
            ca_file: Slot::Unset,
        }
    }

    /// Parses one table's keys; `ctx` is its path (`defaults`, `org[0] ("acme")`).
    pub(crate) fn parse(raw: &RawSettings, ctx: &str, level: Level, p: &mut Problems) -> Self {
        let t = TableCtx { ctx, level };
        // Both keys are parsed even when both are set, so a bad value in either is reported
        // together with the conflict ("every problem at once").
        let interval = t.slot("interval", &raw.interval, p, |v| {
            bounded(v, INTERVAL_BOUNDS).map(Schedule::Interval)
        });
        let cron = t.slot("cron", &raw.cron, p, |v| {
            CronSchedule::parse(v).map(Schedule::Cron)
        });
        let schedule = match (interval, cron) {
            (Slot::Unset, only) | (only, Slot::Unset) => only,
            _ => {
                p.at(
                    ctx,
                    "both `interval` and `cron` are set in the same table; use only one",
                );
                Slot::Invalid
            }
        };
        Self {
            host: t.slot("host", &raw.host, p, normalize_host),
            api: t.slot("api", &raw.api, p, |v| {
                ApiVersion::parse(v).ok_or_else(|| unknown_value(v, &ApiVersion::ALLOWED))
            }),
            auth: t.slot("auth", &raw.auth, p, |v| {
                AuthMode::parse(v).ok_or_else(|| unknown_value(v, &AuthMode::ALLOWED))
            }),
            schedule,
            jitter: t.slot("jitter", &raw.jitter, p, |v| bounded(v, ANY_UP_TO_MAX)),
            timeout: t.slot("timeout", &raw.timeout, p, |v| bounded(v, TIMEOUT_BOUNDS)),
            token_refresh_margin: t.slot(
                "token_refresh_margin",
                &raw.token_refresh_margin,
                p,
                |v| bounded(v, ANY_UP_TO_MAX),
            ),
            token_min_interval: t.slot("token_min_interval", &raw.token_min_interval, p, |v| {
                bounded(v, TOKEN_MIN_INTERVAL_BOUNDS)
            }),
            token_max_age: t.slot("token_max_age", &raw.token_max_age, p, |v| {
                bounded(v, TOKEN_MAX_AGE_BOUNDS)
            }),
            subscription_check_interval: t.slot(
                "subscription_check_interval",
                &raw.subscription_check_interval,
                p,
                |v| bounded(v, SUBSCRIPTION_BOUNDS),
            ),
            credential_check_interval: t.slot(
                "credential_check_interval",
                &raw.credential_check_interval,
                p,
                |v| bounded(v, CREDENTIAL_CHECK_BOUNDS),
            ),
            ca_file: t.slot("ca_file", &raw.ca_file, p, pem_certificates),
        }
    }

    /// Applies `self` (an org) over `defaults` over the built-in defaults and runs the
    /// cross-checks. `None` when a chosen value was invalid (already reported).
    pub(crate) fn resolve(
        &self,
        defaults: &Layer,
        ctx: &str,
        p: &mut Problems,
    ) -> Option<Settings> {
        self.resolve_checking(defaults, ctx, false, p)
    }

    /// Runs the cross-checks on `[defaults]` alone (over the built-in defaults), so a
    /// mistake there is reported once rather than once per org.
    pub(crate) fn check_defaults(&self, p: &mut Problems) {
        // Only the problems are wanted here; each org resolves its own settings.
        let _ = Layer::empty().resolve_checking(self, "defaults", true, p);
    }

    fn resolve_checking(
        &self,
        defaults: &Layer,
        ctx: &str,
        check_all: bool,
        p: &mut Problems,
    ) -> Option<Settings> {
        let interval = Schedule::Interval(DEFAULT_INTERVAL);
        let host = self.host.over_or(&defaults.host, DEFAULT_HOST.to_owned());
        let api = self.api.over_or(&defaults.api, ApiVersion::V2);
        let auth = self.auth.over_or(&defaults.auth, AuthMode::Basic);
        let schedule = self.schedule.over_or(&defaults.schedule, interval);
        let jitter = self.jitter.over_or(&defaults.jitter, DEFAULT_JITTER);
        let timeout = self.timeout.over_or(&defaults.timeout, DEFAULT_TIMEOUT);
        let margin = self
            .token_refresh_margin
            .over_or(&defaults.token_refresh_margin, DEFAULT_TOKEN_REFRESH_MARGIN);
        let min_interval = self
            .token_min_interval
            .over_or(&defaults.token_min_interval, DEFAULT_TOKEN_MIN_INTERVAL);
        let max_age = self
            .token_max_age
            .over_or(&defaults.token_max_age, DEFAULT_TOKEN_MAX_AGE);
        let subscription = self.subscription_check_interval.over_or(
            &defaults.subscription_check_interval,
            DEFAULT_SUBSCRIPTION_CHECK_INTERVAL,
        );
        let check = self.credential_check_interval.over_or(
            &defaults.credential_check_interval,
            DEFAULT_CREDENTIAL_CHECK_INTERVAL,
        );
        let ca_file = self.ca_file.over(&defaults.ca_file, None);

        let pairs = Pairs {
            schedule: schedule.as_ref(),
            jitter: jitter.as_ref(),
            margin: margin.as_ref(),
            max_age: max_age.as_ref(),
            min_interval: min_interval.as_ref(),
            check: check.as_ref(),
        };
        pairs.check(ctx, check_all, p);

        Some(Settings {
            host: host?,
            api: api?.value,
            auth: auth?,
            schedule: schedule?.value,
            jitter: jitter?.value,
            timeout: timeout?.value,
            token_refresh_margin: margin?,
            token_min_interval: min_interval?,
            token_max_age: max_age?,
            subscription_check_interval: subscription?.value,
            credential_check_interval: check?,
            ca_file: ca_file?,
        })
    }
}

/// The table a [`Layer`] is being parsed from.
struct TableCtx<'a> {
    ctx: &'a str,
    level: Level,
}

impl TableCtx<'_> {
    fn slot<T>(
        &self,
        key: &str,
        value: &Option<String>,
        p: &mut Problems,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> Slot<T> {
        let Some(text) = value else {
            return Slot::Unset;
        };
        let path = join(self.ctx, key);
        match parse(text) {
            Ok(value) => Slot::Set(Sourced {
                value,
                source: match self.level {
                    Level::Defaults => Source::Defaults(path),
                    Level::Org => Source::Org(path),
                },
            }),
            Err(message) => {
                p.at(&path, message);
                Slot::Invalid
            }
        }
    }
}

/// The values that are checked against each other.
struct Pairs<'a> {
    schedule: Option<&'a Sourced<Schedule>>,
    jitter: Option<&'a Sourced<Duration>>,
    margin: Option<&'a Sourced<Duration>>,
    max_age: Option<&'a Sourced<Duration>>,
    min_interval: Option<&'a Sourced<Duration>>,
    check: Option<&'a Sourced<Duration>>,
}

impl Pairs<'_> {
    /// jitter < interval, token_refresh_margin < token_max_age, and credential_check_interval
    /// zero or at least token_min_interval (a check more often than requests are allowed
    /// could never happen on time). Unless `check_all`, a pair
    /// is only checked when the org set one of its two values: pairs from `[defaults]` alone
    /// were checked once by [`Layer::check_defaults`].
    fn check(&self, ctx: &str, check_all: bool, p: &mut Problems) {
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

pub(super) fn unknown_value(value: &str, allowed: &[&str]) -> String {
    let allowed: Vec<String> = allowed.iter().map(|a| format!("{a:?}")).collect();
    format!("unknown value {value:?} (allowed: {})", allowed.join(", "))
}

/// A humantime duration (`"90s"`, `"1h 30m"`).
pub(crate) fn duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text).map_err(|e| format!("invalid duration {text:?}: {e}"))
}

/// A duration within `bounds` and at most [`MAX_DURATION`]. `check` and `run` both validate
/// through here, so they accept exactly the same values.
fn bounded(text: &str, bounds: Bounds) -> Result<Duration, String> {
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

/// Reads the file at `path` (a PEM file: at most [`file::PEM_CAP`]), so a typo or a special
/// file fails at startup rather than at first use.
pub(crate) fn read_pem_file(path: &str) -> Result<Vec<u8>, String> {
    if path.is_empty() {
        return Err("empty path".to_owned());
    }
    let path = Path::new(path);
    file::read(path, file::PEM_CAP)
        .map_err(|e| e.describe(&format!("{path:?}{}", file::relative_note(path))))
}

/// A readable file holding at least one PEM certificate (what `ca_file` must be), with its
/// bytes: HTTP clients are built from them, without reading the file again.
pub(crate) fn pem_certificates(path: &str) -> Result<CaFile, String> {
    let pem = read_pem_file(path)?;
    match reqwest::Certificate::from_pem_bundle(&pem) {
        Ok(certs) if !certs.is_empty() => Ok(CaFile {
            path: PathBuf::from(path),
            pem: Arc::from(pem),
        }),
        _ => Err(format!("{path:?} holds no PEM certificate")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ca_file_must_hold_a_certificate() {
        let fixture = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tls/cert1.pem");
        assert!(pem_certificates(fixture).is_ok());
        let key = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tls/key1.pem");
        assert!(pem_certificates(key)
            .unwrap_err()
            .contains("no PEM certificate"));
    }

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
