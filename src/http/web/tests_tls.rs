//! TLS end to end with the static fixtures in `tests/fixtures/tls/` (self-signed, CN=localhost,
//! SAN localhost and 127.0.0.1, valid until 2126): loading, serving, handshake failures, reload.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::CertificateDer;

use super::tests::test_router;
use super::*;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/tls")
        .join(name)
}

/// A fresh directory holding `cert.pem` and `key.pem` copied from fixture `n`.
struct TempTls(PathBuf);

impl TempTls {
    fn new(n: u32) -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "obf-exporter-web-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let tls = TempTls(dir);
        tls.install(n);
        tls
    }

    fn install(&self, n: u32) {
        for (from, to) in [
            (format!("cert{n}.pem"), "cert.pem"),
            (format!("key{n}.pem"), "key.pem"),
        ] {
            std::fs::copy(fixture(&from), self.0.join(to)).expect("copy fixture");
        }
    }

    fn files(&self) -> TlsFiles {
        TlsFiles {
            cert: self.0.join("cert.pem"),
            key: self.0.join("key.pem"),
        }
    }
}

impl Drop for TempTls {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Serves the test router over TLS; send on the returned channel to shut down gracefully.
async fn serve_tls(tls: TlsHandle, timeout: Duration) -> (SocketAddr, oneshot::Sender<()>) {
    serve_tls_with(tls, timeout, Limits::for_this_process()).await
}

async fn serve_tls_with(
    tls: TlsHandle,
    timeout: Duration,
    limits: Limits,
) -> (SocketAddr, oneshot::Sender<()>) {
    let tcp = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = tcp.local_addr().expect("addr");
    let handshaker = TlsHandshaker::with_timeout(tls, timeout);
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(serve(tcp, Some(handshaker), test_router(), limits, async {
        let _ = stopped.await;
    }));
    (addr, stop)
}

/// GET over a new connection, trusting only fixture `trusted`'s certificate.
async fn get_https(addr: SocketAddr, trusted: u32) -> reqwest::Result<reqwest::Response> {
    let pem = std::fs::read(fixture(&format!("cert{trusted}.pem"))).expect("fixture");
    let client = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(&pem)?])
        .timeout(Duration::from_secs(5))
        .build()?;
    client.get(format!("https://{addr}/-/healthy")).send().await
}

#[tokio::test]
async fn serves_over_tls_and_rejects_plain_http() {
    let tls = TlsHandle::load(TlsFiles {
        cert: fixture("cert1.pem"),
        key: fixture("key1.pem"),
    })
    .expect("load");
    let (addr, _stop) = serve_tls(tls, HANDSHAKE_TIMEOUT).await;

    let response = get_https(addr, 1).await.expect("https");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.text().await.expect("body"), "OK\n");

    let plain = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("client")
        .get(format!("http://{addr}/-/healthy"))
        .send()
        .await;
    assert!(plain.is_err(), "plain HTTP must fail: {plain:?}");
    assert!(get_https(addr, 2).await.is_err(), "untrusted certificate");

    // Failed handshakes do not stop the server.
    let response = get_https(addr, 1).await.expect("https after failures");
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn slow_handshakes_neither_block_others_nor_stay_open() {
    let tls = TlsHandle::load(TlsFiles {
        cert: fixture("cert1.pem"),
        key: fixture("key1.pem"),
    })
    .expect("load");
    let (addr, _stop) = serve_tls(tls, Duration::from_millis(300)).await;

    let mut idle = TcpStream::connect(addr).await.expect("connect");
    let response = get_https(addr, 1)
        .await
        .expect("https beside an idle client");
    assert_eq!(response.status(), StatusCode::OK);

    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(Duration::from_secs(5), idle.read(&mut buf))
        .await
        .expect("the server closes an idle handshake after its timeout");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
}

#[tokio::test]
async fn reload_swaps_the_certificate_for_new_connections_and_keeps_it_on_error() {
    let dir = TempTls::new(1);
    let tls = TlsHandle::load(dir.files()).expect("load");
    assert_eq!(tls.files(), &dir.files());
    let (addr, _stop) = serve_tls(tls.clone(), HANDSHAKE_TIMEOUT).await;
    assert!(get_https(addr, 1).await.is_ok());
    assert!(get_https(addr, 2).await.is_err());

    dir.install(2);
    tls.reload().expect("reload");
    let response = get_https(addr, 2).await.expect("new certificate");
    assert_eq!(response.status(), StatusCode::OK);
    assert!(get_https(addr, 1).await.is_err(), "old certificate gone");

    std::fs::write(dir.files().key, "not a key").expect("write");
    let error = tls.reload().expect_err("broken key");
    assert!(error.to_string().contains("key.pem"), "{error}");
    let response = get_https(addr, 2).await.expect("previous config kept");
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn graceful_shutdown_closes_the_port() {
    let tls = TlsHandle::load(TlsFiles {
        cert: fixture("cert1.pem"),
        key: fixture("key1.pem"),
    })
    .expect("load");
    let tcp = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = tcp.local_addr().expect("addr");
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(serve(
        tcp,
        Some(TlsHandshaker::new(tls)),
        test_router(),
        Limits::for_this_process(),
        async {
            let _ = stopped.await;
        },
    ));
    assert!(get_https(addr, 1).await.is_ok());

    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("server stops")
        .expect("join");
    let mut refused = false;
    for _ in 0..50 {
        if TcpStream::connect(addr).await.is_err() {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(refused, "the TCP listener is closed after shutdown");
}

#[tokio::test]
async fn a_connection_idle_after_the_handshake_is_closed_by_the_header_timeout() {
    let tls = TlsHandle::load(TlsFiles {
        cert: fixture("cert1.pem"),
        key: fixture("key1.pem"),
    })
    .expect("load");
    let limits = Limits {
        header_read_timeout: Duration::from_millis(300),
        ..Limits::for_this_process()
    };
    let (addr, _stop) = serve_tls_with(tls, HANDSHAKE_TIMEOUT, limits).await;

    // A TLS client that completes the handshake and then sends nothing.
    let pem = std::fs::read(fixture("cert1.pem")).expect("fixture");
    let mut roots = tokio_rustls::rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        roots.add(cert.expect("certificate")).expect("root");
    }
    let config = tokio_rustls::rustls::ClientConfig::builder_with_provider(Arc::new(
        tokio_rustls::rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let name = tokio_rustls::rustls::pki_types::ServerName::try_from("localhost").expect("name");
    let mut stream = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .expect("handshake");

    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
        .await
        .expect("the server closes an idle TLS connection after the header timeout");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
}
