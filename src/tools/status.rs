//! `causalkv status --node ADDR`: asks one node for its view over gRPC (Admin/Status), then
//! asks every node of that view, and prints one row per node (a table, or JSON with `--json`).
//!
//! Must not: change anything on the cluster; wait on an unreachable node past its deadline.

use std::time::Duration;

use futures::future::join_all;
use serde::Serialize;
use tonic::transport::Endpoint;

use crate::rpc::pb;

/// Options of `causalkv status`.
#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// The node to ask first (IP:PORT).
    #[arg(long)]
    pub node: String,
    /// Print JSON (one array of rows) instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// `causalkv status`: prints the table (or JSON).
pub fn main(args: Args) -> anyhow::Result<i32> {
    let rows = tokio::runtime::Runtime::new()?.block_on(collect(&args.node))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        println!("{}", table(&rows));
    }
    Ok(0)
}

/// Deadline of each Status call: a live node answers in milliseconds; a dead one must not
/// hold the command (the RPC default deadline is 1 s; an operator waits a little longer).
const CALL_TIMEOUT: Duration = Duration::from_secs(2);

/// Why the command failed.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    /// The node asked first did not answer.
    #[error("cannot reach {0}: {1}")]
    Unreachable(String, String),
}

/// One node's row.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Row {
    /// The node's address.
    pub node: String,
    /// Its shard, `None` for a spare or when unknown.
    pub shard: Option<u32>,
    /// `up`/`down`/`probation` as the asked node sees it (`self` for the asked node), or
    /// `unreachable` when its own Status call failed.
    pub state: String,
    /// Whether the node reports itself ready.
    pub ready: Option<bool>,
    /// Its incarnation.
    pub incarnation: Option<u64>,
    /// Writes queued at that node for all its peers.
    pub queue_depth: Option<u64>,
    /// Live keys it holds.
    pub keys: Option<u64>,
}

/// Calls Admin/Status on `addr`.
pub async fn fetch(addr: &str) -> Result<pb::StatusResponse, String> {
    let endpoint = Endpoint::from_shared(format!("http://{addr}"))
        .map_err(|e| e.to_string())?
        .connect_timeout(CALL_TIMEOUT)
        .timeout(CALL_TIMEOUT);
    let call = async {
        let channel = endpoint.connect().await.map_err(|e| e.to_string())?;
        let mut client = pb::admin_client::AdminClient::new(channel);
        client
            .status(pb::StatusRequest {})
            .await
            .map(|r| r.into_inner())
            .map_err(|e| e.message().to_string())
    };
    tokio::time::timeout(CALL_TIMEOUT * 2, call)
        .await
        .map_err(|_| "timed out".to_string())?
}

/// Rows for every node that `addr` knows (its view and its peers), in address order.
pub async fn collect(addr: &str) -> Result<Vec<Row>, StatusError> {
    let first = fetch(addr)
        .await
        .map_err(|e| StatusError::Unreachable(addr.to_string(), e))?;
    let mut nodes: Vec<(String, String)> = vec![(first.address.clone(), "self".to_string())];
    for p in &first.peers {
        nodes.push((p.address.clone(), p.state.clone()));
    }
    nodes.sort();
    nodes.dedup_by(|a, b| a.0 == b.0);
    let answers = join_all(nodes.iter().map(|(n, _)| fetch(n))).await;
    let shard_of = |node: &str| -> Option<u32> {
        let map = first.map.as_ref()?;
        map.shards
            .iter()
            .find(|s| s.members.iter().any(|m| m == node))
            .map(|s| s.id)
    };
    Ok(nodes
        .into_iter()
        .zip(answers)
        .map(|((node, seen), answer)| match answer {
            Ok(s) => Row {
                shard: s.shard_id,
                state: seen,
                ready: Some(s.ready),
                incarnation: Some(s.incarnation),
                queue_depth: Some(s.peers.iter().map(|p| p.queue_depth).sum()),
                keys: Some(s.key_count),
                node,
            },
            Err(_) => Row {
                shard: shard_of(&node),
                state: "unreachable".into(),
                ready: None,
                incarnation: None,
                queue_depth: None,
                keys: None,
                node,
            },
        })
        .collect())
}

/// The rows as an aligned text table.
pub fn table(rows: &[Row]) -> String {
    let opt = |v: Option<u64>| v.map_or("-".to_string(), |v| v.to_string());
    let mut lines = vec![[
        "NODE".to_string(),
        "SHARD".into(),
        "STATE".into(),
        "READY".into(),
        "INCARNATION".into(),
        "QUEUE".into(),
        "KEYS".into(),
    ]];
    for r in rows {
        lines.push([
            r.node.clone(),
            r.shard.map_or("spare".into(), |s| s.to_string()),
            r.state.clone(),
            r.ready
                .map_or("-".into(), |b| if b { "yes" } else { "no" }.into()),
            opt(r.incarnation),
            opt(r.queue_depth),
            opt(r.keys),
        ]);
    }
    let widths: Vec<usize> = (0..7)
        .map(|c| lines.iter().map(|l| l[c].len()).max().unwrap_or(0))
        .collect();
    lines
        .iter()
        .map(|l| {
            let cells: Vec<String> = l
                .iter()
                .zip(&widths)
                .map(|(cell, w)| format!("{cell:<w$}"))
                .collect();
            cells.join("  ").trim_end().to_string()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_aligns_and_marks_unknowns() {
        let rows = vec![
            Row {
                node: "127.0.0.2:8090".into(),
                shard: Some(0),
                state: "self".into(),
                ready: Some(true),
                incarnation: Some(17),
                queue_depth: Some(3),
                keys: Some(42),
            },
            Row {
                node: "127.0.0.3:8090".into(),
                shard: None,
                state: "unreachable".into(),
                ready: None,
                incarnation: None,
                queue_depth: None,
                keys: None,
            },
        ];
        let t = table(&rows);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].starts_with("NODE            SHARD  STATE"), "{t}");
        assert!(lines[1].contains("self") && lines[1].ends_with("42"), "{t}");
        assert!(lines[2].contains("spare  unreachable  -"), "{t}");
    }
}
