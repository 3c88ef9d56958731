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
    let (silent_udp, _silent_tcp) = crate::util::bind_pair().await;
    let dead = silent_udp.local_addr().unwrap();
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

/// How a [`Upstream`] misbehaves.
#[derive(Default, Clone, Copy)]
struct Mode {
    /// Answer SERVFAIL.
    servfail: bool,
    /// Answer REFUSED.
    refused: bool,
    /// Answer NOERROR with no records (NODATA).
    empty: bool,
    /// Over UDP, answer with TC set and no records.
    truncate_udp: bool,
    /// Before the real answer, send one with a wrong id and one for another question.
    spoof: bool,
    /// Answer nothing at all.
    silent: bool,
}

/// A configurable upstream on 127.0.0.1 (UDP and TCP); counts A queries by transport.
struct Upstream {
    addr: std::net::SocketAddr,
    mode: std::sync::Arc<std::sync::Mutex<Mode>>,
    udp_a: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    tcp_a: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

fn reply(raw: &[u8], mode: Mode, udp: bool) -> Vec<Vec<u8>> {
    use hickory_proto::op::{Message, MessageType, Query};
    use hickory_proto::rr::{Name, Record, rdata::A};
    let Ok(q) = Message::from_vec(raw) else {
        return vec![];
    };
    if mode.silent {
        return vec![];
    }
    let question = q.queries[0].clone();
    let mut r = Message::new(q.metadata.id, MessageType::Response, q.metadata.op_code);
    r.metadata.recursion_available = true;
    r.add_query(question.clone());
    let mut out = Vec::new();
    if mode.spoof {
        let mut wrong_id = r.clone();
        wrong_id.metadata.id = q.metadata.id.wrapping_add(1);
        wrong_id.add_answer(Record::from_rdata(
            question.name().clone(),
            300,
            RData::A(A::new(6, 6, 6, 6)),
        ));
        out.push(wrong_id.to_vec().unwrap());
        let mut wrong_q = Message::new(q.metadata.id, MessageType::Response, q.metadata.op_code);
        wrong_q.add_query(Query::query(
            Name::from_ascii("evil.example.").unwrap(),
            RecordType::A,
        ));
        wrong_q.add_answer(Record::from_rdata(
            question.name().clone(),
            300,
            RData::A(A::new(6, 6, 6, 7)),
        ));
        out.push(wrong_q.to_vec().unwrap());
    }
    if mode.servfail {
        r.metadata.response_code = ResponseCode::ServFail;
    } else if mode.refused {
        r.metadata.response_code = ResponseCode::Refused;
    } else if mode.empty {
    } else if mode.truncate_udp && udp {
        r.metadata.truncation = true;
    } else if question.query_type() == RecordType::A {
        r.add_answer(Record::from_rdata(
            question.name().clone(),
            300,
            RData::A(A::new(192, 0, 2, 53)),
        ));
    }
    out.push(r.to_vec().unwrap());
    out
}

async fn upstream(mode: Mode) -> Upstream {
    use std::sync::atomic::AtomicUsize;
    use std::sync::{Arc, Mutex};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (udp, tcp) = crate::util::bind_pair().await;
    let addr = udp.local_addr().unwrap();
    let mode = Arc::new(Mutex::new(mode));
    let (udp_a, tcp_a) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let is_a = |raw: &[u8]| {
        hickory_proto::op::Message::from_vec(raw).is_ok_and(|m| {
            m.queries
                .first()
                .is_some_and(|q| q.query_type() == RecordType::A)
        })
    };
    let (m, n) = (mode.clone(), udp_a.clone());
    tokio::spawn(async move {
        let mut buf = vec![0u8; 65535];
        while let Ok((len, src)) = udp.recv_from(&mut buf).await {
            if is_a(&buf[..len]) {
                n.fetch_add(1, Ordering::SeqCst);
            }
            let mode = *m.lock().unwrap();
            for out in reply(&buf[..len], mode, true) {
                let _ = udp.send_to(&out, src).await;
            }
        }
    });
    let (m, n) = (mode.clone(), tcp_a.clone());
    tokio::spawn(async move {
        while let Ok((mut c, _)) = tcp.accept().await {
            let (m, n) = (m.clone(), n.clone());
            tokio::spawn(async move {
                while let Ok(len) = c.read_u16().await {
                    let mut b = vec![0u8; len as usize];
                    if c.read_exact(&mut b).await.is_err() {
                        return;
                    }
                    if is_a(&b) {
                        n.fetch_add(1, Ordering::SeqCst);
                    }
                    let mode = *m.lock().unwrap();
                    for out in reply(&b, mode, false) {
                        let mut framed = (out.len() as u16).to_be_bytes().to_vec();
                        framed.extend_from_slice(&out);
                        let _ = c.write_all(&framed).await;
                    }
                }
            });
        }
    });
    Upstream {
        addr,
        mode,
        udp_a,
        tcp_a,
    }
}

#[tokio::test]
async fn spoofed_and_mismatched_replies_are_ignored() {
    let up = upstream(Mode {
        spoof: true,
        ..Mode::default()
    })
    .await;
    let s = start(
        &format!(".:0 {{\n bind 127.0.0.1\n forward . {}\n}}\n", up.addr),
        vec![],
    )
    .await;
    let r = udp(s.dns(), &query("a.example.", RecordType::A, None)).await;
    assert_eq!(r.answers.len(), 1);
    assert_eq!(r.answers[0].data, RData::A("192.0.2.53".parse().unwrap()));
    s.running.shutdown().await;
}

#[tokio::test]
async fn upstream_servfail_is_passed_through_and_next_moves_on() {
    let bad = upstream(Mode {
        servfail: true,
        ..Mode::default()
    })
    .await;
    let good = upstream(Mode::default()).await;
    let s = start(
        &format!(".:0 {{\n bind 127.0.0.1\n forward . {}\n}}\n", bad.addr),
        vec![],
    )
    .await;
    let r = udp(s.dns(), &query("a.example.", RecordType::A, None)).await;
    assert_eq!(r.metadata.response_code, ResponseCode::ServFail);
    s.running.shutdown().await;
    // `next SERVFAIL` hands the query to the following forward line.
    let s = start(
        &format!(
            ".:0 {{\n bind 127.0.0.1\n forward . {} {{\n  next SERVFAIL\n }}\n forward . {}\n}}\n",
            bad.addr, good.addr
        ),
        vec![],
    )
    .await;
    let r = udp(s.dns(), &query("a.example.", RecordType::A, None)).await;
    assert_eq!(r.answers.len(), 1);
    s.running.shutdown().await;
}

#[tokio::test]
async fn truncated_udp_reply_is_retried_over_tcp_with_prefer_udp() {
    let up = upstream(Mode {
        truncate_udp: true,
        ..Mode::default()
    })
    .await;
    let s = start(
        &format!(
            ".:0 {{\n bind 127.0.0.1\n forward . {} {{\n  prefer_udp\n }}\n}}\n",
            up.addr
        ),
        vec![],
    )
    .await;
    let r = udp(s.dns(), &query("a.example.", RecordType::A, None)).await;
    assert_eq!(r.answers.len(), 1, "answer fetched over TCP");
    assert_eq!(
        (
            up.udp_a.load(Ordering::SeqCst),
            up.tcp_a.load(Ordering::SeqCst)
        ),
        (1, 1)
    );
    s.running.shutdown().await;
    // force_tcp: TCP only.
    let s = start(
        &format!(
            ".:0 {{\n bind 127.0.0.1\n forward . {} {{\n  force_tcp\n }}\n}}\n",
            up.addr
        ),
        vec![],
    )
    .await;
    assert_eq!(
        udp(s.dns(), &query("b.example.", RecordType::A, None))
            .await
            .answers
            .len(),
        1
    );
    assert_eq!(up.tcp_a.load(Ordering::SeqCst), 2);
    s.running.shutdown().await;
}

#[tokio::test]
async fn health_checks_mark_an_upstream_down_and_back_up() {
    let flaky = upstream(Mode {
        silent: true,
        ..Mode::default()
    })
    .await;
    let good = upstream(Mode::default()).await;
    let s = start(
        &format!(
            ".:0 {{\n bind 127.0.0.1\n forward . {} {} {{\n  policy sequential\n  max_fails 1\n  health_check 100ms\n  read_timeout 300ms\n }}\n}}\n",
            flaky.addr, good.addr
        ),
        vec![],
    )
    .await;
    let dns = s.dns();
    // First query: the flaky one times out, the good one answers.
    assert_eq!(
        udp(dns, &query("a.example.", RecordType::A, None))
            .await
            .answers
            .len(),
        1
    );
    // Health checks (1 s timeout each, as CoreDNS's) keep failing: after more than max_fails
    // failures it is down and skipped at once.
    tokio::time::sleep(Duration::from_millis(2300)).await;
    let before = flaky.udp_a.load(Ordering::SeqCst);
    let t = std::time::Instant::now();
    assert_eq!(
        udp(dns, &query("b.example.", RecordType::A, None))
            .await
            .answers
            .len(),
        1
    );
    assert!(
        t.elapsed() < Duration::from_millis(250),
        "down upstream was not skipped"
    );
    assert_eq!(flaky.udp_a.load(Ordering::SeqCst), before);
    // It recovers: the next health check marks it up and traffic goes back to it.
    flaky.mode.lock().unwrap().silent = false;
    tokio::time::sleep(Duration::from_millis(1300)).await;
    assert_eq!(
        udp(dns, &query("c.example.", RecordType::A, None))
            .await
            .answers
            .len(),
        1
    );
    assert_eq!(
        flaky.udp_a.load(Ordering::SeqCst),
        before + 1,
        "traffic back on the first upstream"
    );
    let text = s.metrics.registry.gather();
    assert!(
        text.iter()
            .any(|f| f.name() == "coredns_forward_healthcheck_failures_total")
    );
    s.running.shutdown().await;
}

/// A DNS-over-TLS upstream with the test certificate (CN/SAN dns.test and 127.0.0.1); counts
/// accepted connections.
async fn dot_upstream() -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
) {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");
    let certs: Vec<CertificateDer> = CertificateDer::pem_file_iter(format!("{dir}/dot.crt"))
        .unwrap()
        .map(|c| c.unwrap())
        .collect();
    let key = PrivateKeyDer::from_pem_file(format!("{dir}/dot.key")).unwrap();
    let cfg = rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(cfg));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let n = accepted.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            n.fetch_add(1, Ordering::SeqCst);
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                while let Ok(len) = tls.read_u16().await {
                    let mut b = vec![0u8; len as usize];
                    if tls.read_exact(&mut b).await.is_err() {
                        return;
                    }
                    for out in reply(&b, Mode::default(), false) {
                        let mut framed = (out.len() as u16).to_be_bytes().to_vec();
                        framed.extend_from_slice(&out);
                        if tls.write_all(&framed).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    (addr, accepted)
}

#[tokio::test]
async fn dns_over_tls_with_connection_reuse() {
    let (addr, accepted) = dot_upstream().await;
    let ca = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/dot-ca.crt");
    let s = start(
        &format!(
            ".:0 {{\n bind 127.0.0.1\n forward . tls://{addr} {{\n  tls {ca}\n  tls_servername dns.test\n }}\n}}\n"
        ),
        vec![],
    )
    .await;
    for name in ["a.example.", "b.example.", "c.example."] {
        let r = udp(s.dns(), &query(name, RecordType::A, None)).await;
        assert_eq!(r.answers.len(), 1, "{name}");
        assert_eq!(r.answers[0].data, RData::A("192.0.2.53".parse().unwrap()));
    }
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        1,
        "one TLS connection, reused"
    );
    s.running.shutdown().await;
    // A certificate for another name is refused: no answer from that upstream.
    let s = start(
        &format!(
            ".:0 {{\n bind 127.0.0.1\n forward . tls://{addr} {{\n  tls {ca}\n  tls_servername other.test\n  max_fails 0\n }}\n}}\n"
        ),
        vec![],
    )
    .await;
    let r = udp(s.dns(), &query("d.example.", RecordType::A, None)).await;
    assert_eq!(r.metadata.response_code, ResponseCode::ServFail);
    s.running.shutdown().await;
}

