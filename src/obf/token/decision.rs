//! The token cache's state and its one decision, as a pure function: given what the cache holds,
//! the time, when the caller came, its deadline and the token it saw refused, either reuse a
//! token, withhold one (and why), request one now, or request one when the spacing ends.
//!
//! No I/O, no clock, no lock: [`super::TokenCache::acquire`] reads the clock, takes the locks,
//! sleeps and fetches, and applies the answer with `State::answered` (`answer.rs`).

use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use super::{Token, TokenPolicy, Withheld};
use crate::obf::credential::Snapshot;

pub(super) struct CachedToken {
    pub(super) token: Token,
    /// When the request that obtained it was sent: its lifetime counts from there.
    pub(super) obtained_at: Instant,
    pub(super) lifetime: Duration,
}

impl CachedToken {
    /// The token is expected to be refused from here on.
    fn valid_until(&self) -> Instant {
        crate::clock::after(self.obtained_at, self.lifetime)
    }

    /// Reuse ends here: `refresh_margin` before expiry (at most half the lifetime, or a short
    /// token would never be reused), or `check_interval` after it was obtained if that is
    /// sooner, so that credentials revoked while an old token keeps working are still noticed.
    /// Derived from the policy each time, so a reload that changes the policy applies at once.
    fn refresh_at(&self, policy: &TokenPolicy) -> Instant {
        let margin = policy.refresh_margin.min(self.lifetime / 2);
        let mut reuse_for = self.lifetime - margin;
        if !policy.check_interval.is_zero() {
            reuse_for = reuse_for.min(policy.check_interval);
        }
        crate::clock::after(self.obtained_at, reuse_for)
    }
}

pub(super) struct State {
    pub(super) policy: TokenPolicy,
    pub(super) token: Option<CachedToken>,
    /// When the last request was answered (or sent, while it is in flight).
    pub(super) last_request: Option<Instant>,
    pub(super) backoff_until: Option<Instant>,
    pub(super) backoff_step: u32,
    /// When the token endpoint last rejected the credentials (cleared by a success).
    pub(super) rejected_at: Option<Instant>,
    pub(super) credentials_valid: Option<bool>,
    pub(super) last_verified: Option<SystemTime>,
    pub(super) generation: u64,
    /// Increases whenever the credentials change (a rotated secret): an answer to a request
    /// sent before says nothing about the credentials in use.
    pub(super) credentials_epoch: u64,
}

impl State {
    pub(super) fn new(policy: TokenPolicy) -> Self {
        State {
            policy,
            token: None,
            last_request: None,
            backoff_until: None,
            backoff_step: 0,
            rejected_at: None,
            credentials_valid: None,
            last_verified: None,
            generation: 0,
            credentials_epoch: 0,
        }
    }

    /// Drops token `refused` if it is the one in hand; says whether it was.
    pub(super) fn forget(&mut self, refused: Option<u64>) -> bool {
        let held = refused.is_some() && self.token.as_ref().map(|t| t.token.generation) == refused;
        if held {
            self.token = None;
        }
        held
    }

    pub(super) fn usable(&self, now: Instant) -> Option<&CachedToken> {
        self.token.as_ref().filter(|t| now < t.valid_until())
    }

    /// What the gauges show.
    pub(super) fn snapshot(&self) -> Snapshot {
        Snapshot {
            credentials_valid: self.credentials_valid,
            token_expires_at: self.token.as_ref().and_then(|t| t.token.expires_at),
            last_verified: self.last_verified,
        }
    }

    fn spacing_ends(&self) -> Option<Instant> {
        self.last_request
            .map(|at| crate::clock::after(at, self.policy.min_interval))
    }
}

/// What one caller of `acquire` does.
#[derive(Debug)]
pub(super) enum Decision {
    /// Hand out this token; send nothing.
    Reuse(Token),
    /// Hand out nothing; send nothing.
    Withhold(Withheld),
    /// Send a request now. `meanwhile` is a token that still works: if another caller is
    /// already requesting, it is handed out instead of waiting for that request.
    RequestNow { meanwhile: Option<Token> },
    /// No token works; a request is allowed at this instant (the spacing ends), which is within
    /// the caller's deadline.
    RequestAt(Instant),
}

