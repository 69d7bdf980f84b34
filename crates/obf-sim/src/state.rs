//! Simulator state: registered clients, issued tokens, per-client faults, global settings and
//! counters. Knows nothing about HTTP; `api.rs` turns its answers into responses.
//!
//! Everything sits behind one `std::sync::Mutex`, taken briefly by each method and never across an
//! await (latency faults are slept by the HTTP layer after the lock is released). Times are
//! `tokio::time::Instant` so the token spacing and expiry follow `tokio::time::pause()`.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use super::secrets::{Match, Secrets};
use super::tokens::TokenStore;
use super::wire::unix_now;
use super::{ClientStats, Faults, SimOptions, Stats};

/// Issue times kept per client for `ClientStats`; plenty for any test, bounded for long soaks.
const MAX_ISSUE_TIMES: usize = 1024;
/// Default subscription length from the moment a client is added.
const DEFAULT_SUBSCRIPTION_SECS: i64 = 365 * 24 * 3600;
/// Stand-in for "never" when a lifetime or interval would overflow `Instant`.
const FAR_FUTURE: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

pub(super) struct State {
    started: Instant,
    inner: Mutex<Inner>,
}

struct Inner {
    options: SimOptions,
    clients: HashMap<String, Client>,
    tokens: TokenStore,
    totals: Stats,
}

struct Client {
    secrets: Secrets,
    revoked: bool,
    faults: Faults,
    /// Start of the current token spacing; only issued tokens set it.
    last_issued: Option<Instant>,
    /// This client's tokens in issue order, so the store can prune them without scanning all.
    live_tokens: VecDeque<String>,
    stats: Stats,
    /// Token requests that sent a secret this client had but that was removed.
    removed_secret_rejections: u64,
    issue_times_ms: VecDeque<u64>,
    default_paid_until: i64,
}

impl Client {
    /// Whether tokens still answer once the credentials that obtained them are gone (revoked
    /// client or removed secret), as self-contained tokens would.
    fn tokens_survive(&self) -> bool {
        self.faults.tokens_survive_revocation
    }
}

/// What removing a secret found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum SecretRemoval {
    Removed,
    UnknownClient,
    /// The client exists but does not accept this secret now.
    UnknownSecret,
}

/// What a request needs to know before it is answered: the target client's faults (default for an
/// unknown client) and the global switches that shape the answer.
pub(super) struct Plan {
    pub faults: Faults,
    pub rfc_mode: bool,
    pub retry_after_header: bool,
}

/// Which counter a resource request (not the token endpoint) increments.
#[derive(Clone, Copy)]
pub(super) enum Resource {
    Ping,
    ClientInfo,
}

/// The token endpoint's decision once the credentials have been read.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum TokenOutcome {
    /// Unknown client, wrong or removed secret, or revoked.
    Rejected,
    RateLimited {
        retry_after: Duration,
    },
    Malformed,
    MissingAccessToken,
    Issued {
        token: String,
        expires_in: Option<u64>,
    },
}

impl State {
    pub(crate) fn new(options: SimOptions) -> Self {
        Self {
            started: Instant::now(),
            inner: Mutex::new(Inner {
                options,
                clients: HashMap::new(),
                tokens: TokenStore::new(),
                totals: Stats::default(),
            }),
        }
    }

    /// A panic while holding the lock leaves counters at worst slightly off, which is fine for a
    /// simulator, so poisoning is ignored rather than taking every later request down with it.
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A new client, or an existing one whose only secret becomes `client_secret`. Tokens issued
    /// with its other secrets are left alone (the simulator's behaviour before several secrets
    /// existed); `remove_secret` is the way to kill them.
    pub(crate) fn add_client(&self, client_id: &str, client_secret: &str) {
        let mut inner = self.lock();
        match inner.clients.get_mut(client_id) {
            Some(client) => client.secrets.replace_all(client_secret),
            None => {
                let client = Client {
                    secrets: Secrets::new(client_secret),
                    revoked: false,
                    faults: Faults::default(),
                    last_issued: None,
                    live_tokens: VecDeque::new(),
                    stats: Stats::default(),
                    removed_secret_rejections: 0,
                    issue_times_ms: VecDeque::new(),
                    default_paid_until: unix_now().saturating_add(DEFAULT_SUBSCRIPTION_SECS),
                };
                inner.clients.insert(client_id.to_owned(), client);
            }
        }
    }

    /// Revoking also forgets the client's tokens, as a real key rotation would, unless they
    /// survive revocation (then they answer until they expire).
    pub(crate) fn set_revoked(&self, client_id: &str, revoked: bool) -> bool {
        let mut inner = self.lock();
        let Inner {
            clients, tokens, ..
        } = &mut *inner;
        let Some(client) = clients.get_mut(client_id) else {
            return false;
        };
        client.revoked = revoked;
        if revoked && !client.tokens_survive() {
            tokens.forget(&mut client.live_tokens);
        }
        true
    }

