//! What a new user meets first (issue 17): the example config's documented `check`, the `probe`
//! table naming why there is no token, plain counts, one line per startup error, and the demo's
//! local default address and status page, all through the built binary.

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use crate::cli::TempDir;
use crate::support::{closed_port, get, TestSim};

const BIN: &str = env!("CARGO_BIN_EXE_obf-exporter");

/// The commands the example config's header tells the reader to run, as written there.
fn documented_commands(example: &str) -> Vec<String> {
    example
        .lines()
        .take_while(|line| line.starts_with('#'))
        .map(|line| line.trim_start_matches('#').trim())
        .filter(|line| line.contains("obf-exporter check"))
        .map(str::to_owned)
        .collect()
}

/// Runs `command` with `sh` from the repository root, `obf-exporter` on the PATH.
fn shell(command: &str) -> Output {
    let bin_dir = Path::new(BIN).parent().expect("the binary has a directory");
    let path = std::env::var("PATH").unwrap_or_default();
    Command::new("sh")
        .args(["-c", command])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("PATH", format!("{}:{path}", bin_dir.display()))
        .output()
        .expect("sh runs")
}

#[test]
fn the_example_configs_documented_check_command_passes() {
    let example = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/config/obf-exporter.example.toml"
    ))
    .unwrap();
    let commands = documented_commands(&example);
    assert_eq!(
        commands.len(),
        1,
        "one documented check command: {commands:?}"
    );
    for command in commands {
        let output = shell(&command);
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "`{command}` failed:\n{stdout}{}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(
            stdout.contains("config/obf-exporter.example.toml: ok (2 orgs)"),
            "{stdout}"
        );
    }
}

#[test]
fn check_counts_a_single_org_in_the_singular() {
    let dir = TempDir::new("one-org");
    let config = dir.write(
        "one.toml",
        "[[org]]\nname = \"acme\"\nclient_id = \"ABC123\"\nclient_secret_env = \"ONE_ORG_SECRET\"\n",
    );
    let output = Command::new(BIN)
        .args(["check", "--config"])
        .arg(&config)
        .env("ONE_ORG_SECRET", "x")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert!(stdout.trim_end().ends_with(": ok (1 org)"), "{stdout}");
}

#[test]
fn check_reports_a_relative_secret_path_against_the_working_directory() {
    let dir = TempDir::new("relative");
    let config = dir.write(
        "rel.toml",
        "[[org]]\nname = \"acme\"\nclient_id = \"ABC123\"\nclient_secret_file = \"secrets/acme\"\n\
         interval = \"5\"\ncron = \"*/5 * * * *\"\n",
    );
    let cwd = std::fs::canonicalize(dir.write_path("")).unwrap();
    let output = Command::new(BIN)
        .args(["check", "--config"])
        .arg(&config)
        .current_dir(&cwd)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let expected = format!(
        "cannot read secret file \"secrets/acme\" (relative to the working directory {})",
        cwd.display()
    );
    assert!(stdout.contains(&expected), "{stdout}");
    // Every problem of the table at once, the interval/cron conflict included.
    for fragment in [
        "both `interval` and `cron`",
        ".interval: invalid duration \"5\"",
        ".cron: invalid cron expression \"*/5 * * * *\"",
    ] {
        assert!(stdout.contains(fragment), "no {fragment:?} in:\n{stdout}");
    }
    assert_eq!(stdout.lines().count(), 4, "{stdout}");
}

