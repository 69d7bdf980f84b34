//! Every failure reason of the closed set, produced for real.

use std::time::Duration;

use axum::routing::any;
use obf_sim::{Faults, SimOptions};

use crate::support::{closed_port, metric_value, orgs, TestSim};

/// Probes one org configured with `extra` (after `faults` are set) and returns the metrics text.
async fn probe_once(sim: &TestSim, client: &str, extra: &str, faults: Faults) -> String {
    let config = sim.org("target", client, extra);
    sim.sim.set_faults(client, faults);
    let (metrics, orgs) = orgs(&config).await;
    orgs[0].probe().await;
    metrics.render()
}

fn ping_reason(text: &str, reason: &str) -> Option<f64> {
    metric_value(
        text,
        &format!("obf_ping_failures_total{{org=\"target\",reason=\"{reason}\"}}"),
    )
}

fn token_reason(text: &str, reason: &str) -> Option<f64> {
    metric_value(
        text,
        &format!("obf_token_refresh_failures_total{{org=\"target\",reason=\"{reason}\"}}"),
    )
}

async fn sim() -> TestSim {
    TestSim::with_spacing(Duration::from_millis(100)).await
}

#[tokio::test]
async fn forced_ping_statuses_map_to_their_reasons() {
    let cases = [
        (401, "unauthorized"),
        (403, "forbidden"),
        (404, "not_found"),
        (418, "client_error"),
        (429, "rate_limited"),
        (503, "server_error"),
        (500, "server_error"),
    ];
    for (status, reason) in cases {
        let sim = sim().await;
        let faults = Faults {
            ping_status: Some(status),
            ..Faults::default()
        };
        let text = probe_once(&sim, "PING", "", faults).await;
        assert_eq!(
            ping_reason(&text, reason),
            Some(1.0),
            "{status} → {reason}\n{text}"
        );
        assert_eq!(
            metric_value(&text, "obf_ping_last_status_code{org=\"target\"}"),
            Some(f64::from(status))
        );
        assert_eq!(
            metric_value(&text, "obf_ping_success{org=\"target\"}"),
            Some(0.0)
        );
    }
}

#[tokio::test]
async fn forced_token_statuses_map_to_their_reasons() {
    let cases = [
        (503, "server_error"),
        (404, "not_found"),
        (429, "rate_limited"),
        (418, "client_error"),
    ];
    for (status, reason) in cases {
        let sim = sim().await;
        let faults = Faults {
            token_status: Some(status),
            ..Faults::default()
        };
        let text = probe_once(&sim, "TOKEN", "", faults).await;
        assert_eq!(
            token_reason(&text, reason),
            Some(1.0),
            "{status} → {reason}\n{text}"
        );
        assert_eq!(ping_reason(&text, "no_token"), Some(1.0));
    }
}

#[tokio::test]
async fn rejected_credentials_in_obf_and_rfc_styles() {
    for rfc_mode in [false, true] {
        let sim = TestSim::start(SimOptions {
            rfc_mode,
            token_min_interval: Duration::from_millis(100),
            ..SimOptions::default()
        })
        .await;
        let config = sim.org("target", "REVOKED", "");
        sim.sim.revoke("REVOKED");
        let (metrics, orgs) = orgs(&config).await;
        orgs[0].probe().await;
        let text = metrics.render();
        assert_eq!(
            token_reason(&text, "rejected"),
            Some(1.0),
            "rfc_mode {rfc_mode}"
        );
        assert_eq!(ping_reason(&text, "no_token"), Some(1.0));
        assert_eq!(
            metric_value(&text, "obf_credentials_valid{org=\"target\"}"),
            Some(0.0)
        );
    }
    // A 400 invalid_client is a rejection too.
    let sim = sim().await;
    let faults = Faults {
        token_status: Some(400),
        ..Faults::default()
    };
    let text = probe_once(&sim, "BAD400", "", faults).await;
    assert_eq!(token_reason(&text, "rejected"), Some(1.0), "{text}");
}

#[tokio::test]
async fn invalid_token_responses() {
    let malformed = Faults {
        malformed_token: true,
        ..Faults::default()
    };
    let missing = Faults {
        missing_access_token: true,
        ..Faults::default()
    };
    for faults in [malformed, missing] {
        let sim = sim().await;
        let text = probe_once(&sim, "INVALID", "", faults).await;
        assert_eq!(token_reason(&text, "invalid_response"), Some(1.0), "{text}");
        assert_eq!(ping_reason(&text, "no_token"), Some(1.0));
    }
}

#[tokio::test]
async fn an_oversized_ping_body_is_an_invalid_response() {
    let sim = sim().await;
    let faults = Faults {
        oversized_body: true,
        ..Faults::default()
    };
    let text = probe_once(&sim, "BIG", "", faults).await;
    assert_eq!(ping_reason(&text, "invalid_response"), Some(1.0), "{text}");
}

