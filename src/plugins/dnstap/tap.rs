//! One dnstap sink: a bounded queue the query path drops messages into without waiting, and a
//! writer task that encodes them and writes them as Frame Streams to the sink, reconnecting
//! when the connection breaks.
//!
//! Frame Streams (the fstrm protocol): a data frame is a big-endian u32 length and the payload;
//! a control frame is a zero length, then the control frame's length, its type and its fields
//! (`CONTENT_TYPE` = 1: length and bytes). The bidirectional handshake is READY → ACCEPT →
//! START, and STOP → FINISH at the end.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use prost::Message as _;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::pb;
use super::setup::{DnstapConfig, Endpoint};

/// The content type dnstap frames carry.
pub const CONTENT_TYPE: &[u8] = b"protobuf:dnstap.Dnstap";
/// Messages per queue unit (CoreDNS's `queueSize`).
const QUEUE_UNIT: usize = 10_000;
/// Connect, handshake and write deadline (CoreDNS's `tcpTimeout`).
const IO_TIMEOUT: Duration = Duration::from_secs(4);
/// How often buffered frames are flushed (CoreDNS's `flushTimeout`).
const FLUSH_EVERY: Duration = Duration::from_secs(1);
/// How often drops are logged and a lost sink is dialled again (`errorCheckInterval`).
const CHECK_EVERY: Duration = Duration::from_secs(10);

const CONTROL_ACCEPT: u32 = 0x01;
const CONTROL_START: u32 = 0x02;
const CONTROL_STOP: u32 = 0x03;
const CONTROL_READY: u32 = 0x04;
const CONTROL_FINISH: u32 = 0x05;
const FIELD_CONTENT_TYPE: u32 = 0x01;

/// One queued message and its `extra` (rendered on the query path when configured).
type Item = (pb::Message, Option<Vec<u8>>);

/// A dnstap sink as the query path sees it.
pub struct Tap {
    /// `full`: include wire-format messages.
    pub full: bool,
    /// The `extra` format, if any.
    pub extra: Option<String>,
    tx: mpsc::Sender<Item>,
    rx: std::sync::Mutex<Option<mpsc::Receiver<Item>>>,
    cfg: DnstapConfig,
    /// Messages dropped (queue full, or no sink) since the last report.
    dropped: Arc<AtomicU64>,
}

impl std::fmt::Debug for Tap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tap({})", self.cfg.endpoint)
    }
}

/// A message's address, port, family and protocol fields.
pub fn set_query_addr(m: &mut pb::Message, a: SocketAddr) {
    let (family, bytes) = family_and_bytes(a.ip());
    m.socket_family = Some(family as i32);
    m.query_address = Some(bytes);
    m.query_port = Some(u32::from(a.port()));
}

/// The responder's address and port.
pub fn set_response_addr(m: &mut pb::Message, a: SocketAddr) {
    let (family, bytes) = family_and_bytes(a.ip());
    m.socket_family = Some(family as i32);
    m.response_address = Some(bytes);
    m.response_port = Some(u32::from(a.port()));
}

/// IPv4 (also IPv4-mapped IPv6) as 4 octets, else 16 (CoreDNS's `socketFamilyAndAddress`).
fn family_and_bytes(ip: IpAddr) -> (pb::SocketFamily, Vec<u8>) {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    match ip {
        IpAddr::V4(v4) => (pb::SocketFamily::Inet, v4.octets().to_vec()),
        IpAddr::V6(v6) => (pb::SocketFamily::Inet6, v6.octets().to_vec()),
    }
}

/// Seconds and nanoseconds since the epoch.
pub fn timestamp(t: SystemTime) -> (u64, u32) {
    let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    (d.as_secs(), d.subsec_nanos())
}

