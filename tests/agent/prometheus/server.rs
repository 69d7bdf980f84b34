//! The Prometheus side of the end-to-end test: starting a real Prometheus (Debian's `prometheus`
//! package, or `$PROMETHEUS`) that scrapes the agents and evaluates the scaled rules, its HTTP
//! API, and the dashboard's queries with Grafana's variables filled in.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use super::scaled::ScaledRules;
use crate::cli::TempDir;
use crate::support::closed_port;

/// Kills Prometheus when the test ends, however it ends.
pub struct Prometheus {
    child: Child,
    url: String,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts Prometheus in `dir`, scraping every address of `targets` in job `obf-exporter` and
/// evaluating `rules`, both `every`.
pub fn start_prometheus(
    dir: &TempDir,
    targets: &[&str],
    rules: &ScaledRules,
    every: Duration,
) -> Prometheus {
    let binary = std::env::var("PROMETHEUS").unwrap_or_else(|_| "prometheus".to_string());
    let every = format!("{}ms", every.as_millis());
    let targets = targets
        .iter()
        .map(|t| format!("'{t}'"))
        .collect::<Vec<_>>()
        .join(", ");
    let config = dir.write(
        "prometheus.yml",
        &format!(
            "global:\n  scrape_interval: {every}\n  evaluation_interval: {every}\nrule_files:\n  - {}\n  - {}\nscrape_configs:\n  - job_name: obf-exporter\n    static_configs:\n      - targets: [{targets}]\n",
            rules.recording.display(),
            rules.alerts.display(),
        ),
    );
    let port = closed_port();
    let data = dir.write("data-marker", "");
    let log = std::fs::File::create(dir.write("prometheus.log", "")).unwrap();
    let child = Command::new(&binary)
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            data.parent().unwrap().join("data").display()
        ))
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

/// GET (no parameters) or POST (a form: the query API's way) of `path`; `Null` on any error.
pub async fn api(prometheus: &Prometheus, path: &str, query: &[(&str, &str)]) -> Value {
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

/// The result of an instant query, or an error message (the API's, or "no answer").
pub async fn query(prometheus: &Prometheus, expr: &str) -> Result<Vec<Value>, String> {
    let answer = api(prometheus, "/api/v1/query", &[("query", expr)]).await;
    match answer["status"] == "success" {
        true => Ok(answer["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default()),
        false => Err(format!("{}", answer["error"])),
    }
}

/// Every rule is healthy and its expression answers; returns how many rules are loaded.
pub async fn check_rules(prometheus: &Prometheus, problems: &mut Vec<String>) -> usize {
    let rules_answer = api(prometheus, "/api/v1/rules", &[]).await;
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
            if let Err(error) = query(prometheus, rule["query"].as_str().unwrap_or("")).await {
                problems.push(format!("rule {}: {error}", rule["name"]));
            }
        }
    }
    assert!(
        rule_count >= 30,
        "only {rule_count} rules loaded: {rules_answer}"
    );
    rule_count
}

/// One target of a dashboard panel, its `expr` as written.
pub struct PanelQuery {
    pub title: String,
    pub ref_id: String,
    pub expr: String,
    pub legend: String,
}

/// Every target of every panel of `dashboard` (a path in the repository).
pub fn dashboard_queries(dashboard: &Path) -> Vec<PanelQuery> {
    let text = std::fs::read_to_string(dashboard).unwrap();
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
                            queries.push(PanelQuery {
                                title: title.clone(),
                                ref_id: target["refId"].as_str().unwrap_or("").to_string(),
                                expr: expr.clone(),
                                legend: target["legendFormat"].as_str().unwrap_or("").to_string(),
                            });
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

/// The label names a legend format shows (`{{org}} p95`: `org`).
pub fn legend_labels(legend: &str) -> Vec<&str> {
    legend
        .split("{{")
        .skip(1)
        .filter_map(|rest| rest.split_once("}}").map(|(name, _)| name.trim()))
        .collect()
}

/// `expr` as Grafana sends it with `instance` selected and every org ("All").
pub fn substitute(expr: &str, instance: &str) -> String {
    expr.replace("$__rate_interval", "1m")
        .replace("$__interval", "15s")
        .replace("$__range", "1h")
        .replace("$job", "obf-exporter")
        .replace("$instance", &instance.replace('.', "\\\\."))
        .replace("$org", ".*")
}
