//! The `obf-exporter` command line: parses arguments and hands over to the subcommands.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use obf_exporter::logging::{self, LogFormat};
use obf_exporter::{commands, demo};

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
    },
    /// Validate the config and that every secret is readable.
    Check {
        #[arg(long, env = "OBF_EXPORTER_CONFIG")]
        config: PathBuf,
    },
    /// Start the built-in OBF simulator and the agent against it.
    Demo {
        #[arg(long)]
        listen: Option<SocketAddr>,
    },
    /// Run the OBF simulator alone.
    Sim {
        #[arg(long, default_value = "127.0.0.1:9863")]
        listen: SocketAddr,
        /// Generated clients sim00000.. with secrets secret00000...
        #[arg(long, default_value_t = 0)]
        orgs: usize,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::Check { config }) = &cli.command {
        return exit(commands::check(config));
    }
    logging::init(cli.log_format);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("obf-exporter: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Some(Command::Run { config, listen }) => run(config, listen).await,
            None => match cli.config {
                Some(config) => run(config, cli.listen).await,
                None => Err(anyhow::anyhow!(
                    "no config: pass --config FILE or set OBF_EXPORTER_CONFIG (or try `obf-exporter demo`)"
                )),
            },
            Some(Command::Demo { listen }) => demo::run(listen).await,
            Some(Command::Sim { listen, orgs }) => commands::sim(listen, orgs).await,
            Some(Command::Check { .. }) => unreachable!("handled before the runtime starts"),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error:#}");
            eprintln!("obf-exporter: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(config: PathBuf, listen: Option<SocketAddr>) -> anyhow::Result<()> {
    let config = commands::load_config(&config)?;
    commands::run(config, listen, commands::shutdown_signal()).await
}

fn exit(ok: bool) -> ExitCode {
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
