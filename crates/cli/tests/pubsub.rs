//! `quartet pub` and `quartet sub` as a user runs them, against an in-process broker.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use quartet_server::{Server, ServerConfig};

const QUARTET: &str = env!("CARGO_BIN_EXE_quartet");

/// A broker on its own runtime; the tests are plain blocking code.
struct TestServer {
    rt: Option<tokio::runtime::Runtime>,
    server: Option<Server>,
    port: u16,
}

impl TestServer {
    fn start() -> TestServer {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let server = rt
            .block_on(Server::start(ServerConfig {
                listen: vec![SocketAddr::from(([127, 0, 0, 1], 0))],
                ..ServerConfig::default()
            }))
            .unwrap();
        let port = server.local_addrs()[0].port();
        TestServer {
            rt: Some(rt),
            server: Some(server),
            port,
        }
    }

    fn port(&self) -> String {
        self.port.to_string()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let (Some(rt), Some(server)) = (self.rt.take(), self.server.take()) {
            rt.block_on(async {
                let _ = tokio::time::timeout(Duration::from_secs(5), server.shutdown()).await;
            });
            rt.shutdown_timeout(Duration::from_secs(1));
        }
    }
}

/// Runs `quartet ARGS` to the end (10 s at most).
fn run(args: &[&str], stdin: Option<&[u8]>) -> Output {
    run_for(args, stdin, Duration::from_secs(10))
}

fn run_for(args: &[&str], stdin: Option<&[u8]>, limit: Duration) -> Output {
    let mut child = Command::new(QUARTET)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(data) = stdin {
        input.write_all(data).unwrap();
    }
    drop(input);
    let (tx, rx) = mpsc::channel();
    let pid = child.id();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(limit) {
        Ok(out) => out.unwrap(),
        Err(_) => {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            panic!("quartet {args:?} did not finish");
        }
    }
}

