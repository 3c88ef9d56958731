//! Fuzz target bodies, kept in the library so `cargo test` replays their seeds and the
//! `fuzz/` crate stays a thin wrapper (linkerd's `fuzz_logic` style). Each body checks
//! invariants, not just the absence of a panic:
//!
//! * [`query`] — bytes as a UDP datagram and as a TCP stream through the real listener code
//!   (header checks, decoding, the dispatcher, the chains) of a server built from a rich
//!   Corefile: every reply decodes, keeps the query's id, opcode and question, fits the
//!   client's UDP size, and has an rcode that query can get; no panic is recovered.
//! * [`corefile`] — bytes as a Corefile: load, then build every plugin.
//! * [`kube`] — bytes as a Service / EndpointSlice / Pod / Namespace (JSON) applied to a store:
//!   the index updated from the previous one answers exactly as one built afresh.
//! * [`roundtrip`] — bytes as a name and type asked of the kubernetes plugin: its answer
//!   encodes and decodes to itself, and the server sends exactly that answer.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, OnceLock};

use arc_swap::ArcSwap;
use futures_util::FutureExt;
use hickory_proto::op::{Message, Query};
use hickory_proto::rr::{DNSClass, Name, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::kube::model::{self, Key};
use crate::kube::store::{Change, Kind, Obj};
use crate::kube::{Objects, Store};
use crate::plugins::kubernetes::{Index, Kubernetes, KubernetesConfig};
use crate::plugins::prometheus::Metrics;
use crate::plugins::{Chain, PluginConfig, Proto, Request};
use crate::server::Running;

/// The demo cluster every kubernetes fixture serves.
const SNAPSHOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/demo/cluster.yaml");

/// The `query` target's Corefile: kubeadm's (health, ready, kubernetes, prometheus, forward,
/// cache, loop, reload, loadbalance) plus rewrite with regexes, template, hosts, autopath,
/// dns64, k8s_external and any. `{SNAPSHOT}` and `{UPSTREAM}` are filled in.
pub const QUERY_COREFILE: &str = r#".:0 {
    bind 127.0.0.1
    errors
    log
    health 127.0.0.1:0 {
        lameduck 1s
    }
    ready 127.0.0.1:0
    any
    rewrite name regex (.*)\.svc\.k8s\.test\.$ {1}.svc.cluster.local. answer auto
    rewrite name exact alias.example.org. www.example.org.
    rewrite name suffix .corp.test. .svc.cluster.local. answer auto
    template IN A example.org {
        match "^(?P<h>[a-z0-9-]+)\.example\.org\.$"
        answer "{{ .Name }} 30 IN A 192.0.2.7"
        fallthrough
    }
    template ANY ANY internal.cloudapp.net {
        match "^(?:[^.]+\.){4,}internal\.cloudapp\.net\.$"
        rcode NXDOMAIN
        fallthrough
    }
    hosts {
        192.0.2.33 v4only.example.org
        2001:db8::1 dual.example.org
        192.0.2.34 dual.example.org
        fallthrough
    }
    autopath @kubernetes
    dns64 {
        allow_ipv4
    }
    k8s_external example.com
    kubernetes cluster.local in-addr.arpa ip6.arpa {
        snapshot {SNAPSHOT}
        pods verified
        endpoint_pod_names
        fallthrough in-addr.arpa ip6.arpa
        ttl 30
    }
    prometheus 127.0.0.1:0
    forward . {UPSTREAM} {
        max_concurrent 1000
    }
    cache 30 {
        disable success cluster.local
        disable denial cluster.local
    }
    loop
    reload
    loadbalance
}
"#;

