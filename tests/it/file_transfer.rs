//! Zone transfers of `file` zones (CoreDNS's file + transfer): `dig AXFR` of a zone file is
//! the file (knotd serving the same file transfers the same records), IXFR from the current
//! and an older serial, a reload with a new serial sends NOTIFY and transfers the new zone,
//! and knotd as a secondary of a file zone follows a reload through our NOTIFY.

use std::net::SocketAddr;
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::SOA;
use hickory_proto::rr::{Name, RData, Record, RecordType};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use crate::file::{ORIGIN, knotd, zone_text};
use crate::transfer::{dig, knotd_secondary, records, soa_serial, until};
use crate::util::{free_port, start};

/// `dig AXFR ZONE` (or `IXFR=N ZONE`) against `addr`: its records.
fn xfr(addr: SocketAddr, kind: &str, zone: &str) -> Vec<String> {
    records(&dig(addr, &[kind, zone, "+noall", "+answer"]))
}

/// Sorted, lower-case owner names (knotd and clusterdns may differ in letter case only).
fn normalized(rrs: &[String]) -> Vec<String> {
    let mut v: Vec<String> = rrs.iter().map(|r| r.to_lowercase()).collect();
    v.sort();
    v
}

/// A zone of absolute `NAME TTL IN TYPE RDATA` lines, as dig prints them: the file is its own
/// expected transfer.
fn small_zone(serial: u32, extra: &str) -> String {
    format!(
        "example.org. 300 IN SOA ns.example.org. hostmaster.example.org. {serial} 7200 3600 1209600 300\n\
         example.org. 300 IN NS ns.example.org.\n\
         ns.example.org. 300 IN A 192.0.2.53\n\
         www.example.org. 300 IN A 192.0.2.80\n{extra}"
    )
}

/// Checks that `got` is the transfer of a file of [`small_zone`] form: its SOA, its other
/// records (in any order), the SOA again.
fn assert_transfer_of(got: &[String], file: &str) {
    let want = records(file);
    assert_eq!(got.first(), want.first(), "{got:#?}");
    assert_eq!(got.last(), want.first(), "{got:#?}");
    assert_eq!(normalized(&got[..got.len() - 1]), normalized(&want));
}

/// Replaces the file at `path` with `text` at once (a new file renamed over it), so a reload
/// never reads it half-written.
fn replace(path: &std::path::Path, text: &str) {
    let tmp = path.with_extension("new");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn file_block(db: &std::path::Path, reload: &str, to: &str) -> String {
    format!(
        "example.org:0 {{\n bind 127.0.0.1\n file {} {{\n  reload {reload}\n }}\n transfer {{\n  to {to}\n }}\n}}\n",
        db.display()
    )
}

/// The generated zone of the knotd comparison (relative names, `$TTL`, continuation lines,
/// wildcards, delegations with glue, DNAMEs…) transfers as knotd transfers the same file:
/// SOA, every record once, SOA. IXFR from the current serial (or a newer one) is the SOA
/// alone, from an older one the whole zone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dig_axfr_of_a_file_zone_is_the_file() {
    let text = zone_text();
    let knot = knotd(&text, false).await;
    let db = knot.daemon.dir.path().join("example.org.zone");
    let s = start(&file_block(&db, "0", "*"), vec![]).await;
    let ours = xfr(s.dns(), "AXFR", ORIGIN);
    let theirs = xfr(knot.addr, "AXFR", ORIGIN);
    assert!(ours[0].starts_with("example.org. 3600 SOA "), "{ours:#?}");
    assert_eq!(ours.first(), ours.last(), "the transfer ends with its SOA");
    assert_eq!(normalized(&ours), normalized(&theirs));
    // Every record line of the file once (the SOA twice).
    let in_file = text
        .lines()
        .filter(|l| !l.starts_with('$') && !l.trim().is_empty())
        .count();
    assert_eq!(ours.len(), in_file + 1);

    assert_eq!(xfr(s.dns(), "IXFR=2024010101", ORIGIN), ours[..1]);
    assert_eq!(xfr(s.dns(), "IXFR=2024010102", ORIGIN), ours[..1]);
    assert_eq!(
        normalized(&xfr(s.dns(), "IXFR=2024010100", ORIGIN)),
        normalized(&ours)
    );
    // A name inside the zone is not a zone: the file plugin refuses it, as without transfer.
    let sub = dig(s.dns(), &["AXFR", "www.example.org"]);
    assert!(sub.contains("Transfer failed"), "{sub}");
    s.running.shutdown().await;
}

