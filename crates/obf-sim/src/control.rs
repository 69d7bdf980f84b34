//! The simulator's HTTP control surface under `/sim/`, for the `sim` binary, external rehearsals and
//! scripts: the same operations as the in-process `Simulator` methods. Not part of OBF's API, and
//! kept under its own prefix so it can never shadow an OBF path.
//!
//! - `GET /sim/stats` → global `Stats`
//! - `GET /sim/settings`, `PUT /sim/settings` (partial update) → 200 / 204
//! - `POST /sim/clients` `{"client_id","client_secret"}` → 201 (an existing client gets the new secret)
//! - `GET /sim/clients/{id}/stats` → `ClientStats`
//! - `POST /sim/clients/{id}/revoke`, `POST /sim/clients/{id}/restore` → 204
//! - `POST /sim/clients/{id}/secrets` `{"secret"}` → 204: the client accepts this secret too
//! - `POST /sim/clients/{id}/secrets/remove` `{"secret"}` → 204, or 404 `unknown secret` if the
//!   client does not accept it now (secrets travel in bodies, never in URLs, and are never logged)
//! - `GET /sim/clients/{id}/faults`, `PUT` (replace), `DELETE` (clear) → 200 / 204
//!
//! An unknown client id answers 404 with a short text body.

use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::state::SecretRemoval;
use super::{Faults, Simulator};

pub(super) fn routes() -> Router<Simulator> {
    Router::new()
        .route("/sim/stats", get(stats))
        .route("/sim/settings", get(get_settings).put(put_settings))
        .route("/sim/clients", post(add_client))
        .route("/sim/clients/{id}/stats", get(client_stats))
        .route("/sim/clients/{id}/revoke", post(revoke))
        .route("/sim/clients/{id}/restore", post(restore))
        .route("/sim/clients/{id}/secrets", post(add_secret))
        .route("/sim/clients/{id}/secrets/remove", post(remove_secret))
        .route(
            "/sim/clients/{id}/faults",
            get(get_faults).put(put_faults).delete(delete_faults),
        )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewClient {
    client_id: String,
    client_secret: String,
}

/// One secret of an existing client.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SecretBody {
    secret: String,
}

/// Settings as the control API sees them; every field optional on `PUT` so scripts change one
/// thing at a time. Unknown fields are refused so a typo does not silently do nothing.
#[derive(Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    rfc_mode: Option<bool>,
    token_min_interval_ms: Option<u64>,
    token_lifetime_secs: Option<u64>,
    retry_after_header: Option<bool>,
}

fn unknown_client() -> Response {
    (StatusCode::NOT_FOUND, "unknown client\n").into_response()
}

/// 204 if the client existed, else 404.
fn done(found: bool) -> Response {
    if found {
        StatusCode::NO_CONTENT.into_response()
    } else {
        unknown_client()
    }
}

async fn stats(State(sim): State<Simulator>) -> Response {
    Json(sim.stats()).into_response()
}

async fn get_settings(State(sim): State<Simulator>) -> Response {
    let o = sim.options();
    Json(Settings {
        rfc_mode: Some(o.rfc_mode),
        token_min_interval_ms: Some(
            u64::try_from(o.token_min_interval.as_millis()).unwrap_or(u64::MAX),
        ),
        token_lifetime_secs: Some(o.token_lifetime.as_secs()),
        retry_after_header: Some(o.retry_after_header),
    })
    .into_response()
}

async fn put_settings(State(sim): State<Simulator>, Json(s): Json<Settings>) -> Response {
    sim.update_options(|o| {
        if let Some(on) = s.rfc_mode {
            o.rfc_mode = on;
        }
        if let Some(ms) = s.token_min_interval_ms {
            o.token_min_interval = Duration::from_millis(ms);
        }
        if let Some(secs) = s.token_lifetime_secs {
            o.token_lifetime = Duration::from_secs(secs);
        }
        if let Some(on) = s.retry_after_header {
            o.retry_after_header = on;
        }
    });
    StatusCode::NO_CONTENT.into_response()
}

async fn add_client(State(sim): State<Simulator>, Json(c): Json<NewClient>) -> Response {
    sim.add_client(&c.client_id, &c.client_secret);
    StatusCode::CREATED.into_response()
}

async fn client_stats(State(sim): State<Simulator>, Path(id): Path<String>) -> Response {
    match sim.client_stats(&id) {
        Some(s) => Json(s).into_response(),
        None => unknown_client(),
    }
}

async fn revoke(State(sim): State<Simulator>, Path(id): Path<String>) -> Response {
    done(sim.revoke(&id))
}

async fn restore(State(sim): State<Simulator>, Path(id): Path<String>) -> Response {
    done(sim.restore(&id))
}

async fn add_secret(
    State(sim): State<Simulator>,
    Path(id): Path<String>,
    Json(body): Json<SecretBody>,
) -> Response {
    done(sim.add_secret(&id, &body.secret))
}

async fn remove_secret(
    State(sim): State<Simulator>,
    Path(id): Path<String>,
    Json(body): Json<SecretBody>,
) -> Response {
    match sim.state.remove_secret(&id, &body.secret) {
        SecretRemoval::Removed => StatusCode::NO_CONTENT.into_response(),
        SecretRemoval::UnknownClient => unknown_client(),
        SecretRemoval::UnknownSecret => (StatusCode::NOT_FOUND, "unknown secret\n").into_response(),
    }
}

async fn get_faults(State(sim): State<Simulator>, Path(id): Path<String>) -> Response {
    match sim.faults(&id) {
        Some(f) => Json(f).into_response(),
        None => unknown_client(),
    }
}

async fn put_faults(
    State(sim): State<Simulator>,
    Path(id): Path<String>,
    Json(faults): Json<Faults>,
) -> Response {
    done(sim.set_faults(&id, faults))
}

async fn delete_faults(State(sim): State<Simulator>, Path(id): Path<String>) -> Response {
    done(sim.clear_faults(&id))
}
