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
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use futures_util::FutureExt;
use hickory_server::net::xfer::Protocol;
use hickory_server::server::Request as HRequest;
use nix::errno::Errno;
use nix::sys::socket::{MsgFlags, MultiHeaders, SockaddrStorage, recvmmsg, sendmmsg};
use socket2::{Domain, Protocol as SockProtocol, Socket, Type};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::dispatch::{Accept, Dispatcher, Follow, accept, formerr, header_reply};
use super::limits::Admission;
use crate::plugins::Proto;

/// What one message gets.
pub(crate) enum Answer {
    /// A reply and, over a stream, the messages that follow it (a zone transfer).
    Reply(Vec<u8>, Option<Box<Follow>>),
    /// Nothing, and a stream reads on: a response or a runt (miekg/dns's `MsgIgnore`).
    Ignore,
    /// Nothing, and a stream is closed: the chain dropped the query (`acl … drop`).
    Dropped,
}

/// [`reply_all`] for one-message transports (UDP): the reply, or `None` for none.
pub(crate) async fn reply(
    d: &Dispatcher,
    raw: Vec<u8>,
    src: SocketAddr,
    proto: Protocol,
) -> Option<Vec<u8>> {
    one(reply_guarded(d, raw, src, proto, false, true).await)
}

/// [`reply`] without the fast path (the caller tried it, or compares the two).
pub(crate) async fn reply_general(
    d: &Dispatcher,
    raw: Vec<u8>,
    src: SocketAddr,
    proto: Protocol,
) -> Option<Vec<u8>> {
    one(reply_guarded(d, raw, src, proto, false, false).await)
}

fn one(a: Answer) -> Option<Vec<u8>> {
    match a {
        Answer::Reply(out, _) => Some(out),
        Answer::Ignore | Answer::Dropped => None,
    }
}

/// Answers one message: the header checks CoreDNS makes before decoding, the fast path
/// (`crate::plugins::fast`), else the decode and the dispatcher; with `stream` (TCP, TLS) a
/// reply may be followed by more messages. A panic anywhere in it — the dispatcher recovers the
/// chain's own; this catches what escapes that (decoding, encoding, a panic payload whose
/// destructor panics) — is logged, counted in `coredns_panics_total` and answered SERVFAIL
/// (header only): the UDP reader or TCP connection that called it carries on.
pub(crate) async fn reply_all(
    d: &Dispatcher,
    raw: Vec<u8>,
    src: SocketAddr,
    proto: Protocol,
    stream: bool,
) -> Answer {
    reply_guarded(d, raw, src, proto, stream, true).await
}

async fn reply_guarded(
    d: &Dispatcher,
    raw: Vec<u8>,
    src: SocketAddr,
    proto: Protocol,
    stream: bool,
    fast: bool,
) -> Answer {
    let head: Option<[u8; 12]> = raw.get(..12).and_then(|h| h.try_into().ok());
    match AssertUnwindSafe(super::panics::quiet(answer(
        d, raw, src, proto, stream, fast,
    )))
    .catch_unwind()
    .await
    {
        Ok(out) => out,
        Err(panic) => {
            d.recovered(&*panic);
            // Leaked, not dropped: nothing may unwind past this guard.
            std::mem::forget(panic);
            header(head.and_then(|h| header_reply(&h, 2)))
        }
    }
}

/// The fast path alone, behind the same guards as [`reply_all`] (the header checks first, a
/// panic counted and answered SERVFAIL), for the UDP reader that tries it before it copies
/// the datagram: `None` when the general path must answer (then without trying this again:
/// [`reply_general`]).
pub(crate) fn reply_fast(d: &Dispatcher, raw: &[u8], src: SocketAddr) -> Option<Vec<u8>> {
    if accept(raw) != Accept::Yes {
        return None;
    }
    match super::panics::catch_quiet(|| d.answer_fast(raw, src, Proto::Udp)) {
        Ok(out) => out,
        Err(panic) => {
            d.recovered(&*panic);
            std::mem::forget(panic);
            header_reply(raw, 2)
        }
    }
}

