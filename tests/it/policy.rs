//! Issue 17's policy and small plugins over real sockets: acl (block, filter, drop over UDP
//! and TCP), view (split DNS by client address, type and name), metadata, header, local,
//! minimal, nsid and chaos (also with `dig`), rewrite edns0/rcode/cname through forward to a
//! stub, template ederror, loadbalance weighted/prefer, k8s_external load-balancer hostnames and
//! PTR, cache serve_stale_policy.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::opt::{EdnsCode, EdnsOption, NSIDPayload};
use hickory_proto::rr::rdata::{A, SOA};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UdpSocket;

use crate::util::{TestServer, http_get, query, start, tcp, udp};

/// `query` with an OPT record carrying `options`.
fn with_opts(name: &str, qtype: RecordType, options: Vec<EdnsOption>) -> Message {
    let mut m = query(name, qtype, Some(1232));
    for o in options {
        m.edns.as_mut().unwrap().options_mut().insert(o);
    }
    m
}

/// Sends `msg` over UDP from `from` (a loopback address); `None` without a reply in a second.
async fn udp_from(from: Ipv4Addr, to: SocketAddr, msg: &Message) -> Option<Message> {
    let sock = UdpSocket::bind((from, 0)).await.unwrap();
    sock.send_to(&msg.to_vec().unwrap(), to).await.unwrap();
    let mut buf = vec![0u8; 65535];
    match tokio::time::timeout(Duration::from_secs(1), sock.recv(&mut buf)).await {
        Ok(Ok(n)) => Some(Message::from_vec(&buf[..n]).unwrap()),
        _ => None,
    }
}

fn ede(m: &Message) -> Option<(u16, String)> {
    let opts = m.edns.as_ref()?.options().as_ref().to_vec();
    opts.iter().find_map(|(_, o)| match o {
        EdnsOption::Unknown(15, d) if d.len() >= 2 => Some((
            u16::from_be_bytes([d[0], d[1]]),
            String::from_utf8_lossy(&d[2..]).into_owned(),
        )),
        _ => None,
    })
}

fn datas(rs: &[Record]) -> Vec<String> {
    rs.iter().map(|r| r.data.to_string()).collect()
}

async fn metrics(s: &TestServer) -> String {
    http_get(s.http("127.0.0.1:0"), "/metrics").await.1
}