impl Tap {
    /// A sink for `cfg`; nothing is opened until [`Tap::start`].
    pub fn new(cfg: DnstapConfig) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE_UNIT * cfg.queue as usize);
        Self {
            full: cfg.full,
            extra: cfg.extra.clone(),
            tx,
            rx: std::sync::Mutex::new(Some(rx)),
            cfg,
            dropped: Arc::default(),
        }
    }

    /// Queues `m`; never waits: a full queue drops it (counted, logged every 10 s).
    pub fn send(&self, m: pb::Message, extra: Option<Vec<u8>>) {
        if self.tx.try_send((m, extra)).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Starts the writer (once; later calls do nothing) on `tracker`. It runs until `stop`,
    /// then writes what is still queued and closes the stream (STOP/FINISH), so a server
    /// that waits for `tracker` on shutdown loses no message it answered.
    pub fn start(&self, stop: CancellationToken, tracker: &TaskTracker) {
        let Some(rx) = self.rx.lock().ok().and_then(|mut r| r.take()) else {
            return;
        };
        let w = Writer {
            cfg: self.cfg.clone(),
            identity: self
                .cfg
                .identity
                .clone()
                .unwrap_or_else(hostname)
                .into_bytes(),
            version: self
                .cfg
                .version
                .clone()
                .unwrap_or_else(|| format!("clusterdns-{}", crate::VERSION))
                .into_bytes(),
            dropped: self.dropped.clone(),
        };
        tracker.spawn(w.run(rx, stop));
    }
}

fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_default()
}

/// A byte stream to the sink (unix or TCP).
trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

struct Writer {
    cfg: DnstapConfig,
    identity: Vec<u8>,
    version: Vec<u8>,
    dropped: Arc<AtomicU64>,
}

/// One connected sink after the handshake.
struct Conn {
    io: BufWriter<Box<dyn Stream>>,
}

fn control(kind: u32, with_type: bool) -> Vec<u8> {
    let mut body = kind.to_be_bytes().to_vec();
    if with_type {
        body.extend_from_slice(&FIELD_CONTENT_TYPE.to_be_bytes());
        body.extend_from_slice(&(CONTENT_TYPE.len() as u32).to_be_bytes());
        body.extend_from_slice(CONTENT_TYPE);
    }
    let mut out = 0u32.to_be_bytes().to_vec();
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(&body);
    out
}

/// Reads one control frame and returns its type.
async fn read_control(io: &mut (impl AsyncRead + Unpin)) -> std::io::Result<u32> {
    let escape = io.read_u32().await?;
    if escape != 0 {
        return Err(std::io::Error::other("expected a control frame"));
    }
    let len = io.read_u32().await? as usize;
    if !(4..=512).contains(&len) {
        return Err(std::io::Error::other("bad control frame length"));
    }
    let mut body = vec![0u8; len];
    io.read_exact(&mut body).await?;
    Ok(u32::from_be_bytes([body[0], body[1], body[2], body[3]]))
}

impl Conn {
    async fn open(cfg: &DnstapConfig) -> std::io::Result<Self> {
        let stream: Box<dyn Stream> = match &cfg.endpoint {
            Endpoint::Unix(p) => Box::new(tokio::net::UnixStream::connect(p).await?),
            Endpoint::Tcp(a) => {
                let s = tokio::net::TcpStream::connect(a.as_str()).await?;
                let bytes = cfg.write_buffer as usize * 1024 * 1024;
                let _ = socket2::SockRef::from(&s).set_send_buffer_size(bytes);
                Box::new(s)
            }
        };
        let mut io = BufWriter::with_capacity(64 * 1024, stream);
        io.write_all(&control(CONTROL_READY, true)).await?;
        io.flush().await?;
        if read_control(io.get_mut()).await? != CONTROL_ACCEPT {
            return Err(std::io::Error::other("sink did not accept"));
        }
        io.write_all(&control(CONTROL_START, true)).await?;
        io.flush().await?;
        Ok(Self { io })
    }

    async fn write(&mut self, frame: &[u8]) -> std::io::Result<()> {
        self.io
            .write_all(&(frame.len() as u32).to_be_bytes())
            .await?;
        self.io.write_all(frame).await
    }

    async fn finish(mut self) {
        let _ = self.io.write_all(&control(CONTROL_STOP, false)).await;
        let _ = self.io.flush().await;
        let _ = read_control(self.io.get_mut())
            .await
            .map(|t| t == CONTROL_FINISH);
        let _ = self.io.shutdown().await;
    }
}

impl Writer {
    fn frame(&self, (m, extra): Item) -> Vec<u8> {
        pb::Dnstap {
            identity: Some(self.identity.clone()),
            version: Some(self.version.clone()),
            extra,
            r#type: pb::DnstapType::Message as i32,
            message: Some(m),
        }
        .encode_to_vec()
    }

