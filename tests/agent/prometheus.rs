//! End to end with a real Prometheus (Debian's `prometheus` package): it scrapes the agent binary,
//! which probes the simulator with faults injected, and evaluates the shipped rules on a clock
//! sped up 30 times (see `scaled`). Messy outages (steady, two alternating causes, every other
//! probe failing) must each fire their alert within its `for` plus two evaluation intervals of
//! becoming pending, as one alert whose pending timer never restarts; then every dashboard query
//! must return series, every rule must evaluate without error, and exactly the expected alerts
//! must be pending or firing.

mod scaled;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use obf_sim::{Faults, Simulator};
use serde_json::Value;

use crate::cli::{Agent, TempDir};
use crate::support::{closed_port, TestSim};
use scaled::ScaledRules;

const EXPECTED: [&str; 6] = [
    "ObfCredentialsRejected",
    "ObfPingFailing",
    "ObfPingFailingIntermittently",
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

fn start_prometheus(
    dir: &TempDir,
    agent: &str,
    rules: &ScaledRules,
    every: Duration,
) -> Prometheus {
    let binary = std::env::var("PROMETHEUS").unwrap_or_else(|_| "prometheus".to_string());
    let every = format!("{}ms", every.as_millis());
    let config = dir.write(
        "prometheus.yml",
        &format!(
            "global:\n  scrape_interval: {every}\n  evaluation_interval: {every}\nrule_files:\n  - {}\n  - {}\nscrape_configs:\n  - job_name: obf-exporter\n    static_configs:\n      - targets: ['{agent}']\n",
            rules.recording.display(),
            rules.alerts.display(),
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

/// Scrape and evaluation interval of the test's Prometheus; the shipped rules' durations are
/// divided by the shipped evaluation interval over this (30 s / 1 s).
const EVERY: Duration = Duration::from_secs(1);
/// How often the test reads `/api/v1/alerts`.
const POLL: Duration = Duration::from_millis(250);
/// Observation slack on top of `for` + 2 evaluation intervals: one poll plus the API round trip.
const SLACK: Duration = Duration::from_secs(1);
/// How long the alternating and intermittent orgs stay in each state: two probe intervals, so
/// every other pair of probes fails (half of them: well clear of the intermittent alert's
/// threshold of a quarter, which a 30-second window of 15 probes can only resolve to ±1/15).
const FLIP: Duration = Duration::from_secs(4);

/// One messy outage: the org it hits, the alert that must fire and the one that must not.
struct Scenario {
    name: &'static str,
    org: &'static str,
    fires: &'static str,
    never: &'static str,
    /// Every ping fails: the condition holds throughout, so the pending timer must never restart
    /// (the alert's identity must not change). The intermittent ratio may cross its threshold
    /// more than once while it climbs (one probe moves it by 1/15), so there the test measures
    /// from the `activeAt` the alert fired with and reports the restarts.
    one_timer: bool,
}

const SCENARIOS: [Scenario; 3] = [
    Scenario {
        name: "steady outage (503)",
        org: "steady",
        fires: "ObfPingFailing",
        never: "ObfPingFailingIntermittently",
        one_timer: true,
    },
    Scenario {
        name: "alternating reasons (503 / 404)",
        org: "alternating",
        fires: "ObfPingFailing",
        never: "ObfPingFailingIntermittently",
        one_timer: true,
    },
    Scenario {
        name: "intermittent failure (503 / healthy)",
        org: "intermittent",
        fires: "ObfPingFailingIntermittently",
        never: "ObfPingFailing",
        one_timer: false,
    },
];

/// What the test saw of one (alert, org) over its polls.
#[derive(Debug, Default)]
struct Seen {
    /// Every `activeAt` reported (unix ms): more than one means the pending timer restarted.
    active_at: BTreeSet<i64>,
    /// When the test first saw it firing (unix ms), and the `activeAt` it fired with.
    fired_at: Option<(i64, i64)>,
    /// Every label name it carried.
    labels: BTreeSet<String>,
}

fn unix_ms(time: SystemTime) -> i64 {
    time.duration_since(UNIX_EPOCH).unwrap().as_millis() as i64
}

fn ping_status(status: Option<u16>) -> Faults {
    Faults {
        ping_status: status,
        ..Faults::default()
    }
}

/// Alternates E2EALTERNATING between 503 and 404 and E2EINTERMITTENT between 503 and healthy
/// every [`FLIP`], `limit` times at most.
fn flip_faults(sim: Simulator, limit: u32) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        for n in 0..limit {
            let odd = n % 2 == 1;
            sim.set_faults(
                "E2EALTERNATING",
                ping_status(Some(if odd { 404 } else { 503 })),
            );
            sim.set_faults("E2EINTERMITTENT", ping_status((!odd).then_some(503)));
            tokio::time::sleep(FLIP).await;
        }
    })
}

/// Polls `/api/v1/alerts` until every scenario's alert fired or `within` passed.
async fn watch_alerts(
    prometheus: &Prometheus,
    within: Duration,
) -> BTreeMap<(String, String), Seen> {
    let mut seen: BTreeMap<(String, String), Seen> = BTreeMap::new();
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let answer = api(prometheus, "/api/v1/alerts", &[]).await;
        let now = unix_ms(SystemTime::now());
        for alert in answer["data"]["alerts"]
            .as_array()
            .cloned()
            .unwrap_or_default()
        {
            let label = |name: &str| alert["labels"][name].as_str().unwrap_or("").to_string();
            let entry = seen.entry((label("alertname"), label("org"))).or_default();
            let active_at = alert["activeAt"]
                .as_str()
                .and_then(|at| chrono::DateTime::parse_from_rfc3339(at).ok())
                .map(|at| at.timestamp_millis());
            entry.active_at.extend(active_at);
            if let Some(labels) = alert["labels"].as_object() {
                entry.labels.extend(labels.keys().cloned());
            }
            if alert["state"] == "firing" && entry.fired_at.is_none() {
                entry.fired_at = Some((now, active_at.unwrap_or(now)));
            }
        }
        let all_fired = SCENARIOS.iter().all(|s| {
            seen.get(&(s.fires.to_string(), s.org.to_string()))
                .is_some_and(|e| e.fired_at.is_some())
        });
        if all_fired || tokio::time::Instant::now() > deadline {
            return seen;
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Checks each scenario and returns its measured times (or the problems found).
fn judge(
    seen: &BTreeMap<(String, String), Seen>,
    rules: &ScaledRules,
    fault_at: i64,
    problems: &mut Vec<String>,
) -> Vec<String> {
    let identity: BTreeSet<&str> = ["alertname", "job", "instance", "org", "severity"].into();
    let mut measured = Vec::new();
    for s in &SCENARIOS {
        let hold = rules.hold(s.fires);
        let bound = (hold + 2 * EVERY + SLACK).as_millis() as i64;
        let key = (s.fires.to_string(), s.org.to_string());
        match seen.get(&key) {
            Some(Seen {
                active_at,
                fired_at: Some((fired, pending)),
                labels,
            }) => {
                let (fired, pending) = (*fired, *pending);
                let first = active_at.first().copied().unwrap_or(pending);
                if s.one_timer && active_at.len() != 1 {
                    problems.push(format!(
                        "{}: {} restarted its pending timer: activeAt {:?} (ms after the fault)",
                        s.name,
                        s.fires,
                        active_at.iter().map(|a| a - fault_at).collect::<Vec<_>>()
                    ));
                }
                if fired - pending > bound {
                    problems.push(format!(
                        "{}: {} fired {} ms after it became pending, more than for {hold:?} + 2 x {EVERY:?} + {SLACK:?}",
                        s.name,
                        s.fires,
                        fired - pending
                    ));
                }
                let extra: Vec<_> = labels
                    .iter()
                    .filter(|l| !identity.contains(l.as_str()))
                    .collect();
                if !extra.is_empty() {
                    problems.push(format!("{}: {} carries labels {extra:?}", s.name, s.fires));
                }
                measured.push(format!(
                    "{}: {} first pending {:.1} s after the fault, pending for good at {:.1} s ({} restart(s)), firing {:.1} s after the fault ({:.1} s after pending; for {hold:?}, evaluation {EVERY:?})",
                    s.name,
                    s.fires,
                    (first - fault_at) as f64 / 1000.0,
                    (pending - fault_at) as f64 / 1000.0,
                    active_at.len() - 1,
                    (fired - fault_at) as f64 / 1000.0,
                    (fired - pending) as f64 / 1000.0,
                ));
            }
            other => problems.push(format!(
                "{}: {} never fired for org {}: {other:?}",
                s.name, s.fires, s.org
            )),
        }
        if let Some(wrong) = seen.get(&(s.never.to_string(), s.org.to_string())) {
            if wrong.fired_at.is_some() {
                problems.push(format!("{}: {} fired for org {}", s.name, s.never, s.org));
            }
        }
    }
    measured
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_fires_each_messy_outage_in_time_and_evaluates_every_panel_and_rule() {
    let factor = (scaled::shipped_evaluation_interval().as_millis() / EVERY.as_millis()) as u32;
    let dir = TempDir::new("prometheus");
    let rules = ScaledRules::write(&dir.write_path(""), factor);
    // The default probe interval (60 s), scaled like the rules: 2 s.
    let probe = format!("{}ms", (Duration::from_secs(60) / factor).as_millis());
    let sim = TestSim::with_spacing(Duration::from_secs(1)).await;
    let common = format!("interval = \"{probe}\"\ntoken_min_interval = \"1s\"\ntimeout = \"5s\"");
    let mut config = String::new();
    for (org, client_id) in [
        ("healthy", "E2EHEALTHY"),
        ("revoked", "E2EREVOKED"),
        ("expiring", "E2EEXPIRING"),
        ("steady", "E2ESTEADY"),
        ("alternating", "E2EALTERNATING"),
        ("intermittent", "E2EINTERMITTENT"),
    ] {
        config.push_str(&sim.org(org, client_id, &common));
    }
    config.push_str(&sim.org(
        "slow",
        "E2ESLOW",
        &format!("interval = \"{probe}\"\ntoken_min_interval = \"1s\"\ntimeout = \"4s\""),
    ));
    sim.sim.revoke("E2EREVOKED");
    sim.sim.set_faults(
        "E2ESLOW",
        Faults {
            ping_latency_ms: Some(3000),
            ..Faults::default()
        },
    );
    let in_five_days = unix_ms(SystemTime::now()) / 1000 + 5 * 86400;
    sim.sim.set_faults(
        "E2EEXPIRING",
        Faults {
            paid_until: Some(in_five_days),
            ..Faults::default()
        },
    );

    let agent = Agent::start(&dir.write("agent.toml", &config), &[]).await;
    let prometheus = start_prometheus(&dir, &agent.addr, &rules, EVERY);

    // Wait until the target is scraped, then give the windows a healthy history.
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
    // A healthy history as long as the rules' longest window (15 minutes, scaled: 30 s), so the
    // failure ratio climbs from 0 as it would in production.
    tokio::time::sleep(Duration::from_secs(15 * 60) / factor + 2 * EVERY).await;

    // The outages start now; 40 flips (160 s) outlast the watch below.
    let fault_at = unix_ms(SystemTime::now());
    sim.sim.set_faults("E2ESTEADY", ping_status(Some(503)));
    let flipper = flip_faults(sim.sim.clone(), 40);
    let seen = watch_alerts(&prometheus, Duration::from_secs(100)).await;
    let mut problems = Vec::new();
    let measured = judge(&seen, &rules, fault_at, &mut problems);
    for line in &measured {
        println!("e2e: {line}");
    }

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

    let rules_answer = api(&prometheus, "/api/v1/rules", &[]).await;
    let mut rule_count = 0;
    for group in rules_answer["data"]["groups"]
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
    assert!(
        rule_count >= 30,
        "only {rule_count} rules loaded: {rules_answer}"
    );

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
        "{} dashboard queries, {rule_count} rules, active alerts: {active:?}\n{}",
        queries.len(),
        measured.join("\n")
    );
    println!("e2e: {summary}");
    flipper.abort();
    drop(prometheus);
    agent.stop().await;
    assert!(problems.is_empty(), "{summary}\n{}", problems.join("\n"));
}
