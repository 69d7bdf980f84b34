//! `[exporter.web]` through the whole agent: TLS from PEM files and basic auth, with `/-/healthy`
//! left open for container health checks.

use std::process::Command;
use std::time::Duration;

use crate::cli::TempDir;
use crate::support::{App, TestSim};

const BIN: &str = env!("CARGO_BIN_EXE_obf-exporter");

fn fixture(name: &str) -> String {
    format!("{}/tests/fixtures/tls/{name}", env!("CARGO_MANIFEST_DIR"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_and_basic_auth_protect_everything_but_healthy() {
    let sim = TestSim::with_spacing(Duration::from_millis(100)).await;
    let hash = bcrypt::hash("scrape-password", 4).unwrap();
    let dir = TempDir::new("protected");
    let config = format!(
        "[exporter.web]\ntls_cert_file = \"{}\"\ntls_key_file = \"{}\"\nbasic_auth_users = {{ prometheus = \"{hash}\" }}\n\n{}",
        fixture("cert1.pem"),
        fixture("key1.pem"),
        sim.org("acme", "PROTECTED", "")
    );
    let path = dir.write("config.toml", &config);
    let app = App::spawn_file(&path).await;
    let ca = reqwest::Certificate::from_pem(&std::fs::read(fixture("cert1.pem")).unwrap()).unwrap();
    let client = reqwest::Client::builder()
        .tls_certs_only([ca])
        .build()
        .unwrap();
    let https = |path: &str| format!("https://localhost:{}{path}", app.addr.port());

    let healthy = client.get(https("/-/healthy")).send().await.unwrap();
    assert_eq!(healthy.status(), 200);
    let anonymous = client.get(https("/metrics")).send().await.unwrap();
    assert_eq!(anonymous.status(), 401);
    assert!(anonymous.headers().get("www-authenticate").is_some());
    let wrong = client
        .get(https("/metrics"))
        .basic_auth("prometheus", Some("guess"))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let scrape = client
        .get(https("/metrics"))
        .basic_auth("prometheus", Some("scrape-password"))
        .send()
        .await
        .unwrap();
    assert_eq!(scrape.status(), 200);
    assert!(scrape.text().await.unwrap().contains("obf_org_info"));
    // Plain HTTP to the TLS port gets nothing useful.
    assert!(reqwest::get(format!("http://{}/metrics", app.addr))
        .await
        .map(|r| r.status() != 200)
        .unwrap_or(true));

    let healthcheck = Command::new(BIN)
        .args(["healthcheck", "--insecure", "--url", &https("/-/healthy")])
        .status()
        .unwrap();
    assert!(healthcheck.success());
    app.stop().await;
}
