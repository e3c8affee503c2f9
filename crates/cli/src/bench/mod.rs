//! `quartet bench`: a lean MQTT load generator and its scenarios.
//!
//! # Layout
//! - `wire`: the bare connection (quartet-proto for the handshake and acks, a hand-written
//!   PUBLISH fast path) and the payload stamp (publisher, sequence number, send time).
//! - `load`: publisher and subscriber tasks (one task and one socket per client, readiness
//!   driven, batched writes, an in-flight window for QoS 1/2) and the per-publisher tracking
//!   of lost, duplicated and out-of-order messages.
//! - `scenario`: what each scenario connects and measures; `report`: the table and JSON.
//! - `sys`: CPU time and memory of the generator (getrusage) and the broker (/proc/PID).

mod load;
mod report;
mod scenario;
mod sys;
mod wire;

use std::net::SocketAddr;

use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};
use quartet_proto::ProtocolVersion;

/// `quartet bench SCENARIO [OPTIONS]`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Debug, Subcommand)]
enum Scenario {
    /// P publishers -> S subscribers (default 16 -> 16, QoS 0, 64 B, distinct topics, 10 s).
    Throughput(LoadArgs),
    /// 1 publisher -> S subscribers on one topic (default 1 -> 100).
    Fanout(LoadArgs),
    /// End-to-end latency at a fixed offered rate (default 10,000 msg/s, 16 -> 16, QoS 1).
    Latency(LoadArgs),
    /// Shared subscriptions: P publishers -> S subscribers in `--groups` $share groups.
    Shared(LoadArgs),
    /// Open N connections at a rate and hold them: connect rate, broker memory per connection.
    Conn(ConnArgs),
    /// Persistent sessions: subscribers go offline, messages queue, they come back and drain.
    Persist(PersistArgs),
}

/// Options every scenario has.
#[derive(Debug, Clone, Args)]
struct Common {
    /// The broker's host.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// The broker's port.
    #[arg(long, default_value_t = 1883)]
    port: u16,
    /// MQTT version: 311 (3.1.1) or 5.
    #[arg(short = 'V', long = "mqtt-version", default_value = "311", value_parser = parse_version)]
    version: ProtocolVersion,
    /// Print one JSON object instead of the table (and no progress bar).
    #[arg(long)]
    json: bool,
    /// The broker's process id: its CPU time and memory are reported next to ours.
    #[arg(long, value_name = "PID")]
    broker_pid: Option<u32>,
}

fn parse_version(s: &str) -> Result<ProtocolVersion, String> {
    match s {
        "311" | "3.1.1" | "4" => Ok(ProtocolVersion::V311),
        "5" | "5.0" => Ok(ProtocolVersion::V5),
        other => Err(format!("unknown MQTT version {other:?}: use 311 or 5")),
    }
}

/// Where publishers publish.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum TopicMode {
    /// Publisher i publishes to its own topic; its messages go to one subscriber (publishers
    /// are spread over subscribers, or subscribers over publishers when there are more).
    Distinct,
    /// Every publisher publishes to one topic that every subscriber subscribes to.
    Shared,
}

