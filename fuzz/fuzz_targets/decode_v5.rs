//! Arbitrary bytes on a connection that speaks V5: decoding never panics, and every packet
//! it yields re-encodes (for V5; a CONNECT for the version it declares) and decodes back equal.
#![no_main]

use libfuzzer_sys::fuzz_target;
use quartet_proto::ProtocolVersion;

fuzz_target!(|data: &[u8]| {
    quartet_proto_fuzz::decode_stream(data, ProtocolVersion::V5);
});
