//! The load generator's side of the wire: a bare MQTT connection over tokio with quartet-proto
//! for the handshake and the acknowledgements, and a hand-written fast path for the one packet
//! that dominates a benchmark, PUBLISH (encoded straight into the write buffer, parsed in
//! place on the way in; both checked against quartet-proto in the tests below).
//!
//! The payload of every benchmark message starts with a [`Stamp`]: publisher id, sequence
//! number and send time, so that subscribers can count lost, duplicated and out-of-order
//! messages per publisher and measure end-to-end latency.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{bail, Context};
use bytes::{Buf, BufMut, BytesMut};
use quartet_proto::{
    decode, encode, ClientId, ConnAck, Connect, ConnectProperties, Disconnect, Limits, Packet,
    PacketId, ProtocolVersion, PubAck, QoS, ReasonCode, Subscribe, SubscribeProperties,
    SubscriptionOptions, TopicFilter,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The bytes at the start of every benchmark payload.
pub const STAMP_LEN: usize = 20;

/// Who sent a message, which one it was, and when (nanoseconds since the run's clock base).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    pub publisher: u32,
    pub seq: u64,
    pub sent_ns: u64,
}

impl Stamp {
    fn put(&self, buf: &mut BytesMut) {
        buf.put_u32_le(self.publisher);
        buf.put_u64_le(self.seq);
        buf.put_u64_le(self.sent_ns);
    }

    fn read(mut b: &[u8]) -> Option<Stamp> {
        if b.len() < STAMP_LEN {
            return None;
        }
        Some(Stamp {
            publisher: b.get_u32_le(),
            seq: b.get_u64_le(),
            sent_ns: b.get_u64_le(),
        })
    }
}

/// Appends one PUBLISH (no DUP, no retain, no properties) whose payload is `stamp` followed
/// by zeros up to `payload_len` bytes.
pub fn put_publish(
    buf: &mut BytesMut,
    version: ProtocolVersion,
    topic: &str,
    qos: QoS,
    packet_id: u16,
    payload_len: usize,
    stamp: &Stamp,
) {
    let payload_len = payload_len.max(STAMP_LEN);
    let remaining = 2
        + topic.len()
        + if qos == QoS::AtMostOnce { 0 } else { 2 }
        + usize::from(version.is_v5())
        + payload_len;
    buf.reserve(5 + remaining);
    buf.put_u8(0x30 | ((qos as u8) << 1));
    put_varint(buf, remaining);
    buf.put_u16(topic.len() as u16);
    buf.put_slice(topic.as_bytes());
    if qos != QoS::AtMostOnce {
        buf.put_u16(packet_id);
    }
    if version.is_v5() {
        buf.put_u8(0);
    }
    stamp.put(buf);
    buf.put_bytes(0, payload_len - STAMP_LEN);
}

fn put_varint(buf: &mut BytesMut, mut n: usize) {
    loop {
        let mut b = (n % 128) as u8;
        n /= 128;
        if n > 0 {
            b |= 0x80;
        }
        buf.put_u8(b);
        if n == 0 {
            break;
        }
    }
}

/// Reads a variable byte integer at the start of `b`: `Ok(None)` if incomplete.
fn varint(b: &[u8]) -> anyhow::Result<Option<(usize, usize)>> {
    let mut n = 0usize;
    for i in 0..4 {
        let Some(&byte) = b.get(i) else {
            return Ok(None);
        };
        n |= usize::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok(Some((n, i + 1)));
        }
    }
    bail!("malformed variable byte integer from the broker")
}

/// One packet as the load generator sees it.
// The large variant is the rare one (acks and CONNACK); boxing it would allocate per ack.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum In {
    /// A PUBLISH, parsed in place: its QoS, packet id (0 at QoS 0) and stamp (`None` if the
    /// payload is not a benchmark payload).
    Publish {
        qos: QoS,
        packet_id: u16,
        stamp: Option<Stamp>,
    },
    /// Anything else, decoded by quartet-proto.
    Other(Packet),
}

