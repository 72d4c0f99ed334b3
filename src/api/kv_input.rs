//! Turning a key-value request into a cluster operation, shared by both dialects; each dialect
//! renders the problems with its own literal messages.

use axum::body::Bytes;

use super::body;
use crate::cluster::kv::KvOp;
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

/// Parses a key-value request into an operation and the client's metadata.
pub fn parse(
    key: &str,
    method: Method,
    raw: &Bytes,
    max_value: usize,
) -> Result<(KvOp, CausalMetadata), InputError> {
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
    Ok((op, meta))
}
