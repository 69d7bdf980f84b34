//! `sim`: the OBF simulator (`obf-sim`) alone, with generated clients and the demo's, for
//! rehearsing alerts against it.

use std::net::SocketAddr;

use anyhow::Context;
use obf_sim::{SimOptions, Simulator};
use tokio::net::TcpListener;

use super::demo;
use crate::app::shutdown_signal;

/// `sim`: the simulator alone, with `orgs` generated clients plus the demo's clients.
pub async fn sim(listen: SocketAddr, orgs: usize) -> anyhow::Result<()> {
    let simulator = Simulator::with_generated_clients(SimOptions::default(), orgs);
    demo::add_demo_clients(&simulator);
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    tracing::info!(
        address = %listener.local_addr()?,
        generated_clients = orgs,
        "OBF simulator running; generated clients are sim00000.. with secrets secret00000..; control API under /sim/"
    );
    tokio::select! {
        result = simulator.serve(listener) => result?,
        _ = shutdown_signal() => {},
    }
    Ok(())
}
