//! The token cache: one per credential (host + client_id), shared by the orgs that use it.
//!
//! It owns every rule about *when* a token may be requested: reuse until shortly before expiry, at
//! most one request in flight, never two requests closer than `token_min_interval`, backoff after
//! 429 / 5xx / network errors, and no retry after a rejection until a later scheduled run. It does
//! not know how a token is fetched (the caller passes the fetch) nor anything about metrics.

use std::future::Future;
use std::time::{Duration, SystemTime};

use secrecy::SecretString;
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::reason::Reason;
use crate::{clock, random};

/// Backoff never grows past this.
pub const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// A `Retry-After` longer than this is cut to it.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);
/// An `expires_in` longer than this is cut to it (one year).
pub const MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(365 * 86400);

/// The rules of one credential, from its orgs' config.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TokenPolicy {
    pub refresh_margin: Duration,
    pub min_interval: Duration,
    pub max_age: Duration,
}

/// What the token endpoint answered with on success.
pub struct IssuedToken {
    pub access_token: SecretString,
    pub expires_in: Option<Duration>,
}

/// A failed token request, as the fetch reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenFailure {
    pub reason: Reason,
    /// From a 429's `Retry-After`.
    pub retry_after: Option<Duration>,
    /// What went wrong, safe to log (no secrets, no tokens).
    pub detail: String,
}

/// A token in hand.
#[derive(Clone)]
pub struct Token {
    pub access_token: SecretString,
    /// Increases with every token this cache obtains; identifies the token without exposing it.
    pub generation: u64,
    /// Wall-clock expiry the endpoint announced, for metrics; `None` without `expires_in` (the
    /// reuse cap `token_max_age` is our rule, not the token's expiry).
    pub expires_at: Option<SystemTime>,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Token")
            .field("access_token", &"[redacted]")
            .field("generation", &self.generation)
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// A token request that this call actually sent.
#[derive(Clone, Debug)]
pub struct RequestRecord {
    pub duration: Duration,
    pub result: Result<(), TokenFailure>,
}

/// Why no token could be handed out without sending a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Withheld {
    /// The next request is not allowed before the spacing / backoff ends, beyond this call's wait budget.
    NotYet,
    /// The token endpoint rejected the credentials; they are retried at a later scheduled run.
    AfterRejection,
    /// Another caller held the cache for longer than this call's wait budget.
    Busy,
}

/// The answer of [`TokenCache::acquire`].
#[derive(Debug)]
pub struct Acquired {
    /// A usable token, if any.
    pub token: Option<Token>,
    /// The token came from the cache (obtained earlier or by another caller), not from this call.
    pub reused: bool,
    /// The token request this call sent, if it sent one.
    pub request: Option<RequestRecord>,
    /// Set when no request was sent and no token is at hand.
    pub withheld: Option<Withheld>,
}

/// What the cache knows for the gauges: `None` means nothing to say yet.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub credentials_valid: Option<bool>,
    pub token_expires_at: Option<SystemTime>,
}

struct CachedToken {
    token: Token,
    /// Reuse ends here (monotonic).
    refresh_at: Instant,
    /// The token is expected to be refused from here on.
    valid_until: Instant,
}

struct State {
    policy: TokenPolicy,
    token: Option<CachedToken>,
    last_request: Option<Instant>,
    backoff_until: Option<Instant>,
    backoff_step: u32,
    /// When the token endpoint last rejected the credentials (cleared by a success).
    rejected_at: Option<Instant>,
    credentials_valid: Option<bool>,
    generation: u64,
}

impl State {
    fn spacing_ends(&self) -> Option<Instant> {
        self.last_request
            .map(|at| clock::after(at, self.policy.min_interval))
    }

    fn usable(&self, now: Instant) -> Option<&CachedToken> {
        self.token.as_ref().filter(|t| now < t.valid_until)
    }
}

/// One credential's token, and the rules for getting a new one.
pub struct TokenCache {
    state: Mutex<State>,
}

impl TokenCache {
    pub fn new(policy: TokenPolicy) -> Self {
        TokenCache {
            state: Mutex::new(State {
                policy,
                token: None,
                last_request: None,
                backoff_until: None,
                backoff_step: 0,
                rejected_at: None,
                credentials_valid: None,
                generation: 0,
            }),
        }
    }

    /// New credentials or rules for the same client (a reload rotated the secret): the token in
    /// hand is dropped, but the spacing and backoff of past requests still apply, because the
    /// server counts requests per client, whatever secret they carried.
    pub async fn reset(&self, policy: TokenPolicy) {
        let mut state = self.state.lock().await;
        state.policy = policy;
        state.token = None;
        state.credentials_valid = None;
        state.rejected_at = None;
    }

    /// Forgets token `generation` if it is still the one in hand: the API refused it even fresh,
    /// so it is not shown as the token in hand. The next run asks for a new one (spacing applies).
    pub async fn discard(&self, generation: u64) {
        let mut state = self.state.lock().await;
        if state.token.as_ref().map(|t| t.token.generation) == Some(generation) {
            state.token = None;
        }
    }

    /// Credential validity and token expiry, for the gauges.
    pub async fn snapshot(&self) -> Snapshot {
        let state = self.state.lock().await;
        Snapshot {
            credentials_valid: state.credentials_valid,
            token_expires_at: state.token.as_ref().and_then(|t| t.token.expires_at),
        }
    }

