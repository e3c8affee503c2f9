//! Interop, tier 4: the Eclipse Mosquitto command-line clients (`mosquitto_pub`,
//! `mosquitto_sub`) against the real server, started in-process on a free port.
//!
//! Every client is a child process with an explicit `-h 127.0.0.1 -p PORT` and a deadline; a
//! hang fails the test, and every child is killed and reaped when its handle drops. The
//! clients must be installed (`apt-get install mosquitto-clients`; CI's `.ci/run` does it):
//! when they are missing the tests fail and say so, they never pass silently.
//!
//! `mosquitto_sub -d` prints "received SUBACK" once its subscription is in place; the tests
//! wait for that line before publishing, so nothing depends on sleeps. Its stdout is a pipe,
//! so it runs under `stdbuf -oL` to get each line as it is printed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

mod common;
use common::TestServer;

/// How long any one client may take before the test gives up on it.
const DEADLINE: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------------------
// Child processes.

/// A running client. Dropping it kills (SIGKILL) and reaps the process.
struct Proc {
    name: String,
    child: Child,
    lines: mpsc::Receiver<String>,
    /// Every stdout line read so far, for failure messages and `finish`.
    seen: Vec<String>,
    stderr: Arc<Mutex<String>>,
}

/// How a client ended.
struct Ended {
    status: ExitStatus,
    lines: Vec<String>,
    stderr: String,
}

impl Ended {
    /// The message lines (`-F 'MSG|…'`), without the `-d` debug chatter.
    fn messages(&self) -> Vec<String> {
        messages(&self.lines)
    }
}

fn messages(lines: &[String]) -> Vec<String> {
    lines
        .iter()
        .filter_map(|l| l.strip_prefix("MSG|"))
        .map(str::to_owned)
        .collect()
}

fn install_hint(program: &str) -> &'static str {
    match program {
        "stdbuf" => "coreutils (apt-get install coreutils)",
        _ => {
            "the Mosquitto clients (apt-get install mosquitto-clients; CI's .ci/run installs them)"
        }
    }
}

impl Proc {
    /// Starts `program args…`, with `stdin` written to it and then closed.
    fn spawn(program: &str, args: &[&str], stdin: Option<&[u8]>) -> Proc {
        let name = format!("{program} {}", args.join(" "));
        let mut child = Command::new(program)
            .args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run `{program}` ({e}): the interop tests need {}",
                    install_hint(program)
                )
            });
        if let Some(bytes) = stdin {
            let mut pipe = child.stdin.take().unwrap();
            pipe.write_all(bytes).unwrap();
            // Dropping the pipe closes it: the client sees end of input.
        }
        let (tx, lines) = mpsc::channel();
        let out = child.stdout.take().unwrap();
        thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut err = child.stderr.take().unwrap();
        let sink = stderr.clone();
        thread::spawn(move || {
            let mut s = String::new();
            let _ = err.read_to_string(&mut s);
            sink.lock().unwrap().push_str(&s);
        });
        Proc {
            name,
            child,
            lines,
            seen: Vec::new(),
            stderr,
        }
    }

    /// `mosquitto_sub` with line-buffered stdout, so its lines can be waited for.
    fn sub(port: u16, args: &[&str]) -> Proc {
        let port = port.to_string();
        let mut all = vec!["-oL", "mosquitto_sub", "-h", "127.0.0.1", "-p", &port];
        all.extend_from_slice(args);
        // Fail with the right hint when mosquitto_sub itself is missing (stdbuf would only
        // say "No such file").
        require("mosquitto_sub");
        Proc::spawn("stdbuf", &all, None)
    }

    /// `mosquitto_sub -d …`, returned once its subscriptions are acknowledged.
    fn sub_ready(port: u16, args: &[&str]) -> Proc {
        let mut all = vec!["-d"];
        all.extend_from_slice(args);
        let mut p = Proc::sub(port, &all);
        p.wait_line(|l| l.contains("received SUBACK"));
        p
    }

    /// Waits for a stdout line matching `pred` and returns it.
    fn wait_line(&mut self, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if pred(&line) {
                        return line;
                    }
                }
                Err(e) => panic!(
                    "`{}`: expected line not seen ({e:?}); stdout so far: {:#?}; stderr: {}",
                    self.name,
                    self.seen,
                    self.stderr.lock().unwrap()
                ),
            }
        }
    }

    /// Waits for the process to exit by itself (it is killed and the test fails after
    /// [`DEADLINE`]) and returns everything it printed.
    fn finish(mut self) -> Ended {
        let deadline = Instant::now() + DEADLINE;
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            while let Ok(line) = self.lines.try_recv() {
                self.seen.push(line);
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "`{}` did not exit within {DEADLINE:?}; stdout: {:#?}; stderr: {}",
                    self.name,
                    self.seen,
                    self.stderr.lock().unwrap()
                );
            }
            thread::sleep(Duration::from_millis(5));
        };
        // The reader threads end at end of file, which follows the exit.
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(2)) {
            self.seen.push(line);
        }
        // Give the stderr reader its end of file too.
        let mut stderr = String::new();
        for _ in 0..200 {
            if Arc::strong_count(&self.stderr) == 1 {
                break;
            }
            thread::sleep(Duration::from_millis(5));
        }
        stderr.push_str(&self.stderr.lock().unwrap());
        Ended {
            status,
            lines: std::mem::take(&mut self.seen),
            stderr,
        }
    }

    /// Like [`Proc::finish`], and the exit must be a success.
    fn finish_ok(self) -> Ended {
        let name = self.name.clone();
        let ended = self.finish();
        assert!(
            ended.status.success(),
            "`{name}` failed: {}; stdout: {:#?}; stderr: {}",
            ended.status,
            ended.lines,
            ended.stderr
        );
        ended
    }

    /// SIGKILL: the client gets no chance to send DISCONNECT.
    fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Fails the test with an install hint when `program` cannot be run.
