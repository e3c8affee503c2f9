//! The broker under test as a real child process, killed with SIGKILL and restarted on the
//! same data directory, and a small seeded random generator.
//!
//! [`BrokerProc`] owns the child: dropping it (also while a test unwinds from a panic) kills
//! and reaps it, and on a panic prints the broker's last log lines.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a start (store recovery included) may take before the test gives up.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Log lines kept for the failure report.
const LOG_KEEP: usize = 300;

/// The `quartet serve` process of one test, on one data directory.
#[derive(Debug)]
pub struct BrokerProc {
    dir: PathBuf,
    child: Option<Child>,
    /// The port clients connect to; shared so client threads follow a restart that had to
    /// move to another port.
    port: Arc<AtomicU16>,
    log: Arc<Mutex<VecDeque<String>>>,
    /// Processes started, and killed with SIGKILL.
    pub starts: u32,
    pub kills: u32,
}

impl BrokerProc {
    /// Starts `quartet serve` on `127.0.0.1:0` and `dir`, and waits until it listens.
    pub fn start(dir: &Path) -> BrokerProc {
        let mut b = BrokerProc {
            dir: dir.to_path_buf(),
            child: None,
            port: Arc::new(AtomicU16::new(0)),
            log: Arc::new(Mutex::new(VecDeque::new())),
            starts: 0,
            kills: 0,
        };
        b.restart();
        b
    }

    /// The address clients connect to.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port.load(Ordering::Acquire)))
    }

    /// The shared port, for client threads.
    pub fn port(&self) -> Arc<AtomicU16> {
        self.port.clone()
    }

    fn note(&self, line: String) {
        let mut log = self.log.lock().unwrap_or_else(|e| e.into_inner());
        if log.len() >= LOG_KEEP {
            log.pop_front();
        }
        log.push_back(line);
    }

    /// The last log lines of the broker (all runs, oldest first).
    pub fn log_tail(&self) -> String {
        let log = self.log.lock().unwrap_or_else(|e| e.into_inner());
        log.iter().map(|l| format!("    | {l}\n")).collect()
    }

    /// Spawns the process on `port` (0: any) without waiting; returns its log lines.
    fn spawn(&mut self, port: u16) -> mpsc::Receiver<String> {
        assert!(self.child.is_none(), "a broker is already running");
        let mut child = Command::new(env!("CARGO_BIN_EXE_quartet"))
            .arg("serve")
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--data-dir")
            .arg(&self.dir)
            .env("NO_COLOR", "1")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn quartet serve");
        self.starts += 1;
        let (tx, rx) = mpsc::channel();
        let stderr = child.stderr.take().expect("piped stderr");
        let log = self.log.clone();
        let run = self.starts;
        // Drains stderr for the life of the process, so the broker never blocks on a full
        // pipe; ends at EOF (the process died).
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                {
                    let mut log = log.lock().unwrap_or_else(|e| e.into_inner());
                    if log.len() >= LOG_KEEP {
                        log.pop_front();
                    }
                    log.push_back(format!("[run {run}] {line}"));
                }
                let _ = tx.send(line);
            }
        });
        self.child = Some(child);
        rx
    }

    /// Starts the broker on the data directory (again) and waits until it listens: on the
    /// same port as before if it had one; if that port was taken meanwhile, on a new one.
    pub fn restart(&mut self) {
        let mut port = self.port.load(Ordering::Acquire);
        for _ in 0..3 {
            let lines = self.spawn(port);
            match self.wait_listening(&lines) {
                Ok(addr) => {
                    self.port.store(addr.port(), Ordering::Release);
                    return;
                }
                Err(why) if why.contains("cannot listen") && port != 0 => {
                    self.note(format!("port {port} is taken: restarting on a new port"));
                    port = 0;
                }
                Err(why) => panic!("the broker did not start: {why}\n{}", self.log_tail()),
            }
        }
        panic!("the broker did not start\n{}", self.log_tail());
    }

    /// Spawns the broker without waiting for it (to kill it while it recovers).
    pub fn spawn_same_port(&mut self) {
        let port = self.port.load(Ordering::Acquire);
        let _ = self.spawn(port);
    }

    fn wait_listening(&mut self, lines: &mpsc::Receiver<String>) -> Result<SocketAddr, String> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err("no \"listening on\" within the start timeout".into());
            }
            match lines.recv_timeout(left) {
                Ok(line) => {
                    if let Some(addr) = parse_listening(&line) {
                        return Ok(addr);
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    // stderr closed: the process ended.
                    let status = self
                        .child
                        .take()
                        .map(|mut c| {
                            let _ = c.kill();
                            c.wait()
                        })
                        .map(|s| format!("{s:?}"));
                    let tail = self.log_tail();
                    let why = tail
                        .lines()
                        .rev()
                        .find(|l| l.contains("quartet:"))
                        .unwrap_or("")
                        .to_owned();
                    return Err(format!("the process exited ({status:?}) {why}"));
                }
            }
        }
    }

    /// SIGKILL (`Child::kill` is SIGKILL on Unix) and reap. Panics if the broker had already
    /// exited on its own: it must never stop unless killed.
    pub fn kill9(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "the broker exited on its own ({status}) before the kill\n{}",
                self.log_tail()
            );
        }
        child.kill().expect("SIGKILL the broker");
        child.wait().expect("reap the broker");
        self.kills += 1;
    }

    /// SIGKILL if it still runs; an exit of its own is tolerated (a start killed early may
    /// have failed to bind; the next [`BrokerProc::restart`] shows any real failure).
    pub fn kill9_if_running(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if let Ok(None) = child.try_wait() {
            let _ = child.kill();
            self.kills += 1;
        }
        let _ = child.wait();
    }
}

impl Drop for BrokerProc {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!(
                "broker data dir {}; last broker log lines:\n{}",
                self.dir.display(),
                self.log_tail()
            );
        }
    }
}

/// `... listening on 127.0.0.1:PORT` -> the address.
fn parse_listening(line: &str) -> Option<SocketAddr> {
    let rest = &line[line.find("listening on ")? + "listening on ".len()..];
    let addr: String = rest
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == ':')
        .collect();
    addr.parse().ok()
}

/// SplitMix64: small, seeded, good enough to pick kill moments.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..hi` (`lo` when empty).
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        if hi <= lo {
            lo
        } else {
            lo + self.next_u64() % (hi - lo)
        }
    }

    /// True with probability `percent`/100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.next_u64() % 100 < percent
    }
}

/// A seed from the environment variable `var`, or from the clock.
pub fn seed_from_env(var: &str) -> u64 {
    if let Some(s) = std::env::var(var).ok().and_then(|v| v.trim().parse().ok()) {
        return s;
    }
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0x5EED, |d| d.as_nanos() as u64)
}

/// A number from the environment, or `default`.
pub fn env_u64(var: &str, default: u64) -> u64 {
    std::env::var(var)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}
