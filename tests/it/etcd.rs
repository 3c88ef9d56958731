//! `etcd` against a real etcd (Debian's etcd-server) started on 127.0.0.1: CoreDNS's lookup
//! table (its own tests also run against a live etcd), records written the way external-dns's
//! CoreDNS provider writes them, the watch (new and deleted keys), lease TTLs, an etcd outage
//! (the last records keep answering) and credentials.

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{RData, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::daemons::{Daemon, require, wait_until};
use crate::util::{free_port, query, start, udp};

struct Etcd {
    daemon: Daemon,
    addr: SocketAddr,
}

async fn etcd() -> Etcd {
    let bin = require("etcd", "etcd-server");
    let dir = tempfile::tempdir().unwrap();
    let (client, peer) = (free_port(), free_port());
    let mut cmd = Command::new(bin);
    cmd.env("ETCD_UNSUPPORTED_ARCH", std::env::consts::ARCH)
        .arg("--name")
        .arg("t")
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .arg("--listen-client-urls")
        .arg(format!("http://127.0.0.1:{client}"))
        .arg("--advertise-client-urls")
        .arg(format!("http://127.0.0.1:{client}"))
        .arg("--listen-peer-urls")
        .arg(format!("http://127.0.0.1:{peer}"))
        .arg("--initial-advertise-peer-urls")
        .arg(format!("http://127.0.0.1:{peer}"))
        .arg("--initial-cluster")
        .arg(format!("t=http://127.0.0.1:{peer}"))
        .arg("--logger")
        .arg("zap")
        .arg("--log-level")
        .arg("warn");
    let mut daemon = Daemon::spawn(cmd, dir, "etcd");
    let addr: SocketAddr = ([127, 0, 0, 1], client).into();
    wait_until(
        &mut daemon,
        "etcd",
        Duration::from_secs(30),
        || async move {
            post(addr, "/v3/kv/range", r#"{"key":"AA=="}"#, None)
                .await
                .0
                == 200
        },
    )
    .await;
    Etcd { daemon, addr }
}

/// A JSON POST to etcd's gateway: (status, body).
async fn post(addr: SocketAddr, path: &str, body: &str, token: Option<&str>) -> (u16, String) {
    let Ok(mut s) = tokio::net::TcpStream::connect(addr).await else {
        return (0, String::new());
    };
    let auth = token
        .map(|t| format!("Authorization: {t}\r\n"))
        .unwrap_or_default();
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n{auth}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    if s.write_all(req.as_bytes()).await.is_err() {
        return (0, String::new());
    }
    let mut out = String::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_string(&mut out)).await;
    let status = out
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

async fn put(e: &Etcd, key: &str, value: &str, lease: Option<i64>) {
    let lease = lease
        .map(|l| format!(r#","lease":"{l}""#))
        .unwrap_or_default();
    let body = format!(
        r#"{{"key":"{}","value":"{}"{lease}}}"#,
        B64.encode(key),
        B64.encode(value)
    );
    let (status, out) = post(e.addr, "/v3/kv/put", &body, None).await;
    assert_eq!(status, 200, "put {key}: {out}");
}

async fn delete(e: &Etcd, key: &str) {
    let body = format!(r#"{{"key":"{}"}}"#, B64.encode(key));
    assert_eq!(post(e.addr, "/v3/kv/deleterange", &body, None).await.0, 200);
}

/// The etcd key of a DNS name (CoreDNS's msg.Path with prefix /skydns).
fn key(name: &str) -> String {
    let mut l: Vec<&str> = name.trim_end_matches('.').split('.').collect();
    l.reverse();
    format!("/skydns/{}", l.join("/"))
}

fn corefile(e: &Etcd, zones: &str, extra: &str) -> String {
    format!(
        "{zones} {{\n bind 127.0.0.1\n etcd {{\n  endpoint http://{}\n{extra} }}\n}}\n",
        e.addr
    )
}

async fn wait_ready(s: &crate::util::TestServer, name: &str, qtype: RecordType) -> Message {
    for _ in 0..100 {
        let r = udp(s.dns(), &query(name, qtype, None)).await;
        if r.metadata.response_code != ResponseCode::ServFail {
            return r;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("etcd plugin never synced");
}

fn texts(rrs: &[hickory_proto::rr::Record]) -> Vec<String> {
    let mut v: Vec<String> = rrs
        .iter()
        .map(|r| {
            format!(
                "{} {} {} {}",
                r.name.to_lowercase(),
                r.ttl,
                r.record_type(),
                r.data
            )
        })
        .collect();
    v.sort();
    v
}

/// Question, rcode, answer, additional, zone of the SOA in the authority section.
type Case = (
    &'static str,
    RecordType,
    ResponseCode,
    &'static [&'static str],
    &'static [&'static str],
    Option<&'static str>,
);

/// CoreDNS's plugin/etcd lookup_test.go: the same services under the same keys, the same
/// questions and answers (SOA records compared by name and TTL, as CoreDNS's helper does).
#[tokio::test]
async fn coredns_lookup_table_against_a_live_etcd() {
    let e = etcd().await;
    let services: &[(&str, &str)] = &[
        (
            "a.server1.dev.region1.skydns.test.",
            r#"{"host":"dev.server1","port":8080}"#,
        ),
        (
            "a.server1.prod.region1.skydns.test.",
            r#"{"host":"10.0.0.1","port":8080}"#,
        ),
        (
            "b.server1.prod.region1.skydns.test.",
            r#"{"host":"10.0.0.2","port":8080}"#,
        ),
        (
            "b.server6.prod.region1.skydns.test.",
            r#"{"host":"::1","port":8080}"#,
        ),
        (
            "a.txt.server1.prod.region1.skydns.test.",
            r#"{"text":"sometext"}"#,
        ),
        (
            "b.txt.server1.prod.region1.skydns.test.",
            r#"{"text":"moretext"}"#,
        ),
        (
            "cname.prod.region1.skydns.test.",
            r#"{"host":"unresolvable.skydns.test"}"#,
        ),
        (
            "priority.skydns.test.",
            r#"{"host":"priority.server1","priority":333,"port":8080}"#,
        ),
        ("a.sub.region1.skydns.test.", r#"{"host":"sub.server1"}"#),
        (
            "b.sub.region1.skydns.test.",
            r#"{"host":"sub.server2","port":80}"#,
        ),
        (
            "c.sub.region1.skydns.test.",
            r#"{"host":"10.0.0.1","port":8080}"#,
        ),
        (
            "a.targetstrip.skydns.test.",
            r#"{"host":"10.0.0.1","port":8080,"targetstrip":1}"#,
        ),
        ("b.cname.skydns.test.", r#"{"host":"a.cname.skydns.test"}"#),
        ("a.cname.skydns.test.", r#"{"host":"b.cname.skydns.test"}"#),
        ("a.ns.dns.skydns.test.", r#"{"host":"10.0.0.2"}"#),
        ("b.ns.dns.skydns.test.", r#"{"host":"10.0.0.3"}"#),
        (
            "ns1.c.ns.dns.skydns.test.",
            r#"{"host":"10.0.0.4","targetstrip":1}"#,
        ),
        (
            "ns2.c.ns.dns.skydns.test.",
            r#"{"host":"10.0.0.5","targetstrip":1}"#,
        ),
        ("x.skydns_zonea.test.", r#"{"host":"10.0.0.2"}"#),
        ("y.skydns_zonea.test.", r#"{"host":"10.0.0.3"}"#),
        ("x.skydns_zoneb.test.", r#"{"host":"10.0.0.2"}"#),
        ("y.skydns_zoneb.test.", r#"{"host":"10.0.0.3"}"#),
        ("apex.dns.skydns_zoneb.test.", r#"{"host":"10.0.0.4"}"#),
        ("x.skydns_zonec.test.", r#"{"host":"10.0.0.2"}"#),
        ("y.skydns_zonec.test.", r#"{"host":"10.0.0.3"}"#),
        ("a1.apex.dns.skydns_zonec.test.", r#"{"host":"10.0.0.4"}"#),
        ("a2.apex.dns.skydns_zonec.test.", r#"{"host":"10.0.0.5"}"#),
        ("x.skydns_zoned.test.", r#"{"host":"10.0.0.2"}"#),
        ("y.skydns_zoned.test.", r#"{"host":"10.0.0.3"}"#),
        ("a1.apex.dns.skydns_zoned.test.", r#"{"host":"10.0.0.4"}"#),
        ("a2.apex.dns.skydns_zoned.test.", r#"{"host":"10.0.0.5"}"#),
        ("a3.apex.dns.skydns_zoned.test.", r#"{"host":"2003::8:1"}"#),
        ("a4.apex.dns.skydns_zoned.test.", r#"{"host":"2003::8:2"}"#),
        (
            "1.0.0.10.in-addr.arpa.",
            r#"{"host":"reverse.example.com"}"#,
        ),
    ];
    for (name, value) in services {
        put(&e, &key(name), value, None).await;
    }
    let s = start(
        &corefile(
            &e,
            "skydns.test:0 skydns_extra.test:0 skydns_zonea.test:0 skydns_zoneb.test:0 skydns_zonec.test:0 skydns_zoned.test:0 in-addr.arpa:0",
            "",
        ),
        vec![],
    )
    .await;
    wait_ready(&s, "skydns.test.", RecordType::SOA).await;
    use RecordType::*;
    let soa_only = |r: &Message, zone: &str| {
        assert_eq!(r.authorities.len(), 1, "{r:?}");
        let soa = &r.authorities[0];
        assert_eq!((soa.name.to_string().as_str(), soa.ttl), (zone, 30));
        let RData::SOA(d) = &soa.data else { panic!() };
        assert_eq!(d.mname.to_string(), format!("ns.dns.{zone}"));
        assert_eq!(d.rname.to_string(), format!("hostmaster.{zone}"));
    };
    let cases: &[Case] = &[
        (
            "a.server1.dev.region1.skydns.test.",
            SRV,
            ResponseCode::NoError,
            &["a.server1.dev.region1.skydns.test. 300 SRV 10 100 8080 dev.server1."],
            &[],
            None,
        ),
        (
            "a.SERVer1.dEv.region1.skydns.tEst.",
            SRV,
            ResponseCode::NoError,
            &["a.server1.dev.region1.skydns.test. 300 SRV 10 100 8080 dev.server1."],
            &[],
            None,
        ),
        (
            "doesnotexist.skydns.test.",
            A,
            ResponseCode::NXDomain,
            &[],
            &[],
            Some("skydns.test."),
        ),
        (
            "a.server1.prod.region1.skydns.test.",
            A,
            ResponseCode::NoError,
            &["a.server1.prod.region1.skydns.test. 300 A 10.0.0.1"],
            &[],
            None,
        ),
        (
            "a.server1.prod.region1.skydns.test.",
            SRV,
            ResponseCode::NoError,
            &[
                "a.server1.prod.region1.skydns.test. 300 SRV 10 100 8080 a.server1.prod.region1.skydns.test.",
            ],
            &["a.server1.prod.region1.skydns.test. 300 A 10.0.0.1"],
            None,
        ),
        (
            "b.server6.prod.region1.skydns.test.",
            AAAA,
            ResponseCode::NoError,
            &["b.server6.prod.region1.skydns.test. 300 AAAA ::1"],
            &[],
            None,
        ),
        (
            "server1.prod.region1.skydns.test.",
            A,
            ResponseCode::NoError,
            &[
                "server1.prod.region1.skydns.test. 300 A 10.0.0.1",
                "server1.prod.region1.skydns.test. 300 A 10.0.0.2",
            ],
            &[],
            None,
        ),
        (
            "priority.skydns.test.",
            SRV,
            ResponseCode::NoError,
            &["priority.skydns.test. 300 SRV 333 100 8080 priority.server1."],
            &[],
            None,
        ),
        (
            "sub.region1.skydns.test.",
            SRV,
            ResponseCode::NoError,
            &[
                "sub.region1.skydns.test. 300 SRV 10 33 0 sub.server1.",
                "sub.region1.skydns.test. 300 SRV 10 33 80 sub.server2.",
                "sub.region1.skydns.test. 300 SRV 10 33 8080 c.sub.region1.skydns.test.",
            ],
            &["c.sub.region1.skydns.test. 300 A 10.0.0.1"],
            None,
        ),
        (
            "targetstrip.skydns.test.",
            SRV,
            ResponseCode::NoError,
            &["targetstrip.skydns.test. 300 SRV 10 100 8080 targetstrip.skydns.test."],
            &["targetstrip.skydns.test. 300 A 10.0.0.1"],
            None,
        ),
        (
            "cname.prod.region1.skydns.test.",
            A,
            ResponseCode::NoError,
            &[],
            &[],
            Some("skydns.test."),
        ),
        (
            "txt.server1.prod.region1.skydns.test.",
            TXT,
            ResponseCode::NoError,
            &[
                "txt.server1.prod.region1.skydns.test. 300 TXT moretext",
                "txt.server1.prod.region1.skydns.test. 300 TXT sometext",
            ],
            &[],
            None,
        ),
        (
            "prod.*.skydns.test.",
            SRV,
            ResponseCode::NoError,
            &[
                "prod.*.skydns.test. 300 SRV 10 25 0 unresolvable.skydns.test.",
                "prod.*.skydns.test. 300 SRV 10 25 8080 a.server1.prod.region1.skydns.test.",
                "prod.*.skydns.test. 300 SRV 10 25 8080 b.server1.prod.region1.skydns.test.",
                "prod.*.skydns.test. 300 SRV 10 25 8080 b.server6.prod.region1.skydns.test.",
            ],
            &[
                "a.server1.prod.region1.skydns.test. 300 A 10.0.0.1",
                "b.server1.prod.region1.skydns.test. 300 A 10.0.0.2",
                "b.server6.prod.region1.skydns.test. 300 AAAA ::1",
            ],
            None,
        ),
        (
            "prod.any.skydns.test.",
            SRV,
            ResponseCode::NoError,
            &[
                "prod.any.skydns.test. 300 SRV 10 25 0 unresolvable.skydns.test.",
                "prod.any.skydns.test. 300 SRV 10 25 8080 a.server1.prod.region1.skydns.test.",
                "prod.any.skydns.test. 300 SRV 10 25 8080 b.server1.prod.region1.skydns.test.",
                "prod.any.skydns.test. 300 SRV 10 25 8080 b.server6.prod.region1.skydns.test.",
            ],
            &[
                "a.server1.prod.region1.skydns.test. 300 A 10.0.0.1",
                "b.server1.prod.region1.skydns.test. 300 A 10.0.0.2",
                "b.server6.prod.region1.skydns.test. 300 AAAA ::1",
            ],
            None,
        ),
        (
            "a.cname.skydns.test.",
            A,
            ResponseCode::NoError,
            &[],
            &[],
            Some("skydns.test."),
        ),
        // CoreDNS's table runs without a server behind `upstream`, so the lookup of the
        // external target fails there; through a server (as in production, and here) the
        // CNAME is answered.
        (
            "a.server1.dev.region1.skydns.test.",
            TXT,
            ResponseCode::NoError,
            &["a.server1.dev.region1.skydns.test. 300 CNAME dev.server1."],
            &[],
            None,
        ),
        (
            "a.server1.dev.region1.skydns.test.",
            HINFO,
            ResponseCode::NoError,
            &[],
            &[],
            Some("skydns.test."),
        ),
        (
            "a.server1.nonexistent.region1.skydns.test.",
            HINFO,
            ResponseCode::NXDomain,
            &[],
            &[],
            Some("skydns.test."),
        ),
        (
            "skydns.test.",
            NS,
            ResponseCode::NoError,
            &[
                "skydns.test. 300 NS a.ns.dns.skydns.test.",
                "skydns.test. 300 NS b.ns.dns.skydns.test.",
                "skydns.test. 300 NS c.ns.dns.skydns.test.",
            ],
            &[
                "a.ns.dns.skydns.test. 300 A 10.0.0.2",
                "b.ns.dns.skydns.test. 300 A 10.0.0.3",
                "c.ns.dns.skydns.test. 300 A 10.0.0.4",
                "c.ns.dns.skydns.test. 300 A 10.0.0.5",
            ],
            None,
        ),
        (
            "a.skydns.test.",
            NS,
            ResponseCode::NXDomain,
            &[],
            &[],
            Some("skydns.test."),
        ),
        (
            "ns.dns.skydns.test.",
            A,
            ResponseCode::NoError,
            &[
                "ns.dns.skydns.test. 300 A 10.0.0.2",
                "ns.dns.skydns.test. 300 A 10.0.0.3",
                "ns.dns.skydns.test. 300 A 10.0.0.4",
                "ns.dns.skydns.test. 300 A 10.0.0.5",
            ],
            &[],
            None,
        ),
        (
            "skydns_zonea.test.",
            A,
            ResponseCode::NoError,
            &[
                "skydns_zonea.test. 300 A 10.0.0.2",
                "skydns_zonea.test. 300 A 10.0.0.3",
            ],
            &[],
            None,
        ),
        (
            "skydns_zoneb.test.",
            A,
            ResponseCode::NoError,
            &["skydns_zoneb.test. 300 A 10.0.0.4"],
            &[],
            None,
        ),
        (
            "skydns_zonec.test.",
            A,
            ResponseCode::NoError,
            &[
                "skydns_zonec.test. 300 A 10.0.0.4",
                "skydns_zonec.test. 300 A 10.0.0.5",
            ],
            &[],
            None,
        ),
        (
            "skydns_zoned.test.",
            A,
            ResponseCode::NoError,
            &[
                "skydns_zoned.test. 300 A 10.0.0.4",
                "skydns_zoned.test. 300 A 10.0.0.5",
            ],
            &[],
            None,
        ),
        (
            "skydns_zoned.test.",
            AAAA,
            ResponseCode::NoError,
            &[
                "skydns_zoned.test. 300 AAAA 2003::8:1",
                "skydns_zoned.test. 300 AAAA 2003::8:2",
            ],
            &[],
            None,
        ),
        (
            "1.0.0.10.in-addr.arpa.",
            PTR,
            ResponseCode::NoError,
            &["1.0.0.10.in-addr.arpa. 300 PTR reverse.example.com."],
            &[],
            None,
        ),
    ];
    for (name, qtype, rcode, answer, extra, soa) in cases {
        let r = udp(s.dns(), &query(name, *qtype, None)).await;
        let what = format!("{name} {qtype}");
        assert_eq!(r.metadata.response_code, *rcode, "{what}: {r:?}");
        assert!(r.metadata.authoritative, "{what}");
        let mut want: Vec<String> = answer.iter().map(|s| s.to_string()).collect();
        want.sort();
        assert_eq!(texts(&r.answers), want, "{what}: answer");
        let mut want: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        want.sort();
        assert_eq!(texts(&r.additionals), want, "{what}: additional");
        match soa {
            Some(z) => soa_only(&r, z),
            None => assert!(r.authorities.is_empty(), "{what}: {r:?}"),
        }
    }
    // SOA: synthesized, its serial the etcd revision.
    let r = udp(s.dns(), &query("skydns_extra.test.", SOA, None)).await;
    let RData::SOA(d) = &r.answers[0].data else {
        panic!("{r:?}")
    };
    assert!(d.serial >= services.len() as u32, "{d:?}");
    assert_eq!(
        (d.refresh, d.retry, d.expire, d.minimum),
        (7200, 1800, 86400, 30)
    );
    s.running.shutdown().await;
    drop(e);
}

/// Records as external-dns's CoreDNS provider writes them (a random 8-hex label under the name,
/// `targetstrip: 1`, the TXT registry's text), then changed and removed while we serve: the
/// watch brings each change.
#[tokio::test]
async fn external_dns_records_follow_the_watch_and_survive_an_outage() {
    let mut e = etcd().await;
    put(&e, "/skydns/org/example/www/1a2b3c4d", r#"{"host":"192.0.2.10","text":"\"heritage=external-dns,external-dns/owner=default,external-dns/resource=service/default/web\"","ttl":60,"targetstrip":1}"#, None).await;
    put(
        &e,
        "/skydns/org/example/www/5e6f7a8b",
        r#"{"host":"192.0.2.11","ttl":60,"targetstrip":1}"#,
        None,
    )
    .await;
    put(
        &e,
        "/skydns/org/example/api/0badcafe",
        r#"{"host":"www.example.org","targetstrip":1}"#,
        None,
    )
    .await;
    put(
        &e,
        "/skydns/org/example/a-www/2c3d4e5f",
        r#"{"text":"\"heritage=external-dns,external-dns/owner=default\"","targetstrip":1}"#,
        None,
    )
    .await;
    let s = start(&corefile(&e, "example.org:0", ""), vec![]).await;
    let r = wait_ready(&s, "www.example.org.", RecordType::A).await;
    assert_eq!(
        texts(&r.answers),
        [
            "www.example.org. 60 A 192.0.2.10",
            "www.example.org. 60 A 192.0.2.11"
        ]
    );
    let r = udp(s.dns(), &query("api.example.org.", RecordType::A, None)).await;
    assert_eq!(
        texts(&r.answers),
        [
            "api.example.org. 300 CNAME www.example.org.",
            "www.example.org. 60 A 192.0.2.10",
            "www.example.org. 60 A 192.0.2.11"
        ]
    );
    let r = udp(s.dns(), &query("a-www.example.org.", RecordType::TXT, None)).await;
    assert_eq!(r.answers.len(), 1, "{r:?}");
    // A new record, a changed one, a deleted one: each served once etcd has it.
    put(
        &e,
        "/skydns/org/example/new/99999999",
        r#"{"host":"192.0.2.99","targetstrip":1}"#,
        None,
    )
    .await;
    put(
        &e,
        "/skydns/org/example/www/5e6f7a8b",
        r#"{"host":"192.0.2.12","ttl":60,"targetstrip":1}"#,
        None,
    )
    .await;
    delete(&e, "/skydns/org/example/api/0badcafe").await;
    let mut done = false;
    for _ in 0..100 {
        let a = udp(s.dns(), &query("new.example.org.", RecordType::A, None)).await;
        let w = udp(s.dns(), &query("www.example.org.", RecordType::A, None)).await;
        let c = udp(s.dns(), &query("api.example.org.", RecordType::A, None)).await;
        if a.answers.len() == 1
            && texts(&w.answers).contains(&"www.example.org. 60 A 192.0.2.12".to_string())
            && c.metadata.response_code == ResponseCode::NXDomain
        {
            done = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(done, "the watch did not bring the changes");
    // A lease: the record's TTL is what is left of it (within min-lease-ttl..max-lease-ttl).
    let (st, grant) = post(e.addr, "/v3/lease/grant", r#"{"TTL":"120"}"#, None).await;
    assert_eq!(st, 200, "{grant}");
    let v: serde_json::Value = serde_json::from_str(&grant).unwrap();
    let id: i64 = v["ID"].as_str().unwrap().parse().unwrap();
    put(
        &e,
        "/skydns/org/example/leased/abcdef01",
        r#"{"host":"192.0.2.50","ttl":600,"targetstrip":1}"#,
        Some(id),
    )
    .await;
    let mut ttl = None;
    for _ in 0..100 {
        let r = udp(s.dns(), &query("leased.example.org.", RecordType::A, None)).await;
        if let Some(a) = r.answers.first() {
            ttl = Some(a.ttl);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let ttl = ttl.expect("leased record never served");
    assert!((100..=120).contains(&ttl), "lease TTL {ttl}");
    // etcd goes away: the last records keep answering (CoreDNS would SERVFAIL every query).
    e.daemon.check_alive("etcd");
    drop(e);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let r = udp(s.dns(), &query("new.example.org.", RecordType::A, None)).await;
    assert_eq!(texts(&r.answers), ["new.example.org. 300 A 192.0.2.99"]);
    s.running.shutdown().await;
}

/// `credentials`: with etcd's authentication on, the plugin signs in; wrong credentials get no
/// data (SERVFAIL, `/ready` stays 503).
#[tokio::test]
async fn credentials_sign_in_to_an_etcd_with_auth() {
    let e = etcd().await;
    put(
        &e,
        "/skydns/org/example/www/1",
        r#"{"host":"192.0.2.1"}"#,
        None,
    )
    .await;
    for (path, body) in [
        (
            "/v3/auth/user/add",
            r#"{"name":"root","password":"s3cret"}"#,
        ),
        ("/v3/auth/user/grant", r#"{"user":"root","role":"root"}"#),
        ("/v3/auth/enable", "{}"),
    ] {
        let (st, out) = post(e.addr, path, body, None).await;
        assert_eq!(st, 200, "{path}: {out}");
    }
    // Without a token, etcd refuses now.
    assert_ne!(
        post(e.addr, "/v3/kv/range", r#"{"key":"AA=="}"#, None)
            .await
            .0,
        200
    );
    let s = start(
        &corefile(&e, "example.org:0", "  credentials root s3cret\n"),
        vec![],
    )
    .await;
    let r = wait_ready(&s, "www.example.org.", RecordType::A).await;
    assert_eq!(texts(&r.answers), ["www.example.org. 300 A 192.0.2.1"]);
    s.running.shutdown().await;
    let s = start(
        &corefile(&e, "example.org:0", "  credentials root wrong\n"),
        vec![],
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let r = udp(s.dns(), &query("www.example.org.", RecordType::A, None)).await;
    assert_eq!(r.metadata.response_code, ResponseCode::ServFail);
    s.running.shutdown().await;
}

/// Makes a CA, a server certificate for 127.0.0.1 and a client certificate with `openssl`.
/// etcd dials its own gRPC server from its gateway with the server certificate, so that one
/// needs clientAuth too.
fn certificates(dir: &std::path::Path) {
    let openssl = require("openssl", "openssl");
    let run = |args: &str| {
        let out = Command::new(&openssl)
            .args(args.split_whitespace())
            .current_dir(dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "openssl {args}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n",
    )
    .unwrap();
    std::fs::write(dir.join("client.ext"), "extendedKeyUsage=clientAuth\n").unwrap();
    let ec = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
    run(&format!(
        "req -x509 {ec} -keyout ca.key -out ca.pem -days 2 -subj /CN=clusterdns-test-ca"
    ));
    for who in ["server", "client"] {
        run(&format!(
            "req {ec} -keyout {who}.key -out {who}.csr -subj /CN={who}"
        ));
        run(&format!(
            "x509 -req -in {who}.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out {who}.pem -days 2 -extfile {who}.ext"
        ));
    }
}

/// `tls CERT KEY CACERT` against an etcd that serves TLS and requires client certificates.
#[tokio::test]
async fn tls_with_a_client_certificate() {
    let bin = require("etcd", "etcd-server");
    let dir = tempfile::tempdir().unwrap();
    certificates(dir.path());
    let (client, peer) = (free_port(), free_port());
    let d = dir.path().to_path_buf();
    let mut cmd = Command::new(bin);
    cmd.args(["--name", "t", "--logger", "zap", "--log-level", "warn"])
        .arg("--data-dir")
        .arg(d.join("data"))
        .arg("--listen-client-urls")
        .arg(format!("https://127.0.0.1:{client}"))
        .arg("--advertise-client-urls")
        .arg(format!("https://127.0.0.1:{client}"))
        .arg("--listen-peer-urls")
        .arg(format!("http://127.0.0.1:{peer}"))
        .arg("--initial-advertise-peer-urls")
        .arg(format!("http://127.0.0.1:{peer}"))
        .arg("--initial-cluster")
        .arg(format!("t=http://127.0.0.1:{peer}"))
        .arg("--cert-file")
        .arg(d.join("server.pem"))
        .arg("--key-file")
        .arg(d.join("server.key"))
        .arg("--trusted-ca-file")
        .arg(d.join("ca.pem"))
        .arg("--client-cert-auth");
    let mut daemon = Daemon::spawn(cmd, dir, "etcd");
    let tls_corefile = |cert: &str| {
        format!(
            "example.org:0 {{\n bind 127.0.0.1\n etcd {{\n  endpoint https://127.0.0.1:{client}\n  tls {cert} {} {}\n }}\n}}\n",
            d.join("client.key").display(),
            d.join("ca.pem").display()
        )
    };
    // Plain HTTP is refused by a TLS listener: wait for the port, then use the plugin itself.
    wait_until(
        &mut daemon,
        "etcd",
        Duration::from_secs(30),
        || async move {
            tokio::net::TcpStream::connect(("127.0.0.1", client))
                .await
                .is_ok()
        },
    )
    .await;
    let s = start(
        &tls_corefile(&d.join("client.pem").display().to_string()),
        vec![],
    )
    .await;
    // An empty etcd: the zone answers NXDOMAIN once the plugin has listed it over TLS.
    let r = wait_ready(&s, "www.example.org.", RecordType::A).await;
    assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);
    s.running.shutdown().await;
    // Without the client certificate etcd refuses the handshake: no data, SERVFAIL.
    let s = start(
        &format!(
            "example.org:0 {{\n bind 127.0.0.1\n etcd {{\n  endpoint https://127.0.0.1:{client}\n  tls {}\n }}\n}}\n",
            d.join("ca.pem").display()
        ),
        vec![],
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let r = udp(s.dns(), &query("www.example.org.", RecordType::A, None)).await;
    assert_eq!(r.metadata.response_code, ResponseCode::ServFail);
    s.running.shutdown().await;
    drop(daemon);
}
