//! The fast path (plain queries answered straight to bytes) against the general path: for the
//! same queries, on two servers with the same Corefile, the same replies byte for byte and the
//! same metrics; and the queries it should take, it takes.

use std::net::SocketAddr;

use hickory_proto::op::{Edns, Message};
use hickory_proto::rr::RecordType;

use crate::util::{TestServer, query, start, stub_upstream};

const SNAPSHOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/demo/cluster.yaml");

/// (name, type, whether the fast path answers it: at once, or once cached where a cache stores
/// it).
const QUERIES: &[(&str, RecordType, bool)] = &[
    ("kubernetes.default.svc.cluster.local.", RecordType::A, true),
    (
        "kubernetes.default.svc.cluster.local.",
        RecordType::AAAA,
        true,
    ),
    ("Kubernetes.DEFAULT.svc.Cluster.Local.", RecordType::A, true),
    (
        "_https._tcp.kubernetes.default.svc.cluster.local.",
        RecordType::SRV,
        true,
    ),
    (
        "_dns._udp.kube-dns.kube-system.svc.cluster.local.",
        RecordType::SRV,
        true,
    ),
    (
        "_DNS-TCP._Tcp.kube-dns.kube-system.svc.cluster.local.",
        RecordType::SRV,
        true,
    ),
    (
        "kube-dns.kube-system.svc.cluster.local.",
        RecordType::SRV,
        true,
    ),
    ("db.shop.svc.cluster.local.", RecordType::A, true),
    ("db.shop.svc.cluster.local.", RecordType::AAAA, true),
    (
        "_postgres._tcp.db.shop.svc.cluster.local.",
        RecordType::SRV,
        true,
    ),
    ("db-0.db.shop.svc.cluster.local.", RecordType::A, true),
    ("web.shop.svc.cluster.local.", RecordType::A, true),
    ("web.shop.svc.cluster.local.", RecordType::AAAA, true),
    (
        "_http._tcp.web.shop.svc.cluster.local.",
        RecordType::SRV,
        true,
    ),
    ("10-244-1-10.shop.pod.cluster.local.", RecordType::A, true),
    (
        "www.example.org.shop.svc.cluster.local.",
        RecordType::A,
        true,
    ),
    ("www.example.org.svc.cluster.local.", RecordType::AAAA, true),
    ("www.example.org.cluster.local.", RecordType::A, true),
    ("nope.default.svc.cluster.local.", RecordType::SRV, true),
    ("web.shop.shop.svc.cluster.local.", RecordType::A, true),
    ("svc.cluster.local.", RecordType::A, true),
    ("cluster.local.", RecordType::A, true),
    // NXDOMAIN and NODATA: the SOA's names are pointers into the question, except where the
    // question's label before the zone is the first of `dns.<zone>` or `hostmaster.<zone>`.
    ("dns.cluster.local.", RecordType::A, true),
    ("ns.dns.cluster.local.", RecordType::AAAA, true),
    ("x.Hostmaster.cluster.local.", RecordType::A, true),
    ("hostmaster.svc.cluster.local.", RecordType::A, true),
    (
        "kube-dns.kube-system.svc.cluster.local.",
        RecordType::AAAA,
        true,
    ),
    ("10.0.96.10.in-addr.arpa.", RecordType::PTR, true),
    ("10.1.244.10.in-addr.arpa.", RecordType::PTR, true),
    ("1.1.1.10.in-addr.arpa.", RecordType::PTR, false),
    ("payments.shop.svc.cluster.local.", RecordType::A, false),
    ("dns-version.cluster.local.", RecordType::TXT, false),
    ("cluster.local.", RecordType::NS, false),
    ("www.example.org.", RecordType::A, false),
    ("nx.example.org.", RecordType::AAAA, false),
];

