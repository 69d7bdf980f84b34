//! Every Prometheus metric of the exporter, and their text rendering.
//!
//! Names, types and labels are the contract's. Per-org series live in [`OrgMetrics`] (plain atomics,
//! written straight into the text format: cheap at 10,000 orgs); exporter-wide ones (build and shard
//! info, config loads, schedule lateness, `process_*`) live in a `prometheus` registry. An org's
//! series are removed with it.

mod org;
mod text;

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use prometheus::{
    Encoder, Gauge, Histogram, HistogramOpts, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

pub use org::OrgMetrics;
use org::{histogram_names, AtomicHistogram, HistogramNames, ReasonCounters, LABELS_END};
use text::{escape_label_value, push_line_fixed, push_line_u64, Short, TextSink};

/// Schedule lateness is normally sub-millisecond; seconds mean an overloaded runtime.
const LATENESS_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The git revision baked in at build time (see `build.rs`).
pub const REVISION: &str = match option_env!("OBF_EXPORTER_REVISION") {
    Some(revision) => revision,
    None => "unknown",
};

/// The labels of one org's `obf_org_info` series.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OrgInfoLabels {
    pub org: String,
    pub client_id: String,
    pub host: String,
    pub api: String,
    pub custom: BTreeMap<String, String>,
}

