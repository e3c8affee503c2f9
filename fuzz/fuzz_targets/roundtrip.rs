//! Arbitrary bytes on an MQTT 5 connection (the first two bytes choose how to split the rest
//! and a packet size limit):
//! - every decoded packet round-trips (see `quartet_proto_fuzz::roundtrip`);
//! - for every version, `encode` and `encoded_len` agree and encoding is a fixed point of
//!   decode-then-encode;
//! - delivering the bytes in pieces gives the same packets and the same final outcome as
//!   delivering them at once.
#![no_main]

use libfuzzer_sys::fuzz_target;
use quartet_proto::{Limits, ProtocolVersion};
use quartet_proto_fuzz::{cross_version, decode_split, decode_stream_with};

fuzz_target!(|data: &[u8]| {
    let [chunk, limit, rest @ ..] = data else {
        return;
    };
    let mut limits = Limits::default();
    if *limit != 0 {
        // Small limits exercise the PacketTooLarge path at every header length.
        limits.max_packet_size = usize::from(*limit) * 8;
    }
    let whole = decode_stream_with(rest, ProtocolVersion::V5, &limits);
    for p in &whole.packets {
        cross_version(p);
    }
    let split = decode_split(rest, usize::from(*chunk), ProtocolVersion::V5, &limits);
    assert_eq!(whole, split, "split delivery changed the outcome");
});
