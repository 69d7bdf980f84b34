//! Series creation, removal and the per-org rendering.

use super::*;
use crate::obf::credential::Snapshot;
use crate::obf::reason::Reason;

impl Metrics {
    fn add_org_for_test(&self, info: OrgInfoLabels) -> Arc<OrgMetrics> {
        self.add_org(info, Duration::from_secs(60), Arc::default())
    }
}

fn credential(
    valid: bool,
    expires: Option<SystemTime>,
    verified: Option<SystemTime>,
) -> Arc<CredentialState> {
    let state = Arc::new(CredentialState::default());
    state.publish(&Snapshot {
        credentials_valid: Some(valid),
        token_expires_at: expires,
        last_verified: verified,
    });
    state
}

fn info(org: &str, custom: &[(&str, &str)]) -> OrgInfoLabels {
    OrgInfoLabels {
        org: org.to_string(),
        client_id: format!("{}ID", org.to_uppercase()),
        host: "https://openbadgefactory.com".to_string(),
        api: "v2".to_string(),
        custom: custom
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    }
}

#[test]
fn result_series_start_at_zero_and_reason_series_appear_on_first_use() {
    let metrics = Metrics::new();
    let org = metrics.add_org_for_test(info("acme", &[]));
    let text = metrics.render();
    assert!(text.contains("obf_pings_total{org=\"acme\",result=\"success\"} 0"));
    assert!(text.contains("obf_pings_total{org=\"acme\",result=\"failure\"} 0"));
    assert!(text.contains("obf_token_refreshes_total{org=\"acme\",result=\"failure\"} 0"));
    assert!(text.contains("obf_token_reuses_total{org=\"acme\"} 0"));
    assert!(!text.contains("obf_ping_failures_total{"));
    assert!(!text.contains("obf_credentials_valid{"));
    assert!(!text.contains("obf_token_expiry_timestamp_seconds{"));

    org.ping_failed(Reason::Timeout, None, Some(Duration::from_millis(20)));
    let text = metrics.render();
    assert!(text.contains("obf_ping_failures_total{org=\"acme\",reason=\"timeout\"} 1"));
    assert!(text.contains("obf_ping_last_status_code{org=\"acme\"} 0"));
    assert!(text.contains("obf_ping_success{org=\"acme\"} 0"));
}

#[test]
fn removing_an_org_removes_every_series_it_had() {
    let metrics = Metrics::new();
    let acme = metrics.add_org(
        info("acme", &[("team", "a")]),
        Duration::from_secs(60),
        credential(false, Some(SystemTime::now()), Some(SystemTime::now())),
    );
    let other = metrics.add_org_for_test(info("other", &[]));
    acme.ping_succeeded(200, Duration::from_millis(5));
    acme.ping_failed(Reason::ServerError, Some(503), None);
    acme.token_refreshed(Duration::from_millis(5), Some(Reason::Rejected));
    acme.set_subscription_expiry(1_900_000_000);
    acme.subscription_check_failed(Reason::NotFound);
    other.ping_succeeded(200, Duration::from_millis(5));

    metrics.remove_org("acme");
    let text = metrics.render();
    assert!(!text.contains("\"acme\""), "acme series left:\n{text}");
    assert!(text.contains("obf_ping_success{org=\"other\"} 1"));
    assert!(text.contains("obf_org_info{api=\"v2\",client_id=\"OTHERID\""));
}

#[test]
fn org_info_carries_each_orgs_own_custom_labels() {
    let metrics = Metrics::new();
    metrics.add_org_for_test(info("a", &[("team", "learning")]));
    metrics.add_org_for_test(info("b", &[("cost_centre", "42")]));
    let text = metrics.render();
    assert!(text.contains(
        "obf_org_info{api=\"v2\",client_id=\"AID\",host=\"https://openbadgefactory.com\",org=\"a\",team=\"learning\"} 1"
    ));
    assert!(text.contains(
        "obf_org_info{api=\"v2\",client_id=\"BID\",cost_centre=\"42\",host=\"https://openbadgefactory.com\",org=\"b\"} 1"
    ));
    assert_eq!(text.matches("# TYPE obf_org_info gauge").count(), 1);
}

#[test]
fn histograms_are_cumulative_and_end_with_inf_sum_and_count() {
    let metrics = Metrics::new();
    let org = metrics.add_org_for_test(info("acme", &[]));
    org.ping_succeeded(200, Duration::from_millis(3));
    org.ping_succeeded(200, Duration::from_millis(300));
    org.observe_ping_duration(Duration::from_secs(60));
    let text = metrics.render();
    for line in [
        "obf_ping_duration_seconds_bucket{org=\"acme\",le=\"0.01\"} 1",
        "obf_ping_duration_seconds_bucket{org=\"acme\",le=\"0.25\"} 1",
        "obf_ping_duration_seconds_bucket{org=\"acme\",le=\"0.5\"} 2",
        "obf_ping_duration_seconds_bucket{org=\"acme\",le=\"10\"} 2",
        "obf_ping_duration_seconds_bucket{org=\"acme\",le=\"+Inf\"} 3",
        "obf_ping_duration_seconds_sum{org=\"acme\"} 60.303",
        "obf_ping_duration_seconds_count{org=\"acme\"} 3",
        "# TYPE obf_ping_duration_seconds histogram",
    ] {
        assert!(text.contains(line), "missing {line}:\n{text}");
    }
}

