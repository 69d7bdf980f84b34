//! The simulated OBF endpoints: turns requests into `State` calls and `State` answers into the
//! responses OBF gives (observed 403s by default, RFC 6749/6750 401s in RFC mode), with per-client
//! faults applied. Control endpoints live in `control.rs`.
//!
//! - `POST /v2/client/oauth2/token`
//! - `GET /v2/client/{client_id}/ping`
//! - `GET /v1/ping/{client_id}`
//! - `GET /v2/client/{client_id}`

use std::time::{Duration, SystemTime};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE, LOCATION, RETRY_AFTER, WWW_AUTHENTICATE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;

use super::state::{Plan, Resource, TokenOutcome};
use super::wire::{basic_credentials, bearer_token, form_value, parse_form, spring_timestamp};
use super::Simulator;

const TOKEN_PATH: &str = "/v2/client/oauth2/token";
/// Size of the `oversized_body` ping answer: well past any sane read limit on the client.
const OVERSIZED_BYTES: usize = 100 * 1024;

pub(super) fn routes() -> Router<Simulator> {
    Router::new()
        .route(TOKEN_PATH, post(token))
        .route("/v2/client/{client_id}/ping", get(ping_v2))
        .route("/v1/ping/{client_id}", get(ping_v1))
        .route("/v2/client/{client_id}", get(client_info))
}

/// Credentials as sent: the Basic header wins when it decodes, else the form fields.
struct Credentials {
    client_id: String,
    secret: Option<String>,
}

fn credentials(headers: &HeaderMap, form: &[(String, String)]) -> Option<Credentials> {
    let basic = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(basic_credentials);
    if let Some((client_id, secret)) = basic {
        return Some(Credentials {
            client_id,
            secret: Some(secret),
        });
    }
    Some(Credentials {
        client_id: form_value(form, "client_id")?.to_owned(),
        secret: form_value(form, "client_secret").map(str::to_owned),
    })
}

/// Only a form body is read as a form; anything else (e.g. JSON) looks like a request without
/// parameters, which is how a strict OAuth server treats it.
fn is_form(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| {
            v.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        })
}

async fn token(State(sim): State<Simulator>, headers: HeaderMap, body: Bytes) -> Response {
    let form = if is_form(&headers) {
        parse_form(&body)
    } else {
        Vec::new()
    };
    let creds = credentials(&headers, &form);
    let client_id = creds.as_ref().map(|c| c.client_id.as_str());
    let plan = sim.state.token_request(client_id);
    sleep_ms(plan.faults.token_latency_ms).await;
    let response = token_answer(&sim, &plan, creds.as_ref(), &form);
    sim.state
        .record_token_answer(client_id, response.status().as_u16());
    response
}

fn token_answer(
    sim: &Simulator,
    plan: &Plan,
    creds: Option<&Credentials>,
    form: &[(String, String)],
) -> Response {
    if let Some(code) = plan.faults.token_status {
        let status = forced_status(code);
        let error = if status == StatusCode::BAD_REQUEST {
            "invalid_client"
        } else {
            "forced"
        };
        return (status, Json(json!({ "error": error }))).into_response();
    }
    match form_value(form, "grant_type") {
        Some("client_credentials") => {}
        Some(_) => return oauth_error(StatusCode::BAD_REQUEST, "unsupported_grant_type"),
        None => return oauth_error(StatusCode::BAD_REQUEST, "invalid_request"),
    }
    let outcome = match creds {
        Some(Credentials {
            client_id,
            secret: Some(secret),
        }) => sim.state.issue(client_id, secret),
        _ => TokenOutcome::Rejected,
    };
    match outcome {
        TokenOutcome::Rejected if plan.rfc_mode => (
            StatusCode::UNAUTHORIZED,
            [(
                WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"obf\""),
            )],
            Json(json!({ "error": "invalid_client" })),
        )
            .into_response(),
        TokenOutcome::Rejected => spring_error(StatusCode::FORBIDDEN),
        TokenOutcome::RateLimited { retry_after } => {
            let mut response = spring_error(StatusCode::TOO_MANY_REQUESTS);
            if plan.retry_after_header {
                response.headers_mut().insert(
                    RETRY_AFTER,
                    HeaderValue::from(retry_after_secs(retry_after)),
                );
            }
            response
        }
        TokenOutcome::Malformed => json_text(StatusCode::OK, "{\"access_token\": ".to_owned()),
        TokenOutcome::MissingAccessToken => (
            StatusCode::OK,
            Json(json!({ "token_type": "bearer", "expires_in": 60 })),
        )
            .into_response(),
        TokenOutcome::Issued { token, expires_in } => {
            let mut body = json!({ "access_token": token, "token_type": "bearer" });
            if let Some(secs) = expires_in {
                body["expires_in"] = json!(secs);
            }
            (StatusCode::OK, Json(body)).into_response()
        }
    }
}

/// Whole seconds until the spacing ends, rounded up, never 0 (a client told "retry in 0 s" would
/// hammer the endpoint).
fn retry_after_secs(remaining: Duration) -> u64 {
    let secs = remaining.as_secs() + u64::from(remaining.subsec_nanos() > 0);
    secs.max(1)
}

