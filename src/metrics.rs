//! Every Prometheus metric of the exporter, registered in one place, and the per-org handles the
//! probe writes through.
//!
//! Names, types and labels are the contract's. Per-org children are resolved once when an org is
//! added (no label lookups on the probe's hot path) and all of an org's series are removed with it.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use prometheus::core::{Collector, Desc};
use prometheus::proto::{Gauge as GaugeProto, LabelPair, Metric, MetricFamily, MetricType};
use prometheus::{
    Encoder, Gauge, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec,
    IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::reason::Reason;

/// Request latencies: 5 ms to 30 s (the longest sensible timeout).
const LATENCY_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];
/// Schedule lateness is normally sub-millisecond; seconds mean an overloaded runtime.
const LATENESS_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The git revision baked in at build time (see `build.rs`).
pub const REVISION: &str = match option_env!("OBF_EXPORTER_REVISION") {
    Some(revision) => revision,
    None => "unknown",
};

/// All metric families. Cheap to share behind an `Arc`.
pub struct Metrics {
    registry: Registry,
    ping_success: IntGaugeVec,
    ping_duration: HistogramVec,
    pings: IntCounterVec,
    ping_failures: IntCounterVec,
    ping_last_status: IntGaugeVec,
    ping_last_success: GaugeVec,
    probe_last_run: GaugeVec,
    probe_interval: GaugeVec,
    token_refreshes: IntCounterVec,
    token_refresh_failures: IntCounterVec,
    token_refresh_duration: HistogramVec,
    token_reuses: IntCounterVec,
    token_expiry: GaugeVec,
    credentials_valid: IntGaugeVec,
    subscription_expiry: GaugeVec,
    subscription_failures: IntCounterVec,
    org_info: OrgInfo,
    shard_info: IntGaugeVec,
    pub config_reload_successful: IntGauge,
    pub config_reload_success_time: Gauge,
    pub schedule_lateness: Histogram,
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let org = &["org"];
        let metrics = Metrics {
            ping_success: IntGaugeVec::new(
                Opts::new("obf_ping_success", "1 if the last ping got a 2xx answer, else 0."),
                org,
            )
            .expect("valid metric"),
            ping_duration: HistogramVec::new(
                HistogramOpts::new(
                    "obf_ping_duration_seconds",
                    "Ping request time, token time excluded.",
                )
                .buckets(LATENCY_BUCKETS.to_vec()),
                org,
            )
            .expect("valid metric"),
            pings: IntCounterVec::new(
                Opts::new("obf_pings_total", "Pings by result."),
                &["org", "result"],
            )
            .expect("valid metric"),
            ping_failures: IntCounterVec::new(
                Opts::new("obf_ping_failures_total", "Failed pings by reason."),
                &["org", "reason"],
            )
            .expect("valid metric"),
            ping_last_status: IntGaugeVec::new(
                Opts::new(
                    "obf_ping_last_status_code",
                    "HTTP status of the last ping, 0 if none came.",
                ),
                org,
            )
            .expect("valid metric"),
            ping_last_success: GaugeVec::new(
                Opts::new(
                    "obf_ping_last_success_timestamp_seconds",
                    "Unix time of the last successful ping.",
                ),
                org,
            )
            .expect("valid metric"),
            probe_last_run: GaugeVec::new(
                Opts::new(
                    "obf_probe_last_run_timestamp_seconds",
                    "Unix time the last probe of the org finished, whatever its result.",
                ),
                org,
            )
            .expect("valid metric"),
            probe_interval: GaugeVec::new(
                Opts::new(
                    "obf_probe_interval_seconds",
                    "Planned seconds between the org's probes (for cron: between the next two runs).",
                ),
                org,
            )
            .expect("valid metric"),
            token_refreshes: IntCounterVec::new(
                Opts::new(
                    "obf_token_refreshes_total",
                    "Token requests actually sent, by result.",
                ),
                &["org", "result"],
            )
            .expect("valid metric"),
            token_refresh_failures: IntCounterVec::new(
                Opts::new(
                    "obf_token_refresh_failures_total",
                    "Failed token requests by reason.",
                ),
                &["org", "reason"],
            )
            .expect("valid metric"),
            token_refresh_duration: HistogramVec::new(
                HistogramOpts::new(
                    "obf_token_refresh_duration_seconds",
                    "Token request time.",
                )
                .buckets(LATENCY_BUCKETS.to_vec()),
                org,
            )
            .expect("valid metric"),
            token_reuses: IntCounterVec::new(
                Opts::new("obf_token_reuses_total", "Probes served by a cached token."),
                org,
            )
            .expect("valid metric"),
            token_expiry: GaugeVec::new(
                Opts::new(
                    "obf_token_expiry_timestamp_seconds",
                    "Unix time when the token in hand expires.",
                ),
                org,
            )
            .expect("valid metric"),
            credentials_valid: IntGaugeVec::new(
                Opts::new(
                    "obf_credentials_valid",
                    "1 after the token endpoint accepted the credentials, 0 after it rejected them.",
                ),
                org,
            )
            .expect("valid metric"),
            subscription_expiry: GaugeVec::new(
                Opts::new(
                    "obf_subscription_expiry_timestamp_seconds",
                    "The organisation's paid_until, unix time.",
                ),
                org,
            )
            .expect("valid metric"),
            subscription_failures: IntCounterVec::new(
                Opts::new(
                    "obf_subscription_check_failures_total",
                    "Failed subscription checks by reason.",
                ),
                &["org", "reason"],
            )
            .expect("valid metric"),
            org_info: OrgInfo::default(),
            shard_info: IntGaugeVec::new(
                Opts::new(
                    "obf_exporter_shard_info",
                    "The shard this process handles (shard 0 of 1 when not sharded).",
                ),
                &["shard", "shards"],
            )
            .expect("valid metric"),
            config_reload_successful: IntGauge::new(
                "obf_config_last_reload_successful",
                "1 if the last configuration load succeeded.",
            )
            .expect("valid metric"),
            config_reload_success_time: Gauge::new(
                "obf_config_last_reload_success_timestamp_seconds",
                "Unix time of the last successful configuration load.",
            )
            .expect("valid metric"),
            schedule_lateness: Histogram::with_opts(
                HistogramOpts::new(
                    "obf_schedule_lateness_seconds",
                    "How late runs start against their plan, jitter excluded.",
                )
                .buckets(LATENESS_BUCKETS.to_vec()),
            )
            .expect("valid metric"),
            registry,
        };
        metrics.register_all();
        metrics
    }

    fn register_all(&self) {
        let build_info = IntGaugeVec::new(
            Opts::new(
                "obf_exporter_build_info",
                "Version and git revision of the running exporter.",
            ),
            &["version", "revision"],
        )
        .expect("valid metric");
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION"), REVISION])
            .set(1);
        let collectors: Vec<Box<dyn Collector>> = vec![
            Box::new(self.ping_success.clone()),
            Box::new(self.ping_duration.clone()),
            Box::new(self.pings.clone()),
            Box::new(self.ping_failures.clone()),
            Box::new(self.ping_last_status.clone()),
            Box::new(self.ping_last_success.clone()),
            Box::new(self.probe_last_run.clone()),
            Box::new(self.probe_interval.clone()),
            Box::new(self.token_refreshes.clone()),
            Box::new(self.token_refresh_failures.clone()),
            Box::new(self.token_refresh_duration.clone()),
            Box::new(self.token_reuses.clone()),
            Box::new(self.token_expiry.clone()),
            Box::new(self.credentials_valid.clone()),
            Box::new(self.subscription_expiry.clone()),
            Box::new(self.subscription_failures.clone()),
            Box::new(self.org_info.clone()),
            Box::new(self.shard_info.clone()),
            Box::new(build_info),
            Box::new(self.config_reload_successful.clone()),
            Box::new(self.config_reload_success_time.clone()),
            Box::new(self.schedule_lateness.clone()),
        ];
        for collector in collectors {
            // Names are distinct constants, so registration cannot collide.
            self.registry.register(collector).expect("unique metric");
        }
        #[cfg(target_os = "linux")]
        {
            let process = prometheus::process_collector::ProcessCollector::for_self();
            self.registry
                .register(Box::new(process))
                .expect("unique metric");
        }
    }

    /// Creates an org's series that exist from the start, and its `obf_org_info`.
    pub fn add_org(&self, info: OrgInfoLabels, interval: Duration) -> OrgMetrics {
        let name = info.org.clone();
        let org = name.as_str();
        self.org_info.set(info);
        self.probe_interval
            .with_label_values(&[org])
            .set(interval.as_secs_f64());
        OrgMetrics {
            ping_success: self.ping_success.clone(),
            ping_duration: self.ping_duration.with_label_values(&[org]),
            pings_ok: self.pings.with_label_values(&[org, "success"]),
            pings_failed: self.pings.with_label_values(&[org, "failure"]),
            ping_failures: self.ping_failures.clone(),
            ping_last_status: self.ping_last_status.clone(),
            ping_last_success: self.ping_last_success.clone(),
            probe_last_run: self.probe_last_run.clone(),
            token_refreshes_ok: self.token_refreshes.with_label_values(&[org, "success"]),
            token_refreshes_failed: self.token_refreshes.with_label_values(&[org, "failure"]),
            token_refresh_failures: self.token_refresh_failures.clone(),
            token_refresh_duration: self.token_refresh_duration.with_label_values(&[org]),
            token_reuses: self.token_reuses.with_label_values(&[org]),
            token_expiry: self.token_expiry.clone(),
            credentials_valid: self.credentials_valid.clone(),
            subscription_expiry: self.subscription_expiry.clone(),
            subscription_failures: self.subscription_failures.clone(),
            org: name,
        }
    }

    /// Removes every series of an org (after a reload dropped it).
    pub fn remove_org(&self, org: &str) {
        self.org_info.remove(org);
        for vec in [
            &self.ping_success,
            &self.ping_last_status,
            &self.credentials_valid,
        ] {
            let _ = vec.remove_label_values(&[org]);
        }
        for vec in [
            &self.ping_last_success,
            &self.probe_last_run,
            &self.probe_interval,
            &self.token_expiry,
            &self.subscription_expiry,
        ] {
            let _ = vec.remove_label_values(&[org]);
        }
        for vec in [&self.ping_duration, &self.token_refresh_duration] {
            let _ = vec.remove_label_values(&[org]);
        }
        let _ = self.token_reuses.remove_label_values(&[org]);
        for vec in [&self.pings, &self.token_refreshes] {
            for result in ["success", "failure"] {
                let _ = vec.remove_label_values(&[org, result]);
            }
        }
        for vec in [
            &self.ping_failures,
            &self.token_refresh_failures,
            &self.subscription_failures,
        ] {
            for reason in Reason::ALL {
                let _ = vec.remove_label_values(&[org, reason.as_str()]);
            }
        }
    }

    /// Records which shard this process handles.
    pub fn set_shard(&self, shard: Option<crate::shard::Shard>) {
        self.shard_info.reset();
        let (index, count) = shard.map_or((0, 1), |s| (s.index, s.count));
        self.shard_info
            .with_label_values(&[index.to_string().as_str(), count.to_string().as_str()])
            .set(1);
    }

    /// Records the outcome of a configuration load.
    pub fn record_config_load(&self, ok: bool) {
        self.config_reload_successful.set(i64::from(ok));
        if ok {
            self.config_reload_success_time
                .set(unix_seconds(SystemTime::now()));
        }
    }

    /// The text exposition format of every metric.
    pub fn render(&self) -> String {
        let mut buffer = Vec::new();
        // Encoding into a Vec only fails on invalid metric data, which our families never hold.
        if let Err(error) = TextEncoder::new().encode(&self.registry.gather(), &mut buffer) {
            tracing::error!(%error, "cannot encode metrics");
        }
        String::from_utf8(buffer).unwrap_or_default()
    }

    /// The text format of one org's series only (for `/probe`).
    pub fn render_org(&self, org: &str) -> String {
        let families: Vec<MetricFamily> = self
            .registry
            .gather()
            .into_iter()
            .filter_map(|mut family| {
                let metrics: Vec<Metric> = family
                    .take_metric()
                    .into_iter()
                    .filter(|m| {
                        m.get_label()
                            .iter()
                            .any(|l| l.name() == "org" && l.value() == org)
                    })
                    .collect();
                if metrics.is_empty() {
                    return None;
                }
                family.set_metric(metrics);
                Some(family)
            })
            .collect();
        let mut buffer = Vec::new();
        if let Err(error) = TextEncoder::new().encode(&families, &mut buffer) {
            tracing::error!(%error, "cannot encode metrics");
        }
        String::from_utf8(buffer).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// One org's series. Writes here are lock-free except for the first use of a reason.
pub struct OrgMetrics {
    org: String,
    ping_success: IntGaugeVec,
    pub ping_duration: Histogram,
    pings_ok: IntCounter,
    pings_failed: IntCounter,
    ping_failures: IntCounterVec,
    ping_last_status: IntGaugeVec,
    ping_last_success: GaugeVec,
    probe_last_run: GaugeVec,
    token_refreshes_ok: IntCounter,
    token_refreshes_failed: IntCounter,
    token_refresh_failures: IntCounterVec,
    pub token_refresh_duration: Histogram,
    pub token_reuses: IntCounter,
    token_expiry: GaugeVec,
    credentials_valid: IntGaugeVec,
    subscription_expiry: GaugeVec,
    subscription_failures: IntCounterVec,
}

impl OrgMetrics {
    fn labels(&self) -> [&str; 1] {
        [self.org.as_str()]
    }

    pub fn ping_succeeded(&self, status: u16, duration: Duration) {
        self.ping_duration.observe(duration.as_secs_f64());
        self.pings_ok.inc();
        self.ping_success.with_label_values(&self.labels()).set(1);
        self.ping_last_status
            .with_label_values(&self.labels())
            .set(i64::from(status));
        self.ping_last_success
            .with_label_values(&self.labels())
            .set(unix_seconds(SystemTime::now()));
    }

    /// A failed ping; `duration` is `None` when no request was sent.
    pub fn ping_failed(&self, reason: Reason, status: Option<u16>, duration: Option<Duration>) {
        if let Some(duration) = duration {
            self.ping_duration.observe(duration.as_secs_f64());
        }
        self.pings_failed.inc();
        self.ping_failures
            .with_label_values(&[self.org.as_str(), reason.as_str()])
            .inc();
        self.ping_success.with_label_values(&self.labels()).set(0);
        self.ping_last_status
            .with_label_values(&self.labels())
            .set(i64::from(status.unwrap_or(0)));
    }

    pub fn token_refreshed(&self, duration: Duration, failure: Option<Reason>) {
        self.token_refresh_duration.observe(duration.as_secs_f64());
        match failure {
            None => self.token_refreshes_ok.inc(),
            Some(reason) => {
                self.token_refreshes_failed.inc();
                self.token_refresh_failures
                    .with_label_values(&[self.org.as_str(), reason.as_str()])
                    .inc();
            }
        }
    }

    pub fn set_credentials_valid(&self, valid: bool) {
        self.credentials_valid
            .with_label_values(&self.labels())
            .set(i64::from(valid));
    }

    /// The expiry of the token in hand; `None` removes the series (no token in hand).
    pub fn set_token_expiry(&self, at: Option<SystemTime>) {
        match at {
            Some(at) => self
                .token_expiry
                .with_label_values(&self.labels())
                .set(unix_seconds(at)),
            None => {
                let _ = self.token_expiry.remove_label_values(&self.labels());
            }
        }
    }

    /// A probe finished (absent until the first one, so staleness alerts do not fire at start).
    pub fn probe_finished(&self, at: SystemTime) {
        self.probe_last_run
            .with_label_values(&self.labels())
            .set(unix_seconds(at));
    }

    pub fn set_subscription_expiry(&self, paid_until: i64) {
        self.subscription_expiry
            .with_label_values(&self.labels())
            .set(paid_until as f64);
    }

    pub fn subscription_check_failed(&self, reason: Reason) {
        self.subscription_failures
            .with_label_values(&[self.org.as_str(), reason.as_str()])
            .inc();
    }
}

pub fn unix_seconds(at: SystemTime) -> f64 {
    match at.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(since) => since.as_secs_f64(),
        Err(before) => -before.duration().as_secs_f64(),
    }
}

