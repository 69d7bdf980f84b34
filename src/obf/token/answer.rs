//! The effects of one answer of the token endpoint on the cache's [`State`], as one function
//! with the time passed in: [`State::answered`]. [`super::TokenCache::acquire`] sends the request
//! and calls it under the lock; the rules about *whether* to send are [`super::decision`]'s.

use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use super::decision::{CachedToken, State};
use super::{
    backoff_delay, Acquired, IssuedToken, RequestRecord, Token, TokenFailure, MAX_RETRY_AFTER,
    MAX_TOKEN_LIFETIME,
};
use crate::clock;
use crate::obf::reason::Reason;

/// When a request was sent, and with which credentials.
#[derive(Clone, Copy, Debug)]
pub(super) struct Sent {
    pub(super) at: Instant,
    pub(super) wall: SystemTime,
    /// The cache's `credentials_epoch` when the fetch was started.
    pub(super) epoch: u64,
}

impl State {
    /// Applies the answer `result` to the request `sent`, which took `duration`, answered at
    /// `now` (`wall_now` on the wall clock), and says what the caller gets. The only source of
    /// variation besides the arguments is the backoff's jitter ([`backoff_delay`]).
    pub(super) fn answered(
        &mut self,
        result: Result<IssuedToken, TokenFailure>,
        sent: Sent,
        duration: Duration,
        now: Instant,
        wall_now: SystemTime,
    ) -> Acquired {
        // The spacing counts from the answer, not the send: the server issued the token somewhere
        // in between, and counting from the send could land a retry inside its ten seconds.
        self.last_request = Some(now);
        let superseded = self.credentials_epoch != sent.epoch;
        let record = |result| {
            Some(RequestRecord {
                duration,
                result,
                superseded,
            })
        };
        let failure = match result {
            Ok(issued) if superseded => {
                // Obtained with the old secret: it works, so this caller may use it, but it is
                // not kept: the next request must carry the new secret.
                self.generation += 1;
                self.backoff_until = None;
                self.backoff_step = 0;
                let token = Token {
                    access_token: issued.access_token,
                    generation: self.generation,
                    expires_at: None,
                };
                return fetched(token, record(Ok(())));
            }
            Ok(issued) => {
                // Absurd lifetimes (a broken server) must not overflow the clock arithmetic.
                let lifetime = issued
                    .expires_in
                    .unwrap_or(self.policy.max_age)
                    .min(MAX_TOKEN_LIFETIME);
                self.generation += 1;
                let token = Token {
                    access_token: issued.access_token,
                    generation: self.generation,
                    expires_at: issued
                        .expires_in
                        .map(|_| clock::wall_after(sent.wall, lifetime)),
                };
                self.token = Some(CachedToken {
                    token: token.clone(),
                    obtained_at: sent.at,
                    lifetime,
                });
                self.backoff_until = None;
                self.backoff_step = 0;
                self.rejected_at = None;
                self.credentials_valid = Some(true);
                self.last_verified = Some(wall_now);
                return fetched(token, record(Ok(())));
            }
            Err(failure) => failure,
        };
        match failure.reason {
            // A refusal of the old secret says nothing about the new one.
            Reason::Rejected if superseded => {}
            Reason::Rejected => {
                self.rejected_at = Some(now);
                self.credentials_valid = Some(false);
                self.token = None;
            }
            _ => {
                let min_interval = self.policy.min_interval;
                let delay = match failure.retry_after {
                    // Honoured, but capped: a proxy saying "come back tomorrow" must not
                    // silence a credential for a day.
                    // Not `clamp`: it panics when token_min_interval is over the cap; the spacing wins then.
                    Some(retry_after) => retry_after.min(MAX_RETRY_AFTER).max(min_interval),
                    None => backoff_delay(min_interval, self.backoff_step),
                };
                self.backoff_step = self.backoff_step.saturating_add(1);
                self.backoff_until = Some(clock::after(now, delay));
            }
        }
        // A transient failure changes nothing else: a token that still works stays in use.
        let token = self.usable(now).map(|cached| cached.token.clone());
        Acquired {
            reused: token.is_some(),
            token,
            request: record(Err(failure)),
            withheld: None,
        }
    }
}