/// Each query plainly, with EDNS and DO, with CD, with RD off and with a 512-byte buffer.
fn variants(name: &str, qtype: RecordType) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for v in 0..4 {
        let mut m = query(name, qtype, None);
        match v {
            1 => {
                let mut e = Edns::new();
                e.set_max_payload(1232);
                e.set_dnssec_ok(true);
                m.set_edns(e);
            }
            2 => m.metadata.checking_disabled = true,
            3 => m.metadata.recursion_desired = false,
            _ => {}
        }
        out.push(m.to_vec().unwrap());
    }
    out
}

/// The reply with each section's records sorted (loadbalance shuffles them).
fn sorted(bytes: &[u8]) -> String {
    let m = Message::from_vec(bytes).unwrap();
    let mut parts = vec![format!("{:?} {:?} {:?}", m.metadata, m.queries, m.edns)];
    for section in [&m.answers, &m.authorities, &m.additionals] {
        let mut rs: Vec<String> = section.iter().map(|r| r.to_string()).collect();
        rs.sort();
        parts.push(rs.join("\n"));
    }
    parts.join("\n--\n")
}

fn metrics(s: &TestServer) -> Vec<String> {
    let mut text = String::new();
    for f in s.metrics.registry.gather() {
        let name = f.name();
        // Timings differ between any two runs, and so does moka's entry count until its
        // housekeeping has run.
        // The process's own metrics (memory, CPU) change by themselves.
        if name.contains("duration")
            || name.contains("sync_seconds")
            || name == "coredns_cache_entries"
            || name.starts_with("process_")
        {
            continue;
        }
        for m in f.get_metric() {
            let labels: Vec<String> = m
                .get_label()
                .iter()
                .map(|l| format!("{}={}", l.name(), l.value()))
                .collect();
            let h = m.get_histogram();
            text.push_str(&format!(
                "{name}{{{}}} {} {} {} {}\n",
                labels.join(","),
                m.get_counter().get_value(),
                m.get_gauge().get_value(),
                h.get_sample_count(),
                h.get_sample_sum()
            ));
        }
    }
    text.lines().map(String::from).collect()
}

/// Replies: on one server `a`, each query on the fast path then on the general path (the SOA
/// serial is the time a server loaded its objects, so two servers may differ). Metrics: server
/// `b` answers everything on the general path, server `c` as it serves clients (fast path
/// first); their metrics must be the same.
/// `hits`: a cache answers the lower-case questions on the fast path once it holds them.
async fn compare(corefile: &str, shuffled: bool, always_fast: fn(&str) -> bool, hits: bool) {
    let a = start(corefile, vec![]).await;
    let b = start(corefile, vec![]).await;
    let c = start(corefile, vec![]).await;
    let src: SocketAddr = "10.244.1.10:5353".parse().unwrap();
    for &(name, qtype, fast) in QUERIES {
        // Twice: the second may be a cache hit.
        for round in 0..2 {
            for raw in variants(name, qtype) {
                b.running.answer_general(raw.clone(), src).await.unwrap();
                c.running.answer(raw.clone(), src).await.unwrap();
                // A cache hit's TTL drops when a second passes between the two: once more then.
                for attempt in 0..2 {
                    let Some(got) = a.running.answer_fast(&raw, src) else {
                        // Once cached: a hit in another letter case than the stored question is
                        // rebuilt on the general path.
                        let cached = hits && round == 1 && name == name.to_ascii_lowercase();
                        assert!(
                            !(fast && (always_fast(name) || cached)),
                            "{name} {qtype}: not on the fast path ({corefile})"
                        );
                        a.running.answer_general(raw.clone(), src).await.unwrap();
                        break;
                    };
                    let general = a.running.answer_general(raw.clone(), src).await.unwrap();
                    let same = if shuffled {
                        got.len() == general.len() && sorted(&got) == sorted(&general)
                    } else {
                        got == general
                    };
                    if same {
                        break;
                    }
                    assert!(
                        attempt == 0,
                        "{name} {qtype} ({corefile}):\nfast    {got:?}\ngeneral {general:?}\n{}\n{}",
                        sorted(&got),
                        sorted(&general)
                    );
                }
            }
        }
    }
    let (mb, mc) = (metrics(&b), metrics(&c));
    let differ: Vec<(&String, &String)> = mb.iter().zip(&mc).filter(|(x, y)| x != y).collect();
    assert!(
        differ.is_empty() && mb.len() == mc.len(),
        "{corefile}: {differ:#?}"
    );
    for s in [a, b, c] {
        s.running.shutdown().await;
    }
}

