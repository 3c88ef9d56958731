//! Zone transfers of the cluster zone: `dig AXFR`/`IXFR` against the server, a zone larger
//! than one message, a client that leaves mid-transfer, the refusals, and Debian's knotd as a
//! real secondary that follows our NOTIFYs. `dig` runs as a blocking child process, so the
//! tests run on two runtime threads: the server's TCP tasks keep going meanwhile.

use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use hickory_proto::op::{OpCode, ResponseCode};
use hickory_proto::rr::RecordType;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::daemons::{Daemon, require};
use crate::kubernetes::{fake_api, post};
use crate::util::{free_port, query, start, tcp, udp};

/// `dig` with `args` against `addr`, its output.
pub(crate) fn dig(addr: SocketAddr, args: &[&str]) -> String {
    let out = Command::new(require("dig", "dnsutils"))
        .arg(format!("@{}", addr.ip()))
        .args(["-p", &addr.port().to_string(), "+time=5", "+tries=1"])
        .args(args)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// The records of a `dig +noall +answer` output (or of a zone file of absolute
/// `NAME TTL IN TYPE RDATA` lines), one `NAME TTL TYPE RDATA` string each.
pub(crate) fn records(text: &str) -> Vec<String> {
    text.lines()
        .filter(|l| !l.starts_with(';') && !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            // NAME TTL IN TYPE RDATA...
            format!("{} {} {} {}", f[0], f[1], f[3], f[4..].join(" "))
        })
        .collect()
}

fn snapshot_block(port: u16, file: &str, transfer: &str) -> String {
    format!(
        "cluster.local:{port} {{\n bind 127.0.0.1\n kubernetes {{\n  snapshot {file}\n }}\n transfer {{\n  {transfer}\n }}\n}}\n"
    )
}

/// The demo cluster as CoreDNS's xfr.go transfers it: SOA, NS, then per Service (sorted by
/// name) its addresses, an SRV per port at its name and one per named port, headless services
/// per ready endpoint (weight 100 / addresses of the slice), ExternalName a CNAME; the SOA
/// again. The server listens on loopback only, so the NS has no glue.
const DEMO_ZONE: &[&str] = &[
    "cluster.local. 5 NS ns.dns.cluster.local.",
    "db.shop.svc.cluster.local. 5 A 10.244.1.10",
    "db-0.db.shop.svc.cluster.local. 5 A 10.244.1.10",
    "_postgres._tcp.db.shop.svc.cluster.local. 5 SRV 0 50 5432 db-0.db.shop.svc.cluster.local.",
    "db.shop.svc.cluster.local. 5 A 10.244.2.11",
    "db-1.db.shop.svc.cluster.local. 5 A 10.244.2.11",
    "_postgres._tcp.db.shop.svc.cluster.local. 5 SRV 0 50 5432 db-1.db.shop.svc.cluster.local.",
    "kube-dns.kube-system.svc.cluster.local. 5 A 10.96.0.10",
    "kube-dns.kube-system.svc.cluster.local. 5 SRV 0 100 53 kube-dns.kube-system.svc.cluster.local.",
    "_dns._udp.kube-dns.kube-system.svc.cluster.local. 5 SRV 0 100 53 kube-dns.kube-system.svc.cluster.local.",
    "kube-dns.kube-system.svc.cluster.local. 5 SRV 0 100 53 kube-dns.kube-system.svc.cluster.local.",
    "_dns-tcp._tcp.kube-dns.kube-system.svc.cluster.local. 5 SRV 0 100 53 kube-dns.kube-system.svc.cluster.local.",
    "kube-dns.kube-system.svc.cluster.local. 5 SRV 0 100 9153 kube-dns.kube-system.svc.cluster.local.",
    "_metrics._tcp.kube-dns.kube-system.svc.cluster.local. 5 SRV 0 100 9153 kube-dns.kube-system.svc.cluster.local.",
    "kubernetes.default.svc.cluster.local. 5 A 10.96.0.1",
    "kubernetes.default.svc.cluster.local. 5 SRV 0 100 443 kubernetes.default.svc.cluster.local.",
    "_https._tcp.kubernetes.default.svc.cluster.local. 5 SRV 0 100 443 kubernetes.default.svc.cluster.local.",
    "payments.shop.svc.cluster.local. 5 CNAME payments.example.com.",
    "web.shop.svc.cluster.local. 5 A 10.96.100.10",
    "web.shop.svc.cluster.local. 5 AAAA fd00:10:96::100",
    "web.shop.svc.cluster.local. 5 SRV 0 100 80 web.shop.svc.cluster.local.",
    "_http._tcp.web.shop.svc.cluster.local. 5 SRV 0 100 80 web.shop.svc.cluster.local.",
];

