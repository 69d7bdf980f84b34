//! End-to-end tests of the simulator over real sockets: the OBF endpoints' normal behaviour,
//! credentials, spacing, revocation and counters. Faults and the control API are in `tests_faults.rs`.

use std::net::SocketAddr;
use std::time::Duration;

use super::test_http::{request, Reply};
use super::{SimOptions, Simulator};

pub(super) const FORM: (&str, &str) = ("Content-Type", "application/x-www-form-urlencoded");
pub(super) const GRANT: &[u8] = b"grant_type=client_credentials";

/// Short spacing so tests that need a second token only wait a moment.
pub(super) fn fast() -> SimOptions {
    SimOptions {
        token_min_interval: Duration::from_millis(200),
        ..SimOptions::default()
    }
}

/// A simulator with clients `org1`/`secret1` and `org2`/`secret2`, served on a free port.
pub(super) async fn start(options: SimOptions) -> (Simulator, SocketAddr) {
    let sim = Simulator::new(options);
    sim.add_client("org1", "secret1");
    sim.add_client("org2", "secret2");
    let (addr, _handle) = sim
        .clone()
        .spawn(([127, 0, 0, 1], 0).into())
        .await
        .expect("spawn");
    (sim, addr)
}

/// Standard base64, written here independently of the simulator's decoder.
fn base64(input: &str) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in input.as_bytes().chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

pub(super) async fn token_basic(addr: SocketAddr, id: &str, secret: &str) -> Reply {
    let auth = format!("Basic {}", base64(&format!("{id}:{secret}")));
    let headers = [FORM, ("Authorization", auth.as_str())];
    request(addr, "POST", "/v2/client/oauth2/token", &headers, GRANT).await
}

pub(super) async fn token_form(addr: SocketAddr, id: &str, secret: &str) -> Reply {
    let body = format!("grant_type=client_credentials&client_id={id}&client_secret={secret}");
    request(
        addr,
        "POST",
        "/v2/client/oauth2/token",
        &[FORM],
        body.as_bytes(),
    )
    .await
}

pub(super) async fn get_token(addr: SocketAddr, id: &str, secret: &str) -> String {
    let reply = token_basic(addr, id, secret).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.json()["access_token"]
        .as_str()
        .expect("access_token")
        .to_owned()
}

/// GET `path` with an optional Bearer token.
pub(super) async fn get(addr: SocketAddr, path: &str, token: Option<&str>) -> Reply {
    let auth = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("Authorization", a.as_str())).collect();
    request(addr, "GET", path, &headers, b"").await
}

fn assert_spring_403(reply: &Reply) {
    assert_eq!(reply.status, 403);
    assert_eq!(reply.header("content-type"), Some("application/json"));
    let body = reply.json();
    assert_eq!(body["status"], 403);
    assert_eq!(body["error"], "Forbidden");
    assert_eq!(body["path"], "/v2/client/oauth2/token");
    assert!(body["timestamp"].as_str().is_some_and(|t| t.contains('T')));
}

#[test]
fn test_base64_matches_known_values() {
    assert_eq!(base64("abc:def"), "YWJjOmRlZg==");
    assert_eq!(base64("ab:c"), "YWI6Yw==");
    assert_eq!(base64("a:bc"), "YTpiYw==");
}

