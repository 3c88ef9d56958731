//! forward and cache against upstreams on loopback that the test starts.

use std::sync::atomic::Ordering;
use std::time::Duration;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{RData, RecordType};

use crate::util::{query, start, stub_upstream, tcp, udp};

#[tokio::test]
async fn forwards_and_caches() {
    let stub = stub_upstream(&[("www.example.org.", "192.0.2.7".parse().unwrap())]).await;
    let s = start(
        &format!(
            ".:0 {{\n bind 127.0.0.1\n cache 60\n forward . {}\n}}\n",
            stub.addr
        ),
        vec![],
    )
    .await;
    let r = udp(s.dns(), &query("www.example.org.", RecordType::A, None)).await;
    assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    assert!(r.metadata.recursion_available, "upstream flags kept");
    assert_eq!(r.answers[0].data, RData::A("192.0.2.7".parse().unwrap()));
    assert_eq!(r.answers[0].ttl, 60, "TTL capped by cache 60");
    // Same question over TCP, other letter case: answered from the cache.
    let r = tcp(s.dns(), &query("WWW.example.org.", RecordType::A, None)).await;
    assert_eq!(r.answers.len(), 1);
    assert!(r.answers[0].ttl <= 60);
    assert_eq!(
        stub.seen.load(Ordering::Relaxed),
        1,
        "second query was a cache hit"
    );
    let r = udp(s.dns(), &query("nx.example.org.", RecordType::A, None)).await;
    assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);
    let text = s.metrics.registry.gather();
    let hits: f64 = text
        .iter()
        .filter(|f| f.name() == "coredns_cache_hits_total")
        .flat_map(|f| f.get_metric().iter().map(|m| m.get_counter().get_value()))
        .sum();
    assert_eq!(hits, 1.0);
    s.running.shutdown().await;
}

#[tokio::test]
async fn fails_over_from_a_silent_upstream() {
    // A socket that never answers (UDP and TCP bound, nobody reads).
    let silent_udp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let dead = silent_udp.local_addr().unwrap();
    let _silent_tcp = tokio::net::TcpListener::bind(dead).await.unwrap();
    let stub = stub_upstream(&[("a.example.", "192.0.2.1".parse().unwrap())]).await;
    let s = start(
        &format!(
            ".:0 {{\n bind 127.0.0.1\n forward . {dead} {} {{\n  policy sequential\n  read_timeout 200ms\n  health_check 10s\n }}\n}}\n",
            stub.addr
        ),
        vec![],
    )
    .await;
    let r = udp(s.dns(), &query("a.example.", RecordType::A, None)).await;
    assert_eq!(r.answers.len(), 1, "answered by the second upstream");
    s.running.shutdown().await;
}

#[tokio::test]
async fn max_concurrent_refuses_the_excess() {
    let silent = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let dead = silent.local_addr().unwrap();
    let s = start(
        &format!(
            ".:0 {{\n bind 127.0.0.1\n forward . {dead} {{\n  max_concurrent 1\n  read_timeout 500ms\n }}\n}}\n"
        ),
        vec![],
    )
    .await;
    let addr = s.dns();
    let slow =
        tokio::spawn(async move { udp(addr, &query("a.example.", RecordType::A, None)).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let r = udp(addr, &query("b.example.", RecordType::A, None)).await;
    assert_eq!(r.metadata.response_code, ResponseCode::Refused);
    assert_eq!(
        slow.await.unwrap().metadata.response_code,
        ResponseCode::ServFail
    );
    s.running.shutdown().await;
}
