//! `dnstap` against a real collector: Debian's `fstrm_capture` (Frame Streams, bidirectional
//! handshake) writes what clusterdns sends to a file; `dnstap-ldns` and our own decoding of that
//! file check the message types and contents. Plus the faults: no collector, a collector that
//! stops reading (queries must still be answered), a collector that restarts (reconnect).

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use clusterdns::plugins::dnstap::pb;
use hickory_proto::op::Message;
use hickory_proto::rr::RecordType;
use prost::Message as _;

use crate::util::{free_port, query, start, stub_upstream, tcp, udp};

/// A running `fstrm_capture`; stopped (SIGINT, so it closes its file) when dropped.
struct Capture {
    child: Child,
}

impl Capture {
    fn unix(sock: &Path, out: &Path) -> Self {
        Self::spawn(&["-u", &sock.display().to_string()], out)
    }

    fn tcp(port: u16, out: &Path) -> Self {
        Self::spawn(&["-a", "127.0.0.1", "-p", &port.to_string()], out)
    }

    fn spawn(args: &[&str], out: &Path) -> Self {
        let child = Command::new("fstrm_capture")
            .args(["-t", "protobuf:dnstap.Dnstap"])
            .args(args)
            .args(["-w", &out.display().to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("fstrm_capture (fstrm-bin, installed by .ci/run)");
        Self { child }
    }

    /// Stops it and waits until its file is closed.
    fn stop(mut self) {
        self.interrupt();
    }

    fn interrupt(&mut self) {
        let _ = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            self.interrupt();
        }
    }
}

/// Waits until the collector listens on `path` (the file appears at bind(), before listen():
/// a connect in between is refused, and the sink would not dial again for 10 s).
async fn wait_for(path: &Path) {
    for _ in 0..250 {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{} never appeared", path.display());
}

async fn wait_for_port(port: u16) {
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("nothing listens on {port}");
}

/// The dnstap payloads of a Frame Streams file (control frames skipped).
fn frames(path: &Path) -> Vec<pb::Dnstap> {
    let data = std::fs::read(path).unwrap_or_default();
    let mut out = Vec::new();
    let mut at = 0;
    let u32_at = |i: usize| u32::from_be_bytes(data[i..i + 4].try_into().unwrap()) as usize;
    while at + 4 <= data.len() {
        let len = u32_at(at);
        at += 4;
        if len == 0 {
            let clen = u32_at(at);
            at += 4 + clen;
            continue;
        }
        out.push(pb::Dnstap::decode(&data[at..at + len]).unwrap());
        at += len;
    }
    out
}

async fn ldns(path: &Path, yaml: bool) -> String {
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let out = Command::new("dnstap-ldns")
            .arg(if yaml { "-y" } else { "-q" })
            .arg("-r")
            .arg(&path)
            .output()
            .expect("dnstap-ldns (installed by .ci/run)");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    })
    .await
    .unwrap()
}

