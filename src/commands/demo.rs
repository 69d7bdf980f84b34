//! `obf-exporter demo`: the simulator and the agent together, with four orgs that show the
//! interesting states (healthy, slow, credentials revoked then restored, secret rotated with no
//! alarm).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use obf_sim::{Faults, SimOptions, Simulator};

use crate::config::{self, Config, SecretSource};

/// The demo config, as shipped in `config/demo.toml`.
pub const DEMO_CONFIG: &str = include_str!("../../config/demo.toml");

/// Demo clients: (client_id, secret), as in `config/demo.toml`.
const DEMO_CLIENTS: [(&str, &str); 4] = [
    ("DEMOHEALTHY", "demo-healthy-secret"),
    ("DEMOSLOW", "demo-slow-secret"),
    ("DEMOREVOKED", "demo-revoked-secret"),
    (ROTATED_CLIENT, ROTATED_SECRET),
];

/// Where the demo's agent listens unless `--listen` says otherwise: loopback only, since the demo
/// is a local first run (`run` defaults to all interfaces, for Prometheus on another machine).
pub const DEFAULT_LISTEN: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 9852);

/// How long the demo org keeps its credentials, and how long they stay revoked.
const REVOKE_AFTER: Duration = Duration::from_secs(120);
const RESTORE_AFTER: Duration = Duration::from_secs(120);

/// The org whose secret the demo rotates, its client and the file the demo keeps its secret in.
pub const ROTATED_ORG: &str = "rotated";
const ROTATED_CLIENT: &str = "DEMOROTATED";
/// Its first secret, as in `config/demo.toml`; rotation `n` makes it `demo-rotated-secret-n`.
pub const ROTATED_SECRET: &str = "demo-rotated-secret";
const ROTATED_FILE: &str = "rotated.secret";

/// The steps of one secret rotation, as an operator does it: add a new secret in OBF (Admin
/// tools > API), write it to the secret file some time later, remove the old one later still.
#[derive(Clone, Copy, Debug)]
pub struct Rotation {
    /// From the previous rotation's end (or the start) to adding the new secret.
    pub add_after: Duration,
    /// From adding it in OBF to writing it to the file.
    pub write_after: Duration,
    /// From writing it to removing the old secret in OBF.
    pub remove_after: Duration,
}

/// The demo's rotation: one every three minutes, the old secret removed a minute after the new
/// one is written (the agent follows the file within 5 s and uses it at the org's next run).
pub const DEMO_ROTATION: Rotation = Rotation {
    add_after: Duration::from_secs(110),
    write_after: Duration::from_secs(10),
    remove_after: Duration::from_secs(60),
};

/// Registers the demo's clients and the slow org's latency.
pub fn add_demo_clients(simulator: &Simulator) {
    for (client_id, secret) in DEMO_CLIENTS {
        simulator.add_client(client_id, secret);
    }
    simulator.set_faults(
        "DEMOSLOW",
        Faults {
            ping_latency_ms: Some(1500),
            ..Faults::default()
        },
    );
}

/// The demo config with every org pointed at the simulator at `simulator`, and the rotated
/// org's secret read from `secret_dir` if given (written there by [`write_secret`] before the
/// agent starts; else the org keeps its inline secret).
pub fn demo_config(simulator: SocketAddr, secret_dir: Option<&Path>) -> anyhow::Result<Config> {
    let mut config = config::parse(DEMO_CONFIG, "config/demo.toml (embedded)", &|_| None)
        .map_err(|e| anyhow::anyhow!("the embedded demo config is invalid:\n{e}"))?;
    for org in &mut config.orgs {
        org.host = format!("http://{simulator}");
        if let Some(dir) = secret_dir.filter(|_| org.name.as_str() == ROTATED_ORG) {
            // Inline in the shipped file (so it also runs against `obf-exporter sim`); here it
            // comes from a file, so that the file can be rotated.
            org.secret_source = SecretSource::File(dir.join(ROTATED_FILE));
        }
    }
    // The demo's inline secrets are deliberate; do not warn about them.
    config.warnings.clear();
    Ok(config)
}

/// Writes `secret` to `path` the way a Vault agent or an editor does: a new file renamed over
/// the old one, so a reader never sees half a secret.
pub async fn write_secret(path: &Path, secret: &str) -> std::io::Result<()> {
    let partial = path.with_extension("partial");
    tokio::fs::write(&partial, format!("{secret}\n")).await?;
    tokio::fs::rename(&partial, path).await
}