async fn ping_v2(
    State(sim): State<Simulator>,
    Path(client_id): Path<String>,
    headers: HeaderMap,
) -> Response {
    match guard(&sim, &client_id, &headers, Resource::Ping).await {
        Ok(plan) if plan.faults.oversized_body => oversized(),
        Ok(_) => (StatusCode::OK, Json(json!({ "success": true }))).into_response(),
        Err(refused) => refused,
    }
}

async fn ping_v1(
    State(sim): State<Simulator>,
    Path(client_id): Path<String>,
    headers: HeaderMap,
) -> Response {
    match guard(&sim, &client_id, &headers, Resource::Ping).await {
        Ok(plan) if plan.faults.oversized_body => oversized(),
        Ok(_) => text(StatusCode::OK, client_id),
        Err(refused) => refused,
    }
}

async fn client_info(
    State(sim): State<Simulator>,
    Path(client_id): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Err(refused) = guard(&sim, &client_id, &headers, Resource::ClientInfo).await {
        return refused;
    }
    // `guard` only lets known clients through, so this is `Some` unless the client vanished in
    // between, which the state never does; fall back to "now" rather than panic.
    let paid_until = sim
        .state
        .paid_until(&client_id)
        .unwrap_or_else(super::wire::unix_now);
    let body = json!({
        "id": client_id,
        "name": format!("Simulated org {client_id}"),
        "email": "admin@example.org",
        "tier": "pro",
        "paid_until": paid_until,
        "verified": true,
    });
    (StatusCode::OK, Json(body)).into_response()
}

/// Everything a Bearer-protected request goes through before its own answer: counting, latency,
/// forced status, redirect (pings only) and the token check, in that order. Faults come before the
/// token check because they stand for infrastructure in front of OBF (proxies, load balancers).
async fn guard(
    sim: &Simulator,
    client_id: &str,
    headers: &HeaderMap,
    kind: Resource,
) -> Result<Plan, Response> {
    let plan = sim.state.resource_request(client_id, kind);
    sleep_ms(plan.faults.ping_latency_ms).await;
    if let Some(code) = plan.faults.ping_status {
        let mut response =
            (forced_status(code), Json(json!({ "error": "forced" }))).into_response();
        if let Some(seconds) = plan.faults.ping_retry_after_secs {
            response
                .headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from(seconds));
        }
        return Err(response);
    }
    if let (Resource::Ping, Some(url)) = (kind, &plan.faults.redirect_to) {
        return Err(match HeaderValue::from_str(url) {
            Ok(location) => (StatusCode::FOUND, [(LOCATION, location)]).into_response(),
            Err(_) => text(
                StatusCode::INTERNAL_SERVER_ERROR,
                "redirect_to fault is not a valid header value".to_owned(),
            ),
        });
    }
    let token = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer_token);
    match token {
        Some(token) if sim.state.authorized(client_id, token) => Ok(plan),
        _ if plan.rfc_mode => Err((
            StatusCode::UNAUTHORIZED,
            [(
                WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer error=\"invalid_token\""),
            )],
        )
            .into_response()),
        _ => Err(text(StatusCode::FORBIDDEN, "403 Forbidden".to_owned())),
    }
}

async fn sleep_ms(ms: Option<u64>) {
    if let Some(ms) = ms.filter(|&ms| ms > 0) {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
}

/// A status from a fault; nonsense codes become 500 rather than an unanswerable request.
fn forced_status(code: u16) -> StatusCode {
    StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

/// OBF's observed error shape (Spring Boot's default error body).
fn spring_error(status: StatusCode) -> Response {
    let body = json!({
        "timestamp": spring_timestamp(SystemTime::now()),
        "status": status.as_u16(),
        "error": status.canonical_reason().unwrap_or(""),
        "path": TOKEN_PATH,
    });
    (status, Json(body)).into_response()
}

fn oauth_error(status: StatusCode, error: &str) -> Response {
    (status, Json(json!({ "error": error }))).into_response()
}

fn oversized() -> Response {
    let padding = "x".repeat(OVERSIZED_BYTES);
    json_text(
        StatusCode::OK,
        format!("{{\"success\": true, \"padding\": \"{padding}\"}}"),
    )
}

fn json_text(status: StatusCode, body: String) -> Response {
    (
        status,
        [(CONTENT_TYPE, HeaderValue::from_static("application/json"))],
        body,
    )
        .into_response()
}

fn text(status: StatusCode, body: String) -> Response {
    (
        status,
        [(CONTENT_TYPE, HeaderValue::from_static("text/plain"))],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_rounds_up_and_is_at_least_one() {
        assert_eq!(retry_after_secs(Duration::from_millis(7_500)), 8);
        assert_eq!(retry_after_secs(Duration::from_secs(10)), 10);
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
    }

    #[test]
    fn nonsense_forced_statuses_become_500() {
        assert_eq!(forced_status(503), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(forced_status(42), StatusCode::INTERNAL_SERVER_ERROR);
    }
}
