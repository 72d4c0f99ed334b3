//! Optional mutual TLS between nodes, on loopback: a cluster with `CKV_TLS_*` replicates over
//! TLS; internal calls over plain h2c (even from a member's address) and TLS calls without a
//! CA-signed client certificate are refused, and nothing changes; REST stays plain HTTP.

mod common;

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use causalkv::rpc::pb;
use common::Cluster;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    SanType,
};
use serde_json::{Value, json};
use tonic::Code;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

/// Nodes of the cluster.
const NODES: usize = 3;

/// PEM files: a CA, and one certificate for every node's IP signed by it.
struct Pki {
    dir: PathBuf,
    ca: String,
    cert: String,
    key: String,
}

fn pki(ips: &[IpAddr]) -> Pki {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca =
        CertifiedIssuer::self_signed(ca_params, KeyPair::generate().expect("key")).expect("CA");
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    params.subject_alt_names = ips.iter().map(|ip| SanType::IpAddress(*ip)).collect();
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let key = KeyPair::generate().expect("key");
    let cert = params.signed_by(&key, &ca).expect("cert");
    let dir =
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("mtls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let write = |name: &str, pem: String| {
        let p = dir.join(name);
        std::fs::write(&p, pem).expect("write pem");
        p.to_string_lossy().to_string()
    };
    Pki {
        ca: write("ca.pem", ca.pem()),
        cert: write("node.pem", cert.pem()),
        key: write("node.key", key.serialize_pem()),
        dir,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_cluster_replicates_and_refuses_calls_without_a_cluster_certificate() {
    // The harness gives the first cluster of a test process the block below (tests/common).
    let base = format!("127.{}.1", 20 + std::process::id() % 200);
    let ips: Vec<IpAddr> = (0..NODES)
        .map(|i| format!("{base}.{}", i + 2).parse().expect("ip"))
        .collect();
    let pki = pki(&ips);
    let c = Cluster::start(
        NODES,
        Some(1),
        &[
            ("CKV_TLS_CERT", &pki.cert),
            ("CKV_TLS_KEY", &pki.key),
            ("CKV_TLS_CA", &pki.ca),
        ],
    )
    .await;
    assert_eq!(c.addr(0), format!("{base}.2:8090"), "harness block changed");
    // Replication, heartbeats and forwarding all run over TLS.
    let (s, b) = c.put(0, "k", json!(1), &Value::Null).await;
    assert_eq!(s, 201, "{b}");
    let (s, b) = c.get_r(2, "k", &b["causal-metadata"]).await;
    assert_eq!((s, &b["value"]), (200, &json!(1)), "{b}");
    let before = c.view(0).await;
    assert_eq!(before.len(), NODES);

    // Plain h2c from a member's own address: refused.
    let plain = Endpoint::from_shared(format!("http://{}", c.addr(0)))
        .expect("endpoint")
        .local_address(Some(ips[1]))
        .connect_lazy();
    let mut m = pb::membership_client::MembershipClient::new(plain);
    let r = m
        .view_change(pb::ViewChangeRequest {
            sender: c.addr(1),
            kind: pb::ChangeKind::Removed as i32,
            node: c.addr(2),
            incarnation: 0,
        })
        .await;
    assert_eq!(r.expect_err("refused").code(), Code::Unauthenticated);

    // TLS that trusts the CA but presents no client certificate: the handshake fails.
    let ca = std::fs::read(&pki.ca).expect("ca");
    let anonymous = Endpoint::from_shared(format!("https://{}", c.addr(0)))
        .expect("endpoint")
        .tls_config(ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&ca)))
        .expect("tls")
        .connect_lazy();
    let mut m = pb::membership_client::MembershipClient::new(anonymous);
    assert!(m.install_shard_map(pb::ShardMap::default()).await.is_err());

    // With the cluster certificate, a call gets through (and is then validated as usual).
    let id = Identity::from_pem(
        std::fs::read(&pki.cert).expect("cert"),
        std::fs::read(&pki.key).expect("key"),
    );
    let member = Endpoint::from_shared(format!("https://{}", c.addr(0)))
        .expect("endpoint")
        .tls_config(
            ClientTlsConfig::new()
                .ca_certificate(Certificate::from_pem(&ca))
                .identity(id),
        )
        .expect("tls")
        .connect_lazy();
    let mut m = pb::membership_client::MembershipClient::new(member);
    let hostile = pb::ShardMap {
        epoch: 2,
        generation: 1 << 40,
        shard_count: 1,
        shards: vec![],
    };
    let r = m.install_shard_map(hostile).await;
    assert_eq!(r.expect_err("invalid").code(), Code::InvalidArgument);

    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(c.view(0).await, before);
    let (s, _) = c.get(1, "k", &Value::Null).await;
    assert_eq!(s, 200);
    let _ = std::fs::remove_dir_all(&pki.dir);
}
