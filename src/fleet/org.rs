//! [`Org`]: the fleet's unit, one configured org with everything a probe needs (its config,
//! metrics, the token cache and secret of its credential, an HTTP client), and what it remembers
//! between runs: health for state-change logging, rate-limit and subscription timers, and the
//! recent history the status page shows. What a run does is `probe`'s; when it runs is the
//! schedule's.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use tokio::time::Instant;

use super::client_secret::SecretHolder;
use super::report::{ProbeReport, TokenUse};
use crate::config::OrgConfig;
use crate::metrics::OrgMetrics;
use crate::obf::client::{Endpoint, ObfClient};
use crate::obf::reason::Reason;
use crate::obf::token::TokenCache;

/// How many results each org keeps for the status page.
pub const HISTORY_LEN: usize = 20;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Health {
    Ok,
    Failing(Reason),
}

#[derive(Default)]
pub(super) struct OrgState {
    health: Option<Health>,
    credentials_valid: Option<bool>,
    pub(super) subscription_due: Option<Instant>,
    pub(super) subscription_ends: Option<i64>,
    /// After a ping answered 429: no ping (nor token request) before this.
    pub(super) ping_not_before: Option<Instant>,
    /// Consecutive pings answered 429, for the back-off without `Retry-After`.
    pub(super) pings_rate_limited: u32,
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
    /// The URLs of its calls, built once from `config`.
    pub(super) endpoint: Endpoint,
    /// Shared with a relabelled copy of this org (see [`Org::reconfigured`]).
    state: Arc<Mutex<OrgState>>,
}

impl Org {
    pub fn new(
        config: OrgConfig,
        metrics: Arc<OrgMetrics>,
        tokens: Arc<TokenCache>,
        secret: Arc<SecretHolder>,
        client: ObfClient,
        endpoint: Endpoint,
    ) -> Self {
        Org {
            config,
            metrics,
            tokens,
            secret,
            client,
            endpoint,
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
            endpoint: self.endpoint.clone(),
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

    pub(super) fn lock_state(&self) -> std::sync::MutexGuard<'_, OrgState> {
        // A panic while holding this lock cannot leave it inconsistent: every write is one field.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Logs state changes once (repeats at debug) and keeps the history.
    pub(super) fn remember(&self, report: &ProbeReport) {
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
            if state.history.capacity() == 0 {
                // Its final size at once: growing by doubling would end at 32 places, not 19
                // (0.3 KB more per org, 3 MB at 10,000 orgs).
                state.history.reserve_exact(HISTORY_LEN - 1);
            }
            if state.history.len() == HISTORY_LEN - 1 {
                state.history.pop_front();
            }
            state.history.push_back(PastResult::of(&previous));
        }
    }
}