fn require(program: &str) {
    let mut p = Proc::spawn(program, &["--help"], None);
    let _ = p.child.wait();
}

/// `mosquitto_pub … ` to completion; it must succeed (for QoS 1/2 that means the broker
/// acknowledged every message).
fn publish(port: u16, args: &[&str], stdin: Option<&[u8]>) {
    let port = port.to_string();
    let mut all = vec!["-h", "127.0.0.1", "-p", &port];
    all.extend_from_slice(args);
    Proc::spawn("mosquitto_pub", &all, stdin).finish_ok();
}

const VERSIONS: [&str; 3] = ["mqttv31", "mqttv311", "mqttv5"];

// ---------------------------------------------------------------------------------------
// The tests.

/// QoS 0, 1 and 2 from `mosquitto_pub` to `mosquitto_sub`, for MQTT 3.1, 3.1.1 and 5.0:
/// every message arrives once, in order, at the QoS it was sent with, retain flag clear.
#[test]
fn qos_0_1_2_delivery_for_every_version() {
    let s = TestServer::start();
    for v in VERSIONS {
        for qos in ["0", "1", "2"] {
            let topic = format!("q/{v}/{qos}");
            let sub = Proc::sub_ready(
                s.port,
                &[
                    "-V",
                    v,
                    "-q",
                    qos,
                    "-t",
                    &topic,
                    "-C",
                    "3",
                    "-F",
                    "MSG|%t|%q|%r|%p",
                ],
            );
            // -l: one message per input line.
            publish(
                s.port,
                &["-V", v, "-q", qos, "-t", &topic, "-l"],
                Some(b"one\ntwo\nthree\n"),
            );
            let got = sub.finish_ok().messages();
            let want: Vec<String> = ["one", "two", "three"]
                .iter()
                .map(|m| format!("{topic}|{qos}|0|{m}"))
                .collect();
            assert_eq!(got, want, "{v} QoS {qos}");
        }
    }
}

