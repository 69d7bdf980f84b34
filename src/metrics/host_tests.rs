//! `latency_histograms = "host"`: which series exist in each mode, re-keying on a change, the host
//! series' lifetime, and what an org costs in series and bytes in both modes.

use super::*;
use crate::obf::credential::Snapshot;
use crate::obf::reason::Reason;

const OBF: &str = "https://openbadgefactory.com";

fn info(org: &str, host: &str, api: &str) -> OrgInfoLabels {
    OrgInfoLabels {
        org: org.to_string(),
        client_id: format!("{}ID", org.to_uppercase()),
        host: host.to_string(),
        api: api.to_string(),
        custom: BTreeMap::new(),
    }
}

fn add(metrics: &Metrics, org: &str, host: &str, api: &str) -> Arc<OrgMetrics> {
    metrics.add_org(
        info(org, host, api),
        Duration::from_secs(60),
        Arc::default(),
    )
}

/// The sample lines (not comments) of `text`.
fn samples(text: &str) -> Vec<&str> {
    text.lines().filter(|l| !l.starts_with('#')).collect()
}

#[test]
fn host_mode_keeps_histograms_per_host_and_api_and_the_last_duration_per_org() {
    let metrics = Metrics::new();
    metrics.set_latency_per_host(true);
    let a = add(&metrics, "a", OBF, "v2");
    let b = add(&metrics, "b", OBF, "v2");
    let legacy = add(&metrics, "legacy", OBF, "v1");
    a.ping_succeeded(200, Duration::from_millis(20));
    b.ping_failed(Reason::Timeout, None, Some(Duration::from_millis(300)));
    legacy.ping_succeeded(200, Duration::from_micros(437));
    a.token_refreshed(Duration::from_millis(40), None);
    legacy.token_refreshed(Duration::from_millis(60), Some(Reason::Rejected));
    let text = metrics.render();
    for line in [
        "obf_ping_duration_seconds_bucket{api=\"v2\",host=\"https://openbadgefactory.com\",le=\"0.025\"} 1\n",
        "obf_ping_duration_seconds_count{api=\"v2\",host=\"https://openbadgefactory.com\"} 2\n",
        "obf_ping_duration_seconds_sum{api=\"v2\",host=\"https://openbadgefactory.com\"} 0.32\n",
        "obf_ping_duration_seconds_count{api=\"v1\",host=\"https://openbadgefactory.com\"} 1\n",
        // Tokens per (host, api) too, as the contract says.
        "obf_token_refresh_duration_seconds_count{api=\"v2\",host=\"https://openbadgefactory.com\"} 1\n",
        "obf_token_refresh_duration_seconds_sum{api=\"v2\",host=\"https://openbadgefactory.com\"} 0.04\n",
        "obf_token_refresh_duration_seconds_count{api=\"v1\",host=\"https://openbadgefactory.com\"} 1\n",
        "obf_token_refresh_duration_seconds_sum{api=\"v1\",host=\"https://openbadgefactory.com\"} 0.06\n",
        "obf_ping_last_duration_seconds{org=\"a\"} 0.02\n",
        "obf_ping_last_duration_seconds{org=\"b\"} 0.3\n",
        "obf_ping_last_duration_seconds{org=\"legacy\"} 0.000437\n",
        "# TYPE obf_ping_duration_seconds histogram\n",
        "# TYPE obf_token_refresh_duration_seconds histogram\n",
        "# TYPE obf_ping_last_duration_seconds gauge\n",
    ] {
        assert!(text.contains(line), "missing {line}:\n{text}");
    }
    assert!(!text.contains("_seconds_bucket{org="), "{text}");
    assert!(!text.contains("_seconds_count{org="), "{text}");
    // Each family once (Prometheus refuses a family that is split).
    for family in [
        "obf_ping_duration_seconds",
        "obf_token_refresh_duration_seconds",
        "obf_ping_last_duration_seconds",
    ] {
        assert_eq!(text.matches(&format!("# TYPE {family} ")).count(), 1);
    }
    assert_eq!(samples(&text).len(), samples(&metrics.render()).len());
}

