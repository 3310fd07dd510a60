//! hexkv's gRPC contract, `proto/hexkv/v1/kv.proto`, compiled: the protobuf types, the client and
//! server stubs of `hexkv.v1.KeyValue`, and the encoded descriptor set that server reflection
//! serves.
//!
//! A crate of its own so that what speaks the contract depends on the contract only: the server
//! adapter (`hexkv-grpc`) implements the server stub, the client SDK (`hexkv-client`) uses the
//! client stub, and neither depends on the other.

/// The generated types and stubs of `hexkv.v1`.
#[allow(missing_docs, unreachable_pub, clippy::all, clippy::pedantic)]
pub mod v1 {
    tonic::include_proto!("hexkv.v1");

    /// The encoded descriptor set of `hexkv.v1`, served by reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/hexkv_v1_descriptor.bin"));
}
