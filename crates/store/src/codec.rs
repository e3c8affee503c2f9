//! The binary encoding of [`Op`]s in the log. Little-endian integers; strings and byte
//! fields carry a u32 length. Every record of the log is a [`Batch`] encoded here, framed and
//! checksummed by [`crate::log`].

use bytes::{BufMut, Bytes, BytesMut};
use bytestring::ByteString;
use quartet_proto::{
    ClientId, PacketId, ProtocolVersion, PublishProperties, QoS, RetainHandling,
    SubscriptionOptions, TopicFilter, TopicName,
};

use crate::model::*;

/// Why a record's content does not decode (its checksum was right, so this is a bug or a
/// record from another format version).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("undecodable record: {0}")]
pub struct RecordError(pub &'static str);

type R<T> = Result<T, RecordError>;

fn put_bytes(b: &mut BytesMut, v: &[u8]) {
    b.put_u32_le(v.len() as u32);
    b.put_slice(v);
}

fn put_opt_u32(b: &mut BytesMut, v: Option<u32>) {
    match v {
        Some(v) => {
            b.put_u8(1);
            b.put_u32_le(v);
        }
        None => b.put_u8(0),
    }
}

fn put_opt_u64(b: &mut BytesMut, v: Option<u64>) {
    match v {
        Some(v) => {
            b.put_u8(1);
            b.put_u64_le(v);
        }
        None => b.put_u8(0),
    }
}

fn put_opt_bytes(b: &mut BytesMut, v: Option<&[u8]>) {
    match v {
        Some(v) => {
            b.put_u8(1);
            put_bytes(b, v);
        }
        None => b.put_u8(0),
    }
}

fn options_byte(o: &SubscriptionOptions) -> u8 {
    (o.qos as u8)
        | (u8::from(o.no_local) << 2)
        | (u8::from(o.retain_as_published) << 3)
        | ((o.retain_handling as u8) << 4)
}

fn put_message(b: &mut BytesMut, m: &Message) {
    put_bytes(b, m.topic.as_str().as_bytes());
    put_bytes(b, &m.payload);
    b.put_u8(m.qos as u8);
    b.put_u8(u8::from(m.retain));
    put_opt_u64(b, m.expires_at);
    let p = &m.properties;
    b.put_u8(match p.payload_format_indicator {
        None => 0,
        Some(false) => 1,
        Some(true) => 2,
    });
    put_opt_u32(b, p.message_expiry_interval);
    put_opt_bytes(b, p.response_topic.as_ref().map(|t| t.as_str().as_bytes()));
    put_opt_bytes(b, p.correlation_data.as_deref());
    put_opt_bytes(b, p.content_type.as_ref().map(|s| s.as_bytes().as_ref()));
    b.put_u32_le(p.user_properties.len() as u32);
    for (k, v) in &p.user_properties {
        put_bytes(b, k.as_bytes());
        put_bytes(b, v.as_bytes());
    }
}

/// Appends the encoding of one op.
pub fn put_op(b: &mut BytesMut, op: &Op) {
    match op {
        Op::PutSession(s) => {
            b.put_u8(1);
            put_bytes(b, s.client_id.as_str().as_bytes());
            b.put_u32_le(s.expiry_interval_secs);
            b.put_u8(s.protocol.level());
            put_opt_u64(b, s.disconnected_at);
            match &s.will {
                Some(w) => {
                    b.put_u8(1);
                    b.put_u32_le(w.delay_secs);
                    put_message(b, &w.message);
                }
                None => b.put_u8(0),
            }
        }
        Op::DeleteSession(c) => {
            b.put_u8(2);
            put_bytes(b, c.as_str().as_bytes());
        }
        Op::PutSubscription { client, sub } => {
            b.put_u8(3);
            put_bytes(b, client.as_str().as_bytes());
            put_bytes(b, sub.filter.as_str().as_bytes());
            b.put_u8(options_byte(&sub.options));
            put_opt_u32(b, sub.identifier);
        }
        Op::DeleteSubscription { client, filter } => {
            b.put_u8(4);
            put_bytes(b, client.as_str().as_bytes());
            put_bytes(b, filter.as_str().as_bytes());
        }
        Op::PutInbound { client, packet_id } => {
            b.put_u8(5);
            put_bytes(b, client.as_str().as_bytes());
            b.put_u16_le(packet_id.get());
        }
        Op::DeleteInbound { client, packet_id } => {
            b.put_u8(6);
            put_bytes(b, client.as_str().as_bytes());
            b.put_u16_le(packet_id.get());
        }
        Op::PutMessage { id, message } => {
            b.put_u8(7);
            b.put_u64_le(*id);
            put_message(b, message);
        }
        Op::PutOutbound { client, record: r } => {
            b.put_u8(8);
            put_bytes(b, client.as_str().as_bytes());
            b.put_u64_le(r.seq);
            put_opt_u64(b, r.msg);
            b.put_u8(r.qos as u8);
            b.put_u16_le(r.packet_id.map_or(0, PacketId::get));
            b.put_u8(match r.phase {
                OutboundPhase::Queued => 0,
                OutboundPhase::AwaitingAck => 1,
                OutboundPhase::Released => 2,
            });
            b.put_u8(u8::from(r.retain));
            b.put_u32_le(r.subscription_ids.len() as u32);
            for id in &r.subscription_ids {
                b.put_u32_le(*id);
            }
        }
        Op::DeleteOutbound { client, seq } => {
            b.put_u8(9);
            put_bytes(b, client.as_str().as_bytes());
            b.put_u64_le(*seq);
        }
        Op::PutRetained(m) => {
            b.put_u8(10);
            put_message(b, m);
        }
        Op::DeleteRetained(t) => {
            b.put_u8(11);
            put_bytes(b, t.as_str().as_bytes());
        }
    }
}

/// Encodes a batch: op count, then the ops.
pub fn encode_batch(b: &mut BytesMut, batch: &Batch) {
    b.put_u32_le(batch.ops.len() as u32);
    for op in &batch.ops {
        put_op(b, op);
    }
}

struct Reader<'a> {
    buf: &'a [u8],
    /// The last topic decoded: consecutive records mostly share their topic, and reusing it
    /// saves an allocation and a validation each (replay of a long queue).
    last_topic: Option<TopicName>,
    /// Likewise the last client id (a long queue is one client's records).
    last_client: Option<ClientId>,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> R<&'a [u8]> {
        if self.buf.len() < n {
            return Err(RecordError("field runs past the end of the record"));
        }
        let (a, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(a)
    }
    fn u8(&mut self) -> R<u8> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> R<u16> {
        let s = self.take(2)?;
        Ok(u16::from_le_bytes([s[0], s[1]]))
    }
    fn u32(&mut self) -> R<u32> {
        let s = self.take(4)?;
        Ok(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
    }
    fn u64(&mut self) -> R<u64> {
        let s = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(s);
        Ok(u64::from_le_bytes(a))
    }
    fn bool(&mut self) -> R<bool> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(RecordError("bad boolean")),
        }
    }
    fn bytes(&mut self) -> R<Bytes> {
        let n = self.u32()? as usize;
        Ok(Bytes::copy_from_slice(self.take(n)?))
    }
    fn string(&mut self) -> R<ByteString> {
        ByteString::try_from(self.bytes()?).map_err(|_| RecordError("bad UTF-8"))
    }
    fn client(&mut self) -> R<ClientId> {
        let n = self.u32()? as usize;
        let raw = self.take(n)?;
        if let Some(c) = &self.last_client {
            if c.as_str().as_bytes() == raw {
                return Ok(c.clone());
            }
        }
        let s = std::str::from_utf8(raw).map_err(|_| RecordError("bad UTF-8"))?;
        let c = ClientId::new(s.to_owned());
        self.last_client = Some(c.clone());
        Ok(c)
    }
    fn topic(&mut self) -> R<TopicName> {
        let n = self.u32()? as usize;
        let raw = self.take(n)?;
        if let Some(t) = &self.last_topic {
            if t.as_str().as_bytes() == raw {
                return Ok(t.clone());
            }
        }
        let s = std::str::from_utf8(raw).map_err(|_| RecordError("bad UTF-8"))?;
        let t = TopicName::new(s).map_err(|_| RecordError("bad topic name"))?;
        self.last_topic = Some(t.clone());
        Ok(t)
    }
    fn filter(&mut self) -> R<TopicFilter> {
        TopicFilter::new(self.string()?).map_err(|_| RecordError("bad topic filter"))
    }
    fn opt_u32(&mut self) -> R<Option<u32>> {
        Ok(if self.bool()? {
            Some(self.u32()?)
        } else {
            None
        })
    }
    fn opt_u64(&mut self) -> R<Option<u64>> {
        Ok(if self.bool()? {
            Some(self.u64()?)
        } else {
            None
        })
    }
    fn opt_bytes(&mut self) -> R<Option<Bytes>> {
        Ok(if self.bool()? {
            Some(self.bytes()?)
        } else {
            None
        })
    }
    fn opt_string(&mut self) -> R<Option<ByteString>> {
        Ok(if self.bool()? {
            Some(self.string()?)
        } else {
            None
        })
    }
    fn qos(&mut self) -> R<QoS> {
        QoS::from_u8(self.u8()?).ok_or(RecordError("bad QoS"))
    }
    fn pid(&mut self) -> R<PacketId> {
        PacketId::new(self.u16()?).ok_or(RecordError("packet id 0"))
    }

    fn message(&mut self) -> R<Message> {
        let topic = self.topic()?;
        let payload = self.bytes()?;
        let qos = self.qos()?;
        let retain = self.bool()?;
        let expires_at = self.opt_u64()?;
        let payload_format_indicator = match self.u8()? {
            0 => None,
            1 => Some(false),
            2 => Some(true),
            _ => return Err(RecordError("bad payload format indicator")),
        };
        let message_expiry_interval = self.opt_u32()?;
        let response_topic = match self.opt_string()? {
            Some(s) => Some(TopicName::new(s).map_err(|_| RecordError("bad response topic"))?),
            None => None,
        };
        let correlation_data = self.opt_bytes()?;
        let content_type = self.opt_string()?;
        let n = self.u32()? as usize;
        let mut user_properties = Vec::with_capacity(n.min(1024));
        for _ in 0..n {
            user_properties.push((self.string()?, self.string()?));
        }
        Ok(Message {
            topic,
            payload,
            qos,
            retain,
            properties: PublishProperties {
                payload_format_indicator,
                message_expiry_interval,
                topic_alias: None,
                response_topic,
                correlation_data,
                user_properties,
                subscription_identifiers: Vec::new(),
                content_type,
            },
            expires_at,
        })
    }

    fn op(&mut self) -> R<Op> {
        Ok(match self.u8()? {
            1 => {
                let client_id = self.client()?;
                let expiry_interval_secs = self.u32()?;
                let protocol = match self.u8()? {
                    3 => ProtocolVersion::V31,
                    4 => ProtocolVersion::V311,
                    5 => ProtocolVersion::V5,
                    _ => return Err(RecordError("bad protocol level")),
                };
                let disconnected_at = self.opt_u64()?;
                let will = if self.bool()? {
                    let delay_secs = self.u32()?;
                    Some(WillRecord {
                        delay_secs,
                        message: self.message()?,
                    })
                } else {
                    None
                };
                Op::PutSession(SessionRecord {
                    client_id,
                    expiry_interval_secs,
                    protocol,
                    disconnected_at,
                    will,
                })
            }
            2 => Op::DeleteSession(self.client()?),
            3 => {
                let client = self.client()?;
                let filter = self.filter()?;
                let o = self.u8()?;
                let options = SubscriptionOptions {
                    qos: QoS::from_u8(o & 3).ok_or(RecordError("bad QoS"))?,
                    no_local: o & 4 != 0,
                    retain_as_published: o & 8 != 0,
                    retain_handling: match (o >> 4) & 3 {
                        0 => RetainHandling::SendAtSubscribe,
                        1 => RetainHandling::SendIfNew,
                        2 => RetainHandling::DoNotSend,
                        _ => return Err(RecordError("bad retain handling")),
                    },
                };
                let identifier = self.opt_u32()?;
                Op::PutSubscription {
                    client,
                    sub: SubscriptionRecord {
                        filter,
                        options,
                        identifier,
                    },
                }
            }
            4 => Op::DeleteSubscription {
                client: self.client()?,
                filter: self.filter()?,
            },
            5 => Op::PutInbound {
                client: self.client()?,
                packet_id: self.pid()?,
            },
            6 => Op::DeleteInbound {
                client: self.client()?,
                packet_id: self.pid()?,
            },
            7 => Op::PutMessage {
                id: self.u64()?,
                message: self.message()?,
            },
            8 => {
                let client = self.client()?;
                let seq = self.u64()?;
                let msg = self.opt_u64()?;
                let qos = self.qos()?;
                let packet_id = PacketId::new(self.u16()?);
                let phase = match self.u8()? {
                    0 => OutboundPhase::Queued,
                    1 => OutboundPhase::AwaitingAck,
                    2 => OutboundPhase::Released,
                    _ => return Err(RecordError("bad outbound phase")),
                };
                let retain = self.bool()?;
                let n = self.u32()? as usize;
                let mut subscription_ids = Vec::with_capacity(n.min(64));
                for _ in 0..n {
                    subscription_ids.push(self.u32()?);
                }
                Op::PutOutbound {
                    client,
                    record: OutboundRecord {
                        seq,
                        msg,
                        qos,
                        packet_id,
                        phase,
                        retain,
                        subscription_ids,
                    },
                }
            }
            9 => Op::DeleteOutbound {
                client: self.client()?,
                seq: self.u64()?,
            },
            10 => Op::PutRetained(self.message()?),
            11 => Op::DeleteRetained(self.topic()?),
            _ => return Err(RecordError("unknown op tag")),
        })
    }
}

/// Decodes a batch encoded by [`encode_batch`]; the whole slice must be consumed.
pub fn decode_batch(buf: &[u8]) -> Result<Batch, RecordError> {
    let mut r = Reader {
        buf,
        last_topic: None,
        last_client: None,
    };
    let n = r.u32()? as usize;
    let mut ops = Vec::with_capacity(n.min(1 << 16));
    for _ in 0..n {
        ops.push(r.op()?);
    }
    if !r.buf.is_empty() {
        return Err(RecordError("trailing bytes after the last op"));
    }
    Ok(Batch { ops })
}
