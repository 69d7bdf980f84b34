//! The status page (`/`, `/org/NAME`, `/api/status`) of a running agent with a healthy org and a
//! revoked one: fetched with reqwest, then loaded in headless Chromium (Debian's `chromium`, or
//! `$CHROMIUM`), which writes screenshots to `target/test-output/` and dumps the rendered DOM.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::cli::TempDir;
use crate::support::{get, App, TestSim};

/// Headless runs are killed after this long.
const CHROMIUM_TIMEOUT: Duration = Duration::from_secs(60);

/// Where the test leaves its screenshots: `<target dir>/test-output/`.
fn output_dir() -> PathBuf {
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let target = tmp.parent().unwrap_or(tmp);
    let dir = target.join("test-output");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The row of org `name` in the HTML of `/`, from its `<tr` to its `</tr>`.
fn row<'a>(html: &'a str, name: &str) -> &'a str {
    let marker = format!("id=\"org-{name}\"");
    let at = html
        .find(&marker)
        .unwrap_or_else(|| panic!("no row for {name}:\n{html}"));
    let start = html[..at].rfind("<tr").unwrap();
    let end = html[at..].find("</tr>").unwrap() + at;
    &html[start..end]
}

/// Runs headless Chromium with `args` and a fresh profile; returns its stdout. Fails the test
/// with instructions when Chromium is not installed, and kills it after [`CHROMIUM_TIMEOUT`].
fn chromium(args: &[String]) -> String {
    let program = std::env::var("CHROMIUM").unwrap_or_else(|_| "chromium".to_string());
    let profile = TempDir::new("chromium-profile");
    let logs = TempDir::new("chromium-logs");
    let stdout_path = logs.write_path("stdout");
    let stderr_path = logs.write_path("stderr");
    let mut command = Command::new(&program);
    command
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-extensions",
            "--hide-scrollbars",
            "--window-size=412,900",
        ])
        .arg(format!(
            "--user-data-dir={}",
            profile.write_path("").display()
        ))
        .args(args)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&stdout_path).unwrap())
        .stderr(std::fs::File::create(&stderr_path).unwrap());
    // Its own process group, so a timeout can end the browser and every helper it started.
    std::os::unix::process::CommandExt::process_group(&mut command, 0);
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(error) => panic!(
            "cannot run `{program}` ({error}): this test needs headless Chromium. Install Debian's \
             `chromium` package (`apt-get install -y chromium`) or set CHROMIUM to a Chromium binary"
        ),
    };
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > CHROMIUM_TIMEOUT {
            let group = format!("-{}", child.id());
            let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{program} {args:?} still running after {CHROMIUM_TIMEOUT:?}; killed. stderr:\n{}",
                std::fs::read_to_string(&stderr_path).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let stderr = std::fs::read_to_string(&stderr_path).unwrap_or_default();
    assert!(status.success(), "{program} {args:?}: {status}\n{stderr}");
    std::fs::read_to_string(&stdout_path).unwrap()
}

