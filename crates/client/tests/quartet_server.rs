//! The client against the in-process Quartet broker.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::*;
use quartet_client::{
    Client, ClientError, LastWill, OutgoingMessage, ProtocolVersion, QoS, ReasonCode, Subscription,
};

const VERSIONS: [ProtocolVersion; 2] = [ProtocolVersion::V311, ProtocolVersion::V5];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_and_receive_at_every_qos_in_both_versions() {
    let server = server().await;
    let a = addr(&server);
    for v in VERSIONS {
        let (sub, mut inc) = Client::connect(opts(&a, &format!("sub-{v}"), v))
            .await
            .unwrap();
        let granted = sub
            .subscribe(&[Subscription::new("q/#", QoS::ExactlyOnce)])
            .await
            .unwrap();
        assert_eq!(granted, vec![ReasonCode::GrantedQoS2]);
        let (publ, _) = Client::connect(opts(&a, &format!("pub-{v}"), v))
            .await
            .unwrap();
        for qos in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
            let ack = publ
                .publish(
                    &format!("q/{}", qos as u8),
                    format!("m{}", qos as u8),
                    qos,
                    false,
                )
                .await
                .unwrap();
            assert!(ack.is_success(), "{ack:?}");
            assert_eq!(ack.packet_id.is_some(), qos != QoS::AtMostOnce);
        }
        for qos in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
            let d = next(&mut inc).await;
            assert_eq!(d.message.topic, format!("q/{}", qos as u8));
            assert_eq!(&d.message.payload[..], format!("m{}", qos as u8).as_bytes());
            assert_eq!(d.message.qos, qos);
            assert_eq!(d.id.is_some(), qos != QoS::AtMostOnce, "{v}");
        }
        let un = sub.unsubscribe(&["q/#"]).await.unwrap();
        if v == ProtocolVersion::V5 {
            assert_eq!(un, vec![ReasonCode::Success]);
        }
        publ.publish("q/x", "after", QoS::AtLeastOnce, false)
            .await
            .unwrap();
        nothing_more(&mut inc, Duration::from_millis(200)).await;
        sub.disconnect().await.unwrap();
        publ.disconnect().await.unwrap();
        assert!(inc.recv().await.is_none());
        assert!(inc.take_error().is_none());
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_messages_in_flight_keep_their_order() {
    let server = server().await;
    let a = addr(&server);
    let (sub, mut inc) = Client::connect(opts(&a, "order-sub", ProtocolVersion::V5))
        .await
        .unwrap();
    sub.subscribe(&[Subscription::new("o", QoS::ExactlyOnce)])
        .await
        .unwrap();
    let mut o = opts(&a, "order-pub", ProtocolVersion::V5);
    o.max_inflight = 8;
    let (publ, _) = Client::connect(o).await.unwrap();
    let mut pending = Vec::new();
    for i in 0..500u32 {
        let qos = if i % 2 == 0 {
            QoS::ExactlyOnce
        } else {
            QoS::AtLeastOnce
        };
        pending.push(
            publ.send(OutgoingMessage::new("o", i.to_string(), qos, false))
                .await
                .unwrap(),
        );
    }
    for p in pending {
        assert!(p.acknowledged().await.unwrap().is_success());
    }
    for i in 0..500u32 {
        let d = next(&mut inc).await;
        assert_eq!(&d.message.payload[..], i.to_string().as_bytes());
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manual_ack_redelivers_with_the_same_identity_after_a_crash() {
    let server = server().await;
    let a = addr(&server);
    let dir = tempfile::tempdir().unwrap();
    let sub_opts = || {
        let mut o = opts(&a, "dash", ProtocolVersion::V5).persistent(600);
        o.state_dir = Some(dir.path().to_path_buf());
        o.manual_ack = true;
        o
    };
    let (sub, mut inc) = Client::connect(sub_opts()).await.unwrap();
    sub.subscribe(&[Subscription::new("r", QoS::ExactlyOnce)])
        .await
        .unwrap();
    let (publ, _) = Client::connect(opts(&a, "r-pub", ProtocolVersion::V5))
        .await
        .unwrap();
    for i in 0..3 {
        publ.publish("r", format!("m{i}"), QoS::ExactlyOnce, false)
            .await
            .unwrap();
    }
    // The first is processed and acknowledged; the other two are held, not acknowledged.
    let d0 = next(&mut inc).await;
    assert_eq!(&d0.message.payload[..], b"m0");
    assert!(!d0.redelivered);
    d0.ack().unwrap();
    let d1 = next(&mut inc).await;
    let d2 = next(&mut inc).await;
    let (id1, id2) = (d1.id.clone().unwrap(), d2.id.clone().unwrap());
    assert_eq!(id1.client_id.as_ref(), "dash");
    assert!(id1.seq < id2.seq);
    // Let the PUBREC of m0 reach the broker, then die as kill -9 would.
    tokio::time::sleep(Duration::from_millis(100)).await;
    sub.crash().await;
    drop((d1, d2, inc));
    tokio::time::sleep(Duration::from_millis(100)).await;

    let (sub, mut inc) = Client::connect(sub_opts()).await.unwrap();
    let r1 = next(&mut inc).await;
    let r2 = next(&mut inc).await;
    assert_eq!(&r1.message.payload[..], b"m1");
    assert_eq!(&r2.message.payload[..], b"m2");
    assert_eq!(
        r1.id.as_ref(),
        Some(&id1),
        "same identity after the restart"
    );
    assert_eq!(r2.id.as_ref(), Some(&id2));
    assert!(r1.redelivered && r2.redelivered);
    r1.ack().unwrap();
    r2.ack().unwrap();
    nothing_more(&mut inc, Duration::from_millis(300)).await;
    // Acknowledged: a new incarnation gets nothing again.
    tokio::time::sleep(Duration::from_millis(100)).await;
    sub.disconnect().await.unwrap();
    let (sub, mut inc) = Client::connect(sub_opts()).await.unwrap();
    nothing_more(&mut inc, Duration::from_millis(300)).await;
    publ.publish("r", "m3", QoS::ExactlyOnce, false)
        .await
        .unwrap();
    let d3 = next(&mut inc).await;
    assert_eq!(&d3.message.payload[..], b"m3");
    assert!(d3.id.as_ref().unwrap().seq > id2.seq, "sequence goes on");
    d3.ack().unwrap();
    sub.disconnect().await.unwrap();
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn survives_broker_restarts_without_loss_or_duplicates() {
    let data = tempfile::tempdir().unwrap();
    let server = durable_server(data.path(), 0).await;
    let port = server.local_addrs()[0].port();
    let a = addr(&server);
    let sdir = tempfile::tempdir().unwrap();
    let pdir = tempfile::tempdir().unwrap();
    let mut so = opts(&a, "restart-sub", ProtocolVersion::V5).persistent(600);
    so.state_dir = Some(sdir.path().to_path_buf());
    let (sub, mut inc) = Client::connect(so).await.unwrap();
    sub.subscribe(&[Subscription::new("s", QoS::ExactlyOnce)])
        .await
        .unwrap();
    let mut po = opts(&a, "restart-pub", ProtocolVersion::V5).persistent(600);
    po.state_dir = Some(pdir.path().to_path_buf());
    let (publ, _) = Client::connect(po).await.unwrap();
    let n = 300u32;
    let producer = tokio::spawn({
        let publ = publ.clone();
        async move {
            let mut acks = Vec::new();
            for i in 0..n {
                acks.push(
                    publ.send(OutgoingMessage::new(
                        "s",
                        i.to_string(),
                        QoS::ExactlyOnce,
                        false,
                    ))
                    .await
                    .unwrap(),
                );
                if i % 50 == 0 {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
            for a in acks {
                a.acknowledged().await.unwrap();
            }
        }
    });
    let mut server = Some(server);
    let mut got = Vec::new();
    let mut restarts = 0;
    while got.len() < n as usize {
        let d = next(&mut inc).await;
        got.push(String::from_utf8(d.message.payload.to_vec()).unwrap());
        if got.len() % 100 == 50 && restarts < 2 {
            restarts += 1;
            if let Some(s) = server.take() {
                s.shutdown().await;
            }
            server = Some(durable_server(data.path(), port).await);
        }
    }
    tokio::time::timeout(WAIT, producer).await.unwrap().unwrap();
    let want: Vec<String> = (0..n).map(|i| i.to_string()).collect();
    assert_eq!(got, want, "every message once, in order");
    assert!(sub.status().borrow().connects >= 3);
    nothing_more(&mut inc, Duration::from_millis(300)).await;
    if let Some(s) = server {
        s.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishes_wait_in_a_bounded_queue_while_disconnected() {
    let server = server().await;
    let a = addr(&server);
    let (sub, mut inc) = Client::connect(opts(&a, "q-sub", ProtocolVersion::V311).persistent(0))
        .await
        .unwrap();
    sub.subscribe(&[Subscription::new("w", QoS::AtLeastOnce)])
        .await
        .unwrap();
    // A publisher behind a proxy we can cut.
    let proxy = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let paddr = proxy.local_addr().unwrap().to_string();
    let upstream = a.clone();
    let cut = std::sync::Arc::new(tokio::sync::Notify::new());
    let cut2 = cut.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut c, _)) = proxy.accept().await else {
                return;
            };
            let up = upstream.clone();
            let cut = cut2.clone();
            tokio::spawn(async move {
                let Ok(mut u) = tokio::net::TcpStream::connect(&up).await else {
                    return;
                };
                tokio::select! {
                    _ = tokio::io::copy_bidirectional(&mut c, &mut u) => {}
                    _ = cut.notified() => {}
                }
            });
        }
    });
    let mut po = opts(&paddr, "q-pub", ProtocolVersion::V5).persistent(600);
    po.max_queued = 5;
    po.reconnect.min_delay = Duration::from_millis(300);
    po.reconnect.max_delay = Duration::from_millis(300);
    let (publ, _) = Client::connect(po).await.unwrap();
    let mut status = publ.status();
    cut.notify_waiters();
    status.wait_for(|s| !s.connected).await.unwrap();
    let mut pending = Vec::new();
    for i in 0..5 {
        pending.push(
            publ.try_send(OutgoingMessage::new(
                "w",
                format!("{i}"),
                QoS::AtLeastOnce,
                false,
            ))
            .await
            .unwrap(),
        );
    }
    let full = publ
        .try_send(OutgoingMessage::new("w", "x", QoS::AtLeastOnce, false))
        .await;
    assert!(matches!(full, Err(ClientError::QueueFull(5))), "{full:?}");
    for p in pending {
        tokio::time::timeout(WAIT, p.acknowledged())
            .await
            .unwrap()
            .unwrap();
    }
    for i in 0..5 {
        assert_eq!(
            &next(&mut inc).await.message.payload[..],
            format!("{i}").as_bytes()
        );
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn will_credentials_and_errors() {
    let server = server().await;
    let a = addr(&server);
    let (watcher, mut inc) = Client::connect(opts(&a, "watcher", ProtocolVersion::V5))
        .await
        .unwrap();
    watcher
        .subscribe(&[Subscription::new("wills/#", QoS::AtLeastOnce)])
        .await
        .unwrap();
    let mut o = opts(&a, "doomed", ProtocolVersion::V311);
    o.will = Some(LastWill {
        topic: "wills/doomed".into(),
        payload: "gone".into(),
        qos: QoS::AtLeastOnce,
        retain: false,
        properties: Default::default(),
    });
    o.username = Some("user".into());
    o.password = Some("pw".into());
    let (doomed, _) = Client::connect(o).await.unwrap();
    doomed.crash().await;
    let d = next(&mut inc).await;
    assert_eq!(d.message.topic, "wills/doomed");
    assert_eq!(&d.message.payload[..], b"gone");

    // A bad topic is refused before anything is sent.
    let e = watcher.publish("a/+", "x", QoS::AtMostOnce, false).await;
    assert!(matches!(e, Err(ClientError::Topic { .. })), "{e:?}");
    // Nobody listening: connection refused, one clear error.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let gone = closed.local_addr().unwrap().to_string();
    drop(closed);
    let e = Client::connect(opts(&gone, "x", ProtocolVersion::V5)).await;
    assert!(matches!(e, Err(ClientError::Connect { .. })), "{e:?}");
    // A message larger than the broker's maximum packet size.
    let big = vec![0u8; 2 * 1024 * 1024];
    let e = watcher.publish("big", big, QoS::AtLeastOnce, false).await;
    assert!(
        matches!(e, Err(ClientError::PacketTooLarge { .. })),
        "{e:?}"
    );
    server.shutdown().await;
}
