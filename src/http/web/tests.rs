//! Basic auth end to end: a protected router served on 127.0.0.1:0, requested with reqwest.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use axum::http::{header, HeaderMap, StatusCode};
use axum::routing::get;
use axum::Router;
use reqwest::RequestBuilder;
use secrecy::SecretString;
use tokio::net::TcpListener;

use super::*;

const USER: &str = "prometheus";
const PASSWORD: &str = "s3cret:with-colon";

/// A `$2y$` hash at cost 4 (fast): `$2y$` is what `htpasswd -B` and Prometheus' docs produce.
fn hash(password: &str) -> SecretString {
    let hash = bcrypt::hash(password, 4).expect("hash");
    assert!(hash.starts_with("$2b$04$"));
    SecretString::from(hash.replacen("$2b$", "$2y$", 1))
}

fn users() -> BTreeMap<String, SecretString> {
    BTreeMap::from([
        (USER.to_owned(), hash(PASSWORD)),
        ("grafana".to_owned(), hash("other")),
    ])
}

pub(super) fn test_router() -> Router {
    Router::new()
        .route("/metrics", get(|| async { "metrics\n" }))
        .route("/-/healthy", get(|| async { "OK\n" }))
        .route(
            "/echo-auth",
            get(|headers: HeaderMap| async move {
                format!("{}", headers.contains_key(header::AUTHORIZATION))
            }),
        )
}

async fn serve(router: Router) -> SocketAddr {
    let tcp = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = tcp.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(tcp, router).await });
    addr
}

async fn protected(auth: &BasicAuth) -> SocketAddr {
    serve(protect(test_router(), Some(auth.clone()))).await
}

/// Served as the agent's accept loop does: every request carries the peer address.
async fn protected_with_peers(auth: &BasicAuth) -> SocketAddr {
    let tcp = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = tcp.local_addr().expect("addr");
    let service = protect(test_router(), Some(auth.clone()))
        .into_make_service_with_connect_info::<SocketAddr>();
    tokio::spawn(async move { axum::serve(tcp, service).await });
    addr
}

/// A client connecting from 127.0.0.`last`.
fn client_from(last: u8) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(IpAddr::V4(Ipv4Addr::new(127, 0, 0, last)))
        .build()
        .expect("client")
}

fn get_path(addr: SocketAddr, path: &str) -> RequestBuilder {
    reqwest::Client::new().get(format!("http://{addr}{path}"))
}

async fn assert_unauthorized(request: RequestBuilder) {
    let response = request.send().await.expect("response");
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        response.headers()[header::WWW_AUTHENTICATE],
        "Basic realm=\"obf-exporter\""
    );
    assert_eq!(response.text().await.expect("body"), "Unauthorized\n");
}

#[tokio::test]
async fn right_credentials_pass_and_are_cached() {
    let auth = BasicAuth::new(&users());
    let addr = protected(&auth).await;
    for _ in 0..3 {
        let response = get_path(addr, "/metrics")
            .basic_auth(USER, Some(PASSWORD))
            .send()
            .await
            .expect("response");
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.text().await.expect("body"), "metrics\n");
    }
    assert_eq!(auth.verifications(), 1, "later scrapes hit the cache");

    // Another user has their own password and cache entry.
    let response = get_path(addr, "/metrics")
        .basic_auth("grafana", Some("other"))
        .send()
        .await
        .expect("response");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(auth.verifications(), 2);
}

#[tokio::test]
async fn wrong_password_and_unknown_user_cost_one_verify_each() {
    let auth = BasicAuth::new(&users());
    let addr = protected(&auth).await;

    assert_unauthorized(get_path(addr, "/metrics").basic_auth(USER, Some("wrong"))).await;
    assert_eq!(auth.verifications(), 1);
    assert_unauthorized(get_path(addr, "/metrics").basic_auth("nobody", Some(PASSWORD))).await;
    assert_eq!(
        auth.verifications(),
        2,
        "unknown user: one verify, like a known one"
    );
    assert_unauthorized(get_path(addr, "/metrics").basic_auth(USER, Some("other"))).await;
    assert_eq!(
        auth.verifications(),
        3,
        "another user's password does not work"
    );
    assert_unauthorized(get_path(addr, "/metrics").basic_auth(USER, None::<&str>)).await;
    assert_eq!(auth.verifications(), 4);

    // Failures are never cached: each retry verifies again.
    assert_unauthorized(get_path(addr, "/metrics").basic_auth(USER, Some("wrong"))).await;
    assert_eq!(auth.verifications(), 5);
}

