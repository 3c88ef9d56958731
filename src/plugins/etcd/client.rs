//! A small etcd v3 client over etcd's JSON gateway (`/v3/kv/range`, `/v3/watch`,
//! `/v3/lease/timetolive`, `/v3/auth/authenticate`): HTTP/1.1 on hyper, TLS on rustls — both
//! already in the binary — instead of a gRPC stack (tonic, prost, protoc at build time).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncWrite};

/// How long one request may take (CoreDNS's `etcdTimeout`).
pub const TIMEOUT: Duration = Duration::from_secs(5);

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No endpoint could be reached.
    #[error("{0}")]
    Connect(String),
    /// etcd answered with an error.
    #[error("etcd: HTTP {0}: {1}")]
    Status(u16, String),
    /// The answer was not what etcd sends.
    #[error("etcd: {0}")]
    Protocol(String),
}

/// An `http://` or `https://` endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    tls: bool,
    host: String,
    port: u16,
}

impl Endpoint {
    /// Parses `http://HOST:PORT` or `https://HOST:PORT` (default port 2379).
    pub fn parse(url: &str) -> Result<Self, String> {
        let (tls, rest) = if let Some(r) = url.strip_prefix("https://") {
            (true, r)
        } else if let Some(r) = url.strip_prefix("http://") {
            (false, r)
        } else {
            return Err(format!(
                "endpoint must start with http:// or https://: {url}"
            ));
        };
        let rest = rest.trim_end_matches('/');
        let (host, port) = match rest.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(':') && p.parse::<u16>().is_ok() => {
                (h.to_string(), p.parse().unwrap_or(2379))
            }
            _ => (rest.to_string(), 2379),
        };
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        if host.is_empty() {
            return Err(format!("endpoint without a host: {url}"));
        }
        Ok(Self { tls, host, port })
    }

    fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// The client: endpoints tried in turn, the last one that answered first.
pub struct Client {
    endpoints: Vec<Endpoint>,
    tls: Option<Arc<rustls::ClientConfig>>,
    credentials: Option<(String, String)>,
    token: Mutex<Option<String>>,
    current: Mutex<usize>,
}

/// A response body being read: the watch stream.
pub struct Stream {
    body: hyper::body::Incoming,
    buf: Vec<u8>,
}

impl Stream {
    /// The next JSON message of the stream; `None` when it ended.
    pub async fn next(&mut self) -> Result<Option<Value>, Error> {
        loop {
            // The gateway writes one JSON object per message, each followed by a line break.
            if let Some(i) = self.buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=i).collect();
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                return serde_json::from_slice(&line)
                    .map(Some)
                    .map_err(|e| Error::Protocol(format!("watch message: {e}")));
            }
            match self.body.frame().await {
                None => {
                    if self.buf.iter().all(u8::is_ascii_whitespace) {
                        return Ok(None);
                    }
                    let rest = std::mem::take(&mut self.buf);
                    return serde_json::from_slice(&rest)
                        .map(Some)
                        .map_err(|e| Error::Protocol(format!("watch message: {e}")));
                }
                Some(Err(e)) => return Err(Error::Connect(format!("watch: {e}"))),
                Some(Ok(f)) => {
                    if let Ok(data) = f.into_data() {
                        self.buf.extend_from_slice(&data);
                    }
                }
            }
        }
    }
}

/// The base64 form etcd's JSON uses for keys and values.
pub fn b64(s: &[u8]) -> String {
    B64.encode(s)
}

/// Decodes a base64 field (absent = empty).
pub fn unb64(v: &Value) -> Vec<u8> {
    v.as_str()
        .and_then(|s| B64.decode(s).ok())
        .unwrap_or_default()
}

/// An int64 field: the gateway writes them as strings.
pub fn int(v: &Value) -> i64 {
    match v {
        Value::String(s) => s.parse().unwrap_or(0),
        Value::Number(n) => n.as_i64().unwrap_or(0),
        _ => 0,
    }
}

/// The end of the range of keys that start with `prefix`.
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

impl Client {
    /// A client of `endpoints` (TLS for `https://` ones with `tls`, else the system's roots).
    pub fn new(
        endpoints: Vec<Endpoint>,
        tls: Option<Arc<rustls::ClientConfig>>,
        credentials: Option<(String, String)>,
    ) -> Self {
        Self {
            endpoints,
            tls,
            credentials,
            token: Mutex::new(None),
            current: Mutex::new(0),
        }
    }

    async fn connect(
        &self,
        ep: &Endpoint,
    ) -> Result<hyper::client::conn::http1::SendRequest<Full<Bytes>>, Error> {
        let tcp = tokio::net::TcpStream::connect((ep.host.as_str(), ep.port))
            .await
            .map_err(|e| Error::Connect(format!("{}: {e}", ep.authority())))?;
        let _ = tcp.set_nodelay(true);
        let io: Box<dyn Io> = if ep.tls {
            let cfg = match &self.tls {
                Some(c) => c.clone(),
                None => crate::tlsconf::client_config(None, None, None)
                    .map_err(|e| Error::Connect(e.to_string()))?,
            };
            let name = rustls_pki_types::ServerName::try_from(ep.host.clone())
                .map_err(|e| Error::Connect(format!("{}: {e}", ep.host)))?;
            let tls = tokio_rustls::TlsConnector::from(cfg)
                .connect(name, tcp)
                .await
                .map_err(|e| Error::Connect(format!("{}: TLS: {e}", ep.authority())))?;
            Box::new(tls)
        } else {
            Box::new(tcp)
        };
        let (send, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(io))
            .await
            .map_err(|e| Error::Connect(format!("{}: {e}", ep.authority())))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(send)
    }

