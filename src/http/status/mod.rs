//! The status page: each org's last result at a glance, for people (HTML) and scripts (JSON).
//!
//! Routes (merged into the agent's router by [`routes`]):
//!
//! - `GET /`: one table, one row per org: state, reason (with the failure's detail), last HTTP
//!   status, last ping latency, last success (relative), token expires in, credentials valid,
//!   subscription ends. Failing orgs first, then orgs not probed yet, then healthy ones; by name
//!   within each group.
//! - `GET /org/{name}`: one org's settings (host, client id, API, schedule, labels) and its last
//!   [`HISTORY_LEN`](crate::fleet::org::HISTORY_LEN) results, newest first. 404 (HTML, name escaped) for an org that is not
//!   configured or not in this shard.
//! - `GET /api/status`: the rows of `/` as JSON, in the same order:
//!
//! ```json
//! {
//!   "generated_at": 1767225600.0,
//!   "orgs": [{
//!     "org": "acme",
//!     "state": "failing",                 // "ok" | "failing" | "unknown" (not probed yet)
//!     "reason": "no_token",               // the contract's reason of the last run, or null
//!     "token_failure": "rejected",        // why the last token request failed, or null
//!     "detail": "token request: ...",     // the last failure's explanation, or null
//!     "last_run": 1767225590.1,           // unix seconds the last run finished, or null
//!     "last_status": 200,                 // HTTP status of the last ping sent, or null
//!     "last_latency_seconds": 0.042,      // the last ping's duration, or null
//!     "last_success": 1767225530.0,       // newest success among the runs kept, or null
//!     "runs": 20,                         // how many runs are kept (at most 20)
//!     "token_expires_at": 1767229200.0,   // unix seconds, or null
//!     "credentials_valid": false,         // null until the token endpoint has answered
//!     "credentials_last_verified": 1767222000.0, // unix seconds of the last acceptance, or null
//!     "subscription_ends": 1798761600,    // `paid_until`, unix seconds, or null
//!     "host": "https://openbadgefactory.com",
//!     "client_id": "ABC123",
//!     "api": "v2",
//!     "schedule": "every 1m",             // or "cron 0 */5 * * * *"
//!     "labels": {"team": "learning"}
//!   }]
//! }
//! ```
//!
//! Everything shown comes from the org's settings and its [`ProbeReport`]s; neither holds a
//! token, and the client secret in [`OrgConfig`] is never read here. Pages are server-rendered,
//! with inline CSS, no scripts and no external assets (the Content-Security-Policy forbids them),
//! and refresh themselves every 30 s. "Last success" is taken from the history the org keeps:
//! an org whose last success is older than its last [`HISTORY_LEN`](crate::fleet::org::HISTORY_LEN) runs shows "not in the last
//! 20 runs" (and `null` in JSON); `obf_ping_last_success_timestamp_seconds` has the exact time.

mod html;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::time::SystemTime;

use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde::Serialize;

use crate::config::{OrgConfig, Schedule};
use crate::fleet::controller::Controller;
use crate::fleet::org::Org;
use crate::fleet::report::ProbeReport;
use crate::http::ServerState;
use crate::obf::reason::Reason;

pub use html::{
    escape_html, format_duration, format_latency, relative, render_index, render_not_found,
    render_org,
};

/// An org's state, from its last run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OrgState {
    // Declared in display order: failing first.
    Failing,
    Unknown,
    Ok,
}

impl OrgState {
    pub fn as_str(self) -> &'static str {
        match self {
            OrgState::Ok => "ok",
            OrgState::Failing => "failing",
            OrgState::Unknown => "unknown",
        }
    }
}

/// One row of the status page; also one element of `/api/status`'s `orgs`.
#[derive(Clone, Debug, Serialize)]
pub struct OrgStatus {
    pub org: String,
    pub state: OrgState,
    pub reason: Option<Reason>,
    pub token_failure: Option<Reason>,
    pub detail: Option<String>,
    pub last_run: Option<f64>,
    pub last_status: Option<u16>,
    pub last_latency_seconds: Option<f64>,
    pub last_success: Option<f64>,
    pub runs: usize,
    pub token_expires_at: Option<f64>,
    pub credentials_valid: Option<bool>,
    pub credentials_last_verified: Option<f64>,
    pub subscription_ends: Option<i64>,
    pub host: String,
    pub client_id: String,
    pub api: &'static str,
    pub schedule: String,
    pub labels: BTreeMap<String, String>,
}

