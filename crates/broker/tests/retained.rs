//! Retained messages: set, replace, delete, Retain Handling, Retain As Published, and `$`
//! topics (MQTT 5 §3.3.1.3, §3.8.3.1, §4.7.2; MQTT 3.1.1 §3.3.1.3).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod harness;

use bytes::Bytes;
use harness::*;
use quartet_proto::*;

fn retained(t: &str, qos: QoS, id: u16, payload: &[u8]) -> Publish {
    let mut p = publish(t, qos, id, payload);
    p.retain = true;
    p
}

/// Subscribes a new clean client to `f` and returns what it receives.
fn fresh_view(sim: &mut Sim, version: ProtocolVersion, f: &str) -> Vec<Publish> {
    let c = sim.clean(version, "viewer");
    sim.sub(c, 1, f, QoS::ExactlyOnce);
    let got = sim.take_publishes(c);
    for p in &got {
        sim.ack_publish(c, p);
    }
    sim.send(c, disconnect(ReasonCode::Success));
    got
}

/// [MQTT-3.3.1-5] (v5): a RETAIN=1 message is stored and sent to new subscriptions with
/// RETAIN=1 ([MQTT-3.3.1-8] 3.1.1); a new one replaces it; a zero-byte one deletes it
/// ([MQTT-3.3.1-6], [MQTT-3.3.1-7]) and is still forwarded to current subscribers
/// ([MQTT-3.3.1-10] 3.1.1); a RETAIN=0 message leaves it alone ([MQTT-3.3.1-8] v5).
#[test]
fn set_replace_and_delete() {
    for version in [V31, V311, V5] {
        let mut sim = Sim::new();
        let live = sim.clean(version, "live");
        sim.sub(live, 1, "r/#", QoS::AtLeastOnce);
        let p = sim.clean(version, "pub");
        sim.publish_acked(p, retained("r/a", QoS::AtLeastOnce, 1, b"one"));
        assert!(!sim.receive(live).retain, "live delivery clears RETAIN");
        let got = fresh_view(&mut sim, version, "r/a");
        assert_eq!(got.len(), 1);
        assert!(got[0].retain);
        assert_eq!(text(&got[0]), "one");
        assert_eq!(got[0].qos, QoS::AtLeastOnce, "min(stored QoS, granted QoS)");

        sim.publish_acked(p, retained("r/a", QoS::AtMostOnce, 0, b"two"));
        sim.receive(live);
        let got = fresh_view(&mut sim, version, "r/#");
        assert_eq!(got.len(), 1);
        assert_eq!((text(&got[0]), got[0].qos), ("two", QoS::AtMostOnce));

        sim.publish_acked(p, publish("r/a", QoS::AtLeastOnce, 2, b"not retained"));
        sim.receive(live);
        assert_eq!(text(&fresh_view(&mut sim, version, "r/a")[0]), "two");

        sim.publish_acked(p, retained("r/a", QoS::AtLeastOnce, 3, b""));
        let cleared = sim.receive(live);
        assert!(cleared.payload.is_empty(), "the empty message is forwarded");
        assert!(fresh_view(&mut sim, version, "r/#").is_empty());
        assert_eq!(sim.broker.retained_count(), 0);
        assert!(sim.durable().retained.is_empty());
    }
}

/// A wildcard subscription receives every matching retained message; a non-matching one
/// none.
#[test]
fn wildcard_subscription_gets_all_matching_retained() {
    let mut sim = Sim::new();
    let p = sim.clean(V5, "pub");
    for t in ["w/1", "w/2", "w/x/3", "other"] {
        sim.publish_acked(p, retained(t, QoS::AtLeastOnce, 1, t.as_bytes()));
    }
    let mut got: Vec<String> = fresh_view(&mut sim, V5, "w/+")
        .iter()
        .map(|p| text(p).to_owned())
        .collect();
    got.sort();
    assert_eq!(got, ["w/1", "w/2"]);
    assert_eq!(fresh_view(&mut sim, V5, "w/#").len(), 3);
    assert_eq!(fresh_view(&mut sim, V5, "none/#").len(), 0);
}

/// Retain Handling (v5): 0 sends retained messages at every subscribe [MQTT-3.3.1-9], 1 only
/// when the subscription did not exist [MQTT-3.3.1-10], 2 never [MQTT-3.3.1-11].
#[test]
fn retain_handling() {
    let mut sim = Sim::new();
    let p = sim.clean(V5, "pub");
    sim.publish_acked(p, retained("h/a", QoS::AtLeastOnce, 1, b"r"));
    let c = sim.clean(V5, "c");
    for (handling, first, second) in [
        (RetainHandling::SendAtSubscribe, 1, 1),
        (RetainHandling::SendIfNew, 1, 0),
        (RetainHandling::DoNotSend, 0, 0),
    ] {
        let o = SubscriptionOptions {
            qos: QoS::AtLeastOnce,
            retain_handling: handling,
            ..Default::default()
        };
        sim.subscribe(c, 1, &[("h/#", o)]);
        let got = sim.take_publishes(c);
        assert_eq!(got.len(), first, "{handling:?} first");
        got.iter().for_each(|m| sim.ack_publish(c, m));
        sim.subscribe(c, 2, &[("h/#", o)]);
        let got = sim.take_publishes(c);
        assert_eq!(got.len(), second, "{handling:?} again");
        got.iter().for_each(|m| sim.ack_publish(c, m));
        sim.send(c, Packet::Unsubscribe(unsubscribe(3, &["h/#"])));
        sim.expect_unsuback(c);
    }
}

