//! Micro-benchmark of the answer path (query bytes in → response bytes out, no socket), so
//! regressions show up without a full dnsperf run:
//!
//!     cargo bench --bench answer
//!
//! Serves 10,000 Services from a snapshot through the kubernetes plugin and times, per query,
//! the answers a pod's lookups need: a ClusterIP A answer, AAAA NODATA, an NXDOMAIN (an ndots:5
//! search-path expansion), a headless SRV answer with additionals, a PTR; for kubernetes alone,
//! with `cache` in front (every answer a cache hit), with `prometheus` (what the metrics cost)
//! and `log`, and kubeadm's Corefile with `forward` to a stub upstream on 127.0.0.1 (external
//! names are cache hits after the first query).
//!
//! Each query is answered as a UDP reader does it: the answer future polled once, with a waker
//! that does nothing. `ANSWER_CASE=text` runs only the setups and cases whose label contains
//! `text` (`=text`: exactly `text`); `ANSWER_ITERS=N` answers each case exactly N times instead of for two seconds, so an
//! instruction count is deterministic (bench/instructions.sh runs it under callgrind, where only
//! `measured` is counted).

use std::future::Future;
use std::hint::black_box;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use clusterdns::plugins::prometheus::Metrics;
use clusterdns::plugins::ready::Readiness;
use clusterdns::{config, server};
use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{Name, RData, Record, RecordType};

