//! Framing and the primitives shared by the version modules.
//!
//! Framing first, parsing second: [`decode`] looks at the fixed header, bounds the remaining
//! length by the caller's [`Limits`], waits (`Ok(None)`) until the whole packet is buffered, then
//! hands the body, as a zero-copy [`Bytes`], to the parser of the connection's protocol
//! version ([`v3`] for 3.1 and 3.1.1, [`v5`] for 5.0). CONNECT is parsed by whichever version it
//! declares.
//!
//! [`encode`] runs a packet's body writer twice: once against a byte counter (so
//! [`encoded_len`] is exact and known before a byte is written) and once into the buffer.

pub(crate) mod v3;
pub(crate) mod v5;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use bytestring::ByteString;

use crate::error::{DecodeError, EncodeError};
use crate::types::{Packet, PacketId, PacketType, ProtocolVersion, QoS};

/// The largest remaining length a variable byte integer can hold.
pub const MAX_REMAINING_LENGTH: usize = 268_435_455;
/// The largest packet: 1 byte of type and flags, 4 of remaining length, and the rest.
pub const MAX_PACKET_SIZE: usize = 1 + 4 + MAX_REMAINING_LENGTH;

/// The most the decoder reserves ahead of bytes that have not arrived yet.
const RESERVE_AHEAD_MAX: usize = 64 * 1024;

/// Bounds that the decoder enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The largest whole packet (fixed header included) accepted, in bytes.
    pub max_packet_size: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_packet_size: MAX_PACKET_SIZE,
        }
    }
}

/// Decodes one packet from the front of `buf`.
///
/// Returns `Ok(None)` when `buf` does not yet hold a whole packet (nothing is consumed), and
/// `Ok(Some(packet))` after consuming exactly that packet's bytes. `version` is the
/// connection's protocol version; a CONNECT is decoded according to the level it carries. On
/// error the connection is beyond repair: the caller answers with the error's reason code and
/// closes.
pub fn decode(
    buf: &mut BytesMut,
    version: ProtocolVersion,
    limits: &Limits,
) -> Result<Option<Packet>, DecodeError> {
    let Some((first, header_len, remaining)) = parse_fixed_header(buf)? else {
        return Ok(None);
    };
    let total = header_len + remaining;
    if total > limits.max_packet_size {
        return Err(DecodeError::PacketTooLarge {
            size: total,
            max: limits.max_packet_size,
        });
    }
    let packet_type = PacketType::from_u8(first >> 4).ok_or(DecodeError::ReservedPacketType)?;
    if buf.len() < total {
        // Make room for the rest, but only as much as a peer has shown it will send: a header
        // that announces a large packet must not make a slow (or lying) peer cost that much
        // memory before the bytes arrive. Larger packets grow the buffer as they come.
        buf.reserve((total - buf.len()).min(RESERVE_AHEAD_MAX));
        return Ok(None);
    }
    // Skipping the header in place and splitting off only the body costs one reference-count
    // operation fewer than splitting off the frame and then its body.
    buf.advance(header_len);
    let body = buf.split_to(remaining).freeze();
    let flags = first & 0x0F;
    let reader = Reader::new(body, packet_type);
    if packet_type == PacketType::Connect {
        check_flags(packet_type, flags, 0)?;
        return Ok(Some(Packet::Connect(Box::new(decode_connect(reader)?))));
    }
    match version {
        ProtocolVersion::V31 | ProtocolVersion::V311 => {
            v3::decode(packet_type, flags, reader, version)
        }
        ProtocolVersion::V5 => v5::decode(packet_type, flags, reader),
    }
    .map(Some)
}

/// Parses the fixed header: `(first byte, header length, remaining length)`, or `None` when
/// more bytes are needed.
fn parse_fixed_header(buf: &[u8]) -> Result<Option<(u8, usize, usize)>, DecodeError> {
    let Some(&first) = buf.first() else {
        return Ok(None);
    };
    let mut value = 0usize;
    for i in 0..4 {
        let Some(&b) = buf.get(1 + i) else {
            return Ok(None);
        };
        value |= ((b & 0x7F) as usize) << (7 * i);
        if b & 0x80 == 0 {
            return Ok(Some((first, 2 + i, value)));
        }
    }
    Err(DecodeError::MalformedVarInt)
}

