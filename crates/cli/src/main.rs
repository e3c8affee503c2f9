//! `quartet`: the broker and its command-line tools.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use quartet_server::{Durability, ServerConfig};

#[derive(Debug, Parser)]
#[command(
    name = "quartet",
    version,
    about = "An MQTT 3.1/3.1.1/5.0 broker and toolkit"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the broker (listens on 127.0.0.1:1883 unless told otherwise).
    Serve(ServeArgs),
    /// Check, repair or look into a data directory (stop the broker first for repair).
    #[command(subcommand)]
    Store(StoreCommand),
    /// Publish a message (the flags of mosquitto_pub, plus --state-dir).
    Pub(pubsub::PubArgs),
    /// Subscribe and print messages (the flags of mosquitto_sub, plus --json, --trace).
    Sub(pubsub::SubArgs),
    /// The temperature sensor and dashboard, and `demo chaos`: kill -9 at random, then check.
    #[command(subcommand)]
    Demo(demo::DemoCommand),
    /// Measure a broker: throughput, fan-out, latency, connections, shared and persistent
    /// sessions, with loss/duplicate checks per publisher.
    Bench(bench::BenchArgs),
}

#[derive(Debug, Subcommand)]
enum StoreCommand {
    /// Read the whole log; report what it holds, or the first damage (file and offset).
    Verify(StoreArgs),
    /// Keep every intact record, drop damaged ones, rewrite the directory; say what was dropped.
    Repair(StoreArgs),
    /// Print sessions, subscriptions, in-flight exchanges and queues as JSON lines.
    Inspect(StoreArgs),
}

#[derive(Debug, clap::Args)]
struct StoreArgs {
    /// The data directory.
    #[arg(long, value_name = "DIR", default_value = "quartet-data")]
    data_dir: PathBuf,
}

#[derive(Debug, clap::Args)]
struct ServeArgs {
    /// Listen on ADDR:PORT; repeat for several listeners. Overrides `listen` of the config file.
    #[arg(long = "listen", value_name = "ADDR:PORT")]
    listen: Vec<SocketAddr>,
    /// Read settings from this TOML file (see config/quartet.example.toml).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Keep the durable state in DIR (default ./quartet-data). Overrides `data_dir`.
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// When acknowledgements are sent: fsync (default; after fdatasync), os (after the write;
    /// survives kill -9, not power loss) or memory (nothing stored). Overrides `durability`.
    #[arg(long, value_name = "MODE")]
    durability: Option<Durability>,
}

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve(args),
        Command::Store(cmd) => store::run(cmd),
        Command::Pub(args) => pubsub::run_pub(args),
        Command::Sub(args) => pubsub::run_sub(args),
        Command::Demo(cmd) => demo::run(cmd),
        Command::Bench(args) => bench::run(args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("quartet: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

mod bench;
mod demo;
mod pubsub;
mod store;

fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let mut config = ServerConfig::for_serve(args.config.as_deref())?;
    if !args.listen.is_empty() {
        config.listen = args.listen;
    }
    if let Some(dir) = args.data_dir {
        config.data_dir = dir;
    }
    if let Some(d) = args.durability {
        config.durability = d;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(async move {
        // The handlers exist before the listeners do: a SIGTERM that arrives as soon as the
        // broker accepts connections stops it gracefully instead of killing it.
        use tokio::signal::unix::{signal, SignalKind};
        let term = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
        let int = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
        quartet_server::run(config, shutdown_signal(term, int)).await?;
        Ok(())
    })
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal(
    mut term: tokio::signal::unix::Signal,
    mut int: tokio::signal::unix::Signal,
) {
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