#[test]
fn org_mode_has_the_per_org_histograms_and_the_last_duration_too() {
    let metrics = Metrics::new();
    let a = add(&metrics, "a", OBF, "v2");
    a.observe_ping_duration(Duration::from_millis(1500));
    let text = metrics.render();
    assert!(text.contains("obf_ping_duration_seconds_count{org=\"a\"} 1\n"));
    assert!(text.contains("obf_token_refresh_duration_seconds_count{org=\"a\"} 0\n"));
    assert!(text.contains("obf_ping_last_duration_seconds{org=\"a\"} 1.5\n"));
    assert!(!text.contains("host=\"https://openbadgefactory.com\",le="));
    // Absent until a ping was sent; a ping not sent leaves the last one's time.
    let b = add(&metrics, "b", OBF, "v2");
    b.ping_failed(Reason::NoToken, None, None);
    assert!(!metrics
        .render()
        .contains("obf_ping_last_duration_seconds{org=\"b\"}"));
    a.ping_failed(Reason::NoToken, None, None);
    assert!(metrics
        .render()
        .contains("obf_ping_last_duration_seconds{org=\"a\"} 1.5\n"));
}

#[test]
fn switching_modes_re_keys_every_org_at_once() {
    let metrics = Metrics::new();
    let a = add(&metrics, "a", OBF, "v2");
    a.ping_succeeded(200, Duration::from_millis(20));

    metrics.set_latency_per_host(true);
    a.ping_succeeded(200, Duration::from_millis(20));
    let text = metrics.render();
    assert!(
        !text.contains("obf_ping_duration_seconds_count{org="),
        "{text}"
    );
    // The host histogram starts with the switch.
    assert!(text.contains(
        "obf_ping_duration_seconds_count{api=\"v2\",host=\"https://openbadgefactory.com\"} 1\n"
    ));

    metrics.set_latency_per_host(false);
    a.ping_succeeded(200, Duration::from_millis(20));
    let text = metrics.render();
    assert!(
        !text.contains("host=\"https://openbadgefactory.com\"} "),
        "{text}"
    );
    assert!(!text.contains("{api=\"v2\",host="), "{text}");
    // The org's own histogram continues where it stopped.
    assert!(text.contains("obf_ping_duration_seconds_count{org=\"a\"} 2\n"));
    // Setting the same mode again changes nothing.
    metrics.set_latency_per_host(false);
    assert!(metrics
        .render()
        .contains("obf_ping_duration_seconds_count{org=\"a\"} 2\n"));
}

#[test]
fn a_hosts_series_go_with_the_last_org_that_uses_it() {
    let metrics = Metrics::new();
    metrics.set_latency_per_host(true);
    add(&metrics, "a", OBF, "v2");
    add(&metrics, "b", OBF, "v2");
    add(&metrics, "c", "https://factory.cancred.ca", "v2");
    let count = |text: &str, host: &str| text.matches(&format!("host=\"{host}\"}} ")).count();
    // The lines that end with the host label: the ping and token histograms' sum and count.
    assert_eq!(count(&metrics.render(), OBF), 4);
    metrics.remove_org("a");
    assert_eq!(count(&metrics.render(), OBF), 4);
    metrics.remove_org("b");
    let text = metrics.render();
    assert_eq!(count(&text, OBF), 0, "{text}");
    assert_eq!(count(&text, "https://factory.cancred.ca"), 4);
    // A reload that moves an org to another host (or api) moves its latencies.
    let c = add(&metrics, "c", OBF, "v1");
    c.ping_succeeded(200, Duration::from_millis(20));
    let text = metrics.render();
    assert_eq!(count(&text, "https://factory.cancred.ca"), 0, "{text}");
    assert!(text.contains(
        "obf_ping_duration_seconds_count{api=\"v1\",host=\"https://openbadgefactory.com\"} 1\n"
    ));
    metrics.remove_org("c");
    let text = metrics.render();
    assert!(!text.contains("obf_ping_duration_seconds"), "{text}");
    assert!(
        !text.contains("obf_token_refresh_duration_seconds"),
        "{text}"
    );
    assert_eq!(metrics.orgs.read().unwrap().hosts.len(), 0);
}