#[tokio::test]
async fn acl_blocks_filters_and_drops_over_udp_and_tcp() {
    let s = start(
        ".:0 {\n bind 127.0.0.1\n prometheus 127.0.0.1:0\n acl {\n  block net 127.0.0.2\n  drop net 127.0.0.3/32\n  filter type TXT net 127.0.0.0/8\n }\n whoami\n}\n",
        vec![],
    )
    .await;
    let dns = s.dns();
    let lo = Ipv4Addr::LOCALHOST;
    // Allowed.
    let r = udp_from(lo, dns, &query("a.example.", RecordType::A, Some(1232)))
        .await
        .unwrap();
    assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    assert_eq!(r.additionals.len(), 2, "whoami answered");
    // Blocked: REFUSED, EDE 15 for a client with EDNS, no OPT for one without.
    let two = Ipv4Addr::new(127, 0, 0, 2);
    let r = udp_from(two, dns, &query("a.example.", RecordType::A, Some(1232)))
        .await
        .unwrap();
    assert_eq!(r.metadata.response_code, ResponseCode::Refused);
    assert_eq!(ede(&r), Some((15, String::new())));
    let r = udp_from(two, dns, &query("a.example.", RecordType::A, None))
        .await
        .unwrap();
    assert_eq!(r.metadata.response_code, ResponseCode::Refused);
    assert!(r.edns.is_none(), "no OPT record to a client that sent none");
    // Filtered: NOERROR, empty, EDE 17.
    let r = udp_from(lo, dns, &query("a.example.", RecordType::TXT, Some(1232)))
        .await
        .unwrap();
    assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    assert!(r.answers.is_empty() && r.additionals.is_empty());
    assert_eq!(ede(&r), Some((17, String::new())));
    // Dropped: no reply over UDP; over TCP the connection is closed without one.
    let three = Ipv4Addr::new(127, 0, 0, 3);
    assert!(
        udp_from(three, dns, &query("a.example.", RecordType::A, None))
            .await
            .is_none()
    );
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.bind(SocketAddr::new(IpAddr::V4(three), 0)).unwrap();
    let mut conn = sock.connect(dns).await.unwrap();
    let bytes = query("a.example.", RecordType::A, None).to_vec().unwrap();
    conn.write_all(&(bytes.len() as u16).to_be_bytes())
        .await
        .unwrap();
    conn.write_all(&bytes).await.unwrap();
    let mut buf = [0u8; 2];
    let n = tokio::time::timeout(Duration::from_secs(2), conn.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(n, 0, "closed without a reply");
    // The server is still serving, and counted.
    assert_eq!(
        udp(dns, &query("a.example.", RecordType::A, None))
            .await
            .metadata
            .response_code,
        ResponseCode::NoError
    );
    let text = metrics(&s).await;
    for want in [
        "coredns_acl_blocked_requests_total{server=\"dns://127.0.0.1:0\",view=\"\",zone=\".\"} 2",
        "coredns_acl_filtered_requests_total{server=\"dns://127.0.0.1:0\",view=\"\",zone=\".\"} 1",
        "coredns_acl_dropped_requests_total{server=\"dns://127.0.0.1:0\",view=\"\",zone=\".\"} 2",
        "coredns_acl_allowed_requests_total{server=\"dns://127.0.0.1:0\",view=\"\"} 2",
    ] {
        assert!(text.contains(want), "{want} in\n{text}");
    }
    s.running.shutdown().await;
}

const VIEWS: &str = r#"
.:0 {
    bind 127.0.0.1
    prometheus 127.0.0.1:0
    view second {
        expr incidr(client_ip(), '127.0.0.2/32')
    }
    metadata
    template IN TXT . {
        answer "{{ .Name }} 5 IN TXT \"view={{ .Meta \"view/name\" }}\""
    }
    hosts {
        192.0.2.2 test
    }
}
.:0 {
    bind 127.0.0.1
    view aaaa {
        expr type() == 'AAAA' && name() matches '^test\\.$'
    }
    template IN AAAA . {
        answer "{{ .Name }} 5 IN AAAA 2001:db8::1"
    }
}
.:0 {
    bind 127.0.0.1
    hosts {
        192.0.2.1 test
    }
}
example.org:0 {
    bind 127.0.0.1
    view never {
        expr false
    }
    whoami
}
"#;

#[tokio::test]
async fn view_splits_one_zone_by_client_type_and_name() {
    let s = start(VIEWS, vec![]).await;
    let dns = s.dns();
    let lo = Ipv4Addr::LOCALHOST;
    let two = Ipv4Addr::new(127, 0, 0, 2);
    let a = |from, name: &'static str, t| async move {
        udp_from(from, dns, &query(name, t, None)).await.unwrap()
    };
    assert_eq!(
        datas(&a(two, "test.", RecordType::A).await.answers),
        ["192.0.2.2"],
        "client view"
    );
    assert_eq!(
        datas(&a(lo, "test.", RecordType::A).await.answers),
        ["192.0.2.1"],
        "no view matches: the plain block"
    );
    assert_eq!(
        datas(&a(lo, "test.", RecordType::AAAA).await.answers),
        ["2001:db8::1"],
        "type and name view"
    );
    assert_eq!(
        datas(&a(two, "test.", RecordType::AAAA).await.answers),
        Vec::<String>::new(),
        "the first view that passes wins"
    );
    // metadata's view/name, seen by template.
    assert_eq!(
        datas(&a(two, "x.", RecordType::TXT).await.answers),
        ["view=second"]
    );
    // A zone whose only block's view refuses goes to the shorter zone (whoami never answers).
    let r = a(lo, "www.example.org.", RecordType::A).await;
    assert!(r.additionals.is_empty(), "{r:?}");
    assert_ne!(r.metadata.response_code, ResponseCode::Refused);
    let text = metrics(&s).await;
    assert!(text.contains("coredns_dns_requests_total{family=\"1\",proto=\"udp\",server=\"dns://127.0.0.1:0\",type=\"A\",view=\"second\",zone=\".\"} 1"), "{text}");
    s.running.shutdown().await;
}

