//! DNS over real sockets: UDP and TCP answers, REFUSED outside the zones, truncation, malformed
//! input, EDNS, metrics and the HTTP endpoints.

use std::net::Ipv4Addr;
use std::sync::Arc;

use clusterdns::plugins::{Chain, Handler, HandlerError, Next, Request, Response};
use hickory_proto::op::{MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{RData, Record, RecordType};

use crate::util::{http_get, query, start, tcp, udp, udp_raw};

const COREFILE: &str = r#"
example.org:0 big.test:0 {
    bind 127.0.0.1
    errors
    log
    prometheus 127.0.0.1:0
    health 127.0.0.1:0
    ready 127.0.0.1:0
    whoami
}
"#;

/// Answers every query with 100 A records (about 1.6 KB).
struct Big;

#[async_trait::async_trait]
impl Handler for Big {
    fn name(&self) -> &'static str {
        "big"
    }
    async fn serve(&self, req: &Request, _: Next<'_>) -> Result<Response, HandlerError> {
        let mut m = req.reply();
        m.metadata.authoritative = true;
        for i in 0..100u8 {
            m.add_answer(Record::from_rdata(
                req.qname().clone(),
                30,
                RData::A(A(Ipv4Addr::new(10, 0, 0, i))),
            ));
        }
        Ok(Response::new(m, "big"))
    }
}

struct Panics;

#[async_trait::async_trait]
impl Handler for Panics {
    fn name(&self) -> &'static str {
        "panics"
    }
    async fn serve(&self, _: &Request, _: Next<'_>) -> Result<Response, HandlerError> {
        panic!("boom")
    }
}

#[tokio::test]
async fn whoami_over_udp_and_tcp_and_refused_outside_zones() {
    let s = start(COREFILE, vec![]).await;
    let addr = s.dns();
    for over_tcp in [false, true] {
        let q = query("Host.Example.ORG.", RecordType::A, None);
        let r = if over_tcp {
            tcp(addr, &q).await
        } else {
            udp(addr, &q).await
        };
        assert_eq!(r.metadata.id, 4242);
        assert_eq!(r.metadata.message_type, MessageType::Response);
        assert_eq!(r.metadata.response_code, ResponseCode::NoError);
        assert!(r.metadata.authoritative);
        assert!(r.metadata.recursion_desired);
        assert_eq!(
            r.queries[0].name().to_string(),
            "Host.Example.ORG.",
            "question echoed verbatim"
        );
        assert_eq!(r.additionals.len(), 2);
        assert_eq!(r.additionals[0].data, RData::A(A(Ipv4Addr::LOCALHOST)));
        let proto = if over_tcp { "_tcp" } else { "_udp" };
        assert_eq!(
            r.additionals[1].name.to_string(),
            format!("{proto}.Host.Example.ORG.")
        );
    }
    for name in ["example.com.", "org.", "."] {
        let r = udp(addr, &query(name, RecordType::A, None)).await;
        assert_eq!(r.metadata.response_code, ResponseCode::Refused, "{name}");
    }
    s.running.shutdown().await;
}

#[tokio::test]
async fn truncates_udp_to_the_client_buffer() {
    let s = start(
        COREFILE,
        vec![("big.test.", Chain::new(vec![Arc::new(Big)]))],
    )
    .await;
    let addr = s.dns();
    let r = udp(addr, &query("www.big.test.", RecordType::A, None)).await;
    assert!(r.metadata.truncation, "no EDNS: 512 bytes, TC set");
    assert!(r.answers.len() < 100);
    assert!(r.to_vec().unwrap().len() <= 512);
    let r = udp(addr, &query("www.big.test.", RecordType::A, Some(1232))).await;
    assert!(r.metadata.truncation, "1232-byte buffer is still too small");
    assert_eq!(r.edns.as_ref().map(|e| e.max_payload()), Some(1232));
    let r = udp(addr, &query("www.big.test.", RecordType::A, Some(4096))).await;
    assert!(!r.metadata.truncation);
    assert_eq!(r.answers.len(), 100);
    let r = tcp(addr, &query("www.big.test.", RecordType::A, None)).await;
    assert!(!r.metadata.truncation, "TCP takes the whole answer");
    assert_eq!(r.answers.len(), 100);
    s.running.shutdown().await;
}

