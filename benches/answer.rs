//! Micro-benchmark of the answer path (query bytes in → response bytes out, no socket), so
//! regressions show up without a full dnsperf run:
//!
//!     cargo bench --bench answer
//!
//! Serves 10,000 Services from a snapshot through the kubernetes plugin and times, per query:
//! a ClusterIP A answer, an NXDOMAIN (an ndots:5 search-path expansion), a headless SRV answer;
//! for kubernetes alone, with `cache` in front (every answer a cache hit) and with `prometheus`
//! (what the metrics cost).

use std::hint::black_box;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clusterdns::plugins::prometheus::Metrics;
use clusterdns::plugins::ready::Readiness;
use clusterdns::{config, server};
use hickory_proto::op::{Message, MessageType, OpCode, Query};
use hickory_proto::rr::{Name, RecordType};

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

async fn time(running: &server::Running, label: &str, raw: Vec<u8>) {
    let src: SocketAddr = "10.0.0.1:5353".parse().unwrap();
    for _ in 0..1_000 {
        black_box(running.answer(raw.clone(), src).await);
    }
    let (mut n, start) = (0u32, Instant::now());
    while start.elapsed() < Duration::from_secs(2) {
        for _ in 0..1_000 {
            black_box(running.answer(raw.clone(), src).await.expect("a reply"));
        }
        n += 1_000;
    }
    let per = start.elapsed().as_nanos() as f64 / f64::from(n);
    println!("{label:40} {:>8.0} ns/query  ({n} queries)", per);
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let file = snapshot(dir.path());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        for (title, corefile) in [
            ("kubernetes", format!("cluster.local:0 {{\n bind 127.0.0.1\n kubernetes {{\n  snapshot {}\n }}\n}}\n", file.display())),
            ("cache + kubernetes", format!("cluster.local:0 {{\n bind 127.0.0.1\n cache 3600\n kubernetes {{\n  snapshot {}\n  ttl 3600\n }}\n}}\n", file.display())),
            ("kubernetes + prometheus", format!("cluster.local:0 {{\n bind 127.0.0.1\n prometheus 127.0.0.1:0\n kubernetes {{\n  snapshot {}\n }}\n}}\n", file.display())),
        ] {
            let cfg = config::load("Corefile", &corefile, 53).unwrap();
            let metrics = Arc::new(Metrics::new(prometheus::Registry::new()).unwrap());
            let built = server::build(&cfg, &metrics).unwrap();
            let running = server::start(built, metrics, Arc::new(Readiness::default())).await.unwrap();
            println!("== {title}");
            time(&running, "ClusterIP A", query("svc4242.ns0.svc.cluster.local.", RecordType::A)).await;
            time(&running, "NXDOMAIN (search-path expansion)", query("svc1.ns0.svc.cluster.local.ns0.svc.cluster.local.", RecordType::A)).await;
            time(&running, "headless SRV with additionals", query("_pg._tcp.db.ns0.svc.cluster.local.", RecordType::SRV)).await;
            running.shutdown().await;
        }
    });
}
