//! Reload, on-demand probes, the `probe` and `healthcheck` commands, and sharding.

use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

use crate::cli::TempDir;
use crate::support::{closed_port, get, App, TestSim};

const BIN: &str = env!("CARGO_BIN_EXE_obf-exporter");

async fn post(url: &str) -> (u16, String) {
    let response = reqwest::Client::new().post(url).send().await.unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

fn org_with_file(dir: &TempDir, sim: &TestSim, name: &str, client_id: &str, extra: &str) -> String {
    let secret = format!("{client_id}-secret-value");
    sim.sim.add_client(client_id, &secret);
    let file = dir.write(&format!("{name}.secret"), &format!("{secret}\n"));
    format!(
        "[[org]]\nname = \"{name}\"\nclient_id = \"{client_id}\"\nclient_secret_file = \"{}\"\nhost = \"{}\"\n{extra}\n",
        file.display(),
        sim.url()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_keeps_unchanged_orgs_tokens_and_applies_the_rest() {
    let sim = TestSim::with_spacing(Duration::from_millis(200)).await;
    let dir = TempDir::new("reload");
    let keep = org_with_file(&dir, &sim, "keep", "KEEP", "interval = \"1s\"");
    let change = org_with_file(&dir, &sim, "change", "CHANGE", "interval = \"1s\"");
    let gone = org_with_file(&dir, &sim, "gone", "GONE", "interval = \"1s\"");
    let path = dir.write("config.toml", &format!("{keep}{change}{gone}"));
    let app = App::spawn_file(&path).await;
    app.wait_for(
        "obf_ping_success{org=\"gone\"}",
        Duration::from_secs(5),
        |v| v == 1.0,
    )
    .await;
    app.wait_for(
        "obf_ping_success{org=\"keep\"}",
        Duration::from_secs(5),
        |v| v == 1.0,
    )
    .await;
    let keep_tokens = sim.sim.client_stats("KEEP").unwrap().tokens_issued;
    assert_eq!(keep_tokens, 1);

    // An invalid file changes nothing and says why.
    dir.write(
        "config.toml",
        &format!("{keep}[[org]]\nname = \"broken\"\n"),
    );
    let (status, body) = post(&app.url("/-/reload")).await;
    assert_eq!(status, 500, "{body}");
    assert!(body.contains("client_id"), "{body}");
    assert_eq!(
        app.value("obf_config_last_reload_successful").await,
        Some(0.0)
    );
    assert!(app.metrics().await.contains("org=\"gone\""));

    // A valid one: keep as it is, change's interval changed and secret rotated, gone removed, new added.
    sim.sim.add_client("CHANGE", "rotated-secret");
    dir.write("change.secret", "rotated-secret\n");
    let change = change.replace("interval = \"1s\"", "interval = \"2s\"");
    let new = org_with_file(&dir, &sim, "new", "NEW", "interval = \"1s\"");
    dir.write("config.toml", &format!("{keep}{change}{new}"));
    let (status, body) = post(&app.url("/-/reload")).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains(
            "1 added, 1 changed, 0 relabelled, 0 with a new secret, 1 removed, 1 unchanged"
        ),
        "{body}"
    );
    assert_eq!(
        app.value("obf_config_last_reload_successful").await,
        Some(1.0)
    );
    app.wait_for(
        "obf_ping_success{org=\"new\"}",
        Duration::from_secs(5),
        |v| v == 1.0,
    )
    .await;
    app.wait_for(
        "obf_token_refreshes_total{org=\"change\",result=\"success\"}",
        Duration::from_secs(5),
        |v| v >= 1.0,
    )
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let metrics = app.metrics().await;
    assert!(
        !metrics.contains("org=\"gone\""),
        "removed org's series remain"
    );
    assert_eq!(
        sim.sim.client_stats("KEEP").unwrap().tokens_issued,
        keep_tokens,
        "reload caused a token request"
    );
    assert!(
        crate::support::metric_value(&metrics, "obf_ping_success{org=\"change\"}") == Some(1.0)
    );

    let (status, _) = get(&app.url("/-/reload")).await;
    assert_eq!(status, 405);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_binary() {
    let sim = TestSim::with_spacing(Duration::from_millis(200)).await;
    let dir = TempDir::new("sighup");
    let first = org_with_file(&dir, &sim, "first", "HUPFIRST", "interval = \"1s\"");
    let path = dir.write("config.toml", &first);
    let agent = crate::cli::Agent::start(&path, &[]).await;
    let second = org_with_file(&dir, &sim, "second", "HUPSECOND", "interval = \"1s\"");
    dir.write("config.toml", &format!("{first}{second}"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    agent.signal("-HUP");
    let url = format!("http://{}/metrics", agent.addr);
    let mut seen = false;
    for _ in 0..50 {
        if get(&url)
            .await
            .1
            .contains("obf_ping_success{org=\"second\"} 1")
        {
            seen = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let logs = agent.stop().await;
    assert!(seen, "second org never probed after SIGHUP:\n{logs}");
    assert!(logs.contains("configuration reloaded"));
    assert_eq!(sim.sim.client_stats("HUPFIRST").unwrap().tokens_issued, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_endpoint_probes_now_and_reuses_the_token() {
    let sim = TestSim::with_spacing(Duration::from_millis(200)).await;
    let config = sim.org("acme", "PROBEME", "interval = \"1h\"");
    let app = App::spawn(&config).await;
    app.wait_for(
        "obf_ping_success{org=\"acme\"}",
        Duration::from_secs(5),
        |v| v == 1.0,
    )
    .await;
    let (status, body) = get(&app.url("/probe?org=acme")).await;
    assert_eq!(status, 200);
    assert!(
        body.contains("obf_pings_total{org=\"acme\",result=\"success\"} 2"),
        "{body}"
    );
    assert!(!body.contains("obf_exporter_build_info"));
    assert_eq!(sim.sim.client_stats("PROBEME").unwrap().tokens_issued, 1);

    let (status, trace) = get(&app.url("/probe?org=acme&debug=true")).await;
    assert_eq!(status, 200);
    assert!(trace.contains("cached token reused"), "{trace}");
    assert!(trace.contains("HTTP 200"), "{trace}");
    for token in sim.sim.issued_tokens("PROBEME") {
        assert!(!trace.contains(&token));
    }
    assert!(!trace.contains("PROBEME-secret-value"));

    let (status, body) = get(&app.url("/probe?org=nobody")).await;
    assert_eq!(status, 404);
    assert!(body.contains("unknown org \"nobody\""), "{body}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_command_prints_each_org_and_fails_if_any_failed() {
    let sim = TestSim::with_spacing(Duration::from_millis(200)).await;
    let dir = TempDir::new("probecmd");
    let good = sim.org("good", "CMDGOOD", "");
    let bad = sim.org("bad", "CMDBAD", "");
    sim.sim.revoke("CMDBAD");
    let path = dir.write("config.toml", &format!("{good}{bad}"));

    let output = Command::new(BIN)
        .args(["probe", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    let good_line = stdout.lines().find(|l| l.starts_with("good ")).unwrap();
    assert!(
        good_line.contains(" ok ") && good_line.contains("200"),
        "{good_line}"
    );
    let bad_line = stdout.lines().find(|l| l.starts_with("bad ")).unwrap();
    assert!(
        bad_line.contains("FAILED") && bad_line.contains("no_token"),
        "{bad_line}"
    );

    // A new process has no cached token: wait out the simulator's token spacing.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let output = Command::new(BIN)
        .args(["probe", "--org", "good", "--format", "json", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stdout)
    );
    let reports: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(reports.as_array().unwrap().len(), 1);
    assert_eq!(reports[0]["org"], "good");
    assert_eq!(reports[0]["success"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shards_cover_every_org_exactly_once() {
    let sim = TestSim::with_spacing(Duration::from_millis(100)).await;
    let dir = TempDir::new("shards");
    let mut config = String::new();
    let mut names = BTreeSet::new();
    for i in 0..30 {
        let name = format!("org-{i}");
        config.push_str(&sim.org(&name, &format!("SHARD{i}"), ""));
        names.insert(name);
    }
    let path = dir.write("config.toml", &config);
    let mut seen = Vec::new();
    for k in 0..3 {
        let output = Command::new(BIN)
            .args([
                "probe",
                "--format",
                "json",
                "--shard",
                &format!("{k}/3"),
                "--config",
            ])
            .arg(&path)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let reports: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        for report in reports.as_array().unwrap() {
            seen.push(report["org"].as_str().unwrap().to_string());
        }
    }
    let unique: BTreeSet<String> = seen.iter().cloned().collect();
    assert_eq!(seen.len(), 30, "an org was probed by two shards");
    assert_eq!(unique, names);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthcheck_command_reports_a_running_agent() {
    let sim = TestSim::with_spacing(Duration::from_millis(100)).await;
    let app = App::spawn(&sim.org("acme", "HEALTH", "")).await;
    let up = Command::new(BIN)
        .args(["healthcheck", "--url", &app.url("/-/healthy")])
        .status()
        .unwrap();
    assert!(up.success());
    let down = Command::new(BIN)
        .args([
            "healthcheck",
            "--url",
            &format!("http://127.0.0.1:{}/-/healthy", closed_port()),
        ])
        .status()
        .unwrap();
    assert_eq!(down.code(), Some(1));
    app.stop().await;
}
