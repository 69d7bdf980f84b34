//! `[exporter] latency_histograms`: a reload that changes it re-keys the latency histograms at
//! once, and the series of the other mode are gone from the next scrape.

use std::time::Duration;

use crate::cli::TempDir;
use crate::support::{App, TestSim};

async fn post(url: &str) -> (u16, String) {
    let response = reqwest::Client::new().post(url).send().await.unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

/// The samples of `text` whose name starts with `prefix`.
fn series<'a>(text: &'a str, prefix: &str) -> Vec<&'a str> {
    text.lines().filter(|l| l.starts_with(prefix)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_switches_the_latency_histograms_between_org_and_host() {
    let sim = TestSim::with_spacing(Duration::from_millis(200)).await;
    let dir = TempDir::new("lean-series");
    let orgs = format!(
        "[defaults]\ninterval = \"1s\"\ntoken_min_interval = \"200ms\"\n{}{}",
        sim.org("a", "LEANA", ""),
        sim.org("b", "LEANB", ""),
    );
    let path = dir.write("config.toml", &orgs);
    let app = App::spawn_file(&path).await;
    for org in ["a", "b"] {
        app.wait_for(
            &format!("obf_ping_duration_seconds_count{{org=\"{org}\"}}"),
            Duration::from_secs(10),
            |v| v >= 1.0,
        )
        .await;
    }
    let host_count = format!(
        "obf_ping_duration_seconds_count{{api=\"v2\",host=\"{}\"}}",
        sim.url()
    );
    assert!(!app.metrics().await.contains(&host_count));

    dir.write(
        "config.toml",
        &format!("[exporter]\nlatency_histograms = \"host\"\n{orgs}"),
    );
    let (status, body) = post(&app.url("/-/reload")).await;
    assert_eq!(status, 200, "{body}");
    // Straight after the reload: no per-org histogram left, the host one there (perhaps at 0).
    let text = app.metrics().await;
    assert!(
        series(&text, "obf_ping_duration_seconds_bucket{org=").is_empty(),
        "{text}"
    );
    assert!(
        series(&text, "obf_token_refresh_duration_seconds_bucket{org=").is_empty(),
        "{text}"
    );
    assert_eq!(
        series(&text, "obf_ping_duration_seconds_bucket{api=\"v2\"").len(),
        11,
        "{text}"
    );
    assert_eq!(
        series(
            &text,
            "obf_token_refresh_duration_seconds_bucket{api=\"v2\""
        )
        .len(),
        11,
        "{text}"
    );
    // Both orgs' pings go to the one host histogram; each org keeps its last ping's time.
    app.wait_for(&host_count, Duration::from_secs(10), |v| v >= 2.0)
        .await;
    for org in ["a", "b"] {
        let last = format!("obf_ping_last_duration_seconds{{org=\"{org}\"}}");
        app.wait_for(&last, Duration::from_secs(5), |v| v > 0.0)
            .await;
    }

    dir.write("config.toml", &orgs);
    let (status, body) = post(&app.url("/-/reload")).await;
    assert_eq!(status, 200, "{body}");
    let text = app.metrics().await;
    assert!(
        !text.contains(&format!("host=\"{}\",le=", sim.url())),
        "{text}"
    );
    assert!(!text.contains(&host_count), "{text}");
    assert_eq!(
        series(&text, "obf_ping_duration_seconds_bucket{org=").len(),
        22,
        "{text}"
    );
    app.stop().await;
}
