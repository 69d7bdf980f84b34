//! TLS for the HTTP server: rustls configs from PEM files, swapped on reload, and an
//! `axum::serve::Listener` that handshakes concurrently, with a timeout, off the accept loop.

use std::future::pending;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinHandle;
use tokio_rustls::rustls::crypto::aws_lc_rs;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use super::WebError;

/// How long a client may take to complete the TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshakes in progress at once; beyond that, new TCP connections wait in the kernel backlog.
const MAX_HANDSHAKES: usize = 1024;
/// Completed handshakes waiting for the server to take them.
const READY_QUEUE: usize = 64;

/// The certificate chain and private key files (PEM).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Reads a PEM certificate chain (leaf first) and a PEM private key (PKCS#8, PKCS#1 or SEC1;
/// unencrypted) into a server config using the aws-lc-rs provider reqwest already uses.
pub fn load_tls_config(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, WebError> {
    // Regular files only, at most 1 MiB each: a FIFO or /dev/zero here must not hang the agent.
    let read = |path: &Path| {
        crate::config::file::read(path, crate::config::file::PEM_CAP).map_err(|source| {
            WebError::Read {
                path: path.to_owned(),
                source,
            }
        })
    };
    let pem_error = |path: &Path, message: String| WebError::Pem {
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

    let tls_error = |source| WebError::Tls {
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
    pub fn load(files: TlsFiles) -> Result<Self, WebError> {
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
    pub fn reload(&self) -> Result<(), WebError> {
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

/// TLS over a TCP listener, for `axum::serve(listener, router)`. A background task accepts TCP
/// connections and runs each handshake in its own task (bounded by a timeout), so a slow or
/// broken client never holds up others; failed handshakes are logged at debug and dropped.
/// Dropping the listener (as `axum::serve` does on graceful shutdown) closes the TCP socket.
pub struct TlsListener {
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local_addr: SocketAddr,
    acceptor: JoinHandle<()>,
}

impl TlsListener {
    /// Starts accepting on `tcp`; must be called inside a Tokio runtime.
    pub fn new(tcp: TcpListener, tls: TlsHandle) -> io::Result<Self> {
        Self::with_handshake_timeout(tcp, tls, HANDSHAKE_TIMEOUT)
    }

    pub fn with_handshake_timeout(
        tcp: TcpListener,
        tls: TlsHandle,
        timeout: Duration,
    ) -> io::Result<Self> {
        let local_addr = tcp.local_addr()?;
        let (sender, ready) = mpsc::channel(READY_QUEUE);
        let acceptor = tokio::spawn(accept_loop(tcp, tls, sender, timeout));
        Ok(TlsListener {
            ready,
            local_addr,
            acceptor,
        })
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.acceptor.abort();
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(connection) => connection,
            // The accept loop never ends on its own; should it die, accept nothing more.
            None => pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(self.local_addr)
    }
}

async fn accept_loop(
    mut tcp: TcpListener,
    tls: TlsHandle,
    ready: mpsc::Sender<(TlsStream<TcpStream>, SocketAddr)>,
    timeout: Duration,
) {
    let handshakes = Arc::new(Semaphore::new(MAX_HANDSHAKES));
    loop {
        let Ok(permit) = handshakes.clone().acquire_owned().await else {
            return;
        };
        // axum's TcpListener accept retries (and logs) accept errors itself.
        let (stream, peer) = tokio::select! {
            connection = axum::serve::Listener::accept(&mut tcp) => connection,
            () = ready.closed() => return,
        };
        let acceptor = TlsAcceptor::from(tls.current());
        let ready = ready.clone();
        tokio::spawn(async move {
            let handshake = tokio::time::timeout(timeout, acceptor.accept(stream)).await;
            drop(permit);
            match handshake {
                Ok(Ok(stream)) => {
                    // Fails only when the server is gone; the connection is then dropped.
                    let _ = ready.send((stream, peer)).await;
                }
                Ok(Err(error)) => tracing::debug!(%peer, %error, "TLS handshake failed"),
                Err(_) => tracing::debug!(%peer, ?timeout, "TLS handshake timed out"),
            }
        });
    }
}
