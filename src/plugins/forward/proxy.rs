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

/// How to reach a `tls://` upstream.
pub struct TlsSetup {
    /// The client configuration (roots, client certificate).
    pub connector: tokio_rustls::TlsConnector,
    /// The name the upstream's certificate must carry.
    pub name: rustls_pki_types::ServerName<'static>,
}

/// A stream connection to an upstream (TCP, or TLS over TCP).
trait Conn: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Conn for T {}

/// A stream connection and its local address (for dnstap).
type Pooled = (Box<dyn Conn>, Option<SocketAddr>);

/// Idle connections kept per upstream at most.
const POOL_MAX: usize = 16;

/// An upstream, its idle connections and its health.
pub struct Proxy {
    /// The upstream's address.
    pub addr: SocketAddr,
    /// Label for metrics (`IP:PORT`, `tls://IP:PORT`).
    pub label: String,
    fails: AtomicU32,
    checking: AtomicBool,
    tls: Option<Arc<TlsSetup>>,
    expire: Duration,
    idle: std::sync::Mutex<Vec<(Pooled, std::time::Instant)>>,
    source: Option<std::net::IpAddr>,
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.label)
    }
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
    /// A healthy upstream at `addr` (over TLS with `tls`); idle connections are reused for
    /// up to `expire`.
    pub fn new(addr: SocketAddr, tls: Option<Arc<TlsSetup>>, expire: Duration) -> Self {
        Self {
            addr,
            label: if tls.is_some() {
                format!("tls://{addr}")
            } else {
                addr.to_string()
            },
            fails: AtomicU32::new(0),
            checking: AtomicBool::new(false),
            tls,
            expire,
            idle: std::sync::Mutex::new(Vec::new()),
            source: None,
        }
    }

    /// Sends from `source` (`source_address`) instead of the address the kernel picks.
    pub fn with_source(mut self, source: Option<std::net::IpAddr>) -> Self {
        self.source = source;
        self
    }

    /// Whether this upstream speaks DNS over TLS.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    fn take_idle(&self) -> Option<Pooled> {
        let mut idle = self.idle.lock().expect("pool lock");
        while let Some((c, since)) = idle.pop() {
            if since.elapsed() < self.expire {
                return Some(c);
            }
        }
        None
    }

    fn put_back(&self, c: Pooled) {
        let mut idle = self.idle.lock().expect("pool lock");
        if idle.len() < POOL_MAX {
            idle.push((c, std::time::Instant::now()));
        }
    }

    async fn connect(&self) -> Result<Pooled, ExchangeError> {
        let tcp = match self.source {
            None => TcpStream::connect(self.addr).await?,
            Some(ip) => {
                let sock = if ip.is_ipv4() {
                    tokio::net::TcpSocket::new_v4()?
                } else {
                    tokio::net::TcpSocket::new_v6()?
                };
                sock.bind(SocketAddr::new(ip, 0))?;
                sock.connect(self.addr).await?
            }
        };
        let _ = tcp.set_nodelay(true);
        let local = tcp.local_addr().ok();
        Ok(match &self.tls {
            None => (Box::new(tcp), local),
            Some(t) => (
                Box::new(t.connector.connect(t.name.clone(), tcp).await?),
                local,
            ),
        })
    }

    /// One query on a stream connection: a pooled one when there is one (a stale one is
    /// replaced by a fresh connection once), else a new one; kept for reuse after success.
    async fn stream_exchange(
        &self,
        wire: &[u8],
        id: u16,
        local: &mut Option<SocketAddr>,
    ) -> Result<Message, ExchangeError> {
        let len = u16::try_from(wire.len())
            .map_err(|_| ExchangeError::Decode("query too large".into()))?;
        let mut framed = Vec::with_capacity(wire.len() + 2);
        framed.extend_from_slice(&len.to_be_bytes());
        framed.extend_from_slice(wire);
        for attempt in 0..2 {
            let ((mut conn, from), reused) = match self.take_idle() {
                Some(c) if attempt == 0 => (c, true),
                _ => (self.connect().await?, false),
            };
            *local = from;
            let result: Result<Message, ExchangeError> = async {
                conn.write_all(&framed).await?;
                conn.flush().await?;
                loop {
                    let n = conn.read_u16().await? as usize;
                    let mut buf = vec![0u8; n];
                    conn.read_exact(&mut buf).await?;
                    let reply = Message::from_vec(&buf)
                        .map_err(|e| ExchangeError::Decode(e.to_string()))?;
                    // A reply to an earlier query that timed out on this connection: skip.
                    if reply.metadata.id == id {
                        return Ok(reply);
                    }
                }
            }
            .await;
            match result {
                Ok(reply) => {
                    self.put_back((conn, from));
                    return Ok(reply);
                }
                Err(_) if reused => continue,
                Err(e) => return Err(e),
            }
        }
        Err(ExchangeError::Timeout)
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
        self.exchange_from(msg, transport, timeout, &mut None).await
    }

    /// [`Proxy::exchange`], also telling the local address the query went from (dnstap).
    pub async fn exchange_from(
        &self,
        msg: &Message,
        transport: Transport,
        timeout: Duration,
        local: &mut Option<SocketAddr>,
    ) -> Result<Message, ExchangeError> {
        let wire = msg
            .to_vec()
            .map_err(|e| ExchangeError::Decode(e.to_string()))?;
        let query = msg.queries.first().cloned();
        let transport = if self.tls.is_some() {
            Transport::Tcp
        } else {
            transport
        };
        let fut = async {
            match transport {
                Transport::Udp => {
                    let bind: SocketAddr = match self.source {
                        Some(ip) => SocketAddr::new(ip, 0),
                        None if self.addr.is_ipv4() => "0.0.0.0:0".parse().expect("literal"),
                        None => "[::]:0".parse().expect("literal"),
                    };
                    let sock = UdpSocket::bind(bind).await?;
                    sock.connect(self.addr).await?;
                    *local = sock.local_addr().ok();
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
                    let reply = self.stream_exchange(&wire, msg.metadata.id, local).await?;
                    if query.as_ref().is_none_or(|q| matches(q, &reply)) {
                        Ok(reply)
                    } else {
                        Err(ExchangeError::Decode("reply to another question".into()))
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
/// as the client set them, and the client's EDNS buffer, DO bit and options (as CoreDNS sends
/// the request it got, so `rewrite edns0` reaches the upstream).
pub fn upstream_query(query: &Query, rd: bool, cd: bool, edns: Option<&Edns>) -> Message {
    let mut m = Message::new(rand::random(), MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = rd;
    m.metadata.checking_disabled = cd;
    m.add_query(query.clone());
    if let Some(e) = edns {
        let mut out = Edns::new();
        out.set_max_payload(e.max_payload().max(512));
        out.set_dnssec_ok(e.flags().dnssec_ok);
        *out.options_mut() = e.options().clone();
        m.set_edns(out);
    }
    m
}