#[tokio::test]
async fn token_is_issued_with_basic_credentials() {
    let (_sim, addr) = start(SimOptions::default()).await;
    let reply = token_basic(addr, "org1", "secret1").await;
    assert_eq!(reply.status, 200);
    let body = reply.json();
    let token = body["access_token"].as_str().expect("token");
    assert_eq!(token.len(), 40);
    assert!(token.bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(body["token_type"], "bearer");
    assert_eq!(body["expires_in"], 18_000);
}

#[tokio::test]
async fn token_is_issued_with_form_credentials() {
    let (_sim, addr) = start(SimOptions::default()).await;
    let reply = token_form(addr, "org1", "secret1").await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert!(reply.json()["access_token"].is_string());
}

#[tokio::test]
async fn bad_credentials_get_observed_spring_403() {
    let (sim, addr) = start(SimOptions::default()).await;
    assert_spring_403(&token_basic(addr, "org1", "wrong").await);
    assert_spring_403(&token_form(addr, "nobody", "secret1").await);
    let no_creds = request(addr, "POST", "/v2/client/oauth2/token", &[FORM], GRANT).await;
    assert_spring_403(&no_creds);
    assert_eq!(sim.stats().rejected, 3);
    assert_eq!(sim.client_stats("org1").map(|s| s.rejected), Some(1));
}

#[tokio::test]
async fn rfc_mode_rejects_credentials_with_401_invalid_client() {
    let (sim, addr) = start(SimOptions::default()).await;
    sim.set_rfc_mode(true);
    let reply = token_basic(addr, "org1", "wrong").await;
    assert_eq!(reply.status, 401);
    assert_eq!(
        reply.header("www-authenticate"),
        Some("Basic realm=\"obf\"")
    );
    assert_eq!(reply.json()["error"], "invalid_client");
}

#[tokio::test]
async fn grant_type_must_be_client_credentials() {
    let (_sim, addr) = start(SimOptions::default()).await;
    let path = "/v2/client/oauth2/token";
    let body = b"client_id=org1&client_secret=secret1";
    let missing = request(addr, "POST", path, &[FORM], body).await;
    assert_eq!(missing.status, 400);
    assert_eq!(missing.json()["error"], "invalid_request");
    let wrong = b"grant_type=password&client_id=org1&client_secret=secret1";
    let wrong = request(addr, "POST", path, &[FORM], wrong).await;
    assert_eq!(wrong.json()["error"], "unsupported_grant_type");
    // A JSON body is not a form: the grant type is simply not there.
    let json_body = br#"{"grant_type":"client_credentials"}"#;
    let json = request(
        addr,
        "POST",
        path,
        &[("Content-Type", "application/json")],
        json_body,
    )
    .await;
    assert_eq!(
        (json.status, json.json()["error"].clone()),
        (400, "invalid_request".into())
    );
}

#[tokio::test]
async fn second_token_within_spacing_gets_429_with_retry_after() {
    let (sim, addr) = start(SimOptions::default()).await;
    get_token(addr, "org1", "secret1").await;
    let limited = token_basic(addr, "org1", "secret1").await;
    assert_eq!(limited.status, 429);
    assert_eq!(limited.header("retry-after"), Some("10"));
    // Spacing is per client.
    get_token(addr, "org2", "secret2").await;

    sim.update_options(|o| o.retry_after_header = false);
    let bare = token_basic(addr, "org1", "secret1").await;
    assert_eq!(bare.status, 429);
    assert_eq!(bare.header("retry-after"), None);
    assert_eq!(sim.client_stats("org1").map(|s| s.rate_limited), Some(2));
}

#[tokio::test]
async fn refused_requests_do_not_start_the_spacing() {
    let (_sim, addr) = start(SimOptions::default()).await;
    assert_eq!(token_basic(addr, "org1", "wrong").await.status, 403);
    get_token(addr, "org1", "secret1").await;
}

#[tokio::test]
async fn token_is_issued_again_once_spacing_has_passed() {
    let (sim, addr) = start(fast()).await;
    get_token(addr, "org1", "secret1").await;
    assert_eq!(token_basic(addr, "org1", "secret1").await.status, 429);
    tokio::time::sleep(Duration::from_millis(250)).await;
    get_token(addr, "org1", "secret1").await;
    let times = sim.client_stats("org1").expect("org1").token_issue_times_ms;
    assert_eq!(times.len(), 2);
    assert!(times[1] - times[0] >= 200, "{times:?}");
}

#[tokio::test]
async fn ping_accepts_only_a_live_token_of_that_client() {
    let (_sim, addr) = start(SimOptions::default()).await;
    let token = get_token(addr, "org1", "secret1").await;
    let ok = get(addr, "/v2/client/org1/ping", Some(&token)).await;
    assert_eq!(ok.status, 200);
    assert_eq!(ok.header("content-type"), Some("application/json"));
    assert_eq!(ok.json()["success"], true);

    for (path, token) in [
        (
            "/v2/client/org1/ping",
            Some("0123456789abcdef0123456789abcdef01234567"),
        ),
        ("/v2/client/org2/ping", Some(token.as_str())),
        ("/v2/client/nobody/ping", Some(token.as_str())),
        ("/v2/client/org1/ping", None),
    ] {
        let refused = get(addr, path, token).await;
        assert_eq!(refused.status, 403, "{path}");
        assert_eq!(refused.header("content-type"), Some("text/plain"));
        assert_eq!(refused.body, "403 Forbidden");
    }
}

#[tokio::test]
async fn rfc_mode_refuses_pings_with_401_invalid_token() {
    let (sim, addr) = start(SimOptions::default()).await;
    sim.set_rfc_mode(true);
    let reply = get(addr, "/v2/client/org1/ping", Some("nope")).await;
    assert_eq!(reply.status, 401);
    assert_eq!(
        reply.header("www-authenticate"),
        Some("Bearer error=\"invalid_token\"")
    );
}

#[tokio::test]
async fn revoke_invalidates_tokens_and_restore_allows_new_ones() {
    let (sim, addr) = start(fast()).await;
    let old = get_token(addr, "org1", "secret1").await;
    assert!(sim.revoke("org1"));
    assert!(!sim.revoke("nobody"));
    assert_eq!(
        get(addr, "/v2/client/org1/ping", Some(&old)).await.status,
        403
    );
    assert_eq!(get(addr, "/v2/client/org1", Some(&old)).await.status, 403);
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_spring_403(&token_basic(addr, "org1", "secret1").await);
    assert_eq!(sim.client_stats("org1").map(|s| s.revoked), Some(true));

    assert!(sim.restore("org1"));
    // The old token stays dead; new credentials work.
    assert_eq!(
        get(addr, "/v2/client/org1/ping", Some(&old)).await.status,
        403
    );
    let new = get_token(addr, "org1", "secret1").await;
    assert_eq!(
        get(addr, "/v2/client/org1/ping", Some(&new)).await.status,
        200
    );
}

#[tokio::test]
async fn v1_ping_answers_the_client_id_as_text() {
    let (_sim, addr) = start(SimOptions::default()).await;
    let token = get_token(addr, "org1", "secret1").await;
    let ok = get(addr, "/v1/ping/org1", Some(&token)).await;
    assert_eq!((ok.status, ok.body.as_str()), (200, "org1"));
    assert_eq!(ok.header("content-type"), Some("text/plain"));
    assert_eq!(get(addr, "/v1/ping/org2", Some(&token)).await.status, 403);
}

#[tokio::test]
async fn client_info_reports_paid_until() {
    let (sim, addr) = start(SimOptions::default()).await;
    let token = get_token(addr, "org1", "secret1").await;
    let info = get(addr, "/v2/client/org1", Some(&token)).await.json();
    assert_eq!(info["id"], "org1");
    assert_eq!(info["name"], "Simulated org org1");
    assert_eq!(info["tier"], "pro");
    assert_eq!(info["verified"], true);
    let year_ahead = super::wire::unix_now() + 365 * 24 * 3600;
    let paid_until = info["paid_until"].as_i64().expect("paid_until");
    assert!((year_ahead - paid_until).abs() < 60, "{paid_until}");

    sim.update_faults("org1", |f| f.paid_until = Some(1_800_000_000));
    let info = get(addr, "/v2/client/org1", Some(&token)).await.json();
    assert_eq!(info["paid_until"], 1_800_000_000);
    assert_eq!(get(addr, "/v2/client/org2", Some(&token)).await.status, 403);
}

#[tokio::test]
async fn counters_follow_every_request() {
    let (sim, addr) = start(SimOptions::default()).await;
    let token = get_token(addr, "org1", "secret1").await;
    token_basic(addr, "org1", "secret1").await; // 429
    token_basic(addr, "org1", "wrong").await; // 403
    token_basic(addr, "nobody", "x").await; // 403, unknown client
    get(addr, "/v2/client/org1/ping", Some(&token)).await;
    get(addr, "/v1/ping/org1", Some(&token)).await;
    get(addr, "/v2/client/org1", Some(&token)).await;
    get(addr, "/v2/client/nobody/ping", None).await;

    let totals = sim.stats();
    assert_eq!(
        (
            totals.token_requests,
            totals.tokens_issued,
            totals.rate_limited,
            totals.rejected
        ),
        (4, 1, 1, 2)
    );
    assert_eq!((totals.pings, totals.client_info_requests), (3, 1));
    let org1 = sim.client_stats("org1").expect("org1");
    assert_eq!(
        (
            org1.token_requests,
            org1.tokens_issued,
            org1.rate_limited,
            org1.rejected
        ),
        (3, 1, 1, 1)
    );
    assert_eq!((org1.pings, org1.client_info_requests), (2, 1));
    assert_eq!(org1.token_issue_times_ms.len(), 1);
    assert!(sim.client_stats("nobody").is_none());
}

#[tokio::test]
async fn generated_clients_follow_the_naming_scheme() {
    let sim = Simulator::with_generated_clients(SimOptions::default(), 3);
    let (addr, _handle) = sim
        .clone()
        .spawn(([127, 0, 0, 1], 0).into())
        .await
        .expect("spawn");
    get_token(addr, "sim00002", "secret00002").await;
    assert!(sim.client_stats("sim00000").is_some());
    assert!(sim.client_stats("sim00003").is_none());
}
