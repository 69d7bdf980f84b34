//! The OBF simulator: an in-process stand-in for the Open Badge Factory API, used by every test, the
//! `demo` command and the `sim` command.
//!
//! It is the *other side of the wire*: an independent server-side implementation that shares no
//! parsing or protocol code with the exporter's OBF client, so a misunderstanding of the protocol on
//! one side cannot make the tests agree with themselves.
//!
//! OBF endpoints (see `api.rs`, behaviour per `obf-api.md`):
//! - `POST /v2/client/oauth2/token` — client-credentials tokens, Basic or form credentials,
//!   one token per client per `token_min_interval`.
//! - `GET /v2/client/{client_id}/ping` — Bearer; `{"success": true}`.
//! - `GET /v1/ping/{client_id}` — Bearer; legacy, plain-text client id.
//! - `GET /v2/client/{client_id}` — Bearer; organisation record with `paid_until`.
//!
//! Plain HTTP ([`Simulator::serve`]) or HTTPS ([`Simulator::serve_tls`], `tls.rs`), same endpoints.
//!
//! Control endpoints (see `control.rs`), all under `/sim/` so they never collide with OBF paths:
//! - `GET /sim/stats`, `GET /sim/settings`, `PUT /sim/settings`, `POST /sim/clients`
//! - `GET /sim/clients/{id}/stats`, `POST /sim/clients/{id}/revoke`, `POST /sim/clients/{id}/restore`
//! - `POST /sim/clients/{id}/secrets`, `POST /sim/clients/{id}/secrets/remove` (secret in the body)
//! - `GET|PUT|DELETE /sim/clients/{id}/faults`
//!
//! A client may have several valid secrets at once (as OBF's Admin tools > API allows while a
//! secret is rotated); every token remembers the secret that obtained it. Revoking the client or
//! removing a secret forgets the tokens concerned, unless the client's
//! [`Faults::tokens_survive_revocation`] is on: then they answer until they expire, as
//! self-contained (JWT-like) tokens would, while the token endpoint refuses new ones.
//!
//! The same operations are available in-process on [`Simulator`]. Methods that name a client return
//! `true` if the client exists and `false` (doing nothing) if it does not.
//!
//! A crate of its own, which does not depend on `obf-exporter`, so the independence above is kept
//! by the compiler rather than by convention. The public surface is [`Simulator`] and the types it
//! takes and returns; everything else is crate-private (`unreachable_pub` keeps it so).

// Stricter than the workspace's lints: the simulator needs no unsafe code at all, and every public
// type is printable (`Simulator`'s Debug is written by hand to keep secrets out).
#![forbid(unsafe_code)]
#![warn(unreachable_pub, missing_debug_implementations)]

mod api;
mod control;
mod secrets;
mod state;
mod tls;
mod tokens;
mod wire;

#[cfg(test)]
mod test_http;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_faults;
#[cfg(test)]
mod tests_secrets;
#[cfg(test)]
mod tests_tls;

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use state::State;
pub use tls::TlsIdentity;

/// Global behaviour of the simulator; per-client behaviour lives in [`Faults`].
#[derive(Clone, Debug)]
pub struct SimOptions {
    /// Answer the way RFC 6749/6750 say (401 + `WWW-Authenticate`) instead of OBF's observed 403s.
    pub rfc_mode: bool,
    /// Minimum spacing between two issued tokens for one client (OBF: one per ten seconds).
    pub token_min_interval: Duration,
    /// Lifetime of issued tokens, reported as `expires_in`.
    pub token_lifetime: Duration,
    /// Whether a 429 from the token endpoint carries `Retry-After`.
    pub retry_after_header: bool,
}

impl Default for SimOptions {
    fn default() -> Self {
        Self {
            rfc_mode: false,
            token_min_interval: Duration::from_secs(10),
            token_lifetime: Duration::from_secs(18_000),
            retry_after_header: true,
        }
    }
}

