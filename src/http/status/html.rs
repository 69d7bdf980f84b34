//! HTML rendering of the status page: pure functions of rows, reports and "now", so they are
//! tested without a server. Every dynamic string goes through [`escape_html`].

use std::fmt::Write as _;
use std::time::SystemTime;

use super::{OrgState, OrgStatus};
use crate::fleet::org::HISTORY_LEN;
use crate::fleet::report::{ProbeReport, TokenUse};

/// Seconds in a minute, hour, day.
const MINUTE: u64 = 60;
const HOUR: u64 = 60 * MINUTE;
const DAY: u64 = 24 * HOUR;
/// A subscription ending sooner than this is shown as a warning.
const SUBSCRIPTION_WARNING: f64 = 30.0 * DAY as f64;
/// The index shows this much of a failure's detail; the org's page shows all of it.
const INDEX_DETAIL_CHARS: usize = 160;

const STYLE: &str = "\
:root{color-scheme:light}
*{box-sizing:border-box}
body{font:15px/1.45 system-ui,-apple-system,\"Segoe UI\",Roboto,Helvetica,Arial,sans-serif;margin:0;padding:12px;color:#1b1b1b;background:#f6f6f6}
h1{font-size:1.3em;margin:0 0 .2em}
h2{font-size:1.1em;margin:1.2em 0 .4em}
p{margin:.3em 0 .8em}
a{color:#0b57d0}
.summary{color:#333}
.scroll{overflow-x:auto;-webkit-overflow-scrolling:touch;border:1px solid #ccc;border-radius:6px;background:#fff}
table{border-collapse:separate;border-spacing:0;min-width:100%}
th,td{padding:7px 9px;text-align:left;vertical-align:top;white-space:nowrap;border-bottom:1px solid #e2e2e2}
thead th{background:#eee;font-size:.85em;font-weight:600;color:#333}
tbody tr:last-child td{border-bottom:0}
tr.ok td{background:#eaf6ec}
tr.failing td{background:#fdeceb}
tr.unknown td{background:#f3f3f3}
th:first-child,td:first-child{position:sticky;left:0;z-index:1}
td:first-child{font-weight:600;border-right:1px solid #e2e2e2}
tr.ok td:first-child{border-left:5px solid #2e7d32}
tr.failing td:first-child{border-left:5px solid #c62828}
tr.unknown td:first-child{border-left:5px solid #9e9e9e}
.badge{display:inline-block;padding:0 8px;border-radius:10px;font-size:.85em;font-weight:700;color:#fff}
.badge.ok{background:#2e7d32}
.badge.failing{background:#c62828}
.badge.unknown{background:#757575}
.sub{font-size:.8em;color:#555}
.detail{white-space:normal;min-width:14em;max-width:30em;font-size:.85em;color:#3a3a3a;overflow-wrap:anywhere}
.bad{color:#b71c1c;font-weight:600}
.warn{color:#8a5300;font-weight:600}
.good{color:#1b5e20}
.none{color:#777}
.nowrap{white-space:nowrap}
code{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:.92em}
dl.facts{display:grid;grid-template-columns:max-content 1fr;gap:5px 14px;margin:.6em 0;padding:10px 12px;background:#fff;border:1px solid #ccc;border-radius:6px}
dl.facts dt{font-weight:600;color:#333}
dl.facts dd{margin:0;min-width:0;overflow-wrap:anywhere}
footer{margin-top:1em;font-size:.85em;color:#555}
";

/// Escapes `&`, `<`, `>`, `"` and `'`: safe in element content and in quoted attributes.
pub fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A length of time, rounded down, in at most two units: "12 s", "4 min 5 s", "4 h 59 min",
/// "2 d 3 h"; whole days from ten days on ("364 d"). Negative or non-finite input is "0 s".
pub fn format_duration(seconds: f64) -> String {
    let s = if seconds.is_finite() && seconds > 0.0 {
        seconds.floor() as u64
    } else {
        0
    };
    let two = |big: u64, big_unit: &str, small: u64, small_unit: &str| {
        if small == 0 {
            format!("{big} {big_unit}")
        } else {
            format!("{big} {big_unit} {small} {small_unit}")
        }
    };
    if s < MINUTE {
        format!("{s} s")
    } else if s < HOUR {
        two(s / MINUTE, "min", s % MINUTE, "s")
    } else if s < DAY {
        two(s / HOUR, "h", s % HOUR / MINUTE, "min")
    } else if s < 10 * DAY {
        two(s / DAY, "d", s % DAY / HOUR, "h")
    } else {
        format!("{} d", s / DAY)
    }
}

/// `at` seen from `now` (both unix seconds): "12 s ago" or "in 4 h 59 min".
pub fn relative(at: f64, now: f64) -> String {
    if at <= now {
        format!("{} ago", format_duration(now - at))
    } else {
        format!("in {}", format_duration(at - now))
    }
}

/// A request's duration: "42 ms", "1.25 s" (plain text: escape it for HTML).
pub fn format_latency(seconds: f64) -> String {
    if seconds < 0.001 {
        "<1 ms".to_string()
    } else if seconds < 1.0 {
        format!("{:.0} ms", seconds * 1000.0)
    } else {
        format!("{seconds:.2} s")
    }
}

fn datetime(at: f64) -> Option<chrono::DateTime<chrono::Utc>> {
    chrono::DateTime::from_timestamp(at.floor() as i64, 0)
}

/// "2026-01-31 12:00:05 UTC".
fn utc(at: f64) -> String {
    datetime(at)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_else(|| "?".to_string())
}

/// A `<time>` element showing `text`, the exact time `at` in its attributes.
fn time_element(at: f64, text: &str) -> String {
    let iso = datetime(at)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_default();
    format!(
        "<time datetime=\"{}\" title=\"{}\">{}</time>",
        escape_html(&iso),
        escape_html(&utc(at)),
        escape_html(text)
    )
}

fn none(text: &str) -> String {
    format!("<span class=\"none\">{}</span>", escape_html(text))
}

fn truncate(text: &str, max_chars: usize) -> String {
    match text.char_indices().nth(max_chars) {
        Some((end, _)) => format!("{}…", text.get(..end).unwrap_or(text)),
        None => text.to_string(),
    }
}

fn badge(state: OrgState) -> String {
    let name = state.as_str();
    format!("<span class=\"badge {name}\">{name}</span>")
}

/// The displayed value of each field of a row, as HTML.
struct Cells {
    state: String,
    last_run: String,
    reason: String,
    detail: Option<String>,
    last_status: String,
    last_latency: String,
    last_success: String,
    token_expires: String,
    credentials: String,
    subscription: String,
}

fn cells(row: &OrgStatus, now: f64) -> Cells {
    let last_run = match row.last_run {
        Some(at) => time_element(at, &relative(at, now)),
        None => none("not probed yet"),
    };
    let reason = match (row.reason, row.state) {
        (Some(reason), _) => {
            let mut html = format!(
                "<code class=\"bad\">{}</code>",
                escape_html(reason.as_str())
            );
            if let Some(token) = row.token_failure.filter(|t| *t != reason) {
                let _ = write!(
                    html,
                    "<div class=\"sub\">token request: <code>{}</code></div>",
                    escape_html(token.as_str())
                );
            }
            html
        }
        (None, OrgState::Failing) => "<span class=\"bad\">failed</span>".to_string(),
        (None, _) => none("—"),
    };
    let last_status = match (row.last_status, row.runs) {
        (Some(status), _) => {
            let class = if (200..300).contains(&status) {
                "good"
            } else {
                "bad"
            };
            format!("<span class=\"{class}\">{status}</span>")
        }
        (None, 0) => none("—"),
        (None, _) => none("no ping sent"),
    };
    let last_latency = match row.last_latency_seconds {
        Some(seconds) => escape_html(&format_latency(seconds)),
        None => none("—"),
    };
    let last_success = match (row.last_success, row.runs) {
        (Some(at), _) => time_element(at, &relative(at, now)),
        (None, 0) => none("—"),
        (None, _) => format!(
            "<span class=\"bad\">not in the last {} runs</span>",
            row.runs.min(HISTORY_LEN)
        ),
    };
    let token_expires = match row.token_expires_at {
        Some(at) if at > now => time_element(at, &relative(at, now)),
        Some(at) => format!(
            "<span class=\"bad\">expired {}</span>",
            time_element(at, &relative(at, now))
        ),
        None => none("no token"),
    };
    let credentials = match (row.credentials_valid, row.credentials_last_verified) {
        (Some(true), Some(at)) => format!(
            "<span class=\"good\">valid</span>, verified {}",
            time_element(at, &relative(at, now))
        ),
        (Some(true), None) => "<span class=\"good\">valid</span>".to_string(),
        (Some(false), _) => "<span class=\"bad\">rejected</span>".to_string(),
        (None, _) => none("unknown"),
    };
    let subscription = match row.subscription_ends {
        Some(at) => {
            let at = at as f64;
            let date = datetime(at)
                .map(|t| t.format("%Y-%m-%d").to_string())
                .unwrap_or_default();
            let (class, text) = if at <= now {
                (" class=\"bad\"", format!("ended {}", relative(at, now)))
            } else if at - now < SUBSCRIPTION_WARNING {
                (" class=\"warn\"", relative(at, now))
            } else {
                ("", relative(at, now))
            };
            format!(
                "<span{class}>{}</span> <span class=\"sub\">({})</span>",
                time_element(at, &date),
                escape_html(&text)
            )
        }
        None => none("unknown"),
    };
    Cells {
        state: badge(row.state),
        last_run,
        reason,
        detail: row.detail.clone(),
        last_status,
        last_latency,
        last_success,
        token_expires,
        credentials,
        subscription,
    }
}

fn page(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <meta http-equiv=\"refresh\" content=\"30\">\n\
         <title>{}</title>\n<style>\n{STYLE}</style>\n</head>\n<body>\n{body}</body>\n</html>\n",
        escape_html(title)
    )
}

const FOOTER: &str =
    "<footer>Refreshes every 30 s. Also as JSON: <a href=\"/api/status\">/api/status</a> · \
     metrics: <a href=\"/metrics\">/metrics</a></footer>\n";

/// The page at `/`: one row per org, in the order given.
pub fn render_index(rows: &[OrgStatus], now: SystemTime) -> String {
    let now = crate::metrics::unix_seconds(now);
    let count = |state| rows.iter().filter(|r| r.state == state).count();
    let failing = count(OrgState::Failing);
    let mut body = String::new();
    let _ = write!(
        body,
        "<h1>OBF credentials</h1>\n<p class=\"summary\">{} org{}: {}{} failing</span>, {} ok, {} not probed yet · {}</p>\n",
        rows.len(),
        if rows.len() == 1 { "" } else { "s" },
        if failing > 0 { "<span class=\"bad\">" } else { "<span>" },
        failing,
        count(OrgState::Ok),
        count(OrgState::Unknown),
        format_args!("<span class=\"nowrap\">{}</span>", escape_html(&utc(now))),
    );
    if rows.is_empty() {
        body.push_str("<p>No orgs configured (or none in this shard).</p>\n");
    } else {
        body.push_str(
            "<div class=\"scroll\"><table>\n<thead><tr><th>Org</th><th>State</th><th>Reason</th>\
             <th>Last status</th><th>Last latency</th><th>Last success</th><th>Token expires</th>\
             <th>Credentials</th><th>Subscription ends</th></tr></thead>\n<tbody>\n",
        );
        for row in rows {
            let c = cells(row, now);
            let name = escape_html(&row.org);
            let detail = c
                .detail
                .as_deref()
                .map(|d| {
                    format!(
                        "<div class=\"detail\">{}</div>",
                        escape_html(&truncate(d, INDEX_DETAIL_CHARS))
                    )
                })
                .unwrap_or_default();
            let _ = writeln!(
                body,
                "<tr class=\"{state}\" id=\"org-{name}\"><td><a href=\"/org/{name}\">{name}</a></td>\
                 <td>{badge}<div class=\"sub\">{last_run}</div></td><td>{reason}{detail}</td>\
                 <td>{status}</td><td>{latency}</td><td>{success}</td><td>{token}</td>\
                 <td>{credentials}</td><td>{subscription}</td></tr>",
                state = row.state.as_str(),
                badge = c.state,
                last_run = c.last_run,
                reason = c.reason,
                status = c.last_status,
                latency = c.last_latency,
                success = c.last_success,
                token = c.token_expires,
                credentials = c.credentials,
                subscription = c.subscription,
            );
        }
        body.push_str("</tbody>\n</table></div>\n");
    }
    body.push_str(FOOTER);
    page("OBF credentials: status", &body)
}

fn token_text(report: &ProbeReport) -> String {
    let took = |s: Option<f64>| escape_html(&s.map(format_latency).unwrap_or_default());
    match report.token {
        TokenUse::Reused => "reused".to_string(),
        TokenUse::Fetched => format!("fetched in {}", took(report.token_seconds)),
        TokenUse::Failed => format!(
            "<span class=\"bad\">failed ({})</span> after {}",
            escape_html(
                report
                    .token_failure
                    .map(|r| r.as_str())
                    .unwrap_or("unknown")
            ),
            took(report.token_seconds)
        ),
        TokenUse::None => none("none at hand"),
    }
}

/// The page at `/org/{name}`: the org's row as a list, its settings, and `history` (oldest
/// first, as kept) shown newest first.
pub fn render_org(row: &OrgStatus, history: &[ProbeReport], now: SystemTime) -> String {
    let now = crate::metrics::unix_seconds(now);
    let c = cells(row, now);
    let name = escape_html(&row.org);
    let mut body = format!(
        "<p><a href=\"/\">← all orgs</a></p>\n<h1>{name} {}</h1>\n<dl class=\"facts\">\n",
        c.state
    );
    let mut fact = |term: &str, value: &str| {
        let _ = writeln!(body, "<dt>{}</dt><dd>{value}</dd>", escape_html(term));
    };
    fact("Last run", &c.last_run);
    fact("Reason", &c.reason);
    if let Some(detail) = &c.detail {
        fact(
            "Detail",
            &format!("<span class=\"detail\">{}</span>", escape_html(detail)),
        );
    }
    fact("Last status", &c.last_status);
    fact("Last latency", &c.last_latency);
    fact("Last success", &c.last_success);
    fact("Token expires", &c.token_expires);
    fact("Credentials", &c.credentials);
    fact("Subscription ends", &c.subscription);
    fact("Host", &format!("<code>{}</code>", escape_html(&row.host)));
    fact(
        "Client ID",
        &format!("<code>{}</code>", escape_html(&row.client_id)),
    );
    fact("API", &escape_html(row.api));
    fact("Schedule", &escape_html(&row.schedule));
    if !row.labels.is_empty() {
        let labels: Vec<String> = row
            .labels
            .iter()
            .map(|(k, v)| format!("<code>{}={}</code>", escape_html(k), escape_html(v)))
            .collect();
        fact("Labels", &labels.join(" "));
    }
    body.push_str("</dl>\n");
    let _ = writeln!(
        body,
        "<h2>Last {} run{} <span class=\"sub\">(newest first; {HISTORY_LEN} are kept)</span></h2>",
        history.len(),
        if history.len() == 1 { "" } else { "s" }
    );
    if history.is_empty() {
        body.push_str("<p>No runs yet.</p>\n");
    } else {
        body.push_str(
            "<div class=\"scroll\"><table>\n<thead><tr><th>Finished</th><th>Result</th>\
             <th>Reason</th><th>HTTP</th><th>Ping</th><th>Token</th><th>Detail</th></tr></thead>\n<tbody>\n",
        );
        for report in history.iter().rev() {
            let state = if report.success {
                OrgState::Ok
            } else {
                OrgState::Failing
            };
            let reason = match report.reason {
                Some(reason) => format!("<code>{}</code>", escape_html(reason.as_str())),
                None => none("—"),
            };
            let status = match report.status {
                Some(status) => status.to_string(),
                None => none("—"),
            };
            let ping = match report.ping_seconds {
                Some(seconds) => escape_html(&format_latency(seconds)),
                None => none("not sent"),
            };
            let detail = match &report.detail {
                Some(detail) => format!("<div class=\"detail\">{}</div>", escape_html(detail)),
                None => String::new(),
            };
            let at = report.finished_at;
            let _ = writeln!(
                body,
                "<tr class=\"{cls}\"><td>{when}<div class=\"sub\">{utc}</div></td><td>{badge}</td>\
                 <td>{reason}</td><td>{status}</td><td>{ping}</td><td>{token}</td><td>{detail}</td></tr>",
                cls = state.as_str(),
                when = time_element(at, &relative(at, now)),
                utc = escape_html(&utc(at)),
                badge = badge(state),
                token = token_text(report),
            );
        }
        body.push_str("</tbody>\n</table></div>\n");
    }
    body.push_str(FOOTER);
    page(&format!("OBF credentials: {}", row.org), &body)
}

/// The 404 page of `/org/{name}`.
pub fn render_not_found(name: &str) -> String {
    let body = format!(
        "<p><a href=\"/\">← all orgs</a></p>\n<h1>Unknown org</h1>\n<p>No org named \
         <code>{}</code>: not in the configuration (or not in this shard).</p>\n",
        escape_html(name)
    );
    page("OBF credentials: unknown org", &body)
}
