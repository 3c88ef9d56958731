//! Helpers: start a server from a Corefile string, query it over UDP/TCP, fetch HTTP.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use clusterdns::plugins::Chain;
use clusterdns::plugins::prometheus::Metrics;
use clusterdns::plugins::ready::Readiness;
use clusterdns::{config, server};
use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query};
use hickory_proto::rr::{Name, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

pub struct TestServer {
    pub running: server::Running,
    pub metrics: Arc<Metrics>,
}

impl TestServer {
    /// The first DNS listener; a wildcard listener is reached on 127.0.0.1.
    pub fn dns(&self) -> SocketAddr {
        let a = self.running.dns_addrs[0];
        if a.ip().is_unspecified() {
            SocketAddr::from(([127, 0, 0, 1], a.port()))
        } else {
            a
        }
    }

    pub fn http(&self, configured: &str) -> SocketAddr {
        self.running.http_addrs[configured]
    }
}

/// Loads, builds and starts `corefile`; `chains` replace the chain of the named zones.
pub async fn start(corefile: &str, chains: Vec<(&str, Chain)>) -> TestServer {
    let cfg = config::load("Corefile", corefile, 53).unwrap_or_else(|e| panic!("{e:?}"));
    let metrics = Arc::new(Metrics::new(prometheus::Registry::new()).unwrap());
    let mut built = server::build(&cfg, &metrics).unwrap();
    for (zone, chain) in chains {
        built.set_chain(zone, chain);
    }
    let running = server::start(built, metrics.clone(), Arc::new(Readiness::default()))
        .await
        .unwrap();
    TestServer { running, metrics }
}

pub fn query(name: &str, qtype: RecordType, edns: Option<u16>) -> Message {
    let mut m = Message::new(4242, MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
    if let Some(size) = edns {
        let mut e = Edns::new();
        e.set_max_payload(size);
        m.set_edns(e);
    }
    m
}

/// Sends raw bytes over UDP; `None` when nothing comes back within a second.
pub async fn udp_raw(addr: SocketAddr, bytes: &[u8]) -> Option<Vec<u8>> {
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    sock.send_to(bytes, addr).await.unwrap();
    let mut buf = vec![0u8; 65535];
    match tokio::time::timeout(Duration::from_secs(1), sock.recv(&mut buf)).await {
        Ok(Ok(n)) => Some(buf[..n].to_vec()),
        _ => None,
    }
}

pub async fn udp(addr: SocketAddr, msg: &Message) -> Message {
    let bytes = udp_raw(addr, &msg.to_vec().unwrap())
        .await
        .expect("no UDP reply");
    Message::from_vec(&bytes).unwrap()
}

pub async fn tcp(addr: SocketAddr, msg: &Message) -> Message {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let bytes = msg.to_vec().unwrap();
    s.write_all(&(bytes.len() as u16).to_be_bytes())
        .await
        .unwrap();
    s.write_all(&bytes).await.unwrap();
    let len = tokio::time::timeout(Duration::from_secs(2), s.read_u16())
        .await
        .unwrap()
        .unwrap();
    let mut buf = vec![0u8; len as usize];
    s.read_exact(&mut buf).await.unwrap();
    Message::from_vec(&buf).unwrap()
}

/// A minimal HTTP/1.0 GET: returns (status, body).
pub async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_string(&mut out))
        .await
        .unwrap()
        .unwrap();
    let status = out.split_whitespace().nth(1).unwrap().parse().unwrap();
    let body = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// A free TCP+UDP port on 127.0.0.1 (for tests that run the binary).
pub fn free_port() -> u16 {
    loop {
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = udp.local_addr().unwrap().port();
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// A stub upstream on 127.0.0.1 (UDP and TCP, same port) that answers every A query for a
/// name in `records` with its address (TTL 300, RA set), anything else with NXDOMAIN, and counts
/// the queries it sees.
pub struct Stub {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Queries received so far.
    pub seen: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

pub async fn stub_upstream(records: &[(&str, std::net::Ipv4Addr)]) -> Stub {
    use hickory_proto::op::{MessageType, ResponseCode};
    use hickory_proto::rr::{RData, Record, rdata::A};
    use std::sync::atomic::Ordering;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let records: std::sync::Arc<Vec<(String, std::net::Ipv4Addr)>> = std::sync::Arc::new(
        records
            .iter()
            .map(|(n, ip)| (n.to_ascii_lowercase(), *ip))
            .collect(),
    );
    let seen = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let answer = {
        let (records, seen) = (records.clone(), seen.clone());
        move |raw: &[u8]| -> Option<Vec<u8>> {
            seen.fetch_add(1, Ordering::Relaxed);
            let q = Message::from_vec(raw).ok()?;
            let mut r = Message::new(q.metadata.id, MessageType::Response, q.metadata.op_code);
            r.metadata.recursion_desired = q.metadata.recursion_desired;
            r.metadata.recursion_available = true;
            let question = q.queries.first()?.clone();
            let name = question.name().to_ascii().to_ascii_lowercase();
            r.add_query(question.clone());
            match records.iter().find(|(n, _)| *n == name) {
                Some((_, ip)) if question.query_type() == RecordType::A => {
                    r.add_answer(Record::from_rdata(
                        question.name().clone(),
                        300,
                        RData::A(A(*ip)),
                    ));
                }
                Some(_) => {}
                None => r.metadata.response_code = ResponseCode::NXDomain,
            }
            r.to_vec().ok()
        }
    };
    let (udp, tcp) = bind_pair().await;
    let addr = udp.local_addr().unwrap();
    let a = answer.clone();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 65535];
        while let Ok((n, src)) = udp.recv_from(&mut buf).await {
            if let Some(out) = a(&buf[..n]) {
                let _ = udp.send_to(&out, src).await;
            }
        }
    });
    tokio::spawn(async move {
        while let Ok((mut c, _)) = tcp.accept().await {
            let a = answer.clone();
            tokio::spawn(async move {
                while let Ok(n) = c.read_u16().await {
                    let mut b = vec![0u8; n as usize];
                    if c.read_exact(&mut b).await.is_err() {
                        return;
                    }
                    let Some(out) = a(&b) else { return };
                    let mut framed = (out.len() as u16).to_be_bytes().to_vec();
                    framed.extend_from_slice(&out);
                    if c.write_all(&framed).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    Stub { addr, seen }
}

/// A dnsperf-like load: `clients` tasks querying `name` back to back over UDP until stopped,
/// counting queries and failures (no reply within a second, or an rcode other than NOERROR).
pub struct Load {
    stop: Arc<std::sync::atomic::AtomicBool>,
    sent: Arc<std::sync::atomic::AtomicUsize>,
    failed: Arc<std::sync::atomic::AtomicUsize>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    pub fn start(addr: SocketAddr, name: &str, clients: usize) -> Self {
        use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicUsize::new(0));
        let failed = Arc::new(AtomicUsize::new(0));
        let bytes = query(name, RecordType::A, None).to_vec().unwrap();
        let tasks = (0..clients)
            .map(|_| {
                let (stop, sent, failed, bytes) =
                    (stop.clone(), sent.clone(), failed.clone(), bytes.clone());
                tokio::spawn(async move {
                    while !stop.load(Ordering::Relaxed) {
                        sent.fetch_add(1, Ordering::Relaxed);
                        let ok = udp_raw(addr, &bytes).await.is_some_and(|b| {
                            Message::from_vec(&b).is_ok_and(|m| {
                                m.metadata.response_code == hickory_proto::op::ResponseCode::NoError
                            })
                        });
                        if !ok {
                            failed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                })
            })
            .collect();
        Self {
            stop,
            sent,
            failed,
            tasks,
        }
    }

    /// Stops the clients; (queries sent, failed).
    pub async fn finish(self) -> (usize, usize) {
        use std::sync::atomic::Ordering;
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            let _ = t.await;
        }
        (
            self.sent.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
        )
    }
}

/// UDP and TCP sockets on the same ephemeral 127.0.0.1 port (retrying when the TCP side of a
/// free UDP port is taken).
pub async fn bind_pair() -> (UdpSocket, tokio::net::TcpListener) {
    for _ in 0..50 {
        let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        if let Ok(tcp) = tokio::net::TcpListener::bind(udp.local_addr().unwrap()).await {
            return (udp, tcp);
        }
    }
    panic!("no free UDP+TCP port pair");
}

/// A file of tests/fixtures.
pub fn fixture(name: &str) -> String {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
        .display()
        .to_string()
}

/// A client TLS connection to `addr` for `dns.test`, trusting the fixtures' CA; `client` is the
/// client certificate and key (fixture names) to offer.
pub async fn tls_connect(
    addr: SocketAddr,
    client: Option<(&str, &str)>,
    alpn: &[&[u8]],
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, String> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(fixture("dot-ca.crt")).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let b = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots);
    let cfg = match client {
        Some((cert, key)) => {
            let chain: Vec<_> = CertificateDer::pem_file_iter(fixture(cert))
                .unwrap()
                .map(Result::unwrap)
                .collect();
            b.with_client_auth_cert(chain, PrivateKeyDer::from_pem_file(fixture(key)).unwrap())
                .unwrap()
        }
        None => b.with_no_client_auth(),
    };
    let mut cfg = cfg;
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(ServerName::try_from("dns.test").unwrap(), tcp)
        .await
        .map_err(|e| e.to_string())
}

/// One DNS-over-TLS exchange (see [`tls_connect`]).
pub async fn dot(
    addr: SocketAddr,
    msg: &Message,
    client: Option<(&str, &str)>,
) -> Result<Message, String> {
    let mut tls = tls_connect(addr, client, &[]).await?;
    let bytes = msg.to_vec().unwrap();
    let io = async {
        tls.write_all(&(bytes.len() as u16).to_be_bytes()).await?;
        tls.write_all(&bytes).await?;
        let n = tls.read_u16().await?;
        let mut buf = vec![0u8; usize::from(n)];
        tls.read_exact(&mut buf).await?;
        Ok::<_, std::io::Error>(buf)
    };
    let buf = tokio::time::timeout(Duration::from_secs(5), io)
        .await
        .map_err(|_| "timeout".to_string())?
        .map_err(|e| e.to_string())?;
    Message::from_vec(&buf).map_err(|e| e.to_string())
}

/// One DNS-over-HTTPS POST over HTTP/1.1 (see [`tls_connect`]).
pub async fn doh_post(addr: SocketAddr, msg: &Message) -> Result<Message, String> {
    let mut tls = tls_connect(addr, None, &[b"http/1.1"]).await?;
    let wire = msg.to_vec().unwrap();
    let head = format!(
        "POST /dns-query HTTP/1.1\r\nHost: dns.test\r\nContent-Type: application/dns-message\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        wire.len()
    );
    let io = async {
        tls.write_all(head.as_bytes()).await?;
        tls.write_all(&wire).await?;
        let mut out = Vec::new();
        let _ = tls.read_to_end(&mut out).await;
        Ok::<_, std::io::Error>(out)
    };
    let out = tokio::time::timeout(Duration::from_secs(5), io)
        .await
        .map_err(|_| "timeout".to_string())?
        .map_err(|e| e.to_string())?;
    let at = out
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("no HTTP reply")?;
    if !out.starts_with(b"HTTP/1.1 200") {
        return Err(String::from_utf8_lossy(&out[..at]).into_owned());
    }
    Message::from_vec(&out[at + 4..]).map_err(|e| e.to_string())
}

/// `python3` able to import dnspython and PyYAML, which the conformance kit and its fake API
/// server need. When the system's python3 lacks them, the first call installs them with
/// `python3 -m pip install --target` into `target/tmp/pydeps` (once per checkout; needs PyPI
/// that one time) and every command gets `PYTHONPATH` pointing there, so `cargo test` needs
/// no set-up by hand.
pub fn python3() -> std::process::Command {
    let mut c = std::process::Command::new("python3");
    if let Some(dir) = python_deps() {
        c.env("PYTHONPATH", dir);
    }
    c
}

fn python_deps() -> Option<&'static std::path::Path> {
    use std::process::Command;
    static DEPS: std::sync::OnceLock<Option<std::path::PathBuf>> = std::sync::OnceLock::new();
    const PROBE: &str = "import dns.message, yaml";
    let imports = |path: Option<&std::path::Path>| {
        let mut c = Command::new("python3");
        c.args(["-c", PROBE]);
        if let Some(p) = path {
            c.env("PYTHONPATH", p);
        }
        c.output()
            .expect("python3 is needed (the conformance kit and its fake API server)")
            .status
            .success()
    };
    DEPS.get_or_init(|| {
        if imports(None) {
            return None;
        }
        let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("pydeps");
        if !imports(Some(&dir)) {
            let out = Command::new("python3")
                .args([
                    "-m",
                    "pip",
                    "install",
                    "--quiet",
                    "--disable-pip-version-check",
                ])
                .arg("--target")
                .arg(&dir)
                .args(["dnspython", "PyYAML"])
                .output()
                .expect("python3 -m pip");
            assert!(
                out.status.success() && imports(Some(&dir)),
                "installing dnspython and PyYAML into {} failed (python3 needs pip: \
                 apt-get install python3-pip):\n{}",
                dir.display(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Some(dir)
    })
    .as_deref()
}