/// Takes the next whole packet off the front of `buf`, `Ok(None)` if it is not all there.
pub fn next_packet(
    buf: &mut BytesMut,
    version: ProtocolVersion,
    limits: &Limits,
) -> anyhow::Result<Option<In>> {
    let Some(&first) = buf.first() else {
        return Ok(None);
    };
    if first >> 4 != 3 {
        return decode(buf, version, limits)
            .map(|p| p.map(In::Other))
            .map_err(|e| anyhow::anyhow!("malformed packet from the broker: {e}"));
    }
    let Some((remaining, vlen)) = varint(&buf[1..])? else {
        return Ok(None);
    };
    let total = 1 + vlen + remaining;
    if buf.len() < total {
        buf.reserve(total - buf.len());
        return Ok(None);
    }
    let qos = QoS::from_u8((first >> 1) & 3).context("PUBLISH with QoS 3 from the broker")?;
    let body = &buf[1 + vlen..total];
    let mut at = 0usize;
    let short = || anyhow::anyhow!("PUBLISH from the broker is shorter than its header");
    let tlen = usize::from(u16::from_be_bytes(
        body.get(0..2).ok_or_else(short)?.try_into()?,
    ));
    at += 2 + tlen;
    let mut packet_id = 0;
    if qos != QoS::AtMostOnce {
        packet_id = u16::from_be_bytes(body.get(at..at + 2).ok_or_else(short)?.try_into()?);
        at += 2;
    }
    if version.is_v5() {
        let (plen, n) = varint(body.get(at..).ok_or_else(short)?)?.ok_or_else(short)?;
        at += n + plen;
    }
    let stamp = Stamp::read(body.get(at..).ok_or_else(short)?);
    buf.advance(total);
    Ok(Some(In::Publish {
        qos,
        packet_id,
        stamp,
    }))
}

/// How a benchmark client connects.
#[derive(Debug, Clone)]
pub struct ConnectOpts {
    pub client_id: String,
    pub clean_start: bool,
    /// v5 Session Expiry Interval (3.1.1 has the clean-session flag only).
    pub session_expiry_secs: Option<u32>,
    pub keep_alive_secs: u16,
}

/// A connected client: the socket, its buffers and the protocol version.
#[derive(Debug)]
pub struct Conn {
    pub stream: TcpStream,
    pub rbuf: BytesMut,
    pub wbuf: BytesMut,
    pub version: ProtocolVersion,
    pub limits: Limits,
}

/// How long the handshake and SUBSCRIBE may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

impl Conn {
    /// TCP connect, CONNECT, CONNACK. Fails on a refusal.
    pub async fn connect(
        addr: SocketAddr,
        version: ProtocolVersion,
        opts: &ConnectOpts,
    ) -> anyhow::Result<(Conn, ConnAck)> {
        let stream = tokio::time::timeout(HANDSHAKE_TIMEOUT, TcpStream::connect(addr))
            .await
            .with_context(|| format!("connecting to {addr} timed out"))?
            .with_context(|| format!("cannot connect to {addr}"))?;
        Conn::handshake(stream, version, opts).await
    }

    /// CONNECT and CONNACK on an open socket.
    pub async fn handshake(
        stream: TcpStream,
        version: ProtocolVersion,
        opts: &ConnectOpts,
    ) -> anyhow::Result<(Conn, ConnAck)> {
        stream.set_nodelay(true)?;
        let mut conn = Conn {
            stream,
            rbuf: BytesMut::with_capacity(16 * 1024),
            wbuf: BytesMut::with_capacity(16 * 1024),
            version,
            limits: Limits::default(),
        };
        let properties = if version.is_v5() {
            ConnectProperties {
                session_expiry_interval: opts.session_expiry_secs,
                // Let the broker send as much as its own limits allow.
                receive_maximum: Some(u16::MAX),
                ..ConnectProperties::default()
            }
        } else {
            ConnectProperties::default()
        };
        conn.send(&Packet::Connect(Box::new(Connect {
            protocol: version,
            clean_start: opts.clean_start,
            keep_alive: opts.keep_alive_secs,
            client_id: ClientId::new(opts.client_id.as_str()),
            will: None,
            username: None,
            password: None,
            properties,
        })))
        .await?;
        let ack = match conn.recv_timeout().await? {
            Packet::ConnAck(a) => a,
            other => bail!("expected CONNACK, got {}", other.packet_type().name()),
        };
        if ack.reason.is_error() {
            bail!("connection refused: {:?}", ack.reason);
        }
        Ok((conn, ack))
    }

    /// Encodes and writes one packet now.
    pub async fn send(&mut self, p: &Packet) -> anyhow::Result<()> {
        encode(p, self.version, &mut self.wbuf).context("cannot encode")?;
        self.flush().await
    }

    /// Writes the whole write buffer.
    pub async fn flush(&mut self) -> anyhow::Result<()> {
        self.stream
            .write_all(&self.wbuf)
            .await
            .context("write to the broker failed")?;
        self.wbuf.clear();
        Ok(())
    }

    /// Reads until a whole packet is there (the handshake's slow path).
    pub async fn recv(&mut self) -> anyhow::Result<Packet> {
        loop {
            if let Some(p) = decode(&mut self.rbuf, self.version, &self.limits)
                .map_err(|e| anyhow::anyhow!("malformed packet from the broker: {e}"))?
            {
                return Ok(p);
            }
            if self.stream.read_buf(&mut self.rbuf).await? == 0 {
                bail!("the broker closed the connection");
            }
        }
    }

