//! `quartet bench` against a real `quartet serve --durability memory`: the JSON report says
//! nothing was lost and, at QoS 2, nothing was delivered twice.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const QUARTET: &str = env!("CARGO_BIN_EXE_quartet");

/// The broker child process, killed when the test ends however it ends.
struct Broker(Child, u16);

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_broker() -> Broker {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = std::env::temp_dir().join(format!("quartet-bench-test-{}", std::process::id()));
    let child = Command::new(QUARTET)
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .arg("--data-dir")
        .arg(&dir)
        .args(["--durability", "memory"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let broker = Broker(child, port);
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "the broker did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    broker
}

fn bench(broker: &Broker, args: &[&str]) -> serde_json::Value {
    let out = Command::new(QUARTET)
        .args(["bench"])
        .args(args)
        .args(["--port", &broker.1.to_string(), "--json"])
        .arg("--broker-pid")
        .arg(broker.0.id().to_string())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "bench {args:?} failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

#[test]
fn throughput_qos2_and_qos1_lose_nothing() {
    let broker = start_broker();
    for (qos, version) in [("2", "311"), ("1", "5"), ("2", "5")] {
        let r = bench(
            &broker,
            &[
                "throughput",
                "-q",
                qos,
                "-V",
                version,
                "-P",
                "4",
                "-S",
                "4",
                "-d",
                "1",
            ],
        );
        assert_eq!(r["ok"], true, "{r}");
        assert_eq!(r["lost"], 0, "{r}");
        let published = r["published"].as_u64().unwrap();
        assert!(published > 0, "{r}");
        assert_eq!(r["delivered"].as_u64().unwrap(), published, "{r}");
        if qos == "2" {
            assert_eq!(r["duplicates"], 0, "{r}");
        }
        assert!(r["cpu"]["broker_secs"].as_f64().is_some(), "{r}");
        assert!(r["latency_us"]["p99"].as_u64().is_some(), "{r}");
    }
}

#[test]
fn shared_conn_and_persist_scenarios_run() {
    let broker = start_broker();
    let r = bench(
        &broker,
        &[
            "shared", "-q", "1", "-P", "2", "-S", "4", "--groups", "2", "-d", "1",
        ],
    );
    assert_eq!(r["lost"], 0, "{r}");
    assert_eq!(
        r["delivered"].as_u64().unwrap(),
        2 * r["published"].as_u64().unwrap(),
        "{r}"
    );
    let r = bench(&broker, &["conn", "-n", "200", "--hold", "0.2"]);
    assert_eq!(r["connected"], 200, "{r}");
    assert!(r["rss_per_conn_bytes"].as_f64().is_some(), "{r}");
    let r = bench(&broker, &["persist", "-q", "2", "-n", "2000", "-S", "2"]);
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(r["delivered"], 4000, "{r}");
    assert_eq!(r["duplicates"], 0, "{r}");
}
