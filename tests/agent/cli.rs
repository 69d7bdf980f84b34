//! The built binary: `check`, `run` with graceful shutdown, and helpers to drive it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::support::TestSim;

const BIN: &str = env!("CARGO_BIN_EXE_obf-exporter");

/// A scratch directory removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        let path = std::env::temp_dir().join(format!(
            "obf-exporter-test-{tag}-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }

    pub fn write_path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    pub fn write(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, contents).unwrap();
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The agent binary running `run`, its stderr captured in a file.
pub struct Agent {
    child: Child,
    log: PathBuf,
    pub addr: String,
    _dir: TempDir,
}

impl Agent {
    pub async fn start(config: &Path, env: &[(&str, &str)]) -> Self {
        Self::start_with(config, env, |_| {}).await
    }

    /// As [`Agent::start`], with `adjust` applied to the command first (e.g. a `pre_exec`).
    pub async fn start_with(
        config: &Path,
        env: &[(&str, &str)],
        adjust: impl FnOnce(&mut Command),
    ) -> Self {
        let dir = TempDir::new("agent");
        let log = dir.0.join("stderr.log");
        let mut command = Command::new(BIN);
        command
            .args(["run", "--config"])
            .arg(config)
            .args(["--listen", "127.0.0.1:0"])
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        adjust(&mut command);
        let child = command.spawn().expect("binary starts");
        // The agent logs the address it bound.
        let mut addr = None;
        for _ in 0..100 {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if let Some(found) = text
                .split("address=")
                .nth(1)
                .and_then(|rest| rest.split_whitespace().next())
            {
                addr = Some(found.trim_matches('"').to_string());
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let addr = addr.unwrap_or_else(|| {
            panic!(
                "agent did not start: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            )
        });
        Agent {
            child,
            log,
            addr,
            _dir: dir,
        }
    }

    /// Sends a signal, e.g. `-HUP`.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Sends SIGTERM, waits for the exit, asserts it was clean and returns stderr.
    pub async fn stop(mut self) -> String {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let mut exit = None;
        for _ in 0..200 {
            if let Some(status) = self.child.try_wait().unwrap() {
                exit = Some(status);
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let logs = std::fs::read_to_string(&self.log).unwrap_or_default();
        let exit = exit.unwrap_or_else(|| {
            let _ = self.child.kill();
            panic!("agent did not stop on SIGTERM:\n{logs}")
        });
        assert!(exit.success(), "agent exited with {exit}:\n{logs}");
        logs
    }
}

#[test]
fn check_accepts_a_valid_config() {
    let dir = TempDir::new("check-ok");
    let secret = dir.write("secret", "s3cret-value\n");
    let config = dir.write(
        "ok.toml",
        &format!(
            "[[org]]\nname = \"acme\"\nclient_id = \"ABC123\"\nclient_secret_file = \"{}\"\n",
            secret.display()
        ),
    );
    let output = Command::new(BIN)
        .args(["check", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
}

#[test]
fn check_reports_every_problem_on_its_own_line_and_exits_1() {
    let dir = TempDir::new("check-bad");
    let config = dir.write(
        "bad.toml",
        r#"
[defaults]
interval = "5"

[[org]]
name = "acme"
client_id = "ABC123"
client_secret_file = "/nonexistent/secret"
nmae = "typo"

[[org]]
name = "acme"
client_id = "DEF456"
client_secret = "inline-secret-value"
client_secret_env = "ALSO_SET"
cron = "*/5 * * * *"
"#,
    );
    let output = Command::new(BIN)
        .args(["check", "--config"])
        .arg(&config)
        .env_remove("ALSO_SET")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    let expect = [
        "defaults.interval",
        "nmae",
        "/nonexistent/secret",
        "duplicate",
        "cron",
    ];
    for key in expect {
        assert!(
            lines.iter().any(|l| l.contains(key)),
            "no line mentions {key}:\n{stdout}"
        );
    }
    assert!(lines.len() >= expect.len(), "{stdout}");
    assert!(!stdout.contains("inline-secret-value"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_a_probe_in_flight_finish_and_exits_0() {
    let sim = TestSim::with_spacing(Duration::from_millis(100)).await;
    let org = sim.org("slow", "SLOWSTOP", "interval = \"1h\"\ntimeout = \"5s\"");
    sim.sim.set_faults(
        "SLOWSTOP",
        obf_sim::Faults {
            ping_latency_ms: Some(1500),
            ..Default::default()
        },
    );
    let dir = TempDir::new("stop");
    let config = dir.write("config.toml", &org);
    let agent = Agent::start(&config, &[]).await;
    tokio::time::sleep(Duration::from_millis(500)).await; // the first ping is in flight
    let logs = agent.stop().await;
    let stats = sim.sim.client_stats("SLOWSTOP").unwrap();
    assert_eq!(stats.pings, 1);
    assert!(
        logs.contains("ping ok"),
        "the probe in flight finished:\n{logs}"
    );
}
