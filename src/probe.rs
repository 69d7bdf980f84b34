//! One probe of one org: token (cached or fresh) → ping → subscription check → metrics and logs.
//!
//! It owns the "403 with a cached token" rule (drop it, get a fresh one, ping once more), the
//! `no_token` outcome, state-change logging and the org's recent history. It does not know when it
//! runs (the schedule decides) nor how tokens are spaced (the token cache decides).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use serde::Serialize;
use tokio::time::Instant;

use crate::client_secret::SecretHolder;
use crate::config::OrgConfig;
use crate::metrics::OrgMetrics;
use crate::obf_client::{CallFailure, Endpoint, ObfClient};
use crate::reason::Reason;
use crate::token::{Token, TokenCache};

mod acquire;

/// How many results each org keeps for the status page.
pub const HISTORY_LEN: usize = 20;

/// A failed subscription check is tried again after this, not at every run.
const SUBSCRIPTION_RETRY: Duration = Duration::from_secs(60);
/// Without `Retry-After`, the wait after the first ping answered 429; it doubles with each
/// consecutive one as the token backoff does (up to 5 minutes, with jitter).
const PING_BACKOFF_FIRST: Duration = Duration::from_secs(10);

/// How the probe got its token.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenUse {
    /// Served from the cache.
    Reused,
    /// Requested in this probe.
    Fetched,
    /// A request was sent and failed.
    Failed,
    /// No request was allowed yet and no token was at hand.
    None,
}

/// The outcome of one probe, for logs, the status page and the `probe` command.
#[derive(Clone, Debug, Serialize)]
pub struct ProbeReport {
    pub org: String,
    pub success: bool,
    pub reason: Option<Reason>,
    /// HTTP status of the last ping sent.
    pub status: Option<u16>,
    pub ping_seconds: Option<f64>,
    pub token: TokenUse,
    pub token_seconds: Option<f64>,
    pub token_failure: Option<Reason>,
    pub token_expires_at: Option<f64>,
    pub credentials_valid: Option<bool>,
    /// Unix seconds the token endpoint last accepted the credentials.
    pub credentials_last_verified: Option<f64>,
    pub subscription_ends: Option<i64>,
    /// Unix seconds.
    pub finished_at: f64,
    /// Why it failed, safe to show (no secrets, no tokens).
    pub detail: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Health {
    Ok,
    Failing(Reason),
}

#[derive(Default)]
struct OrgState {
    health: Option<Health>,
    credentials_valid: Option<bool>,
    subscription_due: Option<Instant>,
    subscription_ends: Option<i64>,
    /// After a ping answered 429: no ping (nor token request) before this.
    ping_not_before: Option<Instant>,
    /// Consecutive pings answered 429, for the back-off without `Retry-After`.
    pings_rate_limited: u32,
    /// Older results in compact form; the newest is kept whole in `last`.
    history: VecDeque<PastResult>,
    last: Option<ProbeReport>,
}

/// A past result, small enough to keep 20 per org for 10,000 orgs (the newest report is kept whole).
#[derive(Clone, Copy)]
struct PastResult {
    success: bool,
    reason: Option<Reason>,
    status: u16,
    token: TokenUse,
    token_failure: Option<Reason>,
    credentials_valid: Option<bool>,
    /// Milliseconds; NaN when not measured.
    ping_ms: f32,
    token_ms: f32,
    finished_at: f64,
}

impl PastResult {
    fn of(report: &ProbeReport) -> Self {
        let ms = |s: Option<f64>| s.map_or(f32::NAN, |s| (s * 1000.0) as f32);
        PastResult {
            success: report.success,
            reason: report.reason,
            status: report.status.unwrap_or(0),
            token: report.token,
            token_failure: report.token_failure,
            credentials_valid: report.credentials_valid,
            ping_ms: ms(report.ping_seconds),
            token_ms: ms(report.token_seconds),
            finished_at: report.finished_at,
        }
    }