/// An upstream on 127.0.0.1 that answers at once, as a recursor: `www.example.net` and
/// `*.example.com` have an A record, everything else is NXDOMAIN. UDP and TCP, on threads of
/// its own.
fn stub_upstream() -> SocketAddr {
    fn answer(raw: &[u8]) -> Option<Vec<u8>> {
        use hickory_proto::op::{MessageType, ResponseCode};
        use hickory_proto::rr::{RData, Record};
        let q = Message::from_vec(raw).ok()?;
        let question = q.queries.first()?.clone();
        let mut r = Message::new(q.metadata.id, MessageType::Response, q.metadata.op_code);
        r.metadata.recursion_desired = q.metadata.recursion_desired;
        r.metadata.recursion_available = true;
        let name = question.name().to_ascii().to_ascii_lowercase();
        if question.query_type() == RecordType::A
            && (name == "www.example.net." || name.ends_with(".example.com."))
        {
            r.add_answer(Record::from_rdata(
                question.name().clone(),
                60,
                RData::A("192.0.2.80".parse().expect("literal")),
            ));
        } else if name != "www.example.net." && !name.ends_with(".example.com.") {
            r.metadata.response_code = ResponseCode::NXDomain;
        }
        r.add_query(question);
        r.to_vec().ok()
    }
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").expect("stub udp");
    let addr = udp.local_addr().expect("stub addr");
    let tcp = std::net::TcpListener::bind(addr).expect("stub tcp");
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 65_535];
        while let Ok((n, src)) = udp.recv_from(&mut buf) {
            if let Some(out) = answer(&buf[..n]) {
                let _ = udp.send_to(&out, src);
            }
        }
    });
    std::thread::spawn(move || {
        for conn in tcp.incoming().flatten() {
            std::thread::spawn(move || {
                use std::io::{Read, Write};
                let mut conn = conn;
                loop {
                    let mut len = [0u8; 2];
                    if conn.read_exact(&mut len).is_err() {
                        return;
                    }
                    let mut msg = vec![0u8; usize::from(u16::from_be_bytes(len))];
                    if conn.read_exact(&mut msg).is_err() {
                        return;
                    }
                    let Some(out) = answer(&msg) else { return };
                    let mut framed = (out.len() as u16).to_be_bytes().to_vec();
                    framed.extend_from_slice(&out);
                    if conn.write_all(&framed).is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

/// A server started from `corefile` on its own runtime (DNS on 127.0.0.1, never asked over a
/// socket here: the targets call its listener code directly).
struct Served {
    rt: tokio::runtime::Runtime,
    running: Running,
    metrics: Arc<Metrics>,
}

fn serve(corefile: &str) -> Served {
    // One thread: the target's own. What the server spawns runs while a target waits on it.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let cfg = crate::config::load("Corefile", corefile, 53).expect("fixture Corefile loads");
    let metrics = Arc::new(Metrics::new(prometheus::Registry::new()).expect("metrics"));
    let built = crate::server::build(&cfg, &metrics).expect("fixture Corefile builds");
    let readiness = Arc::new(crate::plugins::ready::Readiness::default());
    let running = rt
        .block_on(crate::server::start(built, metrics.clone(), readiness))
        .expect("fixture server starts");
    Served {
        rt,
        running,
        metrics,
    }
}

fn query_server() -> &'static Served {
    static SERVED: OnceLock<Served> = OnceLock::new();
    SERVED.get_or_init(|| {
        let upstream = stub_upstream();
        serve(
            &QUERY_COREFILE
                .replace("{SNAPSHOT}", SNAPSHOT)
                .replace("{UPSTREAM}", &upstream.to_string()),
        )
    })
}

/// What a client may get back for a message.
#[derive(Debug, PartialEq, Eq)]
enum Expect {
    /// Nothing: not a query header, or a response.
    Drop,
    /// Exactly this rcode (header checks, undecodable, EDNS version).
    Rcode(u16),
    /// An answer from the chains: NOERROR, NXDOMAIN, SERVFAIL or REFUSED.
    Answer,
}

/// What a client may get back for `raw`: CoreDNS's (miekg/dns's) rules, RFC 6891's BADVERS.
fn expect(raw: &[u8]) -> (Expect, Option<Message>) {
    if raw.len() < 12 || raw[2] & 0x80 != 0 {
        return (Expect::Drop, None);
    }
    let opcode = (raw[2] >> 3) & 0x0f;
    if opcode != 0 && opcode != 4 {
        return (Expect::Rcode(4), None);
    }
    let count = |i: usize| u16::from_be_bytes([raw[i], raw[i + 1]]);
    if count(4) != 1 || count(6) > 1 || count(8) > 1 || count(10) > 2 {
        return (Expect::Rcode(1), None);
    }
    let src: SocketAddr = "192.0.2.1:5353".parse().expect("literal");
    if hickory_server::server::Request::from_bytes(
        raw.to_vec(),
        src,
        hickory_server::net::xfer::Protocol::Udp,
    )
    .is_err()
    {
        return (Expect::Rcode(1), None);
    }
    // What the server decoded, the way a client reads it back.
    let Ok(msg) = Message::from_vec(raw) else {
        return (Expect::Rcode(1), None);
    };
    if opcode == 4 {
        return (Expect::Rcode(4), Some(msg));
    }
    if msg.edns.as_ref().is_some_and(|e| e.version() != 0) {
        return (Expect::Rcode(16), Some(msg));
    }
    (Expect::Answer, Some(msg))
}

/// Checks one reply against the query it answers.
fn check_reply(raw: &[u8], reply: Option<&[u8]>, tcp: bool) {
    let (want, query) = expect(raw);
    let Some(reply) = reply else {
        assert_eq!(want, Expect::Drop, "no reply to a message that needs one");
        return;
    };
    assert_ne!(
        want,
        Expect::Drop,
        "a reply to a message that must be dropped"
    );
    let m = Message::from_vec(reply).expect("every reply decodes");
    assert_eq!(&reply[..2], &raw[..2], "the reply keeps the query's id");
    assert_eq!(
        m.metadata.message_type,
        hickory_proto::op::MessageType::Response
    );
    assert_eq!((reply[2] >> 3) & 0x0f, (raw[2] >> 3) & 0x0f, "opcode kept");
    let rcode = u16::from(m.metadata.response_code);
    match want {
        Expect::Rcode(r) => assert_eq!(rcode, r, "rcode"),
        Expect::Answer => assert!(
            [0, 2, 3, 5].contains(&rcode),
            "rcode {rcode} for a well-formed query"
        ),
        Expect::Drop => unreachable!(),
    }
    assert!(m.queries.len() <= 1, "at most the one question");
    if let (Some(q), Some(query)) = (m.queries.first(), &query) {
        let asked = &query.queries[0];
        assert_eq!(
            q.name().to_ascii(),
            asked.name().to_ascii(),
            "question kept"
        );
        assert_eq!(
            (q.query_type(), q.query_class()),
            (asked.query_type(), asked.query_class())
        );
    }
    if tcp {
        assert!(!m.metadata.truncation, "TC over TCP");
    } else {
        let size = query
            .as_ref()
            .and_then(|q| q.edns.as_ref())
            .map_or(512, |e| usize::from(e.max_payload()).max(512));
        assert!(reply.len() <= size, "{} > the client's {size}", reply.len());
    }
}

/// The length-prefixed messages at the start of a TCP stream, as the server reads them.
fn frames(mut stream: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    while stream.len() >= 2 {
        let len = usize::from(u16::from_be_bytes([stream[0], stream[1]]));
        let Some(msg) = stream.get(2..2 + len) else {
            break;
        };
        out.push(msg);
        stream = &stream[2 + len..];
    }
    out
}

/// Bytes as a UDP datagram and as a TCP stream, through the listener code of a server with
/// kubeadm's Corefile and the plugins real clusters add; every reply is checked.
pub fn query(data: &[u8]) {
    let s = query_server();
    let src: SocketAddr = "192.0.2.1:5353".parse().expect("literal");
    let reply = s.rt.block_on(s.running.answer(data.to_vec(), src));
    check_reply(data, reply.as_deref(), false);

    // The same bytes as what a client writes on a TCP connection, then closes.
    let (mut client, server) = tokio::io::duplex(64 * 1024);
    let replies = s.rt.block_on(async {
        let serve = s.running.serve_stream(server, src);
        let talk = async {
            let _ = client.write_all(data).await;
            let _ = client.shutdown().await;
            let mut out = Vec::new();
            let _ = client.read_to_end(&mut out).await;
            out
        };
        tokio::join!(serve, talk).1
    });
    let mut replies: &[u8] = &replies;
    for msg in frames(data) {
        let (want, _) = expect(msg);
        if want == Expect::Drop {
            continue;
        }
        assert!(replies.len() >= 2, "a TCP query went unanswered");
        let len = usize::from(u16::from_be_bytes([replies[0], replies[1]]));
        let reply = &replies[2..2 + len];
        check_reply(msg, Some(reply), true);
        replies = &replies[2 + len..];
    }
    assert!(replies.is_empty(), "more TCP replies than queries");
    assert_eq!(s.metrics.panics.get(), 0, "a panic was recovered");
}

/// Bytes as a Corefile: load it and build every block's plugins (no sockets); must return.
pub fn corefile(data: &[u8]) {
    // One registry for many inputs (making one is most of the cost of a small input); a new
    // one now and then, as label values pile up.
    static METRICS: Mutex<Option<(Arc<Metrics>, u32)>> = Mutex::new(None);
    let text = String::from_utf8_lossy(data);
    let Ok(cfg) = crate::config::load("Corefile", &text, 53) else {
        return;
    };
    let metrics = {
        let mut m = METRICS.lock().unwrap_or_else(|e| e.into_inner());
        if m.as_ref().is_none_or(|(_, uses)| *uses >= 10_000) {
            let fresh = Metrics::new(prometheus::Registry::new()).expect("metrics");
            *m = Some((Arc::new(fresh), 0));
        }
        let (metrics, uses) = m.as_mut().expect("just set");
        *uses += 1;
        metrics.clone()
    };
    let _ = crate::server::build(&cfg, &metrics);
}

/// Any bytes as a zone file for `example.org.`: parse, build the zone, look a few names up;
/// must return, never panic.
pub fn zonefile(data: &[u8]) {
    use hickory_proto::rr::{Name, RecordType};
    let text = String::from_utf8_lossy(data);
    let origin = Name::from_ascii("example.org.").expect("literal name");
    let path = std::path::Path::new("/nonexistent/fuzz.zone");
    let Ok(entries) = crate::zonefile::parse_str(&text, path, &origin) else {
        return;
    };
    let Ok(zone) = crate::plugins::file::Zone::from_entries(path, &origin, entries) else {
        return;
    };
    for name in [
        "example.org.",
        "www.example.org.",
        "a.b.example.org.",
        "*.example.org.",
    ] {
        let name = Name::from_ascii(name).expect("literal name");
        for t in [
            RecordType::A,
            RecordType::CNAME,
            RecordType::NS,
            RecordType::DS,
        ] {
            let _ = zone.lookup(&name, t, true);
        }
    }
}

/// The kubernetes configuration of the `kube` and `roundtrip` targets.
fn kube_config() -> Arc<KubernetesConfig> {
    static CFG: OnceLock<Arc<KubernetesConfig>> = OnceLock::new();
    CFG.get_or_init(|| {
        let text = format!(
            ".:53 {{\n kubernetes cluster.local in-addr.arpa ip6.arpa {{\n  snapshot {SNAPSHOT}\n  pods verified\n  endpoint_pod_names\n  fallthrough in-addr.arpa ip6.arpa\n }}\n}}\n"
        );
        let cfg = crate::config::load("Corefile", &text, 53).expect("kubernetes fixture");
        cfg.blocks[0]
            .plugins
            .iter()
            .find_map(|p| match p {
                PluginConfig::Kubernetes(k) => Some(Arc::new((**k).clone())),
                _ => None,
            })
            .expect("kubernetes")
    })
    .clone()
}

/// The addresses the kubernetes fixtures serve on (the apex NS record and its glue).
fn local_ips() -> Vec<IpAddr> {
    vec![
        "192.0.2.53".parse().expect("literal"),
        "2001:db8::53".parse().expect("literal"),
    ]
}

/// The kubernetes plugin over `index` (serving on `local`), asked `name` `qtype` (no sockets,
/// no runtime: the plugin never waits).
fn ask(index: &Index, local: Vec<IpAddr>, name: &Name, qtype: RecordType) -> Option<Message> {
    let handler = Kubernetes::new(
        kube_config(),
        Arc::new(ArcSwap::from_pointee(index.clone())),
        local,
    );
    let chain = Chain::new(vec![Arc::new(handler)]);
    let mut query = Query::query(name.clone(), qtype);
    query.set_query_class(DNSClass::IN);
    let req = Request::with_query(
        query,
        "192.0.2.1:5353".parse().expect("literal"),
        Proto::Udp,
    );
    let resp = chain
        .run(&req)
        .now_or_never()
        .expect("the kubernetes plugin answers without waiting");
    resp.ok().map(|r| r.msg)
}

/// Every name and address an object answers under (or near), to ask of the index.
fn names_of(obj: &Obj) -> (Vec<String>, Vec<IpAddr>) {
    let (mut names, mut ips) = (Vec::new(), Vec::new());
    match obj {
        Obj::Service((ns, name), s) => {
            names.push(format!("{name}.{ns}.svc.cluster.local."));
            names.push(format!("*.{name}.{ns}.svc.cluster.local."));
            for p in &s.ports {
                names.push(format!(
                    "_{}._{}.{name}.{ns}.svc.cluster.local.",
                    p.name,
                    p.protocol.to_ascii_lowercase()
                ));
            }
            names.push(format!("{name}.{ns}.example.com."));
            if let model::ServiceKind::ClusterIp(v) = &s.kind {
                ips.extend(v.iter().copied());
            }
            ips.extend(s.external_ips.iter().copied());
        }
        Obj::Slice((ns, _), e) => {
            names.push(format!("{}.{ns}.svc.cluster.local.", e.service));
            for ep in &e.endpoints {
                if let Some(h) = &ep.hostname {
                    names.push(format!("{h}.{}.{ns}.svc.cluster.local.", e.service));
                }
                ips.push(ep.ip);
            }
        }
        Obj::Namespace((_, ns)) => names.push(format!("{ns}.svc.cluster.local.")),
        Obj::Pod((ns, _), p) => {
            if let Ok(ip) = p.ip.parse::<IpAddr>() {
                let dashed = ip.to_string().replace(['.', ':'], "-");
                names.push(format!("{dashed}.{ns}.pod.cluster.local."));
                ips.push(ip);
            }
        }
        // Multicluster objects (`multicluster` only) are not among the kinds this target makes.
        Obj::Import(..) | Obj::McSlice(..) => {}
    }
    (names, ips)
}

fn reverse(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            format!("{}.{}.{}.{}.in-addr.arpa.", o[3], o[2], o[1], o[0])
        }
        IpAddr::V6(v6) => {
            let mut s = String::new();
            for b in v6.octets().iter().rev() {
                s.push_str(&format!("{:x}.{:x}.", b & 0xf, b >> 4));
            }
            s + "ip6.arpa."
        }
    }
}

struct KubeState {
    store: Store,
    index: Index,
}

const KINDS: [Kind; 4] = [
    Kind::Service,
    Kind::EndpointSlice,
    Kind::Namespace,
    Kind::Pod,
];

fn fresh_state() -> KubeState {
    let mut store = Store::new(&KINDS, None);
    let spec = &kube_config().watch;
    for c in crate::kube::snapshot::read(std::path::Path::new(SNAPSHOT), spec, &KINDS)
        .expect("demo snapshot")
    {
        store.apply(c);
    }
    let index = Index::build(store.objects());
    KubeState { store, index }
}

/// Objects held before the `kube` target starts from the demo cluster again.
const KUBE_MAX_OBJECTS: usize = 300;

fn count(o: &Objects) -> usize {
    o.services.len() + o.slices.len() + o.namespaces.len() + o.pods.len()
}

/// The first byte picks the kind (low two bits: Service, EndpointSlice, Namespace, Pod) and
/// how the object arrives (bit 2: deleted; bit 3: as the whole list of its kind, a relist);
/// the rest is the object as JSON. It goes through the trimming the watches use into a store
/// that holds the demo cluster and everything earlier inputs added; the index updated from the
/// previous version must answer every name and address of the object exactly as an index
/// built afresh from the same objects.
pub fn kube(data: &[u8]) {
    static STATE: Mutex<Option<KubeState>> = Mutex::new(None);
    let Some((&op, json)) = data.split_first() else {
        return;
    };
    use k8s_openapi::api::core::v1 as core;
    use k8s_openapi::api::discovery::v1 as discovery;
    let key = |ns: &Arc<str>, name: &Arc<str>| -> Key { (ns.clone(), name.clone()) };
    let obj = match op & 3 {
        0 => serde_json::from_slice::<core::Service>(json)
            .ok()
            .and_then(|s| model::service(&s))
            .map(|s| Obj::Service(key(&s.namespace, &s.name), Arc::new(s))),
        1 => serde_json::from_slice::<discovery::EndpointSlice>(json)
            .ok()
            .and_then(|e| {
                model::endpoint_slice(
                    &e,
                    model::SliceOpts {
                        pod_names: true,
                        zones: true,
                    },
                )
            })
            .map(|e| Obj::Slice(key(&e.namespace, &e.name), Arc::new(e))),
        2 => serde_json::from_slice::<core::Namespace>(json)
            .ok()
            .and_then(|n| model::namespace(&n))
            .map(|n| Obj::Namespace((Arc::from(""), n))),
        _ => serde_json::from_slice::<core::Pod>(json)
            .ok()
            .and_then(|p| model::pod(&p))
            .map(|p| Obj::Pod(key(&p.namespace, &p.name), Arc::new(p))),
    };
    let Some(obj) = obj else {
        return;
    };
    let mut guard = STATE.lock().unwrap_or_else(|e| e.into_inner());
    let state = guard.get_or_insert_with(fresh_state);
    if count(state.store.objects()) > KUBE_MAX_OBJECTS {
        *state = fresh_state();
    }
    let kind = KINDS[usize::from(op & 3)];
    if op & 8 != 0 {
        // A relist of this kind that holds only this object.
        state.store.apply(Change::Init(kind));
        state.store.apply(Change::InitApply(obj.clone()));
        state.store.apply(Change::InitDone(kind));
    } else if op & 4 != 0 {
        state.store.apply(Change::Delete(obj.clone()));
    } else {
        state.store.apply(Change::Apply(obj.clone()));
    }
    let updated = state.index.update(state.store.objects());
    let afresh = Index::build(state.store.objects());
    let (names, ips) = names_of(&obj);
    let names = names.into_iter().chain(ips.into_iter().map(reverse));
    for name in names {
        let Ok(name) = Name::from_ascii(&name) else {
            continue;
        };
        for qtype in [
            RecordType::A,
            RecordType::AAAA,
            RecordType::SRV,
            RecordType::PTR,
        ] {
            let a = ask(&updated, local_ips(), &name, qtype).map(|m| m.to_vec().expect("encodes"));
            let b = ask(&afresh, local_ips(), &name, qtype).map(|m| m.to_vec().expect("encodes"));
            assert_eq!(
                a, b,
                "{name} {qtype}: the updated index answers differently"
            );
        }
    }
    state.index = updated;
}

/// The demo cluster's index and a server that serves only it.
struct Roundtrip {
    index: Index,
    served: Served,
}

fn roundtrip_fixture() -> &'static Roundtrip {
    static FIXTURE: OnceLock<Roundtrip> = OnceLock::new();
    FIXTURE.get_or_init(|| Roundtrip {
        index: fresh_state().index,
        served: serve(&format!(
            ".:0 {{\n bind 127.0.0.1\n kubernetes cluster.local in-addr.arpa ip6.arpa {{\n  snapshot {SNAPSHOT}\n  pods verified\n  endpoint_pod_names\n  fallthrough in-addr.arpa ip6.arpa\n }}\n}}\n"
        )),
    })
}

/// The record types the `roundtrip` target asks for (its last input byte picks one).
const QTYPES: [RecordType; 12] = [
    RecordType::A,
    RecordType::AAAA,
    RecordType::SRV,
    RecordType::PTR,
    RecordType::CNAME,
    RecordType::TXT,
    RecordType::NS,
    RecordType::SOA,
    RecordType::ANY,
    RecordType::MX,
    RecordType::HTTPS,
    RecordType::AXFR,
];

/// The input is a name (labels separated by `.`, any bytes) and, in its last byte, a type.
/// The kubernetes plugin's answer must encode and decode to exactly its records, and the
/// server (dispatcher, over TCP) must send exactly those records.
pub fn roundtrip(data: &[u8]) {
    let Some((&t, name)) = data.split_last() else {
        return;
    };
    let qtype = QTYPES[usize::from(t) % QTYPES.len()];
    let labels: Vec<&[u8]> = name
        .split(|b| *b == b'.')
        .filter(|l| !l.is_empty())
        .collect();
    let Ok(mut name) = Name::from_labels(labels) else {
        return;
    };
    name.set_fqdn(true);
    let fx = roundtrip_fixture();
    let Some(msg) = ask(&fx.index, local_ips(), &name, qtype) else {
        return;
    };
    let wire = msg.to_vec().expect("the plugin's answer encodes");
    let back = Message::from_vec(&wire).expect("and decodes");
    assert_eq!(
        records(&back, false),
        records(&msg, false),
        "{name} {qtype}: decodes to what was encoded"
    );
    assert_eq!(back.answers, msg.answers);
    assert_eq!(back.authorities, msg.authorities);
    assert_eq!(back.additionals, msg.additionals);

    // The same question through the server, over TCP (no truncation).
    let mut q = Message::query();
    q.metadata.id = 0x4242;
    q.metadata.recursion_desired = true;
    let mut query = Query::query(name.clone(), qtype);
    query.set_query_class(DNSClass::IN);
    q.add_query(query);
    let Ok(bytes) = q.to_vec() else {
        return;
    };
    let mut framed = (bytes.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&bytes);
    let s = &fx.served;
    let (mut client, server) = tokio::io::duplex(64 * 1024);
    let src: SocketAddr = "192.0.2.1:5353".parse().expect("literal");
    let out = s.rt.block_on(async {
        let talk = async {
            let _ = client.write_all(&framed).await;
            let _ = client.shutdown().await;
            let mut out = Vec::new();
            let _ = client.read_to_end(&mut out).await;
            out
        };
        tokio::join!(s.running.serve_stream(server, src), talk).1
    });
    let sent = Message::from_vec(out.get(2..).expect("a TCP reply")).expect("the reply decodes");
    // An ExternalName's target outside the cluster zones is looked up through the server,
    // which the plugin alone cannot do: nothing to compare then.
    let outside = sent.answers.iter().any(|r| match &r.data {
        hickory_proto::rr::RData::CNAME(c) => {
            let t = c.0.to_ascii().to_ascii_lowercase();
            !kube_config()
                .zones
                .iter()
                .any(|z| crate::plugins::is_subdomain(z, &t))
        }
        _ => false,
    });
    if outside {
        return;
    }
    // The server serves on 127.0.0.1 (no apex NS address); its index has its own SOA serial.
    let Some(direct) = ask(&fx.index, Vec::new(), &name, qtype) else {
        return;
    };
    assert_eq!(
        sent.metadata.response_code, direct.metadata.response_code,
        "{name} {qtype}"
    );
    assert_eq!(
        records(&sent, true),
        records(&direct, true),
        "{name} {qtype}: the server sent other records"
    );
}

/// Every record of `m`'s sections as text (owner name as sent), SOA serials as 0 if `serial0`.
fn records(m: &Message, serial0: bool) -> Vec<String> {
    m.answers
        .iter()
        .chain(&m.authorities)
        .chain(&m.additionals)
        .map(|r| {
            let data = match &r.data {
                hickory_proto::rr::RData::SOA(soa) if serial0 => {
                    let mut soa = soa.clone();
                    soa.serial = 0;
                    soa.to_string()
                }
                d => d.to_string(),
            };
            format!(
                "{} {} {:?} {} {data}",
                r.name.to_ascii(),
                r.ttl,
                r.dns_class,
                r.record_type()
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    fn seeds(target: &str) -> Vec<Vec<u8>> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fuzz/seeds")
            .join(target);
        let mut out: Vec<Vec<u8>> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| std::fs::read(e.unwrap().path()).unwrap())
            .collect();
        out.sort();
        assert!(!out.is_empty(), "no seeds in {}", dir.display());
        out
    }

    #[test]
    fn query_seeds_keep_every_invariant() {
        for s in seeds("query") {
            super::query(&s);
        }
    }

    #[test]
    fn corefile_seeds_and_the_real_corefiles_load_and_build() {
        let shared = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/corefiles");
        let mut all = seeds("corefile");
        for e in std::fs::read_dir(shared).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "Corefile") {
                all.push(std::fs::read(p).unwrap());
            }
        }
        for s in all {
            super::corefile(&s);
        }
    }

    #[test]
    fn kube_seeds_keep_the_index_consistent() {
        for s in seeds("kube") {
            super::kube(&s);
        }
    }

    #[test]
    fn zonefile_seeds_do_not_panic() {
        for z in [
            &b""[..],
            b"@ IN SOA ns hm 1 2 3 4 5\nx IN TXT \"end",
            b"@ IN SOA ns hm 1 2 3 4 5\n* IN CNAME *\nwww IN DNAME www\n",
            b"$INCLUDE /etc/passwd\n",
            b"@ IN SOA ns hm 1 2 3 4 5\na IN CNAME b\nb IN CNAME a\nsub NS ns.sub\n",
            b"( ( ( \"",
        ] {
            super::zonefile(z);
        }
        for z in seeds("zonefile") {
            super::zonefile(&z);
        }
    }

    #[test]
    fn roundtrip_seeds_decode_to_what_was_encoded() {
        for s in seeds("roundtrip") {
            super::roundtrip(&s);
        }
    }
}