    async fn connect(&self) -> Option<Conn> {
        match tokio::time::timeout(IO_TIMEOUT, Conn::open(&self.cfg)).await {
            Ok(Ok(c)) => Some(c),
            Ok(Err(e)) => {
                tracing::error!(target: "plugin/dnstap", "No connection to dnstap endpoint {}: {e}", self.cfg.endpoint);
                None
            }
            Err(_) => {
                tracing::error!(target: "plugin/dnstap", "No connection to dnstap endpoint {}: timeout", self.cfg.endpoint);
                None
            }
        }
    }

    async fn run(self, mut rx: mpsc::Receiver<Item>, stop: CancellationToken) {
        let mut conn = tokio::select! {
            c = self.connect() => c,
            () = stop.cancelled() => return,
        };
        let mut flush = tokio::time::interval(FLUSH_EVERY);
        let mut check = tokio::time::interval(CHECK_EVERY);
        check.tick().await;
        loop {
            tokio::select! {
                () = stop.cancelled() => break,
                item = rx.recv() => {
                    let Some(item) = item else { break };
                    let Some(c) = conn.as_mut() else {
                        self.dropped.fetch_add(1, Ordering::Relaxed);
                        continue;
                    };
                    let frame = self.frame(item);
                    let ok = matches!(tokio::time::timeout(IO_TIMEOUT, c.write(&frame)).await, Ok(Ok(())));
                    if !ok {
                        self.dropped.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(target: "plugin/dnstap", "write to {} failed: reconnecting", self.cfg.endpoint);
                        conn = self.connect().await;
                    }
                }
                _ = flush.tick() => {
                    if let Some(c) = conn.as_mut() {
                        if !matches!(tokio::time::timeout(IO_TIMEOUT, c.io.flush()).await, Ok(Ok(()))) {
                            conn = self.connect().await;
                        }
                    }
                }
                _ = check.tick() => {
                    let n = self.dropped.swap(0, Ordering::Relaxed);
                    if n > 0 {
                        tracing::warn!(target: "plugin/dnstap", "Dropped dnstap messages: {n}");
                    }
                    if conn.is_none() {
                        conn = self.connect().await;
                    }
                }
            }
        }
        // Whatever is queued still goes out, then the stream is closed properly (a sink that
        // stopped reading gets IO_TIMEOUT for all of it).
        if let Some(mut c) = conn {
            let drain = async {
                while let Ok(item) = rx.try_recv() {
                    let frame = self.frame(item);
                    if c.write(&frame).await.is_err() {
                        return;
                    }
                }
                c.finish().await;
            };
            let _ = tokio::time::timeout(IO_TIMEOUT, drain).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_frames() {
        let ready = control(CONTROL_READY, true);
        assert_eq!(&ready[..4], &[0, 0, 0, 0]);
        let len = u32::from_be_bytes(ready[4..8].try_into().unwrap()) as usize;
        assert_eq!(len, ready.len() - 8);
        assert_eq!(&ready[8..12], &CONTROL_READY.to_be_bytes());
        assert_eq!(&ready[12..16], &FIELD_CONTENT_TYPE.to_be_bytes());
        assert_eq!(&ready[20..], CONTENT_TYPE);
        assert_eq!(
            control(CONTROL_STOP, false),
            [0, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0, 3]
        );
    }

    #[test]
    fn addresses() {
        let mut m = pb::Message::default();
        set_query_addr(&mut m, "[::ffff:192.0.2.1]:53".parse().unwrap());
        assert_eq!(m.query_address.as_deref(), Some(&[192, 0, 2, 1][..]));
        assert_eq!(m.socket_family, Some(pb::SocketFamily::Inet as i32));
        set_response_addr(&mut m, "[2001:db8::1]:853".parse().unwrap());
        assert_eq!(m.response_address.as_ref().map(Vec::len), Some(16));
        assert_eq!(m.response_port, Some(853));
        assert_eq!(m.socket_family, Some(pb::SocketFamily::Inet6 as i32));
    }

    #[tokio::test]
    async fn a_full_queue_drops_and_counts_without_waiting() {
        let cfg = super::super::setup::DnstapConfig {
            endpoint: Endpoint::Unix("/nonexistent/dnstap.sock".into()),
            full: false,
            write_buffer: 1,
            queue: 1,
            identity: None,
            version: None,
            extra: None,
        };
        // Not started: nothing drains the queue.
        let tap = Tap::new(cfg);
        for _ in 0..QUEUE_UNIT + 5 {
            tap.send(pb::Message::default(), None);
        }
        assert_eq!(tap.dropped.load(Ordering::Relaxed), 5);
    }
}
