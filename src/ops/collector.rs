//! Gauges and counters computed at scrape time from [`Node::status`]: shard map, view, peers,
//! queues, keys, causal buffer, replication/sync/reshard work, and the `process_*` metrics.
//!
//! Must not: keep state between scrapes (every value comes from the node when asked).

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Unit;

use super::process;
use crate::cluster::Node;
use crate::cluster::status::NodeStatus;

/// Computes node gauges and counters at scrape time.
#[derive(Clone)]
pub struct NodeCollector(pub Node);

impl std::fmt::Debug for NodeCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NodeCollector")
    }
}

/// Writes one unlabelled metric.
fn one(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<Unit>,
    value: Value,
) -> Result<(), std::fmt::Error> {
    let kind = match value {
        Value::Counter(_) | Value::CounterF(_) => MetricType::Counter,
        Value::Gauge(_) => MetricType::Gauge,
    };
    let m = enc.encode_descriptor(name, help, unit.as_ref(), kind)?;
    match value {
        Value::Counter(v) => ConstCounter::new(v).encode(m),
        Value::CounterF(v) => ConstCounter::new(v).encode(m),
        Value::Gauge(v) => ConstGauge::new(v).encode(m),
    }
}

/// A scrape-time value.
enum Value {
    Counter(u64),
    CounterF(f64),
    Gauge(i64),
}

fn gauge(n: u64) -> Value {
    Value::Gauge(i64::try_from(n).unwrap_or(i64::MAX))
}

