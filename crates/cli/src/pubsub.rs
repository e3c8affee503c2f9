//! `quartet pub` and `quartet sub`: mosquitto_pub / mosquitto_sub on `quartet-client`, with
//! durable client state (`--state-dir`), JSON output and a view of the QoS 1/2 handshakes
//! (`--trace`).

use std::collections::HashMap;
use std::io::{BufRead, Read, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use quartet_client::{
    Client, ConnectOptions, Delivery, Direction, LastWill, OutgoingMessage, ProtocolVersion,
    PublishProperties, QoS, RetainHandling, Subscription, TraceEvent, WillProperties,
};
use quartet_proto::bytes::Bytes;
use quartet_proto::{PacketType, SubscribeProperties, TopicName};
use serde_json::{json, Map, Value};

/// Flags shared by `pub` and `sub`, named as mosquitto_pub/sub name them.
#[derive(Debug, clap::Args)]
pub(crate) struct ConnArgs {
    /// Broker host.
    #[arg(short = 'h', long = "host", default_value = "localhost")]
    host: String,
    /// Broker port.
    #[arg(short = 'p', long = "port", default_value_t = 1883)]
    port: u16,
    /// Client id (default: quartet-pub-PID / quartet-sub-PID).
    #[arg(short = 'i', long = "id")]
    id: Option<String>,
    /// User name.
    #[arg(short = 'u', long = "username")]
    username: Option<String>,
    /// Password.
    #[arg(short = 'P', long = "pw")]
    password: Option<String>,
    /// Keep alive in seconds.
    #[arg(short = 'k', long = "keepalive", default_value_t = 60)]
    keepalive: u16,
    /// Protocol version: 311 (mqttv311) or 5 (mqttv5).
    #[arg(short = 'V', long = "protocol-version", default_value = "5", value_parser = parse_version)]
    version: ProtocolVersion,
    /// Disable clean session / clean start: a persistent session (v5: expiry from -x, or
    /// never expiring).
    #[arg(short = 'c', long = "disable-clean-session")]
    persistent: bool,
    /// v5 session expiry interval in seconds.
    #[arg(short = 'x', long = "session-expiry-interval")]
    session_expiry: Option<u32>,
    /// Will topic.
    #[arg(long = "will-topic")]
    will_topic: Option<String>,
    /// Will payload.
    #[arg(long = "will-payload")]
    will_payload: Option<String>,
    /// Will QoS.
    #[arg(long = "will-qos", default_value_t = 0, value_parser = parse_qos)]
    will_qos: u8,
    /// Retain the will.
    #[arg(long = "will-retain")]
    will_retain: bool,
    /// v5 property: -D COMMAND NAME VALUE (user-property takes NAME KEY VALUE), e.g.
    /// `-D publish message-expiry-interval 60`, `-D connect user-property a b`.
    #[arg(short = 'D', long = "property", num_args = 3..=4, value_names = ["COMMAND", "NAME", "VALUE"], action = clap::ArgAction::Append)]
    properties: Vec<String>,
    /// Keep the client's QoS 1/2 state in DIR: packet ids and messages survive kill -9.
    #[arg(long = "state-dir", value_name = "DIR")]
    state_dir: Option<PathBuf>,
    /// Print help.
    #[arg(long = "help", action = clap::ArgAction::Help)]
    help: Option<bool>,
}

#[derive(Debug, clap::Args)]
#[command(disable_help_flag = true)]
pub(crate) struct PubArgs {
    #[command(flatten)]
    conn: ConnArgs,
    /// Topic to publish to.
    #[arg(short = 't', long = "topic")]
    topic: String,
    /// Message payload.
    #[arg(short = 'm', long = "message", group = "payload")]
    message: Option<String>,
    /// Send the contents of FILE as the message.
    #[arg(short = 'f', long = "file", group = "payload")]
    file: Option<PathBuf>,
    /// Send each line of stdin as a message.
    #[arg(short = 'l', long = "stdin-line", group = "payload")]
    lines: bool,
    /// Send all of stdin as one message.
    #[arg(short = 's', long = "stdin-file", group = "payload")]
    stdin: bool,
    /// Send an empty message.
    #[arg(short = 'n', long = "null-message", group = "payload")]
    null: bool,
    /// QoS.
    #[arg(short = 'q', long = "qos", default_value_t = 0, value_parser = parse_qos)]
    qos: u8,
    /// Retain the message.
    #[arg(short = 'r', long = "retain")]
    retain: bool,
    /// Publish the message this many times.
    #[arg(long = "repeat", default_value_t = 1)]
    repeat: u32,
    /// Seconds between repeats.
    #[arg(long = "repeat-delay", default_value_t = 0.0)]
    repeat_delay: f64,
}

#[derive(Debug, clap::Args)]
#[command(disable_help_flag = true)]
pub(crate) struct SubArgs {
    #[command(flatten)]
    conn: ConnArgs,
    /// Topic filter to subscribe to; repeat for several.
    #[arg(short = 't', long = "topic", required = true)]
    topics: Vec<String>,
    /// Maximum QoS of the subscriptions.
    #[arg(short = 'q', long = "qos", default_value_t = 0, value_parser = parse_qos)]
    qos: u8,
    /// Print the topic before the payload.
    #[arg(short = 'v', long = "verbose")]
    verbose: bool,
    /// Exit after this many messages.
    #[arg(short = 'C', long = "count")]
    count: Option<u64>,
    /// Exit after this many seconds.
    #[arg(short = 'W', long = "timeout")]
    timeout: Option<u64>,
    /// No newline after each payload.
    #[arg(short = 'N')]
    no_newline: bool,
    /// Do not print retained (stale) messages.
    #[arg(short = 'R')]
    no_retained: bool,
    /// v5 No Local: do not receive our own messages.
    #[arg(long = "nl")]
    no_local: bool,
    /// v5 Retain As Published.
    #[arg(long = "rap")]
    retain_as_published: bool,
    /// v5 Retain Handling: 0 send retained, 1 only for a new subscription, 2 never.
    #[arg(long = "retain-handling", default_value_t = 0)]
    retain_handling: u8,
    /// One JSON object per message: topic, qos, retain, dup, id, properties, payload (text)
    /// or payload_base64.
    #[arg(long = "json")]
    json: bool,
    /// Show each QoS 1/2 exchange step by step (PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP:
    /// direction, packet id, time); as JSON with --json.
    #[arg(long = "trace")]
    trace: bool,
}

fn parse_version(s: &str) -> Result<ProtocolVersion, String> {
    match s {
        "311" | "mqttv311" | "4" => Ok(ProtocolVersion::V311),
        "5" | "mqttv5" => Ok(ProtocolVersion::V5),
        "31" | "mqttv31" => {
            Err("MQTT 3.1 is not supported by quartet pub/sub: use 311 or 5".into())
        }
        other => Err(format!("unknown protocol version {other:?}: use 311 or 5")),
    }
}

fn parse_qos(s: &str) -> Result<u8, String> {
    match s {
        "0" | "1" | "2" => Ok(s.as_bytes()[0] - b'0'),
        other => Err(format!("QoS must be 0, 1 or 2, not {other:?}")),
    }
}

fn qos(v: u8) -> QoS {
    QoS::from_u8(v).unwrap_or(QoS::AtMostOnce)
}

/// The -D properties, sorted by the packet they go into.
#[derive(Debug, Default)]
struct V5Props {
    connect_user: Vec<(String, String)>,
    session_expiry: Option<u32>,
    receive_maximum: Option<u16>,
    maximum_packet_size: Option<u32>,
    topic_alias_maximum: Option<u16>,
    publish: PublishProperties,
    will: WillProperties,
    subscribe: SubscribeProperties,
}

fn num<T: std::str::FromStr>(name: &str, v: &str) -> anyhow::Result<T> {
    v.parse()
        .map_err(|_| anyhow!("-D {name}: {v:?} is not a valid number"))
}

/// Splits the values of every -D back into groups: COMMAND NAME VALUE, or COMMAND
/// user-property KEY VALUE.
fn group_props(flat: &[String]) -> anyhow::Result<Vec<Vec<String>>> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < flat.len() {
        let n = if flat.get(i + 1).map(String::as_str) == Some("user-property") {
            4
        } else {
            3
        };
        let Some(g) = flat.get(i..i + n) else {
            bail!("-D {}: missing a value", flat[i..].join(" "));
        };
        out.push(g.to_vec());
        i += n;
    }
    Ok(out)
}