#[test]
fn the_dummy_hash_is_valid_and_as_costly_as_the_users() {
    let auth = BasicAuth::new(&users());
    assert!(auth.dummy_hash().starts_with("$2y$04$"));
    assert_eq!(
        bcrypt::verify(PASSWORD, &auth.dummy_hash()).ok(),
        Some(false)
    );

    let mixed = BTreeMap::from([
        ("a".to_owned(), hash("x")),
        (
            "b".to_owned(),
            SecretString::from("$2y$10$N9qo8uLOickgx2ZMRZoMyeIjZAgcfl7p92ldGxad68LJZdL17lhWy"),
        ),
    ]);
    assert!(BasicAuth::new(&mixed).dummy_hash().starts_with("$2y$10$"));
    let empty = BasicAuth::new(&BTreeMap::new());
    assert!(empty.dummy_hash().starts_with("$2y$10$"));
}

#[tokio::test]
async fn missing_or_malformed_credentials_are_rejected_without_bcrypt() {
    let auth = BasicAuth::new(&users());
    let addr = protected(&auth).await;

    assert_unauthorized(get_path(addr, "/metrics")).await;
    for value in [
        "Bearer abc",
        "Basic",
        "Basic !!!not-base64!!!",
        "Basic cHJvbWV0aGV1cw==", // "prometheus": no colon
        "prometheus:s3cret",
    ] {
        assert_unauthorized(get_path(addr, "/metrics").header(header::AUTHORIZATION, value)).await;
    }
    assert_unauthorized(get_path(addr, "/-/ready")).await; // unknown paths too
    assert_eq!(auth.verifications(), 0);
}

#[tokio::test]
async fn healthy_stays_open_while_metrics_is_protected() {
    let auth = BasicAuth::new(&users());
    let addr = protected(&auth).await;

    let response = get_path(addr, "/-/healthy").send().await.expect("response");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.text().await.expect("body"), "OK\n");
    let response = get_path(addr, "/-/healthy")
        .basic_auth("nobody", Some("wrong"))
        .send()
        .await
        .expect("response");
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "credentials are ignored there"
    );
    assert_unauthorized(get_path(addr, "/metrics")).await;
    assert_eq!(auth.verifications(), 0);
}

#[tokio::test]
async fn handlers_do_not_see_the_authorization_header() {
    let auth = BasicAuth::new(&users());
    let addr = protected(&auth).await;
    let response = get_path(addr, "/echo-auth")
        .basic_auth(USER, Some(PASSWORD))
        .send()
        .await
        .expect("response");
    assert_eq!(response.text().await.expect("body"), "false");
}

#[tokio::test]
async fn without_auth_or_without_users_everything_is_open() {
    let open = serve(protect(test_router(), None)).await;
    let response = get_path(open, "/metrics").send().await.expect("response");
    assert_eq!(response.status(), StatusCode::OK);

    // `basic_auth_users` empty means no authentication, as in `[exporter.web]`.
    let no_users = BasicAuth::new(&BTreeMap::new());
    let addr = protected(&no_users).await;
    let response = get_path(addr, "/metrics").send().await.expect("response");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(no_users.verifications(), 0);
}

