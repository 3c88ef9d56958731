//! `file` against knotd: both serve the same generated zone (unsigned, then signed by knotd
//! itself) and every name and type is asked of both, with and without DO; rcode, flags and the
//! three sections must be the same. Plus reload: a new serial is served, a broken file is not.

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RecordType};

use crate::daemons::{Daemon, require, wait_until};
use crate::transfer::{dig, records};
use crate::util::{free_port, query, start, udp, udp_raw};

pub(crate) const ORIGIN: &str = "example.org.";

/// A zone with every feature the plugin handles: apex data, CNAME chains (inside, outside,
/// dangling, looping), wildcards (plain, CNAME, blocked by an empty non-terminal), empty
/// non-terminals, delegations with and without glue, DNAMEs, SRV/MX targets with addresses,
/// assorted types, and a few dozen plain hosts.
pub(crate) fn zone_text() -> String {
    let mut z = String::from(
        "$ORIGIN example.org.\n\
         $TTL 3600\n\
         @ IN SOA ns1 hostmaster 2024010101 7200 3600 1209600 300\n\
         \x20 IN NS ns1\n\
         \x20 IN NS ns2.example.net.\n\
         \x20 IN MX 10 mail\n\
         \x20 IN A 192.0.2.1\n\
         \x20 IN AAAA 2001:db8::1\n\
         \x20 IN TXT \"v=spf1 -all\"\n\
         \x20 IN CAA 0 issue \"letsencrypt.org\"\n\
         ns1 IN A 192.0.2.53\n\
         \x20 IN AAAA 2001:db8::53\n\
         mail 300 IN A 192.0.2.25\n\
         \x20 IN AAAA 2001:db8::25\n\
         www IN CNAME web\n\
         web IN A 192.0.2.80\n\
         \x20 IN AAAA 2001:db8::80\n\
         chain1 IN CNAME chain2\n\
         chain2 IN CNAME www\n\
         ext IN CNAME www.example.net.\n\
         dangling IN CNAME nowhere\n\
         loop1 IN CNAME loop2\n\
         loop2 IN CNAME loop1\n\
         *.wild IN A 192.0.2.99\n\
         *.wild IN TXT \"wild\"\n\
         q.y.wild IN A 192.0.2.98\n\
         *.wc IN CNAME web\n\
         a.b.c IN A 192.0.2.3\n\
         sub IN NS ns.sub\n\
         sub IN NS ns.example.net.\n\
         ns.sub IN A 192.0.2.54\n\
         sub2 IN NS ns.other.example.net.\n\
         dn IN DNAME example.net.\n\
         dnin IN DNAME inner.example.org.\n\
         host.inner IN A 192.0.2.77\n\
         _sip._tcp IN SRV 10 20 5060 mail\n\
         _xmpp._tcp IN SRV 5 0 5222 chat.example.net.\n\
         txt IN TXT \"hello world\" \"second string\"\n\
         ptr IN PTR web.example.org.\n\
         sshfp IN SSHFP 1 1 0123456789abcdef0123456789abcdef01234567\n\
         _443._tcp.web IN TLSA 3 1 1 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\n\
         mx2 IN MX 10 mail\n\
         \x20 IN MX 20 web\n\
         mxc IN CNAME mx2\n",
    );
    for i in 0..40 {
        z.push_str(&format!("h{i:03} 600 IN A 198.51.100.{i}\n"));
        if i % 3 == 0 {
            z.push_str(&format!("h{i:03} 600 IN AAAA 2001:db8:1::{i:x}\n"));
        }
        if i % 5 == 0 {
            z.push_str(&format!("h{i:03} 600 IN TXT \"host {i}\"\n"));
        }
    }
    z
}

/// Every owner name of the zone (wildcards asked as a name they cover) and the names around
/// them that exercise the rules.
fn names(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut add = |n: String| {
        if !out.contains(&n) {
            out.push(n);
        }
    };
    for line in text.lines() {
        let Some(first) = line.split_whitespace().next() else {
            continue;
        };
        if line.starts_with([' ', '\t']) || first.starts_with('$') {
            continue;
        }
        let name = if first == "@" {
            ORIGIN.to_string()
        } else {
            format!("{first}.{ORIGIN}")
        };
        add(name.replace('*', "anything"));
        add(name);
    }
    for n in [
        "nope",
        "b.c",
        "c",
        "x.a.b.c",
        "deep.q.wild",
        "y.wild",
        "z.y.wild",
        "x.wc",
        "x.sub",
        "ns.sub",
        "a.b.sub",
        "x.sub2",
        "x.dn",
        "a.b.dn",
        "host.dnin",
        "nope.dnin",
        "WwW",
        "x.www",
        "inner",
        "nowhere",
        "_tcp",
        "web.nope",
    ] {
        add(format!("{n}.{ORIGIN}"));
    }
    out
}

