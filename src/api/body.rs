//! Lenient request-body parsing shared by both dialects: any content type, an empty body
//! counts as `{}`, and every malformed input becomes a precise message for a 400.

use std::sync::Arc;

use axum::body::Bytes;
use serde_json::{Map, Value};

use crate::domain::metadata::CausalMetadata;

/// Longest key accepted, in characters (API.md).
pub const MAX_KEY_CHARS: usize = 50;

/// The body as a JSON object (`{}` when empty).
pub fn object(body: &Bytes) -> Result<Map<String, Value>, String> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(Value::Null) => Ok(Map::new()),
        Ok(_) => Err("Request body must be a JSON object".into()),
        Err(_) => Err("Request body is not valid JSON".into()),
    }
}

/// The `causal-metadata` field: absent, `null` or `""` mean none; otherwise a token we issued.
pub fn metadata(obj: &Map<String, Value>) -> Result<CausalMetadata, String> {
    match obj.get("causal-metadata") {
        None | Some(Value::Null) => Ok(CausalMetadata::empty()),
        Some(Value::String(s)) if s.is_empty() => Ok(CausalMetadata::empty()),
        Some(Value::String(s)) => CausalMetadata::decode(s).map_err(|e| e.to_string()),
        Some(_) => Err("causal-metadata must be a string (or null)".into()),
    }
}

/// The `causal-metadata` token exactly as the client sent it; `None` when absent, `null` or `""`.
pub fn metadata_token(obj: &Map<String, Value>) -> Option<&str> {
    match obj.get("causal-metadata") {
        Some(Value::String(s)) if !s.is_empty() => Some(s),
        _ => None,
    }
}

/// The `socket-address` field, validated as `IP:PORT` or `HOST:PORT` (not resolved here).
pub fn socket_address(obj: &Map<String, Value>) -> Result<String, String> {
    match obj.get("socket-address") {
        Some(Value::String(s)) if crate::net::NodeAddr::parse(s).is_ok() => {
            Ok(s.trim().to_string())
        }
        Some(Value::String(s)) => Err(format!("socket-address is not IP:PORT or HOST:PORT: {s:?}")),
        _ => Err("Request does not specify a socket-address".into()),
    }
}

/// The `shard-count` field: a positive integer (a numeric string is accepted too).
pub fn shard_count(obj: &Map<String, Value>) -> Result<u32, String> {
    let n = match obj.get("shard-count") {
        Some(Value::Number(n)) => n.as_u64(),
        Some(Value::String(s)) => s.trim().parse().ok(),
        _ => return Err("Request does not specify a shard-count".into()),
    };
    match n {
        Some(n) if n >= 1 && n <= u64::from(u32::MAX) => Ok(n as u32),
        _ => Err("shard-count must be a positive integer".into()),
    }
}

/// True when the key is too long.
pub fn key_too_long(key: &str) -> bool {
    key.chars().count() > MAX_KEY_CHARS
}

/// The value as JSON text, bounded by `max_bytes`; `None` when the body has no `value`.
pub fn value(obj: &Map<String, Value>, max_bytes: usize) -> Result<Option<Arc<str>>, String> {
    let Some(v) = obj.get("value") else {
        return Ok(None);
    };
    let text = serde_json::to_string(v).map_err(|e| e.to_string())?;
    if text.len() > max_bytes {
        return Err(format!(
            "Value is too large (limit {max_bytes} bytes of JSON)"
        ));
    }
    Ok(Some(text.into()))
}

/// A `/kvs` answer written directly, with the bytes `json!` would give (keys in sorted order):
/// a found value's stored JSON text is copied in as it is (it was validated when written or
/// received), never parsed and serialized again.
pub fn kv_answer(
    status: axum::http::StatusCode,
    result: &str,
    token: Option<&str>,
    shard: u32,
    value: Option<&str>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let mut b =
        String::with_capacity(64 + token.map_or(4, str::len) + value.map_or(0, str::len) + 12);
    b.push_str("{\"causal-metadata\":");
    match token {
        Some(t) => push_json_str(&mut b, t),
        None => b.push_str("null"),
    }
    b.push_str(",\"result\":");
    push_json_str(&mut b, result);
    b.push_str(",\"shard-id\":");
    let _ = std::fmt::Write::write_fmt(&mut b, format_args!("{shard}"));
    if let Some(v) = value {
        b.push_str(",\"value\":");
        b.push_str(v);
    }
    b.push('}');
    (
        status,
        [(
            axum::http::header::CONTENT_TYPE,
            axum::http::HeaderValue::from_static("application/json"),
        )],
        b,
    )
        .into_response()
}

