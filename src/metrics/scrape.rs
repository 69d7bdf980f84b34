//! The per-org families in exposition order, and [`Scrape`]: their text, rendered a chunk at a
//! time when the HTTP body asks for the next one.
//!
//! Rendering on demand, on the thread that writes the socket, keeps each chunk in that core's
//! cache between being written and being sent, and needs no queue or second thread: at 10,000
//! orgs (24 MB) that made a scrape markedly faster on a 2-core machine than rendering on a
//! blocking thread into a channel (see docs/performance.md).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::org::{histogram_names, HistogramNames, OrgMetrics, LABELS_END};
use super::text::{push_line_fixed, push_line_u64, Short};
use crate::obf::credential::CredentialState;

/// One org as a scrape sees it: its series and its `obf_org_info` labels, ready to write.
#[derive(Clone)]
pub(super) struct ScrapeOrg {
    pub(super) metrics: Arc<OrgMetrics>,
    pub(super) info: Arc<str>,
    pub(super) credential: Arc<CredentialState>,
}

/// The text of one scrape, taken a chunk at a time with [`Scrape::next_chunk`].
pub struct Scrape {
    /// Text that goes before the per-org families (the exporter-wide metrics, and the latency
    /// histograms when they are kept per host).
    head: Vec<u8>,
    /// `latency_histograms = "host"`: the per-org histogram families are left out.
    per_host: bool,
    /// The orgs as they were when the scrape began; their values are read as it goes.
    orgs: Vec<ScrapeOrg>,
    /// Where the next chunk continues: a family of [`FAMILIES`] and an org of `orgs`.
    family: usize,
    org: usize,
}

impl Scrape {
    pub(super) fn new(head: Vec<u8>, orgs: Vec<ScrapeOrg>, per_host: bool) -> Self {
        Scrape {
            head,
            per_host,
            orgs,
            family: 0,
            org: 0,
        }
    }

    /// The next piece of the text, `size` bytes or a line or a family header more (the first also
    /// carries the exporter-wide metrics); `None` once everything was handed out. A family with no
    /// samples is left out; a chunk never ends between a family's header and its first sample, so
    /// that header can still be taken back.
    pub fn next_chunk(&mut self, size: usize) -> Option<Vec<u8>> {
        let mut out = std::mem::take(&mut self.head);
        out.reserve(size.saturating_add(4096).min(1 << 20));
        while let Some(family) = FAMILIES.get(self.family) {
            if self.per_host && family.org_histogram {
                self.family += 1;
                continue;
            }
            // Where this family's header starts while it has no sample yet.
            let mut header_without_samples = None;
            if self.org == 0 {
                header_without_samples = Some(out.len());
                let kind = family.kind;
                for part in ["# HELP ", family.name, " ", family.help, "\n# TYPE "] {
                    out.extend_from_slice(part.as_bytes());
                }
                for part in [family.name, " ", kind, "\n"] {
                    out.extend_from_slice(part.as_bytes());
                }
            }
            while let Some(org) = self.orgs.get(self.org) {
                let before = out.len();
                (family.write)(&mut out, org);
                self.org += 1;
                if out.len() > before {
                    header_without_samples = None;
                }
                if header_without_samples.is_none() && out.len() >= size {
                    return Some(out);
                }
            }
            if let Some(start) = header_without_samples {
                out.truncate(start);
            }
            self.family += 1;
            self.org = 0;
        }
        (!out.is_empty()).then_some(out)
    }

    /// All the remaining text in one buffer.
    pub fn into_bytes(mut self) -> Vec<u8> {
        let mut all = Vec::new();
        while let Some(chunk) = self.next_chunk(usize::MAX) {
            all.extend_from_slice(&chunk);
        }
        all
    }
}