fn parse_props(flat: &[String], version: ProtocolVersion) -> anyhow::Result<V5Props> {
    let mut p = V5Props::default();
    if !flat.is_empty() && version != ProtocolVersion::V5 {
        bail!("-D sets MQTT 5 properties: it needs -V 5");
    }
    for a in &group_props(flat)? {
        let (cmd, name) = (a[0].as_str(), a[1].as_str());
        let value = a[2].as_str();
        let pair = || -> anyhow::Result<(String, String)> {
            match a.get(3) {
                Some(v) => Ok((value.to_owned(), v.clone())),
                None => bail!("-D {cmd} user-property needs a key and a value"),
            }
        };
        if name != "user-property" && a.len() == 4 {
            bail!("-D {cmd} {name} takes one value");
        }
        match (cmd, name) {
            ("connect", "user-property") => p.connect_user.push(pair()?),
            ("connect", "session-expiry-interval") => p.session_expiry = Some(num(name, value)?),
            ("connect", "receive-maximum") => p.receive_maximum = Some(num(name, value)?),
            ("connect", "maximum-packet-size") => p.maximum_packet_size = Some(num(name, value)?),
            ("connect", "topic-alias-maximum") => p.topic_alias_maximum = Some(num(name, value)?),
            ("publish", "user-property") => {
                let (k, v) = pair()?;
                p.publish.user_properties.push((k.into(), v.into()));
            }
            ("publish", "payload-format-indicator") => {
                p.publish.payload_format_indicator = Some(num::<u8>(name, value)? == 1)
            }
            ("publish", "message-expiry-interval") => {
                p.publish.message_expiry_interval = Some(num(name, value)?)
            }
            ("publish", "content-type") => p.publish.content_type = Some(value.into()),
            ("publish", "response-topic") => {
                p.publish.response_topic = Some(
                    TopicName::new(value)
                        .map_err(|e| anyhow!("-D publish response-topic {value:?}: {e}"))?,
                )
            }
            ("publish", "correlation-data") => {
                p.publish.correlation_data = Some(Bytes::copy_from_slice(value.as_bytes()))
            }
            ("publish", "topic-alias") => {} // the client assigns aliases itself
            ("will", "user-property") => {
                let (k, v) = pair()?;
                p.will.user_properties.push((k.into(), v.into()));
            }
            ("will", "will-delay-interval") => p.will.will_delay_interval = Some(num(name, value)?),
            ("will", "payload-format-indicator") => {
                p.will.payload_format_indicator = Some(num::<u8>(name, value)? == 1)
            }
            ("will", "message-expiry-interval") => {
                p.will.message_expiry_interval = Some(num(name, value)?)
            }
            ("will", "content-type") => p.will.content_type = Some(value.into()),
            ("will", "response-topic") => {
                p.will.response_topic = Some(
                    TopicName::new(value)
                        .map_err(|e| anyhow!("-D will response-topic {value:?}: {e}"))?,
                )
            }
            ("will", "correlation-data") => {
                p.will.correlation_data = Some(Bytes::copy_from_slice(value.as_bytes()))
            }
            ("subscribe", "subscription-identifier") => {
                p.subscribe.subscription_identifier = Some(num(name, value)?)
            }
            ("subscribe", "user-property") => {
                let (k, v) = pair()?;
                p.subscribe.user_properties.push((k.into(), v.into()));
            }
            _ => bail!(
                "-D {cmd} {name}: unknown property (commands: connect, publish, subscribe, will)"
            ),
        }
    }
    Ok(p)
}

