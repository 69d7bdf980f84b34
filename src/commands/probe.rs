//! `probe`: probes every org (or one) once, now, with the agent's own orgs and token rules, and
//! prints a table or JSON. It starts no schedule and no server.

use std::path::Path;
use std::sync::Arc;

use crate::app::first_config;
use crate::config::shard::Shard;
use crate::fleet::agent::{build_orgs, MAX_PROBES_IN_FLIGHT};
use crate::fleet::controller::ConfigSource;
use crate::fleet::report::ProbeReport;
use crate::metrics::Metrics;

/// Output of the `probe` command.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ProbeFormat {
    Text,
    Json,
}

/// `probe`: probes every org (or one) now, prints one line per org (or JSON) and returns whether
/// all succeeded. Respects the token rules: orgs sharing a credential share one token.
pub async fn probe(
    path: &Path,
    org: Option<&str>,
    format: ProbeFormat,
    shard: Option<Shard>,
) -> anyhow::Result<bool> {
    let source = ConfigSource::File(path.to_path_buf());
    let mut config = first_config(&source, shard).await?;
    if let Some(name) = org {
        config.orgs.retain(|o| o.name.as_str() == name);
        if config.orgs.is_empty() {
            anyhow::bail!(
                "unknown org {name:?}: not in {} (or not in this shard)",
                path.display()
            );
        }
    }
    let metrics = Metrics::new();
    let orgs = build_orgs(&config, &metrics).await?;
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_PROBES_IN_FLIGHT));
    let mut tasks = tokio::task::JoinSet::new();
    for (index, org) in orgs.into_iter().enumerate() {
        let slots = slots.clone();
        tasks.spawn(async move {
            let _slot = slots.acquire().await;
            (index, org.probe().await)
        });
    }
    let mut reports = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        reports.push(joined?);
    }
    reports.sort_by_key(|(index, _)| *index);
    let reports: Vec<_> = reports.into_iter().map(|(_, report)| report).collect();
    match format {
        ProbeFormat::Json => println!("{}", serde_json::to_string_pretty(&reports)?),
        ProbeFormat::Text => print!("{}", probe_table(&reports)),
    }
    Ok(reports.iter().all(|r| r.success))
}

const PROBE_COLUMNS: [&str; 8] = [
    "ORG",
    "RESULT",
    "REASON",
    "STATUS",
    "PING_MS",
    "TOKEN_MS",
    "TOKEN_EXPIRES",
    "SUBSCRIPTION_ENDS",
];

/// The `probe` table: a header and one line per report, each column as wide as its widest cell
/// (a long org name or a `no_token (token: ...)` reason shifts the columns rather than breaking
/// them). Numbers are right-aligned.
fn probe_table(reports: &[ProbeReport]) -> String {
    let rows: Vec<[String; 8]> = std::iter::once(PROBE_COLUMNS.map(str::to_owned))
        .chain(reports.iter().map(probe_cells))
        .collect();
    let mut widths = [0; 8];
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in &rows {
        let cells: Vec<String> = row
            .iter()
            .zip(widths)
            .enumerate()
            .map(|(column, (cell, width))| match column {
                3..=5 => format!("{cell:>width$}"),
                _ => format!("{cell:<width$}"),
            })
            .collect();
        out.push_str(cells.join(" ").trim_end());
        out.push('\n');
    }
    out
}

/// The reason column: `no_token` alone hides why there is no token (the simulator or OBF is
/// unreachable, the request was rate-limited, the credentials were refused), so the token
/// request's own failure is shown beside it; `not sent` when this probe sent none (spacing,
/// backoff, or another org of the same credential asked first: see `--format json`'s `detail`).
fn probe_reason(report: &ProbeReport) -> String {
    use crate::obf::reason::Reason;
    match (report.reason, report.token_failure) {
        (None, _) => "-".to_string(),
        (Some(Reason::NoToken), Some(token)) => format!("no_token (token: {token})"),
        (Some(Reason::NoToken), None) => "no_token (token: not sent)".to_string(),
        (Some(reason), _) => reason.as_str().to_string(),
    }
}

fn probe_cells(report: &ProbeReport) -> [String; 8] {
    let ms = |s: Option<f64>| s.map_or("-".to_string(), |s| format!("{:.1}", s * 1000.0));
    let time = |t: Option<f64>| {
        t.map_or("-".to_string(), |t| {
            // `t` may be a server's paid_until: bounded to what RFC 3339 can print (year 9999).
            let secs = std::time::Duration::try_from_secs_f64(t.clamp(0.0, 253_402_300_799.0))
                .unwrap_or_default();
            let at = crate::clock::wall_after(std::time::UNIX_EPOCH, secs);
            humantime::format_rfc3339_seconds(at).to_string()
        })
    };
    [
        report.org.clone(),
        if report.success { "ok" } else { "FAILED" }.to_string(),
        probe_reason(report),
        report.status.map_or("-".to_string(), |s| s.to_string()),
        ms(report.ping_seconds),
        ms(report.token_seconds),
        time(report.token_expires_at),
        time(report.subscription_ends.map(|s| s as f64)),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleet::report::TokenUse;
    use crate::obf::reason::Reason;

    fn report(org: &str, reason: Option<Reason>, token_failure: Option<Reason>) -> ProbeReport {
        ProbeReport {
            org: org.to_string(),
            success: reason.is_none(),
            reason,
            status: reason.is_none().then_some(200),
            ping_seconds: reason.is_none().then_some(0.0123),
            token: match token_failure {
                Some(_) => TokenUse::Failed,
                None => TokenUse::Fetched,
            },
            token_seconds: Some(0.002),
            token_failure,
            token_expires_at: None,
            credentials_valid: None,
            credentials_last_verified: None,
            subscription_ends: None,
            finished_at: 0.0,
            detail: None,
        }
    }

    #[test]
    fn a_missing_token_shows_why_the_token_request_failed() {
        let down = report("down", Some(Reason::NoToken), Some(Reason::Connect));
        assert_eq!(probe_reason(&down), "no_token (token: connect)");
        let limited = report("limited", Some(Reason::NoToken), Some(Reason::RateLimited));
        assert_eq!(probe_reason(&limited), "no_token (token: rate_limited)");
        let mut waiting = report("waiting", Some(Reason::NoToken), None);
        waiting.token = TokenUse::None;
        assert_eq!(probe_reason(&waiting), "no_token (token: not sent)");
        let refused = report("refused", Some(Reason::Forbidden), None);
        assert_eq!(probe_reason(&refused), "forbidden");
        assert_eq!(probe_reason(&report("fine", None, None)), "-");
    }

    #[test]
    fn the_probe_table_widens_columns_to_fit_and_keeps_them_aligned() {
        let table = probe_table(&[
            report("a-rather-long-organisation-name", None, None),
            report("down", Some(Reason::NoToken), Some(Reason::InvalidResponse)),
        ]);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 3, "{table}");
        assert!(lines[0].starts_with("ORG "), "{table}");
        // Every column starts at the same offset on every line.
        let start = |line: &str, cell: &str| line.find(cell).expect(cell);
        let reason_at = start(lines[0], "REASON");
        assert_eq!(
            start(lines[2], "no_token (token: invalid_response)"),
            reason_at
        );
        assert!(lines[1][reason_at..].starts_with("- "), "{table}");
        let status_end = start(lines[0], "STATUS") + "STATUS".len();
        assert_eq!(start(lines[1], "200") + 3, status_end, "{table}");
        assert!(lines[1].contains(" 12.3 "), "{table}");
    }
}