fn decode_connect(mut r: Reader) -> Result<crate::types::Connect, DecodeError> {
    let name = r.string("protocol name")?;
    let level = r.u8("protocol level")?;
    let version = match (&*name, level) {
        ("MQIsdp", 3) => ProtocolVersion::V31,
        ("MQTT", 4) => ProtocolVersion::V311,
        ("MQTT", 5) => ProtocolVersion::V5,
        ("MQTT" | "MQIsdp", l) => return Err(DecodeError::UnsupportedProtocolLevel(l)),
        (other, _) => return Err(DecodeError::InvalidProtocolName(other.to_owned())),
    };
    match version {
        ProtocolVersion::V5 => v5::decode_connect_rest(r),
        _ => v3::decode_connect_rest(r, version),
    }
}

pub(crate) fn check_flags(packet: PacketType, flags: u8, want: u8) -> Result<(), DecodeError> {
    if flags == want {
        Ok(())
    } else {
        Err(DecodeError::ReservedFlags { packet, flags })
    }
}

/// The fixed-header flags nibble each packet type must carry (PUBLISH has its own).
pub(crate) fn required_flags(t: PacketType) -> u8 {
    match t {
        PacketType::PubRel | PacketType::Subscribe | PacketType::Unsubscribe => 0b0010,
        _ => 0,
    }
}

/// Encodes `packet` for `version` at the end of `buf`; returns the bytes written.
pub fn encode(
    packet: &Packet,
    version: ProtocolVersion,
    buf: &mut BytesMut,
) -> Result<usize, EncodeError> {
    if let Packet::Publish(p) = packet {
        if let Some(n) = encode_publish(p, version, buf)? {
            return Ok(n);
        }
    }
    let mut counter = Counter(0);
    let first = body(packet, version, &mut counter)?;
    let remaining = counter.0;
    if remaining > MAX_REMAINING_LENGTH {
        return Err(EncodeError::PacketTooLarge {
            size: remaining + 5,
            max: MAX_PACKET_SIZE,
        });
    }
    let total = 1 + varint_len(remaining) + remaining;
    buf.reserve(total);
    Sink::put_u8(buf, first);
    put_varint(buf, remaining as u32);
    body(packet, version, buf)?;
    Ok(total)
}

/// PUBLISH, the packet of the hot path, in one pass instead of two: its remaining length is
/// summed directly rather than by running the body writer against a [`Counter`], and the body
/// writer then validates as it writes. If it refuses the packet, `buf` is truncated back to
/// where it was, so on error nothing is written, as with the two-pass path. `None` (nothing
/// written) hands a packet too large to frame, or with invalid properties, to the two-pass
/// path, which reports it.
fn encode_publish(
    p: &crate::types::Publish,
    version: ProtocolVersion,
    buf: &mut BytesMut,
) -> Result<Option<usize>, EncodeError> {
    let props = match version {
        ProtocolVersion::V5 => match v5::publish_props_len(&p.properties) {
            Ok(n) => varint_len(n) + n,
            // The two-pass path reports the error, with the same precedence as ever.
            Err(_) => return Ok(None),
        },
        ProtocolVersion::V31 | ProtocolVersion::V311 => 0,
    };
    let packet_id = if p.packet_id.is_some() { 2 } else { 0 };
    let remaining = 2 + p.topic.as_str().len() + packet_id + props + p.payload.len();
    if remaining > MAX_REMAINING_LENGTH {
        return Ok(None);
    }
    let total = 1 + varint_len(remaining) + remaining;
    let start = buf.len();
    buf.reserve(total);
    Sink::put_u8(buf, ((PacketType::Publish as u8) << 4) | publish_flags(p));
    put_varint(buf, remaining as u32);
    let written = match version {
        ProtocolVersion::V5 => v5::encode_publish(p, buf),
        v => v3::encode_publish(p, v, buf),
    };
    if let Err(e) = written {
        buf.truncate(start);
        return Err(e);
    }
    debug_assert_eq!(buf.len() - start, total, "PUBLISH length summed wrongly");
    Ok(Some(total))
}

