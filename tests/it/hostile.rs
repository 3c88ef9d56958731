//! Hostile traffic over real sockets: malformed datagrams, abusive TCP clients, a query flood
//! toward a slow upstream, forged upstream replies, and panics. Every case prints one line
//! (`hostile: CASE ... RESULT`, on stderr even when output is captured) and checks that a
//! legitimate client is answered while it runs and afterwards.

use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clusterdns::plugins::{Chain, Handler, HandlerError, Next, Request, Response};
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::util::{Load, query, start, tcp, udp, udp_raw};

/// One line per case, past the test harness's capture (it only captures the print macros).
fn report(case: &str, result: &str) {
    let line = format!("hostile: {case:<58} {result}\n");
    let _ = std::io::stderr().write_all(line.as_bytes());
}

// ---- building raw messages -------------------------------------------------------------

fn header(id: u16, flags: u16, qd: u16, an: u16, ns: u16, ar: u16) -> Vec<u8> {
    [id, flags, qd, an, ns, ar]
        .iter()
        .flat_map(|v| v.to_be_bytes())
        .collect()
}

/// RD set, opcode QUERY.
const RD: u16 = 0x0100;

fn name(labels: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for l in labels {
        out.push(l.len() as u8);
        out.extend_from_slice(l);
    }
    out.push(0);
    out
}

fn question(qname: &[u8], qtype: u16, class: u16) -> Vec<u8> {
    let mut out = qname.to_vec();
    out.extend_from_slice(&qtype.to_be_bytes());
    out.extend_from_slice(&class.to_be_bytes());
    out
}

/// An OPT pseudo-record: payload size, version, options as (code, data).
fn opt(payload: u16, version: u8, options: &[(u16, Vec<u8>)]) -> Vec<u8> {
    let mut rdata = Vec::new();
    for (code, data) in options {
        rdata.extend_from_slice(&code.to_be_bytes());
        rdata.extend_from_slice(&(data.len() as u16).to_be_bytes());
        rdata.extend_from_slice(data);
    }
    let mut out = vec![0]; // root name
    out.extend_from_slice(&41u16.to_be_bytes());
    out.extend_from_slice(&payload.to_be_bytes());
    out.extend_from_slice(&[0, version, 0, 0]);
    out.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
    out.extend_from_slice(&rdata);
    out
}

fn www() -> Vec<u8> {
    name(&[b"www", b"example", b"org"])
}

/// A well-formed query for www.example.org A with `extra` appended and the counts given.
fn msg(id: u16, flags: u16, counts: [u16; 4], body: &[&[u8]]) -> Vec<u8> {
    let mut out = header(id, flags, counts[0], counts[1], counts[2], counts[3]);
    for b in body {
        out.extend_from_slice(b);
    }
    out
}

/// What the server must do with a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// No reply at all.
    Drop,
    /// A reply with this rcode (extended rcodes through the OPT record).
    Rcode(u16),
}

const NOERROR: Expect = Expect::Rcode(0);
const FORMERR: Expect = Expect::Rcode(1);
const NOTIMP: Expect = Expect::Rcode(4);
const REFUSED: Expect = Expect::Rcode(5);
const BADVERS: Expect = Expect::Rcode(16);

/// A TCP query/response with a deadline; `None` when the server sends nothing (or closes).
async fn tcp_raw(addr: SocketAddr, bytes: &[u8]) -> Option<Vec<u8>> {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut framed = (bytes.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(bytes);
    s.write_all(&framed).await.unwrap();
    let read = async {
        let n = s.read_u16().await.ok()?;
        let mut buf = vec![0u8; usize::from(n)];
        s.read_exact(&mut buf).await.ok()?;
        Some(buf)
    };
    tokio::time::timeout(Duration::from_millis(500), read)
        .await
        .ok()
        .flatten()
}

impl std::fmt::Display for Expect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Drop => f.write_str("no reply"),
            Self::Rcode(16) => f.write_str("BADVERS"),
            Self::Rcode(n) => write!(f, "{}", ResponseCode::from_low(*n as u8)),
        }
    }
}

fn outcome(reply: &Option<Vec<u8>>, id: u16) -> Expect {
    match reply {
        None => Expect::Drop,
        Some(b) => {
            let m = Message::from_vec(b).expect("the server's reply decodes");
            assert_eq!(m.metadata.id, id, "reply keeps the query's id");
            assert_eq!(
                m.metadata.message_type,
                hickory_proto::op::MessageType::Response
            );
            Expect::Rcode(u16::from(m.metadata.response_code))
        }
    }
}

