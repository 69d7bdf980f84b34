//! `sim`: the OBF simulator (`obf-sim`) alone, with generated clients and the demo's, for
//! rehearsing alerts against it and for the benchmark (over plain HTTP or HTTPS).

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use obf_sim::{SimOptions, Simulator, TlsIdentity};
use tokio::net::TcpListener;

use super::demo;
use crate::app::shutdown_signal;

/// The PEM files of `sim --tls-cert FILE --tls-key FILE`.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// `sim`: the simulator alone, with `orgs` generated clients plus the demo's clients; HTTPS when
/// `tls` names a certificate and key.
pub async fn sim(listen: SocketAddr, orgs: usize, tls: Option<TlsFiles>) -> anyhow::Result<()> {
    // Read before binding, so a bad file fails at once with the file's name.
    let identity = match &tls {
        Some(files) => {
            let read = |path: &PathBuf| {
                std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
            };
            let identity = TlsIdentity::from_pem(&read(&files.cert)?, &read(&files.key)?)
                .with_context(|| {
                    format!("{} with {}", files.cert.display(), files.key.display())
                })?;
            Some(identity)
        }
        None => None,
    };
    let simulator = Simulator::with_generated_clients(SimOptions::default(), orgs);
    demo::add_demo_clients(&simulator);
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    tracing::info!(
        address = %listener.local_addr()?,
        scheme = if identity.is_some() { "https" } else { "http" },
        generated_clients = orgs,
        "OBF simulator running; generated clients are sim00000.. with secrets secret00000..; control API under /sim/"
    );
    let serve = async {
        match &identity {
            Some(identity) => simulator.serve_tls(listener, identity).await,
            None => simulator.serve(listener).await,
        }
    };
    tokio::select! {
        result = serve => result?,
        _ = shutdown_signal() => {},
    }
    Ok(())
}