/// The subscription's QoS caps the delivery QoS: a QoS 2 publish reaches a QoS 0 and a
/// QoS 1 subscriber at their QoS, and a QoS 0 publish reaches a QoS 2 subscriber at QoS 0.
#[test]
fn delivery_qos_is_the_lower_of_publish_and_subscription() {
    let s = TestServer::start();
    let subs: Vec<(&str, Proc)> = ["0", "1", "2"]
        .into_iter()
        .map(|q| {
            let p = Proc::sub_ready(
                s.port,
                &["-q", q, "-t", "d/#", "-C", "2", "-F", "MSG|%t|%q|%p"],
            );
            (q, p)
        })
        .collect();
    publish(s.port, &["-q", "2", "-t", "d/two", "-m", "x"], None);
    publish(s.port, &["-q", "0", "-t", "d/zero", "-m", "y"], None);
    for (q, sub) in subs {
        let got = sub.finish_ok().messages();
        assert_eq!(
            got,
            vec![format!("d/two|{q}|x"), "d/zero|0|y".to_owned()],
            "subscription QoS {q}"
        );
    }
}

/// A 256 KiB payload at QoS 2 (read by `mosquitto_pub -s` from stdin) arrives intact.
#[test]
fn large_payload_at_qos_2() {
    let s = TestServer::start();
    let payload: Vec<u8> = (0..256 * 1024).map(|i| b'a' + (i % 26) as u8).collect();
    let sub = Proc::sub_ready(
        s.port,
        &[
            "-V",
            "mqttv5",
            "-q",
            "2",
            "-t",
            "big",
            "-C",
            "1",
            "-F",
            "MSG|%l|%p",
        ],
    );
    publish(
        s.port,
        &["-V", "mqttv5", "-q", "2", "-t", "big", "-s"],
        Some(&payload),
    );
    let got = sub.finish_ok().messages();
    assert_eq!(got.len(), 1);
    let (len, body) = got[0].split_once('|').unwrap();
    assert_eq!(len, payload.len().to_string());
    assert!(body.as_bytes() == payload.as_slice(), "payload differs");
}

/// Retained messages, for 3.1.1 and 5.0: a later subscriber gets the last retained message
/// of each topic with the retain flag set; `-n -r` (empty retained payload) clears a topic;
/// a subscriber that was already there gets every message live, retain flag clear, the
/// clearing one as an empty message.
#[test]
fn retained_messages_set_replaced_and_cleared() {
    let s = TestServer::start();
    for v in ["mqttv311", "mqttv5"] {
        let root = format!("r/{v}");
        let filter = format!("{root}/#");
        let (a, b, end) = (
            format!("{root}/a"),
            format!("{root}/b"),
            format!("{root}/end"),
        );
        let live = Proc::sub_ready(
            s.port,
            &[
                "-V",
                v,
                "-q",
                "1",
                "-t",
                &filter,
                "-C",
                "5",
                "-F",
                "MSG|%t|%r|%p",
            ],
        );
        publish(
            s.port,
            &["-V", v, "-q", "1", "-r", "-t", &a, "-m", "A"],
            None,
        );
        publish(
            s.port,
            &["-V", v, "-q", "1", "-r", "-t", &b, "-m", "B1"],
            None,
        );
        publish(
            s.port,
            &["-V", v, "-q", "1", "-r", "-t", &b, "-m", "B2"],
            None,
        );
        publish(s.port, &["-V", v, "-q", "1", "-r", "-t", &a, "-n"], None);

        // A later subscriber: only b's latest retained message, then a live one.
        let later = Proc::sub_ready(
            s.port,
            &[
                "-V",
                v,
                "-q",
                "1",
                "-t",
                &filter,
                "-C",
                "2",
                "-F",
                "MSG|%t|%r|%p",
            ],
        );
        publish(s.port, &["-V", v, "-q", "1", "-t", &end, "-m", "E"], None);
        assert_eq!(
            later.finish_ok().messages(),
            vec![format!("{b}|1|B2"), format!("{end}|0|E")],
            "{v}: later subscriber"
        );
        assert_eq!(
            live.finish_ok().messages(),
            vec![
                format!("{a}|0|A"),
                format!("{b}|0|B1"),
                format!("{b}|0|B2"),
                format!("{a}|0|"),
                format!("{end}|0|E"),
            ],
            "{v}: subscriber that was already there"
        );
    }
}