#[tokio::test]
async fn header_local_minimal_nsid_and_chaos() {
    let s = start(
        ".:0 {\n bind 127.0.0.1\n local\n chaos v9 \"A B\" C\n nsid test-nsid\n header {\n  response set ra\n  response clear aa\n }\n whoami\n}\nexample.org:0 {\n bind 127.0.0.1\n minimal\n whoami\n}\n",
        vec![],
    )
    .await;
    let dns = s.dns();
    // header: RA set, AA cleared on whoami's (authoritative) reply; TCP too.
    for r in [
        udp(dns, &query("x.test.", RecordType::A, None)).await,
        tcp(dns, &query("x.test.", RecordType::A, None)).await,
    ] {
        assert!(
            r.metadata.recursion_available && !r.metadata.authoritative,
            "{:?}",
            r.metadata
        );
        assert_eq!(r.additionals.len(), 2);
    }
    // minimal: whoami's additional records are gone in its block.
    let r = udp(dns, &query("x.example.org.", RecordType::A, None)).await;
    assert_eq!(
        (
            r.metadata.response_code,
            r.answers.len(),
            r.additionals.len()
        ),
        (ResponseCode::NoError, 0, 0)
    );
    // local.
    let r = udp(dns, &query("localhost.", RecordType::A, None)).await;
    assert_eq!(datas(&r.answers), ["127.0.0.1"]);
    let r = udp(
        dns,
        &query("1.0.0.127.in-addr.arpa.", RecordType::PTR, None),
    )
    .await;
    assert_eq!(datas(&r.answers), ["localhost."]);
    let r = udp(
        dns,
        &query("2.0.0.127.in-addr.arpa.", RecordType::PTR, None),
    )
    .await;
    assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);
    // nsid: only to clients that ask.
    let nsid = EdnsOption::NSID(NSIDPayload::new(vec![]).unwrap());
    let r = udp(dns, &with_opts("x.test.", RecordType::A, vec![nsid])).await;
    match r.edns.as_ref().and_then(|e| e.option(EdnsCode::NSID)) {
        Some(EdnsOption::NSID(p)) => assert_eq!(p.as_ref(), b"test-nsid"),
        other => panic!("{other:?}"),
    }
    let r = udp(dns, &query("x.test.", RecordType::A, Some(1232))).await;
    assert!(r.edns.unwrap().option(EdnsCode::NSID).is_none());
    // chaos.
    let ch = |name: &str| {
        let mut m = Message::new(7, MessageType::Query, OpCode::Query);
        let mut q = Query::query(Name::from_ascii(name).unwrap(), RecordType::TXT);
        q.set_query_class(DNSClass::CH);
        m.add_query(q);
        m
    };
    let r = udp(dns, &ch("version.bind.")).await;
    assert_eq!(
        (datas(&r.answers), r.answers[0].dns_class),
        (vec!["v9".to_string()], DNSClass::CH)
    );
    let mut authors = datas(&udp(dns, &ch("authors.bind.")).await.answers);
    authors.sort();
    assert_eq!(authors, ["A B", "C"]);
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    assert_eq!(
        datas(&udp(dns, &ch("hostname.bind.")).await.answers),
        [host.trim()]
    );
    // The README's commands, with dig.
    let port = dns.port().to_string();
    let dig = |args: &[&str]| {
        let out = Command::new("dig")
            .args(["@127.0.0.1", "-p", &port, "+time=2", "+tries=1"])
            .args(args)
            .output()
            .expect("dig (dnsutils) is installed");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let out = dig(&["+nsid", "example.test"]);
    assert!(
        out.contains("NSID: 74 65 73 74 2d 6e 73 69 64 (\"test-nsid\")"),
        "{out}"
    );
    let out = dig(&["CH", "TXT", "version.bind"]);
    assert!(out.contains("version.bind.\t\t0\tCH\tTXT\t\"v9\""), "{out}");
    s.running.shutdown().await;
}