    /// Hands out a token: the cached one while it is fresh, else a new one from `fetch` when the
    /// rules allow a request. Waits for the spacing between requests only if that wait fits in
    /// `wait_budget`. `replace` names a token generation the caller saw refused: it is dropped and a
    /// newer token is required.
    ///
    /// Callers are served one at a time, so concurrent callers share one request's result.
    pub async fn acquire<F, Fut>(
        &self,
        wait_budget: Duration,
        replace: Option<u64>,
        fetch: F,
    ) -> Acquired
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<IssuedToken, TokenFailure>>,
    {
        let called_at = Instant::now();
        let deadline = clock::after(called_at, wait_budget);
        let Ok(mut state) = tokio::time::timeout_at(deadline, self.state.lock()).await else {
            return withheld(Withheld::Busy);
        };

        let now = Instant::now();
        if let Some(refused) = replace {
            let current = state.token.as_ref().map(|t| t.token.generation);
            if current == Some(refused) {
                state.token = None;
            } else if current > Some(refused) {
                // Another caller already replaced the refused token: that one is fresh.
                if let Some(cached) = state.usable(now) {
                    return reused(cached.token.clone());
                }
            }
        }

        if let Some(cached) = state.token.as_ref().filter(|t| now < t.refresh_at) {
            return reused(cached.token.clone());
        }

        if state.backoff_until.is_some_and(|until| until > now) {
            // In backoff: keep using a token that still works, else report none.
            return match state.usable(now) {
                Some(cached) => reused(cached.token.clone()),
                None => withheld(Withheld::NotYet),
            };
        }
        if let Some(ends) = state.spacing_ends().filter(|e| *e > now) {
            if let Some(cached) = state.usable(now) {
                return reused(cached.token.clone());
            }
            // A rejection this caller waited behind is its answer too: asking again within the
            // same round would only repeat it. An earlier one is retried at this scheduled run.
            if state.rejected_at.is_some_and(|at| at >= called_at) {
                return withheld(Withheld::AfterRejection);
            }
            if ends > deadline {
                return withheld(Withheld::NotYet);
            }
            tokio::time::sleep_until(ends).await;
        }

        let sent_at = Instant::now();
        let sent_wall = SystemTime::now();
        // Recorded before the await too: if the caller is dropped mid-request (a client hanging up
        // on /probe), the request may still have reached the server.
        state.last_request = Some(sent_at);
        let result = fetch().await;
        let duration = sent_at.elapsed();
        // The spacing counts from the answer, not the send: the server issued the token somewhere
        // in between, and counting from the send could land a retry inside its ten seconds.
        state.last_request = Some(Instant::now());
        match result {
            Ok(issued) => {
                let policy = state.policy;
                // Absurd lifetimes (a broken server) must not overflow the clock arithmetic.
                let lifetime = issued
                    .expires_in
                    .unwrap_or(policy.max_age)
                    .min(MAX_TOKEN_LIFETIME);
                // A token shorter-lived than the margin would never be reused: refresh halfway.
                let margin = policy.refresh_margin.min(lifetime / 2);
                let reuse_for = lifetime.saturating_sub(margin);
                state.generation += 1;
                let token = Token {
                    access_token: issued.access_token,
                    generation: state.generation,
                    expires_at: issued
                        .expires_in
                        .map(|_| clock::wall_after(sent_wall, lifetime)),
                };
                state.token = Some(CachedToken {
                    token: token.clone(),
                    refresh_at: clock::after(sent_at, reuse_for),
                    valid_until: clock::after(sent_at, lifetime),
                });
                state.backoff_until = None;
                state.backoff_step = 0;
                state.rejected_at = None;
                state.credentials_valid = Some(true);
                Acquired {
                    token: Some(token),
                    reused: false,
                    request: Some(RequestRecord {
                        duration,
                        result: Ok(()),
                    }),
                    withheld: None,
                }
            }
            Err(failure) => {
                let now = Instant::now();
                match failure.reason {
                    Reason::Rejected => {
                        state.rejected_at = Some(now);
                        state.credentials_valid = Some(false);
                        state.token = None;
                    }
                    _ => {
                        let min_interval = state.policy.min_interval;
                        let delay = match failure.retry_after {
                            // Honoured, but capped: a proxy saying "come back tomorrow" must not
                            // silence a credential for a day. Not `clamp`: it panics when
                            // token_min_interval is over the cap, and the spacing wins then.
                            Some(retry_after) => retry_after.min(MAX_RETRY_AFTER).max(min_interval),
                            None => backoff_delay(min_interval, state.backoff_step),
                        };
                        state.backoff_step = state.backoff_step.saturating_add(1);
                        state.backoff_until = Some(clock::after(now, delay));
                    }
                }
                let request = Some(RequestRecord {
                    duration,
                    result: Err(failure),
                });
                match state.usable(now) {
                    Some(cached) => Acquired {
                        token: Some(cached.token.clone()),
                        reused: true,
                        request,
                        withheld: None,
                    },
                    None => Acquired {
                        token: None,
                        reused: false,
                        request,
                        withheld: None,
                    },
                }
            }
        }
    }
}

fn reused(token: Token) -> Acquired {
    Acquired {
        token: Some(token),
        reused: true,
        request: None,
        withheld: None,
    }
}

fn withheld(why: Withheld) -> Acquired {
    Acquired {
        token: None,
        reused: false,
        request: None,
        withheld: Some(why),
    }
}

/// Exponential backoff from `base`, doubling per failure, capped at [`MAX_BACKOFF`], plus up to
/// 20 % jitter so that many clients failing together do not retry together. Never below `base`.
pub fn backoff_delay(base: Duration, step: u32) -> Duration {
    let factor = 2u32.saturating_pow(step.min(16));
    let delay = base.saturating_mul(factor).min(MAX_BACKOFF);
    let jittered = delay.saturating_add(random::up_to(delay / 5));
    jittered.min(MAX_BACKOFF).max(base)
}

#[cfg(test)]
mod tests;
