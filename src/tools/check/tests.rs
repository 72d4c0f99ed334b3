//! Unit tests of the checker on small inline histories.

use super::{AnomalyKind, CheckError, Report, check_history};

/// Builds histories line by line; time advances with every op.
#[derive(Default)]
struct H {
    lines: Vec<String>,
    t: u64,
}

impl H {
    fn op(
        &mut self,
        session: &str,
        kind: &str,
        key: &str,
        value: Option<&str>,
        outcome: &str,
    ) -> &mut Self {
        self.t += 10;
        let value = value.map_or("null".to_string(), |v| format!("\"{v}\""));
        let status = match (kind, outcome, value.as_str()) {
            (_, "unknown", _) => "null",
            (_, "fail", _) => "503",
            ("get", _, "null") => "404",
            ("put", _, _) => "201",
            _ => "200",
        };
        self.lines.push(format!(
            r#"{{"type":"op","session":"{session}","node":"n1","kind":"{kind}","key":"{key}","value":{value},"meta_in":null,"meta_out":null,"invoke_ns":{},"complete_ns":{},"outcome":"{outcome}","status":{status}}}"#,
            self.t,
            self.t + 5
        ));
        self
    }
    fn put(&mut self, s: &str, k: &str, v: &str) -> &mut Self {
        self.op(s, "put", k, Some(v), "ok")
    }
    fn get(&mut self, s: &str, k: &str, v: Option<&str>) -> &mut Self {
        self.op(s, "get", k, v, "ok")
    }
    fn del(&mut self, s: &str, k: &str) -> &mut Self {
        self.op(s, "delete", k, None, "ok")
    }
    fn fin(&mut self, node: &str, k: &str, v: Option<&str>) -> &mut Self {
        let value = v.map_or("null".to_string(), |v| format!("\"{v}\""));
        self.lines.push(format!(
            r#"{{"type":"final","node":"{node}","shard":0,"key":"{k}","value":{value}}}"#
        ));
        self
    }
    fn check(&self) -> Report {
        let text = self.lines.join("\n");
        check_history(text.as_bytes()).expect("valid history")
    }
}

fn only(report: &Report, kinds: &[AnomalyKind]) {
    for kind in AnomalyKind::ALL {
        assert_eq!(
            report.count(kind) > 0,
            kinds.contains(&kind),
            "{kind}: {report}"
        );
    }
}

#[test]
fn sequential_sessions_are_clean() {
    let r = H::default()
        .put("a", "x", "a0")
        .get("b", "x", Some("a0"))
        .put("b", "x", "b0")
        .get("a", "x", Some("b0"))
        .del("a", "x")
        .get("b", "x", None)
        .fin("n1", "x", None)
        .fin("n2", "x", None)
        .check();
    assert!(r.is_clean(), "{r}");
    assert_eq!((r.ops, r.ok_ops, r.sessions), (6, 6, 2));
}

#[test]
fn thin_air_and_failed_put_values() {
    let r = H::default()
        .op("a", "put", "x", Some("a0"), "fail")
        .get("b", "x", Some("a0"))
        .get("b", "x", Some("zz"))
        .check();
    assert_eq!(r.count(AnomalyKind::ThinAirRead), 2, "{r}");
    only(&r, &[AnomalyKind::ThinAirRead]);
}

#[test]
fn stale_read_after_causal_dependency() {
    let r = H::default()
        .put("a", "x", "a0")
        .put("a", "x", "a1")
        .put("a", "y", "a2")
        .get("b", "y", Some("a2"))
        .get("b", "x", Some("a0"))
        .check();
    only(&r, &[AnomalyKind::WriteCoRead]);
}

#[test]
fn unknown_put_counts_only_once_read() {
    let mut h = H::default();
    h.put("a", "x", "a0")
        .op("a", "put", "x", Some("a1"), "unknown")
        .put("a", "y", "a2")
        .get("b", "y", Some("a2"))
        .get("b", "x", Some("a0"));
    assert!(h.check().is_clean(), "{}", h.check());
    h.get("c", "x", Some("a1"));
    only(&h.check(), &[AnomalyKind::WriteCoRead]);
}

#[test]
fn empty_read_may_read_a_concurrent_delete() {
    let mut h = H::default();
    h.put("a", "x", "a0")
        .get("b", "x", Some("a0"))
        .del("c", "x")
        .get("b", "x", None);
    assert!(h.check().is_clean(), "{}", h.check());
    // Once the delete is causally overwritten before the read, it is an anomaly.
    h.put("c", "x", "c1")
        .get("d", "x", Some("c1"))
        .get("d", "x", None);
    let r = h.check();
    assert_eq!(r.count(AnomalyKind::WriteCoInitRead), 1, "{r}");
    assert_eq!(r.count(AnomalyKind::MonotonicReads), 1, "{r}");
}

#[test]
fn unknown_delete_may_explain_empty_read() {
    let r = H::default()
        .put("a", "x", "a0")
        .op("a", "delete", "x", None, "unknown")
        .get("a", "x", None)
        .fin("n1", "x", None)
        .check();
    assert!(r.is_clean(), "{r}");
}

#[test]
fn read_of_own_future_write_is_a_cycle() {
    let r = H::default()
        .get("a", "x", Some("a1"))
        .put("a", "x", "a1")
        .check();
    assert_eq!(r.count(AnomalyKind::CyclicCo), 1, "{r}");
}

#[test]
fn duplicate_values_are_rejected() {
    let err = check_history(
        H::default()
            .put("a", "x", "v")
            .put("b", "x", "v")
            .lines
            .join("\n")
            .as_bytes(),
    )
    .expect_err("duplicate");
    assert!(
        matches!(
            err,
            CheckError::DuplicateValue {
                line: 2,
                first: 1,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn lost_write_only_when_final_is_causally_older() {
    let mut h = H::default();
    h.put("a", "x", "a0")
        .put("b", "x", "b0")
        .fin("n1", "x", Some("a0"));
    assert!(
        h.check().is_clean(),
        "concurrent loser is not lost: {}",
        h.check()
    );
    let r = H::default()
        .put("a", "x", "a0")
        .get("b", "x", Some("a0"))
        .put("b", "x", "b0")
        .fin("n1", "x", Some("a0"))
        .check();
    only(&r, &[AnomalyKind::LostWrite]);
    assert_eq!(r.lost_writes, 1);
}

#[test]
fn absent_final_key_needs_a_delete() {
    let mut h = H::default();
    h.put("a", "x", "a0").fin("n1", "x", None);
    only(&h.check(), &[AnomalyKind::LostWrite]);
    h.del("b", "x");
    assert!(h.check().is_clean(), "{}", h.check());
}

#[test]
fn divergent_finals() {
    let r = H::default()
        .put("a", "x", "a0")
        .put("b", "x", "b0")
        .fin("n1", "x", Some("a0"))
        .fin("n2", "x", Some("b0"))
        .check();
    only(&r, &[AnomalyKind::Divergence]);
    assert_eq!(r.divergent_keys, 1);
}
