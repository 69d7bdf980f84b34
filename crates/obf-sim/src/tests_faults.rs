//! End-to-end tests of the simulator's per-client faults and its `/sim/` control API.

use std::time::{Duration, Instant};

use super::test_http::request;
use super::tests::{fast, get, get_token, start, token_basic};
use super::{Faults, SimOptions};

#[tokio::test]
async fn latency_faults_delay_answers() {
    let (sim, addr) = start(SimOptions::default()).await;
    sim.set_faults(
        "org1",
        Faults {
            token_latency_ms: Some(150),
            ping_latency_ms: Some(150),
            ..Faults::default()
        },
    );
    let started = Instant::now();
    let token = get_token(addr, "org1", "secret1").await;
    assert!(started.elapsed() >= Duration::from_millis(150));
    let started = Instant::now();
    assert_eq!(
        get(addr, "/v2/client/org1/ping", Some(&token)).await.status,
        200
    );
    assert!(started.elapsed() >= Duration::from_millis(150));
    // Other clients are not slowed down.
    let started = Instant::now();
    get_token(addr, "org2", "secret2").await;
    assert!(started.elapsed() < Duration::from_millis(150));
}

#[tokio::test]
async fn forced_ping_status_applies_to_pings_and_client_info() {
    let (sim, addr) = start(SimOptions::default()).await;
    let token = get_token(addr, "org1", "secret1").await;
    for code in [503, 404, 418, 500] {
        sim.update_faults("org1", |f| f.ping_status = Some(code));
        for path in ["/v2/client/org1/ping", "/v1/ping/org1", "/v2/client/org1"] {
            let reply = get(addr, path, Some(&token)).await;
            assert_eq!(reply.status, code, "{path}");
            assert_eq!(reply.json()["error"], "forced");
        }
    }
    assert!(sim.clear_faults("org1"));
    assert_eq!(
        get(addr, "/v2/client/org1/ping", Some(&token)).await.status,
        200
    );
}

#[tokio::test]
async fn forced_token_status_applies_before_credentials() {
    let (sim, addr) = start(SimOptions::default()).await;
    sim.update_faults("org1", |f| f.token_status = Some(503));
    let reply = token_basic(addr, "org1", "secret1").await;
    assert_eq!(
        (reply.status, reply.json()["error"].clone()),
        (503, "forced".into())
    );
    sim.update_faults("org1", |f| f.token_status = Some(400));
    let reply = token_basic(addr, "org1", "secret1").await;
    assert_eq!(
        (reply.status, reply.json()["error"].clone()),
        (400, "invalid_client".into())
    );
    // Forced answers issue nothing, so the spacing has not started.
    sim.clear_faults("org1");
    get_token(addr, "org1", "secret1").await;
    assert_eq!(sim.client_stats("org1").map(|s| s.tokens_issued), Some(1));
}

#[tokio::test]
async fn redirect_fault_answers_302_on_pings() {
    let (sim, addr) = start(SimOptions::default()).await;
    let token = get_token(addr, "org1", "secret1").await;
    sim.update_faults("org1", |f| {
        f.redirect_to = Some("https://elsewhere.example/".into())
    });
    for path in ["/v2/client/org1/ping", "/v1/ping/org1"] {
        let reply = get(addr, path, Some(&token)).await;
        assert_eq!(reply.status, 302, "{path}");
        assert_eq!(reply.header("location"), Some("https://elsewhere.example/"));
    }
}

#[tokio::test]
async fn oversized_fault_answers_100_kib() {
    let (sim, addr) = start(SimOptions::default()).await;
    let token = get_token(addr, "org1", "secret1").await;
    sim.update_faults("org1", |f| f.oversized_body = true);
    let reply = get(addr, "/v2/client/org1/ping", Some(&token)).await;
    assert_eq!(reply.status, 200);
    assert!(reply.body.len() >= 100 * 1024, "{}", reply.body.len());
    // Still only for an authorised request.
    assert_eq!(get(addr, "/v2/client/org1/ping", None).await.status, 403);
}

