//! The encrypted listeners: `tls://` (DNS over TLS, RFC 7858: the TCP framing inside TLS) and
//! `https://` (DNS over HTTPS, RFC 8484: GET and POST on `/dns-query`, HTTP/1.1 and HTTP/2).
//!
//! Both answer through the listener's [`Dispatcher`] exactly as TCP does (metrics count them as
//! `proto="tcp"` under `server="tls://…"`/`"https://…"`, as CoreDNS does). Without a `tls`
//! directive in the block they serve the same protocol unencrypted, as CoreDNS does (DoH behind
//! a proxy that terminates TLS).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::dispatch::Dispatcher;
use super::transport::connection;
/// RFC 8484 path and media type.
const DOH_PATH: &str = "/dns-query";
const DOH_TYPE: &str = "application/dns-message";
/// The largest DNS message a DoH request may carry (CoreDNS's `maxDNSQuerySize`).
const DOH_MAX: usize = 65_536;

/// The TLS configuration a listener serves with; swapped by a reload (new connections use it).
pub(crate) type TlsSlot = Arc<ArcSwapOption<rustls::ServerConfig>>;

/// Accepts until `stop`, runs `serve` on each connection in its own task; at most `max`
/// connections at once (accepting waits while the cap is reached, as Go's `LimitListener`).
fn accept_loop<F, Fut>(
    listener: TcpListener,
    stop: CancellationToken,
    tracker: TaskTracker,
    max: Option<usize>,
    serve: F,
) where
    F: Fn(TcpStream, SocketAddr) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let limit = max.map(|n| Arc::new(tokio::sync::Semaphore::new(n)));
    let t = tracker.clone();
    tracker.spawn(async move {
        loop {
            let permit = match &limit {
                Some(l) => tokio::select! {
                    _ = stop.cancelled() => return,
                    p = l.clone().acquire_owned() => p.ok(),
                },
                None => None,
            };
            let (conn, src) = tokio::select! {
                _ = stop.cancelled() => return,
                r = listener.accept() => match r {
                    Ok(x) => x,
                    Err(e) => {
                        tracing::debug!("accept: {e}");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                },
            };
            let _ = conn.set_nodelay(true);
            let fut = serve(conn, src);
            let stop = stop.clone();
            t.spawn(async move {
                let _permit = permit;
                tokio::select! {
                    _ = stop.cancelled() => {}
                    () = fut => {}
                }
            });
        }
    });
}

/// The TLS handshake, bounded by the read timeout (Go's handshake runs inside the first read).
async fn handshake(
    tls: &TlsSlot,
    conn: TcpStream,
    read: Duration,
) -> Option<Result<tokio_rustls::server::TlsStream<TcpStream>, TcpStream>> {
    match tls.load_full() {
        None => Some(Err(conn)),
        Some(cfg) => {
            let acceptor = tokio_rustls::TlsAcceptor::from(cfg);
            match tokio::time::timeout(read, acceptor.accept(conn)).await {
                Ok(Ok(s)) => Some(Ok(s)),
                Ok(Err(e)) => {
                    tracing::debug!("tls handshake: {e}");
                    None
                }
                Err(_) => None,
            }
        }
    }
}

/// Serves DNS over TLS on `listener` until `stop`.
pub(crate) fn serve_tls(
    listener: TcpListener,
    d: Arc<Dispatcher>,
    tls: TlsSlot,
    stop: CancellationToken,
    tracker: TaskTracker,
) {
    accept_loop(listener, stop, tracker, None, move |conn, src| {
        let (d, tls) = (d.clone(), tls.clone());
        async move {
            // The listener's limits (`timeouts`): the same as TCP's, read per connection.
            let read = d.router.load().limits.read;
            let _ = match handshake(&tls, conn, read).await {
                Some(Ok(s)) => connection(s, src, &d).await,
                Some(Err(plain)) => connection(plain, src, &d).await,
                None => Ok(()),
            };
        }
    });
}

/// Serves DNS over HTTPS on `listener` until `stop`, with at most `max` connections at once
/// (`https { max_connections }`, CoreDNS's default 200; `None` is unbounded).
pub(crate) fn serve_https(
    listener: TcpListener,
    d: Arc<Dispatcher>,
    tls: TlsSlot,
    max: Option<usize>,
    stop: CancellationToken,
    tracker: TaskTracker,
) {
    accept_loop(listener, stop, tracker, max, move |conn, src| {
        let (d, tls) = (d.clone(), tls.clone());
        async move {
            let read = d.router.load().limits.read;
            match handshake(&tls, conn, read).await {
                Some(Ok(s)) => http_connection(s, src, d).await,
                Some(Err(plain)) => http_connection(plain, src, d).await,
                None => {}
            }
        }
    });
}

