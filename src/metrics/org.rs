//! One org's series, held as plain atomics and written straight into the text format.
//!
//! A `prometheus` crate child metric costs several hundred bytes (it carries its own descriptor and
//! label pairs) and is rendered through an intermediate copy of every sample; at 10,000 orgs that
//! was ~85 MB of memory and ~350 ms per scrape. Here an org costs well under 1 KB and a scrape is a
//! single pass over the atomics.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, RwLock, RwLockReadGuard};
use std::time::{Duration, SystemTime};

use super::text::{
    escape_label_value, push_line_fixed, push_line_u64, push_short, push_u64, Short,
    LATENCY_BUCKETS,
};
use crate::obf::reason::Reason;

/// A gauge with a fixed number of decimals (three, except durations: six), held as an integer in
/// those units (writing a large scrape then needs no float formatting), that can be absent
/// ("nothing to say yet").
pub(super) struct OptionalGauge(AtomicI64);

/// Marks "absent"; [`OptionalGauge::set_thousandths`] never stores it.
const ABSENT: i64 = i64::MIN;

impl OptionalGauge {
    fn absent() -> Self {
        OptionalGauge(AtomicI64::new(ABSENT))
    }

    fn set_thousandths(&self, value: i64) {
        self.0.store(value.max(ABSENT + 1), Ordering::Relaxed);
    }

    /// A duration in microseconds (a ping on a LAN takes well under a millisecond).
    fn set_micros(&self, duration: Duration) {
        self.set_thousandths(i64::try_from(duration.as_micros()).unwrap_or(i64::MAX));
    }

    fn set_whole(&self, value: i64) {
        self.set_thousandths(value.saturating_mul(1000));
    }

    /// A unix time, to the millisecond.
    fn set_time(&self, at: SystemTime) {
        let millis = match at.duration_since(SystemTime::UNIX_EPOCH) {
            Ok(since) => i64::try_from(since.as_millis()).unwrap_or(i64::MAX),
            Err(before) => -i64::try_from(before.duration().as_millis()).unwrap_or(i64::MAX),
        };
        self.set_thousandths(millis);
    }

    fn clear(&self) {
        self.0.store(ABSENT, Ordering::Relaxed);
    }

    /// The value in its units (thousandths, or microseconds).
    pub(super) fn get(&self) -> Option<i64> {
        let value = self.0.load(Ordering::Relaxed);
        (value != ABSENT).then_some(value)
    }
}

/// [`LATENCY_BUCKETS`] as the end of their bucket lines.
const LATENCY_BUCKET_ENDS: [Short; LATENCY_BUCKETS.len()] = [
    Short::new(",le=\"0.01\"} "),
    Short::new(",le=\"0.025\"} "),
    Short::new(",le=\"0.05\"} "),
    Short::new(",le=\"0.1\"} "),
    Short::new(",le=\"0.25\"} "),
    Short::new(",le=\"0.5\"} "),
    Short::new(",le=\"1\"} "),
    Short::new(",le=\"2.5\"} "),
    Short::new(",le=\"5\"} "),
    Short::new(",le=\"10\"} "),
];
const INF_BUCKET_END: Short = Short::new(",le=\"+Inf\"} ");
pub(super) const LABELS_END: Short = Short::new("} ");

/// The starts of a histogram's sample lines (see [`histogram_names`]).
pub(super) struct HistogramNames {
    pub(super) name: &'static str,
    pub(super) bucket: &'static str,
    pub(super) sum: &'static str,
    pub(super) count: &'static str,
}

/// [`HistogramNames`] from the family name, joined at compile time.
macro_rules! histogram_names {
    ($name:literal) => {
        HistogramNames {
            name: $name,
            bucket: concat!($name, "_bucket{"),
            sum: concat!($name, "_sum{"),
            count: concat!($name, "_count{"),
        }
    };
}
pub(super) use histogram_names;

/// A histogram over [`LATENCY_BUCKETS`]: per-bucket counts (not cumulative), a sum and a count.
pub(super) struct AtomicHistogram {
    buckets: [AtomicU64; LATENCY_BUCKETS.len()],
    /// Observations above the last bound.
    overflow: AtomicU64,
    /// The sum in microseconds: an integer adds without a CAS loop and writes without float
    /// formatting.
    sum_micros: AtomicU64,
}

impl AtomicHistogram {
    pub(super) fn new() -> Self {
        AtomicHistogram {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            overflow: AtomicU64::new(0),
            sum_micros: AtomicU64::new(0),
        }
    }

    pub(super) fn observe(&self, duration: Duration) {
        let seconds = duration.as_secs_f64();
        match LATENCY_BUCKETS.iter().position(|bound| seconds <= *bound) {
            Some(index) => self.buckets[index].fetch_add(1, Ordering::Relaxed),
            None => self.overflow.fetch_add(1, Ordering::Relaxed),
        };
        let micros = u64::try_from(duration.as_nanos().div_ceil(1000)).unwrap_or(u64::MAX);
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
    }

