//! The one place a probe's outcomes become its effects: [`account`] turns a [`Run`] into the
//! [`ProbeReport`] and the list of metric updates, as a pure function (no I/O, no clock, no
//! lock), and [`Org::record`] applies them and keeps the report in the org's history. The
//! updates are applied when the run ends, one after the other: a scrape during a run sees the
//! previous run's ping and token series, not half of this one's.
//!
//! The steps are accounted in the order they ran, and a later one overrides what an earlier one
//! said where both speak (the last ping's status, the last token request's timing): that order
//! is the run's, fixed by the [`Run`]'s shape, not by which function happened to write last.

use std::time::{Duration, SystemTime};

use super::outcome::{Again, PingOutcome, Pings, Run, SubscriptionOutcome, TokenOutcome};
use crate::fleet::org::Org;
use crate::fleet::report::{ProbeReport, TokenUse};
use crate::metrics::unix_seconds;
use crate::obf::client::CallFailure;
use crate::obf::reason::Reason;
use crate::obf::token::Snapshot;

/// One update of the org's metrics, in the terms of [`crate::metrics::OrgMetrics`]' methods.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum MetricUpdate {
    TokenRefreshed {
        duration: Duration,
        failure: Option<Reason>,
    },
    TokenRefreshSuperseded {
        duration: Duration,
    },
    TokenReused,
    PingSucceeded {
        status: u16,
        duration: Duration,
    },
    /// A failed ping's time (its failure is a separate [`MetricUpdate::PingFailed`]).
    PingDuration(Duration),
    PingFailed {
        reason: Reason,
        status: Option<u16>,
    },
    SubscriptionExpiry(i64),
    ClearSubscriptionExpiry,
    SubscriptionCheckFailed(Reason),
    ProbeFinished(SystemTime),
}

/// What a run amounts to.
#[derive(Debug)]
pub(crate) struct Account {
    pub(crate) report: ProbeReport,
    /// In the order they are applied.
    pub(crate) metrics: Vec<MetricUpdate>,
}

/// The report and metric updates of `run` for org `org`. `credential` is the credential's
/// published state when the run ended (the gauges read the same state live, so the report
/// agrees with them) and `finished` the run's end.
pub(crate) fn account(org: &str, run: &Run, credential: Snapshot, finished: SystemTime) -> Account {
    let mut acc = Accounting {
        report: ProbeReport {
            org: org.to_string(),
            success: false,
            reason: None,
            status: None,
            ping_seconds: None,
            token: TokenUse::None,
            token_seconds: None,
            token_failure: None,
            token_expires_at: credential.token_expires_at.map(unix_seconds),
            credentials_valid: credential.credentials_valid,
            credentials_last_verified: credential.last_verified.map(unix_seconds),
            subscription_ends: None,
            finished_at: unix_seconds(finished),
            detail: None,
        },
        metrics: Vec::new(),
    };
    match run {
        Run::Withheld { wait } => {
            acc.metrics.push(MetricUpdate::PingFailed {
                reason: Reason::RateLimited,
                status: None,
            });
            acc.report.reason = Some(Reason::RateLimited);
            acc.report.detail = Some(format!(
                "not sent: the API answered 429 to a recent ping; next ping in {} s",
                wait.as_secs().max(1)
            ));
        }
        Run::Sent {
            token,
            pings,
            subscription,
        } => {
            acc.token(token);
            acc.pings(pings);
            acc.subscription(subscription);
        }
    }
    acc.metrics.push(MetricUpdate::ProbeFinished(finished));
    Account {
        report: acc.report,
        metrics: acc.metrics,
    }
}

/// The report and updates so far, while [`account`] walks the run.
struct Accounting {
    report: ProbeReport,
    metrics: Vec<MetricUpdate>,
}

impl Accounting {
    fn token(&mut self, outcome: &TokenOutcome) {
        if let Some(request) = &outcome.request {
            let duration = request.duration;
            self.report.token_seconds = Some(duration.as_secs_f64());
            self.report.token = TokenUse::Failed;
            match &request.result {
                Ok(()) => {
                    self.metrics.push(MetricUpdate::TokenRefreshed {
                        duration,
                        failure: None,
                    });
                    self.report.token = TokenUse::Fetched;
                }
                Err(failure) if request.superseded && failure.reason == Reason::Rejected => {
                    self.metrics
                        .push(MetricUpdate::TokenRefreshSuperseded { duration });
                    self.report.detail = Some(
                        "token request: refused for a secret that has since been replaced (the \
                         secret changed); the next token request uses the new one"
                            .to_string(),
                    );
                }
                Err(failure) => {
                    self.metrics.push(MetricUpdate::TokenRefreshed {
                        duration,
                        failure: Some(failure.reason),
                    });
                    self.report.token_failure = Some(failure.reason);
                    self.report.detail = Some(format!("token request: {}", failure.detail));
                }
            }
        } else if outcome.reused {
            self.report.token = TokenUse::Reused;
        }
        if outcome.reused {
            self.metrics.push(MetricUpdate::TokenReused);
        }
    }

