//! Basic auth end to end: a protected router served on 127.0.0.1:0, requested with reqwest.

use std::collections::BTreeMap;
use std::net::SocketAddr;

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
async fn set_users_applies_at_once_and_forgets_cached_successes() {
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