/// A UDP upstream that records the EDNS options of every query, answers `missing.*` with
/// NXDOMAIN, `lb.example.net.` with 198.51.100.5, anything else (A) with 192.0.2.1 — or
/// everything with NXDOMAIN while `nx` is set.
struct Upstream {
    addr: SocketAddr,
    nx: Arc<AtomicBool>,
    seen: Arc<Mutex<Vec<Vec<EdnsOption>>>>,
}

async fn upstream() -> Upstream {
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = sock.local_addr().unwrap();
    let nx = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (nx2, seen2) = (nx.clone(), seen.clone());
    tokio::spawn(async move {
        let mut buf = vec![0u8; 65535];
        while let Ok((n, src)) = sock.recv_from(&mut buf).await {
            let Ok(q) = Message::from_vec(&buf[..n]) else {
                continue;
            };
            seen2
                .lock()
                .unwrap()
                .push(q.edns.as_ref().map_or(vec![], |e| {
                    e.options()
                        .as_ref()
                        .iter()
                        .map(|(_, o)| o.clone())
                        .collect()
                }));
            let question = q.queries[0].clone();
            let name = question.name().to_ascii().to_ascii_lowercase();
            let mut r = Message::new(q.metadata.id, MessageType::Response, OpCode::Query);
            r.metadata.recursion_desired = q.metadata.recursion_desired;
            r.metadata.recursion_available = true;
            r.add_query(question.clone());
            if q.edns.is_some() {
                r.set_edns(Edns::new());
            }
            if nx2.load(Ordering::SeqCst) || name.starts_with("missing.") {
                r.metadata.response_code = ResponseCode::NXDomain;
                let zone = Name::from_ascii("test.").unwrap();
                r.add_authority(Record::from_rdata(
                    zone.clone(),
                    60,
                    RData::SOA(SOA::new(zone.clone(), zone, 1, 60, 60, 60, 60)),
                ));
            } else if question.query_type() == RecordType::A {
                let ip = if name == "lb.example.net." {
                    Ipv4Addr::new(198, 51, 100, 5)
                } else {
                    Ipv4Addr::new(192, 0, 2, 1)
                };
                r.add_answer(Record::from_rdata(
                    question.name().clone(),
                    60,
                    RData::A(A(ip)),
                ));
            }
            let _ = sock.send_to(&r.to_vec().unwrap(), src).await;
        }
    });
    Upstream { addr, nx, seen }
}

#[tokio::test]
async fn rewrite_edns0_rcode_and_cname_through_the_server() {
    let up = upstream().await;
    let s = start(
        &format!(
            r#".:0 {{
    bind 127.0.0.1
    rewrite continue {{
        edns0 local set 0xffee {{client_ip}}
    }}
    rewrite continue {{
        edns0 subnet set 24 56
    }}
    rewrite edns0 local set 0xffef abcd revert
    forward . {up}
}}
rcode.test:0 {{
    bind 127.0.0.1
    rewrite rcode missing.rcode.test NXDOMAIN NOERROR
    forward . {up}
}}
example.org:0 {{
    bind 127.0.0.1
    rewrite cname exact old.cdn.test new.cdn.test
    template IN A example.org {{
        answer "{{{{ .Name }}}} 30 IN CNAME old.cdn.test."
    }}
}}
cdn.test:0 {{
    bind 127.0.0.1
    hosts {{
        192.0.2.7 new.cdn.test
    }}
}}
"#,
            up = up.addr
        ),
        vec![],
    )
    .await;
    let dns = s.dns();
    // edns0: the upstream sees the options; the reply shows the ones not reverted.
    let r = udp(dns, &query("www.test.", RecordType::A, Some(1232))).await;
    assert_eq!(datas(&r.answers), ["192.0.2.1"]);
    let seen = up.seen.lock().unwrap().last().cloned().unwrap();
    assert!(
        seen.contains(&EdnsOption::Unknown(0xffee, vec![127, 0, 0, 1])),
        "{seen:?}"
    );
    assert!(
        seen.contains(&EdnsOption::Unknown(0xffef, b"abcd".to_vec())),
        "{seen:?}"
    );
    assert!(seen.iter().any(|o| matches!(o, EdnsOption::Subnet(s) if s.source_prefix() == 24 && s.addr() == IpAddr::V4(Ipv4Addr::new(127, 0, 0, 0)))), "{seen:?}");
    let shown: Vec<EdnsOption> = r
        .edns
        .unwrap()
        .options()
        .as_ref()
        .iter()
        .map(|(_, o)| o.clone())
        .collect();
    assert!(
        shown.contains(&EdnsOption::Unknown(0xffee, vec![127, 0, 0, 1])),
        "{shown:?}"
    );
    assert!(
        !shown
            .iter()
            .any(|o| matches!(o, EdnsOption::Unknown(0xffef, _))),
        "reverted: {shown:?}"
    );
    // A client without EDNS still gets no OPT record (the upstream got one).
    let r = udp(dns, &query("www.test.", RecordType::A, None)).await;
    assert!(r.edns.is_none());
    assert!(
        up.seen
            .lock()
            .unwrap()
            .last()
            .unwrap()
            .contains(&EdnsOption::Unknown(0xffef, b"abcd".to_vec()))
    );
    // rcode: the upstream's NXDOMAIN becomes NOERROR for that name only.
    let r = udp(dns, &query("missing.rcode.test.", RecordType::A, None)).await;
    assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    let r = udp(
        dns,
        &query("missing.other.rcode.test.", RecordType::A, None),
    )
    .await;
    assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);
    // cname: the template's CNAME target is replaced and looked up through the server.
    let r = udp(dns, &query("www.example.org.", RecordType::A, None)).await;
    let got: Vec<String> = r
        .answers
        .iter()
        .map(|r| format!("{} {} {}", r.name, r.record_type(), r.data))
        .collect();
    assert_eq!(
        got,
        [
            "www.example.org. CNAME new.cdn.test.",
            "new.cdn.test. A 192.0.2.7"
        ]
    );
    s.running.shutdown().await;
}

