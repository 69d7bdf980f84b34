//! The latency histograms of `latency_histograms = "host"`: ping and token request time per
//! (`host`, `api`), shared by the orgs that use them and dropped with the last of them.
//!
//! Both families carry the same labels (the contract's "per (`host`, `api`)") so one join on
//! `obf_org_info`'s `host` and `api` serves both on a dashboard, even though v1 and v2 orgs of a
//! host get their tokens from the same endpoint: its latency then shows as two series, which a
//! `sum by (host)` adds back up. A fleet has a handful of these, so they are kept in a small map
//! with a user count and written in full at the start of a scrape; the per-org families then
//! leave their histograms out.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::org::{AtomicHistogram, HistogramNames, HostSinks};
use super::scrape::{PING_DURATION, TOKEN_REFRESH_DURATION};
use super::text::escape_label_value;

/// Which host histograms an org uses: its `host` and `api`, as in `obf_org_info`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct HostKey {
    pub(super) host: String,
    pub(super) api: String,
}

/// The two histograms of one key, their label set ready to write, and how many orgs use them.
struct Shared {
    ping: Arc<AtomicHistogram>,
    token: Arc<AtomicHistogram>,
    labels: String,
    users: usize,
}

/// Every host histogram pair in use, by key; sorted, so the text is stable between scrapes.
#[derive(Default)]
pub(super) struct HostHistograms {
    shared: BTreeMap<HostKey, Shared>,
}

impl HostHistograms {
    /// The histograms of `key`, created on first use; each call must be paired with a
    /// [`HostHistograms::release`] of the same key.
    pub(super) fn acquire(&mut self, key: &HostKey) -> HostSinks {
        let shared = self.shared.entry(key.clone()).or_insert_with(|| Shared {
            ping: Arc::new(AtomicHistogram::new()),
            token: Arc::new(AtomicHistogram::new()),
            labels: format!(
                "api=\"{}\",host=\"{}\"",
                escape_label_value(&key.api),
                escape_label_value(&key.host)
            ),
            users: 0,
        });
        shared.users += 1;
        HostSinks {
            ping: shared.ping.clone(),
            token: shared.token.clone(),
        }
    }

    /// One org stopped using `key`'s histograms; the last one removes their series.
    pub(super) fn release(&mut self, key: &HostKey) {
        if let Some(shared) = self.shared.get_mut(key) {
            shared.users -= 1;
            if shared.users == 0 {
                self.shared.remove(key);
            }
        }
    }

    /// Both families with their headers; nothing when no org is in host mode.
    pub(super) fn write(&self, out: &mut Vec<u8>) {
        if self.shared.is_empty() {
            return;
        }
        write_family(
            out,
            &PING_DURATION,
            "Ping request time by host and api, token time excluded.",
            self.shared.values().map(|s| (&*s.ping, s.labels.as_str())),
        );
        write_family(
            out,
            &TOKEN_REFRESH_DURATION,
            "Token request time by host and api.",
            self.shared.values().map(|s| (&*s.token, s.labels.as_str())),
        );
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.shared.len()
    }
}

fn write_family<'a>(
    out: &mut Vec<u8>,
    names: &HistogramNames,
    help: &str,
    histograms: impl Iterator<Item = (&'a AtomicHistogram, &'a str)>,
) {
    for part in ["# HELP ", names.name, " ", help, "\n# TYPE ", names.name] {
        out.extend_from_slice(part.as_bytes());
    }
    out.extend_from_slice(b" histogram\n");
    for (histogram, labels) in histograms {
        histogram.write(out, names, labels);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(host: &str, api: &str) -> HostKey {
        HostKey {
            host: host.to_string(),
            api: api.to_string(),
        }
    }

    #[test]
    fn histograms_are_shared_by_key_and_dropped_with_their_last_user() {
        let mut hosts = HostHistograms::default();
        let a = hosts.acquire(&key("https://a", "v2"));
        let b = hosts.acquire(&key("https://a", "v2"));
        let v1 = hosts.acquire(&key("https://a", "v1"));
        assert!(Arc::ptr_eq(&a.ping, &b.ping));
        assert!(Arc::ptr_eq(&a.token, &b.token));
        // Per (host, api) for tokens too, as the contract says, though both share the endpoint.
        assert!(!Arc::ptr_eq(&a.ping, &v1.ping));
        assert!(!Arc::ptr_eq(&a.token, &v1.token));
        assert_eq!(hosts.len(), 2);
        hosts.release(&key("https://a", "v2"));
        assert_eq!(hosts.len(), 2);
        hosts.release(&key("https://a", "v2"));
        assert_eq!(hosts.len(), 1);
        hosts.release(&key("https://a", "v1"));
        assert_eq!(hosts.len(), 0);
        let mut out = Vec::new();
        hosts.write(&mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn label_values_are_escaped() {
        let mut hosts = HostHistograms::default();
        let sinks = hosts.acquire(&key("https://x/\"q\"", "v2"));
        sinks.ping.observe(std::time::Duration::from_millis(20));
        let mut out = Vec::new();
        hosts.write(&mut out);
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.contains(
                "obf_ping_duration_seconds_count{api=\"v2\",host=\"https://x/\\\"q\\\"\"} 1\n"
            ),
            "{text}"
        );
        assert!(text.contains(
            "obf_token_refresh_duration_seconds_count{api=\"v2\",host=\"https://x/\\\"q\\\"\"} 0\n"
        ));
    }
}
