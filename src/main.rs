//! The `obf-exporter` command line, and only that: parses the arguments, sets up logging and the
//! runtime, and hands over to `app::run` (the agent) or a subcommand of `commands`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use obf_exporter::app;
use obf_exporter::commands::probe::ProbeFormat;
use obf_exporter::commands::{check, demo, healthcheck, probe, sim};
use obf_exporter::config::shard::Shard;
use obf_exporter::fleet::controller::ConfigSource;
use obf_exporter::logging::{self, LogFormat};

#[derive(Parser)]
#[command(
    name = "obf-exporter",
    version,
    about = "Prometheus exporter for Open Badge Factory API credentials"
)]
struct Cli {
    /// Log format.
    #[arg(long, global = true, value_enum, default_value = "text")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Option<Command>,
    /// Config file, for `run` when no subcommand is given.
    #[arg(long, env = "OBF_EXPORTER_CONFIG")]
    config: Option<PathBuf>,
    /// Listen address, for `run` when no subcommand is given.
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Handle only shard K of N, for `run` when no subcommand is given.
    #[arg(long)]
    shard: Option<Shard>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the agent (the default).
    Run {
        #[arg(long, env = "OBF_EXPORTER_CONFIG")]
        config: PathBuf,
        /// Default: `[exporter] listen`, else 0.0.0.0:9852.
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// Handle only the orgs whose credential (host + client_id) hashes (FNV-1a 64) to K
        /// modulo N.
        #[arg(long, value_name = "K/N")]
        shard: Option<Shard>,
    },
    /// Validate the config and that every secret is readable.
    Check {
        #[arg(long, env = "OBF_EXPORTER_CONFIG")]
        config: PathBuf,
    },
    /// Probe now and print the results; exit 1 if any failed.
    Probe {
        #[arg(long, env = "OBF_EXPORTER_CONFIG")]
        config: PathBuf,
        /// Only this org.
        #[arg(long)]
        org: Option<String>,
        #[arg(long, value_enum, default_value = "text")]
        format: ProbeFormat,
        /// Probe only the orgs whose credential (host + client_id) hashes (FNV-1a 64) to K
        /// modulo N, as `run --shard` does.
        #[arg(long, value_name = "K/N")]
        shard: Option<Shard>,
    },
    /// Start the built-in OBF simulator and the agent against it.
    Demo {
        /// The agent's address (the simulator takes a free loopback port). Local only by default;
        /// 0.0.0.0:9852 to reach it from other machines.
        #[arg(long, default_value_t = demo::DEFAULT_LISTEN)]
        listen: SocketAddr,
    },
    /// Run the OBF simulator alone.
    Sim {
        #[arg(long, default_value = "127.0.0.1:9863")]
        listen: SocketAddr,
        /// Generated clients sim00000.. with secrets secret00000...
        #[arg(long, default_value_t = 0)]
        orgs: usize,
        /// Serve HTTPS with this PEM certificate chain (leaf first); needs --tls-key.
        #[arg(long, value_name = "FILE", requires = "tls_key")]
        tls_cert: Option<PathBuf>,
        /// The certificate's unencrypted PEM private key; needs --tls-cert.
        #[arg(long, value_name = "FILE", requires = "tls_cert")]
        tls_key: Option<PathBuf>,
    },
    /// GET /-/healthy of a running agent; exit 0 if healthy (for container health checks).
    Healthcheck {
        #[arg(long, default_value = "http://127.0.0.1:9852/-/healthy")]
        url: String,
        /// Accept any TLS certificate (a self-signed one on localhost).
        #[arg(long)]
        insecure: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // `check` prints its findings on stdout and needs neither logging nor a runtime.
    if let Some(Command::Check { config }) = &cli.command {
        return exit(check::check(config));
    }
    app::limit_malloc_arenas();
    logging::init(cli.log_format);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("obf-exporter: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result: anyhow::Result<ExitCode> = runtime.block_on(async {
        let ok = |()| ExitCode::SUCCESS;
        match cli.command {
            Some(Command::Run {
                config,
                listen,
                shard,
            }) => run(config, listen, shard).await.map(ok),
            None => match cli.config {
                Some(config) => run(config, cli.listen, cli.shard).await.map(ok),
                None => Err(anyhow::anyhow!(
                    "no config: pass --config FILE or set OBF_EXPORTER_CONFIG (or try `obf-exporter demo`)"
                )),
            },
            Some(Command::Probe {
                config,
                org,
                format,
                shard,
            }) => probe::probe(&config, org.as_deref(), format, shard)
                .await
                .map(exit),
            Some(Command::Demo { listen }) => demo::run(listen).await.map(ok),
            Some(Command::Sim {
                listen,
                orgs,
                tls_cert,
                tls_key,
            }) => {
                let tls = tls_cert.zip(tls_key).map(|(cert, key)| sim::TlsFiles { cert, key });
                sim::sim(listen, orgs, tls).await.map(ok)
            }
            Some(Command::Healthcheck { url, insecure }) => {
                Ok(exit(healthcheck::healthcheck(&url, insecure).await))
            }
            Some(Command::Check { config }) => Ok(exit(check::check(&config))),
        }
    });
    match result {
        Ok(code) => code,
        Err(error) => {
            // Once, through the log (stderr, in the chosen --log-format): an eprintln as well
            // printed every startup error twice.
            tracing::error!("{error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(
    config: PathBuf,
    listen: Option<SocketAddr>,
    shard: Option<Shard>,
) -> anyhow::Result<()> {
    app::run(
        ConfigSource::File(config),
        shard,
        listen,
        app::shutdown_signal(),
    )
    .await
}

fn exit(ok: bool) -> ExitCode {
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
