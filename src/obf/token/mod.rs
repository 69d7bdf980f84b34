//! The token cache: one per credential (host + client_id), shared by the orgs that use it.
//!
//! It owns every rule about *when* a token may be requested: reuse until shortly before expiry (or
//! until `credential_check_interval` after it was obtained), at most one request in flight,
//! never two requests closer than `token_min_interval`, backoff after 429 / 5xx / network
//! errors, and no retry after a rejection until a later scheduled run; the rules themselves are
//! the pure `decision::decide`. It publishes what it learns about the credential in a
//! [`CredentialState`] every org of the credential reads. It does not know how a token is
//! fetched (the caller passes the fetch) nor anything about metrics.

use std::future::Future;
use std::sync::{Arc, Mutex as StdMutex, MutexGuard};
use std::time::{Duration, SystemTime};

use secrecy::SecretString;
use tokio::time::Instant;

use crate::obf::credential::CredentialState;
pub use crate::obf::credential::Snapshot;
use crate::obf::reason::Reason;
use crate::{clock, random};
use decision::{CachedToken, Decision, State};

mod decision;

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
    /// `credential_check_interval`: a token obtained longer ago than this is replaced, to
    /// verify the credentials again; zero turns it off.
    pub check_interval: Duration,
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
    /// The credentials changed while the request was in flight (see
    /// [`TokenCache::change_credentials`]): its answer was about the old ones, so it changed
    /// neither the credential's validity nor the cached token (a token it obtained is handed to
    /// this caller only). Spacing and backoff applied as for any answer.
    pub superseded: bool,
}

/// Why no token could be handed out without sending a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Withheld {
    /// The next request is not allowed before the spacing / backoff ends, beyond this call's wait budget.
    NotYet,
    /// The token endpoint rejected the credentials; they are retried at a later scheduled run.
    AfterRejection,
    /// Another caller's token request (spacing sleep and fetch) outlasted this call's wait budget.
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

/// One credential's token, and the rules for getting a new one.
///
/// Two locks: `state`, a short synchronous lock never held across an await (every caller that
/// can be served from the cache is served under it alone), and `request`, the one request slot,
/// held by the caller that sends a request across the spacing sleep and the fetch. Callers with
/// no working token queue on the slot and so share the answer of the request ahead of them;
/// callers with a working token never wait for it.
pub struct TokenCache {
    state: StdMutex<State>,
    request: tokio::sync::Mutex<()>,
    /// What the orgs of this credential show; written under `state`.
    published: Arc<CredentialState>,
}

impl TokenCache {
    pub fn new(policy: TokenPolicy) -> Self {
        TokenCache {
            state: StdMutex::new(State::new(policy)),
            request: tokio::sync::Mutex::new(()),
            published: Arc::default(),
        }
    }

    /// The published state of this credential, for the orgs' gauges, reports and status rows.
    pub fn credential(&self) -> Arc<CredentialState> {
        self.published.clone()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every change under this lock is a few field writes with no await and no call out, so
        // a panic cannot leave it half-changed.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn publish(&self, state: &State) {
        self.published.publish(&state.snapshot());
    }

    /// New rules for the same credentials (a reload changed `token_*` or
    /// `credential_check_interval`): the token in hand is kept and judged by the new rules.
    pub fn set_policy(&self, policy: TokenPolicy) {
        self.lock().policy = policy;
    }

    /// The credentials changed (a reload or a secret file rotated the secret, or a reload changed
    /// the auth mode): the token in hand is dropped, so the next request carries the new
    /// credentials. The spacing and backoff of past requests still apply, because the server
    /// counts requests per client, whatever secret they carried. What is published about the
    /// client (valid, last verified) stays until the endpoint answers the new credentials: a
    /// rotation says nothing new about them, and a gap in `obf_credentials_valid` at every
    /// rotation would help no one. A request in flight with the old credentials is *superseded*:
    /// its answer does not change the credential's state (see [`RequestRecord::superseded`]).
    pub fn credentials_changed(&self) {
        self.change_credentials(|| true);
    }

    /// Runs `change`, which swaps the credentials the fetch reads (a secret holder) and says
    /// whether they changed, under this cache's lock; if they did, applies
    /// [`TokenCache::credentials_changed`] in the same critical section. So no answer can be
    /// recorded between the swap and the drop of the old token: an answer to a request that
    /// carried the old secret is always seen as superseded. `change` must not call this cache.
    pub fn change_credentials(&self, change: impl FnOnce() -> bool) -> bool {
        let mut state = self.lock();
        if !change() {
            return false;
        }
        state.token = None;
        state.rejected_at = None;
        state.credentials_epoch = state.credentials_epoch.wrapping_add(1);
        self.publish(&state);
        true
    }

    /// [`TokenCache::set_policy`] and [`TokenCache::credentials_changed`] at once.
    pub fn reset(&self, policy: TokenPolicy) {
        self.set_policy(policy);
        self.credentials_changed();
    }

    /// Forgets token `generation` if it is still the one in hand: the API refused it even fresh,
    /// so it is not shown as the token in hand. The next run asks for a new one (spacing applies).
    pub fn discard(&self, generation: u64) {
        let mut state = self.lock();
        if state.forget(Some(generation)) {
            self.publish(&state);
        }
    }

    /// Credential validity, token expiry and last verification, for the gauges.
    pub fn snapshot(&self) -> Snapshot {
        self.published.snapshot()
    }

