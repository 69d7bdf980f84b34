//! HTTP basic auth against bcrypt hashes, as Prometheus' web config does: one bcrypt verify per
//! attempt whether or not the user exists, successful verifications cached by HMAC-SHA-256 (and
//! kept across reloads while their user's hash is unchanged), bcrypt time rationed per source
//! address by [`throttle`] so that one address cannot delay everyone else's first login.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use aws_lc_rs::hmac;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use base64::engine::general_purpose::{GeneralPurpose, PAD_INDIFFERENT};
use base64::{alphabet, Engine as _};
use secrecy::{ExposeSecret, SecretSlice, SecretString};
use subtle::ConstantTimeEq;
use tokio::sync::Semaphore;

use throttle::{Refusal, Source, Throttle, MAX_SOURCES};

mod throttle;

/// The `WWW-Authenticate` value of every 401.
pub const CHALLENGE: &str = "Basic realm=\"obf-exporter\"";
/// The one path served without credentials, so container health checks work.
pub const OPEN_PATH: &str = "/-/healthy";

/// Successful credentials remembered (as HMACs); the oldest is forgotten first.
const CACHE_CAPACITY: usize = 64;
/// Upper bound on bcrypt verifications running at once (fewer on fewer cores); more attempts
/// wait. Each source address holds at most one of them (see [`throttle`]), so a legitimate user
/// waits behind at most one verification per attacking address, and a flood from many addresses
/// cannot take more than this many CPUs.
const MAX_CONCURRENT_VERIFICATIONS: usize = 4;
/// Salt and hash of the dummy bcrypt hash verified for unknown users (any valid value works: the
/// time bcrypt takes depends on the cost alone).
const DUMMY_SALT_AND_HASH: &str = "N9qo8uLOickgx2ZMRZoMyeIjZAgcfl7p92ldGxad68LJZdL17lhWy";
/// Standard alphabet; padding optional (clients that omit it were accepted before); the unused
/// low bits of the last character are ignored, as Go's `net/http` (which Prometheus' web config
/// uses) ignores them. Padding longer than needed (`dTpw=`) is refused.
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    PAD_INDIFFERENT.with_decode_allow_trailing_bits(true),
);

/// Checks `Authorization: Basic` credentials against user name → bcrypt hash. Cheap to clone;
/// clones share users, cache and counters, so [`BasicAuth::set_users`] on one (on reload)
/// applies to every router it protects.
#[derive(Clone)]
pub struct BasicAuth {
    inner: Arc<Inner>,
}

struct Inner {
    /// The users and the successful credentials cached for exactly those users.
    state: Mutex<Shared>,
    /// Made on the first attempt, not at start: the first random bytes make aws-lc gather
    /// entropy, which costs tens of milliseconds of CPU that an exporter without auth never needs.
    cache_key: OnceLock<hmac::Key>,
    permits: Arc<Semaphore>,
    throttle: Throttle,
    verifications: AtomicU64,
}

struct Shared {
    users: Arc<Users>,
    cache: VecDeque<Cached>,
}

/// A verified `user:password`, as an HMAC, and whose it is (so that a reload can keep it
/// while that user's hash stays the same).
struct Cached {
    key: [u8; 32],
    user: String,
}

struct Users {
    list: Vec<(String, SecretString)>,
    /// Same cost as the users' hashes (the highest, if they differ).
    dummy_hash: String,
}

impl Users {
    fn new(users: &BTreeMap<String, SecretString>) -> Arc<Self> {
        let cost = users
            .values()
            .filter_map(|hash| hash.expose_secret().get(4..6)?.parse::<u32>().ok())
            .max()
            .unwrap_or(10)
            .clamp(4, 31);
        Arc::new(Users {
            list: users
                .iter()
                .map(|(user, hash)| (user.clone(), hash.clone()))
                .collect(),
            dummy_hash: format!("$2y${cost:02}${DUMMY_SALT_AND_HASH}"),
        })
    }

    /// Exactly one bcrypt verify, against the user's hash or the dummy one; the user name on
    /// success.
    fn verify(&self, credentials: &Credentials) -> Option<&str> {
        let user = credentials.user();
        let mut found: Option<&(String, SecretString)> = None;
        // Every name is compared, in constant time, whatever matches.
        for entry in &self.list {
            if constant_time_eq(entry.0.as_bytes(), user) {
                found = Some(entry);
            }
        }
        let hash = found.map_or(self.dummy_hash.as_str(), |(_, hash)| hash.expose_secret());
        let matches = bcrypt::verify(credentials.password(), hash).unwrap_or(false);
        found.filter(|_| matches).map(|(name, _)| name.as_str())
    }

    fn hash_of(&self, user: &str) -> Option<&str> {
        self.list
            .iter()
            .find(|(name, _)| name == user)
            .map(|(_, hash)| hash.expose_secret())
    }
}