/// A header-only reply, or nothing for a message without a query header.
fn header(out: Option<Vec<u8>>) -> Answer {
    out.map_or(Answer::Ignore, |out| Answer::Reply(out, None))
}

async fn answer(
    d: &Dispatcher,
    raw: Vec<u8>,
    src: SocketAddr,
    proto: Protocol,
    stream: bool,
    fast: bool,
) -> Answer {
    match accept(&raw) {
        Accept::Yes => {}
        Accept::Drop => return Answer::Ignore,
        Accept::FormErr => return header(formerr(&raw)),
        Accept::NotImp => return header(header_reply(&raw, 4)),
    }
    // Streams (TCP, TLS) are answered by the general path, as before the guards.
    if fast && !stream {
        let p = if proto == Protocol::Tcp {
            Proto::Tcp
        } else {
            Proto::Udp
        };
        if let Some(out) = d.answer_fast(&raw, src, p) {
            return Answer::Reply(out, None);
        }
    }
    // Keep only the header for a FORMERR, rather than a copy of every datagram.
    let head: Option<[u8; 12]> = raw.get(..12).and_then(|h| h.try_into().ok());
    match HRequest::from_bytes(raw, src, proto) {
        Ok(req) => match d.answer_all(&req, stream).await {
            Some((out, follow)) => Answer::Reply(out, follow),
            None => Answer::Dropped,
        },
        Err(_) => header(head.and_then(|h| formerr(&h))),
    }
}

/// Writes one DNS message with its TCP length prefix within `write`; a message over 64 KiB is
/// not written (`false`).
async fn write_framed<S>(conn: &mut S, out: &[u8], write: Duration) -> std::io::Result<bool>
where
    S: tokio::io::AsyncWrite + Unpin,
{
    let Ok(n) = u16::try_from(out.len()) else {
        return Ok(false);
    };
    let mut framed = Vec::with_capacity(out.len() + 2);
    framed.extend_from_slice(&n.to_be_bytes());
    framed.extend_from_slice(out);
    tokio::time::timeout(write, conn.write_all(&framed))
        .await
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
    Ok(true)
}

/// How long a UDP reader blocks before it looks at its stop token.
const UDP_POLL_STOP: Duration = Duration::from_millis(100);

/// The number of UDP readers a listener gets: one per CPU this process may run on.
pub(crate) fn udp_readers() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// The TCP listen backlog. Go (so CoreDNS) listens with the kernel's `somaxconn` (which caps
/// this); std's 128 would drop the SYNs of a burst of new connections.
const TCP_BACKLOG: i32 = 4096;

/// Binds a TCP listener to `addr` (SO_REUSEADDR, as std and Go do).
pub(crate) fn bind_tcp(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let s = Socket::new(
        Domain::for_address(addr),
        Type::STREAM,
        Some(SockProtocol::TCP),
    )?;
    s.set_reuse_address(true)?;
    s.bind(&addr.into())?;
    s.listen(TCP_BACKLOG)?;
    Ok(s.into())
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
        let sock = Arc::new(sock);
        std::thread::Builder::new()
            .name(format!("udp-{i}-{}", d.local.port()))
            .spawn(move || {
                // A panic while answering a datagram is caught in `reply` (SERVFAIL, counted).
                // One anywhere else in the loop (its system calls and buffers) is counted and
                // the loop starts again on the same socket: a reader stops only with its
                // listener.
                while !stop.is_cancelled() {
                    let run = std::panic::catch_unwind(AssertUnwindSafe(|| {
                        udp_reader(&sock, &d, &stop, &tracker, &handle)
                    }));
                    match run {
                        Ok(()) => break,
                        Err(panic) => {
                            d.recovered(&*panic);
                            std::mem::forget(panic);
                        }
                    }
                }
            })?;
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
    sock: &Arc<std::net::UdpSocket>,
    d: &Arc<Dispatcher>,
    stop: &CancellationToken,
    tracker: &TaskTracker,
    handle: &tokio::runtime::Handle,
) {
    // Shutdown waits for this reader as for a task; plugins may use the runtime's timers.
    let _token = tracker.token();
    let _rt = handle.enter();
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
            } else if let Some(out) = reply_fast(d, raw, src) {
                Some(out)
            } else {
                answer_in_place(d, raw, src, &mut cx, sock, tracker, handle)
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

/// Serves TCP on `listener` until `stop`; each connection is served in its own task, within
/// the listener's [`ConnLimits`](super::ConnLimits) (read from its router, so a reload that
/// changes `timeouts` applies to the next message of every connection). A panic while answering
/// is caught in `reply`; one elsewhere in a connection's task ends that connection only (tokio
/// contains it), never the listener.
pub(crate) fn serve_tcp(
    listener: TcpListener,
    d: Arc<Dispatcher>,
    stop: CancellationToken,
    tracker: TaskTracker,
) {
    let t = tracker.clone();
    let admission = Admission::new(&d.metrics, &d.label);
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
            let limits = d.router.load().limits;
            let Some(place) = admission.admit(limits.max_connections) else {
                // Over the cap: closed at once with a reset, so the client learns now rather
                // than after a timeout, and no TIME_WAIT is left here.
                let _ = socket2::SockRef::from(&conn).set_linger(Some(Duration::ZERO));
                continue;
            };
            // Replies go out whole; pipelined replies must not wait for delayed ACKs (Go, and
            // so CoreDNS, sets TCP_NODELAY on every connection too).
            let _ = conn.set_nodelay(true);
            let (d, stop) = (d.clone(), stop.clone());
            t.spawn(async move {
                let _place = place;
                let _ = tokio::select! {
                    _ = stop.cancelled() => Ok(()),
                    r = connection(conn, src, &d) => r,
                };
            });
        }
    });
}

