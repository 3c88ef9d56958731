//! One upstream: exchanges over UDP or TCP, and its health (consecutive failures, probes).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query};
use hickory_proto::rr::{DNSClass, Name, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

/// Why an exchange failed.
#[derive(Debug, thiserror::Error)]
pub enum ExchangeError {
    /// Socket error.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// No (matching) reply in time.
    #[error("i/o timeout")]
    Timeout,
    /// The reply did not decode.
    #[error("bad reply: {0}")]
    Decode(String),
}

/// Transport for one exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// UDP.
    Udp,
    /// TCP (length-prefixed).
    Tcp,
}

/// An upstream and its health.
#[derive(Debug)]
pub struct Proxy {
    /// The upstream's address.
    pub addr: SocketAddr,
    /// Label for metrics (`IP:PORT`).
    pub label: String,
    fails: AtomicU32,
    checking: AtomicBool,
}

/// Whether a reply answers `query` (same name, case-insensitively, type and class).
pub fn matches(query: &Query, reply: &Message) -> bool {
    reply.queries.len() == 1 && {
        let q = &reply.queries[0];
        q.query_type() == query.query_type()
            && q.query_class() == query.query_class()
            && q.name() == query.name()
    }
}

impl Proxy {
    /// A healthy upstream at `addr`.
    pub fn new(addr: SocketAddr) -> Self {
        Self {
            addr,
            label: addr.to_string(),
            fails: AtomicU32::new(0),
            checking: AtomicBool::new(false),
        }
    }

    /// Down when its consecutive failures exceed `max_fails` (never with 0).
    pub fn down(&self, max_fails: u32) -> bool {
        max_fails != 0 && self.fails.load(Ordering::Relaxed) > max_fails
    }

    /// Sends `msg` and waits for the reply with the same id and question; anything else on the
    /// socket is ignored (a spoofed or stale datagram does not end the wait).
    pub async fn exchange(
        &self,
        msg: &Message,
        transport: Transport,
        timeout: Duration,
    ) -> Result<Message, ExchangeError> {
        let wire = msg
            .to_vec()
            .map_err(|e| ExchangeError::Decode(e.to_string()))?;
        let query = msg.queries.first().cloned();
        let fut = async {
            match transport {
                Transport::Udp => {
                    let bind: SocketAddr = if self.addr.is_ipv4() {
                        "0.0.0.0:0".parse().expect("literal")
                    } else {
                        "[::]:0".parse().expect("literal")
                    };
                    let sock = UdpSocket::bind(bind).await?;
                    sock.connect(self.addr).await?;
                    sock.send(&wire).await?;
                    let mut buf = vec![0u8; 65_535];
                    loop {
                        let n = sock.recv(&mut buf).await?;
                        let Ok(reply) = Message::from_vec(&buf[..n]) else {
                            continue;
                        };
                        if reply.metadata.id == msg.metadata.id
                            && query.as_ref().is_none_or(|q| matches(q, &reply))
                        {
                            return Ok(reply);
                        }
                    }
                }
                Transport::Tcp => {
                    let mut s = TcpStream::connect(self.addr).await?;
                    let len = u16::try_from(wire.len())
                        .map_err(|_| ExchangeError::Decode("query too large".into()))?;
                    let mut out = Vec::with_capacity(wire.len() + 2);
                    out.extend_from_slice(&len.to_be_bytes());
                    out.extend_from_slice(&wire);
                    s.write_all(&out).await?;
                    loop {
                        let n = s.read_u16().await? as usize;
                        let mut buf = vec![0u8; n];
                        s.read_exact(&mut buf).await?;
                        let reply = Message::from_vec(&buf)
                            .map_err(|e| ExchangeError::Decode(e.to_string()))?;
                        if reply.metadata.id == msg.metadata.id {
                            return Ok(reply);
                        }
                    }
                }
            }
        };
        match tokio::time::timeout(timeout, fut).await {
            Ok(r) => r,
            Err(_) => Err(ExchangeError::Timeout),
        }
    }

    /// Records a success: the upstream is healthy again.
    pub fn ok(&self) {
        self.fails.store(0, Ordering::Relaxed);
    }

    /// Records a failure and starts probing it (one probe loop at a time) until it answers.
    pub fn failed(self: &Arc<Self>, hc: HealthCheck, on_fail: impl Fn() + Send + 'static) {
        if hc.max_fails == 0 {
            return;
        }
        self.fails.fetch_add(1, Ordering::Relaxed);
        if self.checking.swap(true, Ordering::AcqRel) {
            return;
        }
        let me = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(hc.interval).await;
                let probe = hc.probe();
                match me
                    .exchange(&probe, hc.transport, Duration::from_secs(1))
                    .await
                {
                    Ok(_) => {
                        me.ok();
                        break;
                    }
                    Err(_) => {
                        on_fail();
                        me.fails.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            me.checking.store(false, Ordering::Release);
        });
    }
}

/// How to probe a failed upstream.
#[derive(Debug, Clone)]
pub struct HealthCheck {
    /// Probe interval.
    pub interval: Duration,
    /// `max_fails` (0 disables checks).
    pub max_fails: u32,
    /// Probe with RD set.
    pub recursion: bool,
    /// Name to probe (`NS` query).
    pub domain: Name,
    /// Transport (TCP with `force_tcp`).
    pub transport: Transport,
}

impl HealthCheck {
    fn probe(&self) -> Message {
        let mut m = Message::new(rand::random(), MessageType::Query, OpCode::Query);
        m.metadata.recursion_desired = self.recursion;
        let mut q = Query::query(self.domain.clone(), RecordType::NS);
        q.set_query_class(DNSClass::IN);
        m.add_query(q);
        m
    }
}

/// The message sent upstream for a client request: a fresh id, the question as asked, RD/CD
/// as the client set them, and the client's EDNS buffer and DO bit.
pub fn upstream_query(query: &Query, rd: bool, cd: bool, edns: Option<&Edns>) -> Message {
    let mut m = Message::new(rand::random(), MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = rd;
    m.metadata.checking_disabled = cd;
    m.add_query(query.clone());
    if let Some(e) = edns {
        let mut out = Edns::new();
        out.set_max_payload(e.max_payload().max(512));
        out.set_dnssec_ok(e.flags().dnssec_ok);
        m.set_edns(out);
    }
    m
}
