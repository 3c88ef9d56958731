//! deploy/monitoring against a live server: the binary serves cluster names from the fake API,
//! forwards to a stub upstream and to a dead one, and after that traffic its `/metrics` must hold
//! every series the Grafana dashboard and the PrometheusRule read, with every label they select
//! or group by. Every PromQL expression is parsed with `promql-parser`.

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hickory_proto::rr::RecordType;
use promql_parser::parser::{self, Expr, LabelModifier};

use crate::kubernetes::{fake_api, post};
use crate::util::{free_port, query, stub_upstream, tcp, udp};

const BIN: &str = env!("CARGO_BIN_EXE_clusterdns");

/// Labels Prometheus adds to every scraped series (target labels), and series it makes itself:
/// they are not in any /metrics.
const TARGET_LABELS: &[&str] = &[
    "job",
    "instance",
    "pod",
    "namespace",
    "service",
    "endpoint",
    "container",
];
const SYNTHETIC: &[&str] = &["up"];

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// What one expression reads: metric name → labels it matches on or groups by.
#[derive(Default, Debug)]
struct Reads {
    series: BTreeMap<String, BTreeSet<String>>,
}

impl Reads {
    /// Walks the AST; `by (…)` labels are charged to every selector under the aggregation.
    fn walk(&mut self, e: &Expr, grouping: &[String]) {
        match e {
            Expr::Aggregate(a) => {
                let mut g = grouping.to_vec();
                if let Some(LabelModifier::Include(l)) = &a.modifier {
                    g.extend(l.labels.iter().cloned());
                }
                self.walk(&a.expr, &g);
                if let Some(p) = &a.param {
                    self.walk(p, grouping);
                }
            }
            Expr::Unary(u) => self.walk(&u.expr, grouping),
            Expr::Binary(b) => {
                let mut g = grouping.to_vec();
                if let Some(m) = &b.modifier {
                    if let Some(LabelModifier::Include(l)) = &m.matching {
                        g.extend(l.labels.iter().cloned());
                    }
                }
                self.walk(&b.lhs, &g);
                self.walk(&b.rhs, &g);
            }
            Expr::Paren(p) => self.walk(&p.expr, grouping),
            Expr::Subquery(s) => self.walk(&s.expr, grouping),
            Expr::VectorSelector(v) => self.selector(v, grouping),
            Expr::MatrixSelector(m) => self.selector(&m.vs, grouping),
            Expr::Call(c) => {
                for a in &c.args.args {
                    self.walk(a, grouping);
                }
            }
            Expr::NumberLiteral(_) | Expr::StringLiteral(_) | Expr::Extension(_) => {}
        }
    }

    fn selector(&mut self, v: &parser::VectorSelector, grouping: &[String]) {
        let name = v
            .name
            .clone()
            .or_else(|| {
                v.matchers
                    .matchers
                    .iter()
                    .find(|m| m.name == "__name__")
                    .map(|m| m.value.clone())
            })
            .expect("every selector names its metric");
        let labels = self.series.entry(name).or_default();
        labels.extend(
            v.matchers
                .matchers
                .iter()
                .map(|m| m.name.clone())
                .filter(|n| n != "__name__"),
        );
        labels.extend(grouping.iter().cloned());
    }
}

/// Every expression of the dashboard (panel targets, and the variable's `label_values` query
/// as the selector it reads plus its label) and of the rule file, by where it is.
fn expressions() -> Vec<(String, String)> {
    let root = env!("CARGO_MANIFEST_DIR");
    let mut out = Vec::new();
    let dash: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(format!("{root}/deploy/monitoring/dashboard.json")).unwrap(),
    )
    .unwrap();
    for p in dash["panels"].as_array().unwrap() {
        for t in p["targets"].as_array().into_iter().flatten() {
            out.push((
                format!("dashboard panel {:?}", p["title"].as_str().unwrap()),
                t["expr"].as_str().unwrap().to_string(),
            ));
        }
    }
    for v in dash["templating"]["list"].as_array().unwrap() {
        let Some(q) = v["query"].as_str() else {
            continue;
        };
        if let Some(args) = q
            .strip_prefix("label_values(")
            .and_then(|r| r.strip_suffix(')'))
        {
            let (sel, label) = args.rsplit_once(',').unwrap();
            // As a PromQL expression: the selector, grouped by the label it lists.
            out.push((
                format!("dashboard variable {:?}", v["name"].as_str().unwrap()),
                format!("count by ({}) ({sel})", label.trim()),
            ));
        }
    }
    #[derive(serde::Deserialize)]
    struct Rule {
        alert: Option<String>,
        record: Option<String>,
        expr: String,
    }
    #[derive(serde::Deserialize)]
    struct Group {
        rules: Vec<Rule>,
    }
    #[derive(serde::Deserialize)]
    struct Spec {
        groups: Vec<Group>,
    }
    #[derive(serde::Deserialize)]
    struct PrometheusRule {
        spec: Spec,
    }
    let rules: PrometheusRule = serde_saphyr::from_str(
        &std::fs::read_to_string(format!("{root}/deploy/monitoring/prometheusrule.yaml")).unwrap(),
    )
    .unwrap();
    for g in rules.spec.groups {
        for r in g.rules {
            let name = r.alert.or(r.record).unwrap_or_default();
            out.push((format!("rule {name}"), r.expr));
        }
    }
    out
}

