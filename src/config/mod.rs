//! Configuration: the TOML file (format fixed by the contract) read, checked and turned into
//! a typed [`Config`]. Every problem in a file is collected and reported at once, one per
//! line, each naming the file and the key path (`obf.toml: org[1] ("acme").interval: ...`).
//!
//! Layers, one way: TOML text → `toml::Table` → `schema` walk (unknown / mistyped keys) →
//! `raw` serde structs → validation (`settings`, `secret`, `orgs`, `web`) → [`Config`].
//! Secrets are read here (files, environment) so a bad secret fails `check` and startup,
//! and are only ever held as [`SecretString`]. This module does not watch the file or
//! decide when to reload; it only answers "what does this file say".

mod error;
pub(crate) mod file;
mod host;
mod org;
mod orgs;
mod raw;
mod report;
mod schedule;
mod schema;
pub(crate) mod secret;
mod settings;
pub mod shard;
mod tls;
mod web;

#[cfg(test)]
mod tests;

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::Path;

pub use error::{ConfigError, Problem};
pub use file::FileError;
pub use org::{ApiVersion, AuthMode, CaFile, OrgConfig, OrgName, SecretSource};
pub use schedule::{CronSchedule, Schedule};
pub use secrecy::SecretString;
pub use tls::{load_tls_config, TlsError};
pub use web::{TlsServerConfig, WebConfig};

use raw::{RawFile, SCHEMA};
use report::{line_col, Problems};
use settings::{Layer, Level};

/// Where the agent listens when neither the file nor the command line says.
pub const DEFAULT_LISTEN: SocketAddr =
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 9852));

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// `[exporter] listen`; `None` when the file does not say (the CLI then decides, falling
    /// back to [`DEFAULT_LISTEN`]).
    pub listen: Option<SocketAddr>,
    /// `[exporter.web]`, if present.
    pub web: Option<WebConfig>,
    /// `[exporter] latency_histograms`.
    pub latency_histograms: LatencyHistograms,
    /// In file order; names are unique.
    pub orgs: Vec<OrgConfig>,
    /// Things that work but deserve a log line (e.g. an inline secret).
    pub warnings: Vec<String>,
}

/// `[exporter] latency_histograms`: what the ping and token latency histograms are kept per.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LatencyHistograms {
    /// One histogram per org (label `org`): 26 of an org's ~40 series.
    #[default]
    Org,
    /// Ping and token time per (`host`, `api`): a handful of series for the whole fleet; each
    /// org keeps `obf_ping_last_duration_seconds`.
    Host,
}

impl LatencyHistograms {
    pub const ALLOWED: [&'static str; 2] = ["org", "host"];

    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "org" => Some(Self::Org),
            "host" => Some(Self::Host),
            _ => None,
        }
    }
}

/// Reads and validates the config file at `path`, with secrets from the real environment and
/// file system.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let origin = path.display().to_string();
    let text =
        file::read_to_string(path, file::CONFIG_CAP).map_err(|error| ConfigError::Unreadable {
            origin: origin.clone(),
            error,
        })?;
    parse(&text, &origin, &|name| std::env::var(name).ok())
}

/// Validates config `text`. `origin` names the file in messages; `env` looks up environment
/// variables (for `client_secret_env`). Secret, CA and TLS files are read relative to the
/// process's working directory.
pub fn parse(
    text: &str,
    origin: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigError> {
    let mut p = Problems::new(origin);
    let mut table: toml::Table = match text.parse() {
        Ok(table) => table,
        Err(e) => {
            // Only the position and toml's message: its full Display quotes the source line,
            // which may hold an inline secret.
            let e: toml::de::Error = e;
            let (line, column) = line_col(text, e.span().map_or(0, |s| s.start));
            return Err(ConfigError::Syntax {
                origin: origin.to_owned(),
                line,
                column,
                message: e.message().trim_end().to_owned(),
            });
        }
    };
    schema::check(&mut table, &SCHEMA, &mut p);
    let raw: RawFile = match table.try_into() {
        Ok(raw) => raw,
        Err(e) => {
            // The schema walk leaves only shapes serde accepts; this is a safety net.
            let e: toml::de::Error = e;
            p.file(e.message().trim_end());
            return Err(p.into_error());
        }
    };

    let mut warnings = Vec::new();
    let exporter = raw.exporter.unwrap_or_default();
    let listen = exporter.listen.as_deref().and_then(|text| {
        text.parse::<SocketAddr>()
            .map_err(|e| {
                p.at(
                    "exporter.listen",
                    format!("invalid socket address {text:?} (expected IP:PORT, e.g. \"0.0.0.0:9852\"): {e}"),
                );
            })
            .ok()
    });
    let latency_histograms = match exporter.latency_histograms.as_deref() {
        None => LatencyHistograms::default(),
        Some(text) => LatencyHistograms::parse(text).unwrap_or_else(|| {
            p.at(
                "exporter.latency_histograms",
                settings::unknown_value(text, &LatencyHistograms::ALLOWED),
            );
            LatencyHistograms::default()
        }),
    };
    let web = exporter
        .web
        .as_ref()
        .and_then(|w| web::validate(w, &mut p, &mut warnings));

    let defaults = Layer::parse(
        &raw.defaults.unwrap_or_default(),
        "defaults",
        Level::Defaults,
        &mut p,
    );
    defaults.check_defaults(&mut p);

    if raw.org.is_empty() && !p.reported("org") {
        p.file("no [[org]] configured; add at least one [[org]] table");
    }
    let orgs = orgs::validate(&raw.org, &defaults, env, &mut p, &mut warnings);

    if !p.is_empty() {
        return Err(p.into_error());
    }
    Ok(Config {
        listen,
        web,
        latency_histograms,
        orgs: orgs.into_iter().map(|(_, org)| org).collect(),
        warnings,
    })
}
