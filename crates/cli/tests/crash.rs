//! Crash tests, tier 5 (GUIDE §5): the real `quartet serve` process, killed with SIGKILL and
//! restarted on the same data directory, with test clients whose state lives in this
//! process (only the broker dies).
//!
//! - [`kill9_torture`]: a QoS 2 subscriber and two publishers (QoS 1 and QoS 2) run while the
//!   broker is killed at random moments (seeded; the seed is printed; set
//!   `QUARTET_TORTURE_SEED` to replay the same kill schedule), at least
//!   `QUARTET_TORTURE_KILLS` times (default 25) and for at least `QUARTET_TORTURE_SECS`
//!   (default 0). Then everything drains and the delivered stream is checked: nothing lost,
//!   no QoS 2 duplicate, no session lost. `scripts/crash-torture --secs N` runs it long.
//! - One test per place the QoS 2 exchange can be cut, the kill timed by the test's client:
//!   `cut_a_*` .. `cut_e_*`.
//! - Retained messages and subscriptions, session expiry and wills across a kill.
//!
//! Every broker child is killed and reaped when its [`harness::BrokerProc`] drops, also when
//! a test panics.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "crash/client.rs"]
mod client;
#[path = "crash/harness.rs"]
mod harness;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use client::*;
use harness::*;
use quartet_proto::*;

const T: Duration = Duration::from_secs(10);

fn data_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("quartet-crash-")
        .tempdir()
        .expect("temp dir")
}

/// Makes everything the broker was handed before now durable: a retained QoS 1 PUBLISH gets
/// its own batch, and batches become durable in order, so its PUBACK means every earlier
/// batch is on disk too (broker docs, "Durability").
fn barrier(addr: SocketAddr) {
    publish_once(addr, "barrier/x", b"barrier", true);
}

// ---------------------------------------------------------------------------------------
// The torture.

/// Shared between the test thread and the client threads.
#[derive(Debug, Default)]
struct Ctl {
    /// Publishers: publish nothing new, finish what is in flight, then stop.
    stop_publishing: AtomicBool,
    /// Subscriber: stop.
    stop_subscriber: AtomicBool,
    /// Set once the subscriber's SUBACK came.
    subscribed: AtomicBool,
    /// Everything the subscriber's application received: publisher -> count per seq.
    tally: Mutex<Tally>,
}

#[derive(Debug, Default)]
struct Tally {
    counts: HashMap<String, Vec<u32>>,
    /// Per publisher, the QoS deliveries carried (must equal the publisher's).
    qos: HashMap<String, QoS>,
    foreign: Vec<String>,
    deliveries: u64,
}

/// Stops the client threads when the test ends, also by a panic.
struct StopOnDrop(Arc<Ctl>);
impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.stop_publishing.store(true, Ordering::Release);
        self.0.stop_subscriber.store(true, Ordering::Release);
    }
}

fn addr_of(port: &AtomicU16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port.load(Ordering::Acquire)))
}

/// A publisher thread: publishes with a window of `window` exchanges until told to stop,
/// then finishes what is in flight. Reconnects (resending) whenever the broker dies.
fn run_publisher(
    mut p: Publisher,
    port: Arc<AtomicU16>,
    ctl: Arc<Ctl>,
    window: usize,
) -> Result<Publisher, String> {
    let mut drain_deadline = None;
    loop {
        let stopping = ctl.stop_publishing.load(Ordering::Acquire);
        if stopping {
            let d = *drain_deadline.get_or_insert_with(|| Instant::now() + Duration::from_secs(30));
            if p.inflight.is_empty() {
                p.disconnect();
                return Ok(p);
            }
            if Instant::now() > d {
                return Err(format!(
                    "{}: {} exchanges still unfinished 30 s after the last kill",
                    p.name,
                    p.inflight.len()
                ));
            }
        }
        if !p.is_connected() {
            p.reconnect(|| addr_of(&port))
                .map_err(|e| format!("{}: {e}", p.name))?;
        }
        while !stopping && p.is_connected() && p.inflight.len() < window {
            if p.publish_next().is_err() {
                break;
            }
        }
        if p.is_connected() {
            let _ = p.poll(Duration::from_millis(100));
        }
    }
}

