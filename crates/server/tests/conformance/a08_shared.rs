//! Area 8: 5.0 shared subscriptions (4.8.2): each message goes to exactly one member of the
//! group; non-shared subscribers of the same topic still get everything; a member leaving
//! leaves the rest to the others; No Local on a shared subscription is a protocol error.

use std::collections::BTreeMap;

use quartet_proto::Packet;

use crate::*;

tests! {
    each_message_to_one_member: V5;
    member_leaves: V5;
    no_local_on_shared: V5;
    unsubscribe_shared: V5;
}

/// Reads `p`'s packets up to the PINGRESP of a [`Peer::sync`], acknowledging QoS 1, and
/// returns the payloads of the PUBLISHes.
async fn drain_until_sync(p: &mut Peer) -> Vec<Vec<u8>> {
    p.send(&[0xC0, 0x00]).await; // PINGREQ
    let mut got = Vec::new();
    loop {
        match p.recv().await {
            Packet::PingResp => return got,
            Packet::Publish(m) => {
                if let Some(pid) = m.packet_id {
                    p.send(&ack(PUBACK, pid.get())).await;
                }
                got.push(m.payload.to_vec());
            }
            other => panic!("{}: unexpected {other:?}", p.name),
        }
    }
}

/// 4.8.2 "Shared Subscriptions": a message matching a shared subscription is
/// sent to only one member of the group; an ordinary subscription on the same topic gets its
/// own copy of every message.
async fn each_message_to_one_member(v: V) {
    let srv = TestServer::start().await;
    let mut a = srv.subscriber(v, "a", "$share/g/s/t", 1).await;
    let mut b = srv.subscriber(v, "b", "$share/g/s/t", 1).await;
    let mut c = srv.subscriber(v, "c", "s/t", 0).await;
    let mut p = srv.client(v, "p").await;
    for i in 0..10u16 {
        p.publish1("s/t", i + 1, format!("{i}").as_bytes()).await;
    }
    let mut count = BTreeMap::new();
    for m in drain_until_sync(&mut a)
        .await
        .into_iter()
        .chain(drain_until_sync(&mut b).await)
    {
        *count.entry(String::from_utf8(m).unwrap()).or_insert(0) += 1;
    }
    let want: BTreeMap<String, i32> = (0..10).map(|i| (format!("{i}"), 1)).collect();
    assert_eq!(count, want, "each message to exactly one member");
    for i in 0..10 {
        c.expect(&publish(
            v,
            QOS0,
            "s/t",
            None,
            &[],
            format!("{i}").as_bytes(),
        ))
        .await;
    }
}

/// When a member's session ends, the group's messages go to the remaining members.
async fn member_leaves(v: V) {
    let srv = TestServer::start().await;
    let mut a = srv.subscriber(v, "a", "$share/g/s/t", 0).await;
    let mut b = srv.subscriber(v, "b", "$share/g/s/t", 0).await;
    a.disconnect().await;
    let mut p = srv.client(v, "p").await;
    for i in 0..4 {
        p.publish0("s/t", format!("{i}").as_bytes()).await;
    }
    for i in 0..4 {
        b.expect(&publish(
            v,
            QOS0,
            "s/t",
            None,
            &[],
            format!("{i}").as_bytes(),
        ))
        .await;
    }
}

/// [MQTT-3.8.3-4]: No Local on a shared subscription is a protocol error: DISCONNECT 0x82.
async fn no_local_on_shared(v: V) {
    let srv = TestServer::start().await;
    let mut c = srv.client(v, "c").await;
    c.send(&subscribe(v, 1, &[("$share/g/t", 0x04)], &[])).await;
    c.expect_disconnect(0x82).await;
}

/// UNSUBSCRIBE of a shared subscription (by its full `$share/...` filter) removes the member:
/// UNSUBACK 0x00, then the group's messages go to the others.
async fn unsubscribe_shared(v: V) {
    let srv = TestServer::start().await;
    let mut a = srv.subscriber(v, "a", "$share/g/s/t", 0).await;
    let mut b = srv.subscriber(v, "b", "$share/g/s/t", 0).await;
    a.send(&unsubscribe(v, 2, &["$share/g/s/t"])).await;
    a.expect(&[
        0xB0, 0x04, // UNSUBACK, remaining length 4
        0x00, 0x02, // packet id
        0x00, // property length 0
        0x00, // success
    ])
    .await;
    let mut p = srv.client(v, "p").await;
    for i in 0..4 {
        p.publish0("s/t", format!("{i}").as_bytes()).await;
    }
    for i in 0..4 {
        b.expect(&publish(
            v,
            QOS0,
            "s/t",
            None,
            &[],
            format!("{i}").as_bytes(),
        ))
        .await;
    }
    a.sync().await;
}
