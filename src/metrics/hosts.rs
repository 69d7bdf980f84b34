//! The latency histograms of `latency_histograms = "host"`: ping time per (`host`, `api`), token
//! time per `host`, each shared by the orgs that use it and dropped with the last of them.
//!
//! Tokens are keyed by `host` alone because both APIs get their token from the same endpoint
//! (`POST /v2/client/oauth2/token`): an `api` label there would split one endpoint's latency in
//! two. A fleet has a handful of these, so they are kept in small maps with a user count and
//! written in full at the start of a scrape; the per-org families then leave their histograms out.

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

/// One shared histogram, its label set ready to write, and how many orgs use it.
struct Shared {
    histogram: Arc<AtomicHistogram>,
    labels: String,
    users: usize,
}

impl Shared {
    fn new(labels: String) -> Self {
        Shared {
            histogram: Arc::new(AtomicHistogram::new()),
            labels,
            users: 0,
        }
    }
}

/// Every host histogram in use, by key; sorted, so the text is stable between scrapes.
#[derive(Default)]
pub(super) struct HostHistograms {
    ping: BTreeMap<HostKey, Shared>,
    token: BTreeMap<String, Shared>,
}

impl HostHistograms {
    /// The histograms of `key`, created on first use; each call must be paired with a
    /// [`HostHistograms::release`] of the same key.
    pub(super) fn acquire(&mut self, key: &HostKey) -> HostSinks {
        let ping = self.ping.entry(key.clone()).or_insert_with(|| {
            Shared::new(format!(
                "api=\"{}\",host=\"{}\"",
                escape_label_value(&key.api),
                escape_label_value(&key.host)
            ))
        });
        ping.users += 1;
        let ping = ping.histogram.clone();
        let token = self
            .token
            .entry(key.host.clone())
            .or_insert_with(|| Shared::new(format!("host=\"{}\"", escape_label_value(&key.host))));
        token.users += 1;
        HostSinks {
            ping,
            token: token.histogram.clone(),
        }
    }

    /// One org stopped using `key`'s histograms; the last one removes their series.
    pub(super) fn release(&mut self, key: &HostKey) {
        if let Some(shared) = self.ping.get_mut(key) {
            shared.users -= 1;
            if shared.users == 0 {
                self.ping.remove(key);
            }
        }
        if let Some(shared) = self.token.get_mut(&key.host) {
            shared.users -= 1;
            if shared.users == 0 {
                self.token.remove(&key.host);
            }
        }
    }

    /// Both families with their headers; nothing when no org is in host mode.
    pub(super) fn write(&self, out: &mut Vec<u8>) {
        write_family(
            out,
            &PING_DURATION,
            "Ping request time by host and api, token time excluded.",
            self.ping.values(),
        );
        write_family(
            out,
            &TOKEN_REFRESH_DURATION,
            "Token request time by host.",
            self.token.values(),
        );
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> (usize, usize) {
        (self.ping.len(), self.token.len())
    }
}

fn write_family<'a>(
    out: &mut Vec<u8>,
    names: &HistogramNames,
    help: &str,
    histograms: impl ExactSizeIterator<Item = &'a Shared>,
) {
    if histograms.len() == 0 {
        return;
    }
    for part in ["# HELP ", names.name, " ", help, "\n# TYPE ", names.name] {
        out.extend_from_slice(part.as_bytes());
    }
    out.extend_from_slice(b" histogram\n");
    for shared in histograms {
        shared.histogram.write(out, names, &shared.labels);
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
        assert!(!Arc::ptr_eq(&a.ping, &v1.ping));
        // One token endpoint per host, whatever the api.
        assert!(Arc::ptr_eq(&a.token, &v1.token));
        assert_eq!(hosts.len(), (2, 1));
        hosts.release(&key("https://a", "v2"));
        assert_eq!(hosts.len(), (2, 1));
        hosts.release(&key("https://a", "v2"));
        assert_eq!(hosts.len(), (1, 1));
        hosts.release(&key("https://a", "v1"));
        assert_eq!(hosts.len(), (0, 0));
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
            "obf_token_refresh_duration_seconds_count{host=\"https://x/\\\"q\\\"\"} 0\n"
        ));
    }
}
