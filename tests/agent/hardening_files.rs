//! Bad files and impossible durations against the real binary: FIFOs, `/dev/zero` and oversize
//! files named by `check`, `run` and a reload of a running agent; huge and tiny durations. Each
//! must give a one-line error naming the key and the file kind, never a hang, and a failed reload
//! must leave the agent fully working.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::cli::{Agent, TempDir};
use crate::support::{get, metric_value, TestSim};

const BIN: &str = env!("CARGO_BIN_EXE_obf-exporter");
/// Generous for a loaded 2-core machine; a hang shows as hitting it.
const EXIT_WITHIN: Duration = Duration::from_secs(20);

fn mkfifo(path: &Path) {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: `c` is a valid NUL-terminated path for the duration of the call.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
}

/// Runs the binary with `args`, killing it (and failing) if it does not exit in [`EXIT_WITHIN`].
fn run_bounded(args: &[&str], config: &Path) -> Output {
    let mut child = Command::new(BIN)
        .args(args)
        .arg("--config")
        .arg(config)
        .args(if args == ["run"] {
            &["--listen", "127.0.0.1:0"][..]
        } else {
            &[][..]
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("binary starts");
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > EXIT_WITHIN {
            let _ = child.kill();
            let output = child.wait_with_output().unwrap();
            panic!("{args:?} did not exit within {EXIT_WITHIN:?}: {output:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

/// `check` exits 1 and one line of its output holds every one of `expected`.
fn assert_check_refuses(config: &Path, expected: &[&str]) -> String {
    let output = run_bounded(&["check"], config);
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert!(
        stdout
            .lines()
            .any(|line| expected.iter().all(|e| line.contains(e))),
        "no line holds all of {expected:?}:\n{stdout}"
    );
    stdout
}

fn org_with_secret_file(secret: &Path, extra: &str) -> String {
    format!(
        "[[org]]\nname = \"acme\"\nclient_id = \"ABC123\"\nclient_secret_file = \"{}\"\n{extra}\n",
        secret.display()
    )
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/tls")
        .join(name)
}

/// A FIFO, /dev/zero and a file one byte over `cap`, in `dir`.
fn bad_files(dir: &TempDir, cap: usize) -> Vec<(PathBuf, &'static str)> {
    let fifo = dir.write_path(&format!("fifo-{cap}"));
    mkfifo(&fifo);
    let big = dir.write(&format!("big-{cap}"), &"x".repeat(cap + 1));
    vec![
        (fifo, "is a FIFO, not a regular file"),
        (
            PathBuf::from("/dev/zero"),
            "is a character device, not a regular file",
        ),
        (
            big,
            if cap == 4096 {
                "is larger than 4 KiB"
            } else {
                "is larger than 1 MiB"
            },
        ),
    ]
}

#[test]
fn check_refuses_a_fifo_dev_zero_or_an_oversize_secret_file() {
    let dir = TempDir::new("hard-secret");
    for (path, kind) in bad_files(&dir, 4096) {
        let config = dir.write("config.toml", &org_with_secret_file(&path, ""));
        assert_check_refuses(
            &config,
            &["org[0] (\"acme\").client_secret_file: secret file", kind],
        );
    }
}

#[test]
fn check_refuses_a_fifo_dev_zero_or_an_oversize_ca_file() {
    let dir = TempDir::new("hard-ca");
    let secret = dir.write("secret", "s3cret\n");
    for (path, kind) in bad_files(&dir, 1024 * 1024) {
        let extra = format!("ca_file = \"{}\"", path.display());
        let config = dir.write("config.toml", &org_with_secret_file(&secret, &extra));
        assert_check_refuses(&config, &["org[0] (\"acme\").ca_file:", kind]);
    }
}

#[test]
fn check_refuses_a_fifo_dev_zero_or_an_oversize_tls_file() {
    let dir = TempDir::new("hard-tls");
    let secret = dir.write("secret", "s3cret\n");
    for (path, kind) in bad_files(&dir, 1024 * 1024) {
        let web = format!(
            "[exporter.web]\ntls_cert_file = \"{}\"\ntls_key_file = \"{}\"\n",
            path.display(),
            fixture("key1.pem").display()
        );
        let config = dir.write(
            "config.toml",
            &format!("{web}{}", org_with_secret_file(&secret, "")),
        );
        assert_check_refuses(&config, &["exporter.web.tls_cert_file:", kind]);
        let web = format!(
            "[exporter.web]\ntls_cert_file = \"{}\"\ntls_key_file = \"{}\"\n",
            fixture("cert1.pem").display(),
            path.display()
        );
        let config = dir.write(
            "config.toml",
            &format!("{web}{}", org_with_secret_file(&secret, "")),
        );
        assert_check_refuses(&config, &["exporter.web.tls_key_file:", kind]);
    }
}

#[test]
fn check_refuses_a_config_that_is_a_fifo_dev_zero_or_over_4_mib() {
    let dir = TempDir::new("hard-config");
    let fifo = dir.write_path("config-fifo");
    mkfifo(&fifo);
    assert_check_refuses(&fifo, &["config file is a FIFO, not a regular file"]);
    assert_check_refuses(
        Path::new("/dev/zero"),
        &["/dev/zero: config file is a character device"],
    );
    let big = dir.write("big.toml", &"#".repeat(4 * 1024 * 1024 + 1));
    assert_check_refuses(&big, &["config file is larger than 4 MiB"]);
}

#[test]
fn a_secret_file_value_that_may_be_a_pasted_secret_is_not_echoed() {
    let dir = TempDir::new("hard-pasted");
    let config = dir.write(
        "config.toml",
        "[[org]]\nname = \"acme\"\nclient_id = \"ABC123\"\nclient_secret_file = \"Xk29pQzr7Ty\"\n",
    );
    let stdout = assert_check_refuses(&config, &["client_secret_file", "(path not shown"]);
    assert!(!stdout.contains("Xk29pQzr7Ty"), "{stdout}");
}

#[test]
fn a_symlink_to_a_regular_secret_file_is_accepted() {
    let dir = TempDir::new("hard-symlink");
    let target = dir.write("..data-secret", "s3cret\n");
    let link = dir.write_path("secret");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let config = dir.write("config.toml", &org_with_secret_file(&link, ""));
    let output = run_bounded(&["check"], &config);
    assert!(output.status.success(), "{output:?}");
}

#[test]
fn run_with_a_fifo_secret_exits_1_with_one_line_naming_it() {
    let dir = TempDir::new("hard-run");
    let fifo = dir.write_path("secret-fifo");
    mkfifo(&fifo);
    let config = dir.write("config.toml", &org_with_secret_file(&fifo, ""));
    let output = run_bounded(&["run"], &config);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.lines().any(
            |l| l.contains("client_secret_file") && l.contains("is a FIFO, not a regular file")
        ),
        "{stderr}"
    );
}

#[test]
fn huge_and_tiny_durations_are_refused_by_check_and_run_with_the_same_message() {
    let dir = TempDir::new("hard-durations");
    let secret = dir.write("secret", "s3cret\n");
    let cases = [
        ("interval", "400000000000y", "must be at most 365 days"),
        ("timeout", "400000000000y", "must be at most 365 days"),
        ("jitter", "400000000000y", "must be at most 365 days"),
        (
            "subscription_check_interval",
            "400000000000y",
            "must be at most 365 days",
        ),
        ("interval", "1ns", "must be at least 1s"),
        ("timeout", "1ns", "must be at least 100ms"),
    ];
    for (key, value, message) in cases {
        let extra = format!("{key} = \"{value}\"");
        let config = dir.write("config.toml", &org_with_secret_file(&secret, &extra));
        let check = assert_check_refuses(&config, &[key, message]);
        let line = check
            .lines()
            .find(|l| l.contains(message))
            .expect("the line")
            .to_owned();
        let run = run_bounded(&["run"], &config);
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert_eq!(run.status.code(), Some(1), "{stderr}");
        assert!(
            stderr.contains(&line),
            "run did not say what check said ({line:?}):\n{stderr}"
        );
    }
}

/// The `obf_pings_total` success count of `org`, read from a fresh connection.
async fn pings(agent: &Agent) -> f64 {
    let (status, text) = get(&format!("http://{}/metrics", agent.addr)).await;
    assert_eq!(status, 200);
    metric_value(&text, "obf_pings_total{org=\"acme\",result=\"success\"}").unwrap_or(0.0)
}

/// Waits (bounded) until `org`'s success count passes `above`.
async fn pings_pass(agent: &Agent, above: f64) -> f64 {
    for _ in 0..100 {
        let now = pings(agent).await;
        if now > above {
            return now;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("obf_pings_total stayed at {above}");
}

async fn reload_successful(agent: &Agent) -> Option<f64> {
    let (_, text) = get(&format!("http://{}/metrics", agent.addr)).await;
    metric_value(&text, "obf_config_last_reload_successful")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_naming_a_fifo_or_dev_zero_fails_and_the_agent_keeps_working() {
    let sim = TestSim::with_spacing(Duration::from_millis(100)).await;
    sim.sim.add_client("ABC123", "ABC123-secret-value");
    let dir = TempDir::new("hard-reload");
    let secret = dir.write("secret", "ABC123-secret-value\n");
    let host = format!("host = \"{}\"\ninterval = \"1s\"", sim.url());
    let config = dir.write("config.toml", &org_with_secret_file(&secret, &host));
    let agent = Agent::start(&config, &[]).await;
    let mut seen = pings_pass(&agent, 0.0).await;

    // SIGHUP with the secret now a FIFO nobody writes to.
    let fifo = dir.write_path("secret-fifo");
    mkfifo(&fifo);
    dir.write("config.toml", &org_with_secret_file(&fifo, &host));
    agent.signal("-HUP");
    for _ in 0..100 {
        if reload_successful(&agent).await == Some(0.0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(reload_successful(&agent).await, Some(0.0));
    let (status, _) = get(&format!("http://{}/-/healthy", agent.addr)).await;
    assert_eq!(status, 200);
    seen = pings_pass(&agent, seen).await;

    // POST /-/reload with the secret now /dev/zero.
    dir.write(
        "config.toml",
        &org_with_secret_file(Path::new("/dev/zero"), &host),
    );
    let response = tokio::time::timeout(
        EXIT_WITHIN,
        reqwest::Client::new()
            .post(format!("http://{}/-/reload", agent.addr))
            .send(),
    )
    .await
    .expect("the reload answers")
    .unwrap();
    assert_eq!(response.status().as_u16(), 500);
    let body = response.text().await.unwrap();
    assert!(
        body.contains("client_secret_file: secret file \"/dev/zero\" is a character device"),
        "{body}"
    );
    assert_eq!(reload_successful(&agent).await, Some(0.0));
    let (status, _) = get(&format!("http://{}/-/healthy", agent.addr)).await;
    assert_eq!(status, 200);
    pings_pass(&agent, seen).await;

    let logs = agent.stop().await;
    assert!(logs.contains("is a FIFO, not a regular file"), "{logs}");
}
