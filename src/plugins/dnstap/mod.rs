//! `dnstap`: every client query and response, and every query `forward` sends upstream and
//! its reply, as dnstap messages on a Frame Streams socket (plugin/dnstap).
//!
//! The query path only fills a message and drops it into a bounded queue (`try_send`): writing
//! never waits for the sink; a full queue or a lost sink drops messages, counted and logged.

pub mod pb;
mod setup;
mod tap;

use std::sync::Arc;
use std::time::SystemTime;

use hickory_proto::op::{Message, MessageType, ResponseCode};

pub use setup::{DnstapConfig, Endpoint, parse};
pub use tap::{CONTENT_TYPE, Tap, set_query_addr, set_response_addr, timestamp};

use crate::plugins::{BuildCtx, Handler, HandlerError, Next, Proto, Request, Response};

/// Directive name.
pub const NAME: &str = "dnstap";

/// The taps of one server block: the `dnstap` handler and `forward` share them.
pub type Taps = Arc<[Arc<Tap>]>;

/// Builds the block's taps (all its `dnstap` lines) and the starter that connects them when the
/// configuration starts; they disconnect when it is replaced or the server stops.
pub fn taps(cfgs: &[DnstapConfig], ctx: &mut BuildCtx<'_>) -> Taps {
    let taps: Taps = cfgs
        .iter()
        .cloned()
        .map(|c| Arc::new(Tap::new(c)))
        .collect();
    let started = taps.clone();
    ctx.services.starters.0.push(Box::new(move |start| {
        Box::pin(async move {
            for t in started.iter() {
                t.start(start.stop.clone(), &start.tracker);
            }
            Ok(())
        })
    }));
    taps
}

/// The `dnstap` handler: taps the client's query before passing it on, and the reply.
pub struct Dnstap {
    taps: Taps,
}

impl Dnstap {
    /// A handler over `taps`.
    pub fn new(taps: Taps) -> Self {
        Self { taps }
    }
}

fn protocol(p: Proto) -> pb::SocketProtocol {
    match p {
        Proto::Udp => pb::SocketProtocol::Udp,
        Proto::Tcp => pb::SocketProtocol::Tcp,
    }
}

/// The client's query in wire format (rebuilt from the decoded request).
fn query_wire(req: &Request) -> Option<Vec<u8>> {
    let mut m = Message::new(req.id, MessageType::Query, req.op_code);
    m.metadata.recursion_desired = req.recursion_desired;
    m.metadata.checking_disabled = req.checking_disabled;
    m.metadata.authentic_data = req.authentic_data;
    m.add_query(req.query().clone());
    if let Some(e) = &req.edns {
        m.set_edns(e.clone());
    }
    m.to_vec().ok()
}

/// `extra` with the `log` plugin's placeholders filled in from the request (and reply).
fn extra(tap: &Tap, req: &Request, reply: Option<&Message>) -> Option<Vec<u8>> {
    let format = tap.extra.as_deref()?;
    let rcode = reply.map_or(ResponseCode::NoError, |m| m.metadata.response_code);
    let flags = reply.map(|m| crate::plugins::request::flags_of(&m.metadata));
    let line = crate::plugins::log::render(format, req, req.qname_lower(), rcode, flags, 0.0);
    let size = reply.and_then(|m| m.to_vec().ok()).map_or(0, |b| b.len());
    Some(line.finish(size).into_bytes())
}

impl Dnstap {
    fn client_query(&self, req: &Request, at: SystemTime) {
        let (sec, nsec) = timestamp(at);
        let mut wire = None;
        for tap in self.taps.iter() {
            let mut m = pb::Message {
                r#type: pb::MessageType::ClientQuery as i32,
                socket_protocol: Some(protocol(req.proto) as i32),
                query_time_sec: Some(sec),
                query_time_nsec: Some(nsec),
                ..Default::default()
            };
            set_query_addr(&mut m, req.src);
            if tap.full {
                m.query_message = wire.get_or_insert_with(|| query_wire(req)).clone();
            }
            tap.send(m, extra(tap, req, None));
        }
    }

    fn client_response(&self, req: &Request, at: SystemTime, reply: &Message) {
        let (sec, nsec) = timestamp(at);
        let (rsec, rnsec) = timestamp(SystemTime::now());
        let mut wire = None;
        for tap in self.taps.iter() {
            let mut m = pb::Message {
                r#type: pb::MessageType::ClientResponse as i32,
                socket_protocol: Some(protocol(req.proto) as i32),
                query_time_sec: Some(sec),
                query_time_nsec: Some(nsec),
                response_time_sec: Some(rsec),
                response_time_nsec: Some(rnsec),
                ..Default::default()
            };
            set_query_addr(&mut m, req.src);
            if tap.full {
                m.response_message = wire.get_or_insert_with(|| reply.to_vec().ok()).clone();
            }
            tap.send(m, extra(tap, req, Some(reply)));
        }
    }
}

#[async_trait::async_trait]
impl Handler for Dnstap {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn serve(&self, req: &Request, next: Next<'_>) -> Result<Response, HandlerError> {
        let at = SystemTime::now();
        // Before the query goes on, so a forwarder's messages come after it (as CoreDNS).
        self.client_query(req, at);
        let result = next.run(req).await;
        match &result {
            Ok(r) => self.client_response(req, at, &r.msg),
            // The server answers an error with this rcode: tap that reply too.
            Err(e) => self.client_response(req, at, &req.error_reply(e.rcode())),
        }
        result
    }
}

/// `forward`'s messages: FORWARDER_QUERY (`query` sent from `local` to `upstream` at `at`) and,
/// when one came, FORWARDER_RESPONSE.
#[allow(clippy::too_many_arguments)]
pub fn forwarded(
    taps: &[Arc<Tap>],
    req: &Request,
    query: &Message,
    reply: Option<&Message>,
    local: Option<std::net::SocketAddr>,
    upstream: std::net::SocketAddr,
    tcp: bool,
    at: SystemTime,
) {
    let (sec, nsec) = timestamp(at);
    let proto = if tcp {
        pb::SocketProtocol::Tcp
    } else {
        pb::SocketProtocol::Udp
    };
    let base = || {
        let mut m = pb::Message {
            socket_protocol: Some(proto as i32),
            query_time_sec: Some(sec),
            query_time_nsec: Some(nsec),
            ..Default::default()
        };
        if let Some(l) = local {
            set_query_addr(&mut m, l);
        }
        set_response_addr(&mut m, upstream);
        m
    };
    let (qwire, rwire) = if taps.iter().any(|t| t.full) {
        (query.to_vec().ok(), reply.and_then(|r| r.to_vec().ok()))
    } else {
        (None, None)
    };
    for tap in taps {
        let mut q = base();
        q.r#type = pb::MessageType::ForwarderQuery as i32;
        if tap.full {
            q.query_message = qwire.clone();
        }
        tap.send(q, extra(tap, req, None));
        if let Some(r) = reply {
            let mut m = base();
            m.r#type = pb::MessageType::ForwarderResponse as i32;
            let (rsec, rnsec) = timestamp(SystemTime::now());
            m.response_time_sec = Some(rsec);
            m.response_time_nsec = Some(rnsec);
            if tap.full {
                m.response_message = rwire.clone();
            }
            tap.send(m, extra(tap, req, Some(r)));
        }
    }
}
