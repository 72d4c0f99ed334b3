//! causalkv: a sharded, replicated, causally consistent key-value store.
pub mod check;
pub mod rpc {
    //! Generated protobuf/gRPC code.
    pub mod pb {
        #![allow(missing_docs, clippy::all)]
        tonic::include_proto!("causalkv.v1");
    }
}