const TYPES: &[RecordType] = &[
    RecordType::A,
    RecordType::AAAA,
    RecordType::CNAME,
    RecordType::MX,
    RecordType::NS,
    RecordType::SOA,
    RecordType::TXT,
    RecordType::SRV,
    RecordType::PTR,
    RecordType::CAA,
    RecordType::DNAME,
    RecordType::DS,
    RecordType::SSHFP,
    RecordType::TLSA,
    RecordType::NSEC,
];

pub(crate) struct Knot {
    pub(crate) daemon: Daemon,
    pub(crate) addr: SocketAddr,
}

/// Starts knotd serving `zone` as example.org (signing it itself when `sign`), transfers
/// allowed from 127.0.0.1.
pub(crate) async fn knotd(zone: &str, sign: bool) -> Knot {
    let bin = require("knotd", "knot");
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let d = dir.path().display().to_string();
    std::fs::write(dir.path().join("example.org.zone"), zone).unwrap();
    std::fs::create_dir(dir.path().join("db")).unwrap();
    let signing = if sign {
        "policy:\n  - id: test\n    algorithm: ecdsap256sha256\n    nsec3: off\n\
         zone:\n  - domain: example.org\n    file: {d}/example.org.zone\n    journal-content: none\n    zonefile-sync: -1\n    acl: xfr\n    dnssec-signing: on\n    dnssec-policy: test\n"
    } else {
        "zone:\n  - domain: example.org\n    file: {d}/example.org.zone\n    journal-content: none\n    zonefile-sync: -1\n    acl: xfr\n"
    };
    let conf = format!(
        "server:\n  listen: 127.0.0.1@{port}\n  rundir: {d}\n  udp-workers: 1\n  tcp-workers: 1\n  background-workers: 1\n\
         database:\n  storage: {d}/db\n\
         log:\n  - target: stderr\n    any: info\n\
         acl:\n  - id: xfr\n    address: 127.0.0.1\n    action: transfer\n{}",
        signing.replace("{d}", &d)
    );
    std::fs::write(dir.path().join("knot.conf"), conf).unwrap();
    let mut cmd = Command::new(bin);
    cmd.arg("-c").arg(dir.path().join("knot.conf"));
    let mut daemon = Daemon::spawn(cmd, dir, "knotd");
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    // Ready when it answers the zone's SOA (signed: with its RRSIG).
    wait_until(
        &mut daemon,
        "knotd",
        Duration::from_secs(20),
        || async move {
            let mut q = query(ORIGIN, RecordType::SOA, None);
            let mut e = Edns::new();
            e.set_max_payload(4096);
            e.set_dnssec_ok(true);
            q.set_edns(e);
            let Some(bytes) = udp_raw(addr, &q.to_vec().unwrap()).await else {
                return false;
            };
            Message::from_vec(&bytes).is_ok_and(|m| {
                m.metadata.response_code == ResponseCode::NoError
                    && m.answers.len() > usize::from(sign)
            })
        },
    )
    .await;
    Knot { daemon, addr }
}

fn ask(name: &str, qtype: RecordType, dnssec: bool) -> Message {
    let mut m = Message::new(0x5151, MessageType::Query, OpCode::Query);
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
    let mut e = Edns::new();
    e.set_max_payload(4096);
    e.set_dnssec_ok(dnssec);
    m.set_edns(e);
    m
}

/// What must be equal: rcode, flags, and each section as a sorted list of records (owner names
/// compared without case: knotd answers in the letter case of the question).
fn summary(m: &Message) -> String {
    let sec = |rrs: &[hickory_proto::rr::Record]| {
        let mut v: Vec<String> = rrs.iter().map(|r| r.to_string().to_lowercase()).collect();
        v.sort();
        v.join("\n    ")
    };
    let md = &m.metadata;
    format!(
        "rcode {:?} aa={} tc={} ra={} ad={}\n  answer:\n    {}\n  authority:\n    {}\n  additional:\n    {}",
        md.response_code,
        md.authoritative,
        md.truncation,
        md.recursion_available,
        md.authentic_data,
        sec(&m.answers),
        sec(&m.authorities),
        sec(&m.additionals),
    )
}