/// Persistent sessions (`-c -i ID`), for 3.1, 3.1.1 and 5.0 (where `-c` asks for a session
/// that never expires): QoS 1 and QoS 2 messages published while the client is offline are
/// delivered when it comes back, each once, in order per topic; once acknowledged they are
/// not delivered again on the next reconnect.
#[test]
fn persistent_session_gets_messages_published_while_offline() {
    let s = TestServer::start();
    for v in VERSIONS {
        let id = format!("persist-{v}");
        let filter = format!("p/{v}/#");
        let (one, two, mark) = (
            format!("p/{v}/one"),
            format!("p/{v}/two"),
            format!("p/{v}/mark"),
        );
        let session = ["-V", v, "-c", "-i", &id, "-q", "2", "-t", &filter];
        // -E: subscribe, wait for SUBACK, disconnect.
        let mut args = session.to_vec();
        args.push("-E");
        Proc::sub(s.port, &args).finish_ok();

        publish(
            s.port,
            &["-V", v, "-q", "1", "-t", &one, "-l"],
            Some(b"1a\n1b\n1c\n"),
        );
        publish(
            s.port,
            &["-V", v, "-q", "2", "-t", &two, "-l"],
            Some(b"2a\n2b\n2c\n"),
        );

        let mut args = session.to_vec();
        args.extend_from_slice(&["-C", "6", "-F", "MSG|%t|%q|%p"]);
        let got = Proc::sub(s.port, &args).finish_ok().messages();
        // Order is promised per topic (MQTT-4.6.0-6), and libmosquitto hands a QoS 2
        // message to the application only at PUBREL, so compare per topic.
        let of = |t: &str| -> Vec<String> {
            got.iter()
                .filter(|l| l.starts_with(&format!("{t}|")))
                .cloned()
                .collect()
        };
        assert_eq!(got.len(), 6, "{v}: {got:#?}");
        assert_eq!(
            of(&one),
            ["1a", "1b", "1c"].map(|m| format!("{one}|1|{m}")),
            "{v}"
        );
        assert_eq!(
            of(&two),
            ["2a", "2b", "2c"].map(|m| format!("{two}|2|{m}")),
            "{v}"
        );

        // Reconnect once more: nothing old comes back, only what is new.
        let mut args = session.to_vec();
        args.extend_from_slice(&["-C", "1", "-F", "MSG|%t|%q|%p"]);
        let again = Proc::sub_ready(s.port, &args);
        publish(
            s.port,
            &["-V", v, "-q", "1", "-t", &mark, "-m", "new"],
            None,
        );
        assert_eq!(
            again.finish_ok().messages(),
            vec![format!("{mark}|1|new")],
            "{v}: acknowledged messages came back"
        );
    }
}

/// A clean session does not keep what was published while the client was away.
#[test]
fn clean_session_gets_nothing_from_before() {
    let s = TestServer::start();
    Proc::sub(
        s.port,
        &["-c", "-i", "was-persistent", "-q", "1", "-t", "c/#", "-E"],
    )
    .finish_ok();
    publish(s.port, &["-q", "1", "-t", "c/old", "-m", "old"], None);
    // Without -c: clean session, which discards the stored one.
    let sub = Proc::sub_ready(
        s.port,
        &[
            "-i",
            "was-persistent",
            "-q",
            "1",
            "-t",
            "c/#",
            "-C",
            "1",
            "-F",
            "MSG|%t|%p",
        ],
    );
    publish(s.port, &["-q", "1", "-t", "c/new", "-m", "new"], None);
    assert_eq!(sub.finish_ok().messages(), vec!["c/new|new".to_owned()]);
}

/// Wills, for 3.1, 3.1.1 and 5.0: a client that disconnects properly (`-E`) does not
/// trigger its will; one killed with SIGKILL (no DISCONNECT) does, at the will's QoS, and a
/// retained will is kept for later subscribers.
#[test]
fn will_is_published_when_the_client_is_killed() {
    let s = TestServer::start();
    for v in VERSIONS {
        let filter = format!("w/{v}/#");
        let (clean, killed) = (format!("w/{v}/clean"), format!("w/{v}/killed"));
        let watcher = Proc::sub_ready(
            s.port,
            &[
                "-V",
                v,
                "-q",
                "2",
                "-t",
                &filter,
                "-C",
                "1",
                "-F",
                "MSG|%t|%q|%r|%p",
            ],
        );

        Proc::sub(
            s.port,
            &[
                "-V",
                v,
                "-t",
                "w/unused",
                "-E",
                "--will-topic",
                &clean,
                "--will-payload",
                "must not appear",
            ],
        )
        .finish_ok();

        let holder = Proc::sub_ready(
            s.port,
            &[
                "-V",
                v,
                "-t",
                "w/unused",
                "--will-topic",
                &killed,
                "--will-payload",
                "gone",
                "--will-qos",
                "1",
                "--will-retain",
            ],
        );
        holder.kill();

        assert_eq!(
            watcher.finish_ok().messages(),
            vec![format!("{killed}|1|0|gone")],
            "{v}: watcher"
        );
        let later = Proc::sub(
            s.port,
            &[
                "-V",
                v,
                "-q",
                "1",
                "-t",
                &filter,
                "-C",
                "1",
                "-F",
                "MSG|%t|%r|%p",
            ],
        );
        assert_eq!(
            later.finish_ok().messages(),
            vec![format!("{killed}|1|gone")],
            "{v}: retained will"
        );
    }
}