// plugin/forward/setup_test.go: TestFailover (policy sequential; upstreams answering SERVFAIL,
// REFUSED and an A record; whether an answer comes back).
#[tokio::test]
async fn coredns_test_failover() {
    let fail = upstream(Mode {
        servfail: true,
        ..Mode::default()
    })
    .await;
    let refused = upstream(Mode {
        refused: true,
        ..Mode::default()
    })
    .await;
    let good = upstream(Mode::default()).await;
    let cases = [
        (
            format!("{} {} {}", fail.addr, refused.addr, good.addr),
            "\n  failover ServFail Refused",
            true,
        ),
        (
            format!("{} {} {}", fail.addr, refused.addr, good.addr),
            "",
            false,
        ),
        (
            format!("{} {} {}", good.addr, fail.addr, refused.addr),
            "",
            true,
        ),
    ];
    for (to, opt, has_record) in cases {
        let s = start(
            &format!(
                ".:0 {{\n bind 127.0.0.1\n forward . {to} {{\n  policy sequential{opt}\n }}\n}}\n"
            ),
            vec![],
        )
        .await;
        let r = udp(s.dns(), &query("example.org.", RecordType::A, None)).await;
        assert_eq!(!r.answers.is_empty(), has_record, "{to}{opt}");
        s.running.shutdown().await;
    }
}

