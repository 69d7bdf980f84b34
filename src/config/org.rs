//! The validated per-org types: `OrgConfig` and the small domain values it is made of
//! (`OrgName`, `ApiVersion`, `AuthMode`, `SecretSource`). Each is valid by construction;
//! building them from the file is `orgs.rs`'s job.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};

use super::Schedule;

/// An org's name: unique in the config, used as the `org` label value. `[A-Za-z0-9_.-]+`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OrgName(String);

impl OrgName {
    /// Accepts a non-empty name of ASCII letters, digits, `_`, `.` and `-`.
    pub fn parse(name: &str) -> Result<Self, String> {
        let valid = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
        if valid {
            Ok(Self(name.to_owned()))
        } else {
            Err(format!(
                "invalid org name {name:?}: use one or more of A-Z a-z 0-9 _ . -"
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for OrgName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for OrgName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl std::str::FromStr for OrgName {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// Which ping endpoint to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ApiVersion {
    /// `GET /v1/ping/{client_id}` (legacy).
    V1,
    /// `GET /v2/client/{client_id}/ping`.
    #[default]
    V2,
}

impl ApiVersion {
    pub const ALLOWED: [&'static str; 2] = ["v1", "v2"];

    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "v1" => Some(Self::V1),
            "v2" => Some(Self::V2),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::V1 => "v1",
            Self::V2 => "v2",
        }
    }
}

impl fmt::Display for ApiVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How the client credentials reach the token endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum AuthMode {
    /// HTTP Basic `Authorization` header.
    #[default]
    Basic,
    /// `client_id` and `client_secret` in the form body.
    Body,
}

impl AuthMode {
    pub const ALLOWED: [&'static str; 2] = ["basic", "body"];

    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "basic" => Some(Self::Basic),
            "body" => Some(Self::Body),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Basic => "basic",
            Self::Body => "body",
        }
    }
}

impl fmt::Display for AuthMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where an org's client secret was read from (never the secret itself).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SecretSource {
    /// `client_secret_file`, as given (relative paths are relative to the working directory).
    File(PathBuf),
    /// `client_secret_env`: the variable's name.
    Env(String),
    /// `client_secret`, inline in the config file.
    Inline,
}

impl fmt::Display for SecretSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::File(path) => write!(f, "file {}", path.display()),
            Self::Env(name) => write!(f, "environment variable {name}"),
            Self::Inline => f.write_str("inline"),
        }
    }
}

/// `ca_file`: the path and the PEM bytes read when the config was loaded, so that building an
/// HTTP client (at a reload, on an async worker) reads no file. Equal when path and bytes are:
/// a renewed CA bundle at the same path counts as a change.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct CaFile {
    pub path: PathBuf,
    pub pem: Arc<[u8]>,
}

impl fmt::Debug for CaFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CaFile")
            .field("path", &self.path)
            .field("pem_bytes", &self.pem.len())
            .finish()
    }
}

/// Everything needed to watch one org, defaults already applied.
///
/// `Debug` is derived: `SecretString` prints as `[REDACTED]`. There is deliberately no
/// `PartialEq` (it would have to expose the secret implicitly); use [`OrgConfig::same_settings`].
#[derive(Debug, Clone)]
pub struct OrgConfig {
    pub name: OrgName,
    /// `scheme://host[:port][/prefix]`, no trailing slash.
    pub host: String,
    pub api: ApiVersion,
    pub auth: AuthMode,
    pub schedule: Schedule,
    pub jitter: Duration,
    pub timeout: Duration,
    pub token_refresh_margin: Duration,
    pub token_min_interval: Duration,
    pub token_max_age: Duration,
    /// `Duration::ZERO` disables the subscription check.
    pub subscription_check_interval: Duration,
    /// A token obtained longer ago than this is replaced, to verify the credentials;
    /// `Duration::ZERO` turns that off.
    pub credential_check_interval: Duration,
    pub ca_file: Option<CaFile>,
    pub client_id: String,
    pub client_secret: SecretString,
    pub secret_source: SecretSource,
    /// Extra labels for `obf_org_info`.
    pub labels: BTreeMap<String, String>,
}

impl OrgConfig {
    /// True when every setting, the secret included, is the same: a reload can keep this
    /// org's running state (token cache, schedule) as it is.
    pub fn same_settings(&self, other: &Self) -> bool {
        self.same_except_labels(other) && self.labels == other.labels
    }

    /// True when nothing but `labels` may differ: a reload then only relabels `obf_org_info`.
    pub fn same_except_labels(&self, other: &Self) -> bool {
        self.same_except_secret_and_labels(other)
            && self.client_secret.expose_secret() == other.client_secret.expose_secret()
    }

    /// True when nothing but `labels` and the secret's value (from the same source) may differ:
    /// neither plays a part in the schedule, so a reload keeps the org running; a new secret
    /// only replaces the credential's token, as a changed secret file does.
    pub fn same_except_secret_and_labels(&self, other: &Self) -> bool {
        // Destructured without `..`, so a new field does not compile until it is sorted into
        // "compared" or "not compared" here.
        let OrgConfig {
            name,
            host,
            api,
            auth,
            schedule,
            jitter,
            timeout,
            token_refresh_margin,
            token_min_interval,
            token_max_age,
            subscription_check_interval,
            credential_check_interval,
            ca_file,
            client_id,
            client_secret: _,
            secret_source,
            labels: _,
        } = self;
        *name == other.name
            && *host == other.host
            && *api == other.api
            && *auth == other.auth
            && *schedule == other.schedule
            && *jitter == other.jitter
            && *timeout == other.timeout
            && *token_refresh_margin == other.token_refresh_margin
            && *token_min_interval == other.token_min_interval
            && *token_max_age == other.token_max_age
            && *subscription_check_interval == other.subscription_check_interval
            && *credential_check_interval == other.credential_check_interval
            && *ca_file == other.ca_file
            && *client_id == other.client_id
            && *secret_source == other.secret_source
    }

    /// The credential this org uses: its token cache, its `--shard` and its 10 s budget belong
    /// to it. The host is normalised (two spellings of one server are one credential).
    pub fn credential_key(&self) -> (String, String) {
        (self.host.clone(), self.client_id.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn org_names_are_checked() {
        for ok in ["acme", "a.b-c_D9", "x"] {
            assert_eq!(OrgName::parse(ok).map(|n| n.to_string()), Ok(ok.to_owned()));
        }
        for bad in ["", "a b", "ä", "a/b", "a:b"] {
            assert!(OrgName::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn enums_round_trip_through_their_names() {
        for v in ApiVersion::ALLOWED {
            assert_eq!(ApiVersion::parse(v).map(ApiVersion::as_str), Some(v));
        }
        for v in AuthMode::ALLOWED {
            assert_eq!(AuthMode::parse(v).map(AuthMode::as_str), Some(v));
        }
        assert_eq!(ApiVersion::parse("V2"), None);
    }
}