/// MQTT 5 publish properties set by `mosquitto_pub -D publish …` reach a v5 subscriber
/// unchanged: user properties (order and duplicate keys kept), content type, response topic,
/// correlation data, payload format indicator, message expiry (counted down);
/// the subscription identifier given with `-D subscribe` comes back; a 3.1.1 subscriber of
/// the same topic gets the bare message.
#[test]
fn v5_properties_pass_through() {
    let s = TestServer::start();
    let v5 = Proc::sub_ready(
        s.port,
        &[
            "-V",
            "mqttv5",
            "-q",
            "1",
            "-t",
            "props/#",
            "-D",
            "subscribe",
            "subscription-identifier",
            "42",
            "-C",
            "1",
            "-F",
            "MSG|%t|%q|%P|%C|%R|%D|%F|%S|%E|%p",
        ],
    );
    let v3 = Proc::sub_ready(
        s.port,
        &[
            "-V",
            "mqttv311",
            "-q",
            "1",
            "-t",
            "props/#",
            "-C",
            "1",
            "-F",
            "MSG|%t|%q|%p",
        ],
    );
    publish(
        s.port,
        &[
            "-V",
            "mqttv5",
            "-q",
            "1",
            "-t",
            "props/x",
            "-m",
            "payload",
            "-D",
            "publish",
            "user-property",
            "k",
            "v1",
            "-D",
            "publish",
            "user-property",
            "other",
            "x",
            "-D",
            "publish",
            "user-property",
            "k",
            "v2",
            "-D",
            "publish",
            "content-type",
            "text/plain",
            "-D",
            "publish",
            "response-topic",
            "reply/here",
            "-D",
            "publish",
            "correlation-data",
            "corr-123",
            "-D",
            "publish",
            "payload-format-indicator",
            "1",
            "-D",
            "publish",
            "message-expiry-interval",
            "60",
        ],
        None,
    );
    let got = v5.finish_ok().messages();
    assert_eq!(got.len(), 1, "{got:#?}");
    let (head, expiry_and_payload) = got[0].rsplit_once("|payload").map_or_else(
        || panic!("unexpected line {:?}", got[0]),
        |(h, _)| h.rsplit_once('|').unwrap(),
    );
    assert_eq!(
        head,
        "props/x|1|k:v1 other:x k:v2|text/plain|reply/here|corr-123|1|42"
    );
    // Counted down while the message waits, rounded up: 60 unless the machine is slow.
    let expiry: u32 = expiry_and_payload.parse().unwrap();
    assert!((50..=60).contains(&expiry), "message expiry {expiry}");
    assert_eq!(v3.finish_ok().messages(), vec!["props/x|1|payload"]);
}

