//! Issue 13, HTTP side, on loopback: half-open connections (request line sent, headers never
//! finished) are closed by the header timeout while normal GETs stay fast, a 64 MiB body gets a
//! JSON 413 in under a second, and wrong paths and methods get JSON errors.

mod common;

use std::time::{Duration, Instant};

use common::Cluster;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Soft limit on open files of this process.
fn nofile_limit() -> u64 {
    std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|l| {
            l.lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(3).map(str::to_string))
        })
        .and_then(|n| n.parse().ok())
        .unwrap_or(1024)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_open_connections_are_closed_by_the_header_timeout() {
    const HEADER_TIMEOUT: Duration = Duration::from_millis(2_000);
    let c = Cluster::start(2, Some(1), &[("CKV_HEADER_TIMEOUT_MS", "2000")]).await;
    // 3,000 as reported, fewer if this process may not open that many files.
    let n = 3_000usize.min(nofile_limit().saturating_sub(200) as usize);
    assert!(n >= 500, "file limit too low for a meaningful test");
    let addr = c.addr(0);
    let started = Instant::now();
    let mut conns = Vec::with_capacity(n);
    for _ in 0..n {
        let mut s = tokio::net::TcpStream::connect(&addr)
            .await
            .expect("connect");
        s.write_all(b"GET /view HTTP/1.1\r\nHost: x\r\n")
            .await
            .expect("request line");
        conns.push(s);
    }
    let opened = started.elapsed();
    // Normal GETs stay fast throughout.
    let probe_until = Instant::now() + HEADER_TIMEOUT + Duration::from_secs(1);
    while Instant::now() < probe_until {
        let t = Instant::now();
        let (s, _) = c.req(0, "GET", "/view", None).await;
        assert_eq!(s, 200);
        assert!(
            t.elapsed() < Duration::from_secs(1),
            "GET took {:?}",
            t.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Every half-open connection is closed by now (EOF, possibly after a 408).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    let mut buf = vec![0u8; 1024];
    for (i, s) in conns.iter_mut().enumerate() {
        loop {
            match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => break,
                Ok(Ok(_)) => continue,
                Err(_) => panic!("connection {i} of {n} still open (opened in {opened:?})"),
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_bodies_and_wrong_routes_get_json_errors() {
    let c = Cluster::start(2, Some(1), &[]).await;
    let s = tokio::net::TcpStream::connect(c.addr(0))
        .await
        .expect("connect");
    let (mut s, mut w) = s.into_split();
    let t = Instant::now();
    let head = format!(
        "PUT /kvs/big HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        64 << 20
    );
    // A client that sends the whole 64 MiB as fast as the server takes it.
    let writer = tokio::spawn(async move {
        w.write_all(head.as_bytes()).await?;
        let chunk = vec![b' '; 1 << 20];
        for _ in 0..64 {
            w.write_all(&chunk).await?;
        }
        Ok::<_, std::io::Error>(())
    });
    let mut resp = Vec::new();
    let mut buf = vec![0u8; 4096];
    while !String::from_utf8_lossy(&resp).contains('}') {
        match tokio::time::timeout(Duration::from_secs(1), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(k)) => resp.extend_from_slice(&buf[..k]),
            Err(_) => panic!("no answer within 1 s: {:?}", String::from_utf8_lossy(&resp)),
        }
    }
    let text = String::from_utf8_lossy(&resp);
    assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
    writer.abort();
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
    let body = &text[text.find("\r\n\r\n").expect("body") + 4..];
    let v: Value = serde_json::from_str(body).expect("JSON body");
    assert!(v["error"].is_string(), "{v}");
    for (method, path, status) in [
        ("POST", "/kvs/x", 405),
        ("PATCH", "/view", 405),
        ("GET", "/no/such/path", 404),
    ] {
        let (s, b) = c.req(0, method, path, None).await;
        assert_eq!(s, status, "{method} {path}");
        assert!(b["error"].is_string(), "{method} {path}: {b}");
    }
    let (s, _) = c.put(0, "k", json!(1), &Value::Null).await;
    assert_eq!(s, 201);
}
