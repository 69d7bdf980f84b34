//! The agent's HTTP server. Endpoints:
//!
//! - `GET /metrics`: every metric, Prometheus text format;
//! - `GET /-/healthy`: 200 while the process runs;
//! - `GET /-/ready`: 200 once the config is loaded and the first round is scheduled, and no org's
//!   schedule task is recovering from a restart (see [`crate::fleet::supervisor`]); else 503 naming them;
//! - `POST /-/reload`: re-read the config file; 200 with what changed, 500 with the errors;
//! - `GET /probe?org=NAME[&debug=true]`: probe that org now, answer its metrics (or a trace);
//!   at most [`MAX_ON_DEMAND_PROBES`] at once, 503 beyond;
//! - the status page routes of [`crate::http::status`].

use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Extension, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::Deserialize;
use tokio::sync::Semaphore;

use super::ServerState;
use crate::fleet::report::{ProbeReport, TokenUse};
use crate::metrics::Scrape;

/// On-demand probes (`/probe`) running at once. They come on top of the scheduled probes'
/// `MAX_PROBES_IN_FLIGHT` (the file-descriptor reserve of `web::fds` counts both), and each may
/// open an outbound connection: a small cap keeps a burst of calls from turning into a burst of
/// connections to OBF. A person or a Blackbox-style check needs one or two at a time.
pub const MAX_ON_DEMAND_PROBES: usize = 4;

/// The slots of [`MAX_ON_DEMAND_PROBES`], shared by the `/probe` route.
#[derive(Clone)]
struct ProbeSlots(Arc<Semaphore>);

pub fn router(state: ServerState) -> Router {
    let probe_slots = ProbeSlots(Arc::new(Semaphore::new(MAX_ON_DEMAND_PROBES)));
    Router::new()
        .route("/metrics", get(metrics))
        .route("/-/healthy", get(healthy))
        .route("/-/ready", get(ready))
        .route("/-/reload", post(reload))
        .route("/probe", get(probe).layer(Extension(probe_slots)))
        .merge(crate::http::status::routes())
        .with_state(state)
}

const TEXT_FORMAT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The body of `/metrics` is rendered a chunk of this size at a time, when hyper asks for the next
/// one: a scrape of 10,000 orgs (~24 MB of text) never sits in memory whole, and each chunk is
/// still in the CPU cache when it is written to the socket. A chunk is a few tenths of a
/// millisecond of work, short enough to do on an async worker.
const METRICS_CHUNK: usize = 256 * 1024;

/// hyper keeps asking for chunks while the socket takes them, and a fast reader takes all 24 MB:
/// after this many chunks (about a millisecond of rendering) the scrape lets the worker run other
/// tasks (probes, timers) before it goes on.
const METRICS_CHUNKS_BEFORE_YIELD: u32 = 4;

async fn metrics(State(state): State<ServerState>) -> Response {
    let scrape = state.controller.metrics().scrape();
    (
        [(header::CONTENT_TYPE, TEXT_FORMAT)],
        Body::from_stream(ScrapeStream::new(scrape)),
    )
        .into_response()
}

/// The scrape's chunks as a body stream.
struct ScrapeStream {
    scrape: Scrape,
    chunks_since_yield: u32,
}

impl ScrapeStream {
    fn new(scrape: Scrape) -> Self {
        ScrapeStream {
            scrape,
            chunks_since_yield: 0,
        }
    }
}

impl futures_core::Stream for ScrapeStream {
    type Item = Result<Vec<u8>, std::convert::Infallible>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        if self.chunks_since_yield >= METRICS_CHUNKS_BEFORE_YIELD {
            self.chunks_since_yield = 0;
            cx.waker().wake_by_ref();
            return std::task::Poll::Pending;
        }
        self.chunks_since_yield += 1;
        std::task::Poll::Ready(self.scrape.next_chunk(METRICS_CHUNK).map(Ok))
    }
}

async fn healthy() -> &'static str {
    "OK\n"
}

async fn ready(State(state): State<ServerState>) -> Response {
    if !state.ready.load(Ordering::Acquire) {
        return (StatusCode::SERVICE_UNAVAILABLE, "not ready\n").into_response();
    }
    // An org whose task had to be restarted is not being watched until it has run again.
    let recovering = state.controller.recovering_orgs();
    if !recovering.is_empty() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "not ready: the schedule task of {} ended abnormally and was restarted; waiting \
                 for its next run to complete\n",
                recovering.join(", ")
            ),
        )
            .into_response();
    }
    (StatusCode::OK, "ready\n").into_response()
}

async fn reload(State(state): State<ServerState>) -> Response {
    match state.controller.reload().await {
        Ok(changes) => (
            StatusCode::OK,
            format!(
                "reloaded: {} added, {} changed, {} relabelled, {} with a new secret, {} removed, \
                 {} unchanged\n",
                changes.added.len(),
                changes.changed.len(),
                changes.relabelled.len(),
                changes.rotated.len(),
                changes.removed.len(),
                changes.unchanged
            ),
        )
            .into_response(),
        Err(error) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("reload failed; the previous configuration keeps running:\n{error}\n"),
        )
            .into_response(),
    }
}

#[derive(Deserialize)]
struct ProbeParams {
    org: Option<String>,
    #[serde(default)]
    debug: bool,
}