    async fn recv_timeout(&mut self) -> anyhow::Result<Packet> {
        tokio::time::timeout(HANDSHAKE_TIMEOUT, self.recv())
            .await
            .context("no answer from the broker")?
    }

    /// SUBSCRIBE to `filters` at `qos` and wait for SUBACK; fails if any filter is refused.
    pub async fn subscribe(&mut self, filters: &[String], qos: QoS) -> anyhow::Result<()> {
        let filters = filters
            .iter()
            .map(|f| {
                TopicFilter::new(f.as_str())
                    .map(|tf| {
                        (
                            tf,
                            SubscriptionOptions {
                                qos,
                                ..SubscriptionOptions::default()
                            },
                        )
                    })
                    .map_err(|e| anyhow::anyhow!("bad topic filter {f:?}: {e}"))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let packet_id = PacketId::MIN;
        self.send(&Packet::Subscribe(Subscribe {
            packet_id,
            filters,
            properties: SubscribeProperties::default(),
        }))
        .await?;
        loop {
            match self.recv_timeout().await? {
                Packet::SubAck(a) if a.packet_id == packet_id => {
                    if let Some(r) = a.reasons.iter().find(|r| r.is_error()) {
                        bail!("subscription refused: {r:?}");
                    }
                    return Ok(());
                }
                // A retained message or a queued one may come first; the caller's loop
                // will not see it, which is fine for benchmark topics (never retained).
                Packet::Publish(_) => {}
                other => bail!("expected SUBACK, got {}", other.packet_type().name()),
            }
        }
    }

    /// DISCONNECT (normal) and close.
    pub async fn disconnect(mut self) {
        let _ = encode(
            &Packet::Disconnect(Disconnect {
                reason: ReasonCode::NORMAL_DISCONNECTION,
                properties: Default::default(),
            }),
            self.version,
            &mut self.wbuf,
        );
        let _ = self.flush().await;
        let _ = self.stream.shutdown().await;
    }
}

/// Appends an acknowledgement (PUBACK/PUBREC/PUBREL/PUBCOMP) for `packet_id`.
pub fn put_ack(
    buf: &mut BytesMut,
    version: ProtocolVersion,
    kind: fn(PubAck) -> Packet,
    packet_id: u16,
) -> anyhow::Result<()> {
    let pid = PacketId::new(packet_id).context("packet id 0")?;
    encode(&kind(PubAck::new(pid)), version, buf).context("cannot encode an ack")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use quartet_proto::{Publish, PublishProperties, TopicName};

    #[test]
    fn fast_publish_matches_the_codec() {
        for version in [ProtocolVersion::V311, ProtocolVersion::V5] {
            for qos in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
                for len in [20usize, 64, 200, 20_000] {
                    let stamp = Stamp {
                        publisher: 7,
                        seq: 123_456_789,
                        sent_ns: 42,
                    };
                    let mut fast = BytesMut::new();
                    let pid = if qos == QoS::AtMostOnce { 0 } else { 513 };
                    put_publish(&mut fast, version, "a/b/c", qos, pid, len, &stamp);
                    let mut payload = BytesMut::new();
                    stamp.put(&mut payload);
                    payload.put_bytes(0, len - STAMP_LEN);
                    let p = Packet::Publish(Publish {
                        dup: false,
                        qos,
                        retain: false,
                        topic: TopicName::new("a/b/c").unwrap(),
                        packet_id: PacketId::new(pid),
                        properties: PublishProperties::default(),
                        payload: payload.freeze(),
                    });
                    let mut slow = BytesMut::new();
                    encode(&p, version, &mut slow).unwrap();
                    assert_eq!(fast, slow, "{version} {qos:?} {len}");

                    // In place parsing, whole and cut short.
                    let limits = Limits::default();
                    let mut part = BytesMut::from(&slow[..slow.len() - 1]);
                    assert!(next_packet(&mut part, version, &limits).unwrap().is_none());
                    let mut whole = slow.clone();
                    whole.put_u8(0xC0); // PINGREQ after it
                    whole.put_u8(0);
                    match next_packet(&mut whole, version, &limits).unwrap() {
                        Some(In::Publish {
                            qos: q,
                            packet_id,
                            stamp: s,
                        }) => {
                            assert_eq!((q, packet_id, s), (qos, pid, Some(stamp)));
                        }
                        other => panic!("{other:?}"),
                    }
                    assert!(matches!(
                        next_packet(&mut whole, version, &limits).unwrap(),
                        Some(In::Other(Packet::PingReq))
                    ));
                    assert!(whole.is_empty());
                }
            }
        }
    }
}
