//! Test harness: the simulator and the agent in-process on 127.0.0.1 with ephemeral ports, and
//! helpers to read metrics.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use obf_exporter::config::{self, Config};
use obf_exporter::fleet::agent::build_orgs;
use obf_exporter::fleet::controller::ConfigSource;
use obf_exporter::fleet::org::Org;
use obf_exporter::metrics::Metrics;
use obf_sim::{SimOptions, Simulator};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub struct TestSim {
    pub sim: Simulator,
    pub addr: SocketAddr,
}

impl TestSim {
    pub async fn start(options: SimOptions) -> Self {
        let sim = Simulator::new(options);
        let (addr, _task) = sim
            .clone()
            .spawn("127.0.0.1:0".parse().unwrap())
            .await
            .expect("simulator starts");
        TestSim { sim, addr }
    }

    /// A simulator whose token spacing is `min_interval` (tests scale the 10 s down).
    pub async fn with_spacing(min_interval: Duration) -> Self {
        Self::start(SimOptions {
            token_min_interval: min_interval,
            ..SimOptions::default()
        })
        .await
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Registers a client and returns an `[[org]]` table for it.
    pub fn org(&self, name: &str, client_id: &str, extra: &str) -> String {
        let secret = format!("{client_id}-secret-value");
        self.sim.add_client(client_id, &secret);
        format!(
            "[[org]]\nname = \"{name}\"\nclient_id = \"{client_id}\"\nclient_secret = \"{secret}\"\nhost = \"{}\"\n{extra}\n",
            self.url()
        )
    }
}

pub fn parse_config(text: &str) -> Config {
    match config::parse(text, "test.toml", &|_| None) {
        Ok(config) => config,
        Err(error) => panic!("test config invalid:\n{error}\n---\n{text}"),
    }
}

/// Orgs built from `text`, to probe by hand.
pub async fn orgs(text: &str) -> (Arc<Metrics>, Vec<Arc<Org>>) {
    let metrics = Arc::new(Metrics::new());
    let orgs = build_orgs(&parse_config(text), &metrics)
        .await
        .expect("orgs build");
    (metrics, orgs)
}

/// The whole agent (schedules + HTTP server) running in this process.
pub struct App {
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<anyhow::Result<()>>,
}

impl App {
    /// The agent with the config `text` (reloads re-apply it).
    pub async fn spawn(text: &str) -> Self {
        let config = parse_config(text);
        let source = ConfigSource::Fixed(Box::new(config.clone()));
        Self::start(config, source).await
    }

    /// The agent with `config` as built (reloads re-apply it).
    pub async fn spawn_config(config: Config) -> Self {
        let source = ConfigSource::Fixed(Box::new(config.clone()));
        Self::start(config, source).await
    }

    /// The agent reading `path`, so that reloads re-read it.
    pub async fn spawn_file(path: &std::path::Path) -> Self {
        let source = ConfigSource::File(path.to_path_buf());
        let config = obf_exporter::fleet::controller::load(&source, None).expect("valid config");
        Self::start(config, source).await
    }

    async fn start(config: Config, source: ConfigSource) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let shutdown = async move {
            let _ = stopped.await;
        };
        let task = tokio::spawn(obf_exporter::app::serve_source(
            config, source, None, listener, shutdown,
        ));
        App {
            addr,
            stop: Some(stop),
            task,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub async fn metrics(&self) -> String {
        get(&format!("http://{}/metrics", self.addr)).await.1
    }

    pub async fn value(&self, series: &str) -> Option<f64> {
        metric_value(&self.metrics().await, series)
    }

    /// Polls until `series` satisfies `check`, failing after `within`.
    pub async fn wait_for(
        &self,
        series: &str,
        within: Duration,
        check: impl Fn(f64) -> bool,
    ) -> f64 {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(value) = self.value(series).await {
                if check(value) {
                    return value;
                }
            }
            if tokio::time::Instant::now() > deadline {
                panic!(
                    "{series} never matched within {within:?}; metrics:\n{}",
                    self.metrics().await
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.task.await.unwrap().expect("agent stops cleanly");
    }
}

pub async fn get(url: &str) -> (u16, String) {
    let response = reqwest::get(url).await.expect("request succeeds");
    let status = response.status().as_u16();
    (status, response.text().await.unwrap())
}

/// The value of one series in the text format, e.g. `obf_ping_success{org="a"}`.
pub fn metric_value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| {
            let (name, value) = line.rsplit_once(' ')?;
            (name == series).then(|| value.parse().ok()).flatten()
        })
}

/// A loopback port with nothing listening.
pub fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}