#[tokio::test]
async fn timeouts_of_token_and_ping() {
    let sim = sim().await;
    let slow_token = Faults {
        token_latency_ms: Some(2000),
        ..Faults::default()
    };
    let text = probe_once(&sim, "SLOWTOKEN", "timeout = \"300ms\"", slow_token).await;
    assert_eq!(token_reason(&text, "timeout"), Some(1.0), "{text}");

    let sim = self::sim().await;
    let slow_ping = Faults {
        ping_latency_ms: Some(2000),
        ..Faults::default()
    };
    let text = probe_once(&sim, "SLOWPING", "timeout = \"300ms\"", slow_ping).await;
    assert_eq!(ping_reason(&text, "timeout"), Some(1.0), "{text}");
}

#[tokio::test]
async fn network_failures_dns_connect_and_tls() {
    let sim = sim().await;
    let cases = [
        ("http://obf-exporter-test.invalid".to_string(), "NET", "dns"),
        (
            format!("http://127.0.0.1:{}", closed_port()),
            "NET",
            "connect",
        ),
        // https to a plain-HTTP port: the TLS handshake fails.
        (format!("https://{}", sim.addr), "NET", "tls"),
    ];
    for (host, client_id, reason) in cases {
        let config = format!(
            "[[org]]\nname = \"target\"\nclient_id = \"{client_id}\"\nclient_secret = \"x\"\nhost = \"{host}\"\ntimeout = \"5s\"\n"
        );
        let (metrics, orgs) = orgs(&config).await;
        orgs[0].probe().await;
        let text = metrics.render();
        assert_eq!(
            token_reason(&text, reason),
            Some(1.0),
            "{host} → {reason}\n{text}"
        );
        assert_eq!(ping_reason(&text, "no_token"), Some(1.0));
    }
}

#[tokio::test]
async fn redirects_are_not_followed() {
    // A second server that must never see a request.
    let hits = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let counter = hits.clone();
    let trap = axum::Router::new().fallback(any(move || {
        counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        async { "trapped" }
    }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let trap_addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, trap).await });

    let sim = sim().await;
    let faults = Faults {
        redirect_to: Some(format!("http://{trap_addr}/v2/client/REDIR/ping")),
        ..Faults::default()
    };
    let text = probe_once(&sim, "REDIR", "", faults).await;
    assert_eq!(ping_reason(&text, "redirect"), Some(1.0), "{text}");
    assert_eq!(
        metric_value(&text, "obf_ping_last_status_code{org=\"target\"}"),
        Some(302.0)
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 0);
}

#[tokio::test]
async fn subscription_end_is_read_and_its_failures_are_separate() {
    let sim = sim().await;
    let faults = Faults {
        paid_until: Some(1_900_000_000),
        ..Faults::default()
    };
    let text = probe_once(&sim, "PAID", "", faults).await;
    assert_eq!(
        metric_value(
            &text,
            "obf_subscription_expiry_timestamp_seconds{org=\"target\"}"
        ),
        Some(1_900_000_000.0)
    );

    // A failing client-info call counts as a subscription check failure, not as a ping failure.
    let sim = self::sim().await;
    let faults = Faults {
        ping_status: Some(503),
        ..Faults::default()
    };
    let text = probe_once(&sim, "SUBFAIL", "", faults).await;
    assert_eq!(
        metric_value(
            &text,
            "obf_subscription_check_failures_total{org=\"target\",reason=\"server_error\"}"
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(ping_reason(&text, "server_error"), Some(1.0));
    assert_eq!(
        metric_value(&text, "obf_pings_total{org=\"target\",result=\"failure\"}"),
        Some(1.0)
    );
}

#[tokio::test]
async fn a_ping_answered_429_holds_back_the_next_pings() {
    let sim = sim().await;
    let pings = |id: &str| sim.sim.client_stats(id).unwrap().pings;

    // Without Retry-After: the next run within 10 s sends nothing and says why.
    let config = sim.org("target", "SLOWDOWN", "");
    sim.sim.set_faults(
        "SLOWDOWN",
        Faults {
            ping_status: Some(429),
            ..Faults::default()
        },
    );
    let (metrics, slowed) = orgs(&config).await;
    let first = slowed[0].probe().await;
    assert_eq!(first.status, Some(429));
    let sent = pings("SLOWDOWN");
    let second = slowed[0].probe().await;
    assert_eq!(
        pings("SLOWDOWN"),
        sent,
        "a ping was sent during the back-off"
    );
    assert_eq!(second.reason.map(|r| r.as_str()), Some("rate_limited"));
    let detail = second.detail.unwrap_or_default();
    assert!(detail.contains("not sent"), "{detail}");
    assert_eq!(ping_reason(&metrics.render(), "rate_limited"), Some(2.0));

    // With Retry-After: its length is the wait.
    let config = sim.org("target", "WAITAWHILE", "");
    sim.sim.set_faults(
        "WAITAWHILE",
        Faults {
            ping_status: Some(429),
            ping_retry_after_secs: Some(120),
            ..Faults::default()
        },
    );
    let (_, waiting) = orgs(&config).await;
    waiting[0].probe().await;
    let held = waiting[0].probe().await.detail.unwrap_or_default();
    assert!(
        held.contains("next ping in 120 s") || held.contains("next ping in 119 s"),
        "{held}"
    );
}