const LEGIT_COREFILE: &str = "example.org:0 {\n bind 127.0.0.1\n whoami\n}\n";

#[tokio::test]
async fn malformed_datagrams_get_formerr_notimp_badvers_or_a_drop() {
    let s = start(LEGIT_COREFILE, vec![]).await;
    let addr = s.dns();
    let load = Load::start(addr, "legit.example.org.", 1);
    let q = question(&www(), 1, 1);
    let long_label = [b'a'; 64];
    let l63 = [b'b'; 63];
    let too_long = name(&[&l63, &l63, &l63, &l63, &l63]); // 321 octets
    let mut loop_name = vec![0xc0, 12]; // points at itself (offset 12)
    loop_name.extend_from_slice(&[0, 1, 0, 1]);
    // A pointer to a name that comes after it.
    let mut forward = vec![0xc0, 18, 0, 1, 0, 1];
    forward.extend_from_slice(&www());
    let big_option = vec![(65001u16, vec![0x5a; 3000])];
    let repeated: Vec<(u16, Vec<u8>)> = (0..300).map(|_| (65002u16, vec![7; 8])).collect();
    let mut truncated_opt = opt(1232, 0, &[(10, vec![1; 8])]);
    truncated_opt.truncate(truncated_opt.len() - 4);
    let mut in_answer = question(&www(), 1, 1);
    in_answer.extend_from_slice(&opt(1232, 0, &[]));
    #[rustfmt::skip]
    let cases: Vec<(&str, Vec<u8>, Expect, &str)> = vec![
        ("compression loop (pointer to itself)", msg(1, RD, [1, 0, 0, 0], &[&loop_name]), FORMERR,
            "miekg/dns: 'too many compression pointers' -> unpack error -> FORMERR"),
        ("compression pointer forward", msg(2, RD, [1, 0, 0, 0], &[&forward]), FORMERR,
            "RFC 1035 4.1.4: a pointer refers to a prior occurrence"),
        ("label of 64 octets", msg(3, RD, [1, 0, 0, 0], &[&question(&name(&[&long_label]), 1, 1)]), FORMERR,
            "RFC 1035 2.3.4 (labels <= 63); 0x40 is a reserved label type (miekg: ErrRdata)"),
        ("name of 321 octets", msg(4, RD, [1, 0, 0, 0], &[&question(&too_long, 1, 1)]), FORMERR,
            "RFC 1035 2.3.4 (names <= 255); miekg: ErrLongDomain -> FORMERR"),
        ("QDCOUNT 1, no question", msg(5, RD, [1, 0, 0, 0], &[]), FORMERR,
            "counts that lie: miekg unpack error -> FORMERR"),
        ("ARCOUNT 2, one record", msg(6, RD, [1, 0, 0, 2], &[&q, &opt(1232, 0, &[])]), FORMERR,
            "counts that lie: miekg unpack error -> FORMERR"),
        ("truncated OPT record", msg(7, RD, [1, 0, 0, 1], &[&q, &truncated_opt]), FORMERR,
            "truncated RR: miekg unpack error -> FORMERR"),
        ("QDCOUNT 0", msg(8, RD, [0, 0, 0, 0], &[]), FORMERR,
            "miekg DefaultMsgAcceptFunc: Qdcount != 1 -> MsgReject (FORMERR)"),
        ("QDCOUNT 2", msg(9, RD, [2, 0, 0, 0], &[&q, &q]), FORMERR,
            "miekg DefaultMsgAcceptFunc: Qdcount != 1 -> MsgReject (FORMERR)"),
        ("QDCOUNT 65535", msg(10, RD, [65535, 0, 0, 0], &[&q]), FORMERR,
            "miekg DefaultMsgAcceptFunc: Qdcount != 1 -> MsgReject (FORMERR)"),
        ("ARCOUNT 3", msg(11, RD, [1, 0, 0, 3], &[&q]), FORMERR,
            "miekg DefaultMsgAcceptFunc: Arcount > 2 -> MsgReject (FORMERR)"),
        ("opcode 3 (unassigned)", msg(12, RD | (3 << 11), [1, 0, 0, 0], &[&q]), NOTIMP,
            "miekg DefaultMsgAcceptFunc: opcode not QUERY/NOTIFY -> NOTIMP"),
        ("opcode UPDATE", msg(13, 5 << 11, [1, 0, 0, 0], &[&q]), NOTIMP,
            "miekg DefaultMsgAcceptFunc: opcode not QUERY/NOTIFY -> NOTIMP"),
        ("opcode 15", msg(14, RD | (15 << 11), [1, 0, 0, 0], &[&q]), NOTIMP,
            "miekg DefaultMsgAcceptFunc: opcode not QUERY/NOTIFY -> NOTIMP"),
        ("class 42 (unassigned)", msg(15, RD, [1, 0, 0, 0], &[&question(&www(), 1, 42)]), REFUSED,
            "CoreDNS ServeDNS: class != IN without chaos/forward -> REFUSED"),
        ("class CH", msg(16, RD, [1, 0, 0, 0], &[&question(&www(), 16, 3)]), REFUSED,
            "CoreDNS ServeDNS: class != IN without chaos/forward -> REFUSED"),
        ("EDNS version 1", msg(17, RD, [1, 0, 0, 1], &[&q, &opt(1232, 1, &[])]), BADVERS,
            "RFC 6891 6.1.3; CoreDNS edns.Version -> BADVERS"),
        ("EDNS version 255", msg(18, RD, [1, 0, 0, 1], &[&q, &opt(1232, 255, &[])]), BADVERS,
            "RFC 6891 6.1.3; CoreDNS edns.Version -> BADVERS"),
        ("EDNS option of 3000 octets (unknown code)", msg(19, RD, [1, 0, 0, 1], &[&q, &opt(1232, 0, &big_option)]), NOERROR,
            "RFC 6891 6.1.2: unknown options MUST be ignored -> answered"),
        ("300 repeated EDNS options", msg(20, RD, [1, 0, 0, 1], &[&q, &opt(1232, 0, &repeated)]), NOERROR,
            "RFC 6891 6.1.2: unknown options MUST be ignored -> answered"),
        ("two OPT records", msg(21, RD, [1, 0, 0, 2], &[&q, &opt(1232, 0, &[]), &opt(1232, 0, &[])]), FORMERR,
            "RFC 6891 6.1.1: more than one OPT RR -> FORMERR"),
        ("OPT record in the answer section", msg(22, RD, [1, 1, 0, 0], &[&in_answer]), FORMERR,
            "RFC 6891 6.1.1: the OPT RR belongs in the additional section"),
        ("QR set (a response)", msg(23, 0x8000 | RD, [1, 0, 0, 0], &[&q]), Expect::Drop,
            "miekg DefaultMsgAcceptFunc: responses -> MsgIgnore (drop)"),
        ("11 octets (no header)", vec![0, 24, 1, 0, 0, 1, 0, 0, 0, 0, 0], Expect::Drop,
            "miekg serveDNS: header does not unpack -> no reply"),
        ("reserved label type 0x80", msg(25, RD, [1, 0, 0, 0], &[&[0x80, 1, 0, 0, 1, 0, 1]]), FORMERR,
            "RFC 1035 4.1.4 / RFC 6891 5: 10 is reserved; miekg ErrRdata -> FORMERR"),
    ];
    for (case, bytes, want, cite) in &cases {
        let id = u16::from_be_bytes([bytes[0], bytes[1]]);
        let got = outcome(&udp_raw(addr, bytes).await, id);
        assert_eq!(got, *want, "UDP {case} ({cite})");
        // The same over TCP (a drop there leaves the connection open and silent).
        let got_tcp = outcome(&tcp_raw(addr, bytes).await, id);
        assert_eq!(got_tcp, *want, "TCP {case} ({cite})");
        report(case, &format!("{got} over UDP and TCP  [{cite}]"));
    }
    let r = udp(addr, &query("after.example.org.", RecordType::A, None)).await;
    assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    let (sent, failed) = load.finish().await;
    assert!(sent > 10, "legitimate load too small: {sent}");
    assert_eq!(failed, 0, "{failed} of {sent} legitimate queries failed");
    s.running.shutdown().await;
}