impl OrgStatus {
    /// The row for an org with these settings and these results (oldest first, as
    /// [`Org::history`] gives them).
    pub fn new(config: &OrgConfig, history: &[ProbeReport]) -> Self {
        let last = history.last();
        let state = match last {
            None => OrgState::Unknown,
            Some(report) if report.success => OrgState::Ok,
            Some(_) => OrgState::Failing,
        };
        OrgStatus {
            org: config.name.to_string(),
            state,
            reason: last.and_then(|r| r.reason),
            token_failure: last.and_then(|r| r.token_failure),
            detail: last.and_then(|r| r.detail.clone()),
            last_run: last.map(|r| r.finished_at),
            last_status: last.and_then(|r| r.status),
            last_latency_seconds: last.and_then(|r| r.ping_seconds),
            last_success: history
                .iter()
                .rev()
                .find(|r| r.success)
                .map(|r| r.finished_at),
            runs: history.len(),
            token_expires_at: last.and_then(|r| r.token_expires_at),
            credentials_valid: last.and_then(|r| r.credentials_valid),
            credentials_last_verified: last.and_then(|r| r.credentials_last_verified),
            subscription_ends: last.and_then(|r| r.subscription_ends),
            host: config.host.clone(),
            client_id: config.client_id.clone(),
            api: config.api.as_str(),
            schedule: describe_schedule(&config.schedule),
            labels: config.labels.clone(),
        }
    }

    /// The row for a running org. The credential columns are read live from the credential
    /// (as `/metrics` reads them), not from the org's last run: an org sharing its credential
    /// shows what another org just learnt.
    pub fn of(org: &Org) -> Self {
        let mut row = Self::new(&org.config, &org.history());
        let live = org.tokens.snapshot();
        row.credentials_valid = live.credentials_valid;
        row.token_expires_at = live.token_expires_at.map(crate::metrics::unix_seconds);
        row.credentials_last_verified = live.last_verified.map(crate::metrics::unix_seconds);
        row
    }
}

fn describe_schedule(schedule: &Schedule) -> String {
    match schedule {
        Schedule::Interval(every) => format!("every {}", humantime::format_duration(*every)),
        Schedule::Cron(cron) => format!("cron {}", cron.expression),
    }
}

/// Sorts rows for display: failing, then not probed yet, then ok; by name within each.
pub fn sort_rows(rows: &mut [OrgStatus]) {
    rows.sort_by(|a, b| a.state.cmp(&b.state).then_with(|| a.org.cmp(&b.org)));
}

/// Every org of `controller`, sorted by [`sort_rows`].
pub fn collect(controller: &Controller) -> Vec<OrgStatus> {
    let mut rows: Vec<OrgStatus> = controller
        .orgs()
        .iter()
        .map(|org| OrgStatus::of(org))
        .collect();
    sort_rows(&mut rows);
    rows
}

#[derive(Serialize)]
struct StatusDocument<'a> {
    generated_at: f64,
    orgs: &'a [OrgStatus],
}

/// The body of `/api/status`.
pub fn render_json(rows: &[OrgStatus], now: SystemTime) -> String {
    let document = StatusDocument {
        generated_at: crate::metrics::unix_seconds(now),
        orgs: rows,
    };
    // Serialising plain data (strings, numbers, maps with string keys) cannot fail.
    serde_json::to_string_pretty(&document).unwrap_or_else(|_| "{\"orgs\":[]}".to_string())
}

/// `GET /`, `GET /org/{name}` and `GET /api/status`.
pub fn routes() -> Router<ServerState> {
    Router::new()
        .route("/", get(index))
        .route("/org/{name}", get(org_page))
        .route("/api/status", get(api_status))
}

const HTML: &str = "text/html; charset=utf-8";
const JSON: &str = "application/json";
/// No scripts, no external anything: only the page's own `<style>`.
const CSP: &str =
    "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

fn respond(status: StatusCode, content_type: &'static str, body: String) -> Response {
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if content_type == HTML {
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CSP),
        );
    }
    response
}

/// Runs `render` off the async workers: with thousands of orgs a page is megabytes.
async fn render_blocking(
    state: ServerState,
    render: impl FnOnce(&Controller) -> (StatusCode, &'static str, String) + Send + 'static,
) -> Response {
    let controller = state.controller.clone();
    match tokio::task::spawn_blocking(move || render(&controller)).await {
        Ok((status, content_type, body)) => respond(status, content_type, body),
        Err(_) => (StatusCode::INTERNAL_SERVER_ERROR, "rendering failed\n").into_response(),
    }
}

async fn index(State(state): State<ServerState>) -> Response {
    render_blocking(state, |controller| {
        let rows = collect(controller);
        (StatusCode::OK, HTML, render_index(&rows, SystemTime::now()))
    })
    .await
}

async fn org_page(State(state): State<ServerState>, Path(name): Path<String>) -> Response {
    render_blocking(state, move |controller| match controller.org(&name) {
        Some(org) => {
            let history = org.history();
            let row = OrgStatus::new(&org.config, &history);
            (
                StatusCode::OK,
                HTML,
                render_org(&row, &history, SystemTime::now()),
            )
        }
        None => (StatusCode::NOT_FOUND, HTML, render_not_found(&name)),
    })
    .await
}

async fn api_status(State(state): State<ServerState>) -> Response {
    render_blocking(state, |controller| {
        let rows = collect(controller);
        (StatusCode::OK, JSON, render_json(&rows, SystemTime::now()))
    })
    .await
}