    /// The sample lines; `labels` (escaped, without braces) go before `le`.
    pub(super) fn write(&self, out: &mut Vec<u8>, names: &HistogramNames, labels: &str) {
        // Every bucket line starts with the same name and labels: copied once from the output,
        // then from the first line (one copy per line instead of two).
        let start = out.len();
        out.extend_from_slice(names.bucket.as_bytes());
        out.extend_from_slice(labels.as_bytes());
        let prefix = start..out.len();
        let mut cumulative = 0;
        for (index, (end, bucket)) in LATENCY_BUCKET_ENDS.iter().zip(&self.buckets).enumerate() {
            if index > 0 {
                out.extend_from_within(prefix.clone());
            }
            cumulative += bucket.load(Ordering::Relaxed);
            push_short(out, end);
            push_u64(out, cumulative);
            out.push(b'\n');
        }
        // The count is derived from the buckets read, so a scrape racing an observation still
        // sees monotonic buckets with `+Inf` equal to `_count`.
        let count = cumulative + self.overflow.load(Ordering::Relaxed);
        out.extend_from_within(prefix);
        push_short(out, &INF_BUCKET_END);
        push_u64(out, count);
        out.push(b'\n');
        let sum = i64::try_from(self.sum_micros.load(Ordering::Relaxed)).unwrap_or(i64::MAX);
        push_line_fixed::<6>(out, names.sum, labels, &LABELS_END, sum);
        push_line_u64(out, names.count, labels, &LABELS_END, count);
    }
}

/// The histograms of its host an org records into with `latency_histograms = "host"` (see
/// `hosts.rs`, which owns them).
pub(super) struct HostSinks {
    pub(super) ping: Arc<AtomicHistogram>,
    pub(super) token: Arc<AtomicHistogram>,
}

/// Counters by reason; a reason's series exists once its count is above zero. The counters are
/// allocated at the first failure: most orgs never fail, and three sets of zeros per org were
/// 0.3 KB each at 10,000 orgs.
pub(super) struct ReasonCounters(OnceLock<Box<[AtomicU64; Reason::ALL.len()]>>);

impl ReasonCounters {
    fn new() -> Self {
        ReasonCounters(OnceLock::new())
    }

