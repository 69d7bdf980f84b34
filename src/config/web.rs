//! `[exporter.web]`: TLS files and basic-auth users protecting the HTTP endpoints, in the
//! spirit of Prometheus' web config. Validation only; serving is the server module's job.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use secrecy::SecretString;
use tokio_rustls::rustls::ServerConfig;

use super::raw::RawWeb;
use super::report::{join, Problems};
use super::settings::read_pem_file;

const CTX: &str = "exporter.web";

/// How the HTTP endpoints are protected.
#[derive(Debug, Clone)]
pub struct WebConfig {
    /// Both set or both `None`.
    pub tls_cert_file: Option<PathBuf>,
    pub tls_key_file: Option<PathBuf>,
    /// The server config built from those files when the config was loaded, so starting or
    /// reloading the server reads no file. Set when the files are.
    pub tls: Option<TlsServerConfig>,
    /// User name → bcrypt hash. Empty: no authentication.
    pub basic_auth_users: BTreeMap<String, SecretString>,
}

/// A rustls server config built from the TLS files. Its `Debug` shows nothing: the key is inside.
#[derive(Clone)]
pub struct TlsServerConfig(pub Arc<ServerConfig>);

impl fmt::Debug for TlsServerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TlsServerConfig(..)")
    }
}

/// Validates `[exporter.web]`; `None` after reporting a problem.
pub(crate) fn validate(
    raw: &RawWeb,
    p: &mut Problems,
    warnings: &mut Vec<String>,
) -> Option<WebConfig> {
    let before = p.len();
    let file = |key: &str, value: &Option<String>, p: &mut Problems| {
        let path = value.as_deref()?;
        match read_pem_file(path) {
            Ok(_) => Some(PathBuf::from(path)),
            Err(message) => {
                p.at(&join(CTX, key), message);
                None
            }
        }
    };
    let cert = file("tls_cert_file", &raw.tls_cert_file, p);
    let key = file("tls_key_file", &raw.tls_key_file, p);
    match (&raw.tls_cert_file, &raw.tls_key_file) {
        (Some(_), None) => p.at(
            &join(CTX, "tls_key_file"),
            "missing: tls_cert_file and tls_key_file must be set together",
        ),
        (None, Some(_)) => p.at(
            &join(CTX, "tls_cert_file"),
            "missing: tls_cert_file and tls_key_file must be set together",
        ),
        _ => {}
    }
    let mut tls = None;
    if let (Some(cert), Some(key)) = (&cert, &key) {
        // What `run` serves, built here, so `check` passes only what `run` serves.
        match super::tls::load_tls_config(cert, key) {
            Ok(config) => tls = Some(TlsServerConfig(config)),
            Err(error) => p.at(&join(CTX, "tls_cert_file"), error.to_string()),
        }
    }

    let mut users = BTreeMap::new();
    for (user, hash) in raw.basic_auth_users.iter().flatten() {
        let path = join(&join(CTX, "basic_auth_users"), user);
        if user.is_empty() || user.contains(':') {
            p.at(
                &path,
                "user names must be non-empty and must not contain ':'",
            );
        } else if !is_bcrypt_hash(hash) {
            p.at(
                &path,
                "not a bcrypt hash (expected $2a$, $2b$ or $2y$, a 2-digit cost, $ and 53 \
                 characters, as `htpasswd -nBC 10 USER` prints after the colon)",
            );
        } else {
            users.insert(user.clone(), SecretString::from(hash.clone()));
        }
    }
    if !users.is_empty() && raw.tls_cert_file.is_none() {
        warnings.push(p.warning(
            &join(CTX, "basic_auth_users"),
            "basic auth without TLS sends passwords in clear text; set tls_cert_file and \
             tls_key_file",
        ));
    }

    if p.len() != before {
        return None;
    }
    Some(WebConfig {
        tls_cert_file: cert,
        tls_key_file: key,
        tls,
        basic_auth_users: users,
    })
}

/// `$2a$`, `$2b$` or `$2y$`, two-digit cost, `$`, 22 characters of salt and 31 of hash in
/// bcrypt's base64 alphabet.
fn is_bcrypt_hash(hash: &str) -> bool {
    let bytes = hash.as_bytes();
    let Some((head, rest)) = bytes.split_at_checked(7) else {
        return false;
    };
    let prefix_ok = matches!(head, [b'$', b'2', b'a' | b'b' | b'y', b'$', c1, c2, b'$']
        if c1.is_ascii_digit() && c2.is_ascii_digit());
    prefix_ok
        && rest.len() == 53
        && rest
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bcrypt_hashes_are_recognised() {
        let good = "$2y$10$N9qo8uLOickgx2ZMRZoMyeIjZAgcfl7p92ldGxad68LJZdL17lhWy";
        assert!(is_bcrypt_hash(good));
        assert!(is_bcrypt_hash(&good.replace("$2y$", "$2b$")));
        assert!(!is_bcrypt_hash(&good.replace("$2y$", "$2x$")));
        assert!(!is_bcrypt_hash(&good.replace("$10$", "$1a$")));
        assert!(!is_bcrypt_hash(&good[..good.len() - 1]));
        assert!(!is_bcrypt_hash("secret"));
        assert!(!is_bcrypt_hash(""));
    }
}