fn run_subscriber(
    mut s: Subscriber,
    port: Arc<AtomicU16>,
    ctl: Arc<Ctl>,
) -> Result<Subscriber, String> {
    let mut subscribed = false;
    loop {
        if ctl.stop_subscriber.load(Ordering::Acquire) {
            return Ok(s);
        }
        if !s.is_connected() {
            s.reconnect(|| addr_of(&port))
                .map_err(|e| format!("{}: {e}", s.name))?;
        }
        if !subscribed {
            // Until a SUBACK came, the subscription may not exist: (re)subscribe.
            match s.subscribe(&[("t/#", QoS::ExactlyOnce)]) {
                Ok(codes) => {
                    assert_eq!(codes, vec![ReasonCode::GrantedQoS2]);
                    subscribed = true;
                    ctl.subscribed.store(true, Ordering::Release);
                }
                Err(_) => continue,
            }
        }
        let _ = s.poll(Duration::from_millis(100));
        if !s.deliveries.is_empty() {
            let mut t = ctl.tally.lock().unwrap();
            for d in s.deliveries.drain(..) {
                t.deliveries += 1;
                match d.origin() {
                    Some((name, seq)) => {
                        let counts = t.counts.entry(name.clone()).or_default();
                        let i = seq as usize;
                        if counts.len() <= i {
                            counts.resize(i + 1, 0);
                        }
                        counts[i] += 1;
                        let q = *t.qos.entry(name.clone()).or_insert(d.qos);
                        if q != d.qos {
                            t.foreign
                                .push(format!("{name}:{seq} came with {:?}", d.qos));
                        }
                    }
                    None => t.foreign.push(format!("{:?} on {}", d.payload, d.topic)),
                }
            }
        }
    }
}

/// How many of `0..published` the subscriber has not received yet.
fn missing(ctl: &Ctl, name: &str, published: u64) -> u64 {
    let t = ctl.tally.lock().unwrap();
    let counts = t.counts.get(name).map(Vec::as_slice).unwrap_or(&[]);
    (0..published as usize)
        .filter(|&i| counts.get(i).copied().unwrap_or(0) == 0)
        .count() as u64
}

