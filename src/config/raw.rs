//! The config file exactly as written: serde structs mirroring the TOML, nothing interpreted.
//!
//! Every value that needs parsing (durations, addresses, URLs, cron) stays a string here so the
//! validation layer can report it with its key path. `SCHEMA` lists the same keys for the
//! unknown-key walk in `schema.rs`: the overridable keys are declared once for both, and a test
//! (`tests/schema.rs`) keeps the rest in step, and README's tables with them.

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

/// Declares [`RawSettings`] and its schema [`SETTINGS`] from one list, so the struct serde fills
/// and the keys the schema walk accepts cannot drift apart. Every overridable key is a string.
macro_rules! overridable_keys {
    ($($key:ident),* $(,)?) => {
        /// `[defaults]`: the keys an `[[org]]` may override (flattened into [`RawOrg`]).
        #[derive(Debug, Clone, Default, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct RawSettings {
            $(pub $key: Option<String>,)*
        }

        /// Keys of `[defaults]`, also accepted in every `[[org]]`; in the order "known keys
        /// here" lists them.
        const SETTINGS: &[Field] = &[$(s(stringify!($key)),)*];
    };
}

// What each key means and accepts: `settings/mod.rs` (`Layer::parse`) and README's table.
overridable_keys!(
    host,
    api,
    auth,
    interval,
    cron,
    jitter,
    timeout,
    token_refresh_margin,
    token_min_interval,
    token_max_age,
    subscription_check_interval,
    ca_file,
    credential_check_interval,
);

/// One `[[org]]`: its own keys, and the overridable ones in the same shape as `[defaults]`.
/// `deny_unknown_fields` still holds with `flatten`: serde rejects a key that neither this
/// struct nor [`RawSettings`] takes (the schema walk has removed such keys already; this is
/// the safety net).
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
    #[serde(flatten)]
    pub settings: RawSettings,
}

const fn s(name: &'static str) -> Field {
    Field {
        name,
        kind: Kind::Str,
    }
}

const ORG: [Field; 7] = [
    s("name"),
    s("client_id"),
    s("client_secret_file"),
    s("client_secret_env"),
    s("client_secret"),
    Field {
        name: "labels",
        kind: Kind::StrMap,
    },
    Field {
        name: "(overridable keys)",
        kind: Kind::Flatten(SETTINGS),
    },
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
        kind: Kind::Table(SETTINGS),
    },
    Field {
        name: "org",
        kind: Kind::TableArray(&ORG),
    },
];