/// Per-client misbehaviour. Everything is off by default; `Faults::default()` is a healthy client.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Faults {
    /// Delay before answering ping (v1, v2) and client-info requests.
    pub ping_latency_ms: Option<u64>,
    /// Delay before answering the token endpoint.
    pub token_latency_ms: Option<u64>,
    /// Forced status for ping (v1, v2) and client-info answers, before authentication.
    pub ping_status: Option<u16>,
    /// `Retry-After` (seconds) on the answers forced by `ping_status`.
    pub ping_retry_after_secs: Option<u64>,
    /// Forced status for the token endpoint, before authentication.
    pub token_status: Option<u16>,
    /// Ping (v1, v2) answers `302 Found` with this `Location`.
    pub redirect_to: Option<String>,
    /// An authorised ping answers 200 with a 100 KiB body.
    pub oversized_body: bool,
    /// The token endpoint answers 200 with unparseable JSON.
    pub malformed_token: bool,
    /// The token endpoint answers 200 without `access_token`.
    pub missing_access_token: bool,
    /// Issued tokens are announced without `expires_in` (they still expire).
    pub omit_expires_in: bool,
    /// Per-client token lifetime, overriding [`SimOptions::token_lifetime`].
    pub token_lifetime_secs: Option<u64>,
    /// Subscription end (unix seconds) reported by client info; default is a year after creation.
    pub paid_until: Option<i64>,
    /// Tokens already issued keep answering pings and client info until they expire when the
    /// client is revoked or the secret that obtained them is removed (the token endpoint still
    /// refuses). Counts at the moment of revocation or removal.
    pub tokens_survive_revocation: bool,
}

/// Request counters, global or for one client.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    /// Every request to the token endpoint (per client: those naming a known client id).
    pub token_requests: u64,
    pub tokens_issued: u64,
    /// 429s sent by the token endpoint.
    pub rate_limited: u64,
    /// 401s and 403s sent by the token endpoint.
    pub rejected: u64,
    /// v1 and v2 ping requests received.
    pub pings: u64,
    pub client_info_requests: u64,
}

/// One client's counters plus what a test needs to check the token spacing.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ClientStats {
    pub token_requests: u64,
    pub tokens_issued: u64,
    pub rate_limited: u64,
    pub rejected: u64,
    pub pings: u64,
    pub client_info_requests: u64,
    /// When each token was issued, in ms since the simulator started (the most recent 1024).
    pub token_issue_times_ms: Vec<u64>,
    pub revoked: bool,
    /// How many secrets the token endpoint accepts for this client now.
    pub secrets: u64,
    /// Tokens issued with each secret the client has had, in the order the secrets were added
    /// (index 0 is the one the client was created with); a removed secret keeps its index and
    /// count. Indexes only, never the secrets.
    pub tokens_issued_per_secret: Vec<u64>,
    /// Token requests refused because they sent a secret of this client that has been removed
    /// (also counted in `rejected`): a rotation the requester has not followed.
    pub removed_secret_rejections: u64,
}

/// A running (or ready to run) simulator. Cheap to clone; all clones share one state.
#[derive(Clone)]
pub struct Simulator {
    state: Arc<State>,
}

// Hand-written so that client secrets and tokens can never end up in debug output.
impl fmt::Debug for Simulator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Simulator").finish_non_exhaustive()
    }
}

impl Simulator {
    pub fn new(options: SimOptions) -> Self {
        Self {
            state: Arc::new(State::new(options)),
        }
    }

    /// Registers a client, or makes `client_secret` the only secret of an existing one (keeping
    /// its stats and faults, and leaving tokens issued with its other secrets valid, as before
    /// several secrets existed; use [`Simulator::remove_secret`] to model a revoked secret).
    pub fn add_client(&self, client_id: &str, client_secret: &str) {
        self.state.add_client(client_id, client_secret);
    }

    /// Makes the token endpoint accept `secret` for the client as well as its current secrets
    /// (generating a new secret in OBF's Admin tools > API). Adding a secret it already accepts
    /// changes nothing.
    pub fn add_secret(&self, client_id: &str, secret: &str) -> bool {
        self.state.add_secret(client_id, secret)
    }

    /// Stops accepting `secret` (deleting it in OBF) and drops the tokens it obtained unless
    /// [`Faults::tokens_survive_revocation`] is on. `false` if the client is unknown or does not
    /// accept this secret now. Removing the last secret leaves a client no credentials work for.
    pub fn remove_secret(&self, client_id: &str, secret: &str) -> bool {
        self.state.remove_secret(client_id, secret) == state::SecretRemoval::Removed
    }