async fn compare(ours: SocketAddr, knot: SocketAddr, zone: &str, dnssec_modes: &[bool]) -> usize {
    let mut asked = 0;
    let mut diffs = Vec::new();
    for name in names(zone) {
        for &qtype in TYPES {
            for &dnssec in dnssec_modes {
                let q = ask(&name, qtype, dnssec);
                let (a, b) = (udp(ours, &q).await, udp(knot, &q).await);
                asked += 1;
                let (sa, sb) = (summary(&a), summary(&b));
                if sa != sb {
                    diffs.push(format!(
                        "{name} {qtype} do={dnssec}\n clusterdns: {sa}\n knotd:      {sb}"
                    ));
                }
            }
        }
    }
    assert!(
        diffs.is_empty(),
        "{} of {asked} answers differ from knotd's:\n{}",
        diffs.len(),
        diffs
            .iter()
            .take(40)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n\n")
            + "\n\nall: "
            + &diffs
                .iter()
                .map(|d| d.lines().next().unwrap_or_default())
                .collect::<Vec<_>>()
                .join(", ")
    );
    asked
}

#[tokio::test]
async fn file_vs_knotd() {
    let text = zone_text();
    let knot = knotd(&text, false).await;
    let path = knot.daemon.dir.path().join("example.org.zone");
    let s = start(
        &format!(
            "example.org:0 {{\n bind 127.0.0.1\n file {} {{\n  reload 0\n }}\n}}\n",
            path.display()
        ),
        vec![],
    )
    .await;
    let asked = compare(s.dns(), knot.addr, &text, &[false, true]).await;
    assert!(asked > 2000, "{asked}");
    s.running.shutdown().await;
}

// Two runtime threads: `dig` runs as a blocking child process while the server answers it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_vs_knotd_signed_zone() {
    // knotd signs the zone (ECDSA, NSEC); the signed zone it transfers out is the file we
    // serve, and both answer from the same signatures.
    let text = zone_text();
    let knot = knotd(&text, true).await;
    let out = Command::new(require("dig", "dnsutils"))
        .args([
            "@127.0.0.1",
            "-p",
            &knot.addr.port().to_string(),
            ORIGIN,
            "AXFR",
        ])
        .args(["+noall", "+answer"])
        .output()
        .unwrap();
    let axfr = String::from_utf8(out.stdout).unwrap();
    // The transfer ends with the SOA again.
    let mut lines: Vec<&str> = axfr
        .lines()
        .filter(|l| !l.starts_with(';') && !l.is_empty())
        .collect();
    assert!(lines.len() > 100, "AXFR: {axfr}");
    lines.pop();
    assert!(axfr.contains("RRSIG") && axfr.contains("NSEC") && axfr.contains("DNSKEY"));
    let signed = knot.daemon.dir.path().join("signed.zone");
    std::fs::write(&signed, lines.join("\n") + "\n").unwrap();
    let s = start(
        &format!(
            "example.org:0 {{\n bind 127.0.0.1\n file {} {{\n  reload 0\n }}\n transfer {{\n  to *\n }}\n}}\n",
            signed.display()
        ),
        vec![],
    )
    .await;
    compare(s.dns(), knot.addr, &text, &[false, true]).await;
    // Transferred out again, the signed zone is the file: its SOA, every other record (RRSIGs,
    // NSECs, DNSKEYs), the SOA.
    let file = records(&std::fs::read_to_string(&signed).unwrap());
    let mut axfr = records(&dig(s.dns(), &["AXFR", ORIGIN, "+noall", "+answer"]));
    assert_eq!(axfr.first(), file.first());
    assert_eq!(axfr.pop().as_ref(), file.first());
    let mut want = file.clone();
    axfr.sort();
    want.sort();
    assert_eq!(axfr, want);
    s.running.shutdown().await;
}

fn www_a(m: &Message) -> Option<String> {
    m.answers.first().map(|r| r.data.to_string())
}

/// A zone whose `www` has `addr`, at `serial`.
fn small_zone(serial: u32, addr: &str) -> String {
    format!(
        "$ORIGIN example.org.\n@ 300 IN SOA ns hm {serial} 7200 3600 1209600 300\n  IN NS ns\nns IN A 192.0.2.53\nwww IN A {addr}\n"
    )
}

