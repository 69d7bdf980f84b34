//! The simulator over HTTPS (`serve_tls`): a tokio-rustls client that trusts only the test
//! certificate in `tests/fixtures/tls/` (self-signed, SAN 127.0.0.1) gets a token and pings on
//! one kept-alive connection; a stalled handshake holds nobody up; bad PEM is refused.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::crypto::aws_lc_rs;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore};
use tokio_rustls::TlsConnector;

use super::test_http::{parse, Reply};
use super::{SimOptions, Simulator, TlsIdentity};

/// Generous: a loaded 2-core machine; nothing here should take more than milliseconds.
const PATIENCE: Duration = Duration::from_secs(20);

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/tls")
        .join(name)
}

fn read(name: &str) -> Vec<u8> {
    std::fs::read(fixture(name)).expect("fixture")
}

async fn start_tls() -> SocketAddr {
    let sim = Simulator::new(SimOptions::default());
    sim.add_client("org1", "secret1");
    let identity = TlsIdentity::from_pem(&read("cert1.pem"), &read("key1.pem")).expect("identity");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { sim.serve_tls(listener, &identity).await });
    addr
}

/// A client that trusts `cert1.pem` and nothing else.
async fn connect(addr: SocketAddr) -> TlsStream<TcpStream> {
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(&read("cert1.pem")).expect("PEM"))
        .expect("root");
    let config = ClientConfig::builder_with_provider(Arc::new(aws_lc_rs::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let name = ServerName::try_from("127.0.0.1").expect("server name");
    TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .expect("handshake with a client trusting the fixture")
}

/// One request on a kept-alive connection; reads exactly one response (by Content-Length).
async fn exchange(stream: &mut TlsStream<TcpStream>, head: &str, body: &[u8]) -> Reply {
    stream.write_all(head.as_bytes()).await.expect("write");
    stream.write_all(body).await.expect("write body");
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    for _ in 0..1000 {
        if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            let reply = parse(&raw[..end + 4]);
            let length: usize = reply
                .header("content-length")
                .and_then(|v| v.parse().ok())
                .expect("content-length");
            if raw.len() >= end + 4 + length {
                return parse(&raw[..end + 4 + length]);
            }
        }
        let n = stream.read(&mut buf).await.expect("read");
        assert!(n > 0, "connection closed mid-response");
        raw.extend_from_slice(&buf[..n]);
    }
    panic!("no complete response");
}

#[tokio::test]
async fn a_client_trusting_the_certificate_gets_a_token_and_pings_on_one_connection() {
    let addr = start_tls().await;
    let run = async {
        let mut tls = connect(addr).await;
        let form = b"grant_type=client_credentials&client_id=org1&client_secret=secret1";
        let head = format!(
            "POST /v2/client/oauth2/token HTTP/1.1\r\nHost: 127.0.0.1\r\n\
             Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n",
            form.len()
        );
        let token = exchange(&mut tls, &head, form).await;
        assert_eq!(token.status, 200, "{}", token.body);
        let token = token.json()["access_token"]
            .as_str()
            .expect("access_token")
            .to_owned();
        // Twice on the same connection: the benchmark's clients (wrk, the agent) keep it alive.
        for _ in 0..2 {
            let head = format!(
                "GET /v2/client/org1/ping HTTP/1.1\r\nHost: 127.0.0.1\r\n\
                 Authorization: Bearer {token}\r\n\r\n"
            );
            let ping = exchange(&mut tls, &head, b"").await;
            assert_eq!(ping.status, 200, "{}", ping.body);
            assert_eq!(ping.json()["success"], true);
        }
    };
    tokio::time::timeout(PATIENCE, run).await.expect("in time");
}

#[tokio::test]
async fn a_stalled_handshake_does_not_hold_up_other_clients() {
    let addr = start_tls().await;
    let run = async {
        // Connects and sends nothing: its handshake waits in a task of its own.
        let _stalled = TcpStream::connect(addr).await.expect("connect");
        let mut tls = connect(addr).await;
        let head = "GET /sim/stats HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
        assert_eq!(exchange(&mut tls, head, b"").await.status, 200);
    };
    tokio::time::timeout(PATIENCE, run).await.expect("in time");
}

#[test]
fn unusable_pem_is_refused_naming_the_part_and_not_the_content() {
    let cert = read("cert1.pem");
    let key = read("key1.pem");
    let error = TlsIdentity::from_pem(&cert, b"not a key").expect_err("bad key");
    assert!(error.to_string().starts_with("key:"), "{error}");
    let error = TlsIdentity::from_pem(b"", &key).expect_err("no certificate");
    assert!(error.to_string().starts_with("certificate:"), "{error}");
    // A key that does not match the certificate.
    let error = TlsIdentity::from_pem(&cert, &read("key2.pem")).expect_err("mismatch");
    assert!(!error.to_string().contains("PRIVATE KEY"), "{error}");
    assert_eq!(
        format!("{:?}", TlsIdentity::from_pem(&cert, &key).expect("ok")),
        "TlsIdentity { .. }"
    );
}