/// Serves one connection as miekg/dns's `serveTCPConn` does: the first message (length and
/// body) must arrive within `read` of the connection opening, each later one within `idle` of
/// the previous reply; a reply must be written within `write`; after `max_queries` the
/// connection is closed. Messages that get no reply (a response, a runt) are skipped; a query
/// the chain drops (`acl … drop`) closes the connection without a reply. A zone transfer's
/// messages follow its reply, each written within `write`.
/// Any byte stream works: a TCP connection, a TLS session over one, a test's in-memory pipe.
pub(crate) async fn connection<S>(
    mut conn: S,
    src: SocketAddr,
    d: &Dispatcher,
) -> std::io::Result<()>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut served: u32 = 0;
    loop {
        let limits = d.router.load().limits;
        let wait = if served == 0 {
            limits.read
        } else {
            limits.idle
        };
        let raw = match tokio::time::timeout(wait, read_message(&mut conn)).await {
            Ok(Ok(Some(raw))) => raw,
            // The client closed, or was too slow: a slow-loris holds a place for `read` at most.
            Ok(Ok(None)) | Err(_) => return Ok(()),
            Ok(Err(e)) => return Err(e),
        };
        served = served.saturating_add(1);
        match reply_all(d, raw, src, Protocol::Tcp, true).await {
            Answer::Reply(out, follow) => {
                if !write_framed(&mut conn, &out, limits.write).await? {
                    return Ok(());
                }
                // A zone transfer: the rest of its messages, as the producer makes them.
                if let Some(mut follow) = follow {
                    while let Some(out) = follow.next().await {
                        if !write_framed(&mut conn, &out, limits.write).await? {
                            return Ok(());
                        }
                    }
                }
            }
            Answer::Ignore => {}
            Answer::Dropped => return Ok(()),
        }
        if limits.max_queries.is_some_and(|max| served >= max) {
            return Ok(());
        }
    }
}

/// One length-prefixed message, `None` at the end of the stream. The buffer grows with what
/// arrives: a length of 65,535 with nothing behind it reserves nothing.
async fn read_message<S>(conn: &mut S) -> std::io::Result<Option<Vec<u8>>>
where
    S: tokio::io::AsyncRead + Unpin,
{
    let len = match conn.read_u16().await {
        Ok(n) => usize::from(n),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut raw = Vec::with_capacity(len.min(512));
    (&mut *conn).take(len as u64).read_to_end(&mut raw).await?;
    if raw.len() < len {
        return Ok(None);
    }
    Ok(Some(raw))
}
