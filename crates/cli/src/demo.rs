//! `quartet demo`: the temperature sensor and the dashboard, and `quartet demo chaos`, which
//! runs broker, sensor and dashboard as processes, kills them with SIGKILL at random, and
//! checks that the dashboard showed every reading exactly once, in order.
//!
//! - The sensor publishes `sensors/temperature/livingroom` readings (`"<n> <celsius>"`) at
//!   QoS 2 with durable client state. `n` is the client's durable publish sequence number,
//!   so after a kill the sensor goes on from the first reading it had not handed to the
//!   client, and the client resends what it held, with the same packet ids.
//! - The dashboard subscribes at QoS 2 with a persistent session and manual
//!   acknowledgement. Its side effect is a line appended to its record file, keyed by the
//!   message's stable identity; only then does it acknowledge. A message redelivered after
//!   a kill between the append and the acknowledgement is recognised by its identity and not
//!   recorded twice: the idempotence the client library documents.

use std::collections::HashSet;
use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use quartet_client::{Client, ClientError, ConnectOptions, OutgoingMessage, QoS, Subscription};

const TOPIC: &str = "sensors/temperature/livingroom";

#[derive(Debug, clap::Subcommand)]
pub(crate) enum DemoCommand {
    /// Kill broker, sensor and dashboard at random for N seconds, then check the record.
    Chaos(ChaosArgs),
    /// The temperature sensor: QoS 2 readings with durable client state.
    Sensor(SensorArgs),
    /// The dashboard: QoS 2, persistent session, manual acknowledgement, a record file.
    Dashboard(DashboardArgs),
}

#[derive(Debug, clap::Args)]
pub(crate) struct ChaosArgs {
    /// How long to keep killing, in seconds.
    #[arg(long, default_value_t = 30)]
    secs: u64,
    /// Seed of the kill schedule (default: from the clock; printed).
    #[arg(long)]
    seed: Option<u64>,
    /// Directory for the broker's data, the client states, the record and the logs
    /// (default: a new directory under the system's temp dir, removed after a success).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Milliseconds between two readings.
    #[arg(long, default_value_t = 20)]
    interval_ms: u64,
}

