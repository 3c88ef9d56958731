//! UDP and TCP listeners: read a message, let the [`Dispatcher`] answer it, write the bytes.
//!
//! Our own loops rather than hickory-server's `Server`: the reply is encoded by the dispatcher
//! (so names compress against the question, as in CoreDNS's replies), and shutdown is a token
//! plus a task tracker that waits for in-flight queries.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hickory_server::net::xfer::Protocol;
use hickory_server::server::Request as HRequest;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
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

/// Serves UDP on `sock` until `stop`; each datagram is answered in its own task.
pub(crate) fn serve_udp(
    sock: UdpSocket,
    d: Arc<Dispatcher>,
    stop: CancellationToken,
    tracker: TaskTracker,
) {
    let sock = Arc::new(sock);
    let t = tracker.clone();
    tracker.spawn(async move {
        let mut buf = vec![0u8; 65_535];
        loop {
            let (n, src) = tokio::select! {
                _ = stop.cancelled() => return,
                r = sock.recv_from(&mut buf) => match r {
                    Ok(x) => x,
                    Err(e) => {
                        tracing::debug!("udp recv: {e}");
                        continue;
                    }
                },
            };
            let raw = buf[..n].to_vec();
            let (sock, d) = (sock.clone(), d.clone());
            t.spawn(async move {
                if let Some(out) = reply(&d, raw, src, Protocol::Udp).await {
                    let _ = sock.send_to(&out, src).await;
                }
            });
        }
    });
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
