//! UDP and TCP listeners: read a message, let the [`Dispatcher`] answer it, write the bytes.
//!
//! Our own loops rather than hickory-server's `Server`: the reply is encoded by the dispatcher
//! (so names compress against the question, as in CoreDNS's replies); UDP, the hot path, is
//! served by one blocking reader thread per CPU, each on its own SO_REUSEPORT socket, answering
//! in place; TCP by tokio tasks. Shutdown is a token plus a task tracker that waits for
//! in-flight queries.

use std::future::Future;
use std::io::{IoSlice, IoSliceMut};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use hickory_server::net::xfer::Protocol;
use hickory_server::server::Request as HRequest;
use nix::errno::Errno;
use nix::sys::socket::{MsgFlags, MultiHeaders, SockaddrStorage, recvmmsg, sendmmsg};
use socket2::{Domain, Protocol as SockProtocol, Socket, Type};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::dispatch::{Dispatcher, Follow, formerr};
use crate::plugins::Proto;

/// CoreDNS's TCP timeouts: 3 s to read a query, 10 s idle between queries.
pub(crate) const TCP_READ: Duration = Duration::from_secs(3);
const TCP_IDLE: Duration = Duration::from_secs(10);

pub(crate) async fn reply(
    d: &Dispatcher,
    raw: Vec<u8>,
    src: SocketAddr,
    proto: Protocol,
) -> Option<Vec<u8>> {
    let p = if proto == Protocol::Tcp {
        Proto::Tcp
    } else {
        Proto::Udp
    };
    if let Some(out) = d.answer_fast(&raw, src, p) {
        return Some(out);
    }
    reply_general(d, raw, src, proto).await
}

/// [`reply`] without the fast path (the caller tried it).
pub(crate) async fn reply_general(
    d: &Dispatcher,
    raw: Vec<u8>,
    src: SocketAddr,
    proto: Protocol,
) -> Option<Vec<u8>> {
    // Keep only the header for a FORMERR, rather than a copy of every datagram.
    let head: Option<[u8; 12]> = raw.get(..12).and_then(|h| h.try_into().ok());
    match HRequest::from_bytes(raw, src, proto) {
        Ok(req) => d.answer(&req).await,
        Err(_) => head.and_then(|h| formerr(&h)),
    }
}

/// [`reply`] over TCP: also the messages that follow the reply (zone transfers).
async fn reply_tcp(
    d: &Dispatcher,
    raw: Vec<u8>,
    src: SocketAddr,
) -> Option<(Vec<u8>, Option<Box<Follow>>)> {
    let head: Option<[u8; 12]> = raw.get(..12).and_then(|h| h.try_into().ok());
    match HRequest::from_bytes(raw, src, Protocol::Tcp) {
        Ok(req) => d.answer_all(&req, true).await,
        Err(_) => head.and_then(|h| formerr(&h)).map(|out| (out, None)),
    }
}

/// Writes one DNS message with its TCP length prefix; a message over 64 KiB is not written.
async fn write_framed<S>(conn: &mut S, out: &[u8]) -> std::io::Result<bool>
where
    S: tokio::io::AsyncWrite + Unpin,
{
    let Ok(n) = u16::try_from(out.len()) else {
        return Ok(false);
    };
    let mut framed = Vec::with_capacity(out.len() + 2);
    framed.extend_from_slice(&n.to_be_bytes());
    framed.extend_from_slice(out);
    conn.write_all(&framed).await?;
    Ok(true)
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

/// Datagrams one `recvmmsg` reads and one `sendmmsg` answers at most.
const UDP_BATCH: usize = 32;
/// Receive buffer per datagram. A larger query (a question and an OPT record take a few hundred
/// bytes) is cut by the kernel and gets FORMERR.
const UDP_MAX_QUERY: usize = 4096;

/// The answer to one datagram, when it needs no waiting; a waiting one becomes a task that sends
/// its own reply.
fn answer_in_place(
    d: &Arc<Dispatcher>,
    raw: &[u8],
    src: SocketAddr,
    cx: &mut Context<'_>,
    sock: &Arc<std::net::UdpSocket>,
    tracker: &TaskTracker,
    handle: &tokio::runtime::Handle,
) -> Option<Vec<u8>> {
    let (dd, raw) = (d.clone(), raw.to_vec());
    let mut fut = Box::pin(async move { reply_general(&dd, raw, src, Protocol::Udp).await });
    match fut.as_mut().poll(cx) {
        Poll::Ready(out) => out,
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
            None
        }
    }
}