#[derive(Debug, clap::Args)]
pub(crate) struct SensorArgs {
    /// Broker address.
    #[arg(long, default_value = "127.0.0.1:1883")]
    addr: String,
    /// Durable client state.
    #[arg(long)]
    state_dir: PathBuf,
    /// Milliseconds between two readings.
    #[arg(long, default_value_t = 1000)]
    interval_ms: u64,
    /// Stop publishing once this file exists; wait for every acknowledgement and exit.
    #[arg(long)]
    stop_file: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub(crate) struct DashboardArgs {
    /// Broker address.
    #[arg(long, default_value = "127.0.0.1:1883")]
    addr: String,
    /// Durable client state.
    #[arg(long)]
    state_dir: PathBuf,
    /// The record: one line per reading shown, `<message id> <payload>`.
    #[arg(long)]
    record: PathBuf,
    /// Milliseconds between showing a reading and acknowledging it (a slower display): it
    /// widens the window in which a kill makes a shown reading come again.
    #[arg(long, default_value_t = 0)]
    ack_delay_ms: u64,
}

pub(crate) fn run(cmd: DemoCommand) -> anyhow::Result<()> {
    match cmd {
        DemoCommand::Chaos(a) => chaos(a),
        DemoCommand::Sensor(a) => runtime()?.block_on(sensor(a)),
        DemoCommand::Dashboard(a) => runtime()?.block_on(dashboard(a)),
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

fn client_options(addr: &str, id: &str, state_dir: &Path) -> ConnectOptions {
    let mut o = ConnectOptions::new(addr, id).persistent(u32::MAX);
    o.state_dir = Some(state_dir.to_path_buf());
    o.reconnect.min_delay = Duration::from_millis(50);
    o.reconnect.max_delay = Duration::from_millis(500);
    o.connect_timeout = Duration::from_secs(3);
    o.keep_alive_secs = 5;
    o
}

/// Connects, retrying while the broker is down (it may be being restarted).
async fn connect(o: ConnectOptions) -> anyhow::Result<(Client, quartet_client::Incoming)> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match Client::connect(o.clone()).await {
            Ok(c) => return Ok(c),
            Err(e @ (ClientError::Store(_) | ClientError::Options(_))) => return Err(e.into()),
            Err(e) if Instant::now() > deadline => return Err(e.into()),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

async fn sensor(a: SensorArgs) -> anyhow::Result<()> {
    let (client, _incoming) = connect(client_options(&a.addr, "sensor", &a.state_dir)).await?;
    println!(
        "sensor: connected, next reading {}, {} held from before",
        client.next_publish_seq(),
        client.status().borrow().outgoing
    );
    loop {
        if a.stop_file.as_ref().is_some_and(|f| f.exists()) {
            break;
        }
        let n = client.next_publish_seq();
        let celsius = 21.0 + 2.5 * (n as f64 / 40.0).sin();
        let p = client
            .send(OutgoingMessage::new(
                TOPIC,
                format!("{n} {celsius:.1}"),
                QoS::ExactlyOnce,
                false,
            ))
            .await?;
        if p.seq != Some(n) {
            bail!("reading {n} got publish sequence {:?}", p.seq);
        }
        tokio::time::sleep(Duration::from_millis(a.interval_ms)).await;
    }
    client.drain().await?;
    println!(
        "sensor: done, {} readings published",
        client.next_publish_seq()
    );
    client.disconnect().await?;
    Ok(())
}

/// Reads the record: the message ids already shown. A line cut short by a kill is dropped.
fn load_record(path: &Path) -> anyhow::Result<HashSet<u64>> {
    let mut text = String::new();
    if let Ok(mut f) = std::fs::File::open(path) {
        f.read_to_string(&mut text)
            .with_context(|| format!("cannot read {}", path.display()))?;
    }
    let complete = text.rfind('\n').map_or(0, |i| i + 1);
    if complete < text.len() {
        let f = OpenOptions::new()
            .write(true)
            .open(path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        f.set_len(complete as u64)?;
    }
    text[..complete]
        .lines()
        .map(|l| {
            l.split(' ')
                .next()
                .and_then(|id| id.rsplit('/').next())
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| anyhow!("bad record line {l:?}"))
        })
        .collect()
}

async fn dashboard(a: DashboardArgs) -> anyhow::Result<()> {
    let mut shown = load_record(&a.record)?;
    let mut record = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&a.record)
        .with_context(|| format!("cannot open {}", a.record.display()))?;
    let mut o = client_options(&a.addr, "dashboard", &a.state_dir);
    o.manual_ack = true;
    let (client, mut incoming) = connect(o).await?;
    client
        .subscribe(&[Subscription::new(TOPIC, QoS::ExactlyOnce)])
        .await?;
    println!(
        "dashboard: connected, {} readings shown so far",
        shown.len()
    );
    while let Some(d) = incoming.recv().await {
        let Some(id) = d.id.clone() else {
            continue;
        };
        if shown.contains(&id.seq) {
            // Shown before the last kill, not acknowledged then: the side effect happened,
            // so only the acknowledgement is still owed.
            println!("dashboard: duplicate {id} recognised, acknowledging");
            d.ack()?;
            continue;
        }
        if d.redelivered {
            println!("dashboard: redelivered {id}: delivered before the kill, never shown");
        }
        let payload = String::from_utf8_lossy(&d.message.payload).into_owned();
        // One write: a kill leaves the line whole or absent.
        record
            .write_all(format!("{id} {payload}\n").as_bytes())
            .context("cannot write the record")?;
        shown.insert(id.seq);
        println!("dashboard: living room {payload} °C");
        if a.ack_delay_ms > 0 {
            tokio::time::sleep(Duration::from_millis(a.ack_delay_ms)).await;
        }
        d.ack()?;
    }
    Err(match incoming.take_error() {
        Some(e) => e.into(),
        None => anyhow!("the client stopped"),
    })
}

// ---------------------------------------------------------------------------------------
// chaos

struct Proc {
    name: &'static str,
    args: Vec<String>,
    log: PathBuf,
    child: Option<Child>,
    kills: u32,
}

impl Proc {
    fn start(&mut self) -> anyhow::Result<()> {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let exe = std::env::current_exe().context("cannot find the quartet executable")?;
        let child = Command::new(exe)
            .args(&self.args)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("cannot start the {}", self.name))?;
        self.child = Some(child);
        Ok(())
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill(); // SIGKILL
            let _ = c.wait();
            self.kills += 1;
        }
    }

    /// Restarts the process if it has exited (it should not have).
    fn ensure(&mut self) -> anyhow::Result<()> {
        let exited = match self.child.as_mut() {
            Some(c) => c.try_wait()?.is_some(),
            None => true,
        };
        if exited {
            self.start()?;
        }
        Ok(())
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
}

fn chaos(a: ChaosArgs) -> anyhow::Result<()> {
    let seed = a.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
    });
    let mut rng = Rng(seed | 1);
    let (dir, temporary) = match &a.dir {
        Some(d) => (d.clone(), false),
        None => (
            std::env::temp_dir().join(format!("quartet-chaos-{}", std::process::id())),
            true,
        ),
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .context("no free port")?
        .port();
    let addr = format!("127.0.0.1:{port}");
    let p = |s: &str| dir.join(s).display().to_string();
    let stop_file = dir.join("stop");
    let _ = std::fs::remove_file(&stop_file);
    let record = dir.join("dashboard.record");
    println!(
        "chaos: {} s of SIGKILLs, seed {seed}, in {}",
        a.secs,
        dir.display()
    );
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let mut procs = [
        Proc {
            name: "broker",
            args: s(&[
                "serve",
                "--listen",
                &addr,
                "--data-dir",
                &p("broker-data"),
                "--durability",
                "fsync",
            ]),
            log: dir.join("broker.log"),
            child: None,
            kills: 0,
        },
        Proc {
            name: "dashboard",
            args: s(&[
                "demo",
                "dashboard",
                "--addr",
                &addr,
                "--state-dir",
                &p("dashboard-state"),
                "--record",
                &record.display().to_string(),
                "--ack-delay-ms",
                "5",
            ]),
            log: dir.join("dashboard.log"),
            child: None,
            kills: 0,
        },
        Proc {
            name: "sensor",
            args: s(&[
                "demo",
                "sensor",
                "--addr",
                &addr,
                "--state-dir",
                &p("sensor-state"),
                "--interval-ms",
                &a.interval_ms.to_string(),
                "--stop-file",
                &stop_file.display().to_string(),
            ]),
            log: dir.join("sensor.log"),
            child: None,
            kills: 0,
        },
    ];
    for pr in procs.iter_mut() {
        pr.start()?;
        std::thread::sleep(Duration::from_millis(200));
    }
    let end = Instant::now() + Duration::from_secs(a.secs);
    while Instant::now() < end {
        std::thread::sleep(Duration::from_millis(rng.range(200, 1500)));
        let victim = rng.range(0, 2) as usize;
        procs[victim].kill();
        std::thread::sleep(Duration::from_millis(rng.range(0, 400)));
        for pr in procs.iter_mut() {
            pr.ensure()?;
        }
    }
    println!(
        "chaos: kills: broker {}, sensor {}, dashboard {}; draining",
        procs[0].kills, procs[2].kills, procs[1].kills
    );
    std::fs::write(&stop_file, b"").context("cannot write the stop file")?;
    // The sensor stops publishing, waits for every PUBCOMP and exits.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        for pr in procs.iter_mut().take(2) {
            pr.ensure()?;
        }
        let status = match procs[2].child.as_mut() {
            Some(c) => c.try_wait()?,
            None => None,
        };
        if let Some(st) = status {
            if !st.success() {
                bail!("the sensor failed ({st}); see {}", procs[2].log.display());
            }
            break;
        }
        if Instant::now() > deadline {
            bail!(
                "the sensor did not drain in 120 s; see {}",
                procs[2].log.display()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let sensor_log = std::fs::read_to_string(&procs[2].log)?;
    let published: u64 = sensor_log
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("sensor: done, "))
        .and_then(|l| l.split(' ').next())
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| anyhow!("the sensor did not report its count"))?;
    // The dashboard catches up.
    let deadline = Instant::now() + Duration::from_secs(120);
    let readings = loop {
        procs[0].ensure()?;
        procs[1].ensure()?;
        let text = std::fs::read_to_string(&record).unwrap_or_default();
        let readings: Vec<String> = text.lines().map(str::to_owned).collect();
        if readings.len() as u64 >= published || Instant::now() > deadline {
            // A moment more, so a late duplicate would show.
            std::thread::sleep(Duration::from_millis(500));
            let text = std::fs::read_to_string(&record).unwrap_or_default();
            break text.lines().map(str::to_owned).collect::<Vec<_>>();
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let dashboard_log = std::fs::read_to_string(&procs[1].log).unwrap_or_default();
    let recognised = dashboard_log
        .lines()
        .filter(|l| l.contains("duplicate") && l.contains("recognised"))
        .count();
    let redelivered = dashboard_log
        .lines()
        .filter(|l| l.starts_with("dashboard: redelivered"))
        .count();
    drop(procs);

    let seen: Vec<u64> = readings
        .iter()
        .filter_map(|l| l.split(' ').nth(1).and_then(|n| n.parse().ok()))
        .collect();
    let mut counts = vec![0u32; published as usize];
    let mut foreign = 0;
    for &n in &seen {
        match counts.get_mut(n as usize) {
            Some(c) => *c += 1,
            None => foreign += 1,
        }
    }
    let lost = counts.iter().filter(|&&c| c == 0).count();
    let duplicated: u32 = counts.iter().map(|&c| c.saturating_sub(1)).sum();
    let out_of_order = seen.windows(2).filter(|w| w[1] <= w[0]).count();
    println!("chaos: the sensor published {published} readings (QoS 2, durable client state)");
    println!(
        "chaos: the dashboard recorded {} readings: {lost} lost, {duplicated} duplicated, {out_of_order} out of order, {foreign} unknown",
        seen.len()
    );
    println!(
        "chaos: after dashboard kills, {redelivered} readings were delivered again before being shown, and {recognised} delivered again after being shown (recognised by message id, not shown twice)"
    );
    if lost > 0 || duplicated > 0 || out_of_order > 0 || foreign > 0 || published == 0 {
        bail!(
            "FAILED: not every reading exactly once in order (seed {seed}; files kept in {})",
            dir.display()
        );
    }
    println!("chaos: OK: every reading exactly once, in order");
    if temporary {
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(())
}