impl OrgInfoLabels {
    /// The label set, sorted by name and escaped, ready to write between braces.
    fn render(&self) -> String {
        let mut pairs: Vec<(&str, &str)> = vec![
            ("org", &self.org),
            ("client_id", &self.client_id),
            ("host", &self.host),
            ("api", &self.api),
        ];
        pairs.extend(self.custom.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        pairs.sort_by(|a, b| a.0.cmp(b.0));
        let mut out = String::new();
        for (index, (name, value)) in pairs.into_iter().enumerate() {
            if index > 0 {
                out.push(',');
            }
            let _ = write!(out, "{name}=\"{}\"", escape_label_value(value));
        }
        out
    }
}

struct OrgEntry {
    metrics: Arc<OrgMetrics>,
    info: String,
}

/// All metrics. Cheap to share behind an `Arc`.
pub struct Metrics {
    registry: Registry,
    orgs: RwLock<BTreeMap<String, OrgEntry>>,
    shard_info: IntGaugeVec,
    pub config_reload_successful: IntGauge,
    pub config_reload_success_time: Gauge,
    pub schedule_lateness: Histogram,
}

impl Metrics {
    pub fn new() -> Self {
        let metrics = Metrics {
            registry: Registry::new(),
            orgs: RwLock::default(),
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
        let collectors: Vec<Box<dyn prometheus::core::Collector>> = vec![
            Box::new(build_info),
            Box::new(self.shard_info.clone()),
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

    /// The series of an org: created with its `result` counters at 0, or the existing ones (a
    /// reload that changed the org keeps its counters), with `info` and `interval` updated.
    pub fn add_org(&self, info: OrgInfoLabels, interval: Duration) -> Arc<OrgMetrics> {
        let mut orgs = self.orgs.write().unwrap_or_else(|e| e.into_inner());
        let entry = orgs.entry(info.org.clone()).or_insert_with(|| OrgEntry {
            metrics: Arc::new(OrgMetrics::new(&info.org)),
            info: String::new(),
        });
        entry.info = info.render();
        entry.metrics.set_interval(interval);
        entry.metrics.clone()
    }

    /// Removes every series of an org (after a reload dropped it).
    pub fn remove_org(&self, org: &str) {
        let mut orgs = self.orgs.write().unwrap_or_else(|e| e.into_inner());
        orgs.remove(org);
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
        let mut sink = TextSink::collect();
        self.write_all(&mut sink);
        sink.finish()
    }

    /// The same text, handed to `flush` in chunks of about `chunk` bytes, so that a large scrape
    /// never sits in memory whole. Stops early when `flush` returns false.
    pub fn render_chunks(&self, chunk: usize, flush: &mut dyn FnMut(Vec<u8>) -> bool) {
        let mut sink = TextSink::streaming(chunk, flush);
        self.write_all(&mut sink);
        sink.finish();
    }

    fn write_all(&self, sink: &mut TextSink) {
        let mut buffer = Vec::new();
        // Encoding into a Vec only fails on invalid metric data, which our families never hold.
        if let Err(error) = TextEncoder::new().encode(&self.registry.gather(), &mut buffer) {
            tracing::error!(%error, "cannot encode metrics");
        }
        sink.buf.extend_from_slice(&buffer);
        let orgs = self.orgs.read().unwrap_or_else(|e| e.into_inner());
        write_org_families(sink, orgs.values());
    }

    /// The text format of one org's series only (for `/probe`).
    pub fn render_org(&self, org: &str) -> String {
        let orgs = self.orgs.read().unwrap_or_else(|e| e.into_inner());
        let mut sink = TextSink::collect();
        write_org_families(&mut sink, orgs.get(org).into_iter());
        sink.finish()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// A family's name and the start of its sample lines (the name with `{`).
struct FamilyName {
    name: &'static str,
    start: &'static str,
}

/// [`FamilyName`] from one literal, joined at compile time.
macro_rules! family_name {
    ($name:literal) => {
        FamilyName {
            name: $name,
            start: concat!($name, "{"),
        }
    };
}

const ORG_INFO: FamilyName = family_name!("obf_org_info");
const PING_SUCCESS: FamilyName = family_name!("obf_ping_success");
const PING_DURATION: HistogramNames = histogram_names!("obf_ping_duration_seconds");
const PINGS: FamilyName = family_name!("obf_pings_total");
const PING_FAILURES: FamilyName = family_name!("obf_ping_failures_total");
const PING_STATUS: FamilyName = family_name!("obf_ping_last_status_code");
const PING_LAST_SUCCESS: FamilyName = family_name!("obf_ping_last_success_timestamp_seconds");
const PROBE_LAST_RUN: FamilyName = family_name!("obf_probe_last_run_timestamp_seconds");
const PROBE_INTERVAL: FamilyName = family_name!("obf_probe_interval_seconds");
const TOKEN_REFRESHES: FamilyName = family_name!("obf_token_refreshes_total");
const TOKEN_REFRESH_FAILURES: FamilyName = family_name!("obf_token_refresh_failures_total");
const TOKEN_REFRESH_DURATION: HistogramNames =
    histogram_names!("obf_token_refresh_duration_seconds");
const TOKEN_REUSES: FamilyName = family_name!("obf_token_reuses_total");
const TOKEN_EXPIRY: FamilyName = family_name!("obf_token_expiry_timestamp_seconds");
const CREDENTIALS_VALID: FamilyName = family_name!("obf_credentials_valid");
const SUBSCRIPTION_EXPIRY: FamilyName = family_name!("obf_subscription_expiry_timestamp_seconds");
const SUBSCRIPTION_FAILURES: FamilyName = family_name!("obf_subscription_check_failures_total");

const FAILURE_END: Short = Short::new(",result=\"failure\"} ");
const SUCCESS_END: Short = Short::new(",result=\"success\"} ");

/// Writes every per-org family, each with all of its orgs' samples together.
fn write_org_families<'a>(sink: &mut TextSink, orgs: impl Iterator<Item = &'a OrgEntry> + Clone) {
    // One family: `each` writes one org's lines into the buffer.
    let family = |sink: &mut TextSink,
                  name: &str,
                  help: &str,
                  kind: &str,
                  each: &dyn Fn(&mut Vec<u8>, &OrgEntry)| {
        sink.family(name, help, kind, |sink| {
            for entry in orgs.clone() {
                if sink.closed {
                    return;
                }
                let before = sink.buf.len();
                each(&mut sink.buf, entry);
                sink.written(before);
            }
        });
    };
    let gauge = |get: fn(&OrgMetrics) -> Option<i64>, family: &'static FamilyName| {
        move |out: &mut Vec<u8>, entry: &OrgEntry| {
            if let Some(thousandths) = get(&entry.metrics) {
                let org = &entry.metrics.org_label;
                push_line_fixed::<3>(out, family.start, org, &LABELS_END, thousandths);
            }
        }
    };
    let by_result = |ok: fn(&OrgMetrics) -> u64,
                     failed: fn(&OrgMetrics) -> u64,
                     family: &'static FamilyName| {
        move |out: &mut Vec<u8>, entry: &OrgEntry| {
            let m = &entry.metrics;
            let (start, org) = (family.start, &m.org_label);
            push_line_u64(out, start, org, &FAILURE_END, failed(m));
            push_line_u64(out, start, org, &SUCCESS_END, ok(m));
        }
    };
    let histogram = |get: fn(&OrgMetrics) -> &AtomicHistogram, names: &'static HistogramNames| {
        move |out: &mut Vec<u8>, entry: &OrgEntry| {
            get(&entry.metrics).write(out, names, &entry.metrics.org_label)
        }
    };
    let by_reason = |get: fn(&OrgMetrics) -> &ReasonCounters, family: &'static FamilyName| {
        move |out: &mut Vec<u8>, entry: &OrgEntry| {
            get(&entry.metrics).write(out, family.start, &entry.metrics.org_label)
        }
    };