async fn probe(
    State(state): State<ServerState>,
    Extension(ProbeSlots(slots)): Extension<ProbeSlots>,
    Query(params): Query<ProbeParams>,
) -> Response {
    let Some(name) = params.org else {
        return (StatusCode::BAD_REQUEST, "missing query parameter: org\n").into_response();
    };
    let Some(org) = state.controller.org(&name) else {
        return (
            StatusCode::NOT_FOUND,
            format!("unknown org {name:?}: not in the configuration (or not in this shard)\n"),
        )
            .into_response();
    };
    let Ok(slot) = slots.try_acquire_owned() else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, "1")],
            format!(
                "too many on-demand probes in progress (limit {MAX_ON_DEMAND_PROBES}); retry in a second\n"
            ),
        )
            .into_response();
    };
    // Spawned: a client hanging up must not cancel a probe halfway through a token request. The
    // slot goes with the probe, so hang-ups cannot start more probes than the cap either.
    let report = match tokio::spawn(async move {
        let report = org.probe().await;
        drop(slot);
        report
    })
    .await
    {
        Ok(report) => report,
        Err(error) => {
            tracing::error!(%error, "on-demand probe failed");
            return (StatusCode::INTERNAL_SERVER_ERROR, "probe failed\n").into_response();
        }
    };
    if params.debug {
        return (
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            trace(&report),
        )
            .into_response();
    }
    let body = state.controller.metrics().render_org(&name);
    ([(header::CONTENT_TYPE, TEXT_FORMAT)], body).into_response()
}

/// A plain-text account of one probe. Built from the report, which holds no secret or token.
pub fn trace(report: &ProbeReport) -> String {
    let mut out = format!("probe of org {}\n", report.org);
    let token = match report.token {
        TokenUse::Reused => "token: cached token reused".to_string(),
        TokenUse::Fetched => format!(
            "token: fetched a new token in {:.3} s",
            report.token_seconds.unwrap_or_default()
        ),
        TokenUse::Failed => format!(
            "token: request failed ({}) after {:.3} s",
            report
                .token_failure
                .map(|r| r.as_str())
                .unwrap_or("unknown"),
            report.token_seconds.unwrap_or_default()
        ),
        TokenUse::None => "token: none at hand and no request allowed yet".to_string(),
    };
    out.push_str(&token);
    out.push_str(&format!(
        "\ntoken: [redacted]; expires at {}\n",
        report
            .token_expires_at
            .map(|t| format!("{t:.0} (unix)"))
            .unwrap_or_else(|| "unknown".to_string())
    ));
    match report.ping_seconds {
        Some(seconds) => out.push_str(&format!(
            "ping: HTTP {} in {seconds:.3} s\n",
            report
                .status
                .map(|s| s.to_string())
                .unwrap_or_else(|| "none".to_string())
        )),
        None => out.push_str("ping: not sent\n"),
    }
    out.push_str(&format!(
        "result: {}\n",
        match report.reason {
            None if report.success => "success".to_string(),
            Some(reason) => format!("failure ({reason})"),
            None => "failure".to_string(),
        }
    ));
    if let Some(detail) = &report.detail {
        out.push_str(&format!("detail: {detail}\n"));
    }
    if let Some(valid) = report.credentials_valid {
        out.push_str(&format!("credentials valid: {valid}\n"));
    }
    if let Some(paid_until) = report.subscription_ends {
        out.push_str(&format!("subscription ends: {paid_until} (unix)\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;
    use std::task::{Context, Poll, Wake, Waker};

    use futures_core::Stream;

    use super::*;
    use crate::metrics::test_fleet::{fleet, orgs_part};

    struct CountingWaker(AtomicUsize);

    impl Wake for CountingWaker {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    #[test]
    fn a_long_scrape_lets_the_worker_go_every_few_chunks_and_loses_nothing() {
        let metrics = fleet(1000);
        let whole = metrics.scrape().into_bytes();
        // Enough text for several yields.
        assert!(whole.len() > 6 * METRICS_CHUNK, "{} bytes", whole.len());
        let counter = Arc::new(CountingWaker(AtomicUsize::new(0)));
        let waker = Waker::from(counter.clone());
        let mut cx = Context::from_waker(&waker);
        let mut stream = ScrapeStream::new(metrics.scrape());
        let (mut body, mut polls, mut pending) = (Vec::new(), 0, 0);
        loop {
            polls += 1;
            match std::pin::Pin::new(&mut stream).poll_next(&mut cx) {
                Poll::Ready(Some(Ok(chunk))) => body.extend_from_slice(&chunk),
                Poll::Ready(None) => break,
                Poll::Pending => pending += 1,
            }
        }
        // The process metrics at the top change between the two scrapes; the rest may not.
        assert!(
            orgs_part(&body) == orgs_part(&whole),
            "the streamed body differs"
        );
        let chunks = polls - pending - 1;
        // A Pending comes before every fifth answer (chunk or end) of the stream.
        assert_eq!(pending, chunks / METRICS_CHUNKS_BEFORE_YIELD as usize);
        assert!(pending > 0);
        // Every Pending woke the task again, so hyper polls on instead of stalling.
        assert_eq!(counter.0.load(Ordering::Relaxed), pending);
    }
}
