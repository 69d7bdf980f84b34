//! End to end with a real Prometheus (Debian's `prometheus` package): it scrapes the agent, which
//! probes the simulator with faults injected. Every dashboard query must return series, every rule
//! must evaluate without error, and exactly the expected alerts must be pending or firing.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use obf_sim::Faults;
use serde_json::Value;

use crate::cli::TempDir;
use crate::support::{closed_port, App, TestSim};

const EXPECTED: [&str; 5] = [
    "ObfCredentialsRejected",
    "ObfPingFailing",
    "ObfPingLatencyHigh",
    "ObfSubscriptionEndingSoon",
    "ObfSubscriptionEndingVerySoon",
];
const NOT_EXPECTED: [&str; 8] = [
    "ObfExporterDown",
    "ObfExporterTaskRestarted",
    "ObfExporterAbsent",
    "ObfConfigReloadFailed",
    "ObfRateLimited",
    "ObfProbesStale",
    "ObfTokenRefreshFailingTokenExpiring",
    "ObfCredentialsUnverified",
];

/// Kills Prometheus when the test ends, however it ends.
struct Prometheus {
    child: Child,
    url: String,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn start_prometheus(dir: &TempDir, agent: &str) -> Prometheus {
    let binary = std::env::var("PROMETHEUS").unwrap_or_else(|_| "prometheus".to_string());
    let config = dir.write(
        "prometheus.yml",
        &format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {}\n  - {}\nscrape_configs:\n  - job_name: obf-exporter\n    static_configs:\n      - targets: ['{agent}']\n",
            repo("config/prometheus/recording.yml").display(),
            repo("config/prometheus/alerts.yml").display(),
        ),
    );
    let port = closed_port();
    let data = dir.write("data-marker", "");
    let log = std::fs::File::create(dir.write("prometheus.log", "")).unwrap();
    let child = Command::new(&binary)
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--storage.tsdb.path={}", data.parent().unwrap().join("data").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot start {binary} ({e}): install Debian's `prometheus` package or set PROMETHEUS")
        });
    Prometheus {
        child,
        url: format!("http://127.0.0.1:{port}"),
    }
}

async fn api(prometheus: &Prometheus, path: &str, query: &[(&str, &str)]) -> Value {
    // The query API takes its parameters as a form in a POST.
    let url = format!("{}{path}", prometheus.url);
    let client = reqwest::Client::new();
    let request = match query.is_empty() {
        true => client.get(url),
        false => client.post(url).form(query),
    };
    let response = request.send().await;
    match response {
        Ok(response) => response.json().await.unwrap_or(Value::Null),
        Err(_) => Value::Null,
    }
}

/// Every `expr` in the dashboard, with Grafana's variables substituted.
fn dashboard_queries() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(repo("dashboards/obf-exporter.json")).unwrap();
    let dashboard: Value = serde_json::from_str(&text).unwrap();
    let mut queries = Vec::new();
    let mut stack = vec![&dashboard];
    while let Some(value) = stack.pop() {
        match value {
            Value::Object(map) => {
                if let (Some(Value::String(title)), Some(Value::Array(targets))) =
                    (map.get("title"), map.get("targets"))
                {
                    for target in targets {
                        if let Some(Value::String(expr)) = target.get("expr") {
                            queries.push((title.clone(), substitute(expr)));
                        }
                    }
                }
                stack.extend(map.values());
            }
            Value::Array(items) => stack.extend(items),
            _ => {}
        }
    }
    queries
}