#[tokio::test]
async fn malformed_input_gets_formerr_or_a_drop_and_never_kills_the_server() {
    let s = start(COREFILE, vec![]).await;
    let addr = s.dns();
    // A header that promises one question, followed by garbage.
    let mut garbage = vec![
        0x12, 0x34, 0x01, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    ];
    garbage.extend_from_slice(&[0xff; 20]);
    let reply = udp_raw(addr, &garbage).await.expect("FORMERR reply");
    let m = hickory_proto::op::Message::from_vec(&reply).unwrap();
    assert_eq!(m.metadata.id, 0x1234);
    assert_eq!(m.metadata.response_code, ResponseCode::FormErr);
    // Too short for a header: dropped.
    assert!(udp_raw(addr, &[1, 2, 3]).await.is_none());
    // A valid query padded past what a reader takes in (4 KiB): cut by the kernel, FORMERR.
    let mut big = query("example.org.", RecordType::A, None).to_vec().unwrap();
    big[0] = 0x56;
    big.resize(5000, 0);
    let reply = udp_raw(addr, &big)
        .await
        .expect("FORMERR for an oversized datagram");
    let m = hickory_proto::op::Message::from_vec(&reply).unwrap();
    assert_eq!(m.metadata.id & 0xff00, 0x5600);
    assert_eq!(m.metadata.response_code, ResponseCode::FormErr);
    // Random byte strings of many lengths: the server answers or drops, and keeps serving.
    let mut seed = 0x9e37_79b9_u32;
    for len in 0..200usize {
        let bytes: Vec<u8> = (0..len)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 17;
                seed ^= seed << 5;
                seed as u8
            })
            .collect();
        let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        sock.send_to(&bytes, addr).await.unwrap();
    }
    // No question at all: FORMERR. Two questions: FORMERR.
    let mut none = query("example.org.", RecordType::A, None);
    none.queries.clear();
    assert_eq!(
        udp(addr, &none).await.metadata.response_code,
        ResponseCode::FormErr
    );
    let mut two = query("a.example.org.", RecordType::A, None);
    two.add_query(hickory_proto::op::Query::query(
        "b.example.org.".parse().unwrap(),
        RecordType::A,
    ));
    assert_eq!(
        udp(addr, &two).await.metadata.response_code,
        ResponseCode::FormErr
    );
    // Unsupported opcode: NOTIMP.
    let mut status = query("example.org.", RecordType::A, None);
    status.metadata.op_code = OpCode::Status;
    assert_eq!(
        udp(addr, &status).await.metadata.response_code,
        ResponseCode::NotImp
    );
    // EDNS version 1: BADVERS with an OPT of version 0.
    let mut v1 = query("example.org.", RecordType::A, Some(1232));
    v1.edns.as_mut().unwrap().set_version(1);
    let r = udp(addr, &v1).await;
    assert_eq!(u16::from(r.metadata.response_code), 16, "BADVERS");
    assert_eq!(r.edns.as_ref().map(|e| e.version()), Some(0));
    // Still serving.
    let r = udp(addr, &query("example.org.", RecordType::A, None)).await;
    assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    s.running.shutdown().await;
}

#[tokio::test]
async fn a_panicking_plugin_gets_servfail_and_is_counted() {
    let s = start(
        COREFILE,
        vec![("big.test.", Chain::new(vec![Arc::new(Panics)]))],
    )
    .await;
    let r = udp(s.dns(), &query("x.big.test.", RecordType::A, None)).await;
    assert_eq!(r.metadata.response_code, ResponseCode::ServFail);
    assert_eq!(s.metrics.panics.get(), 1);
    let r = udp(s.dns(), &query("x.example.org.", RecordType::A, None)).await;
    assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    s.running.shutdown().await;
}

#[tokio::test]
async fn metrics_move_with_coredns_labels_and_http_endpoints_answer() {
    let s = start(COREFILE, vec![]).await;
    let addr = s.dns();
    let http = s.http("127.0.0.1:0");
    for _ in 0..3 {
        udp(addr, &query("a.example.org.", RecordType::AAAA, None)).await;
    }
    tcp(addr, &query("b.big.test.", RecordType::SRV, None)).await;
    udp(addr, &query("elsewhere.net.", RecordType::A, None)).await;
    let (code, body) = http_get(http, "/metrics").await;
    assert_eq!(code, 200);
    let label = "server=\"dns://127.0.0.1:0\"";
    let want = [
        format!(
            "coredns_dns_requests_total{{family=\"1\",proto=\"udp\",{label},type=\"AAAA\",view=\"\",zone=\"example.org.\"}} 3"
        ),
        format!(
            "coredns_dns_requests_total{{family=\"1\",proto=\"tcp\",{label},type=\"SRV\",view=\"\",zone=\"big.test.\"}} 1"
        ),
        format!(
            "coredns_dns_responses_total{{plugin=\"whoami\",rcode=\"NOERROR\",{label},view=\"\",zone=\"example.org.\"}} 3"
        ),
        format!(
            "coredns_dns_responses_total{{plugin=\"\",rcode=\"REFUSED\",{label},view=\"\",zone=\"dropped\"}} 1"
        ),
        format!(
            "coredns_dns_request_duration_seconds_count{{{label},view=\"\",zone=\"example.org.\"}} 3"
        ),
        format!(
            "coredns_dns_response_size_bytes_count{{proto=\"udp\",{label},view=\"\",zone=\"example.org.\"}} 3"
        ),
        format!(
            "coredns_plugin_enabled{{name=\"whoami\",{label},view=\"\",zone=\"example.org.\"}} 1"
        ),
        "coredns_panics_total 0".to_string(),
    ];
    for w in want {
        assert!(body.contains(&w), "missing {w}\n{body}");
    }
    assert!(body.contains("coredns_build_info{"));
    assert_eq!(http_get(http, "/health").await, (200, "OK".to_string()));
    assert_eq!(http_get(http, "/ready").await, (200, "OK".to_string()));
    assert_eq!(http_get(http, "/nope").await.0, 404);
    let ready = s.running.readiness.clone();
    ready.shut_down();
    assert_eq!(
        http_get(http, "/ready").await,
        (503, "Shutting down".to_string())
    );
    s.running.shutdown().await;
}