#[test]
fn a_changed_org_keeps_its_counters_and_takes_its_new_labels() {
    let metrics = Metrics::new();
    let before = metrics.add_org_for_test(info("acme", &[("team", "a")]));
    before.ping_succeeded(200, Duration::from_millis(1));
    let after = metrics.add_org_for_test(info("acme", &[("team", "b")]));
    after.ping_succeeded(200, Duration::from_millis(1));
    let text = metrics.render();
    assert!(text.contains("obf_pings_total{org=\"acme\",result=\"success\"} 2"));
    assert!(text.contains("team=\"b\""));
    assert!(!text.contains("team=\"a\""));
}

#[test]
fn label_values_in_org_info_are_escaped() {
    let metrics = Metrics::new();
    metrics.add_org_for_test(info("acme", &[("note", "say \"hi\"\\")]));
    assert!(metrics.render().contains(r#"note="say \"hi\"\\""#));
}

#[test]
fn build_info_and_config_load_are_exposed() {
    let metrics = Metrics::new();
    metrics.record_config_load(true);
    let text = metrics.render();
    assert!(text.contains(&format!(
        "obf_exporter_build_info{{revision=\"{REVISION}\",version=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION")
    )));
    assert!(text.contains("obf_config_last_reload_successful 1"));
    metrics.record_config_load(false);
    assert!(metrics
        .render()
        .contains("obf_config_last_reload_successful 0"));
}

#[test]
fn render_org_keeps_only_that_orgs_series() {
    let metrics = Metrics::new();
    metrics
        .add_org_for_test(info("a", &[]))
        .ping_succeeded(200, Duration::from_millis(1));
    metrics
        .add_org_for_test(info("b", &[]))
        .ping_succeeded(200, Duration::from_millis(1));
    let text = metrics.render_org("a");
    assert!(text.contains("obf_ping_success{org=\"a\"} 1"));
    assert!(!text.contains("org=\"b\""));
    assert!(!text.contains("obf_exporter_build_info"));
}

#[test]
fn every_latency_bucket_is_written_with_its_bound() {
    let metrics = Metrics::new();
    let org = metrics.add_org_for_test(info("acme", &[]));
    for bound in text::LATENCY_BUCKETS {
        org.observe_ping_duration(Duration::from_secs_f64(bound));
    }
    let text = metrics.render();
    for (index, bound) in text::LATENCY_BUCKETS.iter().enumerate() {
        let line = format!(
            "obf_ping_duration_seconds_bucket{{org=\"acme\",le=\"{bound}\"}} {}\n",
            index + 1
        );
        assert!(text.contains(&line), "missing {line}:\n{text}");
    }
}

#[test]
fn gauges_keep_three_decimals_and_whole_values_have_none() {
    let metrics = Metrics::new();
    let expiry = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_018_000);
    let org = metrics.add_org(
        info("acme", &[]),
        Duration::from_millis(1500),
        credential(true, Some(expiry), None),
    );
    org.probe_finished(SystemTime::UNIX_EPOCH + Duration::from_nanos(1_795_000_000_123_456_789));
    org.set_subscription_expiry(1_827_403_922);
    org.ping_failed(Reason::ServerError, Some(503), None);
    let text = metrics.render();
    for line in [
        "obf_probe_last_run_timestamp_seconds{org=\"acme\"} 1795000000.123\n",
        "obf_token_expiry_timestamp_seconds{org=\"acme\"} 1795018000\n",
        "obf_subscription_expiry_timestamp_seconds{org=\"acme\"} 1827403922\n",
        "obf_probe_interval_seconds{org=\"acme\"} 1.5\n",
        "obf_ping_last_status_code{org=\"acme\"} 503\n",
        "obf_ping_success{org=\"acme\"} 0\n",
    ] {
        assert!(text.contains(line), "missing {line}:\n{text}");
    }
}

#[test]
fn orgs_of_one_credential_show_its_state_at_once() {
    let metrics = Metrics::new();
    let shared = Arc::new(CredentialState::default());
    metrics.add_org(info("b", &[]), Duration::from_secs(60), shared.clone());
    metrics.add_org(info("b2", &[]), Duration::from_secs(60), shared.clone());
    let text = metrics.render();
    assert!(!text.contains("obf_credentials_valid{"), "{text}");
    assert!(!text.contains("obf_credentials_last_verified_timestamp_seconds{"));

    let verified = SystemTime::UNIX_EPOCH + Duration::from_millis(1_795_000_000_250);
    shared.publish(&Snapshot {
        credentials_valid: Some(true),
        token_expires_at: Some(verified + Duration::from_secs(18_000)),
        last_verified: Some(verified),
    });
    let text = metrics.render();
    for org in ["b", "b2"] {
        for line in [
            format!("obf_credentials_valid{{org=\"{org}\"}} 1\n"),
            format!("obf_token_expiry_timestamp_seconds{{org=\"{org}\"}} 1795018000.25\n"),
            format!(
                "obf_credentials_last_verified_timestamp_seconds{{org=\"{org}\"}} 1795000000.25\n"
            ),
        ] {
            assert!(text.contains(&line), "missing {line}:\n{text}");
        }
    }
    assert_eq!(
        text.matches("# TYPE obf_credentials_last_verified_timestamp_seconds gauge")
            .count(),
        1
    );
}

#[test]
fn a_reload_that_moves_an_org_to_another_credential_shows_the_new_one() {
    let metrics = Metrics::new();
    metrics.add_org(
        info("a", &[]),
        Duration::from_secs(60),
        credential(false, None, None),
    );
    metrics.add_org(
        info("a", &[]),
        Duration::from_secs(60),
        credential(true, None, None),
    );
    assert!(metrics
        .render()
        .contains("obf_credentials_valid{org=\"a\"} 1\n"));
}
