//! One probe of one org: token (cached or fresh) → ping → subscription check → metrics and logs.
//!
//! It owns the "403 with a cached token" rule (drop it, get a fresh one, ping once more), the
//! `no_token` outcome, and the ping back-off after a 429 and the subscription check's timing.
//! Each step does its I/O, updates the timers it owns and returns a typed outcome
//! (`outcome`); the run's metrics and report are made from all of them in one place
//! (`account`). State-change logging and the recent history are the org's (`org.rs`). It does
//! not know when it runs (the schedule decides) nor how tokens are spaced (the token cache
//! decides).

use std::time::Duration;

use tokio::time::Instant;

use super::org::Org;
use super::report::ProbeReport;
use crate::obf::client::CallFailure;
use crate::obf::reason::Reason;
use crate::obf::token::Token;
use outcome::{Again, PingOutcome, Pings, Run, SubscriptionOutcome};

mod account;
mod acquire;
mod outcome;

/// A failed subscription check is tried again after this, not at every run.
const SUBSCRIPTION_RETRY: Duration = Duration::from_secs(60);
/// Without `Retry-After`, the wait after the first ping answered 429; it doubles with each
/// consecutive one as the token backoff does (up to 5 minutes, with jitter).
const PING_BACKOFF_FIRST: Duration = Duration::from_secs(10);

impl Org {
    /// Runs one probe and records it: each step returns what it did (`outcome`), and
    /// `account::account` turns the whole run into its metric updates and report.
    pub async fn probe(&self) -> ProbeReport {
        let run = match self.ping_withheld() {
            // The API asked us to slow down (429 on a ping): this run sends nothing.
            Some(wait) => Run::Withheld { wait },
            None => {
                let (token, first) = self.acquire_token(None).await;
                let (pings, token) = match token {
                    Some(token) => self.ping_with_retry(token, first.reused).await,
                    None => (Pings::NoToken, None),
                };
                let subscription = self.check_subscription(token.as_ref()).await;
                Run::Sent {
                    token: first,
                    pings,
                    subscription,
                }
            }
        };
        self.record(&run)
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

    /// Pings with `token`; on 401/403 with a cached token, drops it and pings once more with a
    /// fresh one. Returns what happened and the token that is still believed good, for the
    /// subscription check.
    async fn ping_with_retry(&self, token: Token, reused: bool) -> (Pings, Option<Token>) {
        let first = self.ping(&token).await;
        let (elapsed, refused) = match first.result {
            Ok(_) => return (Pings::Once(first), Some(token)),
            Err(ref failure) if !(is_refusal(failure) && reused) => {
                let still_good = !is_refusal(failure);
                if !still_good {
                    self.tokens.discard(token.generation);
                }
                return (Pings::Once(first), still_good.then_some(token));
            }
            Err(failure) => (first.elapsed, failure),
        };
        tracing::debug!(org = self.name(), status = ?refused.status, "cached token refused; getting a fresh one");
        let (fresh, again) = self.acquire_token(Some(token.generation)).await;
        let (then, good) = match fresh {
            Some(fresh) if fresh.generation != token.generation => {
                let ping = self.ping(&fresh).await;
                let good = match &ping.result {
                    Err(failure) if is_refusal(failure) => {
                        self.tokens.discard(fresh.generation);
                        None
                    }
                    _ => Some(fresh),
                };
                (Again::Pinged(ping), good)
            }
            // The token endpoint was asked and gave nothing.
            _ if again.request.is_some() => (Again::NoToken, None),
            // No fresh token within this probe's time: the refusal stands; the next run
            // requests a fresh token because the refused one is gone from the cache.
            _ => (Again::NotAsked, None),
        };
        let pings = Pings::Retried {
            elapsed,
            refused,
            token: again,
            again: then,
        };
        (pings, good)
    }

    /// Sends one ping and notes a 429 (or its absence) for the next runs.
    async fn ping(&self, token: &Token) -> PingOutcome {
        let started = Instant::now();
        let result = self.client.ping(&self.endpoint, &token.access_token).await;
        let elapsed = started.elapsed();
        self.note_ping_rate_limit(result.as_ref().err());
        PingOutcome {
            elapsed,
            result: result.map(|ok| ok.status),
        }
    }

    /// Checks the subscription's end when it is due, with the token still believed good.
    async fn check_subscription(&self, token: Option<&Token>) -> SubscriptionOutcome {
        let interval = self.config.subscription_check_interval;
        if interval.is_zero() {
            return SubscriptionOutcome::Off;
        }
        let now = Instant::now();
        {
            let state = self.lock_state();
            if state.subscription_due.is_some_and(|due| now < due) {
                return SubscriptionOutcome::NotDue {
                    ends: state.subscription_ends,
                };
            }
        }
        let result = match token {
            Some(token) => {
                self.client
                    .subscription_end(&self.endpoint, &token.access_token)
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
        match &result {
            Ok(paid_until) => {
                state.subscription_ends = Some(*paid_until);
                state.subscription_due = Some(crate::clock::after(now, interval));
            }
            Err(failure) => {
                tracing::debug!(org = self.name(), reason = %failure.reason, detail = %failure.detail, "subscription check failed");
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
        SubscriptionOutcome::Checked {
            result,
            ends: state.subscription_ends,
        }
    }
}

/// The API refused the token (401/403).
fn is_refusal(failure: &CallFailure) -> bool {
    matches!(failure.status, Some(401 | 403))
}
