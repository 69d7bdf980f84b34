//! Every Prometheus metric of the exporter, and their text rendering.
//!
//! Names, types and labels are the contract's. Per-org series live in [`OrgMetrics`] (plain atomics,
//! written straight into the text format: cheap at 10,000 orgs); exporter-wide ones (build and shard
//! info, config loads, schedule lateness, task restarts, `process_*`) live in a `prometheus`
//! registry. An org's series are removed with it.
//!
//! With `latency_histograms = "host"` the ping and token latency histograms are not the org's:
//! its latencies go to one histogram per (`host`, `api`) (`hosts`), shared with the other orgs
//! there, and the org keeps only `obf_ping_last_duration_seconds`. The mode can change at a reload
//! ([`Metrics::set_latency_per_host`]): the histograms are re-keyed at once and the old series
//! are gone from the next scrape.

mod hosts;
mod org;
mod scrape;
mod text;

use std::collections::btree_map::Entry;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use prometheus::{
    Encoder, Gauge, Histogram, HistogramOpts, IntCounter, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

use crate::obf::credential::CredentialState;
use hosts::{HostHistograms, HostKey};
pub use org::OrgMetrics;
#[cfg(test)]
pub(crate) use scrape::test_fleet;
pub use scrape::Scrape;
use scrape::ScrapeOrg;
use text::escape_label_value;

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
    /// The labels of `obf_org_info`, ready to write.
    info: Arc<str>,
    /// The credential's state, shared with the other orgs of the credential.
    credential: Arc<CredentialState>,
    /// The host histograms the org records into when they are kept per host.
    key: HostKey,
}

impl OrgEntry {
    fn scrape_org(&self) -> ScrapeOrg {
        ScrapeOrg {
            metrics: self.metrics.clone(),
            info: self.info.clone(),
            credential: self.credential.clone(),
        }
    }
}

/// The orgs' series and, with `latency_histograms = "host"`, the histograms they share.
#[derive(Default)]
struct Orgs {
    by_name: BTreeMap<String, OrgEntry>,
    /// Empty unless `per_host`; then every org holds one use of its entry's key.
    hosts: HostHistograms,
    per_host: bool,
}

