//! The checks the fuzz targets share, kept here so every target states one property.
//!
//! Every function panics (which libFuzzer reports as a crash) when the codec breaks a promise:
//! - decoding never panics, whatever the bytes;
//! - `Ok(None)` consumes nothing;
//! - every decoded packet re-encodes for the version it was decoded with (a CONNECT for the
//!   version it declares), `encoded_len` is exactly the number of bytes written, and decoding
//!   those bytes gives back an equal packet with nothing left over;
//! - delivering the same bytes in pieces yields the same packets and the same final outcome.

use bytes::BytesMut;
use quartet_proto::{decode, encode, encoded_len, DecodeError, Limits, Packet, ProtocolVersion};

/// What decoding a whole buffer gave: the packets, then how it stopped (`None` for "needs more
/// bytes", or the error).
#[derive(Debug, PartialEq)]
pub struct Outcome {
    /// Every packet decoded, in order.
    pub packets: Vec<Packet>,
    /// `None` when the rest is an incomplete packet, else the error that stopped decoding.
    pub end: Option<DecodeError>,
}

/// Decodes packets from `data` until `Ok(None)` or an error, round-tripping each one.
pub fn decode_stream(data: &[u8], version: ProtocolVersion) -> Outcome {
    decode_stream_with(data, version, &Limits::default())
}

/// [`decode_stream`] with explicit limits.
pub fn decode_stream_with(data: &[u8], version: ProtocolVersion, limits: &Limits) -> Outcome {
    let mut buf = BytesMut::from(data);
    let mut packets = Vec::new();
    loop {
        let before = buf.len();
        match decode(&mut buf, version, limits) {
            Ok(Some(p)) => {
                assert!(buf.len() < before, "a packet was decoded from no bytes");
                roundtrip(&p, version);
                packets.push(p);
            }
            Ok(None) => {
                assert_eq!(buf.len(), before, "Ok(None) consumed bytes");
                return Outcome { packets, end: None };
            }
            Err(e) => {
                return Outcome {
                    packets,
                    end: Some(e),
                }
            }
        }
    }
}

/// The version a packet is encoded with on a connection of `version`: CONNECT carries its own.
fn wire_version(p: &Packet, version: ProtocolVersion) -> ProtocolVersion {
    match p {
        Packet::Connect(c) => c.protocol,
        _ => version,
    }
}

/// A packet decoded on a connection of `version` must encode for it and decode back equal.
pub fn roundtrip(p: &Packet, version: ProtocolVersion) {
    let mut out = BytesMut::new();
    let n = match encode(p, version, &mut out) {
        Ok(n) => n,
        Err(e) => panic!("decoded packet does not re-encode for {version}: {e}\n{p:#?}"),
    };
    assert_eq!(n, out.len(), "encode returned a length other than written");
    assert_eq!(
        encoded_len(p, version).ok(),
        Some(n),
        "encoded_len disagrees with encode"
    );
    let wire = wire_version(p, version);
    let back = match decode(&mut out, version, &Limits::default()) {
        Ok(Some(b)) => b,
        other => panic!("re-encoded packet ({wire}) does not decode: {other:?}\n{p:#?}"),
    };
    assert!(out.is_empty(), "re-encoded packet left {} bytes", out.len());
    assert_eq!(&back, p, "decode(encode(p)) != p ({wire})");
}

/// For every version: `encode` and `encoded_len` agree (both fail, or both give the number of
/// bytes written), and whatever encodes decodes on a connection of that version to a packet
/// that encodes to the very same bytes (v3 may map a v5 reason code onto a coarser one, so the
/// packet itself need not be equal, but the bytes are a fixed point).
pub fn cross_version(p: &Packet) {
    for v in ProtocolVersion::ALL {
        let mut out = BytesMut::new();
        let res = encode(p, v, &mut out);
        let len = encoded_len(p, v);
        match (&res, &len) {
            (Ok(n), Ok(m)) => {
                assert_eq!(*n, out.len(), "encode for {v} returned a wrong length");
                assert_eq!(n, m, "encoded_len for {v} disagrees with encode");
            }
            (Err(_), Err(_)) => {
                assert!(out.is_empty(), "a failed encode for {v} wrote bytes");
                continue;
            }
            _ => panic!("encode {res:?} and encoded_len {len:?} disagree for {v}\n{p:#?}"),
        }
        let first = out.clone().freeze();
        let q = match decode(&mut out, v, &Limits::default()) {
            Ok(Some(q)) => q,
            other => panic!("packet encoded for {v} does not decode: {other:?}\n{p:#?}"),
        };
        assert!(out.is_empty(), "decoding {v} left bytes");
        let mut again = BytesMut::new();
        encode(&q, v, &mut again).unwrap_or_else(|e| panic!("re-encode for {v}: {e}\n{q:#?}"));
        assert_eq!(
            first,
            again.freeze(),
            "encoding for {v} is not a fixed point\n{p:#?}"
        );
    }
}

/// Feeds `data` in pieces of `chunk` bytes, decoding after each piece, and returns the same
/// kind of outcome as decoding the whole buffer at once.
pub fn decode_split(
    data: &[u8],
    chunk: usize,
    version: ProtocolVersion,
    limits: &Limits,
) -> Outcome {
    let chunk = chunk.max(1);
    let mut buf = BytesMut::new();
    let mut packets = Vec::new();
    for piece in data.chunks(chunk) {
        buf.extend_from_slice(piece);
        loop {
            let before = buf.len();
            match decode(&mut buf, version, limits) {
                Ok(Some(p)) => packets.push(p),
                Ok(None) => {
                    assert_eq!(buf.len(), before, "Ok(None) consumed bytes");
                    break;
                }
                Err(e) => {
                    return Outcome {
                        packets,
                        end: Some(e),
                    }
                }
            }
        }
    }
    Outcome { packets, end: None }
}