#[tokio::test]
async fn fast_and_general_paths_give_the_same_replies_and_metrics() {
    let stub = stub_upstream(&[("www.example.org.", "192.0.2.7".parse().unwrap())]).await;
    let up = stub.addr;
    let k8s = format!(
        "kubernetes cluster.local in-addr.arpa ip6.arpa {{\n  snapshot {SNAPSHOT}\n  pods insecure\n  fallthrough in-addr.arpa ip6.arpa\n  ttl 30\n }}"
    );
    // The kubernetes plugin alone (and forward for what falls through).
    compare(
        &format!(".:0 {{\n bind 127.0.0.1\n {k8s}\n prometheus 127.0.0.1:0\n forward . {up}\n}}\n"),
        false,
        |_| true,
        true,
    )
    .await;
    // kubeadm's Corefile (without `loop`, whose probe has a random name, so two servers' size
    // metrics would differ): the cache stores reverse names (so they are fast once cached).
    compare(
        &format!(
            ".:0 {{\n bind 127.0.0.1\n errors\n {k8s}\n prometheus 127.0.0.1:0\n forward . {up}\n cache 30 {{\n  disable success cluster.local\n  disable denial cluster.local\n }}\n loadbalance\n}}\n"
        ),
        true,
        |name| name.to_ascii_lowercase().ends_with("cluster.local."),
        true,
    )
    .await;
    // With `log` (its lines are compared in the log plugin's tests).
    compare(
        &format!(
            ".:0 {{\n bind 127.0.0.1\n log\n {k8s}\n prometheus 127.0.0.1:0\n forward . {up}\n}}\n"
        ),
        false,
        |_| true,
        true,
    )
    .await;
    // A cache for everything: cluster answers too are cache hits the second time.
    compare(
        &format!(".:0 {{\n bind 127.0.0.1\n cache 300\n {k8s}\n prometheus 127.0.0.1:0\n forward . {up}\n}}\n"),
        false,
        |_| false,
        true,
    )
    .await;
}

/// Asserts that no query of [`QUERIES`] (in any variant, asked twice so a cache may hold it)
/// takes the fast path on a server with `corefile`.
async fn never_fast(corefile: &str) {
    let a = start(corefile, vec![]).await;
    let src: SocketAddr = "10.244.1.10:5353".parse().unwrap();
    for &(name, qtype, _) in QUERIES {
        for _ in 0..2 {
            for raw in variants(name, qtype) {
                assert!(
                    a.running.answer_fast(&raw, src).is_none(),
                    "{name} {qtype}: on the fast path ({corefile})"
                );
                a.running.answer_general(raw, src).await.unwrap();
            }
        }
    }
    a.running.shutdown().await;
}

