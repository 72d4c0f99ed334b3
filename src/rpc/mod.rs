//! gRPC between replicas: generated code, the client that implements `Peers`, thin service
//! impls, and all protobuf ↔ domain conversions.

pub mod auth;
pub mod client;
pub mod convert;
pub mod forward_batch;
pub mod service;
pub mod tls;

/// Generated protobuf/gRPC code for `proto/causalkv/v1`.
pub mod pb {
    #![allow(missing_docs, clippy::all, clippy::pedantic)]
    tonic::include_proto!("causalkv.v1");

    /// Encoded descriptor set of every causalkv service, for server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        tonic::include_file_descriptor_set!("causalkv_descriptor");
}