fn options(c: &ConnArgs, default_prefix: &str, props: &V5Props) -> anyhow::Result<ConnectOptions> {
    let id =
        c.id.clone()
            .unwrap_or_else(|| format!("{default_prefix}-{}", std::process::id()));
    if c.state_dir.is_some() && c.id.is_none() {
        bail!("--state-dir needs a client id (-i): the state belongs to one session");
    }
    let mut o = ConnectOptions::new(format!("{}:{}", c.host, c.port), id);
    o.version = c.version;
    o.keep_alive_secs = c.keepalive;
    o.username = c.username.clone();
    o.password = c.password.clone().map(Bytes::from);
    o.clean_start = !c.persistent;
    o.session_expiry_secs = match (c.version, c.session_expiry.or(props.session_expiry)) {
        (ProtocolVersion::V5, Some(x)) => x,
        (ProtocolVersion::V5, None) if c.persistent => u32::MAX,
        _ => 0,
    };
    o.state_dir = c.state_dir.clone();
    if let Some(r) = props.receive_maximum {
        o.receive_maximum = r.max(1);
    }
    o.max_packet_size = props.maximum_packet_size;
    if let Some(t) = props.topic_alias_maximum {
        o.topic_alias_maximum = t;
    }
    o.user_properties = props
        .connect_user
        .iter()
        .map(|(k, v)| (k.as_str().into(), v.as_str().into()))
        .collect();
    o.will = match (&c.will_topic, &c.will_payload) {
        (Some(t), p) => Some(LastWill {
            topic: t.clone(),
            payload: p.clone().map(Bytes::from).unwrap_or_default(),
            qos: qos(c.will_qos),
            retain: c.will_retain,
            properties: props.will.clone(),
        }),
        (None, Some(_)) => bail!("--will-payload needs --will-topic"),
        (None, None) => None,
    };
    Ok(o)
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

fn refused(ack: &quartet_client::PublishAck) -> anyhow::Error {
    let mut s = format!(
        "the broker refused the message: reason 0x{:02X}",
        ack.reason.as_u8()
    );
    if let Some(r) = &ack.reason_string {
        s.push_str(&format!(" ({r})"));
    }
    anyhow!(s)
}

// ---------------------------------------------------------------------------------------
// pub

pub(crate) fn run_pub(a: PubArgs) -> anyhow::Result<()> {
    let props = parse_props(&a.conn.properties, a.conn.version)?;
    let mut o = options(&a.conn, "quartet-pub", &props)?;
    // One-shot publishes fail fast; a stream of lines rides out broker restarts.
    o.reconnect.enabled = a.lines;
    let topic = a.topic.clone();
    TopicName::new(topic.as_str()).map_err(|e| anyhow!("bad topic {topic:?}: {e}"))?;
    let single: Option<Bytes> = if let Some(m) = &a.message {
        Some(Bytes::from(m.clone()))
    } else if let Some(f) = &a.file {
        Some(Bytes::from(
            std::fs::read(f).with_context(|| format!("cannot read {}", f.display()))?,
        ))
    } else if a.stdin {
        let mut v = Vec::new();
        std::io::stdin()
            .read_to_end(&mut v)
            .context("cannot read stdin")?;
        Some(Bytes::from(v))
    } else if a.null {
        Some(Bytes::new())
    } else if a.lines {
        None
    } else {
        bail!("nothing to publish: give one of -m, -f, -l, -s, -n");
    };
    let msg = |payload: Bytes| OutgoingMessage {
        topic: topic.clone(),
        payload,
        qos: qos(a.qos),
        retain: a.retain,
        properties: props.publish.clone(),
    };
    runtime()?.block_on(async move {
        let (client, _incoming) = Client::connect(o).await?;
        let mut pending = Vec::new();
        match single {
            Some(payload) => {
                for i in 0..a.repeat.max(1) {
                    if i > 0 && a.repeat_delay > 0.0 {
                        tokio::time::sleep(Duration::from_secs_f64(a.repeat_delay)).await;
                    }
                    pending.push(client.send(msg(payload.clone())).await?);
                }
            }
            None => {
                // stdin is read on a thread; lines arrive over a channel.
                let (tx, mut rx) = tokio::sync::mpsc::channel::<std::io::Result<String>>(64);
                std::thread::spawn(move || {
                    for line in std::io::stdin().lock().lines() {
                        if tx.blocking_send(line).is_err() {
                            return;
                        }
                    }
                });
                while let Some(line) = rx.recv().await {
                    let line = line.context("cannot read stdin")?;
                    pending.push(client.send(msg(Bytes::from(line))).await?);
                    // Keep the list of futures short: settle those already answered.
                    if pending.len() >= 1024 {
                        for p in pending.drain(..) {
                            let ack = p.acknowledged().await?;
                            if !ack.is_success() {
                                return Err(refused(&ack));
                            }
                        }
                    }
                }
            }
        }
        for p in pending {
            let ack = p.acknowledged().await?;
            if !ack.is_success() {
                return Err(refused(&ack));
            }
        }
        // Messages resumed from --state-dir are acknowledged too before we leave.
        client.drain().await?;
        client.disconnect().await?;
        Ok(())
    })
}

// ---------------------------------------------------------------------------------------
// sub

pub(crate) fn run_sub(a: SubArgs) -> anyhow::Result<()> {
    let props = parse_props(&a.conn.properties, a.conn.version)?;
    let mut o = options(&a.conn, "quartet-sub", &props)?;
    // The message is printed (and stdout flushed) before it is acknowledged.
    o.manual_ack = true;
    if a.retain_handling > 2 {
        bail!("--retain-handling must be 0, 1 or 2");
    }
    let subs: Vec<Subscription> = a
        .topics
        .iter()
        .map(|t| {
            let mut s = Subscription::new(t.clone(), qos(a.qos));
            s.options.no_local = a.no_local;
            s.options.retain_as_published = a.retain_as_published;
            s.options.retain_handling = match a.retain_handling {
                1 => RetainHandling::SendIfNew,
                2 => RetainHandling::DoNotSend,
                _ => RetainHandling::SendAtSubscribe,
            };
            s
        })
        .collect();
    if a.trace {
        o.trace = Some(tracer(a.json));
    }
    runtime()?.block_on(async move {
        let (client, mut incoming) = Client::connect(o).await?;
        let granted = client
            .subscribe_with(&subs, props.subscribe.clone())
            .await?;
        for (s, r) in subs.iter().zip(&granted) {
            if r.is_error() {
                bail!(
                    "the broker refused the subscription to {:?}: reason 0x{:02X}",
                    s.filter,
                    r.as_u8()
                );
            }
        }
        let deadline = a
            .timeout
            .map(|s| tokio::time::Instant::now() + Duration::from_secs(s));
        let mut seen = 0u64;
        let stdout = std::io::stdout();
        loop {
            if a.count.is_some_and(|c| seen >= c) {
                break;
            }
            let d = tokio::select! {
                d = incoming.recv() => d,
                _ = sleep_until(deadline) => {
                    if let Some(c) = a.count {
                        client.disconnect().await?;
                        bail!("timed out after {} s with {seen} of {c} messages", a.timeout.unwrap_or(0));
                    }
                    break;
                }
                _ = tokio::signal::ctrl_c() => break,
            };
            let Some(d) = d else {
                return Err(match incoming.take_error() {
                    Some(e) => anyhow::Error::from(e),
                    None => anyhow!("the client stopped"),
                });
            };
            if a.no_retained && d.message.retain {
                d.ack()?;
                continue;
            }
            {
                let mut out = stdout.lock();
                let line = if a.json {
                    let mut s = message_json(&d).to_string();
                    s.push('\n');
                    s.into_bytes()
                } else {
                    let mut v = Vec::new();
                    if a.verbose {
                        v.extend_from_slice(d.message.topic.as_bytes());
                        v.push(b' ');
                    }
                    v.extend_from_slice(&d.message.payload);
                    if !a.no_newline {
                        v.push(b'\n');
                    }
                    v
                };
                out.write_all(&line)
                    .and_then(|_| out.flush())
                    .context("cannot write to stdout")?;
            }
            d.ack()?;
            seen += 1;
        }
        // Let the QoS 2 exchanges of what was printed finish (PUBREL, PUBCOMP) before leaving.
        let mut status = client.status();
        let _ = tokio::time::timeout(
            Duration::from_secs(2),
            status.wait_for(|s| s.inbound == 0 || !s.connected),
        )
        .await;
        client.disconnect().await?;
        Ok(())
    })
}

async fn sleep_until(t: Option<tokio::time::Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

/// Base64 (RFC 4648, with padding) for binary payloads in JSON.
pub(crate) fn base64(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                s.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                s.push('=');
            }
        }
    }
    s
}