fn snapshot(dir: &std::path::Path) -> std::path::PathBuf {
    let mut items =
        vec![r#"{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"ns0"}}"#.to_string()];
    for i in 0..10_000u32 {
        items.push(format!(
            r#"{{"apiVersion":"v1","kind":"Service","metadata":{{"name":"svc{i}","namespace":"ns0"}},"spec":{{"clusterIP":"10.96.{}.{}","ports":[{{"name":"http","port":80}}]}}}}"#,
            i >> 8,
            i & 255
        ));
    }
    items.push(r#"{"apiVersion":"v1","kind":"Service","metadata":{"name":"db","namespace":"ns0"},"spec":{"clusterIP":"None","ports":[{"name":"pg","port":5432}]}}"#.into());
    items.push(r#"{"apiVersion":"discovery.k8s.io/v1","kind":"EndpointSlice","metadata":{"name":"db-1","namespace":"ns0","labels":{"kubernetes.io/service-name":"db"}},"addressType":"IPv4","endpoints":[{"addresses":["10.244.0.1"],"hostname":"db-0"},{"addresses":["10.244.0.2"],"hostname":"db-1"}],"ports":[{"name":"pg","port":5432,"protocol":"TCP"}]}"#.into());
    let path = dir.join("cluster.json");
    std::fs::write(
        &path,
        format!(
            r#"{{"apiVersion":"v1","kind":"List","items":[{}]}}"#,
            items.join(",")
        ),
    )
    .unwrap();
    path
}

fn query(name: &str, qtype: RecordType) -> Vec<u8> {
    let mut m = Message::new(1, MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
    m.to_vec().unwrap()
}

/// A stub upstream on 127.0.0.1: A 192.0.2.1 (TTL 300) for every name under `example.com.`,
/// NODATA for other types there, NXDOMAIN for anything else (as a recursor would).
async fn stub() -> SocketAddr {
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = sock.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 4096];
        while let Ok((n, from)) = sock.recv_from(&mut buf).await {
            let Ok(q) = Message::from_vec(&buf[..n]) else {
                continue;
            };
            let mut r = Message::new(q.metadata.id, MessageType::Response, q.metadata.op_code);
            r.metadata.recursion_desired = q.metadata.recursion_desired;
            r.metadata.recursion_available = true;
            let Some(question) = q.queries.first().cloned() else {
                continue;
            };
            let name = question.name().to_ascii().to_ascii_lowercase();
            r.add_query(question.clone());
            if name.ends_with("example.com.") {
                if question.query_type() == RecordType::A {
                    r.add_answer(Record::from_rdata(
                        question.name().clone(),
                        300,
                        RData::A(A::new(192, 0, 2, 1)),
                    ));
                }
            } else {
                r.metadata.response_code = ResponseCode::NXDomain;
            }
            let _ = sock.send_to(&r.to_vec().unwrap(), from).await;
        }
    });
    addr
}

/// Answers `raw` `n` times as a UDP reader does (one poll, a no-op waker). The only function
/// callgrind counts in bench/instructions.sh.
#[inline(never)]
fn measured(running: &server::Running, raw: &[u8], src: SocketAddr, n: u32) {
    let mut cx = Context::from_waker(Waker::noop());
    for _ in 0..n {
        let mut fut = std::pin::pin!(running.answer(raw.to_vec(), src));
        match fut.as_mut().poll(&mut cx) {
            Poll::Ready(out) => {
                black_box(out.expect("a reply"));
            }
            Poll::Pending => panic!("the answer waited: not a hot-path case"),
        }
    }
}

async fn time(running: &server::Running, label: &str, raw: Vec<u8>) {
    let src: SocketAddr = "10.0.0.1:5353".parse().unwrap();
    // Warm up (and fill caches): the first answers may wait for an upstream.
    for _ in 0..100 {
        black_box(running.answer(raw.clone(), src).await);
    }
    if let Some(n) = std::env::var("ANSWER_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        measured(running, &raw, src, n);
        println!("{label:40} {n} queries");
        return;
    }
    measured(running, &raw, src, 1_000);
    let (mut n, start) = (0u32, Instant::now());
    while start.elapsed() < Duration::from_secs(2) {
        measured(running, &raw, src, 1_000);
        n += 1_000;
    }
    let per = start.elapsed().as_nanos() as f64 / f64::from(n);
    println!("{label:40} {:>8.0} ns/query  ({n} queries)", per);
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let file = snapshot(dir.path());
    let only = std::env::var("ANSWER_CASE").unwrap_or_default();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let up = stub().await;
        let k8s = format!("kubernetes cluster.local in-addr.arpa ip6.arpa {{\n  snapshot {}\n }}", file.display());
        let kubeadm = format!(
            "errors\n kubernetes cluster.local in-addr.arpa ip6.arpa {{\n  snapshot {}\n  pods insecure\n  fallthrough in-addr.arpa ip6.arpa\n  ttl 30\n }}\n prometheus 127.0.0.1:0\n forward . {up}\n cache 30 {{\n  disable success cluster.local\n  disable denial cluster.local\n }}\n loadbalance",
            file.display()
        );
        let setups = [
            ("kubernetes", k8s.clone()),
            (
                "cache + kubernetes",
                format!("cache 3600\n kubernetes cluster.local in-addr.arpa ip6.arpa {{\n  snapshot {}\n  ttl 3600\n }}", file.display()),
            ),
            ("kubernetes + prometheus", format!("prometheus 127.0.0.1:0\n {k8s}")),
            ("kubernetes + prometheus + log", format!("prometheus 127.0.0.1:0\n log\n {k8s}")),
            ("kubeadm", kubeadm),
        ];
        let cases = [
            ("ClusterIP A", "svc4242.ns0.svc.cluster.local.", RecordType::A),
            ("ClusterIP AAAA (NODATA)", "svc4242.ns0.svc.cluster.local.", RecordType::AAAA),
            ("NXDOMAIN (search-path expansion)", "svc1.ns0.svc.cluster.local.ns0.svc.cluster.local.", RecordType::A),
            ("headless SRV with additionals", "_pg._tcp.db.ns0.svc.cluster.local.", RecordType::SRV),
            ("PTR of a ClusterIP", "66.16.96.10.in-addr.arpa.", RecordType::PTR),
            ("external A (cache hit)", "www.example.com.", RecordType::A),
        ];
        for (title, body) in setups {
            let wanted = |label: &str| {
                let full = format!("{title}: {label}");
                match only.strip_prefix('=') {
                    Some(exact) => full == exact,
                    None => full.contains(&only),
                }
            };
            if !cases.iter().any(|c| wanted(c.0)) {
                continue;
            }
            let corefile = format!(".:0 {{\n bind 127.0.0.1\n {body}\n}}\n");
            let cfg = config::load("Corefile", &corefile, 53).unwrap();
            let metrics = Arc::new(Metrics::new(prometheus::Registry::new()).unwrap());
            let built = server::build(&cfg, &metrics).unwrap();
            let running = server::start(built, metrics, Arc::new(Readiness::default())).await.unwrap();
            println!("== {title}");
            for (label, name, qtype) in cases {
                // External names are only answered where a block forwards.
                if wanted(label) && (!label.starts_with("external") || title == "kubeadm") {
                    time(&running, label, query(name, qtype)).await;
                }
            }
            running.shutdown().await;
        }
    });
}