    /// Sends `body` to `path` on the first endpoint that takes it; the response, not yet read.
    async fn send(
        &self,
        path: &str,
        body: &Value,
    ) -> Result<hyper::Response<hyper::body::Incoming>, Error> {
        let n = self.endpoints.len();
        let start = *self.current.lock().expect("etcd client lock");
        let mut last = Error::Connect("no etcd endpoint".into());
        for i in 0..n {
            let idx = (start + i) % n;
            let ep = &self.endpoints[idx];
            let attempt = async {
                let mut send = self.connect(ep).await?;
                let mut req = hyper::Request::post(path)
                    .header(hyper::header::HOST, ep.authority())
                    .header(hyper::header::CONTENT_TYPE, "application/json");
                if let Some(t) = self.token.lock().expect("etcd token lock").clone() {
                    req = req.header(hyper::header::AUTHORIZATION, t);
                }
                let req = req
                    .body(Full::new(Bytes::from(body.to_string())))
                    .map_err(|e| Error::Protocol(e.to_string()))?;
                send.send_request(req)
                    .await
                    .map_err(|e| Error::Connect(format!("{}: {e}", ep.authority())))
            };
            match tokio::time::timeout(TIMEOUT, attempt).await {
                Ok(Ok(resp)) => {
                    *self.current.lock().expect("etcd client lock") = idx;
                    return Ok(resp);
                }
                Ok(Err(e)) => last = e,
                Err(_) => last = Error::Connect(format!("{}: timed out", ep.authority())),
            }
        }
        Err(last)
    }

    async fn read(resp: hyper::Response<hyper::body::Incoming>) -> Result<(u16, Value), Error> {
        let status = resp.status().as_u16();
        let body = tokio::time::timeout(TIMEOUT, resp.into_body().collect())
            .await
            .map_err(|_| Error::Connect("reading the answer timed out".into()))?
            .map_err(|e| Error::Connect(e.to_string()))?
            .to_bytes();
        let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        Ok((status, v))
    }

    fn auth_failed(status: u16, v: &Value) -> bool {
        let msg = v
            .get("error")
            .or_else(|| v.get("message"))
            .and_then(Value::as_str)
            .unwrap_or_default();
        status == 401 || msg.contains("token") || msg.contains("user name is empty")
    }

    /// Gets a token for the credentials (etcd's simple or JWT tokens).
    async fn authenticate(&self) -> Result<(), Error> {
        let Some((user, pass)) = &self.credentials else {
            return Ok(());
        };
        *self.token.lock().expect("etcd token lock") = None;
        let resp = self
            .send(
                "/v3/auth/authenticate",
                &json!({"name": user, "password": pass}),
            )
            .await?;
        let (status, v) = Self::read(resp).await?;
        let token = v.get("token").and_then(Value::as_str).map(str::to_string);
        match (status, token) {
            (200, Some(t)) => {
                *self.token.lock().expect("etcd token lock") = Some(t);
                Ok(())
            }
            _ => Err(Error::Status(status, format!("authentication failed: {v}"))),
        }
    }

    /// A unary call; with credentials, authenticates first and again when the token expired.
    pub async fn call(&self, path: &str, body: Value) -> Result<Value, Error> {
        if self.credentials.is_some() && self.token.lock().expect("etcd token lock").is_none() {
            self.authenticate().await?;
        }
        for attempt in 0..2 {
            let (status, v) = Self::read(self.send(path, &body).await?).await?;
            if status == 200 {
                return Ok(v);
            }
            if attempt == 0 && self.credentials.is_some() && Self::auth_failed(status, &v) {
                self.authenticate().await?;
                continue;
            }
            return Err(Error::Status(status, v.to_string()));
        }
        unreachable!("two attempts")
    }

    /// Starts a watch; the stream's first message confirms it.
    pub async fn watch(&self, body: Value) -> Result<Stream, Error> {
        if self.credentials.is_some() && self.token.lock().expect("etcd token lock").is_none() {
            self.authenticate().await?;
        }
        for attempt in 0..2 {
            let resp = self.send("/v3/watch", &body).await?;
            if resp.status().as_u16() == 200 {
                return Ok(Stream {
                    body: resp.into_body(),
                    buf: Vec::new(),
                });
            }
            let (status, v) = Self::read(resp).await?;
            if attempt == 0 && self.credentials.is_some() && Self::auth_failed(status, &v) {
                self.authenticate().await?;
                continue;
            }
            return Err(Error::Status(status, v.to_string()));
        }
        unreachable!("two attempts")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_and_ranges() {
        let e = Endpoint::parse("http://localhost:2379").unwrap();
        assert_eq!(
            (e.tls, e.authority()),
            (false, "localhost:2379".to_string())
        );
        let e = Endpoint::parse("https://[::1]:4001/").unwrap();
        assert_eq!((e.tls, e.authority()), (true, "[::1]:4001".to_string()));
        assert_eq!(Endpoint::parse("https://etcd").unwrap().port, 2379);
        assert!(Endpoint::parse("etcd:2379").is_err());
        assert_eq!(prefix_end(b"/skydns/"), b"/skydns0");
        assert_eq!(prefix_end(&[b'a', 0xff]), b"b");
        assert_eq!(int(&json!("42")), 42);
        assert_eq!(unb64(&json!(b64(b"/skydns/x"))), b"/skydns/x");
    }
}