fn ok(args: &[&str]) -> String {
    let out = run(args, None);
    assert!(
        out.status.success(),
        "quartet {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A `quartet sub` running in the background, killed when dropped.
struct Sub {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Sub {
    /// Starts `quartet sub --trace ARGS` and waits for its SUBACK.
    fn start(args: &[&str]) -> Sub {
        let mut child = Command::new(QUARTET)
            .arg("sub")
            .arg("--trace")
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for l in BufReader::new(stdout).lines() {
                let Ok(l) = l else { return };
                if tx.send(l).is_err() {
                    return;
                }
            }
        });
        let mut s = Sub { child, lines };
        s.until(|l| l.contains("SUBACK"));
        s
    }

    fn until(&mut self, f: impl Fn(&str) -> bool) -> Vec<String> {
        let mut seen = Vec::new();
        loop {
            match self.lines.recv_timeout(Duration::from_secs(10)) {
                Ok(l) => {
                    let done = f(&l);
                    seen.push(l);
                    if done {
                        return seen;
                    }
                }
                Err(_) => panic!("not seen; output so far: {seen:#?}"),
            }
        }
    }

    fn finish(mut self) -> (bool, Vec<String>) {
        let mut rest = Vec::new();
        while let Ok(l) = self.lines.recv_timeout(Duration::from_secs(10)) {
            rest.push(l);
        }
        let st = self.child.wait().unwrap();
        (st.success(), rest)
    }
}

impl Drop for Sub {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn pub_and_sub_like_mosquitto() {
    let s = TestServer::start();
    let p = s.port();
    let sub = Sub::start(&[
        "-h",
        "127.0.0.1",
        "-p",
        &p,
        "-t",
        "home/#",
        "-q",
        "2",
        "-v",
        "-C",
        "5",
    ]);
    ok(&[
        "pub",
        "-h",
        "127.0.0.1",
        "-p",
        &p,
        "-t",
        "home/a",
        "-m",
        "one",
        "-q",
        "2",
    ]);
    ok(&[
        "pub", "-p", &p, "-t", "home/b", "-m", "two", "-q", "1", "-V", "311",
    ]);
    ok(&["pub", "-p", &p, "-t", "home/c", "-n"]);
    let out = run(
        &["pub", "-p", &p, "-t", "home/d", "-l", "-q", "1"],
        Some(b"l1\nl2\n"),
    );
    assert!(out.status.success());
    let (success, mut lines) = sub.finish();
    assert!(success);
    lines.retain(|l| !l.starts_with('['));
    assert_eq!(
        lines,
        [
            "home/a one",
            "home/b two",
            "home/c ",
            "home/d l1",
            "home/d l2"
        ]
    );
}

#[test]
fn json_output_with_properties_and_binary_payloads() {
    let s = TestServer::start();
    let p = s.port();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bin");
    std::fs::write(&file, [0xff, 0x00, 0xfe]).unwrap();
    // A persistent session made first; the messages wait in it.
    ok(&[
        "sub", "-p", &p, "-c", "-i", "js", "-q", "1", "-t", "j/#", "-C", "0",
    ]);
    ok(&[
        "pub",
        "-p",
        &p,
        "-t",
        "j/1",
        "-m",
        "22.5",
        "-q",
        "1",
        "-r",
        "-D",
        "publish",
        "user-property",
        "unit",
        "celsius",
        "-D",
        "publish",
        "content-type",
        "text/plain",
        "-D",
        "publish",
        "message-expiry-interval",
        "600",
    ]);
    ok(&[
        "pub",
        "-p",
        &p,
        "-t",
        "j/2",
        "-f",
        file.to_str().unwrap(),
        "-q",
        "2",
    ]);
    let out = ok(&[
        "sub", "-p", &p, "-c", "-i", "js", "-q", "1", "-t", "j/#", "-C", "2", "--json",
    ]);
    let v: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(v.len(), 2, "{out}");
    assert_eq!(v[0]["topic"], "j/1");
    assert_eq!(v[0]["payload"], "22.5");
    assert_eq!(v[0]["qos"], 1);
    assert_eq!(v[0]["properties"]["content_type"], "text/plain");
    assert_eq!(
        v[0]["properties"]["user_properties"],
        serde_json::json!([["unit", "celsius"]])
    );
    assert!(v[0]["id"].as_str().unwrap().starts_with("js/"));
    assert_eq!(v[1]["payload_base64"], "/wD+");
    // The retained one again, for a new subscriber; -R hides it.
    let out = ok(&["sub", "-p", &p, "-t", "j/1", "-C", "1", "-v"]);
    assert_eq!(out, "j/1 22.5\n");
    let out = run(&["sub", "-p", &p, "-t", "j/1", "-R", "-W", "1"], None);
    assert!(out.status.success());
    assert!(out.stdout.is_empty());
}

#[test]
fn trace_shows_the_qos2_handshake() {
    let s = TestServer::start();
    let p = s.port();
    let mut sub = Sub::start(&["-p", &p, "-t", "t", "-q", "2", "-C", "1"]);
    ok(&["pub", "-p", &p, "-t", "t", "-m", "x", "-q", "2"]);
    let lines = sub.until(|l| l.contains("PUBCOMP"));
    let steps: Vec<&str> = lines
        .iter()
        .filter_map(|l| {
            ["PUBLISH", "PUBREC", "PUBREL", "PUBCOMP"]
                .into_iter()
                .find(|s| l.contains(&format!(" {s} ")))
        })
        .collect();
    assert_eq!(
        steps,
        ["PUBLISH", "PUBREC", "PUBREL", "PUBCOMP"],
        "{lines:#?}"
    );
    assert!(lines
        .iter()
        .any(|l| l.contains("broker -> client PUBLISH") && l.contains("id=")));
    assert!(lines.iter().any(|l| l.contains("client -> broker PUBREC")));
    assert!(lines.iter().any(|l| l.contains("after PUBLISH")));
    // JSON flavour.
    let mut sub = Sub::start(&["-p", &p, "-t", "t", "-q", "2", "-C", "1", "--json"]);
    ok(&["pub", "-p", &p, "-t", "t", "-m", "y", "-q", "2"]);
    let lines = sub.until(|l| l.contains("\"PUBCOMP\""));
    let rec: serde_json::Value =
        serde_json::from_str(lines.iter().find(|l| l.contains("\"PUBREC\"")).unwrap()).unwrap();
    assert_eq!(rec["dir"], "out");
    assert!(rec["packet_id"].as_u64().is_some());
    assert!(rec["since_publish_ms"].as_f64().is_some());
}

#[test]
fn errors_are_one_clear_line_and_a_failure_exit() {
    let s = TestServer::start();
    let p = s.port();
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = closed.local_addr().unwrap().port().to_string();
    drop(closed);
    for (args, want) in [
        (
            vec!["pub", "-h", "127.0.0.1", "-p", &dead, "-t", "x", "-m", "y"],
            "cannot connect to 127.0.0.1:",
        ),
        (
            vec!["pub", "-p", &p, "-t", "a/+", "-m", "y"],
            "bad topic \"a/+\"",
        ),
        (vec!["sub", "-p", &p, "-t", "a/#/b"], "bad topic \"a/#/b\""),
        (
            vec![
                "pub",
                "-p",
                &p,
                "-t",
                "a",
                "-m",
                "y",
                "-V",
                "311",
                "-D",
                "publish",
                "content-type",
                "x",
            ],
            "needs -V 5",
        ),
        (
            vec!["sub", "-p", &p, "-t", "a", "-C", "1", "-W", "1"],
            "timed out after 1 s",
        ),
        (vec!["pub", "-p", &p, "-t", "a"], "nothing to publish"),
        (
            vec![
                "pub",
                "-p",
                &p,
                "-t",
                "a",
                "-m",
                "x",
                "--state-dir",
                "/tmp/x",
            ],
            "needs a client id",
        ),
    ] {
        let out = run(&args, None);
        assert!(!out.status.success(), "{args:?} succeeded");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(want), "{args:?}: {err}");
        assert_eq!(
            err.trim_end().lines().count(),
            1,
            "{args:?}: one line: {err}"
        );
    }
}

#[test]
fn state_dir_keeps_a_subscriber_identity_across_runs() {
    let s = TestServer::start();
    let p = s.port();
    let dir = tempfile::tempdir().unwrap();
    let sd = dir.path().to_str().unwrap();
    let sub = |n: &str| {
        ok(&[
            "sub",
            "-p",
            &p,
            "-c",
            "-i",
            "dash",
            "--state-dir",
            sd,
            "-q",
            "2",
            "-t",
            "s",
            "-C",
            n,
            "--json",
        ])
    };
    sub("0");
    for i in 0..3 {
        ok(&["pub", "-p", &p, "-t", "s", "-m", &i.to_string(), "-q", "2"]);
    }
    let ids: Vec<String> = sub("3")
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            format!(
                "{}={}",
                v["id"].as_str().unwrap(),
                v["payload"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(ids, ["dash/0=0", "dash/1=1", "dash/2=2"]);
    ok(&["pub", "-p", &p, "-t", "s", "-m", "3", "-q", "2"]);
    let out = sub("1");
    assert!(out.contains("\"id\":\"dash/3\""), "{out}");
}

/// A bounded run of the demo (the README shows a long one): broker, sensor and dashboard
/// as processes, SIGKILLed at random, then every reading checked exactly once, in order.
#[test]
fn demo_chaos_bounded_run() {
    let out = run_for(
        &["demo", "chaos", "--secs", "6", "--interval-ms", "10"],
        None,
        Duration::from_secs(120),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("OK: every reading exactly once, in order"),
        "{text}"
    );
    assert!(
        text.contains("0 lost, 0 duplicated, 0 out of order"),
        "{text}"
    );
}