/// SIGKILL at random moments under QoS 1/2 load; then nothing lost, no QoS 2 duplicate,
/// no session lost. See the module docs for the environment knobs.
#[test]
fn kill9_torture() {
    let seed = seed_from_env("QUARTET_TORTURE_SEED");
    let min_kills = env_u64("QUARTET_TORTURE_KILLS", 25);
    let min_secs = env_u64("QUARTET_TORTURE_SECS", 0);
    println!(
        "kill9_torture: seed {seed} (QUARTET_TORTURE_SEED={seed} replays the kill schedule), \
         at least {min_kills} kills and {min_secs} s"
    );
    let mut rng = Rng::new(seed);
    let dir = data_dir();
    let mut broker = BrokerProc::start(dir.path());
    let port = broker.port();
    let ctl = Arc::new(Ctl::default());
    let _stop = StopOnDrop(ctl.clone());

    let sub = {
        let (port, ctl) = (port.clone(), ctl.clone());
        thread::spawn(move || run_subscriber(Subscriber::new("torture-sub"), port, ctl))
    };
    let t0 = Instant::now();
    while !ctl.subscribed.load(Ordering::Acquire) {
        assert!(t0.elapsed() < T, "the subscriber did not subscribe");
        assert!(!sub.is_finished(), "the subscriber thread ended");
        thread::sleep(Duration::from_millis(5));
    }
    let publishers: Vec<_> = [
        ("p1", "t/q1", QoS::AtLeastOnce),
        ("p2", "t/q2", QoS::ExactlyOnce),
    ]
    .into_iter()
    .map(|(name, t, qos)| {
        let (port, ctl) = (port.clone(), ctl.clone());
        thread::spawn(move || run_publisher(Publisher::new(name, t, qos), port, ctl, 8))
    })
    .collect();

    // Kill at random moments: mostly while serving, sometimes while still recovering.
    let start = Instant::now();
    let mut early_kills = 0u32;
    let mut last_report = Instant::now();
    while u64::from(broker.kills) < min_kills || start.elapsed() < Duration::from_secs(min_secs) {
        thread::sleep(Duration::from_millis(rng.range(20, 500)));
        assert!(
            publishers.iter().all(|p| !p.is_finished()) && !sub.is_finished(),
            "a client thread ended early (see its error below)"
        );
        broker.kill9();
        if rng.chance(15) {
            // Killed during start-up: recovery itself must survive a kill.
            broker.spawn_same_port();
            thread::sleep(Duration::from_millis(rng.range(0, 25)));
            broker.kill9_if_running();
            early_kills += 1;
        }
        broker.restart();
        if last_report.elapsed() > Duration::from_secs(30) {
            last_report = Instant::now();
            let t = ctl.tally.lock().unwrap();
            println!(
                "  {:>4} s: {} kills, {} deliveries",
                start.elapsed().as_secs(),
                broker.kills,
                t.deliveries
            );
        }
    }
    let torture_secs = start.elapsed().as_secs_f64();

    // Drain: publishers finish every exchange, the subscriber gets everything.
    ctl.stop_publishing.store(true, Ordering::Release);
    let publishers: Vec<Publisher> = publishers
        .into_iter()
        .map(|h| {
            h.join()
                .expect("publisher thread")
                .unwrap_or_else(|e| panic!("{e}"))
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    while publishers
        .iter()
        .any(|p| missing(&ctl, &p.name, p.next_seq) > 0)
        && Instant::now() < deadline
    {
        assert!(!sub.is_finished(), "the subscriber thread ended");
        thread::sleep(Duration::from_millis(20));
    }
    // One more kill with nothing in flight: no exchange may come back from the dead.
    thread::sleep(Duration::from_millis(200));
    broker.kill9();
    broker.restart();
    thread::sleep(Duration::from_millis(1500));
    ctl.stop_subscriber.store(true, Ordering::Release);
    let sub = sub
        .join()
        .expect("subscriber thread")
        .unwrap_or_else(|e| panic!("{e}"));

    // The verdict.
    let t = ctl.tally.lock().unwrap();
    println!(
        "kill9_torture: seed {seed}: {} kills ({early_kills} during start-up) in {torture_secs:.1} s, \
         {} broker starts",
        broker.kills, broker.starts
    );
    let mut failures = Vec::new();
    for p in &publishers {
        let counts = t.counts.get(&p.name).cloned().unwrap_or_default();
        let published = p.next_seq as usize;
        let lost: Vec<usize> = (0..published)
            .filter(|&i| counts.get(i).copied().unwrap_or(0) == 0)
            .collect();
        let dups: u64 = counts.iter().map(|&c| u64::from(c.saturating_sub(1))).sum();
        let dup_msgs = counts.iter().filter(|&&c| c > 1).count();
        let unknown = counts.len().saturating_sub(published);
        println!(
            "  {} ({:?}): published {published}, acknowledged {}, delivered {} distinct, \
             lost {}, duplicates {dups} (of {dup_msgs} messages), connects {}, \
             sessions lost {}, PUBCOMP 0x92 {}, anomalies {}",
            p.name,
            p.qos,
            p.completed,
            counts.iter().filter(|&&c| c > 0).count(),
            lost.len(),
            p.connects,
            p.sessions_lost,
            p.pubcomp_not_found,
            p.anomalies.count
        );
        if !lost.is_empty() {
            failures.push(format!(
                "{}: {} messages lost, first {:?}",
                p.name,
                lost.len(),
                &lost[..lost.len().min(10)]
            ));
        }
        if p.qos == QoS::ExactlyOnce && dups > 0 {
            failures.push(format!("{}: {dups} QoS 2 duplicates", p.name));
        }
        if unknown > 0 {
            failures.push(format!("{}: delivered seqs never published", p.name));
        }
        if p.completed != p.next_seq {
            failures.push(format!(
                "{}: {} published, {} exchanges finished",
                p.name, p.next_seq, p.completed
            ));
        }
        if p.sessions_lost > 0 || p.anomalies.count > 0 {
            failures.push(format!(
                "{}: sessions lost {}, anomalies {:?}",
                p.name, p.sessions_lost, p.anomalies.examples
            ));
        }
    }
    println!(
        "  {}: deliveries {}, connects {}, sessions lost {}, QoS 2 retransmissions dropped {}, \
         PUBREL for released ids {}, anomalies {}",
        sub.name,
        t.deliveries,
        sub.connects,
        sub.sessions_lost,
        sub.qos2_retransmissions,
        sub.pubrel_unknown,
        sub.anomalies.count
    );
    if sub.sessions_lost > 0 || sub.anomalies.count > 0 {
        failures.push(format!(
            "{}: sessions lost {}, anomalies {:?}",
            sub.name, sub.sessions_lost, sub.anomalies.examples
        ));
    }
    if !t.foreign.is_empty() {
        failures.push(format!("unexpected deliveries: {:?}", t.foreign));
    }
    assert!(
        u64::from(broker.kills) > min_kills,
        "only {} kills",
        broker.kills
    );
    assert!(failures.is_empty(), "seed {seed}: {}", failures.join("\n"));
}

// ---------------------------------------------------------------------------------------
// Each place the QoS 2 exchange can be cut, the kill timed by the test's client.

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A QoS 2 subscriber on `t/#` and a publisher of `qos` on `t/x`, both persistent.
fn pair(b: &BrokerProc, name: &str, qos: QoS) -> (Subscriber, Publisher) {
    let mut sub = Subscriber::new(&format!("{name}-sub"));
    assert!(!sub.connect(b.addr()).unwrap(), "a new session");
    assert_eq!(
        sub.subscribe(&[("t/#", QoS::ExactlyOnce)]).unwrap(),
        vec![ReasonCode::GrantedQoS2]
    );
    let mut p = Publisher::new(&format!("{name}-pub"), "t/x", qos);
    assert!(!p.connect(b.addr()).unwrap(), "a new session");
    (sub, p)
}

/// Polls until the application got `publisher:seq`, then for `quiet` more; exactly one
/// delivery must have happened.
fn expect_exactly_one(sub: &mut Subscriber, publisher: &str, seq: u64, quiet: Duration) {
    let deadline = Instant::now() + T;
    while sub.count_of(publisher, seq) == 0 {
        assert!(
            Instant::now() < deadline,
            "{publisher}:{seq} never delivered (deliveries: {:?})",
            sub.deliveries
        );
        if let Err(e) = sub.poll(ms(100)) {
            panic!("the subscriber's connection failed while the broker was running: {e}");
        }
    }
    sub.poll_for(quiet).unwrap();
    assert_eq!(
        sub.count_of(publisher, seq),
        1,
        "{publisher}:{seq} delivered more than once: {:?}",
        sub.deliveries
    );
}

fn assert_clean(sub: &Subscriber, p: &Publisher) {
    assert_eq!(sub.sessions_lost, 0, "subscriber sessions lost");
    assert_eq!(p.sessions_lost, 0, "publisher sessions lost");
    assert_eq!(sub.anomalies.count, 0, "{:?}", sub.anomalies.examples);
    assert_eq!(p.anomalies.count, 0, "{:?}", p.anomalies.examples);
    assert!(
        sub.received.is_empty(),
        "open QoS 2 ids: {:?}",
        sub.received
    );
    assert!(p.inflight.is_empty(), "unfinished: {:?}", p.inflight);
}

/// (a) The publisher's PUBLISH is sent and the broker is killed before the publisher reads
/// PUBREC. Whatever the broker had stored (nothing, or the message with the id in its
/// received set), the retransmission after the restart (DUP=1, same id) gets PUBREC, the
/// exchange completes and the subscriber's application gets the message exactly once.
#[test]
fn cut_a_publish_sent_killed_before_pubrec() {
    let dir = data_dir();
    let mut b = BrokerProc::start(dir.path());
    let (mut sub, mut p) = pair(&b, "a", QoS::ExactlyOnce);
    for delay in [0, 0, 1, 2, 5, 10, 30] {
        let seq = p.publish_next().unwrap();
        let id = p.inflight[0].pid;
        thread::sleep(ms(delay));
        b.kill9();
        b.restart();
        assert!(p.reconnect(|| b.addr()).unwrap(), "session present");
        assert_eq!(p.last_resent, vec![Resent::Publish(id)]);
        match p
            .poll_until(T, |pk| matches!(pk, Packet::PubRec(_)))
            .unwrap()
        {
            Packet::PubRec(a) => {
                assert_eq!(a.packet_id, id);
                assert_eq!(a.reason, ReasonCode::Success);
            }
            _ => unreachable!(),
        }
        p.drain(T).unwrap();
        assert!(sub.reconnect(|| b.addr()).unwrap(), "session present");
        expect_exactly_one(&mut sub, &p.name, seq, ms(300));
    }
    assert_eq!(p.pubcomp_not_found, 0, "PUBREL for an id the broker had");
    assert_clean(&sub, &p);
}

/// (b) The broker is killed between its PUBREC and the publisher's PUBREL: the publisher
/// owes PUBREL and sends it after the restart; the broker still has the id in its received
/// set, answers PUBCOMP 0x00, and the message is delivered exactly once. Then the same with
/// the PUBREL sent and the kill before PUBCOMP is read.
#[test]
fn cut_b_killed_between_pubrec_and_pubrel() {
    let dir = data_dir();
    let mut b = BrokerProc::start(dir.path());
    let (mut sub, mut p) = pair(&b, "b", QoS::ExactlyOnce);
    // PUBREC read, PUBREL never left.
    for delay in [0, 2, 10] {
        p.hold_pubrel = true;
        let seq = p.publish_next().unwrap();
        let id = p.inflight[0].pid;
        p.poll_until(T, |pk| matches!(pk, Packet::PubRec(_)))
            .unwrap();
        assert!(p.inflight[0].released);
        thread::sleep(ms(delay));
        b.kill9();
        b.restart();
        p.hold_pubrel = false;
        assert!(p.reconnect(|| b.addr()).unwrap(), "session present");
        assert_eq!(p.last_resent, vec![Resent::PubRel(id)]);
        match p
            .poll_until(T, |pk| matches!(pk, Packet::PubComp(_)))
            .unwrap()
        {
            Packet::PubComp(a) => {
                assert_eq!(a.packet_id, id);
                // PUBREC promised the id was durable in the received set.
                assert_eq!(a.reason, ReasonCode::Success);
            }
            _ => unreachable!(),
        }
        assert!(sub.reconnect(|| b.addr()).unwrap(), "session present");
        expect_exactly_one(&mut sub, &p.name, seq, ms(300));
    }
    // PUBREL sent, killed before PUBCOMP is read: PUBCOMP 0x00 or 0x92 after the restart.
    for delay in [0, 1, 5] {
        let seq = p.publish_next().unwrap();
        let id = p.inflight[0].pid;
        p.poll_until(T, |pk| matches!(pk, Packet::PubRec(_)))
            .unwrap();
        thread::sleep(ms(delay));
        b.kill9();
        b.restart();
        assert!(p.reconnect(|| b.addr()).unwrap(), "session present");
        assert_eq!(p.last_resent, vec![Resent::PubRel(id)]);
        p.drain(T).unwrap();
        assert!(sub.reconnect(|| b.addr()).unwrap(), "session present");
        expect_exactly_one(&mut sub, &p.name, seq, ms(300));
    }
    assert_clean(&sub, &p);
}

/// Kill, restart, reconnect the subscriber: nothing at all may be sent to it (every
/// exchange had finished).
fn kill_restart_expect_silence(b: &mut BrokerProc, sub: &mut Subscriber, p: &mut Publisher) {
    b.kill9();
    b.restart();
    assert!(p.reconnect(|| b.addr()).unwrap(), "session present");
    assert!(sub.reconnect(|| b.addr()).unwrap(), "session present");
    let got = sub.poll_for(ms(500)).unwrap();
    assert!(
        got.is_empty(),
        "resent after the exchange had finished: {got:?}"
    );
}

/// (c) The broker's PUBLISH reached the subscriber, and the broker is killed before the
/// subscriber's PUBREC: the application has the message and the id is in the received set,
/// but PUBREC never left. After the restart the broker must resend the *same* packet id
/// with DUP=1 [MQTT-4.4.0-1] (a new id would make this correct receiver deliver it twice);
/// the receiver acknowledges without delivering, and the message was delivered once.
#[test]
fn cut_c_killed_before_subscribers_pubrec() {
    let dir = data_dir();
    let mut b = BrokerProc::start(dir.path());
    let (mut sub, mut p) = pair(&b, "c", QoS::ExactlyOnce);
    for _ in 0..3 {
        let seq = p.publish_next().unwrap();
        p.drain(T).unwrap();
        let first = match sub.recv_raw(T).unwrap() {
            Some(Packet::Publish(m)) => m,
            other => panic!("expected PUBLISH, got {other:?}"),
        };
        assert_eq!(first.qos, QoS::ExactlyOnce);
        assert!(!first.dup);
        let id = first.packet_id.unwrap();
        // Delivered and recorded; the PUBREC does not leave before the kill.
        sub.handle(&Packet::Publish(first.clone()), false).unwrap();
        assert_eq!(sub.count_of(&p.name, seq), 1);
        b.kill9();
        b.restart();
        assert!(p.reconnect(|| b.addr()).unwrap(), "session present");
        assert!(sub.reconnect(|| b.addr()).unwrap(), "session present");
        match sub.recv_raw(T).unwrap() {
            Some(Packet::Publish(again)) => {
                assert_eq!(
                    again.packet_id,
                    Some(id),
                    "same packet id after the restart"
                );
                assert!(again.dup, "DUP=1 on the resent PUBLISH");
                assert_eq!(again.payload, first.payload);
                sub.handle(&Packet::Publish(again), true).unwrap();
            }
            other => panic!("expected the PUBLISH resent, got {other:?}"),
        }
        sub.poll_until(T, |pk| matches!(pk, Packet::PubRel(a) if a.packet_id == id))
            .unwrap();
        expect_exactly_one(&mut sub, &p.name, seq, ms(300));
        assert_eq!(sub.pubrel_unknown, 0);
    }
    kill_restart_expect_silence(&mut b, &mut sub, &mut p);
    assert_eq!(sub.qos2_retransmissions, 3);
    assert_clean(&sub, &p);
}

/// (d) The subscriber's PUBREC reached the broker and the broker is killed before PUBCOMP:
/// once the broker's PUBREL has been seen (the "released" state is durable) the restart
/// resends that PUBREL, not the PUBLISH, and nothing is redelivered. Then the kill comes
/// right after PUBREC, before or after the broker recorded it: either the PUBLISH comes
/// again with DUP=1 and the same id (not delivered again) or the PUBREL; once either way.
#[test]
fn cut_d_killed_after_subscribers_pubrec_before_pubcomp() {
    let dir = data_dir();
    let mut b = BrokerProc::start(dir.path());
    let (mut sub, mut p) = pair(&b, "d", QoS::ExactlyOnce);
    // The broker's PUBREL was read, PUBCOMP never left.
    for _ in 0..3 {
        let seq = p.publish_next().unwrap();
        p.drain(T).unwrap();
        let id = match sub.poll(T).unwrap() {
            Some(Packet::Publish(m)) => m.packet_id.unwrap(),
            other => panic!("expected PUBLISH, got {other:?}"),
        };
        match sub.recv_raw(T).unwrap() {
            Some(Packet::PubRel(a)) => assert_eq!(a.packet_id, id),
            other => panic!("expected PUBREL, got {other:?}"),
        }
        b.kill9();
        b.restart();
        assert!(p.reconnect(|| b.addr()).unwrap(), "session present");
        assert!(sub.reconnect(|| b.addr()).unwrap(), "session present");
        match sub.recv_raw(T).unwrap() {
            Some(Packet::PubRel(a)) => {
                assert_eq!(a.packet_id, id, "the owed PUBREL is resent");
                sub.handle(&Packet::PubRel(a), true).unwrap();
            }
            other => panic!("expected the owed PUBREL, got {other:?}"),
        }
        expect_exactly_one(&mut sub, &p.name, seq, ms(300));
        kill_restart_expect_silence(&mut b, &mut sub, &mut p);
    }
    assert_eq!(sub.qos2_retransmissions, 0);
    // PUBREC sent, the kill races the broker's record of it.
    for delay in [0, 0, 1, 3, 10] {
        let seq = p.publish_next().unwrap();
        p.drain(T).unwrap();
        let id = match sub.poll(T).unwrap() {
            Some(Packet::Publish(m)) => m.packet_id.unwrap(),
            other => panic!("expected PUBLISH, got {other:?}"),
        };
        thread::sleep(ms(delay));
        b.kill9();
        b.restart();
        assert!(p.reconnect(|| b.addr()).unwrap(), "session present");
        // Leftovers of the dead connection (a PUBREL that made it) are handled first.
        assert!(sub.reconnect(|| b.addr()).unwrap(), "session present");
        let deadline = Instant::now() + T;
        while sub.received.contains(&id) {
            assert!(Instant::now() < deadline, "id {id} never released");
            sub.poll(ms(100)).unwrap();
        }
        expect_exactly_one(&mut sub, &p.name, seq, ms(300));
    }
    kill_restart_expect_silence(&mut b, &mut sub, &mut p);
    assert_clean(&sub, &p);
}

/// (e) An offline subscriber's queue survives kill -9: 100 messages, QoS 1 and QoS 2 in
/// turn, are published (and acknowledged) while the subscriber is away; after the kill
/// and restart the subscriber resumes its session and gets all 100, in order, once.
#[test]
fn cut_e_offline_queue_survives() {
    let dir = data_dir();
    let mut b = BrokerProc::start(dir.path());
    let (mut sub, mut p) = pair(&b, "e", QoS::AtLeastOnce);
    sub.disconnect();
    for i in 0..100 {
        p.qos = if i % 2 == 0 {
            QoS::AtLeastOnce
        } else {
            QoS::ExactlyOnce
        };
        p.publish_next().unwrap();
    }
    p.drain(T).unwrap();
    b.kill9();
    b.restart();
    assert!(sub.reconnect(|| b.addr()).unwrap(), "session present");
    let deadline = Instant::now() + T;
    while sub.deliveries.len() < 100 {
        assert!(
            Instant::now() < deadline,
            "only {} of 100 delivered",
            sub.deliveries.len()
        );
        sub.poll(ms(100)).unwrap();
    }
    sub.poll_for(ms(300)).unwrap();
    let got: Vec<(u64, QoS)> = sub
        .deliveries
        .iter()
        .map(|d| (d.origin().unwrap().1, d.qos))
        .collect();
    let want: Vec<(u64, QoS)> = (0..100)
        .map(|i| {
            let qos = if i % 2 == 0 {
                QoS::AtLeastOnce
            } else {
                QoS::ExactlyOnce
            };
            (i, qos)
        })
        .collect();
    assert_eq!(got, want, "all 100, in order, once");
    // Queued while offline, so never sent before: DUP=0.
    assert!(sub.deliveries.iter().all(|d| !d.dup));
    kill_restart_expect_silence(&mut b, &mut sub, &mut p);
    assert_clean(&sub, &p);
}

// ---------------------------------------------------------------------------------------
// Retained messages, subscriptions, session expiry and wills across kill -9.

/// Retained messages (and the clearing of one) and subscriptions (and an unsubscribe)
/// acknowledged before the kill are there after the restart.
#[test]
fn retained_and_subscriptions_survive_kill9() {
    let dir = data_dir();
    let mut b = BrokerProc::start(dir.path());
    let mut sub = Subscriber::new("rs-sub");
    assert!(!sub.connect(b.addr()).unwrap());
    sub.subscribe(&[("s/#", QoS::AtLeastOnce), ("u/#", QoS::AtLeastOnce)])
        .unwrap();
    assert_eq!(
        sub.unsubscribe(&["u/#"]).unwrap(),
        vec![ReasonCode::Success]
    );
    publish_once(b.addr(), "r/keep", b"kept", true);
    publish_once(b.addr(), "r/gone", b"cleared", true);
    publish_once(b.addr(), "r/gone", b"", true);
    b.kill9();
    b.restart();
    // The subscription is there without subscribing again; the unsubscribed one is not.
    assert!(sub.reconnect(|| b.addr()).unwrap(), "session present");
    publish_once(b.addr(), "u/1", b"unsubscribed", false);
    publish_once(b.addr(), "s/1", b"after restart", false);
    let deadline = Instant::now() + T;
    while sub.deliveries.is_empty() {
        assert!(
            Instant::now() < deadline,
            "the subscription did not survive"
        );
        sub.poll(ms(100)).unwrap();
    }
    sub.poll_for(ms(300)).unwrap();
    let got: Vec<(&str, &[u8])> = sub
        .deliveries
        .iter()
        .map(|d| (d.topic.as_str(), &d.payload[..]))
        .collect();
    assert_eq!(got, vec![("s/1", &b"after restart"[..])]);
    // A new subscriber gets the retained message, RETAIN set, and not the cleared one.
    let mut late = Subscriber::new("rs-late");
    late.connect(b.addr()).unwrap();
    late.subscribe(&[("r/#", QoS::AtLeastOnce)]).unwrap();
    late.poll_for(ms(500)).unwrap();
    let got: Vec<(&str, &[u8], bool)> = late
        .deliveries
        .iter()
        .map(|d| (d.topic.as_str(), &d.payload[..], d.retain))
        .collect();
    assert_eq!(got, vec![("r/keep", &b"kept"[..], true)]);
    assert_eq!(sub.anomalies.count, 0, "{:?}", sub.anomalies.examples);
}

/// The v5 Session Expiry Interval keeps counting across a restart: a session that ended
/// (DISCONNECT) with 2 s of expiry is gone when the broker comes back 2.5 s later, however
/// fast the client reconnects, while one with a long expiry is present. A session that was
/// still connected at the kill expires 2 s after the restart (the broker cannot know when
/// the connection died, so it counts from its start).
#[test]
fn session_expiry_counts_across_restart() {
    let dir = data_dir();
    let mut b = BrokerProc::start(dir.path());
    let mut short = Subscriber::new("exp-short");
    short.expiry_secs = 2;
    let mut long = Subscriber::new("exp-long");
    long.expiry_secs = 3600;
    let mut at_kill = Subscriber::new("exp-at-kill");
    at_kill.expiry_secs = 2;
    for s in [&mut short, &mut long, &mut at_kill] {
        assert!(!s.connect(b.addr()).unwrap());
        s.subscribe(&[("e/#", QoS::AtLeastOnce)]).unwrap();
    }
    short.disconnect();
    long.disconnect();
    let disconnected = Instant::now();
    // The DISCONNECTs' records are durable before the kill.
    barrier(b.addr());
    b.kill9();
    thread::sleep((disconnected + ms(2500)).saturating_duration_since(Instant::now()));
    // Reconnect as early as possible: during the broker's recovery, before any timer ran.
    b.spawn_same_port();
    let present = |name: &str, expiry: u32, b: &BrokerProc| {
        retry(|| Conn::open(b.addr(), connect_packet(name, false, expiry)))
            .unwrap()
            .1
            .session_present
    };
    assert!(
        !present("exp-short", 2, &b),
        "a session expired while the broker was down was resumed"
    );
    assert!(present("exp-long", 3600, &b), "a live session was lost");
    thread::sleep(ms(2500));
    assert!(
        !present("exp-at-kill", 2, &b),
        "a session connected at the kill never expired"
    );
}

/// The will of a session that was connected when the broker was killed is published after
/// the restart (the connection ended abnormally [MQTT-3.1.2-8]); one whose client resumes
/// within its Will Delay Interval is not [MQTT-3.1.3-9], nor one whose client disconnected
/// normally before the kill.
#[test]
fn will_of_connected_session_published_after_restart() {
    let dir = data_dir();
    let mut b = BrokerProc::start(dir.path());
    let mut wsub = Subscriber::new("will-sub");
    assert!(!wsub.connect(b.addr()).unwrap());
    wsub.subscribe(&[("will/#", QoS::AtLeastOnce)]).unwrap();
    let with_will = |id: &str, delay: u32| {
        let mut c = connect_packet(id, false, 3600);
        c.will = Some(Will {
            topic: topic(&format!("will/{id}")),
            payload: format!("{id} is gone").into(),
            qos: QoS::AtLeastOnce,
            retain: false,
            properties: WillProperties {
                will_delay_interval: Some(delay),
                ..WillProperties::default()
            },
        });
        c
    };
    // CONNACK waits for the session record (and its will) to be durable.
    let (_dies, _) = Conn::open(b.addr(), with_will("dies", 0)).unwrap();
    let (_resumes, _) = Conn::open(b.addr(), with_will("resumes", 3)).unwrap();
    let (mut polite, _) = Conn::open(b.addr(), with_will("polite", 0)).unwrap();
    polite
        .send(&Packet::Disconnect(Disconnect::default()))
        .unwrap();
    assert!(polite.wait_closed(T));
    barrier(b.addr());
    b.kill9();
    b.restart();
    let (resumed, ack) =
        retry(|| Conn::open(b.addr(), connect_packet("resumes", false, 3600))).unwrap();
    assert!(ack.session_present);
    assert!(wsub.reconnect(|| b.addr()).unwrap(), "session present");
    let deadline = Instant::now() + T;
    while wsub.deliveries.is_empty() {
        assert!(Instant::now() < deadline, "the will was not published");
        wsub.poll(ms(100)).unwrap();
    }
    // Longer than the resumed client's will delay: its will must not come.
    wsub.poll_for(ms(3500)).unwrap();
    let got: Vec<(&str, &[u8])> = wsub
        .deliveries
        .iter()
        .map(|d| (d.topic.as_str(), &d.payload[..]))
        .collect();
    assert_eq!(got, vec![("will/dies", &b"dies is gone"[..])]);
    drop(resumed);
    assert_eq!(wsub.anomalies.count, 0, "{:?}", wsub.anomalies.examples);
}

/// A will whose delay ran out while the broker was down is published even when its client
/// reconnects the moment the broker is back (before any timer of the new process ran):
/// the delay is a deadline in wall-clock time, not a timer of one process.
#[test]
fn will_delay_that_passed_while_down_is_honoured() {
    let dir = data_dir();
    let mut b = BrokerProc::start(dir.path());
    let mut wsub = Subscriber::new("will-sub");
    assert!(!wsub.connect(b.addr()).unwrap());
    wsub.subscribe(&[("will/#", QoS::AtLeastOnce)]).unwrap();
    let mut c = connect_packet("dropped", false, 3600);
    c.will = Some(Will {
        topic: topic("will/dropped"),
        payload: "dropped is gone".into(),
        qos: QoS::AtLeastOnce,
        retain: false,
        properties: WillProperties {
            will_delay_interval: Some(2),
            ..WillProperties::default()
        },
    });
    let (conn, _) = Conn::open(b.addr(), c).unwrap();
    // The connection dies without DISCONNECT: the will delay starts.
    drop(conn);
    let dropped = Instant::now();
    thread::sleep(ms(500));
    barrier(b.addr());
    wsub.disconnect();
    b.kill9();
    thread::sleep((dropped + ms(2500)).saturating_duration_since(Instant::now()));
    b.spawn_same_port();
    let (_back, ack) =
        retry(|| Conn::open(b.addr(), connect_packet("dropped", false, 3600))).unwrap();
    assert!(ack.session_present);
    assert!(wsub.reconnect(|| b.addr()).unwrap(), "session present");
    let deadline = Instant::now() + T;
    while wsub.deliveries.is_empty() {
        assert!(
            Instant::now() < deadline,
            "the will whose delay passed while the broker was down was never published"
        );
        wsub.poll(ms(100)).unwrap();
    }
    wsub.poll_for(ms(300)).unwrap();
    let got: Vec<(&str, &[u8])> = wsub
        .deliveries
        .iter()
        .map(|d| (d.topic.as_str(), &d.payload[..]))
        .collect();
    assert_eq!(got, vec![("will/dropped", &b"dropped is gone"[..])]);
}
