//! Typed records of a history file (JSON lines) and the parser that reads them.
//!
//! The same types derive `Serialize`, so the load generator and the nemesis can
//! write histories with exactly the schema the checker reads.

use std::io::BufRead;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use thiserror::Error;

/// Errors raised while reading a history.
#[derive(Debug, Error)]
pub enum CheckError {
    /// The history file could not be opened.
    #[error("cannot open history {path}: {source}")]
    Open {
        /// Path of the history file.
        path: PathBuf,
        /// Underlying I/O error.
        source: std::io::Error,
    },
    /// Reading a line failed.
    #[error("line {line}: read error: {source}")]
    Io {
        /// 1-based line number.
        line: usize,
        /// Underlying I/O error.
        source: std::io::Error,
    },
    /// A line is not a valid history record.
    #[error("line {line}: malformed record: {message}")]
    Malformed {
        /// 1-based line number.
        line: usize,
        /// What is wrong with the line.
        message: String,
    },
    /// Two puts wrote the same value, so the history is not differentiated.
    #[error(
        "line {line}: value {value} was already written at line {first}; written values must be unique"
    )]
    DuplicateValue {
        /// 1-based line number of the second put.
        line: usize,
        /// 1-based line number of the first put.
        first: usize,
        /// The duplicated value (JSON).
        value: String,
    },
}

/// Kind of a client operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OpKind {
    /// Write a value.
    Put,
    /// Read a value.
    Get,
    /// Remove the key (a write of a unique tombstone).
    Delete,
}

/// What the client learned about an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// The server acknowledged success.
    Ok,
    /// The operation definitely did not happen.
    Fail,
    /// Timeout or connection error: it may or may not have happened.
    Unknown,
}

/// One client operation (`"type":"op"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpRecord {
    /// Client session name; operations of a session are sequential.
    pub session: String,
    /// Node the request was sent to.
    #[serde(default)]
    pub node: Option<String>,
    /// Operation kind.
    pub kind: OpKind,
    /// Key operated on.
    pub key: String,
    /// Value written (put) or read (get; null when nothing was found).
    #[serde(default)]
    pub value: Value,
    /// Causal metadata sent with the request.
    #[serde(default)]
    pub meta_in: Option<String>,
    /// Causal metadata returned by the server.
    #[serde(default)]
    pub meta_out: Option<String>,
    /// Invocation time in nanoseconds (orders a session).
    pub invoke_ns: u64,
    /// Completion time in nanoseconds.
    #[serde(default)]
    pub complete_ns: Option<u64>,
    /// Outcome of the operation.
    pub outcome: Outcome,
    /// HTTP status, when there was a response.
    #[serde(default)]
    pub status: Option<u16>,
    /// The write a successful put or delete made, as the server named it
    /// (`origin/generation/seq`, the `x-causalkv-write` header); informational.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub written: Option<String>,
}

/// Value of a key read directly from one node after convergence (`"type":"final"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FinalRecord {
    /// Node that was read.
    pub node: String,
    /// Shard the key belongs to.
    #[serde(default)]
    pub shard: u64,
    /// Key read.
    pub key: String,
    /// Value found, or null when the key is absent.
    #[serde(default)]
    pub value: Value,
}

/// One line of a history file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Record {
    /// A client operation.
    Op(OpRecord),
    /// A final-state read.
    Final(FinalRecord),
}

/// A parsed history: records paired with their 1-based line numbers.
#[derive(Debug, Default)]
pub struct ParsedHistory {
    /// Operation records.
    pub ops: Vec<(usize, OpRecord)>,
    /// Final-state records.
    pub finals: Vec<(usize, FinalRecord)>,
}

/// Parses a JSON-lines history; blank lines are skipped.
pub fn parse(reader: impl BufRead) -> Result<ParsedHistory, CheckError> {
    let mut parsed = ParsedHistory::default();
    for (i, line) in reader.lines().enumerate() {
        let line_no = i + 1;
        let text = line.map_err(|source| CheckError::Io {
            line: line_no,
            source,
        })?;
        let text = text.trim();
        if text.is_empty() {
            continue;
        }
        let record: Record = serde_json::from_str(text).map_err(|e| CheckError::Malformed {
            line: line_no,
            message: e.to_string(),
        })?;
        match record {
            Record::Op(op) => {
                if op.kind == OpKind::Put && op.value.is_null() {
                    return Err(CheckError::Malformed {
                        line: line_no,
                        message: "a put must write a non-null value".to_string(),
                    });
                }
                parsed.ops.push((line_no, op));
            }
            Record::Final(f) => parsed.finals.push((line_no, f)),
        }
    }
    Ok(parsed)
}

/// Canonical text of a JSON value (object keys are sorted), used as its identity.
pub fn canonical(value: &Value) -> Option<String> {
    if value.is_null() {
        None
    } else {
        Some(sorted(value).to_string())
    }
}

/// Rebuilds a value with object keys inserted in sorted order, so the text is
/// canonical whether or not serde_json preserves insertion order.
fn sorted(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            Value::Object(
                entries
                    .into_iter()
                    .map(|(k, v)| (k.clone(), sorted(v)))
                    .collect(),
            )
        }
        Value::Array(items) => Value::Array(items.iter().map(sorted).collect()),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ops_and_finals() {
        let text = concat!(
            r#"{"type":"op","session":"c1","node":"n1","kind":"put","key":"k","value":"c1-0","meta_in":null,"meta_out":"m","invoke_ns":1,"complete_ns":2,"outcome":"ok","status":201}"#,
            "\n\n",
            r#"{"type":"final","node":"n1","shard":0,"key":"k","value":"c1-0"}"#,
            "\n"
        );
        let parsed = parse(text.as_bytes()).expect("valid history");
        assert_eq!(parsed.ops.len(), 1);
        assert_eq!(parsed.ops[0].0, 1);
        assert_eq!(parsed.ops[0].1.kind, OpKind::Put);
        assert_eq!(parsed.finals.len(), 1);
        assert_eq!(parsed.finals[0].0, 3);
    }

    #[test]
    fn malformed_line_names_line_number() {
        let text = "{\"type\":\"final\",\"node\":\"n\",\"key\":\"k\",\"value\":null}\n{not json}\n";
        let err = parse(text.as_bytes()).expect_err("must fail");
        assert!(
            matches!(err, CheckError::Malformed { line: 2, .. }),
            "{err}"
        );
        assert!(err.to_string().starts_with("line 2:"));
    }

    #[test]
    fn put_of_null_is_rejected() {
        let text = r#"{"type":"op","session":"c","kind":"put","key":"k","value":null,"invoke_ns":1,"outcome":"ok"}"#;
        let err = parse(text.as_bytes()).expect_err("must fail");
        assert!(matches!(err, CheckError::Malformed { line: 1, .. }));
    }

    #[test]
    fn canonical_sorts_object_keys() {
        let a: Value = serde_json::from_str(r#"{"b":1,"a":2}"#).expect("json");
        let b: Value = serde_json::from_str(r#"{"a":2,"b":1}"#).expect("json");
        assert_eq!(canonical(&a), canonical(&b));
        assert_eq!(canonical(&Value::Null), None);
    }
}