/// Options of the message-flow scenarios; unset ones take the scenario's defaults.
#[derive(Debug, Clone, Args)]
struct LoadArgs {
    #[command(flatten)]
    common: Common,
    /// Publishers.
    #[arg(short = 'P', long)]
    publishers: Option<usize>,
    /// Subscribers.
    #[arg(short = 'S', long)]
    subscribers: Option<usize>,
    /// Distinct topics (one per publisher) or one shared topic.
    #[arg(long, value_enum)]
    topic: Option<TopicMode>,
    /// QoS of publications and subscriptions: 0, 1 or 2.
    #[arg(short, long, value_parser = clap::value_parser!(u8).range(0..=2))]
    qos: Option<u8>,
    /// Payload bytes (at least 20: publisher id, sequence number, timestamp).
    #[arg(short, long, default_value_t = 64)]
    size: usize,
    /// QoS 1/2 messages in flight per publisher at most.
    #[arg(short, long, default_value_t = 64)]
    window: usize,
    /// Seconds of publishing (ignored with --messages).
    #[arg(short, long)]
    duration: Option<f64>,
    /// Messages per publisher instead of a duration.
    #[arg(short = 'n', long)]
    messages: Option<u64>,
    /// Offered rate in messages per second, all publishers together (default: as fast as
    /// the broker takes them; `latency` defaults to 10000).
    #[arg(short, long)]
    rate: Option<f64>,
    /// Shared-subscription groups (`shared` only): each message goes to one member of each.
    #[arg(long, default_value_t = 1)]
    groups: usize,
    /// Persistent sessions (3.1.1 clean session 0, v5 Session Expiry 1 h) for every client:
    /// a durable broker must then store QoS 1/2 state before acknowledging. The sessions are
    /// ended after the run.
    #[arg(long)]
    persistent: bool,
}

/// Options of `conn`.
#[derive(Debug, Clone, Args)]
struct ConnArgs {
    #[command(flatten)]
    common: Common,
    /// Connections to open.
    #[arg(short = 'n', long, default_value_t = 1000)]
    connections: usize,
    /// Connections opened per second at most (default: as fast as the broker accepts).
    #[arg(short, long)]
    rate: Option<f64>,
    /// Handshakes in progress at once at most.
    #[arg(long, default_value_t = 100)]
    concurrency: usize,
    /// Seconds to hold the connections open before measuring memory and closing them.
    #[arg(long, default_value_t = 2.0)]
    hold: f64,
}

/// Options of `persist`.
#[derive(Debug, Clone, Args)]
struct PersistArgs {
    #[command(flatten)]
    common: Common,
    /// Persistent subscribers (each gets every message).
    #[arg(short = 'S', long, default_value_t = 1)]
    subscribers: usize,
    /// Publishers filling the queues.
    #[arg(short = 'P', long, default_value_t = 4)]
    publishers: usize,
    /// Messages queued for each subscriber while it is offline.
    #[arg(short = 'n', long, default_value_t = 50_000)]
    messages: u64,
    /// QoS 1 or 2.
    #[arg(short, long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=2))]
    qos: u8,
    /// Payload bytes.
    #[arg(short, long, default_value_t = 64)]
    size: usize,
    /// QoS 1/2 messages in flight per publisher at most.
    #[arg(short, long, default_value_t = 64)]
    window: usize,
}

/// Runs one scenario and prints its report.
pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(async move {
        let (common, report) = match args.scenario {
            Scenario::Throughput(a) => (a.common.clone(), scenario::load("throughput", a).await?),
            Scenario::Fanout(a) => (a.common.clone(), scenario::load("fanout", a).await?),
            Scenario::Latency(a) => (a.common.clone(), scenario::load("latency", a).await?),
            Scenario::Shared(a) => (a.common.clone(), scenario::load("shared", a).await?),
            Scenario::Conn(a) => (a.common.clone(), scenario::conn(a).await?),
            Scenario::Persist(a) => (a.common.clone(), scenario::persist(a).await?),
        };
        report.print(common.json);
        report.result()
    })
}

impl Common {
    async fn addr(&self) -> anyhow::Result<SocketAddr> {
        tokio::net::lookup_host((self.host.as_str(), self.port))
            .await
            .with_context(|| format!("cannot resolve {}", self.host))?
            .next()
            .with_context(|| format!("{} has no address", self.host))
    }

    fn progress(&self) -> bool {
        use std::io::IsTerminal;
        !self.json && std::io::stderr().is_terminal()
    }
}

/// A name for this run, so that its client ids and topics meet no other run's.
fn run_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos() ^ (d.as_secs() as u32));
    format!("{:08x}", nanos ^ std::process::id().rotate_left(16))
}