/// Credentials from one request; zeroed when dropped.
struct Credentials {
    /// `user:password`, as decoded.
    decoded: SecretSlice<u8>,
    colon: usize,
}

impl Credentials {
    fn user(&self) -> &[u8] {
        &self.decoded.expose_secret()[..self.colon]
    }

    fn password(&self) -> &[u8] {
        &self.decoded.expose_secret()[self.colon + 1..]
    }
}

/// Why a request was turned away (for debug logs; never contains credentials).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rejection {
    Missing,
    Malformed,
    Wrong,
    /// 429, without bcrypt: the source failed too often or has too many attempts pending.
    Throttled(Refusal),
}

impl BasicAuth {
    /// `users`: user name → bcrypt hash (`$2a$`, `$2b$` or `$2y$`). No users means no
    /// authentication, as in `[exporter.web]`: every request passes.
    pub fn new(users: &BTreeMap<String, SecretString>) -> Self {
        BasicAuth {
            inner: Arc::new(Inner {
                state: Mutex::new(Shared {
                    users: Users::new(users),
                    cache: VecDeque::with_capacity(CACHE_CAPACITY),
                }),
                cache_key: OnceLock::new(),
                permits: Arc::new(Semaphore::new(concurrent_verifications())),
                throttle: Throttle::new(MAX_SOURCES),
                verifications: AtomicU64::new(0),
            }),
        }
    }

    /// Replaces the users (after a config reload). Cached successes of users whose hash is
    /// unchanged are kept, so a reload does not send every scraper back through bcrypt; those of
    /// removed users or changed hashes are forgotten and take effect on the next request.
    pub fn set_users(&self, users: &BTreeMap<String, SecretString>) {
        let new = Users::new(users);
        let mut state = self.inner.state();
        let old = std::mem::replace(&mut state.users, new.clone());
        // Hashes are compared as stored strings: the same password hashed again gets a new salt,
        // so it is a change, and the next login verifies it once.
        state
            .cache
            .retain(|cached| old.hash_of(&cached.user) == new.hash_of(&cached.user));
    }

    /// bcrypt verifications run so far (cache hits run none).
    pub fn verifications(&self) -> u64 {
        self.inner.verifications.load(Ordering::Relaxed)
    }

    #[cfg(test)]
    pub(super) fn dummy_hash(&self) -> String {
        self.inner.state().users.dummy_hash.clone()
    }

    /// Checks the credentials of a request from `source`. The order matters: a locked-out
    /// source is refused before the cache is consulted (else the cache would answer its guesses
    /// at hash speed), and the source's single verification slot is taken before a global
    /// permit, so that one address never holds more than one of those.
    async fn check(&self, headers: &HeaderMap, source: Source) -> Result<(), Rejection> {
        if self.inner.state().users.list.is_empty() {
            return Ok(());
        }
        let value = headers
            .get(header::AUTHORIZATION)
            .ok_or(Rejection::Missing)?;
        let credentials = parse_basic(value.as_bytes()).ok_or(Rejection::Malformed)?;
        let ticket = self
            .inner
            .throttle
            .enter(source)
            .map_err(Rejection::Throttled)?;
        let key = self.inner.cache_key(&credentials);
        if self.inner.cached(key.as_ref()) {
            return Ok(());
        }
        let turn = self
            .inner
            .throttle
            .turn(ticket)
            .await
            .map_err(Rejection::Throttled)?;
        if self.inner.cached(key.as_ref()) {
            return Ok(());
        }
        let permit = self.inner.permits.clone().acquire_owned().await;
        let users = self.inner.state().users.clone();
        self.inner.verifications.fetch_add(1, Ordering::Relaxed);
        let inner = self.inner.clone();
        // The permit, the source's slot and the recording of the outcome all live in the
        // blocking task: a client that hangs up frees nothing early and still counts a failure.
        let ok = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let user = users.verify(&credentials);
            inner.throttle.record(turn.source(), user.is_some());
            if let Some(user) = user {
                inner.remember(key, &users, user);
            }
            user.is_some()
        })
        .await
        .unwrap_or(false);
        if ok {
            Ok(())
        } else {
            Err(Rejection::Wrong)
        }
    }
}

/// The number of CPUs, at most [`MAX_CONCURRENT_VERIFICATIONS`]: more parallel bcrypt than
/// cores only slows every verification down, and the agent's own work needs CPU too.
fn concurrent_verifications() -> usize {
    std::thread::available_parallelism()
        .map_or(1, NonZeroUsize::get)
        .clamp(1, MAX_CONCURRENT_VERIFICATIONS)
}

