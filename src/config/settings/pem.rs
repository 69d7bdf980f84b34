//! PEM files named by the config (`ca_file`; the TLS files of `[exporter.web]`), read and
//! checked when the config is loaded so that a typo fails `check` and startup, not first use.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::super::{file, CaFile};

/// Reads the file at `path` (a PEM file: at most [`file::PEM_CAP`]), so a typo or a special
/// file fails at startup rather than at first use.
pub(crate) fn read_pem_file(path: &str) -> Result<Vec<u8>, String> {
    if path.is_empty() {
        return Err("empty path".to_owned());
    }
    let path = Path::new(path);
    file::read(path, file::PEM_CAP)
        .map_err(|e| e.describe(&format!("{path:?}{}", file::relative_note(path))))
}

/// A readable file holding at least one PEM certificate (what `ca_file` must be), with its
/// bytes: HTTP clients are built from them, without reading the file again.
pub(crate) fn pem_certificates(path: &str) -> Result<CaFile, String> {
    let pem = read_pem_file(path)?;
    match reqwest::Certificate::from_pem_bundle(&pem) {
        Ok(certs) if !certs.is_empty() => Ok(CaFile {
            path: PathBuf::from(path),
            pem: Arc::from(pem),
        }),
        _ => Err(format!("{path:?} holds no PEM certificate")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ca_file_must_hold_a_certificate() {
        let fixture = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tls/cert1.pem");
        assert!(pem_certificates(fixture).is_ok());
        let key = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tls/key1.pem");
        assert!(pem_certificates(key)
            .unwrap_err()
            .contains("no PEM certificate"));
    }
}