/// Plugins that change the reply and do not know the fast path make it fall back (the
/// handler's default), so their replies are the general path's: acl, metadata (with `log`
/// lines that show it), dnstap, minimal, header, rewrite (its reverter too), dns64, loadbalance
/// with weights or `prefer`. A listener with a `view` has no fast path: the view's filter picks
/// the block (here the view refuses the client, so the second block, with another TTL, answers).
#[tokio::test]
async fn plugins_that_change_replies_take_the_general_path() {
    let stub = stub_upstream(&[("www.example.org.", "192.0.2.7".parse().unwrap())]).await;
    let up = stub.addr;
    let k8s = |ttl: u32| {
        format!(
            "kubernetes cluster.local in-addr.arpa ip6.arpa {{\n  snapshot {SNAPSHOT}\n  pods insecure\n  fallthrough in-addr.arpa ip6.arpa\n  ttl {ttl}\n }}"
        )
    };
    let dir = tempfile::tempdir().unwrap();
    let weights = dir.path().join("weights");
    std::fs::write(
        &weights,
        "web.shop.svc.cluster.local\n10.244.1.20 100\ndb.shop.svc.cluster.local\n10.244.2.30 3\n",
    )
    .unwrap();
    let block = |plugins: &str| {
        format!(
            ".:0 {{\n bind 127.0.0.1\n prometheus 127.0.0.1:0\n {plugins}\n {}\n forward . {up}\n}}\n",
            k8s(30)
        )
    };
    let cases = [
        (
            block("acl {\n  block type AAAA net 10.244.0.0/16\n  filter type SRV\n }"),
            false,
        ),
        (
            block("metadata\n log . \"{/kubernetes/namespace} {/kubernetes/kind} {name}\""),
            false,
        ),
        (block("dnstap /nonexistent/dnstap.sock full"), false),
        (block("minimal"), false),
        (block("header {\n  response set ra\n  response clear aa\n }"), false),
        (
            block(
                "rewrite name exact web.shop.svc.cluster.local. db.shop.svc.cluster.local. answer auto",
            ),
            false,
        ),
        (
            block("rewrite name suffix .shop.svc.cluster.local. .default.svc.cluster.local. answer auto"),
            false,
        ),
        (block("dns64 64:ff9b::/96 {\n  translate_all\n }"), false),
        (
            block(&format!(
                "loadbalance weighted {} {{\n  reload 0s\n }}",
                weights.display()
            )),
            true,
        ),
        (
            block("loadbalance round_robin {\n  prefer 10.244.2.0/24\n }"),
            true,
        ),
        (
            block("cache 30 {\n  disable success cluster.local\n  disable denial cluster.local\n }\n loadbalance weighted WEIGHTS")
                .replace("WEIGHTS", &weights.display().to_string()),
            true,
        ),
        (
            format!(
                ".:0 {{\n bind 127.0.0.1\n prometheus 127.0.0.1:0\n view other {{\n  expr incidr(client_ip(), '192.0.2.0/24')\n }}\n {}\n forward . {up}\n}}\n{}",
                k8s(5),
                block("")
            ),
            false,
        ),
    ];
    for (corefile, shuffled) in &cases {
        never_fast(corefile).await;
        compare(corefile, *shuffled, |_| false, false).await;
    }
}

/// `cache` with `serve_stale` (and `serve_stale_policy prefer_positive`): fresh entries are
/// answered on the fast path, as the general path answers them.
#[tokio::test]
async fn cache_with_serve_stale_answers_as_the_general_path() {
    let stub = stub_upstream(&[("www.example.org.", "192.0.2.7".parse().unwrap())]).await;
    let up = stub.addr;
    let k8s = format!(
        "kubernetes cluster.local in-addr.arpa ip6.arpa {{\n  snapshot {SNAPSHOT}\n  pods insecure\n  fallthrough in-addr.arpa ip6.arpa\n  ttl 30\n }}"
    );
    for options in [
        "serve_stale 1h",
        "serve_stale 1h verify\n  serve_stale_policy prefer_positive",
    ] {
        let corefile = format!(
            ".:0 {{\n bind 127.0.0.1\n prometheus 127.0.0.1:0\n cache 300 {{\n  {options}\n }}\n loadbalance\n {k8s}\n forward . {up}\n}}\n"
        );
        compare(&corefile, true, |_| false, true).await;
        // Once cached, a plain lower-case question is a fast hit.
        let s = start(&corefile, vec![]).await;
        let src: SocketAddr = "10.244.1.10:5353".parse().unwrap();
        let raw = query("www.example.org.", RecordType::A, None)
            .to_vec()
            .unwrap();
        s.running.answer_general(raw.clone(), src).await.unwrap();
        let fast = s
            .running
            .answer_fast(&raw, src)
            .expect("a fresh entry on the fast path");
        let general = s.running.answer_general(raw, src).await.unwrap();
        assert_eq!(sorted(&fast), sorted(&general), "{corefile}");
        s.running.shutdown().await;
    }
}
