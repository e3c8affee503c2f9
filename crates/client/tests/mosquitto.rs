//! The client against a real Eclipse Mosquitto broker (`/usr/sbin/mosquitto`, installed by
//! CI's `.ci/run`), started by each test on its own 127.0.0.1 port and killed by PID when
//! the test ends. A missing binary fails the tests and says so.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use quartet_client::{Client, OutgoingMessage, ProtocolVersion, QoS, ReasonCode, Subscription};

const MOSQUITTO: &str = "/usr/sbin/mosquitto";

/// A Mosquitto process; dropping it kills (SIGKILL) and reaps it.
struct Mosquitto {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Mosquitto {
    fn start() -> Mosquitto {
        assert!(
            std::path::Path::new(MOSQUITTO).exists(),
            "{MOSQUITTO} is missing: apt-get install mosquitto (CI's .ci/run does it)"
        );
        let dir = tempfile::tempdir().unwrap();
        for _ in 0..5 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let conf = dir.path().join("mosquitto.conf");
            std::fs::write(
                &conf,
                format!("listener {port} 127.0.0.1\nallow_anonymous true\n"),
            )
            .unwrap();
            let mut child = Command::new(MOSQUITTO)
                .arg("-c")
                .arg(&conf)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("mosquitto starts");
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return Mosquitto {
                        child,
                        port,
                        _dir: dir,
                    };
                }
                if let Ok(Some(_)) = child.try_wait() {
                    break; // port taken meanwhile: try another
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("mosquitto did not start");
    }

    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_and_receive_at_every_qos_in_both_versions() {
    let m = Mosquitto::start();
    for v in [ProtocolVersion::V311, ProtocolVersion::V5] {
        let (sub, mut inc) = Client::connect(opts(&m.addr(), &format!("msub-{v}"), v))
            .await
            .unwrap();
        let granted = sub
            .subscribe(&[Subscription::new("m/#", QoS::ExactlyOnce)])
            .await
            .unwrap();
        assert_eq!(granted, vec![ReasonCode::GrantedQoS2]);
        let (publ, _) = Client::connect(opts(&m.addr(), &format!("mpub-{v}"), v))
            .await
            .unwrap();
        // Repeated topics: with v5 the client uses topic aliases (Mosquitto allows 10).
        let mut pending = Vec::new();
        for i in 0..60u32 {
            let qos = QoS::from_u8((i % 3) as u8).unwrap();
            pending.push(
                publ.send(OutgoingMessage::new(
                    format!("m/{}", i % 4),
                    i.to_string(),
                    qos,
                    false,
                ))
                .await
                .unwrap(),
            );
        }
        for p in pending {
            assert!(p.acknowledged().await.unwrap().is_success());
        }
        // MQTT orders messages per QoS level only; Mosquitto lets QoS 0 overtake.
        let mut per_qos = [Vec::new(), Vec::new(), Vec::new()];
        for _ in 0..60u32 {
            let d = next(&mut inc).await;
            let i: u32 = std::str::from_utf8(&d.message.payload)
                .unwrap()
                .parse()
                .unwrap();
            assert_eq!(d.message.topic, format!("m/{}", i % 4), "{v}");
            assert_eq!(d.message.qos as u32, i % 3);
            per_qos[(i % 3) as usize].push(i);
        }
        for (q, got) in per_qos.iter().enumerate() {
            let want: Vec<u32> = (0..60).filter(|i| i % 3 == q as u32).collect();
            assert_eq!(got, &want, "{v} QoS {q}");
        }
        sub.unsubscribe(&["m/#"]).await.unwrap();
        sub.disconnect().await.unwrap();
        publ.disconnect().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_subscriber_resumes_its_session_with_the_same_identities() {
    let m = Mosquitto::start();
    let dir = tempfile::tempdir().unwrap();
    for v in [ProtocolVersion::V311, ProtocolVersion::V5] {
        let o = || {
            let mut o = opts(&m.addr(), &format!("mdash-{v}"), v).persistent(600);
            o.state_dir = Some(dir.path().join(v.to_string()));
            o.manual_ack = true;
            o
        };
        let (sub, mut inc) = Client::connect(o()).await.unwrap();
        sub.subscribe(&[Subscription::new("d", QoS::ExactlyOnce)])
            .await
            .unwrap();
        let (publ, _) = Client::connect(opts(&m.addr(), &format!("mp-{v}"), v))
            .await
            .unwrap();
        publ.publish("d", "a", QoS::ExactlyOnce, false)
            .await
            .unwrap();
        publ.publish("d", "b", QoS::ExactlyOnce, false)
            .await
            .unwrap();
        let a = next(&mut inc).await;
        a.ack().unwrap();
        let b = next(&mut inc).await;
        let b_id = b.id.clone();
        tokio::time::sleep(Duration::from_millis(100)).await;
        sub.crash().await;
        drop((b, inc));
        // Published while the subscriber is dead: queued by Mosquitto for the session.
        publ.publish("d", "c", QoS::ExactlyOnce, false)
            .await
            .unwrap();
        let (sub, mut inc) = Client::connect(o()).await.unwrap();
        let rb = next(&mut inc).await;
        assert_eq!(&rb.message.payload[..], b"b", "{v}");
        assert_eq!(rb.id, b_id);
        assert!(rb.redelivered);
        rb.ack().unwrap();
        let c = next(&mut inc).await;
        assert_eq!(&c.message.payload[..], b"c");
        assert!(!c.redelivered);
        c.ack().unwrap();
        nothing_more(&mut inc, Duration::from_millis(300)).await;
        sub.disconnect().await.unwrap();
        publ.disconnect().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnects_after_the_broker_is_killed_and_restarted() {
    let m = Mosquitto::start();
    let port = m.port;
    let (sub, mut inc) = Client::connect(opts(&m.addr(), "mre", ProtocolVersion::V5))
        .await
        .unwrap();
    sub.subscribe(&[Subscription::new("re", QoS::AtLeastOnce)])
        .await
        .unwrap();
    let mut status = sub.status();
    drop(m);
    status.wait_for(|s| !s.connected).await.unwrap();
    // Same port, fresh broker without the session: the client subscribes again by itself.
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("mosquitto.conf");
    std::fs::write(
        &conf,
        format!("listener {port} 127.0.0.1\nallow_anonymous true\n"),
    )
    .unwrap();
    let child = Command::new(MOSQUITTO)
        .arg("-c")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let m2 = Mosquitto {
        child,
        port,
        _dir: dir,
    };
    tokio::time::timeout(WAIT, status.wait_for(|s| s.connected && s.connects == 2))
        .await
        .unwrap()
        .unwrap();
    let (publ, _) = Client::connect(opts(&m2.addr(), "mre-pub", ProtocolVersion::V5))
        .await
        .unwrap();
    // The re-subscription races the first publish; publish until one arrives.
    let deadline = Instant::now() + WAIT;
    loop {
        publ.publish("re", "x", QoS::AtLeastOnce, false)
            .await
            .unwrap();
        if let Ok(Some(d)) = tokio::time::timeout(Duration::from_millis(100), inc.recv()).await {
            assert_eq!(&d.message.payload[..], b"x");
            break;
        }
        assert!(Instant::now() < deadline, "no message after the reconnect");
    }
}
