//! Inputs the fuzz targets (`fuzz/`) found to break a codec promise, kept so they stay fixed.
//! Each test names the target that found it and the promise it broke.

use bytes::BytesMut;
use quartet_proto::*;

/// Decodes one packet from `bytes` on a connection of `version`.
fn decode_one(bytes: &[u8], version: ProtocolVersion) -> Result<Option<Packet>, DecodeError> {
    decode(&mut BytesMut::from(bytes), version, &Limits::default())
}

/// decode_v31: a 3.1 CONNACK with the (3.1.1) Session Present bit decoded as
/// `session_present: true`, which then could not be encoded for 3.1. In 3.1 the whole first
/// byte is reserved, so the bit is rejected like the other reserved bits.
#[test]
fn v31_connack_has_no_session_present() {
    let bytes = [0x20, 0x02, 0x01, 0x00];
    assert_eq!(
        decode_one(&bytes, ProtocolVersion::V31),
        Err(DecodeError::ConnAckReservedFlags(0x01))
    );
    // 3.1.1 and 5.0 do have the bit.
    for v in [ProtocolVersion::V311, ProtocolVersion::V5] {
        let extra: &[u8] = if v.is_v5() { &[0x00] } else { &[] };
        let mut b = bytes.to_vec();
        b[1] += extra.len() as u8;
        b.extend_from_slice(extra);
        match decode_one(&b, v) {
            Ok(Some(Packet::ConnAck(c))) => assert!(c.session_present, "{v}"),
            other => panic!("{v}: {other:?}"),
        }
    }
    // What 3.1 can say still round-trips.
    let ok = [0x20, 0x02, 0x00, 0x00];
    let p = decode_one(&ok, ProtocolVersion::V31).unwrap().unwrap();
    let mut out = BytesMut::new();
    encode(&p, ProtocolVersion::V31, &mut out).unwrap();
    assert_eq!(&out[..], &ok[..]);
}

/// A fixed header announcing a large packet does not make the decoder reserve that much
/// memory before the bytes arrive (a slow or lying peer would cost it per connection).
#[test]
fn announced_size_is_not_reserved_up_front() {
    use bytes::BytesMut;
    use quartet_proto::{decode, Limits, ProtocolVersion};
    // PUBLISH with a remaining length of 268,435,455 (0xFF 0xFF 0xFF 0x7F).
    let mut buf = BytesMut::from(&[0x30u8, 0xFF, 0xFF, 0xFF, 0x7F][..]);
    let got = decode(&mut buf, ProtocolVersion::V311, &Limits::default()).unwrap();
    assert!(got.is_none());
    assert!(
        buf.capacity() <= 128 * 1024,
        "reserved {} bytes",
        buf.capacity()
    );
}