// plugin/forward/forward_test.go: TestForwardFailoverStopsAfterAllUpstreams (two SERVFAIL
// upstreams, `failover SERVFAIL`: SERVFAIL after each was asked once).
#[tokio::test]
async fn coredns_test_failover_stops_after_all_upstreams() {
    let s1 = upstream(Mode {
        servfail: true,
        ..Mode::default()
    })
    .await;
    let s2 = upstream(Mode {
        servfail: true,
        ..Mode::default()
    })
    .await;
    let s = start(
        &format!(
            ".:0 {{\n bind 127.0.0.1\n forward . {} {} {{\n  policy sequential\n  failover SERVFAIL\n }}\n}}\n",
            s1.addr, s2.addr
        ),
        vec![],
    )
    .await;
    let r = udp(s.dns(), &query("example.org.", RecordType::A, None)).await;
    assert_eq!(r.metadata.response_code, ResponseCode::ServFail);
    assert_eq!(s1.udp_a.load(Ordering::SeqCst), 1);
    assert_eq!(s2.udp_a.load(Ordering::SeqCst), 1);
    s.running.shutdown().await;
}

// plugin/forward/forward_test.go: TestForward_NextOnNodata (an empty NOERROR from the first
// forward line; with next_on_nodata the second line's answer, without it the empty reply).
#[tokio::test]
async fn coredns_test_next_on_nodata() {
    let empty = upstream(Mode {
        empty: true,
        ..Mode::default()
    })
    .await;
    let good = upstream(Mode::default()).await;
    for (opt, answers) in [("", 0), (" {\n  next_on_nodata\n }", 1)] {
        let s = start(
            &format!(
                ".:0 {{\n bind 127.0.0.1\n forward . {}{opt}\n forward . {}\n}}\n",
                empty.addr, good.addr
            ),
            vec![],
        )
        .await;
        let r = udp(s.dns(), &query("example.org.", RecordType::A, None)).await;
        assert_eq!(r.metadata.response_code, ResponseCode::NoError);
        assert_eq!(r.answers.len(), answers, "{opt:?}");
        if answers == 1 {
            assert_eq!(r.answers[0].name.to_ascii(), "example.org.");
        }
        s.running.shutdown().await;
    }
}

