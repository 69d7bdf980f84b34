//! Test-only copies of the shipped rule files, generated from them mechanically: every duration in
//! a range selector (`[15m]`), after `offset` and in a `for:` is divided by one factor, the
//! shipped evaluation interval (config/prometheus/prometheus.yml) over the test's. Nothing else
//! changes: recording rule names (`obf:failures:increase10m`), thresholds (values, not durations)
//! and texts stay as shipped, so the end-to-end test runs the shipped logic on a faster clock and
//! no hand-edited copy can drift from it.

use std::path::{Path, PathBuf};
use std::time::Duration;

/// The rule files written for one test run.
pub struct ScaledRules {
    pub recording: PathBuf,
    pub alerts: PathBuf,
    alerts_text: String,
}

impl ScaledRules {
    /// Writes `recording.yml` and `alerts.yml` into `dir`, every duration divided by `factor`.
    pub fn write(dir: &Path, factor: u32) -> Self {
        let read = |name: &str| {
            let path = super::repo(&format!("config/prometheus/{name}"));
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        };
        let recording_text = scale_durations(&read("recording.yml"), factor);
        let alerts_text = scale_durations(&read("alerts.yml"), factor);
        let recording = dir.join("recording.yml");
        let alerts = dir.join("alerts.yml");
        std::fs::write(&recording, recording_text).unwrap();
        std::fs::write(&alerts, &alerts_text).unwrap();
        ScaledRules {
            recording,
            alerts,
            alerts_text,
        }
    }

    /// The (scaled) `for:` of alert `name`.
    pub fn hold(&self, name: &str) -> Duration {
        let start = self
            .alerts_text
            .find(&format!("- alert: {name}\n"))
            .unwrap_or_else(|| panic!("no alert {name}"));
        let block = &self.alerts_text[start..];
        let end = block[1..].find("- alert: ").map_or(block.len(), |e| e + 1);
        block[..end]
            .lines()
            .find_map(|line| line.trim().strip_prefix("for: "))
            .and_then(|d| parse_duration(d).map(|(d, _)| d))
            .unwrap_or(Duration::ZERO)
    }
}

/// The `evaluation_interval` of the shipped example Prometheus config.
pub fn shipped_evaluation_interval() -> Duration {
    let text = std::fs::read_to_string(super::repo("config/prometheus/prometheus.yml")).unwrap();
    text.lines()
        .find_map(|line| line.trim().strip_prefix("evaluation_interval: "))
        .and_then(|d| parse_duration(d).map(|(d, _)| d))
        .expect("config/prometheus/prometheus.yml sets evaluation_interval")
}

/// `text` with every duration after `[`, `offset ` and `for: ` divided by `factor` (and a
/// subquery's step after `:`). Panics on a duration form it does not know (e.g. `1h30m`), so a
/// new rule cannot silently keep its shipped duration.
pub fn scale_durations(text: &str, factor: u32) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while !rest.is_empty() {
        let prefix = ["[", "offset ", "for: "].into_iter().find(|p| {
            rest.starts_with(p) && rest[p.len()..].starts_with(|c: char| c.is_ascii_digit())
        });
        let Some(prefix) = prefix else {
            let c = rest.chars().next().unwrap_or_default();
            out.push(c);
            rest = &rest[c.len_utf8()..];
            continue;
        };
        out.push_str(prefix);
        rest = &rest[prefix.len()..];
        loop {
            let (duration, len) = parse_duration(rest).unwrap_or_else(|| {
                panic!("unknown duration form at {:?}", &rest[..rest.len().min(20)])
            });
            rest = &rest[len..];
            if rest.starts_with(|c: char| c.is_ascii_alphanumeric()) {
                panic!(
                    "compound duration before {:?}: not supported",
                    &rest[..rest.len().min(20)]
                );
            }
            out.push_str(&format_duration(duration / factor));
            // A subquery `[5m:1m]` has a second duration, its step.
            if prefix == "["
                && rest.starts_with(':')
                && rest[1..].starts_with(|c: char| c.is_ascii_digit())
            {
                out.push(':');
                rest = &rest[1..];
                continue;
            }
            break;
        }
    }
    out
}

/// A Prometheus duration with one unit at the start of `text`, and its length in bytes.
fn parse_duration(text: &str) -> Option<(Duration, usize)> {
    let digits = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let number: u64 = text[..digits].parse().ok()?;
    let unit_text = &text[digits..];
    let (unit_ms, unit_len) = [
        ("ms", 1),
        ("s", 1000),
        ("m", 60_000),
        ("h", 3_600_000),
        ("d", 86_400_000),
        ("w", 7 * 86_400_000),
        ("y", 365 * 86_400_000),
    ]
    .into_iter()
    .find(|(unit, _)| unit_text.starts_with(unit))
    .map(|(unit, ms)| (ms, unit.len()))?;
    Some((Duration::from_millis(number * unit_ms), digits + unit_len))
}

fn format_duration(duration: Duration) -> String {
    let ms = duration.as_millis();
    match ms % 1000 {
        0 => format!("{}s", ms / 1000),
        _ => format!("{ms}ms"),
    }
}

#[test]
fn scaling_divides_ranges_offsets_and_holds_but_not_names_or_values() {
    let text = "- record: obf:failures:increase10m\n  expr: increase(x[10m]) unless y offset 10m > vector(10 * 60)\n  for: 5m\n  z[15m:1m] [1h]\n  description: for 5 minutes\n  for: 0m\n";
    assert_eq!(
        scale_durations(text, 30),
        "- record: obf:failures:increase10m\n  expr: increase(x[20s]) unless y offset 20s > vector(10 * 60)\n  for: 10s\n  z[30s:2s] [120s]\n  description: for 5 minutes\n  for: 0s\n"
    );
    assert_eq!(scale_durations("for: 1m", 7), "for: 8571ms");
}

#[test]
#[should_panic(expected = "compound duration")]
fn scaling_refuses_a_compound_duration() {
    scale_durations("x[1h30m]", 30);
}

#[test]
fn the_shipped_rules_scale_and_the_holds_are_read() {
    let dir = crate::cli::TempDir::new("scaled-rules");
    let rules = ScaledRules::write(&dir.write_path(""), 30);
    assert_eq!(rules.hold("ObfPingFailing"), Duration::from_secs(10));
    assert_eq!(rules.hold("ObfRateLimited"), Duration::ZERO);
    assert_eq!(shipped_evaluation_interval(), Duration::from_secs(30));
    let text = std::fs::read_to_string(&rules.recording).unwrap();
    assert!(text.contains("obf:failures:increase10m") && !text.contains("[10m]"));
}
