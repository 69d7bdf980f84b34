//! One org's series, held as plain atomics and written straight into the text format.
//!
//! A `prometheus` crate child metric costs several hundred bytes (it carries its own descriptor and
//! label pairs) and is rendered through an intermediate copy of every sample; at 10,000 orgs that
//! was ~85 MB of memory and ~350 ms per scrape. Here an org costs well under 1 KB and a scrape is a
//! single pass over the atomics.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use super::text::{escape_label_value, push_u64, write_f64, LATENCY_BUCKETS};
use super::unix_seconds;
use crate::reason::Reason;

/// An `f64` gauge that can be absent ("nothing to say yet").
pub(super) struct OptionalGauge(AtomicU64);

/// A NaN with a payload no arithmetic produces: marks "absent".
const ABSENT: u64 = 0x7ff8_dead_beef_0001;

impl OptionalGauge {
    fn absent() -> Self {
        OptionalGauge(AtomicU64::new(ABSENT))
    }

    fn set(&self, value: f64) {
        self.0.store(value.to_bits(), Ordering::Relaxed);
    }

    fn clear(&self) {
        self.0.store(ABSENT, Ordering::Relaxed);
    }

    pub(super) fn get(&self) -> Option<f64> {
        let bits = self.0.load(Ordering::Relaxed);
        (bits != ABSENT).then(|| f64::from_bits(bits))
    }
}

/// [`LATENCY_BUCKETS`] as their `le` label values.
const LATENCY_BUCKETS_TEXT: [&str; LATENCY_BUCKETS.len()] = [
    "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "30",
];

/// A histogram over [`LATENCY_BUCKETS`]: per-bucket counts (not cumulative), a sum and a count.
pub(super) struct AtomicHistogram {
    buckets: [AtomicU64; LATENCY_BUCKETS.len()],
    /// Observations above the last bound.
    overflow: AtomicU64,
    sum_bits: AtomicU64,
}

impl AtomicHistogram {
    fn new() -> Self {
        AtomicHistogram {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            overflow: AtomicU64::new(0),
            sum_bits: AtomicU64::new(0f64.to_bits()),
        }
    }

    pub(super) fn observe(&self, seconds: f64) {
        match LATENCY_BUCKETS.iter().position(|bound| seconds <= *bound) {
            Some(index) => self.buckets[index].fetch_add(1, Ordering::Relaxed),
            None => self.overflow.fetch_add(1, Ordering::Relaxed),
        };
        // Observations of one org are rare and never contended for long: a CAS loop is fine.
        let _ = self
            .sum_bits
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
                Some((f64::from_bits(bits) + seconds).to_bits())
            });
    }

    pub(super) fn write(&self, out: &mut String, name: &str, org_label: &str) {
        let mut cumulative = 0;
        for (bound, bucket) in LATENCY_BUCKETS_TEXT.iter().zip(&self.buckets) {
            cumulative += bucket.load(Ordering::Relaxed);
            out.push_str(name);
            out.push_str("_bucket{");
            out.push_str(org_label);
            out.push_str(",le=\"");
            out.push_str(bound);
            out.push_str("\"} ");
            push_u64(out, cumulative);
            out.push('\n');
        }
        // The count is derived from the buckets read, so a scrape racing an observation still
        // sees monotonic buckets with `+Inf` equal to `_count`.
        let count = cumulative + self.overflow.load(Ordering::Relaxed);
        out.push_str(name);
        out.push_str("_bucket{");
        out.push_str(org_label);
        out.push_str(",le=\"+Inf\"} ");
        push_u64(out, count);
        out.push('\n');
        out.push_str(name);
        out.push_str("_sum{");
        out.push_str(org_label);
        out.push_str("} ");
        write_f64(out, f64::from_bits(self.sum_bits.load(Ordering::Relaxed)));
        out.push('\n');
        out.push_str(name);
        out.push_str("_count{");
        out.push_str(org_label);
        out.push_str("} ");
        push_u64(out, count);
        out.push('\n');
    }
}

/// Counters by reason; a reason's series exists once its count is above zero.
pub(super) struct ReasonCounters([AtomicU64; Reason::ALL.len()]);

impl ReasonCounters {
    fn new() -> Self {
        ReasonCounters(std::array::from_fn(|_| AtomicU64::new(0)))
    }

