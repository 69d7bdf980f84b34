//! One probe of one org: token (cached or fresh) → ping → subscription check → metrics and logs.
//!
//! It owns the "403 with a cached token" rule (drop it, get a fresh one, ping once more), the
//! `no_token` outcome, and the ping back-off after a 429 and the subscription check's timing.
//! State-change logging and the recent history are the org's (`org.rs`). It does not know when it
//! runs (the schedule decides) nor how tokens are spaced (the token cache decides).

use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use super::org::Org;
use super::report::{ProbeReport, TokenUse};
use crate::obf::client::{CallFailure, Endpoint};
use crate::obf::reason::Reason;
use crate::obf::token::Token;

mod acquire;

/// A failed subscription check is tried again after this, not at every run.
const SUBSCRIPTION_RETRY: Duration = Duration::from_secs(60);
/// Without `Retry-After`, the wait after the first ping answered 429; it doubles with each
/// consecutive one as the token backoff does (up to 5 minutes, with jitter).
const PING_BACKOFF_FIRST: Duration = Duration::from_secs(10);

impl Org {
    fn endpoint(&self) -> Endpoint<'_> {
        Endpoint {
            host: &self.config.host,
            client_id: &self.config.client_id,
            timeout: self.config.timeout,
        }
    }

    /// Runs one probe and records it.
    pub async fn probe(&self) -> ProbeReport {
        let mut report = ProbeReport {
            org: self.name().to_string(),
            success: false,
            reason: None,
            status: None,
            ping_seconds: None,
            token: TokenUse::None,
            token_seconds: None,
            token_failure: None,
            token_expires_at: None,
            credentials_valid: None,
            credentials_last_verified: None,
            subscription_ends: None,
            finished_at: 0.0,
            detail: None,
        };

        if let Some(wait) = self.ping_withheld() {
            // The API asked us to slow down (429 on a ping): this run sends nothing.
            self.metrics.ping_failed(Reason::RateLimited, None, None);
            report.reason = Some(Reason::RateLimited);
            report.detail = Some(format!(
                "not sent: the API answered 429 to a recent ping; next ping in {} s",
                wait.as_secs().max(1)
            ));
            self.finish(&mut report).await;
            return report;
        }

        let acquired = self.acquire_token(None, &mut report).await;
        let token = match acquired.token {
            Some(token) => {
                self.ping_with_retry(token, acquired.reused, &mut report)
                    .await
            }
            None => {
                self.fail_without_token(None, &mut report);
                None
            }
        };
        self.check_subscription(token.as_ref(), &mut report).await;
        self.finish(&mut report).await;
        report
    }

    /// How long pings are still held back after a 429, if they are.
    fn ping_withheld(&self) -> Option<Duration> {
        let until = self.lock_state().ping_not_before?;
        until
            .checked_duration_since(Instant::now())
            .filter(|wait| !wait.is_zero())
    }

    /// Remembers a ping's 429 (or its absence) for [`Org::ping_withheld`].
    fn note_ping_rate_limit(&self, failure: Option<&CallFailure>) {
        let mut state = self.lock_state();
        match failure {
            Some(failure) if failure.reason == Reason::RateLimited => {
                state.pings_rate_limited += 1;
                let wait = match failure.retry_after {
                    Some(retry_after) => retry_after.min(crate::obf::token::MAX_RETRY_AFTER),
                    None => crate::obf::token::backoff_delay(
                        PING_BACKOFF_FIRST,
                        state.pings_rate_limited - 1,
                    ),
                };
                state.ping_not_before = Some(crate::clock::after(Instant::now(), wait));
            }
            _ => {
                state.pings_rate_limited = 0;
                state.ping_not_before = None;
            }
        }
    }

    /// The credential's state as the gauges show it, the finish time, the log and the history.
    async fn finish(&self, report: &mut ProbeReport) {
        // The credential gauges read the same state live: the report agrees with them.
        let snapshot = self.tokens.snapshot();
        report.token_expires_at = snapshot.token_expires_at.map(crate::metrics::unix_seconds);
        report.credentials_valid = snapshot.credentials_valid;
        report.credentials_last_verified = snapshot.last_verified.map(crate::metrics::unix_seconds);
        let finished = SystemTime::now();
        self.metrics.probe_finished(finished);
        report.finished_at = crate::metrics::unix_seconds(finished);
        self.remember(report);
    }

    /// Pings with `token`; on 401/403 with a cached token, drops it and pings once more with a
    /// fresh one. Returns the token that is still believed good, for the subscription check.
    async fn ping_with_retry(
        &self,
        token: Token,
        reused: bool,
        report: &mut ProbeReport,
    ) -> Option<Token> {
        let failure = match self.ping(&token, report).await {
            Ok(()) => return Some(token),
            Err(failure) => failure,
        };
        let refused = matches!(failure.status, Some(401 | 403));
        if !(refused && reused) {
            self.fail_ping(failure, report);
            if refused {
                self.tokens.discard(token.generation);
                return None;
            }
            return Some(token);
        }
        tracing::debug!(org = self.name(), status = ?failure.status, "cached token refused; getting a fresh one");
        let again = self.acquire_token(Some(token.generation), report).await;
        match again.token {
            Some(fresh) if fresh.generation != token.generation => {
                match self.ping(&fresh, report).await {
                    Ok(()) => Some(fresh),
                    Err(failure) => {
                        let refused = matches!(failure.status, Some(401 | 403));
                        self.fail_ping(failure, report);
                        if refused {
                            self.tokens.discard(fresh.generation);
                            return None;
                        }
                        Some(fresh)
                    }
                }
            }
            _ if again.request.is_some() => {
                // The token endpoint was asked and gave nothing: the ping could not be repeated.
                // Its status stays the refused ping's.
                self.fail_without_token(failure.status, report);
                None
            }
            _ => {
                // No fresh token within this probe's time: the refusal stands; the next run
                // requests a fresh token because the refused one is gone from the cache.
                self.fail_ping(failure, report);
                None
            }
        }
    }

    async fn ping(&self, token: &Token, report: &mut ProbeReport) -> Result<(), CallFailure> {
        let started = Instant::now();
        let result = self
            .client
            .ping(&self.endpoint(), self.config.api, &token.access_token)
            .await;
        let elapsed = started.elapsed();
        report.ping_seconds = Some(elapsed.as_secs_f64());
        self.note_ping_rate_limit(result.as_ref().err());
        match result {
            Ok(ok) => {
                self.metrics.ping_succeeded(ok.status, elapsed);
                report.success = true;
                report.reason = None;
                report.status = Some(ok.status);
                report.detail = None;
                Ok(())
            }
            Err(failure) => {
                self.metrics.observe_ping_duration(elapsed);
                report.status = failure.status;
                Err(failure)
            }
        }
    }

    fn fail_ping(&self, failure: CallFailure, report: &mut ProbeReport) {
        // The duration was observed when the request returned.
        self.metrics
            .ping_failed(failure.reason, failure.status, None);
        report.success = false;
        report.reason = Some(failure.reason);
        report.detail = Some(failure.detail);
    }

    /// `status` is that of a ping refused earlier in this probe, if any.
    fn fail_without_token(&self, status: Option<u16>, report: &mut ProbeReport) {
        self.metrics.ping_failed(Reason::NoToken, status, None);
        report.success = false;
        report.reason = Some(Reason::NoToken);
        if report.detail.is_none() {
            report.detail = Some(match report.token_failure {
                Some(reason) => format!("no usable token: token request failed ({reason})"),
                None => "no usable token: next token request not allowed yet".to_string(),
            });
        }
    }

    async fn check_subscription(&self, token: Option<&Token>, report: &mut ProbeReport) {
        let interval = self.config.subscription_check_interval;
        if interval.is_zero() {
            self.metrics.clear_subscription_expiry();
            return;
        }
        let now = Instant::now();
        {
            let state = self.lock_state();
            report.subscription_ends = state.subscription_ends;
            if state.subscription_due.is_some_and(|due| now < due) {
                return;
            }
        }
        let result = match token {
            Some(token) => {
                self.client
                    .subscription_end(&self.endpoint(), &token.access_token)
                    .await
            }
            None => Err(CallFailure {
                reason: Reason::NoToken,
                status: None,
                retry_after: None,
                detail: "no usable token".to_string(),
            }),
        };
        let mut state = self.lock_state();
        match result {
            Ok(paid_until) => {
                self.metrics.set_subscription_expiry(paid_until);
                state.subscription_ends = Some(paid_until);
                state.subscription_due = Some(crate::clock::after(now, interval));
            }
            Err(failure) => {
                tracing::debug!(org = self.name(), reason = %failure.reason, detail = %failure.detail, "subscription check failed");
                self.metrics.subscription_check_failed(failure.reason);
                // Transient failures are retried within a minute; an answer that came but was
                // unusable (no numeric paid_until) would only come again: next check as planned.
                // A 429's Retry-After (capped at an hour) is honoured when it asks for longer.
                let soon = match failure.reason {
                    Reason::InvalidResponse => interval,
                    _ => interval.min(SUBSCRIPTION_RETRY),
                };
                let retry = failure
                    .retry_after
                    .map_or(Duration::ZERO, |after| {
                        after.min(crate::obf::token::MAX_RETRY_AFTER)
                    })
                    .max(soon);
                state.subscription_due = Some(crate::clock::after(now, retry));
            }
        }
        report.subscription_ends = state.subscription_ends;
    }
}