/// A NOTIFY sent to us gets NOTIMP, `transfer` or not: clusterdns is never a secondary (there is
/// no `secondary` plugin), and `transfer` only sends NOTIFYs, from a socket of its own. The
/// zone keeps transferring.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notify_sent_to_us_gets_notimp_and_the_zone_still_transfers() {
    let root = env!("CARGO_MANIFEST_DIR");
    let s = start(
        &snapshot_block(0, &format!("{root}/deploy/demo/cluster.yaml"), "to *"),
        vec![],
    )
    .await;
    let dns = s.dns();
    // RFC 1996 3.7: opcode NOTIFY, AA, the zone's SOA as the question.
    let mut notify = query("cluster.local.", RecordType::SOA, None);
    notify.metadata.op_code = OpCode::Notify;
    notify.metadata.authoritative = true;
    notify.metadata.recursion_desired = false;
    for (how, r) in [
        ("UDP", udp(dns, &notify).await),
        ("TCP", tcp(dns, &notify).await),
    ] {
        assert_eq!(r.metadata.response_code, ResponseCode::NotImp, "{how}");
        assert_eq!(r.metadata.id, notify.metadata.id, "{how}");
        assert_eq!(r.metadata.op_code, OpCode::Notify, "{how}");
    }
    let axfr = records(&dig(dns, &["AXFR", "cluster.local", "+noall", "+answer"]));
    assert_eq!(axfr.len(), DEMO_ZONE.len() + 2, "{axfr:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dig_axfr_and_ixfr_of_the_demo_cluster() {
    let root = env!("CARGO_MANIFEST_DIR");
    let s = start(
        &snapshot_block(0, &format!("{root}/deploy/demo/cluster.yaml"), "to *"),
        vec![],
    )
    .await;
    let dns = s.dns();
    let axfr = records(&dig(dns, &["AXFR", "cluster.local", "+noall", "+answer"]));
    let (first, last) = (axfr.first().unwrap(), axfr.last().unwrap());
    assert!(
        first.starts_with("cluster.local. 5 SOA ns.dns.cluster.local. hostmaster.cluster.local. "),
        "{axfr:#?}"
    );
    assert!(first.ends_with(" 7200 1800 86400 5"), "{first}");
    assert_eq!(first, last, "the transfer ends with the same SOA");
    let mut body: Vec<&str> = axfr[1..axfr.len() - 1].iter().map(String::as_str).collect();
    let mut want = DEMO_ZONE.to_vec();
    body.sort_unstable();
    want.sort_unstable();
    assert_eq!(body, want);

    // IXFR from the current serial: the SOA alone; from an older one: the whole zone.
    let serial: u32 = first.split_whitespace().nth(5).unwrap().parse().unwrap();
    let current = records(&dig(
        dns,
        &[
            &format!("IXFR={serial}"),
            "cluster.local",
            "+noall",
            "+answer",
        ],
    ));
    assert_eq!(current, std::slice::from_ref(first));
    let older = records(&dig(
        dns,
        &[
            &format!("IXFR={}", serial - 1),
            "cluster.local",
            "+noall",
            "+answer",
        ],
    ));
    assert_eq!(older.len(), axfr.len());

    // Not over UDP; a zone of no plugin passes on (and nothing answers it).
    let r = udp(dns, &query("cluster.local.", RecordType::AXFR, None)).await;
    assert_eq!(r.metadata.response_code, ResponseCode::Refused);
    let r = tcp(dns, &query("svc.cluster.local.", RecordType::AXFR, None)).await;
    assert_eq!(r.metadata.response_code, ResponseCode::Refused);
    // An IXFR without its SOA.
    let r = tcp(dns, &query("cluster.local.", RecordType::IXFR, None)).await;
    assert_eq!(r.metadata.response_code, ResponseCode::ServFail);
    s.running.shutdown().await;

    // A client that is not in `to`.
    let s = start(
        &snapshot_block(
            0,
            &format!("{root}/deploy/demo/cluster.yaml"),
            "to 192.0.2.1",
        ),
        vec![],
    )
    .await;
    let r = tcp(s.dns(), &query("cluster.local.", RecordType::AXFR, None)).await;
    assert_eq!(r.metadata.response_code, ResponseCode::Refused);
    assert!(r.answers.is_empty());
    s.running.shutdown().await;
}