/// Runs the simulator and the agent until Ctrl-C or SIGTERM.
pub async fn run(agent_addr: SocketAddr) -> anyhow::Result<()> {
    let simulator = Simulator::new(SimOptions::default());
    add_demo_clients(&simulator);
    let (sim_addr, _sim_task) = simulator
        .clone()
        .spawn(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
        .await
        .context("cannot start the simulator")?;
    // A read-only file system (a locked-down container) leaves the org unrotated, not the demo
    // unstarted.
    let secret_dir = match SecretDir::create().await {
        Ok(dir) => Some(dir),
        Err(error) => {
            tracing::warn!(
                "demo: {error:#}; org {ROTATED_ORG} keeps its inline secret and is not rotated"
            );
            None
        }
    };
    let config = demo_config(sim_addr, secret_dir.as_ref().map(|d| d.0.as_path()))?;
    let shown = match agent_addr.ip().is_unspecified() {
        true => SocketAddr::from((Ipv4Addr::LOCALHOST, agent_addr.port())),
        false => agent_addr,
    };
    println!("obf-exporter demo");
    println!("  simulator (OBF stand-in): http://{sim_addr}  (control API under /sim/)");
    println!("  status page:              http://{shown}/");
    println!("  metrics:                  http://{shown}/metrics");
    println!("  orgs: healthy, slow (1.5 s pings), revoked-later (revoked after 2 min, restored 2 min later),");
    match &secret_dir {
        Some(dir) => println!(
            "        rotated (secret in {}: every 3 min a new secret is added in OBF and written \
             to the file, the old one removed a minute later; no signal, no alarm: stays valid)",
            dir.file().display()
        ),
        None => println!("        rotated (not rotated: no writable temporary directory)"),
    }
    println!(
        "  try:  curl -s http://{shown}/metrics | grep -E '^obf_(ping_success|credentials_valid)'"
    );
    println!("  stop: Ctrl-C");
    tokio::spawn(revoke_cycle(simulator.clone()));
    if let Some(dir) = &secret_dir {
        tokio::spawn(rotate_cycle(simulator, dir.file(), DEMO_ROTATION));
    }
    let source = crate::fleet::controller::ConfigSource::Fixed(Box::new(config));
    let result = crate::app::run(
        source,
        None,
        Some(agent_addr),
        crate::app::shutdown_signal(),
    )
    .await;
    drop(secret_dir);
    result
}

/// Revokes and restores the demo org's credentials, over and over.
async fn revoke_cycle(simulator: Simulator) {
    loop {
        tokio::time::sleep(REVOKE_AFTER).await;
        simulator.revoke("DEMOREVOKED");
        tracing::info!("demo: revoked the credentials of org revoked-later");
        tokio::time::sleep(RESTORE_AFTER).await;
        simulator.restore("DEMOREVOKED");
        tracing::info!("demo: restored the credentials of org revoked-later");
    }
}

/// Rotates the rotated org's secret in the simulator and in `file`, over and over (abort the
/// task to stop). The org's `obf_credentials_valid` stays 1 throughout.
pub async fn rotate_cycle(simulator: Simulator, file: PathBuf, rotation: Rotation) {
    let mut old = ROTATED_SECRET.to_string();
    for round in 2u64.. {
        let new = format!("{}-{round}", ROTATED_SECRET);
        tokio::time::sleep(rotation.add_after).await;
        simulator.add_secret(ROTATED_CLIENT, &new);
        tracing::info!(
            "demo: added a new secret for org {ROTATED_ORG} in OBF (the old one still works)"
        );
        tokio::time::sleep(rotation.write_after).await;
        match write_secret(&file, &new).await {
            Ok(()) => tracing::info!(
                "demo: wrote the new secret of org {ROTATED_ORG} to {} (no reload)",
                file.display()
            ),
            Err(error) => {
                tracing::warn!(%error, "demo: cannot write {}; rotation skipped", file.display());
                simulator.remove_secret(ROTATED_CLIENT, &new);
                continue;
            }
        }
        tokio::time::sleep(rotation.remove_after).await;
        simulator.remove_secret(ROTATED_CLIENT, &old);
        tracing::info!("demo: removed the old secret of org {ROTATED_ORG} in OBF");
        old = new;
    }
}

/// A private directory holding the rotated org's secret file, removed when dropped.
struct SecretDir(PathBuf);

impl SecretDir {
    /// Creates the directory and writes the first secret to the file.
    async fn create() -> anyhow::Result<Self> {
        use std::os::unix::fs::PermissionsExt;
        let path = std::env::temp_dir().join(format!("obf-exporter-demo-{}", std::process::id()));
        tokio::fs::create_dir_all(&path)
            .await
            .with_context(|| format!("cannot create {}", path.display()))?;
        // From here on, dropping `dir` (on any error) removes it.
        let dir = SecretDir(path);
        tokio::fs::set_permissions(&dir.0, std::fs::Permissions::from_mode(0o700))
            .await
            .with_context(|| format!("cannot restrict {}", dir.0.display()))?;
        write_secret(&dir.file(), ROTATED_SECRET)
            .await
            .with_context(|| format!("cannot write {}", dir.file().display()))?;
        Ok(dir)
    }

    fn file(&self) -> PathBuf {
        self.0.join(ROTATED_FILE)
    }
}

impl Drop for SecretDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
