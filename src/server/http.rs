//! Process-wide HTTP listeners for `/health`, `/ready` and `/metrics`; blocks naming the same
//! address share one listener.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use prometheus::Encoder;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::plugins::Route;
use crate::plugins::prometheus::Metrics;
use crate::plugins::ready::{Monitor, Readiness};

/// What the HTTP handlers read.
#[derive(Clone)]
pub(crate) struct HttpState {
    pub(crate) readiness: Arc<Readiness>,
    pub(crate) monitor: Monitor,
    pub(crate) metrics: Arc<Metrics>,
}

/// Binds `addr` (`:PORT` means every address) and serves `routes` until `stop` is cancelled.
pub(crate) async fn serve(
    addr: &str,
    routes: Vec<Route>,
    state: HttpState,
    stop: CancellationToken,
    tls: Option<Arc<rustls::ServerConfig>>,
) -> std::io::Result<SocketAddr> {
    let listener = if let Some(port) = addr.strip_prefix(':') {
        match TcpListener::bind(format!("[::]:{port}")).await {
            Ok(l) => l,
            Err(_) => TcpListener::bind(format!("0.0.0.0:{port}")).await?,
        }
    } else {
        TcpListener::bind(addr).await?
    };
    let local = listener.local_addr()?;
    let routes = Arc::new(routes);
    let tls = tls.map(tokio_rustls::TlsAcceptor::from);
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                a = listener.accept() => a,
                () = stop.cancelled() => return,
            };
            let Ok((stream, _)) = accepted else { continue };
            let routes = routes.clone();
            let state = state.clone();
            let stop = stop.clone();
            let tls = tls.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req| {
                    let resp = respond(&req, &routes, &state);
                    async move { Ok::<_, Infallible>(resp) }
                });
                let mut builder = hyper::server::conn::http1::Builder::new();
                match tls {
                    None => {
                        let conn = builder
                            .keep_alive(true)
                            .serve_connection(TokioIo::new(stream), svc);
                        tokio::select! {
                            _ = conn => {}
                            () = stop.cancelled() => {}
                        }
                    }
                    Some(acceptor) => {
                        let handshake = tokio::time::timeout(
                            std::time::Duration::from_secs(5),
                            acceptor.accept(stream),
                        );
                        let Ok(Ok(stream)) = handshake.await else {
                            return;
                        };
                        let conn = builder
                            .keep_alive(true)
                            .serve_connection(TokioIo::new(stream), svc);
                        tokio::select! {
                            _ = conn => {}
                            () = stop.cancelled() => {}
                        }
                    }
                }
            });
        }
    });
    Ok(local)
}

fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r
}

fn respond<B>(req: &Request<B>, routes: &[Route], state: &HttpState) -> Response<Full<Bytes>> {
    let route = match req.uri().path() {
        "/health" => Route::Health,
        "/ready" => Route::Ready,
        "/metrics" => Route::Metrics,
        _ => return text(StatusCode::NOT_FOUND, "404 page not found\n"),
    };
    if !routes.contains(&route) {
        return text(StatusCode::NOT_FOUND, "404 page not found\n");
    }
    match route {
        Route::Health => text(StatusCode::OK, "OK"),
        Route::Ready => match state.readiness.check(state.monitor) {
            Ok(()) => text(StatusCode::OK, "OK"),
            Err(names) => {
                if !state.readiness.is_shutting_down() && names != "Starting" {
                    tracing::info!(target: "plugin/ready", "Plugins not ready: \"{names}\"");
                }
                text(StatusCode::SERVICE_UNAVAILABLE, names)
            }
        },
        Route::Metrics => {
            let enc = prometheus::TextEncoder::new();
            let mut buf = Vec::new();
            if let Err(e) = enc.encode(&state.metrics.registry.gather(), &mut buf) {
                return text(StatusCode::INTERNAL_SERVER_ERROR, e.to_string());
            }
            let mut r = text(StatusCode::OK, buf);
            r.headers_mut().insert(
                hyper::header::CONTENT_TYPE,
                hyper::header::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            r
        }
    }
}