#[tokio::test]
async fn reload_serves_a_new_serial_and_keeps_the_last_good_zone() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db.example.org");
    std::fs::write(&db, small_zone(1, "192.0.2.1")).unwrap();
    let s = start(
        &format!(
            "example.org:0 {{\n bind 127.0.0.1\n file {} {{\n  reload 100ms\n }}\n}}\n",
            db.display()
        ),
        vec![],
    )
    .await;
    let ask_www =
        || async { www_a(&udp(s.dns(), &query("www.example.org.", RecordType::A, None)).await) };
    assert_eq!(ask_www().await.as_deref(), Some("192.0.2.1"));
    let wait_for = |want: &'static str| async move {
        for _ in 0..100 {
            if ask_www().await.as_deref() == Some(want) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("never served {want}");
    };
    // A new serial is served.
    std::fs::write(&db, small_zone(2, "192.0.2.2")).unwrap();
    wait_for("192.0.2.2").await;
    // A broken file (and a vanished one) is logged; the last good zone keeps serving.
    std::fs::write(&db, small_zone(3, "192.0.2.300")).unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(ask_www().await.as_deref(), Some("192.0.2.2"));
    std::fs::remove_file(&db).unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(ask_www().await.as_deref(), Some("192.0.2.2"));
    // Same serial, other data: not reloaded (CoreDNS reloads on a serial change).
    std::fs::write(&db, small_zone(2, "192.0.2.9")).unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(ask_www().await.as_deref(), Some("192.0.2.2"));
    std::fs::write(&db, small_zone(4, "192.0.2.4")).unwrap();
    wait_for("192.0.2.4").await;
    s.running.shutdown().await;
}

#[tokio::test]
async fn a_broken_zone_file_is_a_build_error_with_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db.broken");
    std::fs::write(
        &db,
        "$ORIGIN example.org.\n@ 300 IN SOA ns hm 1 2 3 4 5\n\nwww IN A 192.0.2.300\n",
    )
    .unwrap();
    let corefile = format!("example.org:0 {{\n file {}\n}}\n", db.display());
    let cfg = clusterdns::config::load("Corefile", &corefile, 53).unwrap();
    let metrics = std::sync::Arc::new(
        clusterdns::plugins::prometheus::Metrics::new(prometheus::Registry::new()).unwrap(),
    );
    let Err(err) = clusterdns::server::build(&cfg, &metrics) else {
        panic!("a broken zone file built")
    };
    let err = err.to_string();
    assert!(
        err.contains("plugin/file") && err.contains(&format!("{}:4: ", db.display())),
        "{err}"
    );
    // A missing file with `reload 0` is an error too; with reload it is retried (SERVFAIL).
    let missing = dir.path().join("db.missing");
    let corefile = format!(
        "example.org:0 {{\n file {} {{\n  reload 0\n }}\n}}\n",
        missing.display()
    );
    let cfg = clusterdns::config::load("Corefile", &corefile, 53).unwrap();
    assert!(clusterdns::server::build(&cfg, &metrics).is_err());
    let s = start(
        &format!(
            "example.org:0 {{\n bind 127.0.0.1\n file {}\n}}\n",
            missing.display()
        ),
        vec![],
    )
    .await;
    let r = udp(s.dns(), &query("www.example.org.", RecordType::A, None)).await;
    assert_eq!(r.metadata.response_code, ResponseCode::ServFail);
    s.running.shutdown().await;
}

#[tokio::test]
async fn fallthrough_and_transfers() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db.example.org");
    std::fs::write(&db, small_zone(1, "192.0.2.1")).unwrap();
    let s = start(
        &format!(
            "example.org:0 {{\n bind 127.0.0.1\n file {} {{\n  fallthrough\n }}\n whoami\n}}\n",
            db.display()
        ),
        vec![],
    )
    .await;
    // A missing name goes on to whoami; an existing one is answered.
    let r = udp(s.dns(), &query("nope.example.org.", RecordType::A, None)).await;
    assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    assert_eq!(r.additionals.len(), 2, "whoami answered: {r:?}");
    let r = udp(s.dns(), &query("www.example.org.", RecordType::A, None)).await;
    assert_eq!(www_a(&r).as_deref(), Some("192.0.2.1"));
    // No transfer plugin: AXFR is refused.
    let r = crate::util::tcp(s.dns(), &query("example.org.", RecordType::AXFR, None)).await;
    assert_eq!(r.metadata.response_code, ResponseCode::Refused);
    s.running.shutdown().await;
}