#[tokio::test]
async fn template_ederror_reaches_edns_clients() {
    let s = start(
        ".:0 {\n bind 127.0.0.1\n template ANY ANY invalid {\n  rcode NXDOMAIN\n  authority \"invalid. 60 {{ .Class }} SOA ns.invalid. hostmaster.invalid. (1 60 60 60 60)\"\n  ederror 21 \"Blocked according to RFC2606\"\n }\n}\n",
        vec![],
    )
    .await;
    let r = udp(s.dns(), &query("x.invalid.", RecordType::A, Some(1232))).await;
    assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(ede(&r), Some((21, "Blocked according to RFC2606".into())));
    let r = tcp(s.dns(), &query("x.invalid.", RecordType::A, None)).await;
    assert_eq!(
        (r.metadata.response_code, r.edns.is_none()),
        (ResponseCode::NXDomain, true)
    );
    s.running.shutdown().await;
}

#[tokio::test]
async fn loadbalance_weighted_reloads_and_prefer_orders() {
    let dir = tempfile::tempdir().unwrap();
    let weights = dir.path().join("weights");
    std::fs::write(&weights, "www.weighted.test\n192.0.2.3 255\n").unwrap();
    let s = start(
        &format!(
            "weighted.test:0 {{\n bind 127.0.0.1\n loadbalance weighted {} {{\n  reload 1s\n }}\n hosts {{\n  192.0.2.1 www.weighted.test\n  192.0.2.2 www.weighted.test\n  192.0.2.3 www.weighted.test\n }}\n}}\nprefer.test:0 {{\n bind 127.0.0.1\n loadbalance round_robin {{\n  prefer 192.0.2.0/24\n }}\n hosts {{\n  198.51.100.1 www.prefer.test\n  192.0.2.9 www.prefer.test\n  203.0.113.1 www.prefer.test\n }}\n}}\n",
            weights.display()
        ),
        vec![],
    )
    .await;
    let dns = s.dns();
    let top_counts = |want: &'static str, n: usize| async move {
        let mut hits = 0;
        for _ in 0..n {
            let r = udp(dns, &query("www.weighted.test.", RecordType::A, None)).await;
            assert_eq!(r.answers.len(), 3);
            if r.answers[0].data.to_string() == want {
                hits += 1;
            }
        }
        hits
    };
    // Weight 255 against 1 and 1: first in 255/257 of the answers (≥ 180 of 200 fails with a
    // chance below 1e-15).
    assert!(top_counts("192.0.2.3", 200).await >= 180);
    tokio::time::sleep(Duration::from_millis(20)).await;
    std::fs::write(&weights, "www.weighted.test\n192.0.2.1 255\n").unwrap();
    let t = Instant::now();
    while top_counts("192.0.2.1", 20).await < 15 {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "the changed weight file was not re-read"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for _ in 0..20 {
        let r = udp(dns, &query("www.prefer.test.", RecordType::A, None)).await;
        assert_eq!(r.answers[0].data.to_string(), "192.0.2.9");
        assert_eq!(r.answers.len(), 3);
    }
    s.running.shutdown().await;
}

