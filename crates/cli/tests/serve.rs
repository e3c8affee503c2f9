//! `quartet serve` as a user runs it: the answers to a bad config file, a busy port and a
//! damaged store, and a graceful stop on SIGTERM.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const QUARTET: &str = env!("CARGO_BIN_EXE_quartet");

/// Runs `quartet serve` with `args` and waits for it to exit (it must, within 10 s).
fn serve_fails(args: &[&str]) -> Output {
    let mut child = Command::new(QUARTET)
        .arg("serve")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("quartet serve {args:?} did not exit");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

fn stderr_line(out: &Output) -> String {
    let text = String::from_utf8_lossy(&out.stderr).to_string();
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("quartet: "))
        .collect();
    assert_eq!(lines.len(), 1, "one error line expected, got: {text}");
    lines[0].to_string()
}

#[test]
fn bad_config_file_is_named_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("q.toml");
    std::fs::write(&path, "listen = [\"127.0.0.1:0\"]\nqueue_max = 5\n").unwrap();
    let out = serve_fails(&["--config", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    // The first line names the file and the position; the parser's snippet under it names
    // the key.
    let line = stderr_line(&out);
    assert!(
        line.contains("q.toml") && line.contains("line 2, column 1"),
        "{line}"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown field `queue_max`"));

    let missing = dir.path().join("absent.toml");
    let out = serve_fails(&["--config", missing.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr_line(&out).contains("cannot read"), "{:?}", out);
}

#[test]
fn busy_port_is_named_and_exits_1() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let out = serve_fails(&[
        "--listen",
        &addr,
        "--data-dir",
        dir.path().to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let line = stderr_line(&out);
    assert!(line.contains(&format!("cannot listen on {addr}")), "{line}");
}

#[test]
fn damaged_store_stops_the_start_with_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let seg = dir.path().join("seg-0000000000000000.log");
    std::fs::write(&seg, b"not a quartet log").unwrap();
    let out = serve_fails(&[
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        dir.path().to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let line = stderr_line(&out);
    assert!(
        line.contains("seg-0000000000000000.log") && line.contains("bad header"),
        "{line}"
    );
    assert_eq!(
        std::fs::read(&seg).unwrap(),
        b"not a quartet log",
        "left as it was"
    );
}

/// Kills the child if the test fails half way.
struct Guard(Option<Child>);

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(c) = self.0.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

#[test]
fn sigterm_sends_disconnect_0x8b_and_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let child = Command::new(QUARTET)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut guard = Guard(Some(child));
    let child = guard.0.as_mut().unwrap();
    let mut log = BufReader::new(child.stderr.take().unwrap());
    let mut addr = None;
    let mut line = String::new();
    while addr.is_none() {
        line.clear();
        assert!(
            log.read_line(&mut line).unwrap() > 0,
            "quartet serve exited before listening"
        );
        if let Some(rest) = line.split("listening on ").nth(1) {
            let a: String = rest
                .chars()
                .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == ':')
                .collect();
            addr = Some(a);
        }
    }
    let mut s = TcpStream::connect(addr.unwrap()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    // v5 CONNECT, clean start, keep alive 60, no properties, empty client id (assigned).
    s.write_all(&[
        0x10, 0x0D, 0x00, 0x04, b'M', b'Q', b'T', b'T', 0x05, 0x02, 0x00, 0x3C, 0x00, 0x00, 0x00,
    ])
    .unwrap();
    let mut head = [0u8; 2];
    s.read_exact(&mut head).unwrap();
    assert_eq!(head[0], 0x20, "CONNACK");
    let mut rest = vec![0u8; head[1] as usize];
    s.read_exact(&mut rest).unwrap();
    assert_eq!(rest[1], 0x00, "accepted");

    let pid = child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    // DISCONNECT with reason 0x8B (server shutting down), then the end of the stream.
    let mut bytes = Vec::new();
    s.read_to_end(&mut bytes).unwrap();
    assert_eq!(bytes, [0xE0, 0x01, 0x8B]);
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        assert!(
            Instant::now() < deadline,
            "quartet serve did not exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(0));
    guard.0 = None;
}
