//! `/metrics` is valid for Prometheus: `promtool check metrics` finds nothing, and every family of
//! the contract is there with its type; with `latency_histograms = "org"` (the default) and
//! `"host"`.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use obf_sim::Faults;

use crate::support::{get, App, TestSim};

/// `latency_histograms`: what the latency histograms are kept per.
async fn busy_agent(latency_histograms: &str) -> (TestSim, App) {
    let sim = TestSim::with_spacing(Duration::from_millis(200)).await;
    let mut config = format!(
        "[exporter]\nlatency_histograms = \"{latency_histograms}\"\n\
         [defaults]\ninterval = \"1s\"\ntoken_min_interval = \"200ms\"\n"
    );
    config.push_str(&sim.org("healthy", "HEALTHY", "labels = { team = \"learning\" }"));
    config.push_str(&sim.org("revoked", "REVOKEDX", "labels = { cost_centre = \"42\" }"));
    config.push_str(&sim.org("broken", "BROKEN", ""));
    // Another api on the same host: a second ping histogram in host mode, the same token one.
    config.push_str(&sim.org("legacy", "LEGACY", "api = \"v1\""));
    sim.sim.revoke("REVOKEDX");
    sim.sim.set_faults(
        "BROKEN",
        Faults {
            ping_status: Some(503),
            ..Faults::default()
        },
    );
    let app = App::spawn(&config).await;
    app.wait_for(
        "obf_credentials_valid{org=\"revoked\"}",
        Duration::from_secs(5),
        |v| v == 0.0,
    )
    .await;
    (sim, app)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promtool_finds_nothing_wrong() {
    let (_sim, app) = busy_agent("org").await;
    let text = app.metrics().await;
    app.stop().await;
    promtool_check(&text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promtool_finds_nothing_wrong_with_histograms_per_host() {
    let (sim, app) = busy_agent("host").await;
    app.wait_for(
        "obf_ping_success{org=\"legacy\"}",
        Duration::from_secs(5),
        |v| v == 1.0,
    )
    .await;
    let text = app.metrics().await;
    app.stop().await;
    promtool_check(&text);
    let host = sim.url();
    for line in [
        format!("obf_ping_duration_seconds_bucket{{api=\"v1\",host=\"{host}\",le=\"+Inf\"}} "),
        format!("obf_ping_duration_seconds_count{{api=\"v2\",host=\"{host}\"}} "),
        format!("obf_token_refresh_duration_seconds_count{{api=\"v2\",host=\"{host}\"}} "),
        "obf_ping_last_duration_seconds{org=\"legacy\"} ".to_string(),
    ] {
        assert!(text.contains(&line), "missing {line}:\n{text}");
    }
    assert!(!text.contains("_duration_seconds_bucket{org="), "{text}");
    assert!(!text.contains("_duration_seconds_count{org="), "{text}");
}

/// `promtool check metrics` on `text` finds nothing (not even a lint).
fn promtool_check(text: &str) {
    let promtool = std::env::var("PROMTOOL").unwrap_or_else(|_| "promtool".to_string());
    let child = Command::new(&promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = child.unwrap_or_else(|e| {
        panic!("promtool not found ({e}): install Debian's `prometheus` package or set PROMTOOL")
    });
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    let findings = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success() && findings.trim().is_empty(),
        "promtool: {findings}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_contract_family_is_exposed_with_its_type() {
    for latency_histograms in ["org", "host"] {
        every_family_in(latency_histograms).await;
    }
}

async fn every_family_in(latency_histograms: &str) {
    let (_sim, app) = busy_agent(latency_histograms).await;
    let text = app.metrics().await;
    let (ready, _) = get(&format!("http://{}/-/ready", app.addr)).await;
    let (healthy, _) = get(&format!("http://{}/-/healthy", app.addr)).await;
    app.stop().await;
    assert_eq!((ready, healthy), (200, 200));
    let families = [
        ("obf_ping_success", "gauge"),
        ("obf_ping_duration_seconds", "histogram"),
        ("obf_ping_last_duration_seconds", "gauge"),
        ("obf_pings_total", "counter"),
        ("obf_ping_failures_total", "counter"),
        ("obf_ping_last_status_code", "gauge"),
        ("obf_ping_last_success_timestamp_seconds", "gauge"),
        ("obf_token_refreshes_total", "counter"),
        ("obf_token_refresh_failures_total", "counter"),
        ("obf_token_refresh_duration_seconds", "histogram"),
        ("obf_token_reuses_total", "counter"),
        ("obf_token_expiry_timestamp_seconds", "gauge"),
        ("obf_credentials_valid", "gauge"),
        ("obf_subscription_expiry_timestamp_seconds", "gauge"),
        ("obf_subscription_check_failures_total", "counter"),
        ("obf_org_info", "gauge"),
        ("obf_exporter_build_info", "gauge"),
        ("obf_config_last_reload_successful", "gauge"),
        ("obf_config_last_reload_success_timestamp_seconds", "gauge"),
        ("obf_schedule_lateness_seconds", "histogram"),
        ("obf_probe_last_run_timestamp_seconds", "gauge"),
        ("obf_probe_interval_seconds", "gauge"),
        ("process_cpu_seconds_total", "counter"),
        ("process_resident_memory_bytes", "gauge"),
    ];
    for (name, kind) in families {
        assert!(
            text.contains(&format!("# TYPE {name} {kind}\n")),
            "missing {name} {kind} with latency_histograms = {latency_histograms:?}"
        );
    }
    // `result` series exist from the start; `reason` series only on occurrence.
    assert!(text.contains("obf_pings_total{org=\"healthy\",result=\"failure\"} 0"));
    assert!(!text.contains("obf_ping_failures_total{org=\"healthy\""));
    assert!(text.contains("obf_org_info{api=\"v2\",client_id=\"HEALTHY\""));
    assert!(text.contains("team=\"learning\""));
    assert!(text.contains("cost_centre=\"42\""));
}