/// Appends `s` as a JSON string.
fn push_json_str(out: &mut String, s: &str) {
    if s.bytes()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b' ' | b'.'))
    {
        out.push('"');
        out.push_str(s);
        out.push('"');
    } else {
        // serializing a str cannot fail
        out.push_str(&serde_json::to_string(s).unwrap_or_default());
    }
}

/// Parses stored JSON text back into a value for a response.
pub fn stored_value(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or(Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj_of(s: &str) -> Result<Map<String, Value>, String> {
        object(&Bytes::from(s.to_string()))
    }

    #[test]
    fn bodies() {
        assert!(obj_of("").unwrap().is_empty());
        assert!(obj_of("  \n").unwrap().is_empty());
        assert!(obj_of("null").unwrap().is_empty());
        assert!(obj_of("{not json").is_err());
        assert!(obj_of("[1]").is_err());
    }

    #[test]
    fn metadata_field() {
        assert!(
            metadata(&obj_of(r#"{"causal-metadata": null}"#).unwrap())
                .unwrap()
                .is_empty()
        );
        assert!(
            metadata(&obj_of(r#"{"causal-metadata": ""}"#).unwrap())
                .unwrap()
                .is_empty()
        );
        assert!(metadata(&obj_of(r#"{"causal-metadata": 5}"#).unwrap()).is_err());
        assert!(metadata(&obj_of(r#"{"causal-metadata": "forged"}"#).unwrap()).is_err());
        let t = CausalMetadata::empty().encode();
        let body = format!(r#"{{"causal-metadata": "{t}"}}"#);
        assert!(metadata(&obj_of(&body).unwrap()).is_ok());
    }

    #[tokio::test]
    async fn direct_answers_are_the_bytes_json_would_give() {
        use axum::http::StatusCode;
        use http_body_util::BodyExt;
        let cases = [
            ("created", Some("ckv2-AbC_9-x"), 1, None),
            ("found", None, 0, Some(r#"{"a":[1,2.5,"é\n"],"b":null}"#)),
            ("found", Some("we\"ird\\token\n"), 7, Some("\"text\"")),
        ];
        for (result, token, shard, value) in cases {
            let resp = kv_answer(StatusCode::OK, result, token, shard, value);
            assert_eq!(resp.headers()["content-type"], "application/json");
            let got = resp.into_body().collect().await.unwrap().to_bytes();
            let mut expected =
                serde_json::json!({"result": result, "causal-metadata": token, "shard-id": shard});
            if let Some(v) = value {
                expected["value"] = stored_value(v);
            }
            assert_eq!(got, serde_json::to_vec(&expected).unwrap());
        }
    }

    #[test]
    fn values_keep_their_type_and_are_bounded() {
        let o = obj_of(r#"{"value": 12}"#).unwrap();
        assert_eq!(value(&o, 100).unwrap().as_deref(), Some("12"));
        assert_eq!(stored_value("12"), Value::from(12));
        assert!(value(&obj_of(r#"{"value": "0123456789"}"#).unwrap(), 5).is_err());
        assert_eq!(value(&obj_of("{}").unwrap(), 5).unwrap(), None);
        assert!(key_too_long(&"k".repeat(51)) && !key_too_long(&"k".repeat(50)));
        assert_eq!(
            shard_count(&obj_of(r#"{"shard-count": 3}"#).unwrap()),
            Ok(3)
        );
        assert!(shard_count(&obj_of(r#"{"shard-count": 0}"#).unwrap()).is_err());
    }
}
