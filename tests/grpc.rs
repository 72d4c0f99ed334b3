//! gRPC on the REST port: reflection lists every service and the health check answers
//! SERVING, through the real `grpcurl` (installed by scripts/test.sh) and through tonic.

mod common;

use std::process::Command;

use causalkv::rpc::pb;
use common::Cluster;

fn grpcurl() -> String {
    std::env::var("GRPCURL").unwrap_or_else(|_| "grpcurl".into())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpcurl_lists_services_and_health_is_serving() {
    let c = Cluster::start(2, Some(1), &[]).await;
    let addr = c.addr(0);
    let out = Command::new(grpcurl())
        .args(["-plaintext", &addr, "list"])
        .output()
        .expect("grpcurl must be installed (scripts/test.sh installs it; or set GRPCURL)");
    let list = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{list} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    for svc in [
        "causalkv.v1.Admin",
        "causalkv.v1.Membership",
        "causalkv.v1.Replication",
        "causalkv.v1.StateTransfer",
        "grpc.health.v1.Health",
    ] {
        assert!(
            list.lines().any(|l| l.trim() == svc),
            "{svc} missing from {list}"
        );
    }
    let out = Command::new(grpcurl())
        .args(["-plaintext", &addr, "grpc.health.v1.Health/Check"])
        .output()
        .expect("grpcurl");
    assert!(String::from_utf8_lossy(&out.stdout).contains("SERVING"));
    let out = Command::new(grpcurl())
        .args(["-plaintext", &addr, "causalkv.v1.Admin/Status"])
        .output()
        .expect("grpcurl");
    let status = String::from_utf8_lossy(&out.stdout);
    assert!(status.contains("\"ready\": true"), "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_status_over_tonic_shows_view_and_clock() {
    let c = Cluster::start(2, Some(1), &[]).await;
    let (s, _) = c
        .put(0, "k", serde_json::json!(1), &serde_json::Value::Null)
        .await;
    assert_eq!(s, 201);
    let mut client = pb::admin_client::AdminClient::connect(format!("http://{}", c.addr(0)))
        .await
        .expect("connect");
    let st = client
        .status(pb::StatusRequest {})
        .await
        .expect("status")
        .into_inner();
    assert_eq!(st.address, c.addr(0));
    assert!(st.ready);
    assert_eq!(st.view.len(), 2);
    assert_eq!(st.key_count, 1);
    assert_eq!(st.shard_id, Some(0));
    assert_eq!(st.mode, "sharded");
    assert!(st.clock.iter().any(|e| e.origin == c.addr(0) && e.seq == 1));
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", c.addr(1)))
        .expect("endpoint")
        .connect()
        .await
        .expect("connect");
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    let h = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        })
        .await
        .expect("check")
        .into_inner();
    assert_eq!(
        h.status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );
}