const LB_CLUSTER: &str = r#"apiVersion: v1
kind: List
items:
- {apiVersion: v1, kind: Namespace, metadata: {name: ns1}}
- apiVersion: v1
  kind: Service
  metadata: {name: elb, namespace: ns1}
  spec: {type: LoadBalancer, clusterIP: 10.0.0.5, ports: [{name: http, port: 80, protocol: TCP}]}
  status: {loadBalancer: {ingress: [{hostname: lb.example.net}]}}
- apiVersion: v1
  kind: Service
  metadata: {name: ip, namespace: ns1}
  spec: {type: LoadBalancer, clusterIP: 10.0.0.6, ports: [{name: http, port: 80, protocol: TCP}]}
  status: {loadBalancer: {ingress: [{ip: 192.0.2.10}]}}
"#;

#[tokio::test]
async fn k8s_external_load_balancer_hostnames_and_ptr() {
    let up = upstream().await;
    let dir = tempfile::tempdir().unwrap();
    let cluster = dir.path().join("cluster.yaml");
    std::fs::write(&cluster, LB_CLUSTER).unwrap();
    let s = start(
        &format!(
            ".:0 {{\n bind 127.0.0.1\n k8s_external example.org 2.0.192.in-addr.arpa\n kubernetes cluster.local {{\n  snapshot {}\n }}\n forward . {}\n}}\n",
            cluster.display(),
            up.addr
        ),
        vec![],
    )
    .await;
    let dns = s.dns();
    let r = udp(dns, &query("elb.ns1.example.org.", RecordType::A, None)).await;
    let got: Vec<String> = r
        .answers
        .iter()
        .map(|r| format!("{} {} {}", r.name, r.record_type(), r.data))
        .collect();
    assert_eq!(
        got,
        [
            "elb.ns1.example.org. CNAME lb.example.net.",
            "lb.example.net. A 198.51.100.5"
        ]
    );
    assert!(r.metadata.authoritative);
    let r = udp(dns, &query("ip.ns1.example.org.", RecordType::A, None)).await;
    assert_eq!(datas(&r.answers), ["192.0.2.10"]);
    let r = udp(
        dns,
        &query("_http._tcp.elb.ns1.example.org.", RecordType::SRV, None),
    )
    .await;
    assert_eq!(datas(&r.answers), ["0 100 80 lb.example.net."]);
    assert_eq!(datas(&r.additionals), ["198.51.100.5"]);
    let r = udp(
        dns,
        &query("10.2.0.192.in-addr.arpa.", RecordType::PTR, None),
    )
    .await;
    assert_eq!(datas(&r.answers), ["ip.ns1.example.org."]);
    let r = udp(
        dns,
        &query("11.2.0.192.in-addr.arpa.", RecordType::PTR, None),
    )
    .await;
    assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);
    s.running.shutdown().await;
}