/// A panic payload whose destructor panics too: the dispatcher recovers the first panic, and
/// dropping the payload then panics outside the dispatcher's guard — what a panic in decoding
/// or encoding would do. Only the listener's own guard is left to catch it.
struct Bomb;

impl Drop for Bomb {
    fn drop(&mut self) {
        panic!("the panic payload's destructor panicked");
    }
}

/// Panics while answering: `plain.` at once, `bomb.` with a [`Bomb`]; under `later.` it first
/// waits, so the answer continues as a task on the runtime instead of in the UDP reader.
struct Panicker;

#[async_trait::async_trait]
impl Handler for Panicker {
    fn name(&self) -> &'static str {
        "panicker"
    }
    async fn serve(&self, req: &Request, _: Next<'_>) -> Result<Response, HandlerError> {
        let name = req.qname_lower().to_string();
        if name.contains("later.") {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        if name.contains("bomb.") {
            std::panic::panic_any(Bomb);
        }
        panic!("a plugin panicked answering {name}");
    }
}

/// The live UDP reader threads of the listener on `port` (named `udp-N-PORT`).
fn udp_readers(port: u16) -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|comm| {
            comm.trim().starts_with("udp-") && comm.trim().ends_with(&format!("-{port}"))
        })
        .count()
}

fn servfail_with_id(reply: Option<Vec<u8>>, id: u16, case: &str) {
    let reply = reply.unwrap_or_else(|| panic!("{case}: no reply"));
    let m = Message::from_vec(&reply).unwrap();
    assert_eq!(m.metadata.id, id, "{case}");
    assert_eq!(m.metadata.response_code, ResponseCode::ServFail, "{case}");
}