#[test]
fn a_startup_config_error_is_printed_once() {
    let dir = TempDir::new("startup-error");
    let config = dir.write("bad.toml", "[[org]]\nname = \"acme\"\n");
    let output = Command::new(BIN)
        .args(["run", "--listen", "127.0.0.1:0", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        stderr.matches("invalid configuration").count(),
        1,
        "{stderr}"
    );
    assert!(
        stderr.contains("org[0] (\"acme\").client_id: missing"),
        "{stderr}"
    );
}

/// The text lines of `probe` for `config`.
fn probe_text(config: &Path) -> (Option<i32>, String) {
    let output = Command::new(BIN)
        .args(["probe", "--config"])
        .arg(config)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    (output.status.code(), stdout)
}

#[test]
fn probe_names_the_token_failure_when_the_server_is_down() {
    let dir = TempDir::new("probe-down");
    let config = dir.write(
        "down.toml",
        &format!(
            "[[org]]\nname = \"down\"\nclient_id = \"DOWN\"\nclient_secret = \"x\"\n\
             host = \"http://127.0.0.1:{}\"\n",
            closed_port()
        ),
    );
    let (code, stdout) = probe_text(&config);
    assert_eq!(code, Some(1), "{stdout}");
    let line = stdout.lines().find(|l| l.starts_with("down ")).unwrap();
    assert!(
        line.contains("FAILED") && line.contains("no_token (token: connect)"),
        "{stdout}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_names_rate_limiting_of_the_token_request() {
    // A spacing no test run outlasts: the second process's token request is refused with 429.
    let sim = TestSim::with_spacing(Duration::from_secs(600)).await;
    let dir = TempDir::new("probe-limited");
    let config = dir.write("limited.toml", &sim.org("limited", "LIMITED", ""));
    let (code, first) = probe_text(&config);
    assert_eq!(code, Some(0), "{first}");
    let (code, second) = probe_text(&config);
    assert_eq!(code, Some(1), "{second}");
    let line = second.lines().find(|l| l.starts_with("limited ")).unwrap();
    assert!(line.contains("no_token (token: rate_limited)"), "{second}");
}

/// `obf-exporter demo` with stdout and stderr in files under `dir`.
fn start_demo(dir: &TempDir, args: &[&str]) -> Child {
    Command::new(BIN)
        .arg("demo")
        .args(args)
        .stdout(std::fs::File::create(dir.write_path("stdout")).unwrap())
        .stderr(std::fs::File::create(dir.write_path("stderr")).unwrap())
        .stdin(Stdio::null())
        .spawn()
        .expect("demo starts")
}

fn read(dir: &TempDir, name: &str) -> String {
    std::fs::read_to_string(dir.write_path(name)).unwrap_or_default()
}

fn stop(mut child: Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    for _ in 0..200 {
        if child.try_wait().ok().flatten().is_some() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_listens_on_loopback_by_default() {
    let dir = TempDir::new("demo-default");
    let mut demo = start_demo(&dir, &[]);
    // Port 9852 may be taken on a shared machine: then the refusal names the address it tried.
    let mut outcome = None;
    for _ in 0..600 {
        let stderr = read(&dir, "stderr");
        if stderr.contains("address=127.0.0.1:9852") {
            outcome = Some(format!("listening: {stderr}"));
            break;
        }
        if demo.try_wait().unwrap().is_some() {
            let stderr = read(&dir, "stderr");
            assert!(
                stderr.contains("cannot listen on 127.0.0.1:9852"),
                "demo exited:\n{stderr}"
            );
            outcome = Some(format!("port taken: {stderr}"));
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop(demo);
    let stdout = read(&dir, "stdout");
    assert!(
        outcome.is_some(),
        "no outcome within 30 s:\n{stdout}{}",
        read(&dir, "stderr")
    );
    assert!(
        stdout.contains("status page:              http://127.0.0.1:9852/\n"),
        "{stdout}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_banner_points_at_a_working_status_page() {
    let dir = TempDir::new("demo-listen");
    let port = closed_port();
    let mut demo = start_demo(&dir, &["--listen", &format!("127.0.0.1:{port}")]);
    let page = format!("http://127.0.0.1:{port}/");
    let mut running = false;
    for _ in 0..600 {
        if read(&dir, "stderr").contains("obf-exporter running") {
            running = true;
            break;
        }
        if demo.try_wait().unwrap().is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let stdout = read(&dir, "stdout");
    if !running {
        stop(demo);
        panic!("demo did not start:\n{stdout}{}", read(&dir, "stderr"));
    }
    let (status, body) = get(&page).await;
    stop(demo);
    assert!(
        stdout.contains(&format!("status page:              {page}\n")),
        "{stdout}"
    );
    assert_eq!(status, 200, "{body}");
    for org in ["healthy", "slow", "revoked-later"] {
        assert!(body.contains(org), "{org} not on the status page:\n{body}");
    }
}