// source_address (plugin/forward/setup.go SetLocalAddress): queries leave from that address.
#[tokio::test]
async fn source_address_is_the_queries_source() {
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = sock.local_addr().unwrap();
    let s = start(
        &format!(
            ".:0 {{\n bind 127.0.0.1\n forward . {addr} {{\n  source_address 127.0.0.9\n  read_timeout 300ms\n  health_check 10s\n }}\n}}\n"
        ),
        vec![],
    )
    .await;
    let dns = s.dns();
    let q =
        tokio::spawn(async move { udp(dns, &query("example.org.", RecordType::A, None)).await });
    let mut buf = [0u8; 512];
    let (_, from) = tokio::time::timeout(Duration::from_secs(5), sock.recv_from(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(from.ip().to_string(), "127.0.0.9");
    let _ = q.await;
    s.running.shutdown().await;
}

// test/server_test.go: TestProxyToChaosServer (a chaos server and a forwarder in front of it;
// version.bind CH TXT answered through both). The conformance kit cannot send class CH.
#[tokio::test]
async fn coredns_test_proxy_to_chaos_server() {
    use hickory_proto::rr::DNSClass;
    let chaos = start(
        ".:0 {\n bind 127.0.0.1\n chaos CoreDNS-001 miek@miek.nl\n}\n",
        vec![],
    )
    .await;
    let s = start(
        &format!(".:0 {{\n bind 127.0.0.1\n forward . {}\n}}\n", chaos.dns()),
        vec![],
    )
    .await;
    for server in [chaos.dns(), s.dns()] {
        let mut m = query("version.bind.", RecordType::TXT, None);
        m.queries[0].set_query_class(DNSClass::CH);
        let r = udp(server, &m).await;
        assert_eq!(r.metadata.response_code, ResponseCode::NoError, "{server}");
        let a = &r.answers[0];
        assert_eq!(
            (a.name.to_ascii().as_str(), a.ttl, a.dns_class),
            ("version.bind.", 0, DNSClass::CH)
        );
        match &a.data {
            RData::TXT(t) => assert_eq!(t.to_string(), "CoreDNS-001"),
            other => panic!("{other:?}"),
        }
    }
    s.running.shutdown().await;
    chaos.running.shutdown().await;
}

/// An upstream for plugin/forward/health_test.go: answers every query with an empty reply,
/// except that it drops the first `drop_first` non-health-check queries (all of them with
/// `drop_all`) and never answers health checks with `silent_hc`. Counts health checks
/// (questions for `hc_name`) by RD bit and transport, and the other queries.
struct HcUpstream {
    addr: std::net::SocketAddr,
    hc_rd: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    hc_no_rd: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    hc_tcp: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    queries: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

#[derive(Clone, Copy)]
struct HcMode {
    hc_name: &'static str,
    drop_first: usize,
    drop_all: bool,
    silent_hc: bool,
}

async fn hc_upstream(mode: HcMode) -> HcUpstream {
    use hickory_proto::op::{Message, MessageType};
    use std::sync::Arc;
    use std::sync::atomic::AtomicUsize;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (udp, tcp) = crate::util::bind_pair().await;
    let addr = udp.local_addr().unwrap();
    let counters: [Arc<AtomicUsize>; 4] = Default::default();
    let [hc_rd, hc_no_rd, hc_tcp, queries] = counters.clone();
    let answer = move |raw: &[u8], over_tcp: bool| -> Option<Vec<u8>> {
        let q = Message::from_vec(raw).ok()?;
        let name = q.queries.first()?.name().to_ascii().to_ascii_lowercase();
        if name == mode.hc_name {
            if q.metadata.recursion_desired {
                counters[0].fetch_add(1, Ordering::SeqCst);
            } else {
                counters[1].fetch_add(1, Ordering::SeqCst);
            }
            if over_tcp {
                counters[2].fetch_add(1, Ordering::SeqCst);
            }
            if mode.silent_hc {
                return None;
            }
        } else {
            let n = counters[3].fetch_add(1, Ordering::SeqCst);
            if mode.drop_all || n < mode.drop_first {
                return None;
            }
        }
        let mut r = Message::new(q.metadata.id, MessageType::Response, q.metadata.op_code);
        r.metadata.recursion_desired = q.metadata.recursion_desired;
        r.add_query(q.queries[0].clone());
        r.to_vec().ok()
    };
    let a = answer.clone();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 65535];
        while let Ok((n, src)) = udp.recv_from(&mut buf).await {
            if let Some(out) = a(&buf[..n], false) {
                let _ = udp.send_to(&out, src).await;
            }
        }
    });
    tokio::spawn(async move {
        while let Ok((mut c, _)) = tcp.accept().await {
            let a = answer.clone();
            tokio::spawn(async move {
                while let Ok(n) = c.read_u16().await {
                    let mut b = vec![0u8; n as usize];
                    if c.read_exact(&mut b).await.is_err() {
                        return;
                    }
                    let Some(out) = a(&b, true) else { continue };
                    let mut framed = (out.len() as u16).to_be_bytes().to_vec();
                    framed.extend_from_slice(&out);
                    if c.write_all(&framed).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    HcUpstream {
        addr,
        hc_rd,
        hc_no_rd,
        hc_tcp,
        queries,
    }
}

/// Waits up to 2 s (the Go tests' bound) for `counter` to reach `want`.
async fn reaches(counter: &std::sync::atomic::AtomicUsize, want: usize) -> usize {
    let start = std::time::Instant::now();
    while start.elapsed() < Duration::from_secs(2) {
        if counter.load(Ordering::SeqCst) >= want {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    counter.load(Ordering::SeqCst)
}

const HC_ROOT: HcMode = HcMode {
    hc_name: ".",
    drop_first: 1,
    drop_all: false,
    silent_hc: false,
};

/// Starts a forwarder to `up` with `opts` in the forward block and sends `qname qtype` once.
async fn hc_server(
    up: &HcUpstream,
    opts: &str,
    qname: &str,
    qtype: RecordType,
) -> crate::util::TestServer {
    let s = start(
        &format!(
            ".:0 {{\n bind 127.0.0.1\n forward . {} {{\n  read_timeout 100ms\n{opts}\n }}\n}}\n",
            up.addr
        ),
        vec![],
    )
    .await;
    let _ = udp(s.dns(), &query(qname, qtype, None)).await;
    s
}

// plugin/forward/health_test.go: TestHealth, TestHealthTimeout (the first query is dropped:
// one health check, `. IN NS` with RD, and no more once it is answered)
#[tokio::test]
async fn coredns_test_health() {
    let up = hc_upstream(HC_ROOT).await;
    let s = hc_server(&up, "  health_check 50ms", "example.org.", RecordType::A).await;
    assert_eq!(reaches(&up.hc_rd, 1).await, 1);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        up.hc_rd.load(Ordering::SeqCst),
        1,
        "checks stop once one succeeds"
    );
    assert_eq!(up.hc_no_rd.load(Ordering::SeqCst), 0);
    s.running.shutdown().await;
}

// plugin/forward/health_test.go: TestHealthTCP (force_tcp: health checks over TCP)
#[tokio::test]
async fn coredns_test_health_tcp() {
    let up = hc_upstream(HC_ROOT).await;
    let s = hc_server(
        &up,
        "  force_tcp\n  health_check 50ms",
        "example.org.",
        RecordType::A,
    )
    .await;
    assert_eq!(reaches(&up.hc_rd, 1).await, 1);
    assert_eq!(up.hc_tcp.load(Ordering::SeqCst), 1);
    s.running.shutdown().await;
}

// plugin/forward/health_test.go: TestHealthNoRecursion (health_check … no_rec: RD clear)
#[tokio::test]
async fn coredns_test_health_no_recursion() {
    let up = hc_upstream(HC_ROOT).await;
    let s = hc_server(
        &up,
        "  health_check 50ms no_rec",
        "example.org.",
        RecordType::A,
    )
    .await;
    assert_eq!(reaches(&up.hc_no_rd, 1).await, 1);
    assert_eq!(up.hc_rd.load(Ordering::SeqCst), 0);
    s.running.shutdown().await;
}

// plugin/forward/health_test.go: TestHealthDomain (health_check … domain example.org; the
// client asks `. NS`)
#[tokio::test]
async fn coredns_test_health_domain() {
    let up = hc_upstream(HcMode {
        hc_name: "example.org.",
        ..HC_ROOT
    })
    .await;
    let s = hc_server(
        &up,
        "  health_check 50ms domain example.org",
        ".",
        RecordType::NS,
    )
    .await;
    assert_eq!(reaches(&up.hc_rd, 1).await, 1);
    s.running.shutdown().await;
}

// plugin/forward/health_test.go: TestHealthNoMaxFails (max_fails 0: no health checks)
#[tokio::test]
async fn coredns_test_health_no_max_fails() {
    let up = hc_upstream(HcMode {
        drop_all: true,
        ..HC_ROOT
    })
    .await;
    let s = hc_server(
        &up,
        "  max_fails 0\n  health_check 50ms",
        "example.org.",
        RecordType::A,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        up.hc_rd.load(Ordering::SeqCst) + up.hc_no_rd.load(Ordering::SeqCst),
        0
    );
    s.running.shutdown().await;
}

// plugin/forward/health_test.go: TestHealthMaxFails, TestAllUpstreamsDown (upstreams that
// answer nothing, health checks included: after more than max_fails failed checks both are
// down, and with failfast_all_unhealthy_upstreams a query is SERVFAIL without being sent)
#[tokio::test]
async fn coredns_test_all_upstreams_down() {
    let silent = HcMode {
        drop_all: true,
        silent_hc: true,
        ..HC_ROOT
    };
    let (a, b) = (hc_upstream(silent).await, hc_upstream(silent).await);
    let s = start(
        &format!(
            ".:0 {{\n bind 127.0.0.1\n forward . {} {} {{\n  read_timeout 100ms\n  health_check 50ms\n  max_fails 1\n  failfast_all_unhealthy_upstreams\n }}\n}}\n",
            a.addr, b.addr
        ),
        vec![],
    )
    .await;
    let _ = udp(s.dns(), &query("example.org.", RecordType::A, None)).await;
    // Each health check waits up to 1 s (CoreDNS's timeout); two failures mark one down.
    let (ha, hb) = (reaches(&a.hc_rd, 2).await, reaches(&b.hc_rd, 2).await);
    assert!(ha >= 2 && hb >= 2, "health checks: {ha} {hb}");
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let before = a.queries.load(Ordering::SeqCst) + b.queries.load(Ordering::SeqCst);
    let r = udp(s.dns(), &query("example.org.", RecordType::A, None)).await;
    assert_eq!(r.metadata.response_code, ResponseCode::ServFail);
    assert_eq!(
        a.queries.load(Ordering::SeqCst) + b.queries.load(Ordering::SeqCst),
        before,
        "no query sent to a down upstream"
    );
    s.running.shutdown().await;
}