/// The exact number of bytes [`encode`] would write.
pub fn encoded_len(packet: &Packet, version: ProtocolVersion) -> Result<usize, EncodeError> {
    let mut counter = Counter(0);
    body(packet, version, &mut counter)?;
    let remaining = counter.0;
    if remaining > MAX_REMAINING_LENGTH {
        return Err(EncodeError::PacketTooLarge {
            size: remaining + 5,
            max: MAX_PACKET_SIZE,
        });
    }
    Ok(1 + varint_len(remaining) + remaining)
}

/// The fixed-header flags of a PUBLISH: DUP, QoS, RETAIN.
fn publish_flags(p: &crate::types::Publish) -> u8 {
    (u8::from(p.dup) << 3) | ((p.qos as u8) << 1) | u8::from(p.retain)
}

/// Writes the body and returns the first byte of the fixed header.
fn body<S: Sink>(packet: &Packet, version: ProtocolVersion, s: &mut S) -> Result<u8, EncodeError> {
    let t = packet.packet_type();
    let flags = match packet {
        Packet::Publish(p) => publish_flags(p),
        _ => required_flags(t),
    };
    if let Packet::Connect(c) = packet {
        // CONNECT carries its own version; it is encoded as it says.
        match c.protocol {
            ProtocolVersion::V5 => v5::encode_connect(c, s)?,
            v => v3::encode_connect(c, v, s)?,
        }
    } else {
        match version {
            ProtocolVersion::V5 => v5::encode(packet, s)?,
            v => v3::encode(packet, v, s)?,
        }
    }
    Ok(((t as u8) << 4) | flags)
}

// ---------------------------------------------------------------------------------------------
// Reading

/// A cursor over one packet's body.
#[derive(Debug)]
pub(crate) struct Reader {
    buf: Bytes,
    pos: usize,
    pub(crate) packet: PacketType,
}

impl Reader {
    pub(crate) fn new(buf: Bytes, packet: PacketType) -> Reader {
        Reader {
            buf,
            pos: 0,
            packet,
        }
    }

    pub(crate) fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn truncated(&self, what: &'static str) -> DecodeError {
        DecodeError::Truncated {
            packet: self.packet,
            what,
        }
    }

    /// The next byte, without consuming it.
    pub(crate) fn peek_u8(&self) -> Option<u8> {
        self.buf.get(self.pos).copied()
    }

    pub(crate) fn u8(&mut self, what: &'static str) -> Result<u8, DecodeError> {
        let b = *self.buf.get(self.pos).ok_or_else(|| self.truncated(what))?;
        self.pos += 1;
        Ok(b)
    }

    pub(crate) fn u16(&mut self, what: &'static str) -> Result<u16, DecodeError> {
        let s = self.take_slice(2, what)?;
        Ok(u16::from_be_bytes([s[0], s[1]]))
    }

