//! Revoked credentials versus outages, as the gauges and counters show them.

use std::time::{Duration, Instant};

use obf_sim::Faults;

use crate::support::{App, TestSim};

const VALID: &str = "obf_credentials_valid{org=\"acme\"}";
const SUCCESS: &str = "obf_ping_success{org=\"acme\"}";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocation_is_reported_and_recovery_follows_a_restore() {
    // Scaled: 1 s spacing instead of 10 s.
    let sim = TestSim::with_spacing(Duration::from_secs(1)).await;
    let config = sim.org(
        "acme",
        "ACME",
        "interval = \"1s\"\ntoken_min_interval = \"1s\"\ntimeout = \"2s\"",
    );
    let app = App::spawn(&config).await;
    app.wait_for(SUCCESS, Duration::from_secs(5), |v| v == 1.0)
        .await;
    assert_eq!(app.value(VALID).await, Some(1.0));

    sim.sim.revoke("ACME");
    app.wait_for(VALID, Duration::from_secs(10), |v| v == 0.0)
        .await;
    app.wait_for(
        "obf_ping_failures_total{org=\"acme\",reason=\"no_token\"}",
        Duration::from_secs(5),
        |v| v >= 1.0,
    )
    .await;
    assert!(
        app.value("obf_token_refresh_failures_total{org=\"acme\",reason=\"rejected\"}")
            .await
            .unwrap()
            >= 1.0
    );
    assert_eq!(app.value(SUCCESS).await, Some(0.0));

    sim.sim.restore("ACME");
    let restored = Instant::now();
    // Within one interval plus the token spacing (plus scheduling slack).
    app.wait_for(VALID, Duration::from_secs(4), |v| v == 1.0)
        .await;
    app.wait_for(SUCCESS, Duration::from_secs(4), |v| v == 1.0)
        .await;
    assert!(restored.elapsed() < Duration::from_secs(4));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_leaves_credentials_valid() {
    let sim = TestSim::with_spacing(Duration::from_secs(1)).await;
    let config = sim.org(
        "acme",
        "OUTAGE",
        "interval = \"1s\"\ntoken_min_interval = \"1s\"\ntimeout = \"2s\"\ntoken_refresh_margin = \"1s\"",
    );
    // Short tokens so that the outage hits the token endpoint too.
    sim.sim.set_faults(
        "OUTAGE",
        Faults {
            token_lifetime_secs: Some(2),
            ..Faults::default()
        },
    );
    let app = App::spawn(&config).await;
    app.wait_for(SUCCESS, Duration::from_secs(5), |v| v == 1.0)
        .await;
    sim.sim.update_faults("OUTAGE", |f| {
        f.ping_status = Some(503);
        f.token_status = Some(503);
    });
    let outage = Instant::now();
    while outage.elapsed() < Duration::from_secs(5) {
        assert_eq!(
            app.value(VALID).await,
            Some(1.0),
            "an outage is not a revocation"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(app.value(SUCCESS).await, Some(0.0));
    assert!(
        app.value("obf_ping_failures_total{org=\"acme\",reason=\"server_error\"}")
            .await
            .unwrap()
            >= 1.0
    );
    assert!(
        app.value("obf_token_refresh_failures_total{org=\"acme\",reason=\"server_error\"}")
            .await
            .unwrap()
            >= 1.0
    );
    sim.sim.clear_faults("OUTAGE");
    app.wait_for(SUCCESS, Duration::from_secs(15), |v| v == 1.0)
        .await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_port_leaves_credentials_valid() {
    let sim = TestSim::with_spacing(Duration::from_secs(1)).await;
    // Accepted once against the simulator, then pointed at a closed port by a second org sharing
    // nothing: the gauge of the first stays 1 while the second never says anything.
    let mut config = sim.org(
        "acme",
        "CLOSED",
        "interval = \"1s\"\ntoken_min_interval = \"1s\"",
    );
    config.push_str(&format!(
        "[[org]]\nname = \"down\"\nclient_id = \"CLOSED\"\nclient_secret = \"x\"\nhost = \"http://127.0.0.1:{}\"\ninterval = \"1s\"\n",
        crate::support::closed_port()
    ));
    let app = App::spawn(&config).await;
    app.wait_for(SUCCESS, Duration::from_secs(5), |v| v == 1.0)
        .await;
    app.wait_for(
        "obf_token_refresh_failures_total{org=\"down\",reason=\"connect\"}",
        Duration::from_secs(5),
        |v| v >= 1.0,
    )
    .await;
    let metrics = app.metrics().await;
    assert!(
        !metrics.contains("obf_credentials_valid{org=\"down\"}"),
        "nothing to say about credentials never answered"
    );
    app.stop().await;
}
