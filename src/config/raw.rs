//! The config file exactly as written: serde structs mirroring the TOML, nothing interpreted.
//!
//! Every value that needs parsing (durations, addresses, URLs, cron) stays a string here so the
//! validation layer can report it with its key path. `SCHEMA` lists the same keys for the
//! unknown-key walk in `schema.rs`; a test keeps the two in step.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::schema::{Field, Kind};

/// The whole file.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFile {
    pub exporter: Option<RawExporter>,
    pub defaults: Option<RawSettings>,
    #[serde(default)]
    pub org: Vec<RawOrg>,
}

/// `[exporter]`.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawExporter {
    pub listen: Option<String>,
    pub latency_histograms: Option<String>,
    pub web: Option<RawWeb>,
}

/// `[exporter.web]`. The user map holds bcrypt hashes, not passwords, but is kept out of Debug
/// anyway.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWeb {
    pub tls_cert_file: Option<String>,
    pub tls_key_file: Option<String>,
    pub basic_auth_users: Option<BTreeMap<String, String>>,
}

/// `[defaults]`: the keys an `[[org]]` may override.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSettings {
    pub host: Option<String>,
    pub api: Option<String>,
    pub auth: Option<String>,
    pub interval: Option<String>,
    pub cron: Option<String>,
    pub jitter: Option<String>,
    pub timeout: Option<String>,
    pub token_refresh_margin: Option<String>,
    pub token_min_interval: Option<String>,
    pub token_max_age: Option<String>,
    pub subscription_check_interval: Option<String>,
    pub credential_check_interval: Option<String>,
    pub ca_file: Option<String>,
}

/// One `[[org]]`. serde cannot combine `flatten` with `deny_unknown_fields`, so the
/// overridable keys are repeated here and split off by [`RawOrg::settings`].
///
/// No `Debug`: `client_secret` may hold the secret itself.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOrg {
    pub name: Option<String>,
    pub client_id: Option<String>,
    pub client_secret_file: Option<String>,
    pub client_secret_env: Option<String>,
    pub client_secret: Option<String>,
    pub labels: Option<BTreeMap<String, String>>,

    pub host: Option<String>,
    pub api: Option<String>,
    pub auth: Option<String>,
    pub interval: Option<String>,
    pub cron: Option<String>,
    pub jitter: Option<String>,
    pub timeout: Option<String>,
    pub token_refresh_margin: Option<String>,
    pub token_min_interval: Option<String>,
    pub token_max_age: Option<String>,
    pub subscription_check_interval: Option<String>,
    pub credential_check_interval: Option<String>,
    pub ca_file: Option<String>,
}

impl RawOrg {
    /// The overridable part of this org, in the same shape as `[defaults]`.
    pub fn settings(&self) -> RawSettings {
        RawSettings {
            host: self.host.clone(),
            api: self.api.clone(),
            auth: self.auth.clone(),
            interval: self.interval.clone(),
            cron: self.cron.clone(),
            jitter: self.jitter.clone(),
            timeout: self.timeout.clone(),
            token_refresh_margin: self.token_refresh_margin.clone(),
            token_min_interval: self.token_min_interval.clone(),
            token_max_age: self.token_max_age.clone(),
            subscription_check_interval: self.subscription_check_interval.clone(),
            credential_check_interval: self.credential_check_interval.clone(),
            ca_file: self.ca_file.clone(),
        }
    }
}

const fn s(name: &'static str) -> Field {
    Field {
        name,
        kind: Kind::Str,
    }
}

/// Keys of `[defaults]`, also accepted in every `[[org]]`.
const SETTINGS: [Field; 13] = [
    s("host"),
    s("api"),
    s("auth"),
    s("interval"),
    s("cron"),
    s("jitter"),
    s("timeout"),
    s("token_refresh_margin"),
    s("token_min_interval"),
    s("token_max_age"),
    s("subscription_check_interval"),
    s("ca_file"),
    s("credential_check_interval"),
];

const ORG: [Field; 19] = [
    s("name"),
    s("client_id"),
    s("client_secret_file"),
    s("client_secret_env"),
    s("client_secret"),
    Field {
        name: "labels",
        kind: Kind::StrMap,
    },
    SETTINGS[0],
    SETTINGS[1],
    SETTINGS[2],
    SETTINGS[3],
    SETTINGS[4],
    SETTINGS[5],
    SETTINGS[6],
    SETTINGS[7],
    SETTINGS[8],
    SETTINGS[9],
    SETTINGS[10],
    SETTINGS[11],
    SETTINGS[12],
];

const WEB: [Field; 3] = [
    s("tls_cert_file"),
    s("tls_key_file"),
    Field {
        name: "basic_auth_users",
        kind: Kind::StrMap,
    },
];

const EXPORTER: [Field; 3] = [
    s("listen"),
    s("latency_histograms"),
    Field {
        name: "web",
        kind: Kind::Table(&WEB),
    },
];

/// Every key the file may hold, as a tree; mirrors [`RawFile`].
pub const SCHEMA: [Field; 3] = [
    Field {
        name: "exporter",
        kind: Kind::Table(&EXPORTER),
    },
    Field {
        name: "defaults",
        kind: Kind::Table(&SETTINGS),
    },
    Field {
        name: "org",
        kind: Kind::TableArray(&ORG),
    },
];