    fn inc(&self, reason: Reason) {
        if let Some(index) = Reason::ALL.iter().position(|r| *r == reason) {
            let counters = self
                .0
                .get_or_init(|| Box::new(std::array::from_fn(|_| AtomicU64::new(0))));
            counters[index].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// `start` is the family name with `{`.
    pub(super) fn write(&self, out: &mut Vec<u8>, start: &str, org_label: &str) {
        let Some(counters) = self.0.get() else {
            return;
        };
        for (reason, counter) in Reason::ALL.iter().zip(counters.iter()) {
            let value = counter.load(Ordering::Relaxed);
            if value > 0 {
                for part in [start, org_label, ",reason=\"", reason.as_str(), "\"} "] {
                    out.extend_from_slice(part.as_bytes());
                }
                push_u64(out, value);
                out.push(b'\n');
            }
        }
    }
}

/// Every series of one org. Shared between the registry (for rendering) and the org's probe.
/// The credential's gauges (validity, token expiry, last verified) are not here: every org of a
/// credential reads them from the one [`crate::obf::credential::CredentialState`].
pub struct OrgMetrics {
    pub(super) org: String,
    /// `org="NAME"`, escaped, ready to write.
    pub(super) org_label: String,
    pub(super) ping_success: OptionalGauge,
    /// The org's own latency histograms: written with `latency_histograms = "org"` only.
    pub(super) ping_duration: AtomicHistogram,
    /// In microseconds.
    pub(super) ping_last_duration: OptionalGauge,
    pub(super) pings_ok: AtomicU64,
    pub(super) pings_failed: AtomicU64,
    pub(super) ping_failures: ReasonCounters,
    pub(super) ping_last_status: OptionalGauge,
    pub(super) ping_last_success: OptionalGauge,
    pub(super) probe_last_run: OptionalGauge,
    pub(super) probe_interval: OptionalGauge,
    pub(super) token_refreshes_ok: AtomicU64,
    pub(super) token_refreshes_failed: AtomicU64,
    pub(super) token_refresh_failures: ReasonCounters,
    pub(super) token_refresh_duration: AtomicHistogram,
    pub(super) token_reuses: AtomicU64,
    pub(super) subscription_expiry: OptionalGauge,
    pub(super) subscription_failures: ReasonCounters,
    /// With `latency_histograms = "host"`, the histograms of the org's host that latencies go to
    /// instead of its own. A lock rather than a field set once: a reload may switch the mode or
    /// move the org to another host while its `Arc` lives on; readers never contend but there.
    hosted: RwLock<Option<HostSinks>>,
}

impl OrgMetrics {
    pub(super) fn new(org: &str) -> Self {
        let org_label = format!("org=\"{}\"", escape_label_value(org));
        OrgMetrics {
            org: org.to_string(),
            org_label,
            ping_success: OptionalGauge::absent(),
            ping_duration: AtomicHistogram::new(),
            ping_last_duration: OptionalGauge::absent(),
            pings_ok: AtomicU64::new(0),
            pings_failed: AtomicU64::new(0),
            ping_failures: ReasonCounters::new(),
            ping_last_status: OptionalGauge::absent(),
            ping_last_success: OptionalGauge::absent(),
            probe_last_run: OptionalGauge::absent(),
            probe_interval: OptionalGauge::absent(),
            token_refreshes_ok: AtomicU64::new(0),
            token_refreshes_failed: AtomicU64::new(0),
            token_refresh_failures: ReasonCounters::new(),
            token_refresh_duration: AtomicHistogram::new(),
            token_reuses: AtomicU64::new(0),
            subscription_expiry: OptionalGauge::absent(),
            subscription_failures: ReasonCounters::new(),
            hosted: RwLock::new(None),
        }
    }

    fn hosted(&self) -> RwLockReadGuard<'_, Option<HostSinks>> {
        self.hosted.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Points the org's latencies at its host's histograms (`Some`) or back at its own.
    pub(super) fn set_hosted(&self, sinks: Option<HostSinks>) {
        *self.hosted.write().unwrap_or_else(|e| e.into_inner()) = sinks;
    }

    fn observe_ping(&self, duration: Duration) {
        self.ping_last_duration.set_micros(duration);
        match &*self.hosted() {
            Some(host) => host.ping.observe(duration),
            None => self.ping_duration.observe(duration),
        }
    }

    fn observe_token(&self, duration: Duration) {
        match &*self.hosted() {
            Some(host) => host.token.observe(duration),
            None => self.token_refresh_duration.observe(duration),
        }
    }

    pub fn name(&self) -> &str {
        &self.org
    }

    pub fn ping_succeeded(&self, status: u16, duration: Duration) {
        self.observe_ping(duration);
        self.pings_ok.fetch_add(1, Ordering::Relaxed);
        self.ping_success.set_whole(1);
        self.ping_last_status.set_whole(i64::from(status));
        self.ping_last_success.set_time(SystemTime::now());
    }

    /// Observes the time of a ping that failed (the failure itself is recorded by `ping_failed`).
    pub fn observe_ping_duration(&self, duration: Duration) {
        self.observe_ping(duration);
    }

    /// A failed ping; `duration` is `None` when no request was sent.
    pub fn ping_failed(&self, reason: Reason, status: Option<u16>, duration: Option<Duration>) {
        if let Some(duration) = duration {
            self.observe_ping(duration);
        }
        self.pings_failed.fetch_add(1, Ordering::Relaxed);
        self.ping_failures.inc(reason);
        self.ping_success.set_whole(0);
        self.ping_last_status
            .set_whole(i64::from(status.unwrap_or(0)));
    }

    pub fn token_refreshed(&self, duration: Duration, failure: Option<Reason>) {
        self.observe_token(duration);
        match failure {
            None => self.token_refreshes_ok.fetch_add(1, Ordering::Relaxed),
            Some(reason) => {
                self.token_refresh_failures.inc(reason);
                self.token_refreshes_failed.fetch_add(1, Ordering::Relaxed)
            }
        };
    }

    /// A token request answered for a secret that had been replaced meanwhile (a rotation): it
    /// was sent and did not succeed, but no reason of the closed set fits (`rejected` would read
    /// as a revocation), so it counts in `obf_token_refreshes_total{result="failure"}` only.
    pub fn token_refresh_superseded(&self, duration: Duration) {
        self.observe_token(duration);
        self.token_refreshes_failed.fetch_add(1, Ordering::Relaxed);
    }

    pub fn token_reused(&self) {
        self.token_reuses.fetch_add(1, Ordering::Relaxed);
    }

    pub fn set_subscription_expiry(&self, paid_until: i64) {
        self.subscription_expiry.set_whole(paid_until);
    }

    /// Subscription checks are off (`subscription_check_interval = "0s"`, perhaps by a reload).
    pub fn clear_subscription_expiry(&self) {
        self.subscription_expiry.clear();
    }

    pub fn subscription_check_failed(&self, reason: Reason) {
        self.subscription_failures.inc(reason);
    }

    /// A probe finished (absent until the first one, so staleness alerts do not fire at start).
    pub fn probe_finished(&self, at: SystemTime) {
        self.probe_last_run.set_time(at);
    }

    pub(super) fn set_interval(&self, interval: Duration) {
        self.probe_interval
            .set_thousandths(i64::try_from(interval.as_millis()).unwrap_or(i64::MAX));
    }
}
