//! What one probe tells: the [`ProbeReport`] handed to logs, the status page, `/probe` and the
//! `probe` command, and how the token was obtained ([`TokenUse`]). Plain data: it decides nothing.

use serde::Serialize;

use crate::obf::reason::Reason;

/// How the probe got its token.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenUse {
    /// Served from the cache.
    Reused,
    /// Requested in this probe.
    Fetched,
    /// A request was sent and failed.
    Failed,
    /// No request was allowed yet and no token was at hand.
    None,
}

/// The outcome of one probe, for logs, the status page and the `probe` command.
#[derive(Clone, Debug, Serialize)]
pub struct ProbeReport {
    pub org: String,
    pub success: bool,
    pub reason: Option<Reason>,
    /// HTTP status of the last ping sent.
    pub status: Option<u16>,
    pub ping_seconds: Option<f64>,
    pub token: TokenUse,
    pub token_seconds: Option<f64>,
    pub token_failure: Option<Reason>,
    pub token_expires_at: Option<f64>,
    pub credentials_valid: Option<bool>,
    /// Unix seconds the token endpoint last accepted the credentials.
    pub credentials_last_verified: Option<f64>,
    pub subscription_ends: Option<i64>,
    /// Unix seconds.
    pub finished_at: f64,
    /// Why it failed, safe to show (no secrets, no tokens).
    pub detail: Option<String>,
}
