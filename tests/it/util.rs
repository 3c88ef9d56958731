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
