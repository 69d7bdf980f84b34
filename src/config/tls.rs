//! The TLS server config of `[exporter.web]`, built from its PEM files: read here, with the other
//! files the config names, so that `check` accepts only what `run` can serve and the HTTP side
//! receives a ready `ServerConfig` (it reads no file).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio_rustls::rustls::crypto::aws_lc_rs;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::ServerConfig;

use super::file::{self, FileError};

/// Why the TLS files could not be used. Every message names the file(s).
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{}", .source.describe(&path.display().to_string()))]
    Read { path: PathBuf, source: FileError },
    #[error("{}: {message}", path.display())]
    Pem { path: PathBuf, message: String },
    #[error("{} with {}: {source}", cert.display(), key.display())]
    Tls {
        cert: PathBuf,
        key: PathBuf,
        source: tokio_rustls::rustls::Error,
    },
}

/// Reads a PEM certificate chain (leaf first) and a PEM private key (PKCS#8, PKCS#1 or SEC1;
/// unencrypted) into a server config using the aws-lc-rs provider reqwest already uses.
pub fn load_tls_config(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, TlsError> {
    // Regular files only, at most 1 MiB each: a FIFO or /dev/zero here must not hang the agent.
    let read = |path: &Path| {
        file::read(path, file::PEM_CAP).map_err(|source| TlsError::Read {
            path: path.to_owned(),
            source,
        })
    };
    let pem_error = |path: &Path, message: String| TlsError::Pem {
        path: path.to_owned(),
        message,
    };

    let chain = CertificateDer::pem_slice_iter(&read(cert)?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(cert, format!("invalid PEM certificate: {e}")))?;
    if chain.is_empty() {
        return Err(pem_error(
            cert,
            "no PEM certificate (BEGIN CERTIFICATE) found".into(),
        ));
    }
    let key_der = PrivateKeyDer::from_pem_slice(&read(key)?).map_err(|e| {
        pem_error(
            key,
            format!(
                "no usable private key ({e}); expected an unencrypted PKCS#8, PKCS#1 or SEC1 \
                 PEM key"
            ),
        )
    })?;

    let tls_error = |source| TlsError::Tls {
        cert: cert.to_owned(),
        key: key.to_owned(),
        source,
    };
    let config = ServerConfig::builder_with_provider(Arc::new(aws_lc_rs::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(tls_error)?
        .with_no_client_auth()
        .with_single_cert(chain, key_der)
        .map_err(tls_error)?;
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/tls")
            .join(name)
    }

    #[test]
    fn pem_files_load_and_errors_name_the_file() {
        let (cert, key) = (fixture("cert1.pem"), fixture("key1.pem"));
        load_tls_config(&cert, &key).expect("PKCS#8 key");
        load_tls_config(&cert, &fixture("key1-sec1.pem")).expect("SEC1 key");

        let missing = fixture("missing.pem");
        let error = load_tls_config(&missing, &key).expect_err("missing cert");
        assert!(matches!(error, TlsError::Read { .. }));
        assert!(error
            .to_string()
            .starts_with(&format!("cannot read {}", missing.display())));

        let error = load_tls_config(&key, &key).expect_err("a key is no certificate");
        assert_eq!(
            error.to_string(),
            format!(
                "{}: no PEM certificate (BEGIN CERTIFICATE) found",
                key.display()
            )
        );

        let error = load_tls_config(&cert, &cert).expect_err("a certificate is no key");
        let message = error.to_string();
        assert!(message.starts_with(&format!("{}: no usable private key", cert.display())));
        assert!(message.contains("PKCS#8, PKCS#1 or SEC1"), "{message}");

        let error = load_tls_config(&cert, &fixture("key2.pem")).expect_err("mismatch");
        assert!(matches!(error, TlsError::Tls { .. }));
        let message = error.to_string();
        assert!(
            message.contains("cert1.pem") && message.contains("key2.pem"),
            "{message}"
        );
    }
}