/// One per-org family: its header, and how one org's lines are written.
struct OrgFamily {
    name: &'static str,
    help: &'static str,
    kind: &'static str,
    /// A latency histogram, kept per org only with `latency_histograms = "org"`.
    org_histogram: bool,
    write: fn(&mut Vec<u8>, &ScrapeOrg),
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
pub(super) const PING_DURATION: HistogramNames = histogram_names!("obf_ping_duration_seconds");
const PING_LAST_DURATION: FamilyName = family_name!("obf_ping_last_duration_seconds");
const PINGS: FamilyName = family_name!("obf_pings_total");
const PING_FAILURES: FamilyName = family_name!("obf_ping_failures_total");
const PING_STATUS: FamilyName = family_name!("obf_ping_last_status_code");
const PING_LAST_SUCCESS: FamilyName = family_name!("obf_ping_last_success_timestamp_seconds");
const PROBE_LAST_RUN: FamilyName = family_name!("obf_probe_last_run_timestamp_seconds");
const PROBE_INTERVAL: FamilyName = family_name!("obf_probe_interval_seconds");
const TOKEN_REFRESHES: FamilyName = family_name!("obf_token_refreshes_total");
const TOKEN_REFRESH_FAILURES: FamilyName = family_name!("obf_token_refresh_failures_total");
pub(super) const TOKEN_REFRESH_DURATION: HistogramNames =
    histogram_names!("obf_token_refresh_duration_seconds");
const TOKEN_REUSES: FamilyName = family_name!("obf_token_reuses_total");
const TOKEN_EXPIRY: FamilyName = family_name!("obf_token_expiry_timestamp_seconds");
const CREDENTIALS_VALID: FamilyName = family_name!("obf_credentials_valid");
const LAST_VERIFIED: FamilyName = family_name!("obf_credentials_last_verified_timestamp_seconds");
const SUBSCRIPTION_EXPIRY: FamilyName = family_name!("obf_subscription_expiry_timestamp_seconds");
const SUBSCRIPTION_FAILURES: FamilyName = family_name!("obf_subscription_check_failures_total");

const FAILURE_END: Short = Short::new(",result=\"failure\"} ");
const SUCCESS_END: Short = Short::new(",result=\"success\"} ");

/// A gauge line, if the gauge has a value.
fn gauge(out: &mut Vec<u8>, family: &FamilyName, org: &OrgMetrics, thousandths: Option<i64>) {
    if let Some(thousandths) = thousandths {
        push_line_fixed::<3>(out, family.start, &org.org_label, &LABELS_END, thousandths);
    }
}

/// The `result="failure"` and `result="success"` lines of a counter.
fn by_result(out: &mut Vec<u8>, family: &FamilyName, org: &OrgMetrics, ok: u64, failed: u64) {
    push_line_u64(out, family.start, &org.org_label, &FAILURE_END, failed);
    push_line_u64(out, family.start, &org.org_label, &SUCCESS_END, ok);
}

/// Every per-org family, in the order they are written.
const FAMILIES: [OrgFamily; 19] = [
    OrgFamily {
        name: ORG_INFO.name,
        help: "Static facts about each configured org (always 1).",
        kind: "gauge",
        org_histogram: false,
        write: |out, o| push_line_u64(out, ORG_INFO.start, &o.info, &LABELS_END, 1),
    },
    OrgFamily {
        name: PING_SUCCESS.name,
        help: "1 if the last ping got a 2xx answer, else 0.",
        kind: "gauge",
        org_histogram: false,
        write: |out, o| gauge(out, &PING_SUCCESS, &o.metrics, o.metrics.ping_success.get()),
    },
    OrgFamily {
        name: PING_DURATION.name,
        help: "Ping request time, token time excluded.",
        kind: "histogram",
        org_histogram: true,
        write: |out, o| {
            let m = &o.metrics;
            m.ping_duration.write(out, &PING_DURATION, &m.org_label)
        },
    },
    OrgFamily {
        name: PING_LAST_DURATION.name,
        help: "Request time of the last ping sent, token time excluded.",
        kind: "gauge",
        org_histogram: false,
        write: |out, o| {
            let m = &o.metrics;
            if let Some(micros) = m.ping_last_duration.get() {
                let start = PING_LAST_DURATION.start;
                push_line_fixed::<6>(out, start, &m.org_label, &LABELS_END, micros);
            }
        },
    },
    OrgFamily {
        name: PINGS.name,
        help: "Pings by result.",
        kind: "counter",
        org_histogram: false,
        write: |out, o| {
            let m = &o.metrics;
            let ok = m.pings_ok.load(Ordering::Relaxed);
            by_result(out, &PINGS, m, ok, m.pings_failed.load(Ordering::Relaxed))
        },
    },
    OrgFamily {
        name: PING_FAILURES.name,
        help: "Failed pings by reason.",
        kind: "counter",
        org_histogram: false,
        write: |out, o| {
            let m = &o.metrics;
            m.ping_failures
                .write(out, PING_FAILURES.start, &m.org_label)
        },
    },
    OrgFamily {
        name: PING_STATUS.name,
        help: "HTTP status of the last ping, 0 if none came.",
        kind: "gauge",
        org_histogram: false,
        write: |out, o| {
            gauge(
                out,
                &PING_STATUS,
                &o.metrics,
                o.metrics.ping_last_status.get(),
            )
        },
    },
    OrgFamily {
        name: PING_LAST_SUCCESS.name,
        help: "Unix time of the last successful ping.",
        kind: "gauge",
        org_histogram: false,
        write: |out, o| {
            let value = o.metrics.ping_last_success.get();
            gauge(out, &PING_LAST_SUCCESS, &o.metrics, value)
        },
    },
    OrgFamily {
        name: PROBE_LAST_RUN.name,
        help: "Unix time the last probe of the org finished, whatever its result.",
        kind: "gauge",
        org_histogram: false,
        write: |out, o| {
            gauge(
                out,
                &PROBE_LAST_RUN,
                &o.metrics,
                o.metrics.probe_last_run.get(),
            )
        },
    },
    OrgFamily {
        name: PROBE_INTERVAL.name,
        help: "Planned seconds between the org's probes (for cron: between the next two runs).",
        kind: "gauge",
        org_histogram: false,
        write: |out, o| {
            gauge(
                out,
                &PROBE_INTERVAL,
                &o.metrics,
                o.metrics.probe_interval.get(),
            )
        },
    },
    OrgFamily {
        name: TOKEN_REFRESHES.name,
        help: "Token requests actually sent, by result.",
        kind: "counter",
        org_histogram: false,
        write: |out, o| {
            let m = &o.metrics;
            let ok = m.token_refreshes_ok.load(Ordering::Relaxed);
            let failed = m.token_refreshes_failed.load(Ordering::Relaxed);
            by_result(out, &TOKEN_REFRESHES, m, ok, failed)
        },
    },
    OrgFamily {
        name: TOKEN_REFRESH_FAILURES.name,
        help: "Failed token requests by reason.",
        kind: "counter",
        org_histogram: false,
        write: |out, o| {
            let m = &o.metrics;
            let start = TOKEN_REFRESH_FAILURES.start;
            m.token_refresh_failures.write(out, start, &m.org_label)
        },
    },
    OrgFamily {
        name: TOKEN_REFRESH_DURATION.name,
        help: "Token request time.",
        kind: "histogram",
        org_histogram: true,
        write: |out, o| {
            let m = &o.metrics;
            m.token_refresh_duration
                .write(out, &TOKEN_REFRESH_DURATION, &m.org_label)
        },
    },
    OrgFamily {
        name: TOKEN_REUSES.name,
        help: "Probes served by a cached token.",
        kind: "counter",
        org_histogram: false,
        write: |out, o| {
            let m = &o.metrics;
            let reuses = m.token_reuses.load(Ordering::Relaxed);
            push_line_u64(out, TOKEN_REUSES.start, &m.org_label, &LABELS_END, reuses)
        },
    },
    OrgFamily {
        name: TOKEN_EXPIRY.name,
        help: "Unix time when the token in hand expires.",
        kind: "gauge",
        org_histogram: false,
        write: |out, o| {
            let value = o.credential.token_expires_millis();
            gauge(out, &TOKEN_EXPIRY, &o.metrics, value)
        },
    },
    OrgFamily {
        name: CREDENTIALS_VALID.name,
        help: "1 after the token endpoint accepted the credentials, 0 after it rejected them.",
        kind: "gauge",
        org_histogram: false,
        write: |out, o| {
            let value = o.credential.valid_millis();
            gauge(out, &CREDENTIALS_VALID, &o.metrics, value)
        },
    },
    OrgFamily {
        name: LAST_VERIFIED.name,
        help: "Unix time the token endpoint last accepted the credentials.",
        kind: "gauge",
        org_histogram: false,
        write: |out, o| {
            let value = o.credential.last_verified_millis();
            gauge(out, &LAST_VERIFIED, &o.metrics, value)
        },
    },
    OrgFamily {
        name: SUBSCRIPTION_EXPIRY.name,
        help: "The organisation's paid_until, unix time.",
        kind: "gauge",
        org_histogram: false,
        write: |out, o| {
            let value = o.metrics.subscription_expiry.get();
            gauge(out, &SUBSCRIPTION_EXPIRY, &o.metrics, value)
        },
    },
    OrgFamily {
        name: SUBSCRIPTION_FAILURES.name,
        help: "Failed subscription checks by reason.",
        kind: "counter",
        org_histogram: false,
        write: |out, o| {
            let m = &o.metrics;
            let start = SUBSCRIPTION_FAILURES.start;
            m.subscription_failures.write(out, start, &m.org_label)
        },
    },
];

/// A fleet of probed orgs, and the part of a scrape that does not change between two scrapes.
#[cfg(test)]
pub(crate) mod test_fleet {
    use std::time::Duration;

