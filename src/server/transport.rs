//! UDP and TCP listeners: read a message, let the [`Dispatcher`] answer it, write the bytes.
//!
//! Our own loops rather than hickory-server's `Server`: the reply is encoded by the dispatcher
//! (so names compress against the question, as in CoreDNS's replies); UDP, the hot path, is
//! served by one blocking reader thread per CPU, each on its own SO_REUSEPORT socket, answering
//! in place; TCP by tokio tasks. Shutdown is a token plus a task tracker that waits for
//! in-flight queries.

use std::future::Future;
use std::io::ErrorKind;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use hickory_server::net::xfer::Protocol;
use hickory_server::server::Request as HRequest;
use socket2::{Domain, Protocol as SockProtocol, Socket, Type};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::dispatch::{Dispatcher, formerr};

/// CoreDNS's TCP timeouts: 3 s to read a query, 10 s idle between queries.
const TCP_READ: Duration = Duration::from_secs(3);
const TCP_IDLE: Duration = Duration::from_secs(10);

pub(crate) async fn reply(
    d: &Dispatcher,
    raw: Vec<u8>,
    src: SocketAddr,
    proto: Protocol,
) -> Option<Vec<u8>> {
    // Keep only the header for a FORMERR, rather than a copy of every datagram.
    let head: Option<[u8; 12]> = raw.get(..12).and_then(|h| h.try_into().ok());
    match HRequest::from_bytes(raw, src, proto) {
        Ok(req) => Some(d.answer(&req).await),
        Err(_) => head.and_then(|h| formerr(&h)),
    }
}

/// How long a UDP reader blocks before it looks at its stop token.
const UDP_POLL_STOP: Duration = Duration::from_millis(100);

/// The number of UDP readers a listener gets: one per CPU this process may run on.
pub(crate) fn udp_readers() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// Binds `n` UDP sockets to `addr` (port 0: the first one picks it), with SO_REUSEPORT when
/// there is more than one so the kernel spreads clients over them.
pub(crate) fn bind_udp(addr: SocketAddr, n: usize) -> std::io::Result<Vec<std::net::UdpSocket>> {
    let mut out: Vec<std::net::UdpSocket> = Vec::with_capacity(n);
    let mut addr = addr;
    for _ in 0..n.max(1) {
        let s = Socket::new(
            Domain::for_address(addr),
            Type::DGRAM,
            Some(SockProtocol::UDP),
        )?;
        if n > 1 {
            s.set_reuse_port(true)?;
        }
        s.bind(&addr.into())?;
        s.set_read_timeout(Some(UDP_POLL_STOP))?;
        let s: std::net::UdpSocket = s.into();
        addr = s.local_addr()?;
        out.push(s);
    }
    Ok(out)
}

/// Serves UDP on `sockets` until `stop`. Each socket gets its own OS thread that reads a
/// datagram into a reused buffer and answers it in place: an answer that needs no waiting
/// (kubernetes, hosts, cache hits — nearly every query) is written back at once, with no task
/// spawned and no hand-off between threads; only one that waits (forward, a lookup through
/// another server) continues as a task on the runtime and sends its reply when done.
pub(crate) fn serve_udp(
    sockets: Vec<std::net::UdpSocket>,
    d: Arc<Dispatcher>,
    stop: CancellationToken,
    tracker: TaskTracker,
) -> std::io::Result<()> {
    let handle = tokio::runtime::Handle::current();
    for (i, sock) in sockets.into_iter().enumerate() {
        let (d, stop, tracker, handle) = (d.clone(), stop.clone(), tracker.clone(), handle.clone());
        std::thread::Builder::new()
            .name(format!("udp-{i}-{}", d.local.port()))
            .spawn(move || udp_reader(sock, &d, &stop, &tracker, &handle))?;
    }
    Ok(())
}

fn udp_reader(
    sock: std::net::UdpSocket,
    d: &Arc<Dispatcher>,
    stop: &CancellationToken,
    tracker: &TaskTracker,
    handle: &tokio::runtime::Handle,
) {
    // Shutdown waits for this reader as for a task; plugins may use the runtime's timers.
    let _token = tracker.token();
    let _rt = handle.enter();
    let sock = Arc::new(sock);
    let mut buf = vec![0u8; 65_535];
    let mut cx = Context::from_waker(Waker::noop());
    while !stop.is_cancelled() {
        let (n, src) = match sock.recv_from(&mut buf) {
            Ok(x) => x,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => continue,
            Err(e) => {
                tracing::debug!("udp recv: {e}");
                continue;
            }
        };
        let raw = buf[..n].to_vec();
        let dd = d.clone();
        let mut fut = Box::pin(async move { reply(&dd, raw, src, Protocol::Udp).await });
        match fut.as_mut().poll(&mut cx) {
            Poll::Ready(Some(out)) => {
                let _ = sock.send_to(&out, src);
            }
            Poll::Ready(None) => {}
            Poll::Pending => {
                // The runtime polls it again with a real waker; resources re-register then.
                let sock = sock.clone();
                tracker.spawn_on(
                    async move {
                        if let Some(out) = fut.await {
                            let _ = sock.send_to(&out, src);
                        }
                    },
                    handle,
                );
            }
        }
    }
}

/// Serves TCP on `listener` until `stop`; each connection is served in its own task.
pub(crate) fn serve_tcp(
    listener: TcpListener,
    d: Arc<Dispatcher>,
    stop: CancellationToken,
    tracker: TaskTracker,
) {
    let t = tracker.clone();
    tracker.spawn(async move {
        loop {
            let (conn, src) = tokio::select! {
                _ = stop.cancelled() => return,
                r = listener.accept() => match r {
                    Ok(x) => x,
                    Err(e) => {
                        tracing::debug!("tcp accept: {e}");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                },
            };
            let (d, stop) = (d.clone(), stop.clone());
            t.spawn(async move {
                let _ = tokio::select! {
                    _ = stop.cancelled() => Ok(()),
                    r = connection(conn, src, &d) => r,
                };
            });
        }
    });
}

async fn connection(mut conn: TcpStream, src: SocketAddr, d: &Dispatcher) -> std::io::Result<()> {
    let mut first = true;
    loop {
        let wait = if first { TCP_READ } else { TCP_IDLE };
        first = false;
        let Ok(len) = tokio::time::timeout(wait, conn.read_u16()).await else {
            return Ok(());
        };
        let len = usize::from(len?);
        let mut raw = vec![0u8; len];
        tokio::time::timeout(TCP_READ, conn.read_exact(&mut raw))
            .await
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
        let Some(out) = reply(d, raw, src, Protocol::Tcp).await else {
            return Ok(());
        };
        let Ok(n) = u16::try_from(out.len()) else {
            return Ok(());
        };
        let mut framed = Vec::with_capacity(out.len() + 2);
        framed.extend_from_slice(&n.to_be_bytes());
        framed.extend_from_slice(&out);
        conn.write_all(&framed).await?;
    }
}