    /// Accepts one more secret for the client; false for an unknown client.
    pub(crate) fn add_secret(&self, client_id: &str, secret: &str) -> bool {
        let mut inner = self.lock();
        let Some(client) = inner.clients.get_mut(client_id) else {
            return false;
        };
        client.secrets.add(secret);
        true
    }

    /// Stops accepting one secret and forgets the tokens it issued, unless tokens survive
    /// revocation.
    pub(crate) fn remove_secret(&self, client_id: &str, secret: &str) -> SecretRemoval {
        let mut inner = self.lock();
        let Inner {
            clients, tokens, ..
        } = &mut *inner;
        let Some(client) = clients.get_mut(client_id) else {
            return SecretRemoval::UnknownClient;
        };
        let Some(slot) = client.secrets.remove(secret) else {
            return SecretRemoval::UnknownSecret;
        };
        if !client.tokens_survive() {
            tokens.forget_issued_with(&mut client.live_tokens, slot);
        }
        SecretRemoval::Removed
    }

    pub(crate) fn update_faults(&self, client_id: &str, f: impl FnOnce(&mut Faults)) -> bool {
        let mut inner = self.lock();
        let Some(client) = inner.clients.get_mut(client_id) else {
            return false;
        };
        f(&mut client.faults);
        true
    }

    pub(crate) fn faults(&self, client_id: &str) -> Option<Faults> {
        self.lock().clients.get(client_id).map(|c| c.faults.clone())
    }

    pub(crate) fn options(&self) -> SimOptions {
        self.lock().options.clone()
    }

    pub(crate) fn update_options(&self, f: impl FnOnce(&mut SimOptions)) {
        f(&mut self.lock().options);
    }

    pub(crate) fn stats(&self) -> Stats {
        self.lock().totals.clone()
    }

    pub(crate) fn client_stats(&self, client_id: &str) -> Option<ClientStats> {
        let inner = self.lock();
        let client = inner.clients.get(client_id)?;
        let s = &client.stats;
        Some(ClientStats {
            token_requests: s.token_requests,
            tokens_issued: s.tokens_issued,
            rate_limited: s.rate_limited,
            rejected: s.rejected,
            pings: s.pings,
            client_info_requests: s.client_info_requests,
            token_issue_times_ms: client.issue_times_ms.iter().copied().collect(),
            revoked: client.revoked,
            secrets: client.secrets.valid_count(),
            tokens_issued_per_secret: client.secrets.issued_per_slot(),
            removed_secret_rejections: client.removed_secret_rejections,
        })
    }

    pub(crate) fn issued_tokens(&self, client_id: &str) -> Vec<String> {
        let inner = self.lock();
        inner
            .clients
            .get(client_id)
            .map_or_else(Vec::new, |c| c.live_tokens.iter().cloned().collect())
    }

    /// Counts a token request as it arrives and returns what shapes its answer.
    pub(crate) fn token_request(&self, client_id: Option<&str>) -> Plan {
        let mut inner = self.lock();
        inner.totals.token_requests += 1;
        let client = client_id.and_then(|id| inner.clients.get_mut(id));
        let faults = client.map_or_else(Faults::default, |c| {
            c.stats.token_requests += 1;
            c.faults.clone()
        });
        plan(&inner.options, faults)
    }

    /// Counts what the token endpoint answered, so counters match exactly what went on the wire
    /// (forced 401/403/429 faults included).
    pub(crate) fn record_token_answer(&self, client_id: Option<&str>, status: u16) {
        let bump = |s: &mut Stats| match status {
            401 | 403 => s.rejected += 1,
            429 => s.rate_limited += 1,
            _ => {}
        };
        let mut inner = self.lock();
        bump(&mut inner.totals);
        if let Some(client) = client_id.and_then(|id| inner.clients.get_mut(id)) {
            bump(&mut client.stats);
        }
    }

