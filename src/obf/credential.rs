//! What is known about one credential (host + client_id), published for every org that uses it.
//!
//! The token cache of the credential writes it whenever it learns something (an answer of the
//! token endpoint, a token dropped); the metrics renderer, the probe reports and the status page
//! read it. Orgs that share a credential hold the same `Arc`, so they all show the same values
//! the moment any of them learns something, and a scrape reads three atomics per org: no lock,
//! no allocation. It decides nothing: the rules live in the token cache.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::SystemTime;

/// Marks "nothing to say"; real values are clamped above it.
const ABSENT: i64 = i64::MIN;

/// One credential's published state. Times are unix milliseconds (the metrics' thousandths).
#[derive(Debug)]
pub struct CredentialState {
    /// 1 accepted, 0 rejected, [`ABSENT`] not answered since the credentials were loaded.
    valid: AtomicI64,
    /// Expiry of the token in hand, as the endpoint announced it.
    token_expires_ms: AtomicI64,
    /// When the token endpoint last accepted the credentials.
    last_verified_ms: AtomicI64,
}

impl Default for CredentialState {
    fn default() -> Self {
        CredentialState {
            valid: AtomicI64::new(ABSENT),
            token_expires_ms: AtomicI64::new(ABSENT),
            last_verified_ms: AtomicI64::new(ABSENT),
        }
    }
}

/// The state as one value (each field read separately: a reader racing a writer may see one
/// field new and another old, which a gauge reading tolerates).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub credentials_valid: Option<bool>,
    pub token_expires_at: Option<SystemTime>,
    pub last_verified: Option<SystemTime>,
}

impl CredentialState {
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            credentials_valid: self.valid_millis().map(|v| v != 0),
            token_expires_at: self.token_expires_millis().map(from_millis),
            last_verified: self.last_verified_millis().map(from_millis),
        }
    }

    /// `obf_credentials_valid` in thousandths (0 or 1000), for the renderer.
    pub fn valid_millis(&self) -> Option<i64> {
        let value = self.valid.load(Ordering::Relaxed);
        (value != ABSENT).then_some(value.saturating_mul(1000))
    }

    /// The token expiry, unix milliseconds.
    pub fn token_expires_millis(&self) -> Option<i64> {
        present(self.token_expires_ms.load(Ordering::Relaxed))
    }

    /// The last acceptance, unix milliseconds.
    pub fn last_verified_millis(&self) -> Option<i64> {
        present(self.last_verified_ms.load(Ordering::Relaxed))
    }

    /// Publishes `snapshot` (the token cache calls this under its own lock, so writes never
    /// interleave).
    pub(crate) fn publish(&self, snapshot: &Snapshot) {
        let valid = snapshot.credentials_valid.map_or(ABSENT, i64::from);
        self.valid.store(valid, Ordering::Relaxed);
        self.token_expires_ms
            .store(to_millis(snapshot.token_expires_at), Ordering::Relaxed);
        self.last_verified_ms
            .store(to_millis(snapshot.last_verified), Ordering::Relaxed);
    }
}

fn present(value: i64) -> Option<i64> {
    (value != ABSENT).then_some(value)
}

fn to_millis(at: Option<SystemTime>) -> i64 {
    let Some(at) = at else {
        return ABSENT;
    };
    let millis = match at.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(since) => i64::try_from(since.as_millis()).unwrap_or(i64::MAX),
        Err(before) => -i64::try_from(before.duration().as_millis()).unwrap_or(i64::MAX),
    };
    millis.max(ABSENT + 1)
}

fn from_millis(millis: i64) -> SystemTime {
    let offset = std::time::Duration::from_millis(millis.unsigned_abs());
    let at = if millis >= 0 {
        SystemTime::UNIX_EPOCH.checked_add(offset)
    } else {
        SystemTime::UNIX_EPOCH.checked_sub(offset)
    };
    at.unwrap_or(SystemTime::UNIX_EPOCH)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn starts_absent_and_round_trips_to_the_millisecond() {
        let state = CredentialState::default();
        assert_eq!(state.snapshot(), Snapshot::default());
        assert_eq!(state.valid_millis(), None);
        let at = SystemTime::UNIX_EPOCH + Duration::from_millis(1_795_018_000_123);
        let snapshot = Snapshot {
            credentials_valid: Some(true),
            token_expires_at: Some(at),
            last_verified: Some(at - Duration::from_secs(60)),
        };
        state.publish(&snapshot);
        assert_eq!(state.snapshot(), snapshot);
        assert_eq!(state.valid_millis(), Some(1000));
        assert_eq!(state.token_expires_millis(), Some(1_795_018_000_123));
        state.publish(&Snapshot {
            credentials_valid: Some(false),
            ..Snapshot::default()
        });
        assert_eq!(state.valid_millis(), Some(0));
        assert_eq!(state.token_expires_millis(), None);
        assert_eq!(state.last_verified_millis(), None);
    }
}