/// Retain As Published (v5): with RAP=1 the forwarded message keeps its RETAIN flag
/// [MQTT-3.3.1-13], with RAP=0 it is cleared [MQTT-3.3.1-12]; 3.1.1 always clears it on a
/// live delivery [MQTT-3.3.1-9].
#[test]
fn retain_as_published() {
    let mut sim = Sim::new();
    let rap = sim.clean(V5, "rap");
    sim.subscribe(
        rap,
        1,
        &[(
            "p/#",
            SubscriptionOptions {
                qos: QoS::AtLeastOnce,
                retain_as_published: true,
                ..Default::default()
            },
        )],
    );
    let plain = sim.clean(V5, "plain");
    sim.sub(plain, 1, "p/#", QoS::AtLeastOnce);
    let v3 = sim.clean(V311, "v3");
    sim.sub(v3, 1, "p/#", QoS::AtLeastOnce);
    let p = sim.clean(V5, "pub");
    sim.publish_acked(p, retained("p/x", QoS::AtLeastOnce, 1, b"r"));
    assert!(sim.receive(rap).retain);
    assert!(!sim.receive(plain).retain);
    assert!(!sim.receive(v3).retain);
    sim.publish_acked(p, publish("p/x", QoS::AtLeastOnce, 2, b"n"));
    assert!(!sim.receive(rap).retain);
}

/// [MQTT-4.7.2-1]: topic filters starting with a wildcard do not match topics starting with
/// `$`; a filter naming the `$` level does.
#[test]
fn dollar_topics_are_not_matched_by_leading_wildcards() {
    for version in [V311, V5] {
        let mut sim = Sim::new();
        let hash = sim.clean(version, "hash");
        sim.sub(hash, 1, "#", QoS::AtLeastOnce);
        let plus = sim.clean(version, "plus");
        sim.sub(plus, 1, "+/x", QoS::AtLeastOnce);
        let named = sim.clean(version, "named");
        sim.sub(named, 1, "$app/#", QoS::AtLeastOnce);
        let p = sim.clean(version, "pub");
        sim.publish_acked(p, retained("$app/x", QoS::AtLeastOnce, 1, b"d"));
        sim.expect_silent(hash);
        sim.expect_silent(plus);
        assert_eq!(text(&sim.receive(named)), "d");
        assert!(fresh_view(&mut sim, version, "#").is_empty());
        assert!(fresh_view(&mut sim, version, "+/x").is_empty());
        assert_eq!(fresh_view(&mut sim, version, "$app/+").len(), 1);
        // And a normal topic reaches "#".
        sim.publish_acked(p, publish("app/x", QoS::AtLeastOnce, 2, b"n"));
        assert_eq!(text(&sim.receive(hash)), "n");
    }
}

/// MQTT 5 §4.8.2: retained messages are not sent to a shared subscription when it is made.
#[test]
fn shared_subscriptions_get_no_retained_messages() {
    let mut sim = Sim::new();
    let p = sim.clean(V5, "pub");
    sim.publish_acked(p, retained("s/a", QoS::AtLeastOnce, 1, b"r"));
    let c = sim.clean(V5, "c");
    sim.sub(c, 1, "$share/g/s/#", QoS::AtLeastOnce);
    sim.expect_silent(c);
}

/// Retained messages keep their v5 properties (user properties, content type) and come with
/// the subscription identifier of the subscription that asked for them [MQTT-3.3.4-3].
#[test]
fn retained_keeps_properties_and_gets_subscription_id() {
    let mut sim = Sim::new();
    let p = sim.clean(V5, "pub");
    let mut r = retained("k/a", QoS::AtLeastOnce, 1, b"r");
    r.properties.content_type = Some("text/plain".into());
    r.properties.user_properties = vec![("k".into(), "v".into())];
    r.properties.correlation_data = Some(Bytes::from_static(b"corr"));
    sim.publish_acked(p, r);
    let c = sim.clean(V5, "c");
    let mut s = subscribe(1, &[("k/#", opts(QoS::AtLeastOnce))]);
    s.properties.subscription_identifier = Some(99);
    sim.send(c, Packet::Subscribe(s));
    sim.expect_suback(c);
    let got = sim.receive(c);
    assert!(got.retain);
    assert_eq!(got.properties.content_type.as_deref(), Some("text/plain"));
    assert_eq!(
        got.properties.user_properties,
        vec![("k".into(), "v".into())]
    );
    assert_eq!(got.properties.subscription_identifiers, vec![99]);
}
