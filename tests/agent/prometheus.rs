//! End to end with a real Prometheus (Debian's `prometheus` package): it scrapes the agent binary,
//! which probes the simulator with faults injected, and evaluates the shipped rules on a clock
//! sped up 30 times (see `scaled`). Messy outages (steady, two alternating causes, every other
//! probe failing) must each fire their alert within its `for` plus two evaluation intervals of
//! becoming pending, as one alert whose pending timer never restarts; then every dashboard query
//! must return series, every rule must evaluate without error, and exactly the expected alerts
//! must be pending or firing.
//!
//! Once per `latency_histograms` mode, at the same time: two agent binaries, one in each mode
//! (`org`, the default, and `host`), each with its own clients of the one simulator (so neither
//! spends the other's token budget) and the same faults, scraped by one Prometheus as two shards
//! would be. Every check above is made for each agent's `instance`, as a dashboard user selecting
//! it sees it; sharing Prometheus also proves the rules and queries take a fleet whose shards run
//! different modes.

mod scaled;
mod server;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use obf_sim::{Faults, Simulator};

use crate::cli::{Agent, TempDir};
use crate::support::TestSim;
use scaled::ScaledRules;
use server::{
    api, check_rules, dashboard_queries, legend_labels, query, start_prometheus, substitute,
    Prometheus,
};

/// The alerts that must be pending or firing on each agent at the end, with their org: an alert
/// of the right name but without its org (say, from an org-less host-mode histogram) is wrong.
const EXPECTED: [(&str, &str); 7] = [
    ("ObfCredentialsRejected", "revoked"),
    ("ObfPingFailing", "steady"),
    ("ObfPingFailing", "alternating"),
    ("ObfPingFailingIntermittently", "intermittent"),
    ("ObfPingLatencyHigh", "slow"),
    ("ObfSubscriptionEndingSoon", "expiring"),
    ("ObfSubscriptionEndingVerySoon", "expiring"),
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

/// One agent of the run: its `latency_histograms` mode, the config text that selects it (none:
/// the default) and the suffix of its client ids at the simulator.
struct Mode {
    name: &'static str,
    exporter: &'static str,
    suffix: &'static str,
}

const MODES: [Mode; 2] = [
    Mode {
        name: "org",
        exporter: "",
        suffix: "",
    },
    Mode {
        name: "host",
        exporter: "[exporter]\nlatency_histograms = \"host\"\n",
        suffix: "H",
    },
];

/// Dashboard targets (panel title, refId) with no series in host mode by design: that mode keeps
/// no per-org token time (the panel's per-host target covers it). Checked to be empty there, which
/// also shows that the host-mode agent exports no per-org histogram.
const ORG_MODE_ONLY: [(&str, &str); 1] = [("Token refresh latency p95", "A")];

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
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
/// (for every mode's client) every [`FLIP`], `limit` times at most.
fn flip_faults(sim: Simulator, limit: u32) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        for n in 0..limit {
            let odd = n % 2 == 1;
            for mode in &MODES {
                sim.set_faults(
                    &format!("E2EALTERNATING{}", mode.suffix),
                    ping_status(Some(if odd { 404 } else { 503 })),
                );
                sim.set_faults(
                    &format!("E2EINTERMITTENT{}", mode.suffix),
                    ping_status((!odd).then_some(503)),
                );
            }
            tokio::time::sleep(FLIP).await;
        }
    })
}

/// The agent config of `mode`: its clients registered at `sim`, their standing faults set
/// (revoked, slow, subscription ending), every org probed every `probe`.
fn agent_config(sim: &TestSim, mode: &Mode, probe: &str) -> String {
    let id = |name: &str| format!("E2E{name}{}", mode.suffix);
    let common = format!("interval = \"{probe}\"\ntoken_min_interval = \"1s\"\ntimeout = \"5s\"");
    let mut config = mode.exporter.to_string();
    for org in [
        "healthy",
        "revoked",
        "expiring",
        "steady",
        "alternating",
        "intermittent",
    ] {
        config.push_str(&sim.org(org, &id(&org.to_uppercase()), &common));
    }
    config.push_str(&sim.org(
        "slow",
        &id("SLOW"),
        &format!("interval = \"{probe}\"\ntoken_min_interval = \"1s\"\ntimeout = \"4s\""),
    ));
    sim.sim.revoke(&id("REVOKED"));
    sim.sim.set_faults(
        &id("SLOW"),
        Faults {
            ping_latency_ms: Some(3000),
            ..Faults::default()
        },
    );
    let in_five_days = unix_ms(SystemTime::now()) / 1000 + 5 * 86400;
    sim.sim.set_faults(
        &id("EXPIRING"),
        Faults {
            paid_until: Some(in_five_days),
            ..Faults::default()
        },
    );
    config
}

/// What the test saw of one (alert, instance, org) over its polls.
#[derive(Debug, Default)]
struct Seen {
    /// Every `activeAt` reported (unix ms): more than one means the pending timer restarted.
    active_at: BTreeSet<i64>,
    /// When the test first saw it firing (unix ms), and the `activeAt` it fired with.
    fired_at: Option<(i64, i64)>,
    /// Every label name it carried.
    labels: BTreeSet<String>,
}

