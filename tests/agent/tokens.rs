//! Token reuse, spacing and sharing, seen from the simulator's counters.

use std::time::Duration;

use obf_sim::Faults;

use crate::support::{metric_value, orgs, App, TestSim};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_second_interval_for_thirty_seconds_uses_one_token() {
    let sim = TestSim::with_spacing(Duration::from_secs(10)).await;
    let config = sim.org("onesec", "ONESEC", "interval = \"1s\"");
    let app = App::spawn(&config).await;
    tokio::time::sleep(Duration::from_secs(30)).await;
    let stats = sim.sim.client_stats("ONESEC").unwrap();
    let metrics = app.metrics().await;
    app.stop().await;
    assert_eq!(stats.tokens_issued, 1, "{stats:?}");
    assert_eq!(stats.token_requests, 1, "{stats:?}");
    assert_eq!(stats.rate_limited, 0);
    assert!(stats.pings >= 28, "only {} pings", stats.pings);
    let reuses = metric_value(&metrics, "obf_token_reuses_total{org=\"onesec\"}").unwrap();
    assert!(reuses >= 27.0, "reuses {reuses}");
    assert_eq!(
        metric_value(
            &metrics,
            "obf_token_refreshes_total{org=\"onesec\",result=\"success\"}"
        ),
        Some(1.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_lived_tokens_are_never_requested_closer_than_the_spacing() {
    // Scaled: 2 s spacing (instead of 10 s), 1 s tokens, 200 ms interval, for 9 s.
    let sim = TestSim::with_spacing(Duration::from_secs(2)).await;
    let config = sim.org(
        "tiny",
        "TINY",
        "interval = \"1s\"\ntoken_min_interval = \"2s\"\ntimeout = \"3s\"",
    );
    sim.sim.set_faults(
        "TINY",
        Faults {
            token_lifetime_secs: Some(1),
            ..Faults::default()
        },
    );
    let app = App::spawn(&config).await;
    tokio::time::sleep(Duration::from_secs(9)).await;
    app.stop().await;
    let stats = sim.sim.client_stats("TINY").unwrap();
    assert_eq!(stats.rate_limited, 0, "{stats:?}");
    assert!(stats.tokens_issued >= 4, "{stats:?}");
    for pair in stats.token_issue_times_ms.windows(2) {
        assert!(
            pair[1] - pair[0] >= 2000,
            "tokens {} ms apart",
            pair[1] - pair[0]
        );
    }
}

#[tokio::test]
async fn orgs_sharing_a_client_share_one_token_and_one_request() {
    let sim = TestSim::with_spacing(Duration::from_secs(10)).await;
    let mut config = sim.org("first", "SHARED", "");
    config.push_str(&format!(
        "[[org]]\nname = \"second\"\nclient_id = \"SHARED\"\nclient_secret = \"SHARED-secret-value\"\nhost = \"{}\"\n",
        sim.url()
    ));
    // Slow token answers make sure both probes wait on the same request.
    sim.sim.set_faults(
        "SHARED",
        Faults {
            token_latency_ms: Some(300),
            ..Faults::default()
        },
    );
    let (_metrics, orgs) = orgs(&config).await;
    let (a, b) = tokio::join!(orgs[0].probe(), orgs[1].probe());
    assert!(a.success && b.success, "{a:?} {b:?}");
    let stats = sim.sim.client_stats("SHARED").unwrap();
    assert_eq!(stats.token_requests, 1, "{stats:?}");
    assert_eq!(stats.tokens_issued, 1);
    assert_eq!(stats.pings, 2);
    // Later probes of either org reuse it.
    orgs[0].probe().await;
    orgs[1].probe().await;
    assert_eq!(sim.sim.client_stats("SHARED").unwrap().token_requests, 1);
}

#[tokio::test]
async fn a_refused_cached_token_is_replaced_once_and_the_ping_retried() {
    let sim = TestSim::with_spacing(Duration::from_secs(1)).await;
    let config = sim.org("stale", "STALE", "token_min_interval = \"1s\"");
    let (_metrics, orgs) = orgs(&config).await;
    assert!(orgs[0].probe().await.success);
    // Revoke and restore at once: the credentials stay good, the issued token does not.
    sim.sim.revoke("STALE");
    sim.sim.restore("STALE");
    let report = orgs[0].probe().await;
    assert!(report.success, "{report:?}");
    let stats = sim.sim.client_stats("STALE").unwrap();
    assert_eq!(stats.tokens_issued, 2, "one fresh token: {stats:?}");
    assert_eq!(stats.pings, 3, "one retry: {stats:?}");
    assert_eq!(stats.rate_limited, 0);
}

#[tokio::test]
async fn a_ping_refused_even_with_a_fresh_token_is_forbidden_after_one_retry() {
    let sim = TestSim::with_spacing(Duration::from_secs(1)).await;
    let config = sim.org("noaccess", "NOACCESS", "token_min_interval = \"1s\"");
    let (metrics, orgs) = orgs(&config).await;
    assert!(orgs[0].probe().await.success);
    sim.sim.set_faults(
        "NOACCESS",
        Faults {
            ping_status: Some(403),
            ..Faults::default()
        },
    );
    let report = orgs[0].probe().await;
    assert!(!report.success);
    assert_eq!(report.reason.map(|r| r.as_str()), Some("forbidden"));
    let stats = sim.sim.client_stats("NOACCESS").unwrap();
    assert_eq!(stats.tokens_issued, 2, "{stats:?}");
    assert_eq!(stats.pings, 3, "{stats:?}");
    let text = metrics.render();
    assert_eq!(
        metric_value(
            &text,
            "obf_ping_failures_total{org=\"noaccess\",reason=\"forbidden\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        metric_value(&text, "obf_credentials_valid{org=\"noaccess\"}"),
        Some(1.0)
    );
}

#[tokio::test]
async fn retry_after_holds_back_token_requests() {
    // Scaled: the simulator's spacing is 6 s, so its 429 says `Retry-After: 6`.
    let sim = TestSim::with_spacing(Duration::from_secs(6)).await;
    let config = sim.org(
        "limited",
        "LIMITED",
        "token_min_interval = \"1s\"\ninterval = \"1s\"\ntimeout = \"1s\"",
    );
    // Someone else takes the client's token first.
    let (status, _) = take_token(&sim, "LIMITED").await;
    assert_eq!(status, 200);
    let (_metrics, orgs) = orgs(&config).await;
    let start = tokio::time::Instant::now();
    let first = orgs[0].probe().await;
    assert_eq!(
        first.token_failure.map(|r| r.as_str()),
        Some("rate_limited")
    );
    while start.elapsed() < Duration::from_millis(5500) {
        let report = orgs[0].probe().await;
        assert!(!report.success);
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let stats = sim.sim.client_stats("LIMITED").unwrap();
    assert_eq!(
        stats.token_requests, 2,
        "only the stolen and the refused one: {stats:?}"
    );
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert!(orgs[0].probe().await.success);
    assert_eq!(sim.sim.client_stats("LIMITED").unwrap().rate_limited, 1);
}

async fn take_token(sim: &TestSim, client_id: &str) -> (u16, String) {
    let response = reqwest::Client::new()
        .post(format!("{}/v2/client/oauth2/token", sim.url()))
        .basic_auth(client_id, Some(format!("{client_id}-secret-value")))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}
