//! Protection and serving of the HTTP endpoints (`[exporter.web]`): basic auth against bcrypt
//! hashes, TLS with the server config `config` built from the PEM files, and the accept loop. The
//! server module decides what to serve; this module only guards and serves it. It reads no file.
//!
//! Wiring (as `app::serve_source` does it, after every route is added):
//!
//! ```ignore
//! let web = WebGuards::from_config(&config)?; // the controller applies reloads to it
//! let router = web::protect(router, Some(web.auth.clone()));
//! let tls = web.tls.clone().map(web::TlsHandshaker::new);
//! web::serve(tcp, tls, router, web::Limits::for_this_process(), shutdown).await;
//! ```
//!
//! `serve` owns the connections (cap, timeouts, graceful shutdown); `fds` sizes the cap from the
//! open-file limit; `guards` holds the users and TLS config in use and follows reloads.

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