    use super::super::{Metrics, OrgInfoLabels};
    use crate::obf::reason::Reason;

    /// `orgs` orgs with one successful ping each; the last one also failed once.
    pub(crate) fn fleet(orgs: usize) -> Metrics {
        let metrics = Metrics::new();
        for i in 0..orgs {
            let org = metrics.add_org(
                OrgInfoLabels {
                    org: format!("org{i}"),
                    client_id: format!("ID{i}"),
                    host: "https://openbadgefactory.com".to_string(),
                    api: "v2".to_string(),
                    custom: Default::default(),
                },
                Duration::from_secs(60),
                Default::default(),
            );
            org.ping_succeeded(200, Duration::from_millis(40));
            if i == orgs - 1 {
                org.ping_failed(Reason::ServerError, Some(503), None);
            }
        }
        metrics
    }

    /// The text from the first per-org family on (the process metrics before it move on).
    pub(crate) fn orgs_part(text: &[u8]) -> &[u8] {
        let start = text
            .windows(19)
            .position(|w| w == b"# HELP obf_org_info")
            .expect("the per-org families are there");
        &text[start..]
    }
}

#[cfg(test)]
mod tests {
    use super::super::Metrics;
    use super::test_fleet::{fleet, orgs_part};

    #[test]
    fn chunks_join_to_the_whole_text_and_are_cut_only_after_a_sample() {
        let metrics = fleet(50);
        let whole = metrics.render();
        let mut scrape = metrics.scrape();
        let mut chunks = Vec::new();
        while let Some(chunk) = scrape.next_chunk(1000) {
            chunks.push(String::from_utf8(chunk).unwrap());
        }
        assert!(chunks.len() > 20, "{} chunks", chunks.len());
        for chunk in &chunks[..chunks.len() - 1] {
            assert!(chunk.len() >= 1000);
            assert!(chunk.ends_with('\n'));
            assert!(!chunk.trim_end().lines().last().unwrap().starts_with('#'));
        }
        // The per-org part is the same in both (the process metrics before it move on).
        assert!(
            orgs_part(chunks.concat().as_bytes()) == orgs_part(whole.as_bytes()),
            "the chunks differ"
        );
    }

    #[test]
    fn a_family_without_samples_is_left_out() {
        let metrics = fleet(3);
        let text = metrics.render();
        // Only the last org failed, once: its reason series is the family's only sample.
        assert_eq!(
            text.matches("# TYPE obf_ping_failures_total counter")
                .count(),
            1
        );
        assert_eq!(text.matches("obf_ping_failures_total{").count(), 1);
        // No org has a token, a failed token request or a subscription answer yet.
        for family in [
            "obf_token_expiry_timestamp_seconds",
            "obf_token_refresh_failures_total",
            "obf_subscription_expiry_timestamp_seconds",
            "obf_subscription_check_failures_total",
        ] {
            assert!(!text.contains(family), "{family} is there:\n{text}");
        }
        let empty = Metrics::new().scrape();
        let text = String::from_utf8(empty.into_bytes()).unwrap();
        assert!(!text.contains("obf_ping"), "{text}");
        assert!(text.contains("obf_exporter_build_info"));
    }
}