/// Screenshot of `url` at phone width into `path`.
async fn screenshot(url: String, path: PathBuf) {
    let _ = std::fs::remove_file(&path);
    let args = vec![format!("--screenshot={}", path.display()), url];
    tokio::task::spawn_blocking(move || chromium(&args))
        .await
        .unwrap();
    let png = std::fs::read(&path).unwrap_or_else(|e| panic!("no screenshot at {path:?}: {e}"));
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 5_000,
        "{path:?} is not a plausible PNG ({} bytes)",
        png.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_page_shows_a_revoked_org_and_a_healthy_one() {
    let sim = TestSim::with_spacing(Duration::from_millis(200)).await;
    let mut config =
        String::from("[defaults]\ninterval = \"1s\"\ntoken_min_interval = \"200ms\"\n");
    config.push_str(&sim.org("healthy", "HEALTHY", "labels = { team = \"<learning>\" }"));
    config.push_str(&sim.org("revoked", "REVOKEDX", ""));
    sim.sim.revoke("REVOKEDX");
    let secrets = ["HEALTHY-secret-value", "REVOKEDX-secret-value"];
    let app = App::spawn(&config).await;
    app.wait_for(
        "obf_credentials_valid{org=\"revoked\"}",
        Duration::from_secs(5),
        |v| v == 0.0,
    )
    .await;
    app.wait_for(
        "obf_ping_success{org=\"healthy\"}",
        Duration::from_secs(5),
        |v| v == 1.0,
    )
    .await;

    // The index: one row per org, failing first.
    let response = reqwest::get(app.url("/")).await.unwrap();
    assert_eq!(response.status(), 200);
    let headers = response.headers().clone();
    assert_eq!(headers["content-type"], "text/html; charset=utf-8");
    assert!(headers["content-security-policy"]
        .to_str()
        .unwrap()
        .contains("default-src 'none'"));
    let index = response.text().await.unwrap();
    assert!(index.contains("2 orgs: <span class=\"bad\">1 failing</span>, 1 ok"));
    assert!(
        index.find("id=\"org-revoked\"") < index.find("id=\"org-healthy\""),
        "failing orgs come first"
    );
    let revoked = row(&index, "revoked");
    for text in [
        "class=\"failing\"",
        "badge failing\">failing<",
        "no_token",
        "token request: <code>rejected</code>",
        "no ping sent",
        ">rejected<",
        "no token",
    ] {
        assert!(revoked.contains(text), "{text:?} not in {revoked}");
    }
    let healthy = row(&index, "healthy");
    for text in [
        "class=\"ok\"",
        "badge ok\">ok<",
        ">200<",
        " ms",
        " ago",
        "in 4 h 59 min",
        ">valid<",
    ] {
        assert!(healthy.contains(text), "{text:?} not in {healthy}");
    }

    // One org's page: settings, history, labels escaped.
    let (status, org) = get(&app.url("/org/healthy")).await;
    assert_eq!(status, 200);
    for text in [
        "<h1>healthy <span class=\"badge ok\">ok</span></h1>",
        &format!("<code>{}</code>", sim.url()),
        "<code>HEALTHY</code>",
        "every 1s",
        "team=&lt;learning&gt;",
        "fetched in",
        "(newest first; 20 are kept)",
    ] {
        assert!(org.contains(text), "{text:?} not in {org}");
    }
    let (status, revoked_page) = get(&app.url("/org/revoked")).await;
    assert_eq!(status, 200);
    assert!(revoked_page.contains("failed (rejected)"), "{revoked_page}");
    let (status, missing) = get(&app.url("/org/%3Cscript%3Ex")).await;
    assert_eq!(status, 404);
    assert!(
        missing.contains("<code>&lt;script&gt;x</code>"),
        "{missing}"
    );

    // The same as JSON.
    let (status, json) = get(&app.url("/api/status")).await;
    assert_eq!(status, 200);
    let document: serde_json::Value = serde_json::from_str(&json).unwrap();
    let orgs = document["orgs"].as_array().unwrap();
    assert_eq!(orgs.len(), 2);
    let (bad, good) = (&orgs[0], &orgs[1]);
    assert_eq!(bad["org"], "revoked");
    assert_eq!(bad["state"], "failing");
    assert_eq!(bad["reason"], "no_token");
    assert_eq!(bad["token_failure"], "rejected");
    assert_eq!(bad["credentials_valid"], false);
    assert_eq!(bad["last_success"], serde_json::Value::Null);
    assert_eq!(good["org"], "healthy");
    assert_eq!(good["state"], "ok");
    assert_eq!(good["last_status"], 200);
    assert_eq!(good["credentials_valid"], true);
    assert_eq!(good["client_id"], "HEALTHY");
    assert_eq!(good["api"], "v2");
    assert!(good["last_success"].as_f64().unwrap() > 1.7e9);
    assert!(good["token_expires_at"].as_f64().unwrap() > good["last_success"].as_f64().unwrap());
    assert!(good["last_latency_seconds"].as_f64().unwrap() >= 0.0);

    for page in [&index, &org, &revoked_page, &json] {
        for secret in secrets {
            assert!(!page.contains(secret), "client secret shown");
        }
    }

    // In a real browser at phone width: screenshots, and the rows as rendered.
    let dir = output_dir();
    let png = dir.join("status-page.png");
    screenshot(app.url("/"), png.clone()).await;
    screenshot(app.url("/org/revoked"), dir.join("status-page-org.png")).await;
    let url = app.url("/");
    let dom = tokio::task::spawn_blocking(move || chromium(&["--dump-dom".to_string(), url]))
        .await
        .unwrap();
    app.stop().await;
    eprintln!("screenshot: {}", png.display());

    let revoked = row(&dom, "revoked");
    for text in ["revoked", "failing", "no_token", "rejected"] {
        assert!(revoked.contains(text), "{text:?} not in rendered {revoked}");
    }
    let healthy = row(&dom, "healthy");
    for text in ["healthy", ">ok<", ">valid<", ">200<"] {
        assert!(healthy.contains(text), "{text:?} not in rendered {healthy}");
    }
    assert!(!dom.contains("<script"), "{dom}");
}
