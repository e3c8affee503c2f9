//! Interop, tier 4: Eclipse Paho for Python (paho-mqtt 2.x) against the real server,
//! started in-process on a free port.
//!
//! The scenarios live in `tests/paho/interop.py`; each test here starts a server, runs one
//! scenario for one protocol version as `python3 interop.py PORT SCENARIO VERSION` and
//! requires it to exit 0 and print its JSON result with `"ok": true`. The script checks
//! everything itself and says what went wrong on stderr; it has a watchdog of its own, and
//! this side kills it after [`DEADLINE`] in any case.
//!
//! python3 and paho-mqtt must be installed (`pip install 'paho-mqtt>=2,<3'`; CI's `.ci/run`
//! does it): when they are missing the tests fail and say so, they never pass silently.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

mod common;
use common::TestServer;

/// How long one scenario may run before the test gives up on it.
const DEADLINE: Duration = Duration::from_secs(30);

const INSTALL: &str = "python3 with paho-mqtt 2.x is needed: pip install 'paho-mqtt>=2,<3' \
                       (CI's .ci/run installs it)";

/// What a finished script left behind.
struct Run {
    success: bool,
    status: String,
    stdout: String,
    stderr: String,
}

/// Runs `python3 args…` to completion, killing it after [`DEADLINE`].
fn python(args: &[&str]) -> Run {
    let mut child = Command::new("python3")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run python3 ({e}): {INSTALL}"));
    // Drain both pipes in threads so a chatty child can never block on a full pipe.
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let out = thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let err = thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + DEADLINE;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "python3 {} did not finish within {DEADLINE:?}; stderr: {}",
                args.join(" "),
                err.join().unwrap_or_default()
            );
        }
        thread::sleep(Duration::from_millis(10));
    };
    Run {
        success: status.success(),
        status: status.to_string(),
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    }
}

/// Fails with the install hint unless python3 can import paho-mqtt 2.x (probed once per
/// test process).
fn require_paho() {
    static PROBE: OnceLock<Result<(), String>> = OnceLock::new();
    let probe = PROBE.get_or_init(|| {
        let run = python(&[
            "-c",
            "import sys, paho.mqtt; sys.exit(0 if paho.mqtt.__version__.startswith('2.') else 1)",
        ]);
        if run.success {
            Ok(())
        } else {
            Err(run.stderr.trim().to_owned())
        }
    });
    if let Err(why) = probe {
        panic!("{INSTALL}; the probe said: {why}");
    }
}

/// Runs one scenario of `tests/paho/interop.py` against a fresh server and returns its JSON
/// line.
fn scenario(name: &str, version: &str) -> String {
    require_paho();
    let server = TestServer::start();
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/paho/interop.py");
    let port = server.port.to_string();
    let run = python(&[script.to_str().unwrap(), &port, name, version]);
    drop(server);
    assert!(
        run.success,
        "paho scenario {name} {version} failed ({}):\n{}\nstdout: {}",
        run.status,
        run.stderr.trim(),
        run.stdout.trim()
    );
    let line = run.stdout.lines().last().unwrap_or_default().to_owned();
    assert!(
        line.starts_with('{') && line.contains("\"ok\": true"),
        "paho scenario {name} {version}: no success result; stdout: {}",
        run.stdout
    );
    assert!(
        line.contains(&format!("\"scenario\": \"{name}\""))
            && line.contains(&format!("\"version\": \"{version}\"")),
        "{line}"
    );
    line
}

/// QoS 0, 1 and 2, 50 messages each, from one paho client to another: each arrives once, in
/// order, at its QoS; no duplicate follows.
#[test]
fn paho_qos_0_1_2_v31() {
    let r = scenario("qos", "v31");
    assert!(r.contains("\"qos2\": 50"), "{r}");
}

/// As [`paho_qos_0_1_2_v31`], MQTT 3.1.1.
#[test]
fn paho_qos_0_1_2_v311() {
    let r = scenario("qos", "v311");
    assert!(r.contains("\"qos2\": 50"), "{r}");
}

/// As [`paho_qos_0_1_2_v31`], MQTT 5.0.
#[test]
fn paho_qos_0_1_2_v5() {
    let r = scenario("qos", "v5");
    assert!(r.contains("\"qos2\": 50"), "{r}");
}

/// Retained: the latest retained message reaches a later subscriber with the retain flag set;
/// live copies have it clear; an empty retained message is delivered live and clears the
/// topic for later subscribers.
#[test]
fn paho_retained_v311() {
    scenario("retained", "v311");
}

/// As [`paho_retained_v311`], MQTT 5.0.
#[test]
fn paho_retained_v5() {
    scenario("retained", "v5");
}

/// Wills: none after a normal DISCONNECT; published at QoS 2 when the client's socket is
/// closed without DISCONNECT.
#[test]
fn paho_will_on_abnormal_disconnect_v311() {
    scenario("will", "v311");
}

/// As [`paho_will_on_abnormal_disconnect_v311`], MQTT 5.0, and the will's user property and
/// content type reach the watcher.
#[test]
fn paho_will_on_abnormal_disconnect_v5() {
    scenario("will", "v5");
}

/// Persistent session (clean session 0): QoS 1 and QoS 2 messages published while the client
/// was away (after a DISCONNECT, then after a dropped socket) are delivered on reconnect with
/// session present, each once, in order per topic; acknowledged ones are not resent.
#[test]
fn paho_persistent_session_v311() {
    let r = scenario("session", "v311");
    assert!(
        r.contains("\"resumed_after\": [\"disconnect\", \"drop\"]"),
        "{r}"
    );
}

/// As [`paho_persistent_session_v311`] with clean start 0 and session expiry 300 s, MQTT 5.0;
/// and a session with expiry 0 ends with its connection.
#[test]
fn paho_persistent_session_v5() {
    let r = scenario("session", "v5");
    assert!(r.contains("\"expiry_0_ends_session\": true"), "{r}");
}

/// MQTT 5 request/response: user properties (order and duplicate keys kept), response topic,
/// correlation data (binary), content type, payload format indicator, message expiry and the
/// subscription identifier reach the subscriber; the reply carries the correlation data back;
/// a 3.1.1 subscriber gets the bare message.
#[test]
fn paho_v5_properties_pass_through() {
    scenario("properties", "v5");
}