/// The labels of one org's `obf_org_info` series.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OrgInfoLabels {
    pub org: String,
    pub client_id: String,
    pub host: String,
    pub api: String,
    pub custom: BTreeMap<String, String>,
}

/// `obf_org_info`: orgs may carry different custom label names, which a fixed-label `GaugeVec`
/// cannot express, so this collector builds the family itself.
#[derive(Clone, Default)]
struct OrgInfo {
    orgs: Arc<RwLock<BTreeMap<String, OrgInfoLabels>>>,
}

const ORG_INFO_NAME: &str = "obf_org_info";
const ORG_INFO_HELP: &str = "Static facts about each configured org (always 1).";

impl OrgInfo {
    fn set(&self, info: OrgInfoLabels) {
        let mut orgs = self.orgs.write().unwrap_or_else(|e| e.into_inner());
        orgs.insert(info.org.clone(), info);
    }

    fn remove(&self, org: &str) {
        let mut orgs = self.orgs.write().unwrap_or_else(|e| e.into_inner());
        orgs.remove(org);
    }
}

fn org_info_desc() -> &'static Desc {
    static DESC: std::sync::OnceLock<Desc> = std::sync::OnceLock::new();
    DESC.get_or_init(|| {
        Desc::new(
            ORG_INFO_NAME.to_string(),
            ORG_INFO_HELP.to_string(),
            vec![],
            Default::default(),
        )
        .expect("valid descriptor")
    })
}