    /// Hands out a token: the cached one while it is fresh, else a new one from `fetch` when the
    /// rules allow a request (see `decision::decide`). Waits for the spacing between requests,
    /// or for another caller's request, only if that fits in `wait_budget`. `replace` names a
    /// token generation the caller saw refused: it is dropped and a newer token is required.
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
        let decide = || {
            let mut state = self.lock();
            if state.forget(replace) {
                self.publish(&state);
            }
            decision::decide(&state, Instant::now(), called_at, deadline, replace)
        };

        let slot = match decide() {
            Decision::Reuse(token) => return reused(token),
            Decision::Withhold(why) => return withheld(why),
            Decision::RequestNow {
                meanwhile: Some(token),
            } => match self.request.try_lock() {
                Ok(slot) => slot,
                // Someone is already asking: the token in hand still works.
                Err(_) => return reused(token),
            },
            Decision::RequestNow { meanwhile: None } | Decision::RequestAt(_) => {
                match tokio::time::timeout_at(deadline, self.request.lock()).await {
                    Ok(slot) => slot,
                    Err(_) => return withheld(Withheld::Busy),
                }
            }
        };
        // The request ahead of this caller may have answered it already.
        match decide() {
            Decision::Reuse(token) => return reused(token),
            Decision::Withhold(why) => return withheld(why),
            Decision::RequestNow { .. } => {}
            Decision::RequestAt(at) => tokio::time::sleep_until(at).await,
        }

        let sent_at = Instant::now();
        let sent_wall = SystemTime::now();
        // Recorded before the await too: if the caller is dropped mid-request (a client hanging up
        // on /probe), the request may still have reached the server.
        let epoch = {
            let mut state = self.lock();
            state.last_request = Some(sent_at);
            state.credentials_epoch
        };
        // The fetch reads the credentials after `epoch` was taken: if they change before the
        // answer is recorded, the epoch has moved and the answer is superseded.
        let result = fetch().await;
        let duration = sent_at.elapsed();
        let sent = Sent {
            at: sent_at,
            wall: sent_wall,
            epoch,
        };
        let acquired = self.record(result, sent, duration);
        drop(slot);
        acquired
    }

    /// Applies the answer of the request `sent`.
    fn record(
        &self,
        result: Result<IssuedToken, TokenFailure>,
        sent: Sent,
        duration: Duration,
    ) -> Acquired {
        let (sent_at, sent_wall) = (sent.at, sent.wall);
        let mut state = self.lock();
        let now = Instant::now();
        // The spacing counts from the answer, not the send: the server issued the token somewhere
        // in between, and counting from the send could land a retry inside its ten seconds.
        state.last_request = Some(now);
        let superseded = state.credentials_epoch != sent.epoch;
        let failure = match result {
            Ok(issued) if superseded => {
                // Obtained with the old secret: it works, so this caller may use it, but it is
                // not kept: the next request must carry the new secret.
                state.generation += 1;
                state.backoff_until = None;
                state.backoff_step = 0;
                let token = Token {
                    access_token: issued.access_token,
                    generation: state.generation,
                    expires_at: None,
                };
                return Acquired {
                    token: Some(token),
                    reused: false,
                    request: Some(RequestRecord {
                        duration,
                        result: Ok(()),
                        superseded,
                    }),
                    withheld: None,
                };
            }
            Ok(issued) => {
                // Absurd lifetimes (a broken server) must not overflow the clock arithmetic.
                let lifetime = issued
                    .expires_in
                    .unwrap_or(state.policy.max_age)
                    .min(MAX_TOKEN_LIFETIME);
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
                    obtained_at: sent_at,
                    lifetime,
                });
                state.backoff_until = None;
                state.backoff_step = 0;
                state.rejected_at = None;
                state.credentials_valid = Some(true);
                state.last_verified = Some(SystemTime::now());
                self.publish(&state);
                return Acquired {
                    token: Some(token),
                    reused: false,
                    request: Some(RequestRecord {
                        duration,
                        result: Ok(()),
                        superseded,
                    }),
                    withheld: None,
                };
            }
            Err(failure) => failure,
        };
        match failure.reason {
            // A refusal of the old secret says nothing about the new one.
            Reason::Rejected if superseded => {}
            Reason::Rejected => {
                state.rejected_at = Some(now);
                state.credentials_valid = Some(false);
                state.token = None;
            }
            _ => {
                let min_interval = state.policy.min_interval;
                let delay = match failure.retry_after {
                    // Honoured, but capped: a proxy saying "come back tomorrow" must not
                    // silence a credential for a day.
                    // Not `clamp`: it panics when token_min_interval is over the cap; the spacing wins then.
                    Some(retry_after) => retry_after.min(MAX_RETRY_AFTER).max(min_interval),
                    None => backoff_delay(min_interval, state.backoff_step),
                };
                state.backoff_step = state.backoff_step.saturating_add(1);
                state.backoff_until = Some(clock::after(now, delay));
            }
        }
        self.publish(&state);
        // A transient failure changes nothing else: a token that still works stays in use.
        let token = state.usable(now).map(|cached| cached.token.clone());
        Acquired {
            reused: token.is_some(),
            token,
            request: Some(RequestRecord {
                duration,
                result: Err(failure),
                superseded,
            }),
            withheld: None,
        }
    }
}

/// When a request was sent, and with which credentials.
#[derive(Clone, Copy)]
struct Sent {
    at: Instant,
    wall: SystemTime,
    epoch: u64,
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