/// A NOTIFY receiver on 127.0.0.1 that answers each NOTIFY with NOERROR and hands it over.
async fn notify_stub() -> (SocketAddr, mpsc::UnboundedReceiver<Message>) {
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = sock.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 4096];
        while let Ok((n, from)) = sock.recv_from(&mut buf).await {
            let Ok(q) = Message::from_vec(&buf[..n]) else {
                continue;
            };
            let mut r = Message::new(q.metadata.id, MessageType::Response, OpCode::Notify);
            r.add_queries(q.queries.clone());
            let _ = sock.send_to(&r.to_vec().unwrap(), from).await;
            if tx.send(q).is_err() {
                return;
            }
        }
    });
    (addr, rx)
}

/// The serial of the next NOTIFY (after checking it is one, for example.org).
async fn next_notify(rx: &mut mpsc::UnboundedReceiver<Message>) -> u32 {
    let m = tokio::time::timeout(Duration::from_secs(15), rx.recv())
        .await
        .expect("a NOTIFY within 15 s")
        .unwrap();
    assert_eq!(m.metadata.op_code, OpCode::Notify);
    assert!(m.metadata.authoritative);
    assert_eq!(m.queries[0].name().to_ascii(), ORIGIN);
    assert_eq!(m.queries[0].query_type(), RecordType::SOA);
    match &m.answers[..] {
        [soa] => clusterdns::plugins::zone_source::serial(soa),
        other => panic!("a NOTIFY carries the SOA: {other:?}"),
    }
}

/// Once listening the server announces the zone; a reload that swaps in a new serial
/// announces it again (CoreDNS's reload.go calls `transfer.Notify`), and a transfer then has
/// the new file's records. A broken file is no change: no NOTIFY, the last zone transfers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_with_a_new_serial_sends_notify_and_transfers_the_new_zone() {
    let (stub, mut notifies) = notify_stub().await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db.example.org");
    let v1 = small_zone(1, "");
    std::fs::write(&db, &v1).unwrap();
    let s = start(&file_block(&db, "100ms", &stub.to_string()), vec![]).await;
    assert_eq!(next_notify(&mut notifies).await, 1);
    assert_transfer_of(&xfr(s.dns(), "AXFR", ORIGIN), &v1);

    let v2 = small_zone(2, "late.example.org. 300 IN A 192.0.2.99\n");
    replace(&db, &v2);
    assert_eq!(next_notify(&mut notifies).await, 2);
    assert_transfer_of(&xfr(s.dns(), "AXFR", ORIGIN), &v2);
    assert_eq!(xfr(s.dns(), "IXFR=2", ORIGIN), records(&v2)[..1]);
    assert_transfer_of(&xfr(s.dns(), "IXFR=1", ORIGIN), &v2);

    replace(
        &db,
        &small_zone(3, "bad.example.org. 300 IN A 192.0.2.300\n"),
    );
    let quiet = tokio::time::timeout(Duration::from_secs(1), notifies.recv()).await;
    assert!(quiet.is_err(), "NOTIFY for a broken file: {quiet:?}");
    assert_transfer_of(&xfr(s.dns(), "AXFR", ORIGIN), &v2);
    s.running.shutdown().await;
}

/// An SOA of example.org with `serial` (the authority of an IXFR).
fn soa(serial: u32) -> Record {
    let n = |s: &str| Name::from_ascii(s).unwrap();
    let data = SOA::new(
        n("ns.example.org."),
        n("hostmaster.example.org."),
        serial,
        7200,
        3600,
        1209600,
        300,
    );
    Record::from_rdata(n(ORIGIN), 300, RData::SOA(data))
}