/// All metrics. Cheap to share behind an `Arc`.
pub struct Metrics {
    registry: Registry,
    orgs: RwLock<Orgs>,
    shard_info: IntGaugeVec,
    pub config_reload_successful: IntGauge,
    pub config_reload_success_time: Gauge,
    pub schedule_lateness: Histogram,
    /// Org schedule tasks restarted after ending abnormally (see `supervisor`).
    pub task_restarts: IntCounter,
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
            task_restarts: IntCounter::new(
                "obf_exporter_task_restarts_total",
                "Org schedule tasks restarted after ending abnormally (a panic).",
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
            Box::new(self.task_restarts.clone()),
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
    /// reload that changed the org keeps its counters), with `info`, `interval` and the
    /// credential whose gauges it shows updated.
    pub fn add_org(
        &self,
        info: OrgInfoLabels,
        interval: Duration,
        credential: Arc<CredentialState>,
    ) -> Arc<OrgMetrics> {
        let mut orgs = self.orgs.write().unwrap_or_else(|e| e.into_inner());
        let Orgs {
            by_name,
            hosts,
            per_host,
        } = &mut *orgs;
        let key = HostKey {
            host: info.host.clone(),
            api: info.api.clone(),
        };
        let entry = match by_name.entry(info.org.clone()) {
            Entry::Vacant(vacant) => {
                let metrics = Arc::new(OrgMetrics::new(&info.org));
                if *per_host {
                    metrics.set_hosted(Some(hosts.acquire(&key)));
                }
                vacant.insert(OrgEntry {
                    metrics,
                    info: Arc::from(""),
                    credential: credential.clone(),
                    key,
                })
            }
            Entry::Occupied(occupied) => {
                let entry = occupied.into_mut();
                // A reload moved the org to another host or api: its latencies move with it.
                if entry.key != key {
                    if *per_host {
                        hosts.release(&entry.key);
                        entry.metrics.set_hosted(Some(hosts.acquire(&key)));
                    }
                    entry.key = key;
                }
                entry
            }
        };
        entry.info = info.render().into();
        entry.credential = credential;
        entry.metrics.set_interval(interval);
        entry.metrics.clone()
    }

    /// Removes every series of an org (after a reload dropped it).
    pub fn remove_org(&self, org: &str) {
        let mut orgs = self.orgs.write().unwrap_or_else(|e| e.into_inner());
        let Some(entry) = orgs.by_name.remove(org) else {
            return;
        };
        if orgs.per_host {
            orgs.hosts.release(&entry.key);
            // Anything still holding the org's record (a probe finishing) records into its own
            // histograms, which are not written any more.
            entry.metrics.set_hosted(None);
        }
    }

    /// `latency_histograms`: `true` keeps the ping and token latency histograms per host
    /// (`"host"`), `false` per org (`"org"`, the default). A change re-keys every org at once;
    /// the histograms of the other mode are not written from then on. An org's own histograms
    /// keep their counts while unused, so switching back continues them.
    pub fn set_latency_per_host(&self, per_host: bool) {
        let mut orgs = self.orgs.write().unwrap_or_else(|e| e.into_inner());
        if orgs.per_host == per_host {
            return;
        }
        let Orgs { by_name, hosts, .. } = &mut *orgs;
        for entry in by_name.values() {
            if per_host {
                entry.metrics.set_hosted(Some(hosts.acquire(&entry.key)));
            } else {
                hosts.release(&entry.key);
                entry.metrics.set_hosted(None);
            }
        }
        orgs.per_host = per_host;
        let mode = if per_host { "host" } else { "org" };
        tracing::info!(
            latency_histograms = mode,
            "latency histograms are now kept per {mode}"
        );
    }

    /// Records which shard this process handles.
    pub fn set_shard(&self, shard: Option<crate::config::shard::Shard>) {
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
        text_to_string(self.scrape().into_bytes())
    }

    /// The same text, to be taken a chunk at a time: a large scrape then never sits in memory
    /// whole. The org list is fixed when this is called; values are read as the text is made.
    pub fn scrape(&self) -> Scrape {
        let mut head = Vec::new();
        // Encoding into a Vec only fails on invalid metric data, which our families never hold.
        if let Err(error) = TextEncoder::new().encode(&self.registry.gather(), &mut head) {
            tracing::error!(%error, "cannot encode metrics");
        }
        let orgs = self.orgs.read().unwrap_or_else(|e| e.into_inner());
        // Empty unless the histograms are kept per host; a few lines per host then.
        orgs.hosts.write(&mut head);
        let scrape_orgs = orgs.by_name.values().map(OrgEntry::scrape_org).collect();
        Scrape::new(head, scrape_orgs, orgs.per_host)
    }

    /// The text format of one org's series only (for `/probe`).
    pub fn render_org(&self, org: &str) -> String {
        let orgs = self.orgs.read().unwrap_or_else(|e| e.into_inner());
        let org = orgs
            .by_name
            .get(org)
            .map(OrgEntry::scrape_org)
            .into_iter()
            .collect();
        text_to_string(Scrape::new(Vec::new(), org, orgs.per_host).into_bytes())
    }
}

/// Every byte of the text came from a `&str` or is an ASCII digit, so this never falls back.
fn text_to_string(text: Vec<u8>) -> String {
    match String::from_utf8(text) {
        Ok(text) => text,
        Err(error) => String::from_utf8_lossy(error.as_bytes()).into_owned(),
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

pub fn unix_seconds(at: SystemTime) -> f64 {
    match at.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(since) => since.as_secs_f64(),
        Err(before) => -before.duration().as_secs_f64(),
    }
}

#[cfg(test)]
mod host_tests;
#[cfg(test)]
mod tests;