fn fetched(token: Token, request: Option<RequestRecord>) -> Acquired {
    Acquired {
        token: Some(token),
        reused: false,
        request,
        withheld: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::obf::token::TokenPolicy;
    use secrecy::{ExposeSecret, SecretString};

    const POLICY: TokenPolicy = TokenPolicy {
        refresh_margin: Duration::from_secs(60),
        min_interval: Duration::from_secs(10),
        max_age: Duration::from_secs(3600),
        check_interval: Duration::ZERO,
    };

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    fn issued(expires_in: Option<Duration>) -> Result<IssuedToken, TokenFailure> {
        Ok(IssuedToken {
            access_token: SecretString::from("t1"),
            expires_in,
        })
    }

    fn failed(reason: Reason, retry_after: Option<Duration>) -> Result<IssuedToken, TokenFailure> {
        Err(TokenFailure {
            reason,
            retry_after,
            detail: String::new(),
        })
    }

    /// A request sent at `t0` with the credentials of epoch 0, answered one second later.
    fn answer(
        state: &mut State,
        t0: Instant,
        result: Result<IssuedToken, TokenFailure>,
    ) -> Acquired {
        let wall = SystemTime::UNIX_EPOCH + secs(1_000);
        let sent = Sent {
            at: t0,
            wall,
            epoch: 0,
        };
        state.answered(result, sent, secs(1), t0 + secs(1), wall + secs(1))
    }

    #[test]
    fn a_token_is_kept_with_its_expiry_and_the_credentials_are_valid() {
        let t0 = Instant::now();
        let mut state = State::new(POLICY);
        state.backoff_step = 3;
        let acquired = answer(&mut state, t0, issued(Some(secs(300))));
        let token = acquired.token.expect("a token");
        assert_eq!(token.access_token.expose_secret(), "t1");
        assert_eq!((token.generation, acquired.reused), (1, false));
        assert_eq!(token.expires_at, Some(SystemTime::UNIX_EPOCH + secs(1_300)));
        let request = acquired.request.expect("a request");
        assert_eq!((request.result, request.superseded), (Ok(()), false));
        assert_eq!(state.last_request, Some(t0 + secs(1)));
        assert_eq!(state.backoff_step, 0);
        let snapshot = state.snapshot();
        assert_eq!(snapshot.credentials_valid, Some(true));
        assert_eq!(
            snapshot.last_verified,
            Some(SystemTime::UNIX_EPOCH + secs(1_001))
        );
        // The lifetime counts from the send.
        assert!(state.usable(t0 + secs(299)).is_some());
        assert!(state.usable(t0 + secs(300)).is_none());
    }

    #[test]
    fn a_token_without_expires_in_is_reused_for_max_age_and_shows_no_expiry() {
        let t0 = Instant::now();
        let mut state = State::new(POLICY);
        let acquired = answer(&mut state, t0, issued(None));
        assert_eq!(acquired.token.and_then(|t| t.expires_at), None);
        assert!(state.usable(t0 + secs(3599)).is_some());
        assert!(state.usable(t0 + secs(3600)).is_none());
    }

    #[test]
    fn a_rejection_drops_the_token_and_marks_the_credentials_invalid_without_backoff() {
        let t0 = Instant::now();
        let mut state = State::new(POLICY);
        answer(&mut state, t0, issued(Some(secs(300))));
        let acquired = answer(&mut state, t0 + secs(20), failed(Reason::Rejected, None));
        assert!(acquired.token.is_none() && !acquired.reused);
        assert_eq!(state.credentials_valid, Some(false));
        assert_eq!(state.rejected_at, Some(t0 + secs(21)));
        assert!(state.token.is_none());
        assert_eq!(state.backoff_until, None);
    }

    #[test]
    fn a_transient_failure_backs_off_and_keeps_a_working_token() {
        let t0 = Instant::now();
        let mut state = State::new(POLICY);
        answer(&mut state, t0, issued(Some(secs(300))));
        let acquired = answer(
            &mut state,
            t0 + secs(250),
            failed(Reason::ServerError, None),
        );
        assert!(acquired.reused);
        assert_eq!(acquired.token.map(|t| t.generation), Some(1));
        assert_eq!(state.credentials_valid, Some(true));
        assert_eq!(state.backoff_step, 1);
        let until = state.backoff_until.expect("in backoff");
        // The first backoff is the spacing plus up to 20 % jitter.
        let answered = t0 + secs(251);
        assert!(until >= answered + secs(10) && until <= answered + secs(12));
    }

    #[test]
    fn retry_after_is_honoured_but_capped_and_never_below_the_spacing() {
        let t0 = Instant::now();
        let mut state = State::new(POLICY);
        answer(
            &mut state,
            t0,
            failed(Reason::RateLimited, Some(secs(86_400))),
        );
        assert_eq!(state.backoff_until, Some(t0 + secs(1) + MAX_RETRY_AFTER));
        answer(&mut state, t0, failed(Reason::RateLimited, Some(secs(1))));
        assert_eq!(state.backoff_until, Some(t0 + secs(1) + secs(10)));
    }

    #[test]
    fn an_answer_about_replaced_credentials_changes_neither_validity_nor_the_cached_token() {
        let t0 = Instant::now();
        let mut state = State::new(POLICY);
        state.credentials_epoch = 1;
        let acquired = answer(&mut state, t0, issued(Some(secs(300))));
        assert!(acquired.token.is_some_and(|t| t.expires_at.is_none()));
        assert!(acquired.request.is_some_and(|r| r.superseded));
        assert!(state.token.is_none());
        assert_eq!(state.credentials_valid, None);

        let acquired = answer(&mut state, t0, failed(Reason::Rejected, None));
        assert!(acquired.request.is_some_and(|r| r.superseded));
        assert_eq!((state.credentials_valid, state.rejected_at), (None, None));
    }
}