#[test]
fn probe_text_of_an_org_in_host_mode_has_no_histograms() {
    let metrics = Metrics::new();
    metrics.set_latency_per_host(true);
    add(&metrics, "a", OBF, "v2").ping_succeeded(200, Duration::from_millis(20));
    let text = metrics.render_org("a");
    assert!(text.contains("obf_ping_last_duration_seconds{org=\"a\"} 0.02\n"));
    assert!(!text.contains("obf_ping_duration_seconds"), "{text}");
}

/// An org as it looks after running a while: a token in hand, credentials verified, a
/// subscription end, successful pings.
fn running_fleet(orgs: usize, per_host: bool) -> Metrics {
    let metrics = Metrics::new();
    metrics.set_latency_per_host(per_host);
    let now = SystemTime::UNIX_EPOCH + Duration::from_millis(1_795_000_000_123);
    for i in 0..orgs {
        let credential = Arc::new(CredentialState::default());
        credential.publish(&Snapshot {
            credentials_valid: Some(true),
            token_expires_at: Some(now + Duration::from_secs(18_000)),
            last_verified: Some(now),
        });
        let mut labels = info(&format!("org{i:05}"), OBF, "v2");
        labels.client_id = format!("sim{i:05}");
        let org = metrics.add_org(labels, Duration::from_secs(60), credential);
        org.token_refreshed(Duration::from_millis(80), None);
        org.ping_succeeded(200, Duration::from_micros(41_234));
        org.token_reused();
        org.set_subscription_expiry(1_827_403_922);
        org.probe_finished(now);
    }
    metrics
}

/// Series and bytes per org: of the per-org families alone, and of everything after the
/// exporter-wide families (so with the host histograms, a fixed cost shared by the fleet).
fn cost_per_org(metrics: &Metrics, orgs: usize) -> [(f64, f64); 2] {
    let text = metrics.render();
    let per_org = text.find("# HELP obf_org_info ").expect("per-org families");
    let fleet = text
        .find("# HELP obf_ping_duration_seconds ")
        .map_or(per_org, |hosts| hosts.min(per_org));
    [&text[per_org..], &text[fleet..]].map(|part| {
        let series = samples(part).len() as f64 / orgs as f64;
        (series, part.len() as f64 / orgs as f64)
    })
}

#[test]
fn host_mode_costs_at_most_16_series_and_1_kb_per_org() {
    for orgs in [1_000, 10_000] {
        let [(own, _), (lean_series, lean_bytes)] = cost_per_org(&running_fleet(orgs, true), orgs);
        let [_, (full_series, full_bytes)] = cost_per_org(&running_fleet(orgs, false), orgs);
        println!(
            "{orgs} orgs: host: {own:.3} series of the org's own, {lean_series:.3} with the host \
             histograms, {lean_bytes:.0} B per org; org: {full_series:.3} series, {full_bytes:.0} B \
             per org"
        );
        assert!(own <= 16.0, "{own} series per org");
        // The fleet's 26 host series (one host, one api) add 0.026 per org at 1,000 orgs.
        assert!(lean_series <= 16.03, "{lean_series} series per org");
        assert!(lean_bytes <= 1024.0, "{lean_bytes} bytes per org");
        // The per-org histograms are 26 series of the org mode's.
        assert!(
            (full_series - own - 26.0).abs() < 1e-9,
            "{full_series} vs {own}"
        );
    }
}
