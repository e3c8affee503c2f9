//! What each scenario connects, runs and measures.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::bail;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use quartet_proto::{ProtocolVersion, QoS};
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::load::{self, new_histogram, PubResult, PubSpec, Shared, SubSpec, Track};
use super::report::{count, kib, rate, round1, us, Report};
use super::sys::{self, CpuMeter};
use super::wire::{Conn, ConnectOpts, STAMP_LEN};
use super::{run_id, ConnArgs, LoadArgs, PersistArgs, TopicMode};

/// Subscribers still receiving after this long without a new message are done.
const IDLE_DRAIN: Duration = Duration::from_secs(2);
/// The longest wait for deliveries after the publishers are done.
const MAX_DRAIN: Duration = Duration::from_secs(60);
/// The longest wait for a publisher's last acknowledgements.
const ACK_DRAIN: Duration = Duration::from_secs(30);

fn qos_of(q: u8) -> QoS {
    QoS::from_u8(q).unwrap_or(QoS::AtMostOnce)
}

/// The lost / duplicated / out-of-order row and its verdict: loss of an acknowledged QoS 1/2
/// message and a QoS 2 duplicate fail the run; QoS 0 loss is only noted.
fn integrity(report: &mut Report, qos: QoS, lost: u64, dups: u64, ooo: u64) {
    report.row(
        "lost",
        lost,
        "lost / dup / out of order",
        format!("{} / {} / {}", count(lost), count(dups), count(ooo)),
    );
    report.set("duplicates", dups);
    report.set("out_of_order", ooo);
    if lost > 0 {
        if qos == QoS::AtMostOnce {
            report.note(format!(
                "{lost} QoS 0 message(s) not delivered (allowed at QoS 0)"
            ));
        } else {
            report.error(format!(
                "{lost} acknowledged QoS {} message(s) lost",
                qos as u8
            ));
        }
    }
    if dups > 0 && qos == QoS::ExactlyOnce {
        report.error(format!("{dups} QoS 2 message(s) delivered twice"));
    }
}

fn version_name(v: ProtocolVersion) -> &'static str {
    if v.is_v5() {
        "5.0"
    } else {
        "3.1.1"
    }
}

fn opts(client_id: String) -> ConnectOpts {
    ConnectOpts {
        client_id,
        clean_start: true,
        session_expiry_secs: None,
        keep_alive_secs: 600,
    }
}

/// A client whose session outlives its connection: a new one (the ids are fresh each run) that
/// lasts an hour after disconnecting.
fn persistent_opts(client_id: String, version: ProtocolVersion) -> ConnectOpts {
    ConnectOpts {
        client_id,
        // 3.1.1 has only the flag; v5 starts clean and keeps the session by its expiry.
        clean_start: version.is_v5(),
        session_expiry_secs: Some(3600),
        keep_alive_secs: 600,
    }
}

/// Ends the sessions of these clients (a clean connect with no expiry, then DISCONNECT).
async fn end_sessions(addr: std::net::SocketAddr, version: ProtocolVersion, ids: Vec<String>) {
    for id in ids {
        if let Ok((c, _)) = Conn::connect(addr, version, &opts(id)).await {
            c.disconnect().await;
        }
    }
}

/// A receiver group: the subscribers whose deliveries count together (one subscriber, or
/// the members of one `$share` group) and the publishers whose messages it must get.
struct Group {
    members: Vec<usize>,
    expects: Vec<u32>,
}

fn progress_bar(show: bool, len: u64) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
    pb.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {wide_bar} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    pb
}