#[tokio::test]
async fn set_users_applies_at_once_and_forgets_removed_users_and_changed_hashes() {
    let auth = BasicAuth::new(&users());
    let addr = protected(&auth).await;
    let scrape = |user: &'static str, password: &'static str| {
        get_path(addr, "/metrics").basic_auth(user, Some(password))
    };
    let status =
        |request: RequestBuilder| async move { request.send().await.expect("response").status() };
    assert_eq!(status(scrape(USER, PASSWORD)).await, StatusCode::OK);
    assert_eq!(auth.verifications(), 1);

    auth.set_users(&BTreeMap::from([("grafana".to_owned(), hash("new"))]));
    assert_unauthorized(scrape(USER, PASSWORD)).await;
    assert_unauthorized(scrape("grafana", "other")).await;
    assert_eq!(status(scrape("grafana", "new")).await, StatusCode::OK);
    assert_eq!(status(scrape("grafana", "new")).await, StatusCode::OK);
    assert_eq!(
        auth.verifications(),
        4,
        "removed user rejected by bcrypt, not the cache"
    );

    auth.set_users(&BTreeMap::new());
    assert_eq!(status(get_path(addr, "/metrics")).await, StatusCode::OK);
}

#[tokio::test]
async fn the_middleware_can_be_layered_directly() {
    let auth = BasicAuth::new(&users());
    let router = test_router().layer(axum::middleware::from_fn_with_state(
        auth.clone(),
        require_basic_auth,
    ));
    let addr = serve(router).await;
    assert_unauthorized(get_path(addr, "/metrics")).await;
    let response = get_path(addr, "/metrics")
        .basic_auth(USER, Some(PASSWORD))
        .send()
        .await
        .expect("response");
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn set_users_keeps_cached_successes_whose_hash_is_unchanged() {
    let users = users();
    let auth = BasicAuth::new(&users);
    let addr = protected(&auth).await;
    let status = |user: &'static str, password: &'static str| async move {
        get_path(addr, "/metrics")
            .basic_auth(user, Some(password))
            .send()
            .await
            .expect("response")
            .status()
    };
    assert_eq!(status(USER, PASSWORD).await, StatusCode::OK);
    assert_eq!(status("grafana", "other").await, StatusCode::OK);
    assert_eq!(auth.verifications(), 2);

    // A reload with the same file: nothing to verify again.
    auth.set_users(&users);
    assert_eq!(status(USER, PASSWORD).await, StatusCode::OK);
    assert_eq!(status("grafana", "other").await, StatusCode::OK);
    assert_eq!(auth.verifications(), 2, "both still cached");

    // grafana's hash changes (even to the same password: a new salt), prometheus' does not.
    let mut changed = users.clone();
    changed.insert("grafana".to_owned(), hash("other"));
    auth.set_users(&changed);
    assert_eq!(status(USER, PASSWORD).await, StatusCode::OK);
    assert_eq!(auth.verifications(), 2, "prometheus still cached");
    assert_eq!(status("grafana", "other").await, StatusCode::OK);
    assert_eq!(
        auth.verifications(),
        3,
        "grafana verified against the new hash"
    );
}

#[tokio::test]
async fn an_address_that_keeps_failing_gets_429_without_bcrypt_and_others_still_pass() {
    let auth = BasicAuth::new(&users());
    let addr = protected_with_peers(&auth).await;
    let (attacker, user) = (client_from(2), client_from(1));
    let url = format!("http://{addr}/metrics");

    for _ in 0..5 {
        assert_unauthorized(attacker.get(&url).basic_auth(USER, Some("guess"))).await;
    }
    assert_eq!(auth.verifications(), 5);
    let refused = attacker
        .get(&url)
        .basic_auth(USER, Some("guess"))
        .send()
        .await
        .expect("response");
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(refused.headers()[header::RETRY_AFTER], "1");
    assert_eq!(
        auth.verifications(),
        5,
        "no bcrypt for a locked-out address"
    );

    let ok = user.get(&url).basic_auth(USER, Some(PASSWORD)).send();
    assert_eq!(ok.await.expect("response").status(), StatusCode::OK);
    assert_eq!(auth.verifications(), 6);

    // Even the right (now cached) password gets 429 from the locked-out address: the cache
    // must not answer a locked-out address's guesses.
    let right = attacker.get(&url).basic_auth(USER, Some(PASSWORD)).send();
    assert_eq!(
        right.await.expect("response").status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    let healthy = attacker.get(format!("http://{addr}/-/healthy")).send();
    assert_eq!(healthy.await.expect("response").status(), StatusCode::OK);
}
