//! Secret rotation in process: the re-read before a rejection (no file watcher running: orgs
//! built for the `probe` command), and the demo's rotation cycle keeping its org valid.

use std::time::{Duration, Instant};

use obf_exporter::commands::demo::{self, Rotation};
use obf_exporter::config::Schedule;
use obf_exporter::fleet::report::TokenUse;

use crate::cli::TempDir;
use crate::support::{metric_value, orgs, App, TestSim};

/// The secret file changed and the old secret was removed before the agent noticed: the refusal
/// of the old secret is not reported as a rejection, and the next run uses the new one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_of_a_secret_whose_file_changed_is_not_a_rejection() {
    let sim = TestSim::with_spacing(Duration::from_secs(1)).await;
    let dir = TempDir::new("reread");
    sim.sim.add_client("REREAD", "first-secret");
    let file = dir.write("secret", "first-secret\n");
    let config = format!(
        "[[org]]\nname = \"acme\"\nclient_id = \"REREAD\"\nclient_secret_file = \"{}\"\n\
         host = \"{}\"\ntoken_min_interval = \"1s\"\ntimeout = \"3s\"\n",
        file.display(),
        sim.url()
    );
    let (metrics, orgs) = orgs(&config).await;
    let org = &orgs[0];
    assert!(org.probe().await.success);

    // Rotated in OBF and in the file, the old secret removed (its token dies with it).
    assert!(sim.sim.add_secret("REREAD", "second-secret"));
    dir.write("secret", "second-secret\n");
    assert!(sim.sim.remove_secret("REREAD", "first-secret"));
    let report = org.probe().await;
    assert!(!report.success);
    assert_eq!(report.token, TokenUse::Failed, "{report:?}");
    assert_eq!(
        report.token_failure, None,
        "not reported as a rejection: {report:?}"
    );
    assert_eq!(report.credentials_valid, Some(true), "{report:?}");
    let text = metrics.render();
    let value = |series: &str| metric_value(&text, series);
    assert_eq!(
        value("obf_credentials_valid{org=\"acme\"}"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        value("obf_token_refresh_failures_total{org=\"acme\",reason=\"rejected\"}"),
        None,
        "{text}"
    );
    assert_eq!(
        value("obf_token_refreshes_total{org=\"acme\",result=\"failure\"}"),
        Some(1.0),
        "the request was sent and failed: {text}"
    );
    let stats = sim.sim.client_stats("REREAD").unwrap();
    assert_eq!(stats.removed_secret_rejections, 1, "{stats:?}");

    // The next run (after the spacing) uses the new secret.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let report = org.probe().await;
    assert!(report.success, "{report:?}");
    let stats = sim.sim.client_stats("REREAD").unwrap();
    assert_eq!(stats.tokens_issued_per_secret, [1, 1], "{stats:?}");
    assert_eq!(stats.rate_limited, 0, "{stats:?}");
}

/// The demo's rotation, on a faster clock: the rotated org stays valid through the whole cycle.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_rotation_raises_no_alarm() {
    let sim = TestSim::with_spacing(Duration::from_secs(1)).await;
    demo::add_demo_clients(&sim.sim);
    let dir = TempDir::new("demo-rotation");
    let file = dir.write_path("rotated.secret");
    demo::write_secret(&file, demo::ROTATED_SECRET)
        .await
        .unwrap();
    let mut config = demo::demo_config(sim.addr, Some(&dir.write_path(""))).unwrap();
    config
        .orgs
        .retain(|org| org.name.as_str() == demo::ROTATED_ORG);
    for org in &mut config.orgs {
        org.schedule = Schedule::Interval(Duration::from_secs(1));
        org.token_min_interval = Duration::from_secs(1);
    }
    let app = App::spawn_config(config).await;
    let valid = "obf_credentials_valid{org=\"rotated\"}";
    app.wait_for(valid, Duration::from_secs(10), |v| v == 1.0)
        .await;

    let rotation = Rotation {
        add_after: Duration::from_millis(500),
        write_after: Duration::from_millis(500),
        remove_after: Duration::from_secs(8),
    };
    let cycle = tokio::spawn(demo::rotate_cycle(sim.sim.clone(), file, rotation));
    let started = Instant::now();
    let mut removed = false;
    // One rotation takes 9 s; sample every 200 ms until the old secret is gone and a bit after.
    for _ in 0..100 {
        assert_eq!(
            app.value(valid).await,
            Some(1.0),
            "after {:?}",
            started.elapsed()
        );
        let stats = sim.sim.client_stats("DEMOROTATED").unwrap();
        removed = removed || (stats.tokens_issued_per_secret.len() == 2 && stats.secrets == 1);
        if removed && started.elapsed() > Duration::from_secs(12) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    cycle.abort();
    let stats = sim.sim.client_stats("DEMOROTATED").unwrap();
    assert!(removed, "the old secret was never removed: {stats:?}");
    assert!(stats.tokens_issued_per_secret[1] >= 1, "{stats:?}");
    assert_eq!(stats.rejected, 0, "{stats:?}");
    app.stop().await;
}

/// A reload that brings only a new secret keeps the org's schedule (no run at once) and drops
/// the token: the next probe asks with the new secret.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_only_reload_keeps_the_schedule_and_drops_the_token() {
    let sim = TestSim::with_spacing(Duration::from_millis(200)).await;
    let dir = TempDir::new("secret-reload");
    sim.sim.add_client("SECRELOAD", "first-secret");
    let file = dir.write("secret", "first-secret\n");
    let config = format!(
        "[[org]]\nname = \"acme\"\nclient_id = \"SECRELOAD\"\nclient_secret_file = \"{}\"\n\
         host = \"{}\"\ninterval = \"1h\"\ntoken_min_interval = \"1s\"\n",
        file.display(),
        sim.url()
    );
    let path = dir.write("config.toml", &config);
    let app = App::spawn_file(&path).await;
    let pings = "obf_pings_total{org=\"acme\",result=\"success\"}";
    app.wait_for(pings, Duration::from_secs(10), |v| v == 1.0)
        .await;

    assert!(sim.sim.add_secret("SECRELOAD", "second-secret"));
    dir.write("secret", "second-secret\n");
    let response = reqwest::Client::new()
        .post(app.url("/-/reload"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(app.value(pings).await, Some(1.0), "the org was restarted");
    assert_eq!(
        app.value("obf_credentials_valid{org=\"acme\"}").await,
        Some(1.0)
    );

    let (status, _) = crate::support::get(&app.url("/probe?org=acme")).await;
    assert_eq!(status, 200);
    let stats = sim.sim.client_stats("SECRELOAD").unwrap();
    assert_eq!(stats.tokens_issued_per_secret, [1, 1], "{stats:?}");
    app.stop().await;
}