/// A zone of several messages streams in order; a client that leaves after the first message
/// costs nothing (the next transfer is whole).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_zone_streams_in_many_messages() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("big.yaml");
    let mut text = String::from(
        "apiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: Namespace, metadata: {name: big}}\n",
    );
    let n = 1500;
    for i in 0..n {
        text.push_str(&format!(
            "- {{apiVersion: v1, kind: Service, metadata: {{name: svc-{i}, namespace: big}}, spec: {{clusterIP: 10.97.{}.{}, ports: [{{name: http, port: 80}}]}}}}\n",
            i / 250,
            i % 250 + 1
        ));
    }
    std::fs::write(&file, text).unwrap();
    let s = start(
        &snapshot_block(0, &file.display().to_string(), "to *"),
        vec![],
    )
    .await;
    let dns = s.dns();

    // Leave after the first message.
    let mut c = tokio::net::TcpStream::connect(dns).await.unwrap();
    let q = query("cluster.local.", RecordType::AXFR, None)
        .to_vec()
        .unwrap();
    c.write_all(&(q.len() as u16).to_be_bytes()).await.unwrap();
    c.write_all(&q).await.unwrap();
    let len = c.read_u16().await.unwrap();
    let mut first = vec![0u8; usize::from(len)];
    c.read_exact(&mut first).await.unwrap();
    drop(c);

    let out = dig(
        dns,
        &["AXFR", "cluster.local", "+noall", "+answer", "+stats"],
    );
    let axfr = records(&out);
    // SOA, NS, per Service an A and two SRV records, SOA.
    assert_eq!(
        axfr.len(),
        3 + 3 * n,
        "{}",
        out.lines().last().unwrap_or("")
    );
    let size = out
        .lines()
        .find(|l| l.starts_with(";; XFR size:"))
        .expect("dig's XFR size line");
    let messages: usize = size
        .split("messages ")
        .nth(1)
        .and_then(|m| m.split(',').next())
        .and_then(|m| m.trim().parse().ok())
        .unwrap_or_else(|| panic!("{size}"));
    assert!(messages >= 4, "{size}");
    assert!(axfr.contains(&"svc-1499.big.svc.cluster.local. 5 A 10.97.5.250".to_string()));
    s.running.shutdown().await;
}

/// Until the API has been listed the zone is not handed out (an empty zone would wipe the
/// secondary's copy): SERVFAIL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unsynced_zone_is_not_transferred() {
    let api = fake_api("deploy/demo/cluster.yaml");
    post(&api, "/_control/fail?status=500&count=-1&path=services", "");
    let s = start(
        &format!(
            "cluster.local:0 {{\n bind 127.0.0.1\n kubernetes {{\n  endpoint {}\n  startup_timeout 1s\n }}\n transfer {{\n  to *\n }}\n}}\n",
            api.url
        ),
        vec![],
    )
    .await;
    let r = tcp(s.dns(), &query("cluster.local.", RecordType::AXFR, None)).await;
    assert_eq!(r.metadata.response_code, ResponseCode::ServFail);
    s.running.shutdown().await;
}

/// knotd on 127.0.0.1:`port`, with its address.
pub(crate) struct Knot {
    daemon: Daemon,
    pub(crate) addr: SocketAddr,
}

impl Knot {
    pub(crate) fn log(&self) -> String {
        self.daemon.log_text()
    }
}