    fn report(&self, org: &str) -> ProbeReport {
        let seconds = |ms: f32| (!ms.is_nan()).then(|| f64::from(ms) / 1000.0);
        ProbeReport {
            org: org.to_string(),
            success: self.success,
            reason: self.reason,
            status: (self.status != 0).then_some(self.status),
            ping_seconds: seconds(self.ping_ms),
            token: self.token,
            token_seconds: seconds(self.token_ms),
            token_failure: self.token_failure,
            token_expires_at: None,
            credentials_valid: self.credentials_valid,
            credentials_last_verified: None,
            subscription_ends: None,
            finished_at: self.finished_at,
            detail: None,
        }
    }
}

/// A configured org with everything a probe needs.
pub struct Org {
    /// As loaded; its `client_secret` is not used: the secret in use is `secret`'s.
    pub config: OrgConfig,
    pub metrics: Arc<OrgMetrics>,
    pub tokens: Arc<TokenCache>,
    /// The credential's secret, shared with its other orgs and read at every token request.
    pub secret: Arc<SecretHolder>,
    pub client: ObfClient,
    /// Shared with a relabelled copy of this org (see [`Org::relabelled`]).
    state: Arc<Mutex<OrgState>>,
}

impl Org {
    pub fn new(
        config: OrgConfig,
        metrics: Arc<OrgMetrics>,
        tokens: Arc<TokenCache>,
        secret: Arc<SecretHolder>,
        client: ObfClient,
    ) -> Self {
        Org {
            config,
            metrics,
            tokens,
            secret,
            client,
            state: Arc::default(),
        }
    }

    /// This org with `config`, which differs at most in labels and secret (see
    /// [`OrgConfig::same_except_secret_and_labels`]), sharing everything that runs (history,
    /// health, token cache, secret, series): a reload swaps it in without a restart.
    pub fn reconfigured(&self, config: OrgConfig) -> Self {
        Org {
            config,
            metrics: self.metrics.clone(),
            tokens: self.tokens.clone(),
            secret: self.secret.clone(),
            client: self.client.clone(),
            state: self.state.clone(),
        }
    }

    pub fn name(&self) -> &str {
        self.config.name.as_str()
    }

    /// The most recent results (up to [`HISTORY_LEN`]), newest last. Only the newest carries its
    /// detail, token expiry and subscription end; older ones keep the outcome and timings.
    pub fn history(&self) -> Vec<ProbeReport> {
        let state = self.lock_state();
        let mut reports: Vec<ProbeReport> = state
            .history
            .iter()
            .map(|past| past.report(self.name()))
            .collect();
        reports.extend(state.last.clone());
        reports
    }

    fn lock_state(&self) -> std::sync::MutexGuard<'_, OrgState> {
        // A panic while holding this lock cannot leave it inconsistent: every write is one field.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

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
                    Some(retry_after) => retry_after.min(crate::token::MAX_RETRY_AFTER),
                    None => crate::token::backoff_delay(
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
                        after.min(crate::token::MAX_RETRY_AFTER)
                    })
                    .max(soon);
                state.subscription_due = Some(crate::clock::after(now, retry));
            }
        }
        report.subscription_ends = state.subscription_ends;
    }

    /// Logs state changes once (repeats at debug) and keeps the history.
    fn remember(&self, report: &ProbeReport) {
        let mut state = self.lock_state();
        let health = match report.reason {
            None if report.success => Health::Ok,
            Some(reason) => Health::Failing(reason),
            None => Health::Failing(Reason::NoToken),
        };
        let org = self.name();
        let detail = report.detail.as_deref().unwrap_or("");
        let status = report.status.unwrap_or(0);
        if state.health != Some(health) {
            match health {
                Health::Ok => tracing::info!(org, status, "ping ok"),
                Health::Failing(reason) => {
                    tracing::warn!(org, %reason, status, detail, "ping failing")
                }
            }
        } else {
            tracing::debug!(
                org,
                success = report.success,
                reason = report.reason.map(|r| r.as_str()),
                status,
                "probe done"
            );
        }
        if state.credentials_valid != report.credentials_valid {
            match report.credentials_valid {
                Some(true) => tracing::info!(org, "credentials accepted by the token endpoint"),
                Some(false) => tracing::warn!(
                    org,
                    "credentials rejected by the token endpoint (revoked, wrong secret or subscription ended)"
                ),
                None => {}
            }
        }
        state.health = Some(health);
        state.credentials_valid = report.credentials_valid;
        if let Some(previous) = state.last.replace(report.clone()) {
            if state.history.len() == HISTORY_LEN - 1 {
                state.history.pop_front();
            }
            state.history.push_back(PastResult::of(&previous));
        }
    }
}