/// The exposition text as metric name → label names seen on it.
fn exported(text: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (name, rest) = match line.find(['{', ' ']) {
            Some(i) => (&line[..i], &line[i..]),
            None => (line, ""),
        };
        let labels = out.entry(name.to_string()).or_default();
        if let Some(body) = rest.strip_prefix('{').and_then(|r| r.split_once('}')) {
            for pair in body.0.split("\",") {
                if let Some((k, _)) = pair.split_once('=') {
                    labels.insert(k.trim_start_matches(',').to_string());
                }
            }
        }
    }
    out
}

/// docs/metrics.md's table: series → (type, labels).
fn documented() -> BTreeMap<String, (String, BTreeSet<String>)> {
    let text =
        std::fs::read_to_string(format!("{}/docs/metrics.md", env!("CARGO_MANIFEST_DIR"))).unwrap();
    let mut out = BTreeMap::new();
    for line in text.lines().filter(|l| l.starts_with("| `")) {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let (Some(name), Some(kind), Some(labels)) = (cells.get(1), cells.get(2), cells.get(3))
        else {
            continue;
        };
        if !["counter", "gauge", "histogram"].contains(kind) {
            continue;
        }
        let labels = labels
            .split(',')
            .map(str::trim)
            .filter(|l| !l.is_empty() && *l != "–")
            .map(str::to_string)
            .collect();
        out.insert(
            name.trim_matches('`').to_string(),
            (kind.to_string(), labels),
        );
    }
    assert!(out.len() > 30, "docs/metrics.md's table not found");
    out
}