#[tokio::test]
async fn cache_prefer_positive_serves_the_last_answer_while_upstream_denies() {
    let up = upstream().await;
    let s = start(
        &format!(
            "pp.test:0 {{\n bind 127.0.0.1\n cache {{\n  success 100 1 1\n  serve_stale 1h verify\n  serve_stale_policy prefer_positive\n }}\n forward . {up}\n}}\nnp.test:0 {{\n bind 127.0.0.1\n cache {{\n  success 100 1 1\n  serve_stale 1h verify\n }}\n forward . {up}\n}}\n",
            up = up.addr
        ),
        vec![],
    )
    .await;
    let dns = s.dns();
    for name in ["www.pp.test.", "www.np.test."] {
        assert_eq!(
            datas(&udp(dns, &query(name, RecordType::A, None)).await.answers),
            ["192.0.2.1"]
        );
    }
    up.nx.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(1200)).await; // past the 1 s TTL
    let r = udp(dns, &query("www.pp.test.", RecordType::A, None)).await;
    assert_eq!(
        (
            r.metadata.response_code,
            datas(&r.answers),
            r.answers[0].ttl
        ),
        (ResponseCode::NoError, vec!["192.0.2.1".to_string()], 0)
    );
    let r = udp(dns, &query("www.pp.test.", RecordType::A, None)).await;
    assert_eq!(
        r.metadata.response_code,
        ResponseCode::NoError,
        "still the answer"
    );
    let r = udp(dns, &query("www.np.test.", RecordType::A, None)).await;
    assert_eq!(
        r.metadata.response_code,
        ResponseCode::NXDomain,
        "without the policy the verified denial wins"
    );
    s.running.shutdown().await;
}

#[test]
fn view_blocks_may_share_a_zone_and_a_shadowed_one_warns() {
    use clusterdns::config::load;
    let plain = ".:53 {\n whoami\n}\n";
    let view = ".:53 {\n view v {\n  expr type() == 'A'\n }\n whoami\n}\n";
    let c = load("Corefile", &format!("{view}{plain}"), 53).unwrap();
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    assert_eq!(c.blocks.len(), 2);
    let c = load("Corefile", &format!("{plain}{view}"), 53).unwrap();
    assert_eq!(c.warnings.len(), 1);
    assert!(
        c.warnings[0].starts_with(
            "Corefile:4 - the view block for dns://.:53 follows a block without a view"
        ),
        "{}",
        c.warnings[0]
    );
    // Two blocks without a view are still refused; a bound view block next to a wildcard one
    // still overlaps.
    let e = load("Corefile", &format!("{plain}{plain}"), 53).unwrap_err();
    assert!(e[0].to_string().contains("it is already defined"));
    let bound = ".:53 {\n bind 127.0.0.1\n view v {\n  expr true\n }\n whoami\n}\n";
    let e = load("Corefile", &format!("{plain}{bound}"), 53).unwrap_err();
    assert!(
        e[0].to_string().contains("zone overlap listener capacity"),
        "{}",
        e[0]
    );
    // A bad expression names what is not supported, with its line.
    let e = load(
        "Corefile",
        ".:53 {\n view v {\n  expr lower(name()) == 'x'\n }\n whoami\n}\n",
        53,
    )
    .unwrap_err();
    assert!(e[0].to_string().contains("Corefile:3 - Error during parsing: invalid expression \"lower(name()) == 'x'\": unsupported function 'lower'"), "{}", e[0]);
}

/// A dropped query over DNS over HTTPS: there is no DNS reply to send, so 500, as CoreDNS's DoH
/// server answers when the chain wrote nothing (curl).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acl_drop_over_doh_is_a_500() {
    use base64::Engine;
    use clusterdns::corefile::Transport;
    let s = start(
        &format!(
            "https://.:0 {{\n bind 127.0.0.1\n tls {} {}\n acl drop.test {{\n  drop\n }}\n whoami\n}}\n",
            crate::util::fixture("dot.crt"),
            crate::util::fixture("dot.key")
        ),
        vec![],
    )
    .await;
    let port = s
        .running
        .addrs
        .iter()
        .find(|(t, _)| *t == Transport::Https)
        .map(|(_, a)| a.port())
        .unwrap();
    for (name, want) in [("x.drop.test.", "500"), ("x.other.test.", "200")] {
        let wire = query(name, RecordType::A, None).to_vec().unwrap();
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&wire);
        let args = vec![
            "-sS".to_string(),
            "--cacert".into(),
            crate::util::fixture("dot-ca.crt"),
            "-o".into(),
            "/dev/null".into(),
            "-w".into(),
            "%{http_code}".into(),
            format!("https://127.0.0.1:{port}/dns-query?dns={b64}"),
        ];
        let out = tokio::task::spawn_blocking(move || {
            Command::new("curl").args(&args).output().expect("curl")
        })
        .await
        .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), want, "{name}");
    }
    s.running.shutdown().await;
}