    fn inc(&self, reason: Reason) {
        if let Some(index) = Reason::ALL.iter().position(|r| *r == reason) {
            self.0[index].fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(super) fn write(&self, out: &mut String, name: &str, org_label: &str) {
        for (reason, counter) in Reason::ALL.iter().zip(&self.0) {
            let value = counter.load(Ordering::Relaxed);
            if value > 0 {
                out.push_str(name);
                out.push('{');
                out.push_str(org_label);
                out.push_str(",reason=\"");
                out.push_str(reason.as_str());
                out.push_str("\"} ");
                push_u64(out, value);
                out.push('\n');
            }
        }
    }
}

/// Every series of one org. Shared between the registry (for rendering) and the org's probe.
pub struct OrgMetrics {
    pub(super) org: String,
    /// `org="NAME"`, escaped, ready to write; and with each `result` label.
    pub(super) org_label: String,
    pub(super) success_labels: String,
    pub(super) failure_labels: String,
    pub(super) ping_success: OptionalGauge,
    pub(super) ping_duration: AtomicHistogram,
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
    pub(super) token_expiry: OptionalGauge,
    pub(super) credentials_valid: OptionalGauge,
    pub(super) subscription_expiry: OptionalGauge,
    pub(super) subscription_failures: ReasonCounters,
}

impl OrgMetrics {
    pub(super) fn new(org: &str) -> Self {
        let org_label = format!("org=\"{}\"", escape_label_value(org));
        OrgMetrics {
            org: org.to_string(),
            success_labels: format!("{org_label},result=\"success\""),
            failure_labels: format!("{org_label},result=\"failure\""),
            org_label,
            ping_success: OptionalGauge::absent(),
            ping_duration: AtomicHistogram::new(),
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
            token_expiry: OptionalGauge::absent(),
            credentials_valid: OptionalGauge::absent(),
            subscription_expiry: OptionalGauge::absent(),
            subscription_failures: ReasonCounters::new(),
        }
    }

    pub fn name(&self) -> &str {
        &self.org
    }

    pub fn ping_succeeded(&self, status: u16, duration: Duration) {
        self.ping_duration.observe(duration.as_secs_f64());
        self.pings_ok.fetch_add(1, Ordering::Relaxed);
        self.ping_success.set(1.0);
        self.ping_last_status.set(f64::from(status));
        self.ping_last_success.set(unix_seconds(SystemTime::now()));
    }

    /// Observes the time of a ping that failed (the failure itself is recorded by `ping_failed`).
    pub fn observe_ping_duration(&self, duration: Duration) {
        self.ping_duration.observe(duration.as_secs_f64());
    }

    /// A failed ping; `duration` is `None` when no request was sent.
    pub fn ping_failed(&self, reason: Reason, status: Option<u16>, duration: Option<Duration>) {
        if let Some(duration) = duration {
            self.ping_duration.observe(duration.as_secs_f64());
        }
        self.pings_failed.fetch_add(1, Ordering::Relaxed);
        self.ping_failures.inc(reason);
        self.ping_success.set(0.0);
        self.ping_last_status.set(f64::from(status.unwrap_or(0)));
    }

    pub fn token_refreshed(&self, duration: Duration, failure: Option<Reason>) {
        self.token_refresh_duration.observe(duration.as_secs_f64());
        match failure {
            None => self.token_refreshes_ok.fetch_add(1, Ordering::Relaxed),
            Some(reason) => {
                self.token_refresh_failures.inc(reason);
                self.token_refreshes_failed.fetch_add(1, Ordering::Relaxed)
            }
        };
    }

    pub fn token_reused(&self) {
        self.token_reuses.fetch_add(1, Ordering::Relaxed);
    }

    /// `None` (no answer from the token endpoint since the credentials were loaded or changed)
    /// removes the series.
    pub fn set_credentials_valid(&self, valid: Option<bool>) {
        match valid {
            Some(valid) => self.credentials_valid.set(if valid { 1.0 } else { 0.0 }),
            None => self.credentials_valid.clear(),
        }
    }

    /// The expiry of the token in hand; `None` removes the series (no token in hand).
    pub fn set_token_expiry(&self, at: Option<SystemTime>) {
        match at {
            Some(at) => self.token_expiry.set(unix_seconds(at)),
            None => self.token_expiry.clear(),
        }
    }

    pub fn set_subscription_expiry(&self, paid_until: i64) {
        self.subscription_expiry.set(paid_until as f64);
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
        self.probe_last_run.set(unix_seconds(at));
    }

    pub(super) fn set_interval(&self, interval: Duration) {
        self.probe_interval.set(interval.as_secs_f64());
    }
}