fn bytes_json(b: &[u8]) -> Value {
    match std::str::from_utf8(b) {
        Ok(s) => Value::String(s.to_owned()),
        Err(_) => json!({ "base64": base64(b) }),
    }
}

fn message_json(d: &Delivery) -> Value {
    let m = &d.message;
    let mut o = Map::new();
    o.insert("topic".into(), json!(m.topic));
    o.insert("qos".into(), json!(m.qos as u8));
    o.insert("retain".into(), json!(m.retain));
    o.insert("dup".into(), json!(m.dup));
    if let Some(pid) = m.packet_id {
        o.insert("packet_id".into(), json!(pid.get()));
    }
    if let Some(id) = &d.id {
        o.insert("id".into(), json!(id.to_string()));
    }
    if d.redelivered {
        o.insert("redelivered".into(), json!(true));
    }
    let p = &m.properties;
    let mut props = Map::new();
    if let Some(v) = p.payload_format_indicator {
        props.insert("payload_format_indicator".into(), json!(u8::from(v)));
    }
    if let Some(v) = p.message_expiry_interval {
        props.insert("message_expiry_interval".into(), json!(v));
    }
    if let Some(v) = &p.content_type {
        props.insert("content_type".into(), json!(&**v));
    }
    if let Some(v) = &p.response_topic {
        props.insert("response_topic".into(), json!(v.as_str()));
    }
    if let Some(v) = &p.correlation_data {
        props.insert("correlation_data".into(), bytes_json(v));
    }
    if !p.subscription_identifiers.is_empty() {
        props.insert(
            "subscription_identifiers".into(),
            json!(p.subscription_identifiers),
        );
    }
    if !p.user_properties.is_empty() {
        let v: Vec<Value> = p
            .user_properties
            .iter()
            .map(|(k, v)| json!([&**k, &**v]))
            .collect();
        props.insert("user_properties".into(), Value::Array(v));
    }
    if !props.is_empty() {
        o.insert("properties".into(), Value::Object(props));
    }
    match std::str::from_utf8(&m.payload) {
        Ok(s) => o.insert("payload".into(), json!(s)),
        Err(_) => o.insert("payload_base64".into(), json!(base64(&m.payload))),
    };
    Value::Object(o)
}