async fn scrape(addr: &str) -> String {
    crate::util::http_get(addr.parse().unwrap(), "/metrics")
        .await
        .1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_and_rules_read_only_what_a_live_server_exports() {
    // Parse first: a broken expression fails without starting anything.
    let exprs = expressions();
    assert!(exprs.len() >= 30, "{} expressions", exprs.len());
    let mut reads = Reads::default();
    for (at, e) in &exprs {
        let ast = parser::parse(e).unwrap_or_else(|err| panic!("{at}: {e}\n{err}"));
        reads.walk(&ast, &[]);
    }

    let api = fake_api("tests/conformance/fixtures/watch.yaml");
    let stub = stub_upstream(&[("www.example.com.", [192, 0, 2, 53].into())]).await;
    let (dns, ready, metrics, dead) = (free_port(), free_port(), free_port(), free_port());
    let dir = tempfile::tempdir().unwrap();
    let corefile = dir.path().join("Corefile");
    std::fs::write(
        &corefile,
        format!(
            ".:{dns} {{
    bind 127.0.0.1
    errors
    ready 127.0.0.1:{ready}
    prometheus 127.0.0.1:{metrics}
    cache 30
    kubernetes cluster.local in-addr.arpa ip6.arpa {{
        endpoint {api}
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
    }}
    forward . {stub}
}}
broken.test:{dns} {{
    bind 127.0.0.1
    prometheus 127.0.0.1:{metrics}
    forward . 127.0.0.1:{dead} {{
        health_check 100ms
    }}
}}
",
            api = api.url,
            stub = stub.addr,
        ),
    )
    .unwrap();
    let _server = Server(
        Command::new(BIN)
            .arg("-conf")
            .arg(&corefile)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let ready_addr = format!("127.0.0.1:{ready}").parse().unwrap();
    let t = Instant::now();
    while tokio::net::TcpStream::connect(ready_addr).await.is_err()
        || crate::util::http_get(ready_addr, "/ready").await.0 != 200
    {
        assert!(t.elapsed() < Duration::from_secs(20), "not ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Traffic: cluster names over UDP and TCP, a miss, an external name twice (a cache hit),
    // and a zone whose only upstream is dead (SERVFAIL, failed health checks, then broken).
    let server: std::net::SocketAddr = format!("127.0.0.1:{dns}").parse().unwrap();
    for (name, t) in [
        ("web.ns1.svc.cluster.local.", RecordType::A),
        ("web.ns1.svc.cluster.local.", RecordType::AAAA),
        ("nope.ns1.svc.cluster.local.", RecordType::A),
        ("_pg._tcp.db.ns1.svc.cluster.local.", RecordType::SRV),
        ("www.example.com.", RecordType::A),
        ("www.example.com.", RecordType::A),
    ] {
        udp(server, &query(name, t, Some(1232))).await;
    }
    tcp(
        server,
        &query("web.ns1.svc.cluster.local.", RecordType::A, None),
    )
    .await;
    // An EndpointSlice change carrying the trigger-time annotation: DNS programming latency.
    let now = Command::new("date")
        .args(["-u", "+%Y-%m-%dT%H:%M:%SZ"])
        .output()
        .unwrap();
    let now = String::from_utf8_lossy(&now.stdout).trim().to_string();
    post(
        &api,
        "/_control/apply",
        &format!(
            "{{\"apiVersion\":\"discovery.k8s.io/v1\",\"kind\":\"EndpointSlice\",\"metadata\":{{\"name\":\"db-2\",\"namespace\":\"ns1\",\"labels\":{{\"kubernetes.io/service-name\":\"db\"}},\"annotations\":{{\"endpoints.kubernetes.io/last-change-trigger-time\":\"{now}\"}}}},\"addressType\":\"IPv4\",\"endpoints\":[{{\"addresses\":[\"10.244.0.13\"],\"hostname\":\"db-7\"}}]}}"
        ),
    );
    let maddr = format!("127.0.0.1:{metrics}");
    let t = Instant::now();
    let text = loop {
        udp(server, &query("x.broken.test.", RecordType::A, None)).await;
        let text = scrape(&maddr).await;
        let have = exported(&text);
        if [
            "coredns_forward_healthcheck_failures_total",
            "coredns_kubernetes_dns_programming_duration_seconds_bucket",
        ]
        .iter()
        .all(|n| have.contains_key(*n))
            && !text.contains("coredns_forward_healthcheck_broken_total 0")
        {
            break text;
        }
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "health check failures, broken or programming latency never counted:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let have = exported(&text);

    let mut missing = Vec::new();
    for (name, labels) in &reads.series {
        if SYNTHETIC.contains(&name.as_str()) {
            continue;
        }
        let Some(got) = have.get(name) else {
            missing.push(format!("series {name}"));
            continue;
        };
        for l in labels {
            if !TARGET_LABELS.contains(&l.as_str()) && !got.contains(l) {
                missing.push(format!("label {l} of {name} (has {got:?})"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "the dashboard or the rules read what /metrics lacks:\n{}\n\n{text}",
        missing.join("\n")
    );
    // docs/metrics.md lists every family scraped, with exactly its labels.
    let documented = documented();
    let mut undocumented = Vec::new();
    for (name, labels) in &have {
        let (base, mut labels) = (name.as_str(), labels.clone());
        let base = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| {
                base.strip_suffix(s)
                    .filter(|b| documented.get(*b).is_some_and(|(t, _)| t == "histogram"))
            })
            .unwrap_or(base);
        labels.remove("le");
        match documented.get(base) {
            Some((_, want)) if *want == labels => {}
            Some((_, want)) => {
                undocumented.push(format!("{base}: documented {want:?}, exported {labels:?}"))
            }
            None => undocumented.push(format!("{base} {labels:?} is not in docs/metrics.md")),
        }
    }
    assert!(undocumented.is_empty(), "{}", undocumented.join("\n"));
    // What the issue names explicitly, so a shrunken dashboard cannot pass by reading less.
    for name in [
        "process_resident_memory_bytes",
        "process_cpu_seconds_total",
        "process_open_fds",
        "process_max_fds",
        "coredns_dns_requests_total",
        "coredns_dns_responses_total",
        "coredns_dns_request_duration_seconds_bucket",
        "coredns_cache_entries",
        "coredns_cache_hits_total",
        "coredns_forward_request_duration_seconds_bucket",
        "coredns_forward_responses_total",
        "coredns_forward_healthcheck_failures_total",
        "coredns_forward_healthcheck_broken_total",
    ] {
        assert!(reads.series.contains_key(name), "nothing reads {name}");
    }
}