/// knotd on 127.0.0.1:`port` as a secondary for `zone` of the primary on `primary`, taking
/// NOTIFY from 127.0.0.1; zone file, journal and log in a temporary directory.
pub(crate) fn knotd_secondary(zone: &str, primary: u16, port: u16) -> Knot {
    let bin = require("knotd", "knot");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    let conf = format!(
        "server:\n    rundir: \"{d}\"\n    listen: 127.0.0.1@{port}\ndatabase:\n    storage: \"{d}\"\nlog:\n  - target: stderr\n    any: info\nremote:\n  - id: primary\n    address: 127.0.0.1@{primary}\nacl:\n  - id: notify_from_primary\n    address: 127.0.0.1\n    action: notify\ntemplate:\n  - id: default\n    storage: \"{d}\"\nzone:\n  - domain: {zone}\n    master: primary\n    acl: notify_from_primary\n"
    );
    let path = dir.path().join("knot.conf");
    std::fs::write(&path, conf).unwrap();
    let mut cmd = Command::new(bin);
    cmd.arg("-c").arg(&path);
    Knot {
        daemon: Daemon::spawn(cmd, dir, "knotd"),
        addr: SocketAddr::from(([127, 0, 0, 1], port)),
    }
}

/// The SOA serial of `zone` at `addr`.
pub(crate) fn soa_serial(addr: SocketAddr, zone: &str) -> Option<u32> {
    let out = dig(addr, &["+short", "SOA", zone]);
    out.split_whitespace().nth(2)?.parse().ok()
}