    family(
        sink,
        ORG_INFO.name,
        "Static facts about each configured org (always 1).",
        "gauge",
        &|out, e| push_line_u64(out, ORG_INFO.start, &e.info, &LABELS_END, 1),
    );
    family(
        sink,
        PING_SUCCESS.name,
        "1 if the last ping got a 2xx answer, else 0.",
        "gauge",
        &gauge(|m| m.ping_success.get(), &PING_SUCCESS),
    );
    family(
        sink,
        PING_DURATION.name,
        "Ping request time, token time excluded.",
        "histogram",
        &histogram(|m| &m.ping_duration, &PING_DURATION),
    );
    family(
        sink,
        PINGS.name,
        "Pings by result.",
        "counter",
        &by_result(
            |m| m.pings_ok.load(Ordering::Relaxed),
            |m| m.pings_failed.load(Ordering::Relaxed),
            &PINGS,
        ),
    );
    family(
        sink,
        PING_FAILURES.name,
        "Failed pings by reason.",
        "counter",
        &by_reason(|m| &m.ping_failures, &PING_FAILURES),
    );
    family(
        sink,
        PING_STATUS.name,
        "HTTP status of the last ping, 0 if none came.",
        "gauge",
        &gauge(|m| m.ping_last_status.get(), &PING_STATUS),
    );
    family(
        sink,
        PING_LAST_SUCCESS.name,
        "Unix time of the last successful ping.",
        "gauge",
        &gauge(|m| m.ping_last_success.get(), &PING_LAST_SUCCESS),
    );
    family(
        sink,
        PROBE_LAST_RUN.name,
        "Unix time the last probe of the org finished, whatever its result.",
        "gauge",
        &gauge(|m| m.probe_last_run.get(), &PROBE_LAST_RUN),
    );
    family(
        sink,
        PROBE_INTERVAL.name,
        "Planned seconds between the org's probes (for cron: between the next two runs).",
        "gauge",
        &gauge(|m| m.probe_interval.get(), &PROBE_INTERVAL),
    );
    family(
        sink,
        TOKEN_REFRESHES.name,
        "Token requests actually sent, by result.",
        "counter",
        &by_result(
            |m| m.token_refreshes_ok.load(Ordering::Relaxed),
            |m| m.token_refreshes_failed.load(Ordering::Relaxed),
            &TOKEN_REFRESHES,
        ),
    );
    family(
        sink,
        TOKEN_REFRESH_FAILURES.name,
        "Failed token requests by reason.",
        "counter",
        &by_reason(|m| &m.token_refresh_failures, &TOKEN_REFRESH_FAILURES),
    );
    family(
        sink,
        TOKEN_REFRESH_DURATION.name,
        "Token request time.",
        "histogram",
        &histogram(|m| &m.token_refresh_duration, &TOKEN_REFRESH_DURATION),
    );
    family(
        sink,
        TOKEN_REUSES.name,
        "Probes served by a cached token.",
        "counter",
        &|out, e| {
            let reuses = e.metrics.token_reuses.load(Ordering::Relaxed);
            push_line_u64(
                out,
                TOKEN_REUSES.start,
                &e.metrics.org_label,
                &LABELS_END,
                reuses,
            )
        },
    );
    family(
        sink,
        TOKEN_EXPIRY.name,
        "Unix time when the token in hand expires.",
        "gauge",
        &gauge(|m| m.token_expiry.get(), &TOKEN_EXPIRY),
    );
    family(
        sink,
        CREDENTIALS_VALID.name,
        "1 after the token endpoint accepted the credentials, 0 after it rejected them.",
        "gauge",
        &gauge(|m| m.credentials_valid.get(), &CREDENTIALS_VALID),
    );
    family(
        sink,
        SUBSCRIPTION_EXPIRY.name,
        "The organisation's paid_until, unix time.",
        "gauge",
        &gauge(|m| m.subscription_expiry.get(), &SUBSCRIPTION_EXPIRY),
    );
    family(
        sink,
        SUBSCRIPTION_FAILURES.name,
        "Failed subscription checks by reason.",
        "counter",
        &by_reason(|m| &m.subscription_failures, &SUBSCRIPTION_FAILURES),
    );
}

pub fn unix_seconds(at: SystemTime) -> f64 {
    match at.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(since) => since.as_secs_f64(),
        Err(before) => -before.duration().as_secs_f64(),
    }
}

#[cfg(test)]
mod tests;
