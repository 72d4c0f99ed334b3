//! Shapes of the REST bodies for the OpenAPI document (`utoipa`): field names and types as
//! API.md gives them. Handlers build their JSON with `json!`; these types only describe it.
//!
//! Must not: be used to parse or render requests (the handlers own the exact bytes).
#![allow(missing_docs)]

use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

/// `PUT /kvs/<key>` and `PUT /key-value-store/<key>`.
#[derive(Serialize, ToSchema)]
pub struct KvPutRequest {
    /// Any JSON value (keeps its type); missing is a 400.
    pub value: Value,
    /// The token of the client's last response; `null` (or `""` in the legacy dialect) at first.
    #[serde(rename = "causal-metadata")]
    pub causal_metadata: Option<String>,
}

/// `GET`/`DELETE` of a key: the body may also be absent.
#[derive(Serialize, ToSchema)]
pub struct MetadataRequest {
    #[serde(rename = "causal-metadata")]
    pub causal_metadata: Option<String>,
}

/// A node address.
#[derive(Serialize, ToSchema)]
pub struct AddressRequest {
    /// `IP:PORT`.
    #[serde(rename = "socket-address")]
    pub socket_address: String,
}

/// A reshard request.
#[derive(Serialize, ToSchema)]
pub struct ShardCountRequest {
    #[serde(rename = "shard-count")]
    pub shard_count: u32,
}

/// A key-value answer of the current dialect.
#[derive(Serialize, ToSchema)]
pub struct KvReply {
    /// `created`, `replaced`, `found` or `deleted`.
    pub result: String,
    /// The value (reads only).
    pub value: Option<Value>,
    #[serde(rename = "causal-metadata")]
    pub causal_metadata: String,
    #[serde(rename = "shard-id")]
    pub shard_id: u32,
}

/// Any failure: `{"error": ...}` plus detail fields on some.
#[derive(Serialize, ToSchema)]
pub struct ErrorReply {
    pub error: String,
    #[serde(rename = "shard-id")]
    pub shard_id: Option<u32>,
    pub detail: Option<String>,
}

/// `{"result": ...}` answers of view and shard operations.
#[derive(Serialize, ToSchema)]
pub struct ResultReply {
    pub result: String,
}

/// `GET /view`.
#[derive(Serialize, ToSchema)]
pub struct ViewReply {
    pub view: Vec<String>,
}

/// `GET /shard/ids`.
#[derive(Serialize, ToSchema)]
pub struct ShardIdsReply {
    #[serde(rename = "shard-ids")]
    pub shard_ids: Vec<u32>,
}

/// `GET /shard/node-shard-id` (`null` on a spare).
#[derive(Serialize, ToSchema)]
pub struct NodeShardReply {
    #[serde(rename = "node-shard-id")]
    pub node_shard_id: Option<u32>,
}

/// `GET /shard/members/<id>`.
#[derive(Serialize, ToSchema)]
pub struct MembersReply {
    #[serde(rename = "shard-members")]
    pub shard_members: Vec<String>,
}

/// `GET /shard/key-count/<id>`.
#[derive(Serialize, ToSchema)]
pub struct KeyCountReply {
    #[serde(rename = "shard-key-count")]
    pub shard_key_count: u64,
}

/// Every legacy answer: a `message`, plus the fields of the operation (API.md §3). With
/// `CKV_LEGACY_STRINGS=1`, lists and shard ids are rendered as strings.
#[derive(Serialize, ToSchema)]
pub struct LegacyReply {
    pub message: String,
    pub error: Option<String>,
    #[serde(rename = "causal-metadata")]
    pub causal_metadata: Option<String>,
    pub value: Option<Value>,
    #[serde(rename = "doesExist")]
    pub does_exist: Option<bool>,
    #[serde(rename = "shard-id")]
    pub shard_id: Option<Value>,
    pub view: Option<Value>,
    #[serde(rename = "shard-ids")]
    pub shard_ids: Option<Value>,
    #[serde(rename = "shard-id-members")]
    pub shard_id_members: Option<Value>,
    #[serde(rename = "shard-id-key-count")]
    pub shard_id_key_count: Option<u64>,
}

/// `GET /healthz`.
#[derive(Serialize, ToSchema)]
pub struct HealthReply {
    pub status: String,
    pub node: String,
    pub incarnation: u64,
}

/// `GET /readyz` when ready.
#[derive(Serialize, ToSchema)]
pub struct ReadyReply {
    pub status: String,
}