fn to_std(a: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = a.as_sockaddr_in() {
        return Some(SocketAddr::V4((*v4).into()));
    }
    a.as_sockaddr_in6().map(|v6| SocketAddr::V6((*v6).into()))
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
    let fd = sock.as_raw_fd();
    let mut bufs = vec![[0u8; UDP_MAX_QUERY]; UDP_BATCH];
    let mut rx_headers = MultiHeaders::<SockaddrStorage>::preallocate(UDP_BATCH, None);
    let mut tx_headers = MultiHeaders::<SockaddrStorage>::preallocate(UDP_BATCH, None);
    let mut got: Vec<(usize, bool, Option<SockaddrStorage>)> = Vec::with_capacity(UDP_BATCH);
    let mut replies: Vec<(Vec<u8>, SockaddrStorage)> = Vec::with_capacity(UDP_BATCH);
    let mut cx = Context::from_waker(Waker::noop());
    crate::logging::collect_lines();
    while !stop.is_cancelled() {
        // Every datagram waiting, up to a batch, in one system call; blocks for the first.
        got.clear();
        {
            let mut iovs: Vec<[IoSliceMut<'_>; 1]> =
                bufs.iter_mut().map(|b| [IoSliceMut::new(b)]).collect();
            match recvmmsg(
                fd,
                &mut rx_headers,
                iovs.iter_mut(),
                MsgFlags::MSG_WAITFORONE,
                None,
            ) {
                Ok(msgs) => got.extend(msgs.map(|m| {
                    let cut = m.flags.contains(MsgFlags::MSG_TRUNC);
                    (m.bytes, cut, m.address)
                })),
                Err(Errno::EAGAIN | Errno::EINTR) => continue,
                Err(e) => {
                    tracing::debug!("udp recv: {e}");
                    continue;
                }
            }
        }
        replies.clear();
        for (i, &(n, cut, addr)) in got.iter().enumerate() {
            let Some((addr, src)) = addr.and_then(|a| Some((a, to_std(&a)?))) else {
                continue;
            };
            let raw = &bufs[i][..n.min(UDP_MAX_QUERY)];
            let out = if cut {
                formerr(raw)
            } else if let Some(out) = d.answer_fast(raw, src, Proto::Udp) {
                Some(out)
            } else {
                answer_in_place(d, raw, src, &mut cx, &sock, tracker, handle)
            };
            if let Some(out) = out {
                replies.push((out, addr));
            }
            // The first replies of a long batch need not wait for the last ones.
            if replies.len() >= UDP_FLUSH {
                send_replies(fd, &mut tx_headers, &mut replies);
            }
        }
        send_replies(fd, &mut tx_headers, &mut replies);
        // The batch's `log` lines, in one write.
        crate::logging::flush_lines();
    }
}

/// Replies sent with one `sendmmsg` at most: a reply waits for at most this many answers
/// before it goes (knotd answers 10 per batch).
const UDP_FLUSH: usize = 8;

/// Sends `replies` in as few system calls as the kernel allows, and empties it.
fn send_replies(
    fd: std::os::fd::RawFd,
    tx_headers: &mut MultiHeaders<SockaddrStorage>,
    replies: &mut Vec<(Vec<u8>, SockaddrStorage)>,
) {
    let mut sent = 0;
    while sent < replies.len() {
        let rest = &replies[sent..];
        let iovs: Vec<[IoSlice<'_>; 1]> = rest.iter().map(|(b, _)| [IoSlice::new(b)]).collect();
        let addrs: Vec<Option<SockaddrStorage>> = rest.iter().map(|(_, a)| Some(*a)).collect();
        match sendmmsg(fd, tx_headers, &iovs, &addrs, [], MsgFlags::empty()) {
            Ok(done) => sent += done.count().max(1),
            // This datagram cannot go (an unreachable client): skip it, send the rest.
            Err(_) => sent += 1,
        }
    }
    replies.clear();
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

/// Serves length-prefixed DNS messages on one stream (TCP, or TLS for `tls://`).
pub(crate) async fn connection<S>(
    mut conn: S,
    src: SocketAddr,
    d: &Dispatcher,
) -> std::io::Result<()>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
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
        let Some((out, follow)) = reply_tcp(d, raw, src).await else {
            return Ok(());
        };
        if !write_framed(&mut conn, &out).await? {
            return Ok(());
        }
        // A zone transfer: the rest of its messages, as the producer makes them.
        if let Some(mut follow) = follow {
            while let Some(out) = follow.next().await {
                if !write_framed(&mut conn, &out).await? {
                    return Ok(());
                }
            }
        }
    }
}