/// Serves HTTP/1.1 or HTTP/2 (whichever the client speaks) on one connection; the connection is
/// closed after the listener's idle timeout without a byte in either direction.
async fn http_connection<S>(io: S, src: SocketAddr, d: Arc<Dispatcher>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let limits = d.router.load().limits;
    let start = Instant::now();
    let last = Arc::new(AtomicU64::new(0));
    let io = Watched {
        inner: io,
        start,
        last: last.clone(),
    };
    let svc = hyper::service::service_fn(move |req| {
        let d = d.clone();
        async move { Ok::<_, Infallible>(doh(req, src, &d).await) }
    });
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.read)
        .keep_alive(true);
    let conn = builder.serve_connection(TokioIo::new(io), svc);
    tokio::pin!(conn);
    loop {
        let seen = Duration::from_millis(last.load(Ordering::Relaxed));
        let idle_until = start + seen + limits.idle;
        tokio::select! {
            _ = conn.as_mut() => return,
            () = tokio::time::sleep_until(idle_until.into()) => {
                if Duration::from_millis(last.load(Ordering::Relaxed)) == seen {
                    return;
                }
            }
        }
    }
}

/// An I/O stream that records when bytes last moved (for the idle timeout).
struct Watched<S> {
    inner: S,
    start: Instant,
    last: Arc<AtomicU64>,
}

impl<S> Watched<S> {
    fn touch(&self) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last.store(ms, Ordering::Relaxed);
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.touch();
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Go's `http.Error`: a text body with a newline.
fn http_error(status: StatusCode, text: &str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(format!("{text}\n"))));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    r
}

/// The DNS message of a DoH request (CoreDNS's `doh.RequestToMsgWire`).
async fn doh_message(req: Request<Incoming>, read: Duration) -> Result<Vec<u8>, String> {
    match *req.method() {
        Method::GET => {
            let query = req.uri().query().unwrap_or("");
            let mut values = query
                .split('&')
                .filter_map(|kv| kv.split_once('=').or(Some((kv, ""))))
                .filter(|(k, _)| *k == "dns")
                .map(|(_, v)| v);
            let Some(b64) = values.next() else {
                return Err("no 'dns' query parameter found".into());
            };
            if values.next().is_some() {
                return Err("multiple 'dns' query values found".into());
            }
            if b64.len() > (DOH_MAX * 8).div_ceil(6) {
                return Err("dns query too large".into());
            }
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(b64)
                .map_err(|e| e.to_string())
        }
        Method::POST => {
            let body = Limited::new(req.into_body(), DOH_MAX);
            match tokio::time::timeout(read, body.collect()).await {
                Ok(Ok(b)) => Ok(b.to_bytes().to_vec()),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err("timeout reading the request body".into()),
            }
        }
        ref m => Err(format!("method not allowed: {m}")),
    }
}

/// One DoH exchange (CoreDNS's `ServerHTTPS.ServeHTTP`): 404 off `/dns-query`, 400 for a request
/// that carries no DNS message, else 200 with the reply and `Cache-Control: max-age` of its
/// smallest TTL.
async fn doh(req: Request<Incoming>, src: SocketAddr, d: &Dispatcher) -> Response<Full<Bytes>> {
    let count = |status: StatusCode| {
        d.metrics
            .https_responses
            .with_label_values(&[&*d.label, status.as_str()])
            .inc();
    };
    if req.uri().path() != DOH_PATH {
        count(StatusCode::NOT_FOUND);
        return http_error(StatusCode::NOT_FOUND, "");
    }
    let parsed = doh_message(req, d.router.load().limits.read)
        .await
        .and_then(|raw| {
            hickory_server::server::Request::from_bytes(
                raw,
                src,
                hickory_server::net::xfer::Protocol::Tcp,
            )
            .map_err(|e| e.to_string())
        });
    let request = match parsed {
        Ok(r) => r,
        Err(e) => {
            tracing::debug!("DoH request could not be parsed: {e}");
            count(StatusCode::BAD_REQUEST);
            return http_error(StatusCode::BAD_REQUEST, "invalid request");
        }
    };
    let Some(out) = d.answer(&request).await else {
        // The chain gave no reply (`acl … drop`): CoreDNS's DoH server answers 500 then.
        count(StatusCode::INTERNAL_SERVER_ERROR);
        return http_error(StatusCode::INTERNAL_SERVER_ERROR, "No response");
    };
    let age = hickory_proto::op::Message::from_vec(&out).map_or(5, |m| {
        use crate::plugins::response::{minimal_ttl, typify};
        minimal_ttl(&m, typify(&m)).as_secs()
    });
    let len = out.len();
    let mut r = Response::new(Full::new(Bytes::from(out)));
    let h = r.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static(DOH_TYPE));
    if let Ok(v) = HeaderValue::from_str(&format!("max-age={age}")) {
        h.insert(CACHE_CONTROL, v);
    }
    h.insert(CONTENT_LENGTH, HeaderValue::from(len));
    count(StatusCode::OK);
    r
}