#[tokio::test]
async fn ready_lists_plugins_that_are_not_ready() {
    let s = start(COREFILE, vec![]).await;
    let http = s.http("127.0.0.1:0");
    let flag = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let f = flag.clone();
    s.running.readiness.register(
        "kubernetes",
        Arc::new(move || f.load(std::sync::atomic::Ordering::SeqCst)),
    );
    assert_eq!(
        http_get(http, "/ready").await,
        (503, "kubernetes".to_string())
    );
    flag.store(true, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(http_get(http, "/ready").await, (200, "OK".to_string()));
    s.running.shutdown().await;
}

#[tokio::test]
async fn hosts_file_inline_ptr_and_reload() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("hosts");
    std::fs::write(&file, "10.0.0.1 node1 node1.example.org\nfd00::1 node1\n").unwrap();
    let s = crate::util::start(
        &format!(
            "example.org:0 in-addr.arpa:0 {{\n bind 127.0.0.1\n hosts {} example.org {{\n  10.0.0.9 inline.example.org\n  ttl 60\n  reload 100ms\n }}\n}}\n",
            file.display()
        ),
        vec![],
    )
    .await;
    let dns = s.dns();
    let r = crate::util::udp(
        dns,
        &crate::util::query("node1.example.org.", RecordType::A, None),
    )
    .await;
    assert_eq!(r.answers.len(), 1);
    assert!(r.metadata.authoritative);
    assert_eq!(r.answers[0].ttl, 60);
    let r = crate::util::udp(
        dns,
        &crate::util::query("inline.example.org.", RecordType::A, None),
    )
    .await;
    assert_eq!(r.answers.len(), 1);
    let r = crate::util::udp(
        dns,
        &crate::util::query("node1.example.org.", RecordType::MX, None),
    )
    .await;
    assert_eq!(
        (r.metadata.response_code, r.answers.len()),
        (ResponseCode::NoError, 0)
    );
    let r = crate::util::udp(
        dns,
        &crate::util::query("nope.example.org.", RecordType::A, None),
    )
    .await;
    assert_eq!(
        r.metadata.response_code,
        ResponseCode::ServFail,
        "no SOA, no fallthrough"
    );
    let r = crate::util::udp(
        dns,
        &crate::util::query("1.0.0.10.in-addr.arpa.", RecordType::PTR, None),
    )
    .await;
    // `node1` is outside the plugin's zone (example.org): CoreDNS's hostsfile.go skips it.
    assert_eq!(
        r.answers.len(),
        1,
        "the one name of 10.0.0.1 in example.org"
    );
    assert_eq!(r.answers[0].data.to_string(), "node1.example.org.");
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    std::fs::write(&file, "10.0.0.2 node2.example.org\n").unwrap();
    let t = std::time::Instant::now();
    loop {
        let r = crate::util::udp(
            dns,
            &crate::util::query("node2.example.org.", RecordType::A, None),
        )
        .await;
        if r.answers.len() == 1 {
            break;
        }
        assert!(
            t.elapsed() < std::time::Duration::from_secs(3),
            "hosts file not re-read"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    s.running.shutdown().await;
}

#[tokio::test]
async fn dns64_synthesizes_aaaa_through_the_chain() {
    let s = crate::util::start(
        "example.org:0 {\n bind 127.0.0.1\n dns64 {\n  allow_ipv4\n }\n hosts {\n  192.0.2.33 v4only.example.org\n  2001:db8::1 dual.example.org\n  192.0.2.34 dual.example.org\n }\n}\n",
        vec![],
    )
    .await;
    let dns = s.dns();
    let r = crate::util::udp(
        dns,
        &crate::util::query("v4only.example.org.", RecordType::AAAA, None),
    )
    .await;
    assert_eq!(r.answers.len(), 1);
    assert_eq!(r.answers[0].data.to_string(), "64:ff9b::c000:221");
    // CoreDNS's Synthesize: a fresh reply (AA clear), TTL min(A TTL 3600, 600 without a SOA).
    assert!(!r.metadata.authoritative);
    assert_eq!(r.answers[0].ttl, 600);
    let r = crate::util::udp(
        dns,
        &crate::util::query("dual.example.org.", RecordType::AAAA, None),
    )
    .await;
    assert_eq!(
        r.answers[0].data.to_string(),
        "2001:db8::1",
        "real AAAA kept"
    );
    let r = crate::util::udp(
        dns,
        &crate::util::query("v4only.example.org.", RecordType::A, None),
    )
    .await;
    assert_eq!(r.answers[0].data.to_string(), "192.0.2.33");
    s.running.shutdown().await;
}

/// CoreDNS's plugin/template/template.go: a match counts before anything is rendered; a
/// record template that fails to execute counts in template_failures, one whose text is not a
/// record in rr_failures, labelled with the section and the template; either is SERVFAIL.
#[tokio::test]
async fn template_metrics_count_matches_and_failures() {
    let s = start(
        r#".:0 {
    bind 127.0.0.1
    prometheus 127.0.0.1:0
    template IN A example.org {
        match "^ok\.example\.org\.$"
        answer "{{ .Name }} 30 IN A 192.0.2.7"
        fallthrough
    }
    template IN A example.org {
        match "^badrr\.example\.org\.$"
        answer "{{ .Name }} 30 IN A not-an-address"
        fallthrough
    }
    template IN A example.org {
        match "^badtmpl\.example\.org\.$"
        answer "{{ .Nope }} 30 IN A 192.0.2.7"
    }
}
"#,
        vec![],
    )
    .await;
    let dns = s.dns();
    for (name, rcode, n) in [
        ("ok.example.org.", ResponseCode::NoError, 2),
        ("badrr.example.org.", ResponseCode::ServFail, 1),
        ("badtmpl.example.org.", ResponseCode::ServFail, 1),
    ] {
        for _ in 0..n {
            let r = udp(dns, &query(name, RecordType::A, None)).await;
            assert_eq!(r.metadata.response_code, rcode, "{name}");
        }
    }
    let (code, body) = http_get(s.http("127.0.0.1:0"), "/metrics").await;
    assert_eq!(code, 200);
    let labels = r#"server="dns://127.0.0.1:0",type="A",view="",zone="example.org.""#;
    for want in [
        format!(r#"coredns_template_matches_total{{class="IN",{labels}}} 4"#),
        r#"coredns_template_rr_failures_total{class="IN",section="answer",server="dns://127.0.0.1:0",template="{{ .Name }} 30 IN A not-an-address",type="A",view="",zone="example.org."} 1"#.to_string(),
        r#"coredns_template_template_failures_total{class="IN",section="answer",server="dns://127.0.0.1:0",template="{{ .Nope }} 30 IN A 192.0.2.7",type="A",view="",zone="example.org."} 1"#.to_string(),
    ] {
        assert!(body.lines().any(|l| l == want), "no {want} in\n{body}");
    }
}

#[tokio::test]
async fn template_rewrite_and_any_over_sockets() {
    let s = crate::util::start(
        r#".:0 {
    bind 127.0.0.1
    any
    rewrite name exact alias.example.org. real.example.org.
    template ANY ANY internal.cloudapp.net {
        match "^(?:[^.]+\.){4,}internal\.cloudapp\.net\.$"
        rcode NXDOMAIN
        fallthrough
    }
    template IN A example.org {
        match "^(?P<h>[a-z]+)\.example\.org\.$"
        answer "{{ .Name }} 30 IN A 192.0.2.7"
    }
    whoami
}
"#,
        vec![],
    )
    .await;
    let dns = s.dns();
    let q = |n: &str, t| crate::util::query(n, t, None);
    let r = crate::util::udp(
        dns,
        &q(
            "www.example.com.ns1.svc.internal.cloudapp.net.",
            RecordType::A,
        ),
    )
    .await;
    assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);
    assert!(r.metadata.authoritative);
    let r = crate::util::udp(dns, &q("vm.internal.cloudapp.net.", RecordType::A)).await;
    assert_eq!(
        r.metadata.response_code,
        ResponseCode::NoError,
        "fell through to whoami"
    );
    let r = crate::util::udp(dns, &q("alias.example.org.", RecordType::A)).await;
    assert_eq!(r.answers.len(), 1);
    assert_eq!(
        r.answers[0].name.to_string(),
        "alias.example.org.",
        "owner rewritten back"
    );
    assert_eq!(r.answers[0].data.to_string(), "192.0.2.7");
    let r = crate::util::udp(dns, &q("real.example.org.", RecordType::ANY)).await;
    assert_eq!(r.answers[0].record_type(), RecordType::HINFO);
    s.running.shutdown().await;
}