/// The rules, in order: a fresh token is reused; a token a caller saw refused is never handed
/// back to it (but one newer than it is); in backoff, a working token is reused, else none; while
/// the spacing runs, a working token is reused, a rejection that came after the caller arrived is
/// its answer too, and the caller waits for the spacing only if it ends before its deadline;
/// otherwise a request is due.
pub(super) fn decide(
    state: &State,
    now: Instant,
    called_at: Instant,
    deadline: Instant,
    replace: Option<u64>,
) -> Decision {
    let current = state
        .token
        .as_ref()
        .filter(|t| Some(t.token.generation) != replace);
    let usable = current
        .filter(|t| now < t.valid_until())
        .map(|t| t.token.clone());
    if let (Some(refused), Some(token)) = (replace, &usable) {
        if token.generation > refused {
            // Another caller already replaced the refused token: that one is fresh.
            return Decision::Reuse(token.clone());
        }
    }
    if let Some(fresh) = current.filter(|t| now < t.refresh_at(&state.policy)) {
        return Decision::Reuse(fresh.token.clone());
    }
    if state.backoff_until.is_some_and(|until| until > now) {
        return usable.map_or(Decision::Withhold(Withheld::NotYet), Decision::Reuse);
    }
    if let Some(ends) = state.spacing_ends().filter(|ends| *ends > now) {
        if let Some(token) = usable {
            return Decision::Reuse(token);
        }
        // A rejection this caller waited behind is its answer too: asking again within the
        // same round would only repeat it. An earlier one is retried at this scheduled run.
        if state.rejected_at.is_some_and(|at| at >= called_at) {
            return Decision::Withhold(Withheld::AfterRejection);
        }
        if ends > deadline {
            return Decision::Withhold(Withheld::NotYet);
        }
        return Decision::RequestAt(ends);
    }
    Decision::RequestNow { meanwhile: usable }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::SecretString;

    const POLICY: TokenPolicy = TokenPolicy {
        refresh_margin: Duration::from_secs(60),
        min_interval: Duration::from_secs(10),
        max_age: Duration::from_secs(3600),
        check_interval: Duration::ZERO,
    };

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    /// A state holding token `generation`, obtained at `t0` for `lifetime`, last request at `t0`.
    fn holding(t0: Instant, generation: u64, lifetime: Duration, policy: TokenPolicy) -> State {
        let mut state = State::new(policy);
        state.generation = generation;
        state.last_request = Some(t0);
        state.token = Some(CachedToken {
            token: Token {
                access_token: SecretString::from("t"),
                generation,
                expires_at: None,
            },
            obtained_at: t0,
            lifetime,
        });
        state
    }

    fn kind(decision: &Decision) -> String {
        match decision {
            Decision::Reuse(token) => format!("reuse {}", token.generation),
            Decision::Withhold(why) => format!("withhold {why:?}"),
            Decision::RequestNow { meanwhile } => {
                format!(
                    "now, meanwhile {:?}",
                    meanwhile.as_ref().map(|t| t.generation)
                )
            }
            Decision::RequestAt(_) => "at".to_string(),
        }
    }

    #[test]
    fn a_new_cache_requests_now() {
        let t0 = Instant::now();
        let decision = decide(&State::new(POLICY), t0, t0, t0 + secs(10), None);
        assert_eq!(kind(&decision), "now, meanwhile None");
    }

    #[test]
    fn a_fresh_token_is_reused_until_the_margin_then_requested_with_the_old_one_meanwhile() {
        let t0 = Instant::now();
        let state = holding(t0, 1, secs(300), POLICY);
        let at = |s| decide(&state, t0 + secs(s), t0 + secs(s), t0 + secs(s + 10), None);
        assert_eq!(kind(&at(239)), "reuse 1");
        assert_eq!(kind(&at(240)), "now, meanwhile Some(1)");
        assert_eq!(kind(&at(300)), "now, meanwhile None");
    }

    #[test]
    fn the_check_interval_ends_reuse_early_and_zero_turns_it_off() {
        let t0 = Instant::now();
        let hourly = TokenPolicy {
            check_interval: secs(3600),
            ..POLICY
        };
        let state = holding(t0, 1, secs(18_000), hourly);
        let at = |s| decide(&state, t0 + secs(s), t0 + secs(s), t0 + secs(s + 10), None);
        assert_eq!(kind(&at(3599)), "reuse 1");
        assert_eq!(kind(&at(3600)), "now, meanwhile Some(1)");
        let off = holding(t0, 1, secs(18_000), POLICY);
        let later = t0 + secs(17_000);
        assert_eq!(
            kind(&decide(&off, later, later, later + secs(10), None)),
            "reuse 1"
        );
    }

    #[test]
    fn a_refused_token_is_not_handed_back_but_a_newer_one_is() {
        let t0 = Instant::now();
        let state = holding(t0, 2, secs(300), POLICY);
        let now = t0 + secs(20);
        assert_eq!(
            kind(&decide(&state, now, now, now + secs(10), Some(2))),
            "now, meanwhile None"
        );
        assert_eq!(
            kind(&decide(&state, now, now, now + secs(10), Some(1))),
            "reuse 2"
        );
    }

    #[test]
    fn the_spacing_is_waited_for_only_within_the_deadline() {
        let t0 = Instant::now();
        let state = holding(t0, 1, secs(300), POLICY);
        let now = t0 + secs(3);
        let wait = decide(&state, now, now, now + secs(10), Some(1));
        assert!(matches!(wait, Decision::RequestAt(at) if at == t0 + secs(10)));
        let short = decide(&state, now, now, now + secs(2), Some(1));
        assert_eq!(kind(&short), "withhold NotYet");
    }

    #[test]
    fn a_rejection_after_the_caller_came_is_its_answer() {
        let t0 = Instant::now();
        let mut state = State::new(POLICY);
        state.last_request = Some(t0 + secs(1));
        state.rejected_at = Some(t0 + secs(1));
        let now = t0 + secs(2);
        assert_eq!(
            kind(&decide(&state, now, t0, t0 + secs(10), None)),
            "withhold AfterRejection"
        );
        // A caller that came after the rejection waits for the spacing and asks again.
        let later = decide(&state, now, now, now + secs(10), None);
        assert!(matches!(later, Decision::RequestAt(_)));
    }

    #[test]
    fn in_backoff_a_working_token_is_reused_else_none() {
        let t0 = Instant::now();
        let mut state = holding(t0, 1, secs(300), POLICY);
        state.backoff_until = Some(t0 + secs(400));
        let at = |s| decide(&state, t0 + secs(s), t0 + secs(s), t0 + secs(s + 10), None);
        assert_eq!(kind(&at(250)), "reuse 1");
        assert_eq!(kind(&at(301)), "withhold NotYet");
    }

    #[test]
    fn absurd_durations_do_not_overflow_the_clock() {
        let t0 = Instant::now();
        let policy = TokenPolicy {
            min_interval: Duration::MAX,
            check_interval: Duration::MAX,
            ..POLICY
        };
        let state = holding(t0, 1, Duration::MAX / 2, policy);
        let now = t0 + secs(1);
        assert_eq!(
            kind(&decide(&state, now, now, now + secs(10), None)),
            "reuse 1"
        );
    }
}