    /// A simulator with `n` clients `sim00000`, `sim00001`, … whose secrets are `secret00000`, ….
    pub fn with_generated_clients(options: SimOptions, n: usize) -> Self {
        let sim = Self::new(options);
        for i in 0..n {
            sim.add_client(&format!("sim{i:05}"), &format!("secret{i:05}"));
        }
        sim
    }

    /// The OBF endpoints plus the `/sim/` control endpoints. Crate-private so that no axum type is
    /// part of the public surface; [`Simulator::serve`] and [`Simulator::spawn`] serve it.
    pub(crate) fn router(&self) -> axum::Router {
        axum::Router::new()
            .merge(api::routes())
            .merge(control::routes())
            .with_state(self.clone())
    }

    /// Serves on `listener` until this future is dropped.
    pub async fn serve(self, listener: TcpListener) -> std::io::Result<()> {
        axum::serve(listener, self.router()).await
    }

    /// Serves HTTPS on `listener` with `identity` until this future is dropped: the same
    /// endpoints as [`Simulator::serve`], each connection's handshake in a task of its own
    /// (at most 10 s). For benchmarks and tests over TLS.
    pub async fn serve_tls(
        self,
        listener: TcpListener,
        identity: &TlsIdentity,
    ) -> std::io::Result<()> {
        axum::serve(tls::TlsListener::new(listener, identity)?, self.router()).await
    }

    /// Binds `addr` (port 0 picks a free port), serves in the background and returns the bound
    /// address. Aborting the handle stops the server.
    pub async fn spawn(self, addr: SocketAddr) -> std::io::Result<(SocketAddr, JoinHandle<()>)> {
        let listener = TcpListener::bind(addr).await?;
        let bound = listener.local_addr()?;
        let handle = tokio::spawn(async move {
            if let Err(error) = self.serve(listener).await {
                tracing::error!(%error, "OBF simulator stopped");
            }
        });
        Ok((bound, handle))
    }

    /// Refuses the client's credentials and drops all its tokens (they stay invalid after restore),
    /// unless [`Faults::tokens_survive_revocation`] is on: then they answer until they expire.
    pub fn revoke(&self, client_id: &str) -> bool {
        self.state.set_revoked(client_id, true)
    }

    /// Accepts the client's credentials again; tokens dropped by `revoke` do not come back.
    pub fn restore(&self, client_id: &str) -> bool {
        self.state.set_revoked(client_id, false)
    }

    /// Replaces the client's faults.
    pub fn set_faults(&self, client_id: &str, faults: Faults) -> bool {
        self.state.update_faults(client_id, |f| *f = faults)
    }

    pub fn update_faults(&self, client_id: &str, f: impl FnOnce(&mut Faults)) -> bool {
        self.state.update_faults(client_id, f)
    }

    pub fn clear_faults(&self, client_id: &str) -> bool {
        self.set_faults(client_id, Faults::default())
    }

    /// The client's current faults, `None` for an unknown client.
    pub fn faults(&self, client_id: &str) -> Option<Faults> {
        self.state.faults(client_id)
    }

    pub fn set_rfc_mode(&self, on: bool) {
        self.update_options(|o| o.rfc_mode = on);
    }

    /// Current global settings.
    pub fn options(&self) -> SimOptions {
        self.state.options()
    }

    /// Changes global settings; takes effect for the next request.
    pub fn update_options(&self, f: impl FnOnce(&mut SimOptions)) {
        self.state.update_options(f);
    }

    /// The client's tokens the simulator still holds, oldest first: at most the 64 most recent,
    /// without expired ones (pruned when the next is issued) or revoked ones (those surviving
    /// revocation are held). Empty for an unknown client. For tests that check no token leaks
    /// into logs or metrics.
    pub fn issued_tokens(&self, client_id: &str) -> Vec<String> {
        self.state.issued_tokens(client_id)
    }

    /// Global totals.
    pub fn stats(&self) -> Stats {
        self.state.stats()
    }

    pub fn client_stats(&self, client_id: &str) -> Option<ClientStats> {
        self.state.client_stats(client_id)
    }
}