impl Inner {
    fn state(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// HMAC-SHA-256 of `user:password` under a random per-process key. `None` (no caching)
    /// only if the digest is not 32 bytes, which cannot happen for SHA-256.
    fn cache_key(&self, credentials: &Credentials) -> Option<[u8; 32]> {
        let key = self.cache_key.get_or_init(|| {
            let mut key = [0u8; 32];
            // On failure the key stays zero: entries are still HMACs, never passwords.
            let _ = aws_lc_rs::rand::fill(&mut key);
            hmac::Key::new(hmac::HMAC_SHA256, &key)
        });
        hmac::sign(key, credentials.decoded.expose_secret())
            .as_ref()
            .try_into()
            .ok()
    }

    fn cached(&self, key: Option<&[u8; 32]>) -> bool {
        key.is_some_and(|key| self.state().cache.iter().any(|c| c.key == *key))
    }

    /// Caches a success of `user`, unless a reload changed or removed that user's hash while it
    /// was being verified.
    fn remember(&self, key: Option<[u8; 32]>, verified_with: &Users, user: &str) {
        let Some(key) = key else { return };
        let mut state = self.state();
        let unchanged = verified_with
            .hash_of(user)
            .is_some_and(|hash| state.users.hash_of(user) == Some(hash));
        if !unchanged || state.cache.iter().any(|c| c.key == key) {
            return;
        }
        if state.cache.len() >= CACHE_CAPACITY {
            state.cache.pop_front();
        }
        state.cache.push_back(Cached {
            key,
            user: user.to_owned(),
        });
    }
}

/// Requires basic auth on every route of `router` except [`OPEN_PATH`]; `None` returns `router`
/// unchanged. Call it after every route is added: routes added later are not protected.
pub fn protect(router: Router, auth: Option<BasicAuth>) -> Router {
    match auth {
        Some(auth) => router.layer(axum::middleware::from_fn_with_state(
            auth,
            require_basic_auth,
        )),
        None => router,
    }
}

/// Middleware for `axum::middleware::from_fn_with_state(auth, require_basic_auth)`: passes
/// [`OPEN_PATH`] and requests with valid credentials (minus their `Authorization` header);
/// answers 401 with `WWW-Authenticate: Basic realm="obf-exporter"` otherwise, and 429 with
/// `Retry-After` to a source address that failed too often or has too many attempts pending.
/// The source is the request's `ConnectInfo<SocketAddr>` extension; requests without one are
/// throttled together as one unknown source.
pub async fn require_basic_auth(
    State(auth): State<BasicAuth>,
    mut request: Request,
    next: Next,
) -> Response {
    if request.uri().path() == OPEN_PATH {
        return next.run(request).await;
    }
    let source = Source::of(
        request
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(peer)| peer.ip()),
    );
    match auth.check(request.headers(), source).await {
        Ok(()) => {
            request.headers_mut().remove(header::AUTHORIZATION);
            next.run(request).await
        }
        Err(reason) => {
            tracing::debug!(?reason, path = request.uri().path(), "basic auth rejected");
            match reason {
                Rejection::Throttled(refusal) => too_many_requests(refusal),
                Rejection::Missing | Rejection::Malformed | Rejection::Wrong => unauthorized(),
            }
        }
    }
}

fn too_many_requests(refusal: Refusal) -> Response {
    let body = match refusal {
        Refusal::LockedOut(_) => "Too Many Requests: too many failed logins from this address\n",
        Refusal::Busy => "Too Many Requests: too many logins pending from this address\n",
    };
    (
        StatusCode::TOO_MANY_REQUESTS,
        [(
            header::RETRY_AFTER,
            HeaderValue::from(refusal.retry_after_secs()),
        )],
        body,
    )
        .into_response()
}

fn unauthorized() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static(CHALLENGE),
        )],
        "Unauthorized\n",
    )
        .into_response()
}

/// `Basic <base64 of user:password>`; the scheme is case-insensitive.
fn parse_basic(value: &[u8]) -> Option<Credentials> {
    let space = value.iter().position(|&b| b == b' ')?;
    let (scheme, rest) = value.split_at(space);
    if !scheme.eq_ignore_ascii_case(b"basic") {
        return None;
    }
    let decoded = decode_base64(rest.trim_ascii())?;
    let colon = decoded.iter().position(|&b| b == b':')?;
    Some(Credentials {
        decoded: SecretSlice::from(decoded),
        colon,
    })
}

/// Base64 as [`BASE64`] reads it; `None` for invalid or empty input. Allocates once (the
/// crate decodes into a buffer of the estimated size and truncates it), so no stray copy of the
/// credentials is left behind.
fn decode_base64(input: &[u8]) -> Option<Vec<u8>> {
    BASE64
        .decode(input)
        .ok()
        .filter(|decoded| !decoded.is_empty())
}

/// Equality whose time depends on the lengths only ([`subtle`] answers different lengths at
/// once: a name's length is not the secret here, its content is).
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

#[cfg(test)]
mod tests;