#[tokio::test]
async fn garbled_token_answers_do_not_issue_tokens() {
    let (sim, addr) = start(SimOptions::default()).await;
    sim.update_faults("org1", |f| f.malformed_token = true);
    let reply = token_basic(addr, "org1", "secret1").await;
    assert_eq!(
        (reply.status, reply.body.as_str()),
        (200, "{\"access_token\": ")
    );
    assert!(serde_json::from_str::<serde_json::Value>(&reply.body).is_err());

    sim.set_faults(
        "org1",
        Faults {
            missing_access_token: true,
            ..Faults::default()
        },
    );
    let body = token_basic(addr, "org1", "secret1").await.json();
    assert_eq!(
        body,
        serde_json::json!({"token_type": "bearer", "expires_in": 60})
    );
    assert_eq!(sim.client_stats("org1").map(|s| s.tokens_issued), Some(0));
}

#[tokio::test]
async fn lifetime_faults_shape_expires_in_and_expiry() {
    let (sim, addr) = start(fast()).await;
    sim.update_faults("org1", |f| f.omit_expires_in = true);
    let body = token_basic(addr, "org1", "secret1").await.json();
    assert!(body["access_token"].is_string());
    assert!(body.get("expires_in").is_none(), "{body}");

    tokio::time::sleep(Duration::from_millis(250)).await;
    sim.set_faults(
        "org1",
        Faults {
            token_lifetime_secs: Some(0),
            ..Faults::default()
        },
    );
    let body = token_basic(addr, "org1", "secret1").await.json();
    assert_eq!(body["expires_in"], 0);
    let token = body["access_token"].as_str().expect("token");
    assert_eq!(
        get(addr, "/v2/client/org1/ping", Some(token)).await.status,
        403
    );
}

#[tokio::test]
async fn control_api_manages_clients_faults_and_settings() {
    let (sim, addr) = start(SimOptions::default()).await;
    let json = [("Content-Type", "application/json")];
    let new = br#"{"client_id":"org3","client_secret":"secret3"}"#;
    assert_eq!(
        request(addr, "POST", "/sim/clients", &json, new)
            .await
            .status,
        201
    );
    let token = get_token(addr, "org3", "secret3").await;

    let faults = br#"{"ping_status":503}"#;
    let put = request(addr, "PUT", "/sim/clients/org3/faults", &json, faults).await;
    assert_eq!(put.status, 204);
    assert_eq!(sim.faults("org3").and_then(|f| f.ping_status), Some(503));
    assert_eq!(
        get(addr, "/v2/client/org3/ping", Some(&token)).await.status,
        503
    );
    let cleared = request(addr, "DELETE", "/sim/clients/org3/faults", &[], b"").await;
    assert_eq!(cleared.status, 204);
    assert_eq!(
        get(addr, "/v2/client/org3/ping", Some(&token)).await.status,
        200
    );

    let revoked = request(addr, "POST", "/sim/clients/org3/revoke", &[], b"").await;
    assert_eq!(revoked.status, 204);
    let stats = get(addr, "/sim/clients/org3/stats", None).await.json();
    assert_eq!(
        (stats["revoked"].clone(), stats["pings"].clone()),
        (true.into(), 2.into())
    );
    let restored = request(addr, "POST", "/sim/clients/org3/restore", &[], b"").await;
    assert_eq!(restored.status, 204);
    assert_eq!(sim.client_stats("org3").map(|s| s.revoked), Some(false));

    let settings = br#"{"rfc_mode":true,"token_min_interval_ms":500,"token_lifetime_secs":60}"#;
    let put = request(addr, "PUT", "/sim/settings", &json, settings).await;
    assert_eq!(put.status, 204);
    let options = sim.options();
    assert!(options.rfc_mode && options.retry_after_header);
    assert_eq!(options.token_min_interval, Duration::from_millis(500));
    assert_eq!(options.token_lifetime, Duration::from_secs(60));
    let typo = request(addr, "PUT", "/sim/settings", &json, br#"{"rfc":true}"#).await;
    assert!(typo.status >= 400);

    let totals = get(addr, "/sim/stats", None).await.json();
    assert_eq!(totals["tokens_issued"], 1);
}

#[tokio::test]
async fn control_api_answers_404_for_unknown_clients() {
    let (_sim, addr) = start(SimOptions::default()).await;
    let json = [("Content-Type", "application/json")];
    for (method, path) in [
        ("GET", "/sim/clients/nobody/stats"),
        ("POST", "/sim/clients/nobody/revoke"),
        ("POST", "/sim/clients/nobody/restore"),
        ("DELETE", "/sim/clients/nobody/faults"),
        ("PUT", "/sim/clients/nobody/faults"),
    ] {
        let reply = request(addr, method, path, &json, b"{}").await;
        assert_eq!(reply.status, 404, "{method} {path}");
        assert_eq!(reply.body, "unknown client\n");
    }
}
