//! `obf-exporter demo`: the simulator and the agent together, with three orgs that show the
//! interesting states (healthy, slow, credentials revoked then restored).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use anyhow::Context;

use crate::config::{self, Config};
use crate::sim::{Faults, SimOptions, Simulator};

/// The demo config, as shipped in `config/demo.toml`.
pub const DEMO_CONFIG: &str = include_str!("../config/demo.toml");

/// Demo clients: (client_id, secret), as in `config/demo.toml`.
const DEMO_CLIENTS: [(&str, &str); 3] = [
    ("DEMOHEALTHY", "demo-healthy-secret"),
    ("DEMOSLOW", "demo-slow-secret"),
    ("DEMOREVOKED", "demo-revoked-secret"),
];

/// Where the demo's agent listens unless `--listen` says otherwise: loopback only, since the demo
/// is a local first run (`run` defaults to all interfaces, for Prometheus on another machine).
pub const DEFAULT_LISTEN: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 9852);

/// How long the demo org keeps its credentials, and how long they stay revoked.
const REVOKE_AFTER: Duration = Duration::from_secs(120);
const RESTORE_AFTER: Duration = Duration::from_secs(120);

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

/// The demo config with every org pointed at the simulator at `simulator`.
pub fn demo_config(simulator: SocketAddr) -> anyhow::Result<Config> {
    let mut config = config::parse(DEMO_CONFIG, "config/demo.toml (embedded)", &|_| None)
        .map_err(|e| anyhow::anyhow!("the embedded demo config is invalid:\n{e}"))?;
    for org in &mut config.orgs {
        org.host = format!("http://{simulator}");
    }
    // The demo's inline secrets are deliberate; do not warn about them.
    config.warnings.clear();
    Ok(config)
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
    let config = demo_config(sim_addr)?;
    let shown = match agent_addr.ip().is_unspecified() {
        true => SocketAddr::from((Ipv4Addr::LOCALHOST, agent_addr.port())),
        false => agent_addr,
    };
    println!("obf-exporter demo");
    println!("  simulator (OBF stand-in): http://{sim_addr}  (control API under /sim/)");
    println!("  status page:              http://{shown}/");
    println!("  metrics:                  http://{shown}/metrics");
    println!("  orgs: healthy, slow (1.5 s pings), revoked-later (revoked after 2 min, restored 2 min later)");
    println!(
        "  try:  curl -s http://{shown}/metrics | grep -E '^obf_(ping_success|credentials_valid)'"
    );
    println!("  stop: Ctrl-C");
    tokio::spawn(revoke_cycle(simulator));
    let source = crate::controller::ConfigSource::Fixed(Box::new(config));
    crate::commands::run(
        source,
        None,
        Some(agent_addr),
        crate::commands::shutdown_signal(),
    )
    .await
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