impl Collector for NodeCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s: NodeStatus = self.0.status();
        let c = &s.counters;
        let e = &mut enc;
        one(
            e,
            "causalkv_ready",
            "1 when /readyz answers 200",
            None,
            gauge(u64::from(s.not_ready.is_none())),
        )?;
        one(
            e,
            "causalkv_shard_map_epoch",
            "Epoch of the shard map in force",
            None,
            gauge(s.map_epoch),
        )?;
        one(
            e,
            "causalkv_shard_map_generation",
            "Data generation of the shard map in force",
            None,
            gauge(s.generation),
        )?;
        one(
            e,
            "causalkv_shards",
            "Shards in the map in force",
            None,
            gauge(s.shards.len() as u64),
        )?;
        one(
            e,
            "causalkv_view_size",
            "Nodes in this node's view (itself included)",
            None,
            gauge(s.view.len() as u64),
        )?;
        one(
            e,
            "causalkv_causal_buffer_writes",
            "Received writes waiting for their causal dependencies",
            None,
            gauge(s.causal_buffer),
        )?;
        one(
            e,
            "causalkv_resharding",
            "1 while a reshard is staged on this node",
            None,
            gauge(u64::from(s.resharding)),
        )?;
        one(
            e,
            "causalkv_reshard_phase",
            "Reshard phase here: 0 none, 1 prepare, 2 transfer, 3 commit (coordinator), 4 prepared (participant)",
            None,
            gauge(s.reshard_phase as u64),
        )?;
        one(
            e,
            "causalkv_replication_batches",
            "Replication batches acknowledged by peers",
            None,
            Value::Counter(c.batches_sent),
        )?;
        one(
            e,
            "causalkv_replication_batches_failed",
            "Replication batches given up on after retries",
            None,
            Value::Counter(c.batches_failed),
        )?;
        one(
            e,
            "causalkv_replication_writes",
            "Writes in acknowledged replication batches",
            None,
            Value::Counter(c.writes_sent),
        )?;
        one(
            e,
            "causalkv_replication",
            "Value bytes in acknowledged replication batches",
            Some(Unit::Bytes),
            Value::Counter(c.bytes_sent),
        )?;
        one(
            e,
            "causalkv_syncs",
            "State pulls completed (start-up, anti-entropy, new member)",
            None,
            Value::Counter(c.syncs),
        )?;
        one(
            e,
            "causalkv_syncs_failed",
            "State pulls that failed",
            None,
            Value::Counter(c.syncs_failed),
        )?;
        one(
            e,
            "causalkv_sync_writes",
            "Writes received by state pulls",
            None,
            Value::Counter(c.sync_writes),
        )?;
        one(
            e,
            "causalkv_sync",
            "Value bytes received by state pulls",
            Some(Unit::Bytes),
            Value::Counter(c.sync_bytes),
        )?;
        one(
            e,
            "causalkv_sync_duration",
            "Total time spent in completed state pulls",
            Some(Unit::Seconds),
            Value::CounterF(c.sync_seconds),
        )?;
        one(
            e,
            "causalkv_reshards",
            "Reshards this node coordinated and committed",
            None,
            Value::Counter(c.reshards),
        )?;
        one(
            e,
            "causalkv_reshards_failed",
            "Reshards this node coordinated that were aborted",
            None,
            Value::Counter(c.reshards_failed),
        )?;
        one(
            e,
            "causalkv_reshard_keys",
            "Keys moved by reshards this node coordinated",
            None,
            Value::Counter(c.reshard_keys),
        )?;
        one(
            e,
            "causalkv_reshard_duration",
            "Total time of committed reshards this node coordinated",
            Some(Unit::Seconds),
            Value::CounterF(c.reshard_seconds),
        )?;
        let mut m = enc.encode_descriptor(
            "causalkv_keys",
            "Live keys held here, by shard",
            None,
            MetricType::Gauge,
        )?;
        if let Some(shard) = s.shard {
            let labels = [("shard", shard.to_string())];
            ConstGauge::new(i64::try_from(s.keys).unwrap_or(i64::MAX))
                .encode(m.encode_family(&labels)?)?;
        }
        let mut m = enc.encode_descriptor(
            "causalkv_shard_members",
            "Members of each shard in the map in force",
            None,
            MetricType::Gauge,
        )?;
        for sh in &s.shards {
            let labels = [("shard", sh.id.to_string())];
            ConstGauge::new(sh.members.len() as i64).encode(m.encode_family(&labels)?)?;
        }
        let mut m = enc.encode_descriptor(
            "causalkv_peers",
            "Known peers by liveness state (up, down = suspected, probation)",
            None,
            MetricType::Gauge,
        )?;
        for state in ["up", "down", "probation"] {
            let n = s.peers.iter().filter(|p| p.state == state).count();
            ConstGauge::new(n as i64).encode(m.encode_family(&[("state", state)])?)?;
        }
        let mut m = enc.encode_descriptor(
            "causalkv_peer_up",
            "1 when the peer is in this node's view",
            None,
            MetricType::Gauge,
        )?;
        for p in &s.peers {
            let labels = [("peer", p.address.as_str())];
            ConstGauge::new(i64::from(p.state == "up")).encode(m.encode_family(&labels)?)?;
        }
        let mut m = enc.encode_descriptor(
            "causalkv_replication_queue_depth",
            "Writes queued for each peer",
            None,
            MetricType::Gauge,
        )?;
        for p in &s.peers {
            let labels = [("peer", p.address.as_str())];
            ConstGauge::new(i64::try_from(p.queue_depth).unwrap_or(i64::MAX))
                .encode(m.encode_family(&labels)?)?;
        }
        let mut m = enc.encode_descriptor(
            "causalkv_replication_queue",
            "Estimated bytes queued for each peer",
            Some(&Unit::Bytes),
            MetricType::Gauge,
        )?;
        for p in &s.peers {
            let labels = [("peer", p.address.as_str())];
            ConstGauge::new(i64::try_from(p.queue_bytes).unwrap_or(i64::MAX))
                .encode(m.encode_family(&labels)?)?;
        }
        let mut m = enc.encode_descriptor(
            "causalkv_replication_lag_writes",
            "This node's writes a shard peer had not reported delivered at its last heartbeat",
            None,
            MetricType::Gauge,
        )?;
        for p in &s.peers {
            let labels = [("peer", p.address.as_str())];
            ConstGauge::new(i64::try_from(p.lag_writes).unwrap_or(i64::MAX))
                .encode(m.encode_family(&labels)?)?;
        }
        process::encode(&mut enc)
    }
}