/// MQTT 5 message expiry: a message queued for an offline session is dropped once its
/// expiry interval has passed; one with a longer interval is delivered with the remaining
/// time.
#[test]
fn v5_message_expiry_while_queued() {
    let s = TestServer::start();
    let session = [
        "-V", "mqttv5", "-c", "-i", "expiring", "-q", "1", "-t", "e/#",
    ];
    let mut args = session.to_vec();
    args.push("-E");
    Proc::sub(s.port, &args).finish_ok();
    let v5 = ["-V", "mqttv5", "-q", "1"];
    let mut short = v5.to_vec();
    short.extend_from_slice(&["-t", "e/short", "-m", "s"]);
    short.extend_from_slice(&["-D", "publish", "message-expiry-interval", "1"]);
    publish(s.port, &short, None);
    let mut long = v5.to_vec();
    long.extend_from_slice(&["-t", "e/long", "-m", "l"]);
    long.extend_from_slice(&["-D", "publish", "message-expiry-interval", "100"]);
    publish(s.port, &long, None);
    thread::sleep(Duration::from_millis(2100));
    let mut args = session.to_vec();
    args.extend_from_slice(&["-C", "1", "-F", "MSG|%t|%E|%p"]);
    let got = Proc::sub(s.port, &args).finish_ok().messages();
    assert_eq!(got.len(), 1);
    let expiry: u32 = got[0]
        .strip_prefix("e/long|")
        .and_then(|r| r.strip_suffix("|l"))
        .unwrap_or_else(|| panic!("expected only e/long, got {got:?}"))
        .parse()
        .unwrap();
    // 2.1 s have passed: 98 rounded up, less on a slow machine, never the full 100.
    assert!((88..=98).contains(&expiry), "remaining expiry {expiry}");
}

/// `-C N` exits (status 0) after exactly N messages, `-W SECS` with nothing to receive exits
/// with status 27 and "Timed out".
#[test]
fn sub_count_and_timeout_exits() {
    let s = TestServer::start();
    let sub = Proc::sub_ready(s.port, &["-q", "1", "-t", "x/#", "-C", "2", "-F", "MSG|%p"]);
    publish(s.port, &["-q", "1", "-t", "x/y", "-l"], Some(b"a\nb\nc\n"));
    assert_eq!(sub.finish_ok().messages(), vec!["a", "b"]);

    let idle = Proc::sub(s.port, &["-t", "nothing/here", "-W", "1"]).finish();
    assert_eq!(idle.status.code(), Some(27), "stderr: {}", idle.stderr);
    assert!(idle.stderr.contains("Timed out"), "stderr: {}", idle.stderr);
    assert!(idle.messages().is_empty());
}

/// MQTT 5 shared subscriptions: two `mosquitto_sub` in the group `$share/g/…` between them
/// receive every message exactly once, and each gets some (round robin or any fair policy
/// splits 20 messages).
#[test]
fn v5_shared_subscription_splits_messages() {
    let s = TestServer::start();
    let args = [
        "-V",
        "mqttv5",
        "-q",
        "1",
        "-t",
        "$share/g/shared/t",
        "-F",
        "MSG|%p",
    ];
    let mut members = [
        Proc::sub_ready(s.port, &args),
        Proc::sub_ready(s.port, &args),
    ];
    let lines: String = (0..20).map(|i| format!("m{i}\n")).collect();
    publish(
        s.port,
        &["-V", "mqttv5", "-q", "1", "-t", "shared/t", "-l"],
        Some(lines.as_bytes()),
    );
    let deadline = Instant::now() + DEADLINE;
    let mut got: Vec<Vec<String>> = vec![Vec::new(), Vec::new()];
    let total = |g: &Vec<Vec<String>>| g.iter().map(Vec::len).sum::<usize>();
    // Read both until all 20 arrived, then a little longer to catch a duplicate.
    let mut settle: Option<Instant> = None;
    while settle.is_none_or(|t| Instant::now() < t) {
        assert!(Instant::now() < deadline, "only {got:?} arrived");
        for (i, m) in members.iter_mut().enumerate() {
            while let Ok(line) = m.lines.try_recv() {
                if let Some(p) = line.strip_prefix("MSG|") {
                    got[i].push(p.to_owned());
                }
            }
        }
        if settle.is_none() && total(&got) >= 20 {
            settle = Some(Instant::now() + Duration::from_millis(200));
        }
        thread::sleep(Duration::from_millis(5));
    }
    let mut all: Vec<String> = got.concat();
    all.sort_by_key(|m| m[1..].parse::<u32>().unwrap());
    let want: Vec<String> = (0..20).map(|i| format!("m{i}")).collect();
    assert_eq!(all, want, "each message once across the group: {got:?}");
    assert!(
        got.iter().all(|g| !g.is_empty()),
        "one member got everything: {got:?}"
    );
}