/// `to 127.0.0.2`: a client at 127.0.0.2 transfers the zone, one at 127.0.0.1 is REFUSED,
/// AXFR and IXFR alike (transfer_test.go TestTransferNotAllowed), and over UDP nobody gets it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_not_in_to_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db.example.org");
    let text = small_zone(7, "");
    std::fs::write(&db, &text).unwrap();
    // The port only keeps our NOTIFYs off 127.0.0.2:53; nothing listens there.
    let to = format!("127.0.0.2:{}", free_port());
    let s = start(&file_block(&db, "0", &to), vec![]).await;
    let from_secondary = |kind: &str| {
        records(&dig(
            s.dns(),
            &["-b", "127.0.0.2", kind, ORIGIN, "+noall", "+answer"],
        ))
    };
    assert_transfer_of(&from_secondary("AXFR"), &text);
    assert_transfer_of(&from_secondary("IXFR=6"), &text);
    for qtype in [RecordType::AXFR, RecordType::IXFR] {
        let mut q = crate::util::query(ORIGIN, qtype, None);
        if qtype == RecordType::IXFR {
            q.add_authority(soa(6));
        }
        let r = crate::util::tcp(s.dns(), &q).await;
        assert_eq!(r.metadata.response_code, ResponseCode::Refused, "{qtype}");
        assert!(r.answers.is_empty(), "{qtype}: {r:?}");
    }
    let r = crate::util::udp(s.dns(), &crate::util::query(ORIGIN, RecordType::AXFR, None)).await;
    assert_eq!(r.metadata.response_code, ResponseCode::Refused);
    s.running.shutdown().await;
}

/// Until its file can be read, a zone is not handed out (an empty zone would wipe the
/// secondary's copy): SERVFAIL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zone_whose_file_is_missing_is_not_transferred() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(
        &file_block(&dir.path().join("db.missing"), "1m", "*"),
        vec![],
    )
    .await;
    let r = crate::util::tcp(s.dns(), &crate::util::query(ORIGIN, RecordType::AXFR, None)).await;
    assert_eq!(r.metadata.response_code, ResponseCode::ServFail);
    s.running.shutdown().await;
}

/// knotd, a secondary of our file zone, loads it; the file is rewritten with a new serial and
/// a new name, our reload swaps it in and NOTIFYs knotd (whose own refresh would wait
/// 7200 s), and knotd then answers the new name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn knotd_secondary_follows_a_reload_through_our_notify() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db.example.org");
    std::fs::write(&db, small_zone(1, "")).unwrap();
    let knot_port = free_port();
    let s = start(
        &file_block(&db, "100ms", &format!("127.0.0.1:{knot_port}")),
        vec![],
    )
    .await;
    let knot = knotd_secondary("example.org", s.dns().port(), knot_port);
    until(
        "knotd loads the zone",
        Duration::from_secs(15),
        &knot,
        || soa_serial(knot.addr, ORIGIN) == Some(1),
    )
    .await;
    assert_eq!(
        dig(knot.addr, &["+short", "www.example.org"]).trim(),
        "192.0.2.80"
    );

    replace(
        &db,
        &small_zone(2, "late.example.org. 300 IN A 192.0.2.99\n"),
    );
    until(
        "knotd follows the NOTIFY",
        Duration::from_secs(20),
        &knot,
        || dig(knot.addr, &["+short", "late.example.org"]).trim() == "192.0.2.99",
    )
    .await;
    assert_eq!(soa_serial(knot.addr, ORIGIN), Some(2));
    // It came by the NOTIFY of serial 2 (knotd's own refresh waits 7200 s), and knotd's IXFR
    // from serial 1 was answered with the whole zone, which it took.
    let log = knot.log();
    assert!(
        log.lines()
            .any(|l| l.contains("notify, incoming") && l.ends_with("serial 2")),
        "knotd saw no NOTIFY of serial 2:\n{log}"
    );
    assert!(
        log.contains("receiving AXFR-style IXFR"),
        "knotd's IXFR was not answered as AXFR:\n{log}"
    );
    drop(knot);
    s.running.shutdown().await;
}
