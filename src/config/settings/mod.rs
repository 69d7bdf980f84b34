//! The overridable settings (`[defaults]` and the same keys in each `[[org]]`): each key's
//! parsing and built-in default, and layering org over defaults over built-in defaults. Each
//! duration key's bounds are in `bounds`, the layering of one value in `slot`, the checks that
//! involve two keys at once in `cross`, PEM files (`ca_file`) in `pem`.
//!
//! Every resolved value remembers which key it came from, so a cross-check names the keys
//! the user actually has to change.

mod bounds;
mod cross;
mod pem;
mod slot;

use std::time::Duration;

use bounds::{
    bounded, ANY_UP_TO_MAX, CREDENTIAL_CHECK_BOUNDS, INTERVAL_BOUNDS, SUBSCRIPTION_BOUNDS,
    TIMEOUT_BOUNDS, TOKEN_MAX_AGE_BOUNDS, TOKEN_MIN_INTERVAL_BOUNDS,
};
use cross::Pairs;
use pem::pem_certificates;
pub(crate) use pem::read_pem_file;
use slot::{Slot, Source, Sourced};

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

/// The parsed overridable keys of one table. `Default`: every key unset.
#[derive(Debug, Clone, Default)]
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
        let _ = Layer::default().resolve_checking(self, "defaults", true, p);
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

pub(super) fn unknown_value(value: &str, allowed: &[&str]) -> String {
    let allowed: Vec<String> = allowed.iter().map(|a| format!("{a:?}")).collect();
    format!("unknown value {value:?} (allowed: {})", allowed.join(", "))
}
