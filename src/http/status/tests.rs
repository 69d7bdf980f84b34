//! The status page from made-up reports: state and last success from the history, the rows and
//! their order, HTML escaping, the JSON fields, and that no secret is ever shown.

use std::time::{Duration, SystemTime};

use super::*;
use crate::fleet::report::TokenUse;

const SECRET: &str = "s3cr3t-inline-value-9f2c";
const NOW: f64 = 1_767_225_600.0; // 2026-01-01 00:00:00 UTC

fn now() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(NOW as u64)
}

fn config(name: &str) -> OrgConfig {
    let text = format!(
        "[[org]]\nname = \"{name}\"\nclient_id = \"CID_{name}\"\nclient_secret = \"{SECRET}\"\n\
         host = \"https://obf.example\"\nlabels = {{ team = \"<b>learning</b>\" }}\n"
    );
    let config = crate::config::parse(&text, "test.toml", &|_| None).expect("valid config");
    config.orgs.into_iter().next().expect("one org")
}

fn ok_report(org: &str, at: f64) -> ProbeReport {
    ProbeReport {
        org: org.to_string(),
        success: true,
        reason: None,
        status: Some(200),
        ping_seconds: Some(0.042),
        token: TokenUse::Reused,
        token_seconds: None,
        token_failure: None,
        token_expires_at: Some(NOW + 5.0 * 3600.0 - 30.0),
        credentials_valid: Some(true),
        credentials_last_verified: Some(NOW - 30.0),
        subscription_ends: Some(NOW as i64 + 364 * 86400 + 100),
        finished_at: at,
        detail: None,
    }
}

fn rejected_report(org: &str, at: f64) -> ProbeReport {
    ProbeReport {
        org: org.to_string(),
        success: false,
        reason: Some(Reason::NoToken),
        status: None,
        ping_seconds: None,
        token: TokenUse::Failed,
        token_seconds: Some(0.01),
        token_failure: Some(Reason::Rejected),
        token_expires_at: None,
        credentials_valid: Some(false),
        credentials_last_verified: None,
        subscription_ends: None,
        finished_at: at,
        detail: Some("token request: HTTP 401 <invalid_client> \"x\" & 'y'".to_string()),
    }
}

#[test]
fn escaping_covers_markup_and_quotes() {
    assert_eq!(
        escape_html("<script>alert(\"x\" + 'y')</script> & co"),
        "&lt;script&gt;alert(&quot;x&quot; + &#39;y&#39;)&lt;/script&gt; &amp; co"
    );
    assert_eq!(escape_html("plain-name_1.2"), "plain-name_1.2");
    assert_eq!(escape_html("ä €"), "ä €");
}

#[test]
fn durations_are_short_and_rounded_down() {
    assert_eq!(format_duration(0.0), "0 s");
    assert_eq!(format_duration(-5.0), "0 s");
    assert_eq!(format_duration(f64::NAN), "0 s");
    assert_eq!(format_duration(12.9), "12 s");
    assert_eq!(format_duration(60.0), "1 min");
    assert_eq!(format_duration(245.0), "4 min 5 s");
    assert_eq!(format_duration(3600.0), "1 h");
    assert_eq!(format_duration(5.0 * 3600.0 - 30.0), "4 h 59 min");
    assert_eq!(format_duration(86400.0 + 3.0 * 3600.0), "1 d 3 h");
    assert_eq!(format_duration(364.0 * 86400.0 + 5000.0), "364 d");
    assert_eq!(relative(NOW - 12.0, NOW), "12 s ago");
    assert_eq!(relative(NOW + 5.0 * 3600.0 - 30.0, NOW), "in 4 h 59 min");
    assert_eq!(relative(NOW, NOW), "0 s ago");
    assert_eq!(format_latency(0.042), "42 ms");
    assert_eq!(format_latency(1.25), "1.25 s");
    assert_eq!(format_latency(0.0), "<1 ms");
}

#[test]
fn state_and_last_success_come_from_the_history() {
    let config = config("acme");
    let empty = OrgStatus::new(&config, &[]);
    assert_eq!(empty.state, OrgState::Unknown);
    assert_eq!(empty.last_success, None);

    let history = vec![
        ok_report("acme", NOW - 120.0),
        rejected_report("acme", NOW - 60.0),
        rejected_report("acme", NOW - 1.0),
    ];
    let row = OrgStatus::new(&config, &history);
    assert_eq!(row.state, OrgState::Failing);
    assert_eq!(row.reason, Some(Reason::NoToken));
    assert_eq!(row.token_failure, Some(Reason::Rejected));
    assert_eq!(row.last_success, Some(NOW - 120.0));
    assert_eq!(row.last_run, Some(NOW - 1.0));
    assert_eq!(row.credentials_valid, Some(false));
    assert_eq!(row.runs, 3);

    let failures: Vec<_> = (0..20)
        .map(|i| rejected_report("acme", NOW - f64::from(i)))
        .collect();
    let row = OrgStatus::new(&config, &failures);
    assert_eq!(row.last_success, None);
    let html = render_index(&[row], now());
    assert!(html.contains("not in the last 20 runs"), "{html}");
}

