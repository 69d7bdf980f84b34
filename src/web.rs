//! Protection of the HTTP endpoints (`[exporter.web]`): basic auth against bcrypt hashes and TLS
//! from PEM files, reloadable. The server module decides what to serve; this module only guards it.
//!
//! Wiring, for the server (after every route is added):
//!
//! ```ignore
//! let auth = web.as_ref().map(|web| web::BasicAuth::new(&web.basic_auth_users));
//! let router = web::protect(router, auth.clone()); // on reload: auth.set_users(&new_users)
//! match tls_files {
//!     Some(files) => {
//!         let tls = web::TlsHandle::load(files)?; // on SIGHUP: tls.reload() (keeps old on error)
//!         let listener = web::TlsListener::new(tcp, tls.clone())?;
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
#[cfg(test)]
mod tests_tls;

pub use auth::{protect, require_basic_auth, BasicAuth, CHALLENGE, OPEN_PATH};
pub use tls::{load_tls_config, TlsFiles, TlsHandle, TlsListener, HANDSHAKE_TIMEOUT};

/// Why the TLS files could not be used. Every message names the file(s).
#[derive(Debug, thiserror::Error)]
pub enum WebError {
    #[error("{}", .source.describe(&path.display().to_string()))]
    Read {
        path: PathBuf,
        source: crate::config::FileError,
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