/// (alertname, instance, org)
type AlertKey = (String, String, String);

fn key(alert: &str, instance: &str, org: &str) -> AlertKey {
    (alert.to_string(), instance.to_string(), org.to_string())
}

/// Polls `/api/v1/alerts` until every scenario's alert fired on every instance or `within` passed.
async fn watch_alerts(
    prometheus: &Prometheus,
    instances: &[&str],
    within: Duration,
) -> BTreeMap<AlertKey, Seen> {
    let mut seen: BTreeMap<AlertKey, Seen> = BTreeMap::new();
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let answer = api(prometheus, "/api/v1/alerts", &[]).await;
        let now = unix_ms(SystemTime::now());
        for alert in answer["data"]["alerts"]
            .as_array()
            .cloned()
            .unwrap_or_default()
        {
            let label = |name: &str| alert["labels"][name].as_str().unwrap_or("");
            let entry = seen
                .entry(key(label("alertname"), label("instance"), label("org")))
                .or_default();
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
            instances.iter().all(|instance| {
                seen.get(&key(s.fires, instance, s.org))
                    .is_some_and(|e| e.fired_at.is_some())
            })
        });
        if all_fired || tokio::time::Instant::now() > deadline {
            return seen;
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Checks each scenario on the agent at `instance` (in `mode`) and returns its measured times;
/// problems found go to `problems`.
fn judge(
    seen: &BTreeMap<AlertKey, Seen>,
    rules: &ScaledRules,
    fault_at: i64,
    (mode, instance): (&str, &str),
    problems: &mut Vec<String>,
) -> Vec<String> {
    let identity: BTreeSet<&str> = ["alertname", "job", "instance", "org", "severity"].into();
    let mut measured = Vec::new();
    for s in &SCENARIOS {
        let name = format!("{mode} mode, {}", s.name);
        let hold = rules.hold(s.fires);
        let bound = (hold + 2 * EVERY + SLACK).as_millis() as i64;
        match seen.get(&key(s.fires, instance, s.org)) {
            Some(Seen {
                active_at,
                fired_at: Some((fired, pending)),
                labels,
            }) => {
                let (fired, pending) = (*fired, *pending);
                let first = active_at.first().copied().unwrap_or(pending);
                if s.one_timer && active_at.len() != 1 {
                    problems.push(format!(
                        "{name}: {} restarted its pending timer: activeAt {:?} (ms after the fault)",
                        s.fires,
                        active_at.iter().map(|a| a - fault_at).collect::<Vec<_>>()
                    ));
                }
                if fired - pending > bound {
                    problems.push(format!(
                        "{name}: {} fired {} ms after it became pending, more than for {hold:?} + 2 x {EVERY:?} + {SLACK:?}",
                        s.fires,
                        fired - pending
                    ));
                }
                let extra: Vec<_> = labels
                    .iter()
                    .filter(|l| !identity.contains(l.as_str()))
                    .collect();
                if !extra.is_empty() {
                    problems.push(format!("{name}: {} carries labels {extra:?}", s.fires));
                }
                measured.push(format!(
                    "{name}: {} first pending {:.1} s after the fault, pending for good at {:.1} s ({} restart(s)), firing {:.1} s after the fault ({:.1} s after pending; for {hold:?}, evaluation {EVERY:?})",
                    s.fires,
                    (first - fault_at) as f64 / 1000.0,
                    (pending - fault_at) as f64 / 1000.0,
                    active_at.len() - 1,
                    (fired - fault_at) as f64 / 1000.0,
                    (fired - pending) as f64 / 1000.0,
                ));
            }
            other => problems.push(format!(
                "{name}: {} never fired for org {}: {other:?}",
                s.fires, s.org
            )),
        }
        if let Some(wrong) = seen.get(&key(s.never, instance, s.org)) {
            if wrong.fired_at.is_some() {
                problems.push(format!("{name}: {} fired for org {}", s.never, s.org));
            }
        }
    }
    measured
}

/// Every dashboard query, as Grafana sends it with the agent at `instance` selected, must answer,
/// and with series unless it is in [`ORG_MODE_ONLY`] and the agent is in host mode (then it must
/// have none). Each series must have a value for every label its legend shows (`{{org}}`,
/// `{{host}}`): a per-org query that picks up an org-less host histogram shows a line without a
/// name; only a query's own `vector(...)` fallback may have no labels at all. Returns how many
/// queries there are.
async fn check_dashboard(
    prometheus: &Prometheus,
    (mode, instance): (&str, &str),
    problems: &mut Vec<String>,
) -> usize {
    let queries = dashboard_queries(&repo("dashboards/obf-exporter.json"));
    for q in &queries {
        let expr = substitute(&q.expr, instance);
        let empty_here =
            mode == "host" && ORG_MODE_ONLY.contains(&(q.title.as_str(), q.ref_id.as_str()));
        match query(prometheus, &expr).await {
            Err(error) => problems.push(format!(
                "{mode} mode, panel {:?} {}: {expr}: {error}",
                q.title, q.ref_id
            )),
            Ok(series) if series.is_empty() != empty_here => problems.push(format!(
                "{mode} mode, panel {:?} {}: {expr}: {} series, expected {}",
                q.title,
                q.ref_id,
                series.len(),
                if empty_here { "none" } else { "some" }
            )),
            Ok(series) => {
                for name in legend_labels(&q.legend) {
                    let unnamed = series.iter().find(|s| {
                        let labels = s["metric"].as_object();
                        let fallback =
                            labels.is_none_or(|l| l.is_empty()) && q.expr.contains("vector(");
                        !fallback && s["metric"][name].as_str().unwrap_or("").is_empty()
                    });
                    if let Some(series) = unnamed {
                        problems.push(format!(
                            "{mode} mode, panel {:?} {}: {expr}: a series without {name}: {series}",
                            q.title, q.ref_id
                        ));
                    }
                }
            }
        }
    }
    queries.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_fires_each_messy_outage_in_time_and_evaluates_every_panel_and_rule_in_both_latency_modes(
) {
    let started = std::time::Instant::now();
    let factor = (scaled::shipped_evaluation_interval().as_millis() / EVERY.as_millis()) as u32;
    let dir = TempDir::new("prometheus");
    let rules = ScaledRules::write(&dir.write_path(""), factor);
    // The default probe interval (60 s), scaled like the rules: 2 s.
    let probe = format!("{}ms", (Duration::from_secs(60) / factor).as_millis());
    let sim = TestSim::with_spacing(Duration::from_secs(1)).await;
    let mut agents = Vec::new();
    for mode in &MODES {
        let config = agent_config(&sim, mode, &probe);
        let path = dir.write(&format!("agent-{}.toml", mode.name), &config);
        agents.push(Agent::start(&path, &[]).await);
    }
    let instances: Vec<&str> = agents.iter().map(|a| a.addr.as_str()).collect();
    let prometheus = start_prometheus(&dir, &instances, &rules, EVERY);

    // Wait until both targets are scraped, then give the windows a healthy history.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let up = query(&prometheus, "count(up{job=\"obf-exporter\"} == 1)").await;
        if up.is_ok_and(|r| r.first().is_some_and(|s| s["value"][1] == "2")) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "Prometheus never scraped both agents: {}",
            std::fs::read_to_string(dir.write_path("prometheus.log")).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // A healthy history as long as the rules' longest window (15 minutes, scaled: 30 s), so the
    // failure ratio climbs from 0 as it would in production.
    tokio::time::sleep(Duration::from_secs(15 * 60) / factor + 2 * EVERY).await;

    // The outages start now; 40 flips (160 s) outlast the watch below.
    let fault_at = unix_ms(SystemTime::now());
    for mode in &MODES {
        sim.sim
            .set_faults(&format!("E2ESTEADY{}", mode.suffix), ping_status(Some(503)));
    }
    let flipper = flip_faults(sim.sim.clone(), 40);
    let seen = watch_alerts(&prometheus, &instances, Duration::from_secs(100)).await;
    let mut problems = Vec::new();
    let mut measured = Vec::new();
    let mut query_count = 0;
    for (mode, instance) in MODES.iter().map(|m| m.name).zip(instances.iter().copied()) {
        measured.extend(judge(
            &seen,
            &rules,
            fault_at,
            (mode, instance),
            &mut problems,
        ));
        query_count = check_dashboard(&prometheus, (mode, instance), &mut problems).await;
    }
    assert!(query_count >= 20, "only {query_count} dashboard queries");
    let rule_count = check_rules(&prometheus, &mut problems).await;

    // Exactly the expected alerts, on each agent, each for its org.
    let alerts = api(&prometheus, "/api/v1/alerts", &[]).await;
    let active: BTreeSet<AlertKey> = alerts["data"]["alerts"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter(|a| a["state"] == "pending" || a["state"] == "firing")
        .map(|a| {
            let label = |name: &str| a["labels"][name].as_str().unwrap_or("");
            key(label("alertname"), label("instance"), label("org"))
        })
        .collect();
    for (mode, instance) in MODES.iter().map(|m| m.name).zip(instances.iter().copied()) {
        for (name, org) in EXPECTED {
            if !active.contains(&key(name, instance, org)) {
                problems.push(format!(
                    "{mode} mode: alert {name} for org {org} is neither pending nor firing"
                ));
            }
        }
    }
    for (name, instance, org) in &active {
        if NOT_EXPECTED.contains(&name.as_str()) {
            problems.push(format!(
                "alert {name} on {instance:?} is active but must not be"
            ));
        } else if org.is_empty() {
            problems.push(format!("alert {name} on {instance:?} has no org"));
        }
    }
    let summary = format!(
        "{query_count} dashboard queries per mode, {rule_count} rules, active alerts (alertname, instance): {active:?}; {:.0} s in all\n{}",
        started.elapsed().as_secs_f64(),
        measured.join("\n")
    );
    println!("e2e: {summary}");
    flipper.abort();
    drop(prometheus);
    for agent in agents {
        agent.stop().await;
    }
    assert!(problems.is_empty(), "{summary}\n{}", problems.join("\n"));
}