/// Polls `check` every 100 ms for up to `limit`; fails with `what` and knotd's log.
pub(crate) async fn until(
    what: &str,
    limit: Duration,
    knot: &Knot,
    mut check: impl FnMut() -> bool,
) {
    let t = Instant::now();
    while !check() {
        assert!(t.elapsed() < limit, "{what}\nknotd's log:\n{}", knot.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// knotd, a secondary of our cluster.local, loads the zone and answers from it; a Service added
/// through the API changes our serial, our NOTIFY makes knotd transfer again (its own refresh
/// would wait 7200 s), and knotd then answers the new name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn knotd_secondary_follows_our_notify() {
    let api = fake_api("deploy/demo/cluster.yaml");
    let port = free_port();
    let knot_port = free_port();
    let s = start(
        &format!(
            "cluster.local:{port} {{\n bind 127.0.0.1\n kubernetes {{\n  endpoint {}\n }}\n transfer {{\n  to 127.0.0.1:{knot_port}\n }}\n}}\n",
            api.url
        ),
        vec![],
    )
    .await;
    let dns = s.dns();
    let knot = knotd_secondary("cluster.local", port, knot_port);
    let ours = soa_serial(dns, "cluster.local").expect("our SOA");
    until(
        "knotd loads the zone",
        Duration::from_secs(15),
        &knot,
        || soa_serial(knot.addr, "cluster.local") == Some(ours),
    )
    .await;
    assert_eq!(
        dig(knot.addr, &["+short", "web.shop.svc.cluster.local"]).trim(),
        "10.96.100.10"
    );
    assert_eq!(
        dig(
            knot.addr,
            &["+short", "SRV", "_postgres._tcp.db.shop.svc.cluster.local"]
        )
        .lines()
        .count(),
        2
    );

    post(
        &api,
        "/_control/apply",
        "{\"apiVersion\":\"v1\",\"kind\":\"Service\",\"metadata\":{\"name\":\"late\",\"namespace\":\"shop\"},\"spec\":{\"clusterIP\":\"10.96.7.7\",\"ports\":[{\"name\":\"http\",\"port\":80}]}}",
    );
    until("our serial changes", Duration::from_secs(5), &knot, || {
        soa_serial(dns, "cluster.local").is_some_and(|s| s != ours)
    })
    .await;
    let newer = soa_serial(dns, "cluster.local").unwrap();
    assert!(newer.wrapping_sub(ours) < 1 << 31, "{ours} -> {newer}");
    until(
        "knotd follows the NOTIFY",
        Duration::from_secs(20),
        &knot,
        || dig(knot.addr, &["+short", "late.shop.svc.cluster.local"]).trim() == "10.96.7.7",
    )
    .await;
    assert_eq!(soa_serial(knot.addr, "cluster.local"), Some(newer));
    assert!(
        knot.log().contains("notify, incoming"),
        "knotd saw no NOTIFY:\n{}",
        knot.log()
    );
    drop(knot);
    s.running.shutdown().await;
}

/// On `tls://` (here without `tls`: plain TCP, as CoreDNS serves it) a transfer streams as on
/// TCP; over DNS over HTTPS, which carries one message per request, it is REFUSED rather than
/// cut after its first message.
#[tokio::test]
async fn transfers_on_stream_transports_only() {
    use clusterdns::corefile::Transport;
    let root = env!("CARGO_MANIFEST_DIR");
    let s = start(
        &format!(
            "tls://cluster.local:0 https://cluster.local:0 {{\n bind 127.0.0.1\n kubernetes {{\n  snapshot {root}/deploy/demo/cluster.yaml\n }}\n transfer {{\n  to *\n }}\n}}\n"
        ),
        vec![],
    )
    .await;
    let at = |t: Transport| {
        s.running
            .addrs
            .iter()
            .find(|(x, _)| *x == t)
            .map(|(_, a)| *a)
            .unwrap()
    };
    let r = tcp(
        at(Transport::Tls),
        &query("cluster.local.", RecordType::AXFR, None),
    )
    .await;
    assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    assert_eq!(
        r.answers.first().map(|a| a.record_type()),
        Some(RecordType::SOA)
    );
    assert_eq!(
        r.answers.last().map(|a| a.record_type()),
        Some(RecordType::SOA)
    );

    let wire = query("cluster.local.", RecordType::AXFR, None)
        .to_vec()
        .unwrap();
    let mut c = tokio::net::TcpStream::connect(at(Transport::Https))
        .await
        .unwrap();
    let head = format!(
        "POST /dns-query HTTP/1.1\r\nHost: x\r\nContent-Type: application/dns-message\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        wire.len()
    );
    c.write_all(head.as_bytes()).await.unwrap();
    c.write_all(&wire).await.unwrap();
    let mut out = Vec::new();
    c.read_to_end(&mut out).await.unwrap();
    let body = &out[out.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4..];
    let r = hickory_proto::op::Message::from_vec(body).unwrap();
    assert_eq!(r.metadata.response_code, ResponseCode::Refused);
    assert!(r.answers.is_empty());
    s.running.shutdown().await;
}

/// A multicluster zone transfers its ServiceImports (xfr.go's transferMultiClusterServices:
/// endpoints named without their cluster, as CoreDNS does).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn axfr_of_a_multicluster_zone() {
    let root = env!("CARGO_MANIFEST_DIR");
    let s = start(
        &format!(
            "cluster.local:0 clusterset.local:0 {{\n bind 127.0.0.1\n kubernetes cluster.local clusterset.local {{\n  snapshot {root}/deploy/demo/cluster.yaml\n  multicluster clusterset.local\n }}\n transfer {{\n  to *\n }}\n}}\n"
        ),
        vec![],
    )
    .await;
    let axfr = records(&dig(
        s.dns(),
        &["AXFR", "clusterset.local", "+noall", "+answer"],
    ));
    assert!(axfr[0].starts_with("clusterset.local. 5 SOA ns.dns.clusterset.local. "));
    let mut body: Vec<&str> = axfr[1..axfr.len() - 1].iter().map(String::as_str).collect();
    body.sort_unstable();
    let mut want = vec![
        "clusterset.local. 5 NS ns.dns.clusterset.local.",
        "api.shop.svc.clusterset.local. 5 A 10.96.200.20",
        "api.shop.svc.clusterset.local. 5 SRV 0 100 80 api.shop.svc.clusterset.local.",
        "_http._tcp.api.shop.svc.clusterset.local. 5 SRV 0 100 80 api.shop.svc.clusterset.local.",
        "db.shop.svc.clusterset.local. 5 A 10.244.1.10",
        "db-0.db.shop.svc.clusterset.local. 5 A 10.244.1.10",
        "_postgres._tcp.db.shop.svc.clusterset.local. 5 SRV 0 100 5432 db-0.db.shop.svc.clusterset.local.",
        "db.shop.svc.clusterset.local. 5 A 10.245.1.10",
        "db-0.db.shop.svc.clusterset.local. 5 A 10.245.1.10",
        "_postgres._tcp.db.shop.svc.clusterset.local. 5 SRV 0 100 5432 db-0.db.shop.svc.clusterset.local.",
    ];
    want.sort_unstable();
    assert_eq!(body, want);
    s.running.shutdown().await;
}
