//! Protection of the HTTP endpoints (`[exporter.web]`): basic auth against bcrypt hashes and TLS
//! from PEM files, reloadable. The server module decides what to serve; this module only guards it.
//!
//! Wiring, for the server:
//!
//! ```ignore
//! let router = web::protect(router, (!users.is_empty()).then(|| web::BasicAuth::new(&users)));
//! match tls_files {
//!     Some(files) => {
//!         let tls = web::TlsHandle::load(files)?;        // keep a clone; call tls.reload() on SIGHUP
//!         let listener = web::TlsListener::new(tcp, tls)?;
//!         axum::serve(listener, router).with_graceful_shutdown(shutdown).await
//!     }
//!     None => axum::serve(tcp, router).with_graceful_shutdown(shutdown).await,
//! }
//! ```

use std::path::PathBuf;

mod auth;
mod tls;

#[cfg(test)]
mod tests;

pub use auth::{protect, require_basic_auth, BasicAuth, CHALLENGE, OPEN_PATH};
pub use tls::{load_tls_config, TlsFiles, TlsHandle, TlsListener, HANDSHAKE_TIMEOUT};

/// Why the TLS files could not be used. Every message names the file(s).
#[derive(Debug, thiserror::Error)]
pub enum WebError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {message}", path.display())]
    Pem { path: PathBuf, message: String },
    #[error("{} with {}: {source}", cert.display(), key.display())]
    Tls {
        cert: PathBuf,
        key: PathBuf,
        source: tokio_rustls::rustls::Error,
    },
}