    fn pings(&mut self, pings: &Pings) {
        match pings {
            Pings::NoToken => self.no_token(None),
            Pings::Once(ping) => self.ping(ping),
            Pings::Retried {
                elapsed,
                refused,
                token,
                again,
            } => {
                self.ping_failed_after(*elapsed, refused);
                self.token(token);
                match again {
                    Again::Pinged(ping) => self.ping(ping),
                    // Its status stays the refused ping's.
                    Again::NoToken => self.no_token(refused.status),
                    Again::NotAsked => self.failure(refused),
                }
            }
        }
    }

    fn ping(&mut self, ping: &PingOutcome) {
        match &ping.result {
            Ok(status) => {
                self.report.ping_seconds = Some(ping.elapsed.as_secs_f64());
                self.metrics.push(MetricUpdate::PingSucceeded {
                    status: *status,
                    duration: ping.elapsed,
                });
                self.report.success = true;
                self.report.reason = None;
                self.report.status = Some(*status);
                self.report.detail = None;
            }
            Err(failure) => {
                self.ping_failed_after(ping.elapsed, failure);
                self.failure(failure);
            }
        }
    }

    /// A ping that came back failed: its time and status (the failure itself is counted by
    /// [`Accounting::failure`] or [`Accounting::no_token`], once the run knows which).
    fn ping_failed_after(&mut self, elapsed: Duration, failure: &CallFailure) {
        self.report.ping_seconds = Some(elapsed.as_secs_f64());
        self.metrics.push(MetricUpdate::PingDuration(elapsed));
        self.report.status = failure.status;
    }

    /// The run's ping failed for `failure`.
    fn failure(&mut self, failure: &CallFailure) {
        self.metrics.push(MetricUpdate::PingFailed {
            reason: failure.reason,
            status: failure.status,
        });
        self.report.success = false;
        self.report.reason = Some(failure.reason);
        self.report.detail = Some(failure.detail.clone());
    }

    /// No ping could be sent for want of a token; `status` is that of a ping refused earlier in
    /// this run, if any.
    fn no_token(&mut self, status: Option<u16>) {
        self.metrics.push(MetricUpdate::PingFailed {
            reason: Reason::NoToken,
            status,
        });
        self.report.success = false;
        self.report.reason = Some(Reason::NoToken);
        if self.report.detail.is_none() {
            self.report.detail = Some(match self.report.token_failure {
                Some(reason) => format!("no usable token: token request failed ({reason})"),
                None => "no usable token: next token request not allowed yet".to_string(),
            });
        }
    }

    fn subscription(&mut self, outcome: &SubscriptionOutcome) {
        match outcome {
            SubscriptionOutcome::Off => self.metrics.push(MetricUpdate::ClearSubscriptionExpiry),
            SubscriptionOutcome::NotDue { ends } => self.report.subscription_ends = *ends,
            SubscriptionOutcome::Checked { result, ends } => {
                self.metrics.push(match result {
                    Ok(paid_until) => MetricUpdate::SubscriptionExpiry(*paid_until),
                    Err(failure) => MetricUpdate::SubscriptionCheckFailed(failure.reason),
                });
                self.report.subscription_ends = *ends;
            }
        }
    }
}

impl Org {
    /// Applies the outcomes of `run`: the metric updates, then the history (with its state-change
    /// logging). Returns the report.
    pub(super) fn record(&self, run: &Run) -> ProbeReport {
        let Account { report, metrics } =
            account(self.name(), run, self.tokens.snapshot(), SystemTime::now());
        for update in metrics {
            self.apply(update);
        }
        self.remember(&report);
        report
    }

    fn apply(&self, update: MetricUpdate) {
        let metrics = &self.metrics;
        match update {
            MetricUpdate::TokenRefreshed { duration, failure } => {
                metrics.token_refreshed(duration, failure)
            }
            MetricUpdate::TokenRefreshSuperseded { duration } => {
                metrics.token_refresh_superseded(duration)
            }
            MetricUpdate::TokenReused => metrics.token_reused(),
            MetricUpdate::PingSucceeded { status, duration } => {
                metrics.ping_succeeded(status, duration)
            }
            MetricUpdate::PingDuration(duration) => metrics.observe_ping_duration(duration),
            // The duration was observed when the request returned (`PingDuration`).
            MetricUpdate::PingFailed { reason, status } => {
                metrics.ping_failed(reason, status, None)
            }
            MetricUpdate::SubscriptionExpiry(paid_until) => {
                metrics.set_subscription_expiry(paid_until)
            }
            MetricUpdate::ClearSubscriptionExpiry => metrics.clear_subscription_expiry(),
            MetricUpdate::SubscriptionCheckFailed(reason) => {
                metrics.subscription_check_failed(reason)
            }
            MetricUpdate::ProbeFinished(at) => metrics.probe_finished(at),
        }
    }
}

#[cfg(test)]
mod tests;