#[tokio::test]
async fn panics_never_stop_a_udp_reader_or_the_tcp_listener() {
    let s = start(
        "example.org:0 panic.test:0 {\n bind 127.0.0.1\n prometheus 127.0.0.1:0\n whoami\n}\n",
        vec![("panic.test.", Chain::new(vec![Arc::new(Panicker)]))],
    )
    .await;
    let addr = s.dns();
    // A thread names itself once it runs: wait for all of them.
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    let t = Instant::now();
    while udp_readers(addr.port()) < cpus && t.elapsed() < Duration::from_secs(2) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let readers = udp_readers(addr.port());
    assert_eq!(readers, cpus, "one reader per CPU");
    let load = Load::start(addr, "legit.example.org.", 1);
    let panics = || s.metrics.panics.get();
    // From 32 source ports each, so that SO_REUSEPORT hands some to every reader.
    for (case, qname, per_query) in [
        ("plugin panics (UDP, in the reader)", "plain.panic.test.", 1),
        (
            "panic escapes the dispatcher (UDP, in the reader)",
            "bomb.panic.test.",
            2,
        ),
        (
            "plugin panics (UDP, as a task)",
            "later.plain.panic.test.",
            1,
        ),
        (
            "panic escapes the dispatcher (UDP, as a task)",
            "later.bomb.panic.test.",
            2,
        ),
    ] {
        let before = panics();
        for i in 0..32u16 {
            let mut q = query(qname, RecordType::A, None);
            q.metadata.id = 1000 + i;
            servfail_with_id(udp_raw(addr, &q.to_vec().unwrap()).await, 1000 + i, case);
        }
        assert_eq!(
            panics() - before,
            32 * per_query,
            "{case}: every panic counted"
        );
        assert_eq!(
            udp_readers(addr.port()),
            readers,
            "{case}: a reader stopped"
        );
        report(
            case,
            &format!(
                "32 x SERVFAIL, {} panics counted, {readers} readers alive",
                32 * per_query
            ),
        );
    }
    // Every reader still answers: 64 fresh source ports.
    for _ in 0..64 {
        let r = udp(addr, &query("after.example.org.", RecordType::A, None)).await;
        assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    }

    // TCP: a panic answers SERVFAIL on that connection, which carries on; the listener too.
    let mut c = TcpStream::connect(addr).await.unwrap();
    for (i, qname) in [
        "plain.panic.test.",
        "bomb.panic.test.",
        "later.bomb.panic.test.",
        "x.example.org.",
    ]
    .iter()
    .enumerate()
    {
        let mut q = query(qname, RecordType::A, None);
        q.metadata.id = 2000 + i as u16;
        let b = q.to_vec().unwrap();
        c.write_all(&(b.len() as u16).to_be_bytes()).await.unwrap();
        c.write_all(&b).await.unwrap();
        let n = c.read_u16().await.unwrap();
        let mut buf = vec![0u8; usize::from(n)];
        c.read_exact(&mut buf).await.unwrap();
        let m = Message::from_vec(&buf).unwrap();
        assert_eq!(m.metadata.id, 2000 + i as u16);
        let want = if qname.ends_with("example.org.") {
            ResponseCode::NoError
        } else {
            ResponseCode::ServFail
        };
        assert_eq!(m.metadata.response_code, want, "TCP {qname}");
    }
    let r = tcp(addr, &query("new.example.org.", RecordType::A, None)).await;
    assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    report(
        "panics over TCP (plugin, escaping, as a task)",
        "SERVFAIL each, the connection and the listener carry on",
    );
    let (_, body) = crate::util::http_get(s.http("127.0.0.1:0"), "/metrics").await;
    assert!(body.contains(&format!("coredns_panics_total {}", panics())));
    let (sent, failed) = load.finish().await;
    assert_eq!(failed, 0, "{failed} of {sent} legitimate queries failed");
    s.running.shutdown().await;
}
