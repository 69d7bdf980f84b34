//! HTTPS for the simulator: a server identity read from PEM, and an `axum` listener that completes
//! each TLS handshake in a task of its own before handing the connection to `axum::serve`. It
//! serves the same router as plain HTTP; nothing here knows about OBF. The identity is read
//! independently of the exporter's `[exporter.web]` TLS code (the simulator shares none of its
//! code), with the same rustls and aws-lc-rs provider, so no second TLS stack is built.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_rustls::rustls::crypto::aws_lc_rs;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

/// How long a client may take to complete the handshake; a stalled one is dropped, the others
/// are not held up (each handshake runs in its own task).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Handshaken connections waiting for `axum::serve` to take them. Small: `serve` takes each at
/// once; the bound only keeps a burst of handshakes from piling up unboundedly in memory.
const READY_QUEUE: usize = 64;

/// The certificate chain and key the simulator presents over HTTPS.
#[derive(Clone)]
pub struct TlsIdentity {
    config: Arc<ServerConfig>,
}

// Hand-written: the key must never reach debug output.
impl fmt::Debug for TlsIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsIdentity").finish_non_exhaustive()
    }
}

impl TlsIdentity {
    /// A PEM certificate chain (leaf first) and an unencrypted PEM private key (PKCS#8, PKCS#1
    /// or SEC1). Errors are `InvalidInput` and name which of the two is wrong, never its content.
    pub fn from_pem(cert_chain: &[u8], key: &[u8]) -> io::Result<Self> {
        let invalid = |message: String| io::Error::new(io::ErrorKind::InvalidInput, message);
        let chain = CertificateDer::pem_slice_iter(cert_chain)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| invalid(format!("certificate: invalid PEM: {e}")))?;
        if chain.is_empty() {
            return Err(invalid("certificate: no BEGIN CERTIFICATE block".into()));
        }
        let key = PrivateKeyDer::from_pem_slice(key)
            .map_err(|e| invalid(format!("key: no usable unencrypted private key: {e}")))?;
        let config = ServerConfig::builder_with_provider(Arc::new(aws_lc_rs::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| invalid(format!("TLS: {e}")))?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .map_err(|e| invalid(format!("certificate and key: {e}")))?;
        Ok(Self {
            config: Arc::new(config),
        })
    }
}

/// TLS connections for `axum::serve`: a background task accepts TCP connections and spawns one
/// handshake task per connection; finished handshakes arrive on a channel. Dropping the listener
/// (when the serving future is dropped) stops the accept task.
pub(crate) struct TlsListener {
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
    acceptor: JoinHandle<()>,
}

impl TlsListener {
    pub(crate) fn new(tcp: TcpListener, identity: &TlsIdentity) -> io::Result<Self> {
        let local = tcp.local_addr()?;
        let (tx, ready) = mpsc::channel(READY_QUEUE);
        let acceptor = TlsAcceptor::from(identity.config.clone());
        let acceptor = tokio::spawn(accept_loop(tcp, acceptor, tx));
        Ok(Self {
            ready,
            local,
            acceptor,
        })
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.acceptor.abort();
    }
}

impl fmt::Debug for TlsListener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsListener")
            .field("local", &self.local)
            .finish_non_exhaustive()
    }
}

async fn accept_loop(
    tcp: TcpListener,
    acceptor: TlsAcceptor,
    ready: mpsc::Sender<(TlsStream<TcpStream>, SocketAddr)>,
) {
    loop {
        let (stream, peer) = match tcp.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                // EMFILE and the like: wait a little instead of spinning, as axum does.
                tracing::debug!(%error, "simulator accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        if ready.is_closed() {
            return;
        }
        // Without it, a response that rustls writes as two records (head, then body) waits for
        // the client's delayed ACK (Nagle): 40 ms stalls that would be measured as probe time.
        let _ = stream.set_nodelay(true);
        let acceptor = acceptor.clone();
        let ready = ready.clone();
        tokio::spawn(async move {
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => {
                    let _ = ready.send((tls, peer)).await;
                }
                Ok(Err(error)) => tracing::debug!(%peer, %error, "simulator TLS handshake failed"),
                Err(_) => tracing::debug!(%peer, "simulator TLS handshake timed out"),
            }
        });
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(connection) => connection,
            // The accept task ended (it only does when aborted, i.e. when this listener is being
            // dropped): nothing more will come.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(self.local)
    }
}