    /// Checks credentials and spacing and, if both pass and no fault interferes, issues a token.
    pub(crate) fn issue(&self, client_id: &str, secret: &str) -> TokenOutcome {
        let now = Instant::now();
        let mut guard = self.lock();
        let Inner {
            options,
            clients,
            tokens,
            totals,
        } = &mut *guard;
        let Some(client) = clients.get_mut(client_id) else {
            return TokenOutcome::Rejected;
        };
        let slot = match client.secrets.find(secret) {
            Match::Valid(slot) => slot,
            Match::Removed => {
                client.removed_secret_rejections += 1;
                return TokenOutcome::Rejected;
            }
            Match::Unknown => return TokenOutcome::Rejected,
        };
        if client.revoked {
            return TokenOutcome::Rejected;
        }
        if let Some(last) = client.last_issued {
            let next = last.checked_add(options.token_min_interval);
            match next {
                Some(next) if now < next => {
                    return TokenOutcome::RateLimited {
                        retry_after: next - now,
                    }
                }
                None => {
                    return TokenOutcome::RateLimited {
                        retry_after: options.token_min_interval,
                    }
                }
                Some(_) => {}
            }
        }
        // These faults garble the answer, so no token exists and the spacing does not start.
        if client.faults.malformed_token {
            return TokenOutcome::Malformed;
        }
        if client.faults.missing_access_token {
            return TokenOutcome::MissingAccessToken;
        }

        let lifetime = client
            .faults
            .token_lifetime_secs
            .map_or(options.token_lifetime, Duration::from_secs);
        let expires_at = now
            .checked_add(lifetime)
            .or_else(|| now.checked_add(FAR_FUTURE))
            .unwrap_or(now);
        let token = tokens.issue(client_id, slot, &mut client.live_tokens, now, expires_at);
        client.secrets.count_issued(slot);
        client.last_issued = Some(now);
        if client.issue_times_ms.len() >= MAX_ISSUE_TIMES {
            client.issue_times_ms.pop_front();
        }
        let since_start = now.saturating_duration_since(self.started).as_millis();
        client
            .issue_times_ms
            .push_back(u64::try_from(since_start).unwrap_or(u64::MAX));
        client.stats.tokens_issued += 1;
        totals.tokens_issued += 1;
        TokenOutcome::Issued {
            token,
            expires_in: (!client.faults.omit_expires_in).then_some(lifetime.as_secs()),
        }
    }

    /// Counts a ping or client-info request as it arrives and returns what shapes its answer.
    pub(crate) fn resource_request(&self, client_id: &str, kind: Resource) -> Plan {
        let bump = |s: &mut Stats| match kind {
            Resource::Ping => s.pings += 1,
            Resource::ClientInfo => s.client_info_requests += 1,
        };
        let mut inner = self.lock();
        bump(&mut inner.totals);
        let faults = inner
            .clients
            .get_mut(client_id)
            .map_or_else(Faults::default, |c| {
                bump(&mut c.stats);
                c.faults.clone()
            });
        plan(&inner.options, faults)
    }

    /// True if `token` is live and was issued to `client_id`. An expired token found here is
    /// dropped on the spot. Revocation and secret removal act by forgetting tokens when they
    /// happen, so `tokens_survive_revocation` counts at that moment: tokens it spared keep
    /// answering until they expire even if the mode is turned off later (unless a later
    /// revocation or removal with the mode off forgets them).
    pub(crate) fn authorized(&self, client_id: &str, token: &str) -> bool {
        let now = Instant::now();
        self.lock().tokens.check(token, client_id, now)
    }

    /// The subscription end reported by client info.
    pub(crate) fn paid_until(&self, client_id: &str) -> Option<i64> {
        let inner = self.lock();
        let client = inner.clients.get(client_id)?;
        Some(
            client
                .faults
                .paid_until
                .unwrap_or(client.default_paid_until),
        )
    }
}

fn plan(options: &SimOptions, faults: Faults) -> Plan {
    Plan {
        faults,
        rfc_mode: options.rfc_mode,
        retry_after_header: options.retry_after_header,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::time::advance;

    fn state(interval_secs: u64, lifetime_secs: u64) -> State {
        let state = State::new(SimOptions {
            token_min_interval: Duration::from_secs(interval_secs),
            token_lifetime: Duration::from_secs(lifetime_secs),
            ..SimOptions::default()
        });
        state.add_client("org", "s3cret");
        state
    }

    fn issued(outcome: TokenOutcome) -> String {
        match outcome {
            TokenOutcome::Issued { token, .. } => token,
            other => panic!("expected a token, got {other:?}"),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn spacing_counts_from_the_last_issued_token() {
        let state = state(10, 18_000);
        issued(state.issue("org", "s3cret"));
        advance(Duration::from_millis(2_500)).await;
        assert_eq!(
            state.issue("org", "s3cret"),
            TokenOutcome::RateLimited {
                retry_after: Duration::from_millis(7_500)
            }
        );
        // A refused request does not restart the spacing.
        advance(Duration::from_millis(7_500)).await;
        issued(state.issue("org", "s3cret"));
        let times = state.client_stats("org").map(|s| s.token_issue_times_ms);
        assert_eq!(times, Some(vec![0, 10_000]));
    }

    #[tokio::test(start_paused = true)]
    async fn tokens_expire_after_their_lifetime() {
        let state = state(0, 60);
        let token = issued(state.issue("org", "s3cret"));
        advance(Duration::from_secs(59)).await;
        assert!(state.authorized("org", &token));
        advance(Duration::from_secs(1)).await;
        assert!(!state.authorized("org", &token));
    }

    #[tokio::test(start_paused = true)]
    async fn revoking_forgets_the_clients_tokens() {
        let state = state(0, 60);
        let token = issued(state.issue("org", "s3cret"));
        assert_eq!(state.issued_tokens("org"), vec![token.clone()]);
        assert!(state.set_revoked("org", true));
        assert!(state.issued_tokens("org").is_empty());
        assert!(state.set_revoked("org", false));
        assert!(!state.authorized("org", &token));
        assert!(state.issued_tokens("nobody").is_empty());
    }
}