fn substitute(expr: &str) -> String {
    expr.replace("$__rate_interval", "1m")
        .replace("$__interval", "15s")
        .replace("$__range", "1h")
        .replace("$job", "obf-exporter")
        .replace("$instance", ".*")
        .replace("$org", ".*")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_evaluates_every_panel_and_rule_and_fires_the_expected_alerts() {
    let sim = TestSim::with_spacing(Duration::from_secs(1)).await;
    let common = "interval = \"2s\"\ntoken_min_interval = \"1s\"\ntimeout = \"5s\"";
    let mut config = String::new();
    config.push_str(&sim.org("healthy", "E2EHEALTHY", common));
    config.push_str(&sim.org("revoked", "E2EREVOKED", common));
    config.push_str(&sim.org("failing", "E2EFAILING", common));
    config.push_str(&sim.org(
        "slow",
        "E2ESLOW",
        "interval = \"5s\"\ntoken_min_interval = \"1s\"\ntimeout = \"4s\"",
    ));
    config.push_str(&sim.org("expiring", "E2EEXPIRING", common));
    sim.sim.revoke("E2EREVOKED");
    sim.sim.set_faults(
        "E2EFAILING",
        Faults {
            ping_status: Some(503),
            ..Faults::default()
        },
    );
    sim.sim.set_faults(
        "E2ESLOW",
        Faults {
            ping_latency_ms: Some(3000),
            ..Faults::default()
        },
    );
    let in_five_days = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
        + 5 * 86400;
    sim.sim.set_faults(
        "E2EEXPIRING",
        Faults {
            paid_until: Some(in_five_days),
            ..Faults::default()
        },
    );

    let app = App::spawn(&config).await;
    let dir = TempDir::new("prometheus");
    let prometheus = start_prometheus(&dir, &app.addr.to_string());

    // Wait until the target is scraped, then let the rate windows fill.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let up = api(
            &prometheus,
            "/api/v1/query",
            &[("query", "up{job=\"obf-exporter\"}")],
        )
        .await;
        if up["data"]["result"][0]["value"][1] == "1" {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "Prometheus never scraped the agent: {}",
            std::fs::read_to_string(dir.write_path("prometheus.log")).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    tokio::time::sleep(Duration::from_secs(40)).await;

    let mut problems = Vec::new();
    let queries = dashboard_queries();
    assert!(
        queries.len() >= 20,
        "only {} dashboard queries",
        queries.len()
    );
    for (title, expr) in &queries {
        let answer = api(&prometheus, "/api/v1/query", &[("query", expr)]).await;
        if answer["status"] != "success" {
            problems.push(format!("panel {title:?}: {expr}: {}", answer["error"]));
        } else if answer["data"]["result"]
            .as_array()
            .is_none_or(|r| r.is_empty())
        {
            problems.push(format!("panel {title:?}: {expr}: no series"));
        }
    }

    let rules = api(&prometheus, "/api/v1/rules", &[]).await;
    let mut rule_count = 0;
    for group in rules["data"]["groups"]
        .as_array()
        .cloned()
        .unwrap_or_default()
    {
        for rule in group["rules"].as_array().cloned().unwrap_or_default() {
            rule_count += 1;
            if rule["health"] != "ok" {
                problems.push(format!(
                    "rule {}: health {} {}",
                    rule["name"], rule["health"], rule["lastError"]
                ));
            }
            let answer = api(
                &prometheus,
                "/api/v1/query",
                &[("query", rule["query"].as_str().unwrap_or(""))],
            )
            .await;
            if answer["status"] != "success" {
                problems.push(format!("rule {}: {}", rule["name"], answer["error"]));
            }
        }
    }
    assert!(rule_count >= 11, "only {rule_count} rules loaded: {rules}");

    let alerts = api(&prometheus, "/api/v1/alerts", &[]).await;
    let active: BTreeSet<String> = alerts["data"]["alerts"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter(|a| a["state"] == "pending" || a["state"] == "firing")
        .filter_map(|a| a["labels"]["alertname"].as_str().map(str::to_string))
        .collect();
    for name in EXPECTED {
        if !active.contains(name) {
            problems.push(format!("alert {name} is neither pending nor firing"));
        }
    }
    for name in NOT_EXPECTED {
        if active.contains(name) {
            problems.push(format!("alert {name} is active but must not be"));
        }
    }
    let summary = format!(
        "{} dashboard queries, {rule_count} rules, active alerts: {active:?}",
        queries.len()
    );
    println!("e2e: {summary}");
    drop(prometheus);
    app.stop().await;
    assert!(problems.is_empty(), "{summary}\n{}", problems.join("\n"));
}