    pub(crate) fn u32(&mut self, what: &'static str) -> Result<u32, DecodeError> {
        let s = self.take_slice(4, what)?;
        Ok(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
    }

    fn take_slice(&mut self, n: usize, what: &'static str) -> Result<&[u8], DecodeError> {
        if self.remaining() < n {
            return Err(self.truncated(what));
        }
        let start = self.pos;
        self.pos += n;
        Ok(&self.buf[start..start + n])
    }

    /// A zero-copy slice of the next `n` bytes.
    pub(crate) fn bytes(&mut self, n: usize, what: &'static str) -> Result<Bytes, DecodeError> {
        if self.remaining() < n {
            return Err(self.truncated(what));
        }
        let b = self.buf.slice(self.pos..self.pos + n);
        self.pos += n;
        Ok(b)
    }

    /// Everything left, zero-copy. The reader hands over its own reference to the buffer
    /// (no reference-count traffic) and is empty afterwards.
    pub(crate) fn rest(&mut self) -> Bytes {
        let mut b = std::mem::take(&mut self.buf);
        b.advance(self.pos);
        self.pos = 0;
        b
    }

    /// A variable byte integer of at most 4 bytes [MQTT-1.5.5-1].
    pub(crate) fn varint(&mut self, what: &'static str) -> Result<u32, DecodeError> {
        let mut value = 0u32;
        for i in 0..4 {
            let b = self.u8(what)?;
            value |= u32::from(b & 0x7F) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(DecodeError::MalformedVarInt)
    }

    /// Binary data with a two-byte length prefix.
    pub(crate) fn binary(&mut self, what: &'static str) -> Result<Bytes, DecodeError> {
        let n = self.u16(what)? as usize;
        self.bytes(n, what)
    }

    /// A UTF-8 encoded string: well-formed UTF-8 [MQTT-1.5.4-1], no U+0000 [MQTT-1.5.4-2].
    pub(crate) fn string(&mut self, what: &'static str) -> Result<ByteString, DecodeError> {
        let raw = self.binary(what)?;
        // Branch-free (vectorised) rather than `memchr`, which is slower on short strings.
        if raw.iter().fold(false, |nul, &b| nul | (b == 0)) {
            return Err(DecodeError::NullCharacter { what });
        }
        ByteString::try_from(raw).map_err(|_| DecodeError::InvalidUtf8 { what })
    }

    pub(crate) fn packet_id(&mut self) -> Result<PacketId, DecodeError> {
        let v = self.u16("packet identifier")?;
        PacketId::new(v).ok_or(DecodeError::ZeroPacketId {
            packet: self.packet,
        })
    }

    /// A sub-reader over the next `n` bytes (for property blocks).
    pub(crate) fn sub(&mut self, n: usize) -> Result<Reader, DecodeError> {
        if self.remaining() < n {
            return Err(DecodeError::PropertyLengthOverflow {
                packet: self.packet,
            });
        }
        let b = self.buf.slice(self.pos..self.pos + n);
        self.pos += n;
        Ok(Reader::new(b, self.packet))
    }

    /// Fails if any byte is left.
    pub(crate) fn finish(&self) -> Result<(), DecodeError> {
        match self.remaining() {
            0 => Ok(()),
            extra => Err(DecodeError::TrailingBytes {
                packet: self.packet,
                extra,
            }),
        }
    }
}

pub(crate) fn qos_from_bits(bits: u8) -> Result<QoS, DecodeError> {
    QoS::from_u8(bits).ok_or(DecodeError::InvalidQoS)
}

// ---------------------------------------------------------------------------------------------
// Writing

/// Where encoded bytes go: a byte counter (to size a packet) or a buffer.
pub(crate) trait Sink {
    fn put_u8(&mut self, v: u8);
    fn put_u16(&mut self, v: u16);
    fn put_u32(&mut self, v: u32);
    fn put_slice(&mut self, v: &[u8]);
}

/// Counts what would be written.
#[derive(Debug)]
pub(crate) struct Counter(pub(crate) usize);

impl Sink for Counter {
    #[inline]
    fn put_u8(&mut self, _: u8) {
        self.0 += 1;
    }
    #[inline]
    fn put_u16(&mut self, _: u16) {
        self.0 += 2;
    }
    #[inline]
    fn put_u32(&mut self, _: u32) {
        self.0 += 4;
    }
    #[inline]
    fn put_slice(&mut self, v: &[u8]) {
        self.0 += v.len();
    }
}

impl Sink for BytesMut {
    #[inline]
    fn put_u8(&mut self, v: u8) {
        BufMut::put_u8(self, v)
    }
    #[inline]
    fn put_u16(&mut self, v: u16) {
        BufMut::put_u16(self, v)
    }
    #[inline]
    fn put_u32(&mut self, v: u32) {
        BufMut::put_u32(self, v)
    }
    #[inline]
    fn put_slice(&mut self, v: &[u8]) {
        self.extend_from_slice(v)
    }
}

#[inline]
pub(crate) fn varint_len(v: usize) -> usize {
    match v {
        0..=127 => 1,
        128..=16_383 => 2,
        16_384..=2_097_151 => 3,
        _ => 4,
    }
}

#[inline]
pub(crate) fn put_varint<S: Sink + ?Sized>(s: &mut S, mut v: u32) {
    loop {
        let mut b = (v & 0x7F) as u8;
        v >>= 7;
        if v > 0 {
            b |= 0x80;
        }
        s.put_u8(b);
        if v == 0 {
            break;
        }
    }
}

#[inline]
pub(crate) fn put_binary<S: Sink>(
    s: &mut S,
    v: &[u8],
    what: &'static str,
) -> Result<(), EncodeError> {
    let len =
        u16::try_from(v.len()).map_err(|_| EncodeError::FieldTooLong { what, len: v.len() })?;
    s.put_u16(len);
    s.put_slice(v);
    Ok(())
}

#[inline]
pub(crate) fn put_str<S: Sink>(s: &mut S, v: &str, what: &'static str) -> Result<(), EncodeError> {
    put_binary(s, v.as_bytes(), what)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varint_lengths_match_encoding() {
        for v in [
            0u32,
            127,
            128,
            16_383,
            16_384,
            2_097_151,
            2_097_152,
            268_435_455,
        ] {
            let mut b = BytesMut::new();
            put_varint(&mut b, v);
            assert_eq!(b.len(), varint_len(v as usize), "{v}");
            let mut r = Reader::new(b.freeze(), PacketType::Publish);
            assert_eq!(r.varint("x").unwrap(), v);
        }
    }

    /// The one-pass PUBLISH encoder writes exactly `encoded_len` bytes, and on a refused
    /// packet leaves the buffer as it was, as the two-pass path does.
    #[test]
    fn publish_fast_path_is_exact_and_writes_nothing_on_error() {
        use crate::types::{Publish, PublishProperties};
        use crate::TopicName;
        let mut p = Publish {
            dup: false,
            qos: QoS::AtLeastOnce,
            retain: true,
            topic: TopicName::new("a/b").unwrap(),
            packet_id: PacketId::new(9),
            properties: PublishProperties::default(),
            payload: Bytes::from(vec![1u8; 300]),
        };
        for v in ProtocolVersion::ALL {
            let packet = Packet::Publish(p.clone());
            let mut buf = BytesMut::from(&b"xy"[..]);
            let n = encode(&packet, v, &mut buf).unwrap();
            assert_eq!(n, encoded_len(&packet, v).unwrap());
            assert_eq!(buf.len(), 2 + n);
        }
        p.properties.message_expiry_interval = Some(5);
        p.properties.subscription_identifiers = vec![1, 200_000];
        let packet = Packet::Publish(p.clone());
        let mut buf = BytesMut::new();
        let n = encode(&packet, ProtocolVersion::V5, &mut buf).unwrap();
        assert_eq!(n, encoded_len(&packet, ProtocolVersion::V5).unwrap());
        assert_eq!(buf.len(), n);
        // v3 cannot carry properties: refused, nothing written.
        let mut buf = BytesMut::from(&b"xy"[..]);
        assert!(encode(&packet, ProtocolVersion::V311, &mut buf).is_err());
        assert_eq!(&buf[..], b"xy");
        // Invalid in every version: QoS 0 with a packet identifier.
        p.qos = QoS::AtMostOnce;
        p.properties = PublishProperties::default();
        let packet = Packet::Publish(p);
        for v in ProtocolVersion::ALL {
            let mut buf = BytesMut::from(&b"xy"[..]);
            assert_eq!(
                encode(&packet, v, &mut buf),
                Err(EncodeError::InvalidValue(
                    "a QoS 0 PUBLISH has no packet identifier"
                ))
            );
            assert_eq!(&buf[..], b"xy", "{v}");
        }
    }

    #[test]
    fn incomplete_header_is_none() {
        assert_eq!(parse_fixed_header(&[]).unwrap(), None);
        assert_eq!(parse_fixed_header(&[0x30]).unwrap(), None);
        assert_eq!(parse_fixed_header(&[0x30, 0x80, 0x80]).unwrap(), None);
        assert_eq!(
            parse_fixed_header(&[0x30, 0x80, 0x80, 0x80, 0x80]),
            Err(DecodeError::MalformedVarInt)
        );
        assert_eq!(
            parse_fixed_header(&[0x30, 0xFF, 0xFF, 0xFF, 0x7F]).unwrap(),
            Some((0x30, 5, 268_435_455))
        );
    }
}
