//! TLS for the HTTP server: the rustls config in use (built by `config`, which reads and checks
//! the PEM files), swapped on reload, and the handshake of each accepted connection, with a
//! timeout. Accepting and serving are `serve.rs`'s.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::net::TcpStream;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use crate::config::{load_tls_config, TlsError};

/// How long a client may take to complete the TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The certificate chain and private key files (PEM).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// The current TLS config and where it came from. Clones share the config: a [`reload`] applies
/// to every listener built from any clone, for connections accepted afterwards.
///
/// [`reload`]: TlsHandle::reload
#[derive(Clone)]
pub struct TlsHandle {
    files: Arc<TlsFiles>,
    current: Arc<RwLock<Arc<ServerConfig>>>,
}

impl TlsHandle {
    /// Reads the files once; fails with the reason if they are unusable.
    pub fn load(files: TlsFiles) -> Result<Self, TlsError> {
        let config = load_tls_config(&files.cert, &files.key)?;
        Ok(TlsHandle {
            files: Arc::new(files),
            current: Arc::new(RwLock::new(config)),
        })
    }

    /// A handle for `files` whose config was already built from them (by config validation).
    pub fn with_config(files: TlsFiles, config: Arc<ServerConfig>) -> Self {
        TlsHandle {
            files: Arc::new(files),
            current: Arc::new(RwLock::new(config)),
        }
    }

    /// Makes `config` (built from the same files, re-read) the one new connections get.
    pub fn install(&self, config: Arc<ServerConfig>) {
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = config;
    }

    /// Re-reads the files (e.g. on SIGHUP, after a certificate renewal). On error the previous
    /// config stays in use. Connections already open keep theirs.
    pub fn reload(&self) -> Result<(), TlsError> {
        let config = load_tls_config(&self.files.cert, &self.files.key)?;
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = config;
        Ok(())
    }

    /// The config new connections get.
    pub fn current(&self) -> Arc<ServerConfig> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn files(&self) -> &TlsFiles {
        &self.files
    }
}

/// Completes the TLS handshake of an accepted TCP connection within a timeout, with the config
/// current at that moment. The server's accept loop (`serve.rs`) runs each handshake in the
/// connection's own task, counted against the connection cap, so a slow or broken client never
/// holds up others.
#[derive(Clone)]
pub struct TlsHandshaker {
    tls: TlsHandle,
    timeout: Duration,
}

impl TlsHandshaker {
    pub fn new(tls: TlsHandle) -> Self {
        Self::with_timeout(tls, HANDSHAKE_TIMEOUT)
    }

    pub fn with_timeout(tls: TlsHandle, timeout: Duration) -> Self {
        TlsHandshaker { tls, timeout }
    }

    /// The encrypted stream, or `None` (logged at debug) if the handshake failed or timed out.
    pub async fn handshake(
        &self,
        stream: TcpStream,
        peer: SocketAddr,
    ) -> Option<TlsStream<TcpStream>> {
        let acceptor = TlsAcceptor::from(self.tls.current());
        match tokio::time::timeout(self.timeout, acceptor.accept(stream)).await {
            Ok(Ok(stream)) => Some(stream),
            Ok(Err(error)) => {
                tracing::debug!(%peer, %error, "TLS handshake failed");
                None
            }
            Err(_) => {
                tracing::debug!(%peer, timeout = ?self.timeout, "TLS handshake timed out");
                None
            }
        }
    }
}