/// The `--trace` printer: one line per protocol step, with the time since the exchange's
/// PUBLISH.
fn tracer(as_json: bool) -> quartet_client::TraceFn {
    // (direction of the PUBLISH, packet id) -> time of the PUBLISH.
    let starts: Mutex<HashMap<(bool, u16), Duration>> = Mutex::new(HashMap::new());
    Arc::new(move |e: &TraceEvent| {
        let out = e.direction == Direction::Out;
        // Which exchange the packet belongs to: the direction its PUBLISH travelled.
        let publish_out = match e.packet {
            PacketType::Publish | PacketType::PubRel => out,
            PacketType::PubAck | PacketType::PubRec | PacketType::PubComp => !out,
            _ => out,
        };
        let since = match (e.packet, e.packet_id) {
            (PacketType::Publish, Some(pid)) => {
                if let Ok(mut s) = starts.lock() {
                    s.insert((publish_out, pid), e.elapsed);
                }
                Some(Duration::ZERO)
            }
            (
                PacketType::PubAck | PacketType::PubRec | PacketType::PubRel | PacketType::PubComp,
                Some(pid),
            ) => {
                let mut s = starts.lock().ok();
                let start = s.as_mut().and_then(|s| {
                    let t = s.get(&(publish_out, pid)).copied();
                    if matches!(e.packet, PacketType::PubAck | PacketType::PubComp) {
                        s.remove(&(publish_out, pid));
                    }
                    t
                });
                start.map(|t| e.elapsed.saturating_sub(t))
            }
            _ => None,
        };
        let line = if as_json {
            let mut o = Map::new();
            o.insert("trace".into(), json!(e.packet.name()));
            o.insert("dir".into(), json!(if out { "out" } else { "in" }));
            o.insert("t_ms".into(), json!(e.elapsed.as_secs_f64() * 1000.0));
            if let Some(pid) = e.packet_id {
                o.insert("packet_id".into(), json!(pid));
            }
            if let Some(s) = since {
                o.insert("since_publish_ms".into(), json!(s.as_secs_f64() * 1000.0));
            }
            if let Some(q) = e.qos {
                o.insert("qos".into(), json!(q as u8));
            }
            if e.dup {
                o.insert("dup".into(), json!(true));
            }
            if let Some(t) = &e.topic {
                o.insert("topic".into(), json!(t));
            }
            if let Some(r) = e.reason {
                o.insert("reason".into(), json!(r.as_u8()));
            }
            if let Some(n) = e.note {
                o.insert("note".into(), json!(n));
            }
            Value::Object(o).to_string()
        } else {
            let mut s = format!(
                "[{:>9.3} ms] {} {:<11}",
                e.elapsed.as_secs_f64() * 1000.0,
                if out {
                    "client -> broker"
                } else {
                    "broker -> client"
                },
                e.packet.name()
            );
            if let Some(pid) = e.packet_id {
                s.push_str(&format!(" id={pid}"));
            }
            if let Some(q) = e.qos {
                s.push_str(&format!(" qos={}", q as u8));
            }
            if e.dup {
                s.push_str(" dup");
            }
            if let Some(t) = &e.topic {
                s.push_str(&format!(" topic={t}"));
            }
            if let Some(r) = e.reason.filter(|r| r.as_u8() != 0) {
                s.push_str(&format!(" reason=0x{:02X}", r.as_u8()));
            }
            if let Some(d) = since.filter(|_| e.packet != PacketType::Publish) {
                s.push_str(&format!(
                    " (+{:.3} ms after PUBLISH)",
                    d.as_secs_f64() * 1000.0
                ));
            }
            if let Some(n) = e.note {
                s.push_str(&format!(" [{n}]"));
            }
            s
        };
        let stdout = std::io::stdout();
        let mut o = stdout.lock();
        let _ = writeln!(o, "{line}");
        let _ = o.flush();
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648() {
        for (i, o) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(i.as_bytes()), o);
        }
    }
}