/// throughput, fanout, latency and shared.
pub async fn load(scenario: &'static str, a: LoadArgs) -> anyhow::Result<Report> {
    let (dp, ds, dtopic, dqos) = match scenario {
        "fanout" => (1, 100, TopicMode::Shared, 0),
        "latency" => (16, 16, TopicMode::Distinct, 1),
        "shared" => (16, 16, TopicMode::Shared, 0),
        _ => (16, 16, TopicMode::Distinct, 0),
    };
    let p = a.publishers.unwrap_or(dp).max(1);
    let s = a.subscribers.unwrap_or(ds);
    let topic_mode = a.topic.unwrap_or(dtopic);
    let qos = qos_of(a.qos.unwrap_or(dqos));
    let total_rate = a.rate.or(if scenario == "latency" {
        Some(10_000.0)
    } else {
        None
    });
    let duration = match (a.messages, a.duration) {
        (Some(_), _) => None,
        (None, Some(d)) => Some(Duration::from_secs_f64(d)),
        (None, None) => Some(Duration::from_secs(10)),
    };
    if a.size < STAMP_LEN {
        bail!(
            "--size must be at least {STAMP_LEN} bytes (publisher id, sequence number, timestamp)"
        );
    }
    let groups_n = a.groups.max(1);
    if scenario == "shared" && s < groups_n {
        bail!("--subscribers must be at least --groups");
    }
    let common = &a.common;
    let addr = common.addr().await?;
    let version = common.version;
    let run = run_id();
    let prefix = format!("quartet-bench/{run}");
    let client = |id: String| {
        if a.persistent {
            persistent_opts(id, version)
        } else {
            opts(id)
        }
    };

    // Who publishes where, who subscribes to what, and who must get what.
    let pub_topic = |i: usize| match (scenario, topic_mode) {
        ("shared", _) | (_, TopicMode::Shared) => format!("{prefix}/all"),
        _ => format!("{prefix}/t{i}"),
    };
    let mut subs = Vec::new();
    let mut groups = Vec::new();
    if scenario == "shared" {
        for g in 0..groups_n {
            groups.push(Group {
                members: Vec::new(),
                expects: (0..p as u32).collect(),
            });
            let _ = g;
        }
        for j in 0..s {
            let g = j % groups_n;
            groups[g].members.push(j);
            subs.push(SubSpec {
                connect: client(format!("qb-{run}-s{j}")),
                filters: vec![format!("$share/g{g}/{prefix}/all")],
                qos,
            });
        }
    } else {
        for j in 0..s {
            let expects: Vec<u32> = match topic_mode {
                TopicMode::Shared => (0..p as u32).collect(),
                TopicMode::Distinct if s <= p => {
                    (0..p).filter(|i| i % s == j).map(|i| i as u32).collect()
                }
                TopicMode::Distinct => vec![(j % p) as u32],
            };
            let filters = match topic_mode {
                TopicMode::Shared => vec![format!("{prefix}/all")],
                TopicMode::Distinct => expects.iter().map(|&i| pub_topic(i as usize)).collect(),
            };
            subs.push(SubSpec {
                connect: client(format!("qb-{run}-s{j}")),
                filters,
                qos,
            });
            groups.push(Group {
                members: vec![j],
                expects,
            });
        }
    }
    let pubs: Vec<PubSpec> = (0..p)
        .map(|i| PubSpec {
            id: i as u32,
            connect: client(format!("qb-{run}-p{i}")),
            topic: pub_topic(i),
            qos,
            payload_len: a.size,
            window: a.window,
            rate: total_rate.map(|r| r / p as f64),
            count: a.messages,
            duration,
            drain: ACK_DRAIN,
        })
        .collect();

    let topic_desc = if scenario == "shared" {
        format!("$share, {groups_n} group(s)")
    } else {
        match topic_mode {
            TopicMode::Distinct => "distinct topics".to_string(),
            TopicMode::Shared => "one topic".to_string(),
        }
    };
    let mut report = Report::new(
        scenario,
        format!(
            "quartet bench {scenario}: {p} -> {s}, QoS {}{}, {} B, {topic_desc}, window {}, MQTT {}, {addr}",
            qos as u8,
            if a.persistent { ", persistent sessions" } else { "" },
            a.size,
            a.window,
            version_name(version)
        ),
    );
    report.set("broker", addr.to_string());
    report.set("mqtt_version", version_name(version));
    report.set("publishers", p);
    report.set("subscribers", s);
    report.set("qos", qos as u8);
    report.set("payload_bytes", a.size);
    report.set("window", a.window);
    report.set(
        "topic",
        if scenario == "shared" {
            "share"
        } else if topic_mode == TopicMode::Shared {
            "shared"
        } else {
            "distinct"
        },
    );
    report.set("groups", groups_n);
    report.set("rate_target", total_rate);
    report.set("persistent", a.persistent);

    // Subscribers first, all subscribed before anyone publishes.
    let shared = Shared::new();
    let mut conns = JoinSet::new();
    for (j, spec) in subs.iter().enumerate() {
        let spec = spec.clone();
        conns.spawn(async move { (j, load::subscribe(addr, version, &spec).await) });
    }
    let mut sub_conns: Vec<Option<Conn>> = (0..s).map(|_| None).collect();
    while let Some(r) = conns.join_next().await {
        let (j, c) = r?;
        sub_conns[j] = Some(c.map_err(|e| e.context(format!("subscriber {j}")))?);
    }
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut sub_tasks = Vec::new();
    for c in sub_conns.into_iter().flatten() {
        sub_tasks.push(tokio::spawn(load::subscriber(
            c,
            p,
            shared.clone(),
            stop_rx.clone(),
        )));
    }
    // Publishers connect, then start together.
    let (go_tx, go_rx) = watch::channel(false);
    let mut pub_tasks = Vec::new();
    for spec in pubs {
        pub_tasks.push(tokio::spawn(load::publisher(
            addr,
            version,
            spec,
            shared.clone(),
            go_rx.clone(),
        )));
    }
    let connect_deadline = Instant::now() + Duration::from_secs(30);
    while shared.ready.load(Ordering::Relaxed) < p as u64 {
        if Instant::now() > connect_deadline {
            bail!("the publishers could not connect within 30 s");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let pb = progress_bar(
        common.progress(),
        match (duration, a.messages) {
            (Some(d), _) => d.as_millis() as u64,
            (None, Some(n)) => n * p as u64,
            (None, None) => 0,
        },
    );
    let meter = CpuMeter::start(common.broker_pid);
    let t0 = Instant::now();
    let _ = go_tx.send(true);

    // While publishing: the progress bar.
    let all_pubs = futures_join(pub_tasks);
    tokio::pin!(all_pubs);
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    let pub_results: Vec<PubResult> = loop {
        tokio::select! {
            r = &mut all_pubs => break r?,
            _ = tick.tick() => {
                let published = shared.published.load(Ordering::Relaxed);
                let delivered = shared.delivered.load(Ordering::Relaxed);
                let secs = t0.elapsed().as_secs_f64().max(1e-3);
                pb.set_position(if duration.is_some() { t0.elapsed().as_millis() as u64 } else { published });
                pb.set_message(format!(
                    "published {} ({}), delivered {} ({})",
                    count(published), rate(published as f64 / secs),
                    count(delivered), rate(delivered as f64 / secs)
                ));
            }
        }
    };

    // Drain: wait until every group has what was sent to it, or nothing arrives any more.
    let expected: u64 = groups
        .iter()
        .map(|g| {
            g.expects
                .iter()
                .map(|&i| pub_results.get(i as usize).map_or(0, |r| r.sent))
                .sum::<u64>()
        })
        .sum();
    pb.set_message("draining".to_string());
    let drain_start = Instant::now();
    let mut last = shared.delivered.load(Ordering::Relaxed);
    let mut last_change = Instant::now();
    while shared.delivered.load(Ordering::Relaxed) < expected {
        tokio::time::sleep(Duration::from_millis(10)).await;
        let d = shared.delivered.load(Ordering::Relaxed);
        if d != last {
            last = d;
            last_change = Instant::now();
        }
        if last_change.elapsed() > IDLE_DRAIN || drain_start.elapsed() > MAX_DRAIN {
            break;
        }
    }
    let cpu = meter.stop();
    let _ = stop_tx.send(true);
    let mut sub_results = Vec::new();
    for t in sub_tasks {
        sub_results.push(t.await?);
    }
    pb.finish_and_clear();
    if a.persistent {
        let ids = subs
            .iter()
            .map(|s| s.connect.client_id.clone())
            .chain((0..p).map(|i| format!("qb-{run}-p{i}")))
            .collect();
        end_sessions(addr, version, ids).await;
    }

    // Results.
    let published: u64 = pub_results.iter().map(|r| r.sent).sum();
    let acked: u64 = pub_results.iter().map(|r| r.acked).sum();
    let last_send = pub_results.iter().filter_map(|r| r.last_send).max();
    let publish_secs = last_send.map_or(0.0, |l| (l - t0).as_secs_f64());
    let mut hist = new_histogram();
    let mut delivered = 0u64;
    let mut lost = 0u64;
    let mut dups = 0u64;
    let mut ooo = 0u64;
    let mut strays = 0u64;
    for r in &sub_results {
        strays += r.strays;
        let _ = hist.add(&r.latency);
        if let Some(e) = &r.error {
            report.error(format!("subscriber: {e}"));
        }
    }
    for r in &pub_results {
        if let Some(e) = &r.error {
            report.error(e.clone());
        }
    }
    for g in &groups {
        for &i in &g.expects {
            let mut t = Track::default();
            for &m in &g.members {
                if let Some(st) = sub_results.get(m).and_then(|r| r.tracks.get(i as usize)) {
                    t.merge(st);
                }
            }
            let sent = pub_results.get(i as usize).map_or(0, |r| r.sent);
            delivered += t.unique;
            lost += t.missing(sent);
            dups += t.dups;
            ooo += t.out_of_order;
        }
    }
    let last_delivery = sub_results.iter().filter_map(|r| r.last_delivery).max();
    let delivery_secs = last_delivery.map_or(0.0, |l| (l - t0).as_secs_f64());
    let pub_rate = if publish_secs > 0.0 {
        published as f64 / publish_secs
    } else {
        0.0
    };
    let del_rate = if delivery_secs > 0.0 {
        delivered as f64 / delivery_secs
    } else {
        0.0
    };
    report.row(
        "published",
        published,
        "published",
        format!(
            "{} in {:.2} s: {}",
            count(published),
            publish_secs,
            rate(pub_rate)
        ),
    );
    report.set("publish_secs", round1(publish_secs * 10.0) / 10.0);
    report.set("publish_rate", pub_rate.round());
    report.set("acked", acked);
    if qos != QoS::AtMostOnce && acked < published {
        report.error(format!(
            "{} message(s) never acknowledged by the broker",
            published - acked
        ));
    }
    report.row(
        "delivered",
        delivered,
        "delivered",
        format!(
            "{} of {} expected in {:.2} s: {}",
            count(delivered),
            count(expected),
            delivery_secs,
            rate(del_rate)
        ),
    );
    report.set("expected", expected);
    report.set("delivery_secs", round1(delivery_secs * 10.0) / 10.0);
    report.set("delivery_rate", del_rate.round());
    integrity(&mut report, qos, lost, dups, ooo);
    report.set("strays", strays);
    if strays > 0 {
        report.note(format!("{strays} message(s) that were not this run's"));
    }
    report.latency(&hist);
    let active = publish_secs.max(delivery_secs);
    report.cpu(&cpu, active, delivered.max(published));
    Ok(report)
}

/// Awaits every task, in order.
async fn futures_join<T: Send + 'static>(
    tasks: Vec<tokio::task::JoinHandle<T>>,
) -> anyhow::Result<Vec<T>> {
    let mut out = Vec::with_capacity(tasks.len());
    for t in tasks {
        out.push(t.await?);
    }
    Ok(out)
}

/// Opens N connections at a rate and holds them.
pub async fn conn(a: ConnArgs) -> anyhow::Result<Report> {
    let common = &a.common;
    let addr = common.addr().await?;
    let version = common.version;
    let run = run_id();
    let n = a.connections;
    let limit = sys::raise_nofile(n as u64 + 1024);
    if limit < n as u64 + 64 {
        bail!("the open-file limit ({limit}) is too low for {n} connections; raise `ulimit -n`");
    }
    let mut report = Report::new(
        "conn",
        format!(
            "quartet bench conn: {n} connections, {}, MQTT {}, {addr}",
            a.rate
                .map_or("as fast as accepted".to_string(), |r| format!("{r}/s")),
            version_name(version)
        ),
    );
    report.set("broker", addr.to_string());
    report.set("mqtt_version", version_name(version));
    report.set("connections", n);
    report.set("rate_target", a.rate);
    let rss_before = common.broker_pid.and_then(sys::proc_rss_kib);
    let pb = progress_bar(common.progress(), n as u64);
    let meter = CpuMeter::start(common.broker_pid);
    let sem = Arc::new(tokio::sync::Semaphore::new(a.concurrency.max(1)));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let t0 = Instant::now();
    let start = tokio::time::Instant::now();
    let spawner = {
        let rate_per_sec = a.rate;
        tokio::spawn(async move {
            for i in 0..n {
                if let Some(r) = rate_per_sec {
                    tokio::time::sleep_until(start + Duration::from_secs_f64(i as f64 / r)).await;
                }
                let Ok(permit) = sem.clone().acquire_owned().await else {
                    return;
                };
                let tx = tx.clone();
                let o = opts(format!("qb-{run}-c{i}"));
                tokio::spawn(async move {
                    let t = Instant::now();
                    let r = Conn::connect(addr, version, &o).await;
                    drop(permit);
                    let _ = tx.send(r.map(|(c, _)| (c, t.elapsed())));
                });
            }
        })
    };
    let mut held = Vec::with_capacity(n);
    let mut hist = new_histogram();
    let mut failures = 0usize;
    let mut first_error = None;
    for i in 0..n {
        match rx.recv().await {
            Some(Ok((c, took))) => {
                // Only the socket is kept: the generator's buffers would dwarf the broker's.
                let _ = c.stream.set_zero_linger();
                held.push(c.stream);
                hist.saturating_record((took.as_micros() as u64).max(1));
            }
            Some(Err(e)) => {
                failures += 1;
                first_error.get_or_insert_with(|| format!("{e:#}"));
            }
            None => break,
        }
        if i % 256 == 0 {
            pb.set_position(i as u64);
        }
    }
    let connect_secs = t0.elapsed().as_secs_f64();
    spawner.await?;
    pb.finish_and_clear();
    let cpu = meter.stop();
    tokio::time::sleep(Duration::from_secs_f64(a.hold)).await;
    let rss_after = common.broker_pid.and_then(sys::proc_rss_kib);
    let ok = held.len();
    let conn_rate = if connect_secs > 0.0 {
        ok as f64 / connect_secs
    } else {
        0.0
    };
    report.row(
        "connected",
        ok,
        "connected",
        format!(
            "{} of {} in {:.2} s: {}/s",
            count(ok as u64),
            count(n as u64),
            connect_secs,
            count(conn_rate.round() as u64)
        ),
    );
    report.set("connect_secs", round1(connect_secs * 100.0) / 100.0);
    report.set("connect_rate", conn_rate.round());
    report.set("failed", failures);
    if failures > 0 {
        report.error(format!(
            "{failures} connection(s) failed; the first: {}",
            first_error.unwrap_or_default()
        ));
    }
    if !hist.is_empty() {
        report.line(
            "handshake time",
            format!(
                "p50 {}  p99 {}  max {}",
                us(hist.value_at_quantile(0.5)),
                us(hist.value_at_quantile(0.99)),
                us(hist.max())
            ),
        );
        report.set(
            "handshake_us",
            serde_json::json!({"p50": hist.value_at_quantile(0.5), "p99": hist.value_at_quantile(0.99), "max": hist.max()}),
        );
    }
    if let (Some(b), Some(a2)) = (rss_before, rss_after) {
        let per = if ok > 0 {
            (a2 as f64 - b as f64) * 1024.0 / ok as f64
        } else {
            0.0
        };
        report.row(
            "rss_per_conn_bytes",
            per.round(),
            "broker memory",
            format!(
                "{} before, {} with the connections held: {:.0} B ({:.2} KiB) per connection",
                kib(b),
                kib(a2),
                per,
                per / 1024.0
            ),
        );
        report.set("broker_rss_before_kib", b);
        report.set("broker_rss_after_kib", a2);
    }
    report.cpu(&cpu, connect_secs, ok as u64);
    drop(held);
    Ok(report)
}

/// Persistent subscribers go offline, messages queue for them, they come back and drain.
pub async fn persist(a: PersistArgs) -> anyhow::Result<Report> {
    let common = &a.common;
    let addr = common.addr().await?;
    let version = common.version;
    let run = run_id();
    let qos = qos_of(a.qos);
    let s = a.subscribers.max(1);
    let p = a.publishers.max(1);
    if a.size < STAMP_LEN {
        bail!("--size must be at least {STAMP_LEN} bytes");
    }
    let topic = format!("quartet-bench/{run}/queue");
    let sub_id = |j: usize| format!("qb-{run}-s{j}");
    let mut report = Report::new(
        "persist",
        format!(
            "quartet bench persist: {p} publishers -> {s} offline subscriber(s), {} messages each, QoS {}, {} B, MQTT {}, {addr}",
            count(a.messages),
            qos as u8,
            a.size,
            version_name(version)
        ),
    );
    report.set("broker", addr.to_string());
    report.set("mqtt_version", version_name(version));
    report.set("publishers", p);
    report.set("subscribers", s);
    report.set("qos", qos as u8);
    report.set("payload_bytes", a.size);
    report.set("messages", a.messages);

    // 1. Create the sessions and subscriptions, then go offline.
    for j in 0..s {
        let (mut c, _) = Conn::connect(addr, version, &persistent_opts(sub_id(j), version)).await?;
        c.subscribe(std::slice::from_ref(&topic), qos).await?;
        c.disconnect().await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;

    // 2. Fill the queues.
    let shared = Shared::new();
    let per_pub = a.messages / p as u64;
    let extra = a.messages % p as u64;
    let (go_tx, go_rx) = watch::channel(false);
    let mut tasks = Vec::new();
    for i in 0..p {
        let spec = PubSpec {
            id: i as u32,
            connect: opts(format!("qb-{run}-p{i}")),
            topic: topic.clone(),
            qos,
            payload_len: a.size,
            window: a.window,
            rate: None,
            count: Some(per_pub + u64::from((i as u64) < extra)),
            duration: None,
            drain: ACK_DRAIN,
        };
        tasks.push(tokio::spawn(load::publisher(
            addr,
            version,
            spec,
            shared.clone(),
            go_rx.clone(),
        )));
    }
    while shared.ready.load(Ordering::Relaxed) < p as u64 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let pb = progress_bar(common.progress(), a.messages * (s as u64 + 1));
    let fill_meter = CpuMeter::start(common.broker_pid);
    let t_fill = Instant::now();
    let _ = go_tx.send(true);
    let all = futures_join(tasks);
    tokio::pin!(all);
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    let pub_results = loop {
        tokio::select! {
            r = &mut all => break r?,
            _ = tick.tick() => pb.set_position(shared.acked.load(Ordering::Relaxed)),
        }
    };
    let fill_secs = t_fill.elapsed().as_secs_f64();
    let fill_cpu = fill_meter.stop();
    for r in &pub_results {
        if let Some(e) = &r.error {
            report.error(e.clone());
        }
    }
    let published: u64 = pub_results.iter().map(|r| r.sent).sum();
    let acked: u64 = pub_results.iter().map(|r| r.acked).sum();
    let queued_rss = common.broker_pid.and_then(sys::proc_rss_kib);

    // 3. The subscribers come back and drain their queues.
    let meter = CpuMeter::start(common.broker_pid);
    let (stop_tx, stop_rx) = watch::channel(false);
    let t_drain = Instant::now();
    let mut subs = Vec::new();
    for j in 0..s {
        let resume = ConnectOpts {
            clean_start: false,
            ..persistent_opts(sub_id(j), version)
        };
        let (c, ack) = Conn::connect(addr, version, &resume).await?;
        if !ack.session_present {
            report.error(format!("subscriber {j}: the broker lost its session"));
        }
        subs.push(tokio::spawn(load::subscriber(
            c,
            p,
            shared.clone(),
            stop_rx.clone(),
        )));
    }
    let expected = published * s as u64;
    let mut last = 0;
    let mut last_change = Instant::now();
    loop {
        let d = shared.delivered.load(Ordering::Relaxed);
        pb.set_position(acked + d);
        if d >= expected {
            break;
        }
        if d != last {
            last = d;
            last_change = Instant::now();
        }
        if last_change.elapsed() > IDLE_DRAIN || t_drain.elapsed() > MAX_DRAIN {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let cpu = meter.stop();
    let _ = stop_tx.send(true);
    let mut results = Vec::new();
    for t in subs {
        results.push(t.await?);
    }
    pb.finish_and_clear();
    // 4. End the sessions.
    end_sessions(addr, version, (0..s).map(sub_id).collect()).await;

    let mut delivered = 0u64;
    let mut lost = 0u64;
    let mut dups = 0u64;
    let mut ooo = 0u64;
    for r in &results {
        if let Some(e) = &r.error {
            report.error(format!("subscriber: {e}"));
        }
        for (i, t) in r.tracks.iter().enumerate() {
            let sent = pub_results.get(i).map_or(0, |r| r.sent);
            delivered += t.unique;
            lost += t.missing(sent);
            dups += t.dups;
            ooo += t.out_of_order;
        }
    }
    let last_delivery = results.iter().filter_map(|r| r.last_delivery).max();
    let drain_secs = last_delivery.map_or(0.0, |l| (l - t_drain).as_secs_f64());
    let fill_rate = if fill_secs > 0.0 {
        published as f64 / fill_secs
    } else {
        0.0
    };
    let drain_rate = if drain_secs > 0.0 {
        delivered as f64 / drain_secs
    } else {
        0.0
    };
    report.row(
        "published",
        published,
        "queued (offline)",
        format!(
            "{} in {:.2} s: {}",
            count(published),
            fill_secs,
            rate(fill_rate)
        ),
    );
    report.set("fill_rate", fill_rate.round());
    report.set("acked", acked);
    if let Some(rss) = queued_rss {
        report.row(
            "broker_rss_queued_kib",
            rss,
            "broker memory, queued",
            kib(rss),
        );
    }
    report.line(
        "cpu while queueing",
        format!(
            "generator {:.2} s{}",
            fill_cpu.generator_secs,
            fill_cpu
                .broker_secs
                .map_or(String::new(), |b| format!(", broker {b:.2} s"))
        ),
    );
    report.row(
        "delivered",
        delivered,
        "drained",
        format!(
            "{} of {} in {:.2} s: {}",
            count(delivered),
            count(expected),
            drain_secs,
            rate(drain_rate)
        ),
    );
    report.set("expected", expected);
    report.set("drain_secs", round1(drain_secs * 100.0) / 100.0);
    report.set("drain_rate", drain_rate.round());
    integrity(&mut report, qos, lost, dups, ooo);
    if acked < published {
        report.error(format!(
            "{} message(s) never acknowledged",
            published - acked
        ));
    }
    report.cpu(&cpu, drain_secs, delivered);
    Ok(report)
}