#[test]
fn index_has_an_ok_row_and_a_failing_row() {
    let mut rows = vec![
        OrgStatus::new(&config("healthy"), &[ok_report("healthy", NOW - 12.0)]),
        OrgStatus::new(&config("revoked"), &[rejected_report("revoked", NOW - 3.0)]),
        OrgStatus::new(&config("fresh"), &[]),
    ];
    sort_rows(&mut rows);
    let order: Vec<&str> = rows.iter().map(|r| r.org.as_str()).collect();
    assert_eq!(order, ["revoked", "fresh", "healthy"]);

    let html = render_index(&rows, now());
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert!(
        html.contains("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">")
    );
    assert!(!html.contains("<script"), "no scripts");
    assert!(html.contains("3 orgs: <span class=\"bad\">1 failing</span>, 1 ok, 1 not probed yet"));

    let row = |name: &str| {
        let start = html
            .find(&format!("id=\"org-{name}\""))
            .unwrap_or_else(|| panic!("no row for {name}:\n{html}"));
        let end = html[start..].find("</tr>").expect("row ends") + start;
        html[start..end].to_string()
    };
    let healthy = row("healthy");
    for text in [
        "<a href=\"/org/healthy\">healthy</a>",
        "badge ok\">ok<",
        "12 s ago",
        ">200<",
        "42 ms",
        "in 4 h 59 min",
        ">valid<",
        "2026-12-31",
        "in 364 d",
    ] {
        assert!(healthy.contains(text), "{text:?} not in {healthy}");
    }
    let revoked = row("revoked");
    for text in [
        "badge failing\">failing<",
        "no_token",
        "token request: <code>rejected</code>",
        "no ping sent",
        ">rejected<",
        "no token",
        "not in the last 1 runs",
        // The detail, escaped.
        "HTTP 401 &lt;invalid_client&gt; &quot;x&quot; &amp; &#39;y&#39;",
    ] {
        assert!(revoked.contains(text), "{text:?} not in {revoked}");
    }
    assert!(html.contains("class=\"failing\" id=\"org-revoked\""));
    assert!(html.contains("class=\"ok\" id=\"org-healthy\""));
    assert!(row("fresh").contains("not probed yet"));
    assert!(!html.contains("<invalid_client>"));
}

#[test]
fn org_page_lists_the_history_newest_first_and_escapes() {
    let config = config("acme");
    let history = vec![
        ok_report("acme", NOW - 120.0),
        rejected_report("acme", NOW - 60.0),
    ];
    let row = OrgStatus::new(&config, &history);
    let html = render_org(&row, &history, now());
    assert!(html.contains("<h1>acme <span class=\"badge failing\">failing</span></h1>"));
    assert!(html.contains("Last 2 runs"));
    let failed = html.find("1 min ago").expect("failed run shown");
    let ok = html.find("2 min ago").expect("ok run shown");
    assert!(failed < ok, "newest first");
    assert!(html.contains("failed (rejected)"));
    assert!(html.contains("<code>https://obf.example</code>"));
    assert!(html.contains("team=&lt;b&gt;learning&lt;/b&gt;"));
    assert!(!html.contains("<b>learning"));

    let missing = render_not_found("<script>alert('x')</script>");
    assert!(missing.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;"));
    assert!(!missing.contains("<script>"));
}

#[test]
fn json_has_the_documented_fields() {
    let rows = vec![OrgStatus::new(
        &config("revoked"),
        &[rejected_report("revoked", NOW - 3.0)],
    )];
    let json: serde_json::Value =
        serde_json::from_str(&render_json(&rows, now())).expect("valid JSON");
    let org = &json["orgs"][0];
    assert_eq!(org["org"], "revoked");
    assert_eq!(org["state"], "failing");
    assert_eq!(org["reason"], "no_token");
    assert_eq!(org["token_failure"], "rejected");
    assert_eq!(org["credentials_valid"], false);
    assert_eq!(org["last_success"], serde_json::Value::Null);
    assert_eq!(org["last_status"], serde_json::Value::Null);
    assert_eq!(org["runs"], 1);
    assert_eq!(org["host"], "https://obf.example");
    assert_eq!(org["client_id"], "CID_revoked");
    assert_eq!(org["api"], "v2");
    assert_eq!(org["schedule"], "every 1m");
    assert_eq!(json["generated_at"], NOW);
}

#[test]
fn the_client_secret_never_appears() {
    let config = config("acme");
    let history = vec![ok_report("acme", NOW - 5.0), rejected_report("acme", NOW)];
    let row = OrgStatus::new(&config, &history);
    let outputs = [
        render_index(std::slice::from_ref(&row), now()),
        render_org(&row, &history, now()),
        render_json(std::slice::from_ref(&row), now()),
        format!("{row:?}"),
    ];
    for output in outputs {
        assert!(!output.contains(SECRET), "secret leaked:\n{output}");
        assert!(!output.contains("client_secret"), "{output}");
    }
}
