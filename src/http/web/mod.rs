//! Protection of the HTTP endpoints (`[exporter.web]`): basic auth against bcrypt hashes and TLS
//! from PEM files, reloadable. The server module decides what to serve; this module only guards it.
//!
//! Wiring, for the server (after every route is added):
//!
//! ```ignore
//! let auth = web.as_ref().map(|web| web::BasicAuth::new(&web.basic_auth_users));
//! let router = web::protect(router, auth.clone()); // on reload: auth.set_users(&new_users)
//! // on SIGHUP: tls.reload() (keeps old on error)
//! let tls = tls_files.map(|files| web::TlsHandle::load(files)).transpose()?;
//! web::serve(tcp, tls.map(web::TlsHandshaker::new), router, web::Limits::for_this_process(), shutdown).await;
//! ```
//!
//! `serve` owns the connections (cap, timeouts, graceful shutdown); `fds` sizes the cap from the
//! open-file limit.

mod auth;
pub mod fds;
mod guards;
mod serve;
mod tls;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_tls;

pub use auth::{protect, require_basic_auth, BasicAuth, CHALLENGE, OPEN_PATH};
pub use guards::WebGuards;
pub use serve::{serve, Limits, DRAIN_TIMEOUT, HEADER_READ_TIMEOUT, WRITE_STALL_TIMEOUT};
pub use tls::{TlsFiles, TlsHandle, TlsHandshaker, HANDSHAKE_TIMEOUT};