impl Collector for OrgInfo {
    fn desc(&self) -> Vec<&Desc> {
        vec![org_info_desc()]
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let orgs = self.orgs.read().unwrap_or_else(|e| e.into_inner());
        if orgs.is_empty() {
            return Vec::new();
        }
        let metrics = orgs
            .values()
            .map(|info| {
                let mut pairs: Vec<(&str, &str)> = vec![
                    ("org", &info.org),
                    ("client_id", &info.client_id),
                    ("host", &info.host),
                    ("api", &info.api),
                ];
                pairs.extend(info.custom.iter().map(|(k, v)| (k.as_str(), v.as_str())));
                pairs.sort_by(|a, b| a.0.cmp(b.0));
                let labels = pairs
                    .into_iter()
                    .map(|(name, value)| {
                        let mut pair = LabelPair::default();
                        pair.set_name(name.to_string());
                        pair.set_value(value.to_string());
                        pair
                    })
                    .collect();
                let mut gauge = GaugeProto::default();
                gauge.set_value(1.0);
                let mut metric = Metric::from_gauge(gauge);
                metric.set_label(labels);
                metric
            })
            .collect();
        let mut family = MetricFamily::default();
        family.set_name(ORG_INFO_NAME.to_string());
        family.set_help(ORG_INFO_HELP.to_string());
        family.set_field_type(MetricType::GAUGE);
        family.set_metric(metrics);
        vec![family]
    }
}

#[cfg(test)]
mod tests;
