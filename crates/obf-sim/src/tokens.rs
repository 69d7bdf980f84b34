//! The simulator's token store: minting random tokens, looking them up, and keeping memory bounded
//! by pruning each client's expired tokens and capping how many it may hold. Knows nothing about
//! credentials, spacing or HTTP; `state.rs` decides *whether* to issue.

use std::collections::hash_map::RandomState;
use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, Hasher};
use std::time::SystemTime;

use tokio::time::Instant;

/// Live tokens kept per client; older ones are dropped first. Bounds memory when a client asks for a
/// token every 10 s while each lives for hours (OBF's real limit is unknown).
pub(super) const MAX_LIVE_TOKENS: usize = 64;

pub(super) struct TokenStore {
    tokens: HashMap<String, TokenEntry>,
    rng: SplitMix64,
}

struct TokenEntry {
    client_id: String,
    /// The client's secret slot (see `secrets.rs`) that obtained this token, so removing that
    /// secret can kill exactly the tokens it issued.
    secret_slot: usize,
    expires_at: Instant,
}

impl TokenStore {
    pub(crate) fn new() -> Self {
        Self {
            tokens: HashMap::new(),
            rng: SplitMix64::seeded(),
        }
    }

    /// Mints a token for `client_id`, obtained with the secret in `secret_slot`. `live` is that
    /// client's tokens in issue order (kept by the caller so pruning never scans other clients'
    /// tokens); expired and surplus ones go first.
    pub(crate) fn issue(
        &mut self,
        client_id: &str,
        secret_slot: usize,
        live: &mut VecDeque<String>,
        now: Instant,
        expires_at: Instant,
    ) -> String {
        live.retain(|t| match self.tokens.get(t) {
            Some(entry) if entry.expires_at > now => true,
            Some(_) => {
                self.tokens.remove(t);
                false
            }
            None => false,
        });
        while live.len() >= MAX_LIVE_TOKENS {
            if let Some(oldest) = live.pop_front() {
                self.tokens.remove(&oldest);
            }
        }
        let token = self.rng.token();
        let entry = TokenEntry {
            client_id: client_id.to_owned(),
            secret_slot,
            expires_at,
        };
        self.tokens.insert(token.clone(), entry);
        live.push_back(token.clone());
        token
    }

    /// True if `token` is live and was issued to `client_id`. An expired token found here is
    /// dropped on the spot.
    pub(crate) fn check(&mut self, token: &str, client_id: &str, now: Instant) -> bool {
        let Some(entry) = self.tokens.get(token) else {
            return false;
        };
        if entry.expires_at <= now {
            self.tokens.remove(token);
            return false;
        }
        entry.client_id == client_id
    }

    /// Forgets all of one client's tokens (revocation).
    pub(crate) fn forget(&mut self, live: &mut VecDeque<String>) {
        for token in live.drain(..) {
            self.tokens.remove(&token);
        }
    }

    /// Forgets the tokens of one client (`live`) that were obtained with the secret in `slot`.
    pub(crate) fn forget_issued_with(&mut self, live: &mut VecDeque<String>, slot: usize) {
        live.retain(|t| match self.tokens.get(t) {
            Some(entry) if entry.secret_slot == slot => {
                self.tokens.remove(t);
                false
            }
            Some(_) => true,
            None => false,
        });
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.tokens.len()
    }
}

/// splitmix64: a tiny PRNG, enough for unguessable-in-practice simulator tokens (no `rand` crate).
struct SplitMix64(u64);

impl SplitMix64 {
    /// Seeded from std's per-process random hash keys and the wall clock.
    fn seeded() -> Self {
        let mut hasher = RandomState::new().build_hasher();
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        hasher.write_u128(nanos);
        Self(hasher.finish())
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// 40 hex characters (160 bits).
    fn token(&mut self) -> String {
        let (a, b, c) = (self.next(), self.next(), self.next());
        format!("{a:016x}{b:016x}{:08x}", c >> 32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn tokens_are_40_hex_chars_and_differ() {
        let mut rng = SplitMix64::seeded();
        let (a, b) = (rng.token(), rng.token());
        assert_eq!(a.len(), 40);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }

    #[test]
    fn tokens_belong_to_one_client_until_they_expire() {
        let mut store = TokenStore::new();
        let mut live = VecDeque::new();
        let now = Instant::now();
        let token = store.issue("org", 0, &mut live, now, now + Duration::from_secs(60));
        assert!(store.check(&token, "org", now + Duration::from_secs(59)));
        assert!(!store.check(&token, "other", now));
        assert!(!store.check(&token, "org", now + Duration::from_secs(60)));
        assert_eq!(store.len(), 0);
    }

    #[test]
    fn live_tokens_per_client_are_capped_oldest_first() {
        let mut store = TokenStore::new();
        let mut live = VecDeque::new();
        let now = Instant::now();
        let later = now + Duration::from_secs(3600);
        let first = store.issue("org", 0, &mut live, now, later);
        for _ in 0..MAX_LIVE_TOKENS + 10 {
            store.issue("org", 0, &mut live, now, later);
        }
        assert_eq!(
            (store.len(), live.len()),
            (MAX_LIVE_TOKENS, MAX_LIVE_TOKENS)
        );
        assert!(!store.check(&first, "org", now));
    }

    #[test]
    fn expired_tokens_are_pruned_when_the_client_gets_a_new_one() {
        let mut store = TokenStore::new();
        let mut live = VecDeque::new();
        let mut now = Instant::now();
        for _ in 0..10 {
            store.issue("org", 0, &mut live, now, now + Duration::from_secs(5));
            now += Duration::from_secs(6);
        }
        assert_eq!((store.len(), live.len()), (1, 1));
        store.forget(&mut live);
        assert_eq!((store.len(), live.len()), (0, 0));
    }

    #[test]
    fn forgetting_one_secrets_tokens_keeps_the_others() {
        let mut store = TokenStore::new();
        let mut live = VecDeque::new();
        let now = Instant::now();
        let later = now + Duration::from_secs(60);
        let old = store.issue("org", 0, &mut live, now, later);
        let new = store.issue("org", 1, &mut live, now, later);
        store.forget_issued_with(&mut live, 0);
        assert!(!store.check(&old, "org", now));
        assert!(store.check(&new, "org", now));
        assert_eq!(live, VecDeque::from([new]));
        store.forget_issued_with(&mut live, 1);
        assert_eq!((store.len(), live.len()), (0, 0));
    }
}
