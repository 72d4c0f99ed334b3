//! Turning a key-value request into a cluster operation, shared by both dialects; each dialect
//! renders the problems with its own literal messages.

use axum::body::Bytes;

use super::body;
use crate::cluster::op::KvOp;
use crate::domain::metadata::CausalMetadata;

/// What was wrong with a key-value request.
#[derive(Debug, PartialEq, Eq)]
pub enum InputError {
    /// The key is over 50 characters.
    KeyTooLong,
    /// A PUT without a `value`.
    ValueMissing,
    /// Anything else (body, metadata, value size), with a message.
    Invalid(String),
}

/// The REST dialect a message is for: each has its own literal texts (part of its contract).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    /// `/kvs`.
    Current,
    /// `/key-value-store`.
    Legacy,
}

impl InputError {
    /// The message `dialect` answers this problem with.
    pub fn message(self, dialect: Dialect) -> String {
        match (self, dialect) {
            (InputError::KeyTooLong, _) => "Key is too long".into(),
            (InputError::ValueMissing, Dialect::Current) => {
                "PUT request does not specify a value".into()
            }
            (InputError::ValueMissing, Dialect::Legacy) => "Value is missing".into(),
            (InputError::Invalid(m), _) => m,
        }
    }
}

/// HTTP method of a key-value request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// PUT
    Put,
    /// GET
    Get,
    /// DELETE
    Delete,
}

impl Method {
    /// The method's name as it appears in legacy messages (`"Error in GET"`).
    pub fn name(self) -> &'static str {
        match self {
            Method::Put => "PUT",
            Method::Get => "GET",
            Method::Delete => "DELETE",
        }
    }
}

/// A parsed key-value request.
#[derive(Debug, PartialEq, Eq)]
pub struct KvRequest {
    /// The operation.
    pub op: KvOp,
    /// The client's metadata, decoded.
    pub meta: CausalMetadata,
    /// The metadata token exactly as sent (`None` for absent, `null` or `""`).
    pub token: Option<String>,
}

/// Parses a key-value request into an operation and the client's metadata.
pub fn parse(
    key: &str,
    method: Method,
    raw: &Bytes,
    max_value: usize,
) -> Result<(KvOp, CausalMetadata), InputError> {
    parse_request(key, method, raw, max_value).map(|r| (r.op, r.meta))
}

/// Like [`parse`], keeping the metadata token as sent as well.
pub fn parse_request(
    key: &str,
    method: Method,
    raw: &Bytes,
    max_value: usize,
) -> Result<KvRequest, InputError> {
    let obj = body::object(raw).map_err(InputError::Invalid)?;
    if body::key_too_long(key) {
        return Err(InputError::KeyTooLong);
    }
    let meta = body::metadata(&obj).map_err(InputError::Invalid)?;
    let op = match method {
        Method::Get => KvOp::Get,
        Method::Delete => KvOp::Delete,
        Method::Put => match body::value(&obj, max_value).map_err(InputError::Invalid)? {
            Some(v) => KvOp::Put(v),
            None => return Err(InputError::ValueMissing),
        },
    };
    Ok(KvRequest {
        op,
        meta,
        token: body::metadata_token(&obj).map(str::to_string),
    })
}