fn kind(d: &pb::Dnstap) -> pb::MessageType {
    pb::MessageType::try_from(d.message.as_ref().unwrap().r#type).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_and_forwarder_messages_reach_fstrm_capture_on_a_unix_socket() {
    let dir = tempfile::tempdir().unwrap();
    let (sock, file) = (dir.path().join("tap.sock"), dir.path().join("out.fstrm"));
    let cap = Capture::unix(&sock, &file);
    wait_for(&sock).await;
    let stub = stub_upstream(&[("www.example.org.", "192.0.2.80".parse().unwrap())]).await;
    let corefile = format!(
        ".:0 {{\n bind 127.0.0.1\n dnstap unix://{} full {{\n  identity test-identity\n  version test-version\n  extra \"q={{name}} t={{type}}\"\n }}\n hosts {{\n  192.0.2.10 dot.example.\n  fallthrough\n }}\n forward . {}\n}}\n",
        sock.display(),
        stub.addr
    );
    let s = start(&corefile, vec![]).await;
    let a = udp(s.dns(), &query("dot.example.", RecordType::A, Some(1232))).await;
    assert_eq!(a.answers.len(), 1);
    let f = tcp(s.dns(), &query("www.example.org.", RecordType::A, None)).await;
    assert_eq!(f.answers.len(), 1);
    // Shutting down flushes the queue and ends the stream (STOP/FINISH) before it returns.
    s.running.shutdown().await;
    cap.stop();

    let got = frames(&file);
    let kinds: Vec<pb::MessageType> = got.iter().map(kind).collect();
    use pb::MessageType::*;
    assert_eq!(
        kinds,
        [
            ClientQuery,
            ClientResponse,
            ClientQuery,
            ForwarderQuery,
            ForwarderResponse,
            ClientResponse
        ]
    );
    for d in &got {
        assert_eq!(d.identity.as_deref(), Some(&b"test-identity"[..]));
        assert_eq!(d.version.as_deref(), Some(&b"test-version"[..]));
    }
    // extra: the log plugin's placeholders.
    assert_eq!(got[0].extra.as_deref(), Some(&b"q=dot.example. t=A"[..]));
    assert_eq!(
        got[3].extra.as_deref(),
        Some(&b"q=www.example.org. t=A"[..])
    );
    // CLIENT_QUERY: the client's query as sent (id, EDNS), its address and protocol.
    let m = got[0].message.as_ref().unwrap();
    assert_eq!(m.socket_protocol, Some(pb::SocketProtocol::Udp as i32));
    assert_eq!(m.query_address.as_deref(), Some(&[127, 0, 0, 1][..]));
    let q = Message::from_vec(m.query_message.as_deref().unwrap()).unwrap();
    assert_eq!(q.metadata.id, 4242);
    assert_eq!(q.edns.as_ref().map(|e| e.max_payload()), Some(1232));
    assert!(m.response_message.is_none());
    // CLIENT_RESPONSE: the reply, response time after query time.
    let m = got[1].message.as_ref().unwrap();
    let r = Message::from_vec(m.response_message.as_deref().unwrap()).unwrap();
    assert_eq!(r.answers.len(), 1);
    assert!((m.response_time_sec, m.response_time_nsec) >= (m.query_time_sec, m.query_time_nsec));
    // FORWARDER_*: from our socket to the upstream, over TCP as the client asked.
    let m = got[3].message.as_ref().unwrap();
    assert_eq!(m.socket_protocol, Some(pb::SocketProtocol::Tcp as i32));
    assert_eq!(m.response_address.as_deref(), Some(&[127, 0, 0, 1][..]));
    assert_eq!(m.response_port, Some(u32::from(stub.addr.port())));
    assert!(m.query_port.is_some_and(|p| p != 0));
    let fq = Message::from_vec(m.query_message.as_deref().unwrap()).unwrap();
    let fr = Message::from_vec(
        got[4]
            .message
            .as_ref()
            .unwrap()
            .response_message
            .as_deref()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(fq.metadata.id, fr.metadata.id);
    assert_eq!(fr.answers.len(), 1);

    // The same file through Debian's dnstap reader.
    let quiet = ldns(&file, false).await;
    let lines: Vec<&str> = quiet.lines().collect();
    assert_eq!(lines.len(), 6, "{quiet}");
    for (line, want) in lines.iter().zip([
        "CQ 127.0.0.1 UDP",
        "CR 127.0.0.1 UDP",
        "CQ 127.0.0.1 TCP",
        "FQ 127.0.0.1 TCP",
        "FR 127.0.0.1 TCP",
        "CR 127.0.0.1 TCP",
    ]) {
        assert!(line.contains(want), "{line} lacks {want}");
    }
    assert!(lines[0].contains("\"dot.example.\" IN A"), "{quiet}");
    assert!(lines[3].contains("\"www.example.org.\" IN A"), "{quiet}");
    let yaml = ldns(&file, true).await;
    assert!(yaml.contains("identity: \"test-identity\""), "{yaml}");
    assert!(yaml.contains("type: FORWARDER_RESPONSE"), "{yaml}");
    assert!(yaml.contains("192.0.2.80"), "{yaml}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_sink_without_full_and_a_restarted_collector() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let first = dir.path().join("first.fstrm");
    let cap = Capture::tcp(port, &first);
    wait_for_port(port).await;
    let corefile =
        format!(".:0 {{\n bind 127.0.0.1\n dnstap tcp://127.0.0.1:{port}\n whoami\n}}\n");
    let s = start(&corefile, vec![]).await;
    udp(s.dns(), &query("one.example.", RecordType::A, None)).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    cap.stop();
    let got = frames(&first);
    assert_eq!(got.len(), 2, "{got:?}");
    let m = got[0].message.as_ref().unwrap();
    assert!(m.query_message.is_none(), "no `full`: no wire messages");
    assert_eq!(got[0].version.as_deref(), Some(&b"clusterdns-0.1.0"[..]));

    // The collector is gone: queries are still answered at once (messages are dropped).
    for i in 0..50 {
        let r = udp(
            s.dns(),
            &query(&format!("gone{i}.example."), RecordType::A, None),
        )
        .await;
        assert!(!r.additionals.is_empty());
    }
    // A new collector on the same port gets the later messages: the writer reconnects.
    let second = dir.path().join("second.fstrm");
    let cap = Capture::tcp(port, &second);
    wait_for_port(port).await;
    let mut seen = false;
    for i in 0..40 {
        udp(
            s.dns(),
            &query(&format!("back{i}.example."), RecordType::A, None),
        )
        .await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        if std::fs::metadata(&second).is_ok_and(|m| m.len() > 100) {
            seen = true;
            break;
        }
    }
    s.running.shutdown().await;
    cap.stop();
    assert!(seen, "no reconnect to the new collector");
    let quiet = ldns(&second, false).await;
    // Without `full` there is no message for the reader to show a name from.
    assert!(quiet.contains("CQ 127.0.0.1 UDP 0b"), "{quiet}");
    assert!(quiet.contains("CR 127.0.0.1 UDP 0b"), "{quiet}");
}

/// A collector that takes the handshake and then never reads, and no collector at all: every
/// query is still answered (the writer drops what it cannot send).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_or_missing_collector_never_holds_up_answers() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let stalled = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = stalled.local_addr().unwrap().port();
    tokio::spawn(async move {
        let (mut c, _) = stalled.accept().await.unwrap();
        // READY in, ACCEPT out (with the content type), then never read again.
        let mut head = [0u8; 8];
        c.read_exact(&mut head).await.unwrap();
        let len = u32::from_be_bytes(head[4..8].try_into().unwrap()) as usize;
        let mut body = vec![0u8; len];
        c.read_exact(&mut body).await.unwrap();
        let ct = b"protobuf:dnstap.Dnstap";
        let mut accept = vec![0, 0, 0, 0];
        accept.extend_from_slice(&(12 + ct.len() as u32).to_be_bytes());
        accept.extend_from_slice(&1u32.to_be_bytes());
        accept.extend_from_slice(&1u32.to_be_bytes());
        accept.extend_from_slice(&(ct.len() as u32).to_be_bytes());
        accept.extend_from_slice(ct);
        c.write_all(&accept).await.unwrap();
        tokio::time::sleep(Duration::from_secs(3600)).await;
        drop(c);
    });
    let corefile = format!(
        ".:0 {{\n bind 127.0.0.1\n dnstap tcp://127.0.0.1:{port} full\n dnstap /nonexistent/dnstap.sock full\n whoami\n}}\n"
    );
    let s = start(&corefile, vec![]).await;
    // Enough messages to fill the socket buffers and the 10,000-message queue several times.
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let wire = query("stalled.example.", RecordType::A, None)
        .to_vec()
        .unwrap();
    let mut buf = vec![0u8; 512];
    let mut answered = 0;
    for _ in 0..20_000 {
        sock.send_to(&wire, s.dns()).await.unwrap();
        if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_secs(2), sock.recv(&mut buf)).await {
            answered += 1;
        }
    }
    assert_eq!(answered, 20_000);
    s.running.shutdown().await;
}
