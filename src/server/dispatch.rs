//! The query path of one listener: pick the server block by longest zone match, run its chain,
//! write the reply with EDNS and truncation, record metrics. All hickory-server use is here.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use futures_util::FutureExt;
use hickory_proto::ProtoError;
use hickory_proto::op::{Edns, Message, Metadata, OpCode, Query, ResponseCode, emit_message_parts};
use hickory_proto::rr::{DNSClass, RData, Record, RecordType};
use hickory_proto::serialize::binary::{BinEncodable, BinEncoder};
use hickory_server::net::xfer::Protocol;
use hickory_server::server::Request as HRequest;
use tokio::time::Instant;

use crate::dnswire;
use crate::plugins::fast::FastQuery;
use crate::plugins::prometheus::{Metrics, family_label, rcode_label, type_label};
use crate::plugins::request::{Reply, Resolve, Resolver};
use crate::plugins::view::ViewFilter;
use crate::plugins::{Chain, HandlerError, Proto, Request, Response};

/// One server block as a listener sees it.
#[derive(Clone)]
pub(crate) struct Block {
    /// The compiled chain.
    pub(crate) chain: Chain,
    /// Whether the block has `prometheus`.
    pub(crate) metrics: bool,
    /// `view`: the block takes only the queries its expressions accept.
    pub(crate) view: Option<Arc<ViewFilter>>,
    /// The next block for the same zone (Corefile order), tried when this one's view refuses.
    pub(crate) or_else: Option<Arc<Block>>,
}

impl Block {
    /// The first block of this zone's list that takes `req`: one without a view, or one whose
    /// view accepts it. A zone without views costs one branch.
    fn take(self: &Arc<Self>, req: &Request) -> Option<&Arc<Self>> {
        let mut b = self;
        loop {
            match &b.view {
                None => return Some(b),
                Some(v) if v.matches(req) => return Some(b),
                Some(_) => b = b.or_else.as_ref()?,
            }
        }
    }
}

/// A listener's zones: which block answers which name. Shared with the requests it makes, so
/// plugins can look names up through this server (`Request::lookup`).
pub(crate) struct Router {
    /// Zone (lower-case FQDN) → block.
    pub(crate) zones: HashMap<Arc<str>, Arc<Block>>,
    /// Whether classes other than IN reach the chain (a block has `forward` or `chaos`).
    pub(crate) any_class: bool,
    /// Whether any block on this listener records metrics (for `dropped`).
    pub(crate) any_metrics: bool,
    /// Whether any block on this listener has a `view` (the fast path is off then).
    pub(crate) views: bool,
    /// The limits of its TCP connections.
    pub(crate) limits: super::ConnLimits,
}

impl Router {
    /// The block for `req`: the longest zone that contains its name and has a block that takes
    /// it (views); DS goes to the parent-most match.
    fn find(&self, req: &Request) -> Option<(&Arc<str>, &Arc<Block>)> {
        self.find_by(req.qname_lower(), req.qtype(), |b| b.take(req))
    }

    /// [`Router::find`] for the fast path, which has no `Request` for a view to look at: `None`
    /// on a listener with views (their filters decide the block; the general path asks them).
    fn find_plain(&self, qname: &str, qtype: RecordType) -> Option<(&Arc<str>, &Arc<Block>)> {
        if self.views {
            return None;
        }
        self.find_by(qname, qtype, Some)
    }

    /// The longest zone that contains `qname` (lower-case) whose block list gives a block by
    /// `take`; DS goes to the parent-most match.
    fn find_by<'a>(
        &'a self,
        qname: &str,
        qtype: RecordType,
        take: impl Fn(&'a Arc<Block>) -> Option<&'a Arc<Block>>,
    ) -> Option<(&'a Arc<str>, &'a Arc<Block>)> {
        if self.zones.len() <= 8 {
            // A listener has a few zones: comparing each is cheaper than hashing every suffix.
            let inside = self
                .zones
                .iter()
                .filter(|(z, _)| crate::plugins::is_subdomain(z, qname))
                .filter_map(|(z, b)| Some((z, take(b)?)));
            return if qtype == RecordType::DS {
                inside.min_by_key(|(z, _)| z.len())
            } else {
                inside.max_by_key(|(z, _)| z.len())
            };
        }
        let mut found = None;
        let mut name = qname;
        loop {
            if let Some((z, b)) = self.zones.get_key_value(name) {
                if let Some(b) = take(b) {
                    found = Some((z, b));
                    if qtype != RecordType::DS {
                        return found;
                    }
                }
            }
            if name == "." {
                return found;
            }
            name = match name.find('.') {
                Some(i) if i + 1 < name.len() => &name[i + 1..],
                _ => ".",
            };
        }
    }
}

#[async_trait::async_trait]
impl Resolve for Router {
    async fn resolve(&self, req: &Request) -> Result<Message, HandlerError> {
        let Some((zone, block)) = self.find(req) else {
            return Ok(req.error_reply(ResponseCode::Refused));
        };
        let mut req = req.clone();
        req.zone = zone.clone();
        req.view = block.view.as_ref().map(|v| v.name().clone());
        Ok(match block.chain.run(&req).await {
            Ok(resp) => {
                if let Some(line) = resp.log {
                    let size = match resp.msg.wire() {
                        Some(w) => w.len(),
                        None => resp.msg.to_vec().map_or(0, |b| b.len()),
                    };
                    crate::logging::query_line(&line.finish(size));
                }
                resp.msg.into_message()
            }
            Err(e) => req.error_reply(e.rcode()),
        })
    }
}

/// Everything one listener (address:port) needs to answer.
pub(crate) struct Dispatcher {
    /// Metric label `dns://[HOST]:PORT`.
    pub(crate) label: Arc<str>,
    /// Local address of the listener.
    pub(crate) local: SocketAddr,
    /// The zones and their blocks; swapped whole by a reload.
    pub(crate) router: arc_swap::ArcSwap<Router>,
    /// The process's metrics.
    pub(crate) metrics: Arc<Metrics>,
    /// The metric children of each kind of reply answered so far (see [`Children`]).
    pub(crate) children: ChildMap,
}

/// The metric children one kind of reply counts into — by zone, transport, family, type, DO,
/// rcode and plugin — looked up by label values once instead of six times per query. Replaced
/// whole when a new kind is added (rare), so reading needs no lock.
#[derive(Default)]
pub(crate) struct ChildMap(
    arc_swap::ArcSwap<hashbrown::HashMap<ChildKey, Arc<Children>, foldhash::fast::RandomState>>,
);

pub(crate) struct Children {
    requests: prometheus::IntCounter,
    do_requests: prometheus::IntCounter,
    request_size: prometheus::Histogram,
    response_size: prometheus::Histogram,
    responses: prometheus::IntCounter,
    duration: prometheus::Histogram,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct ChildKey {
    zone: Box<str>,
    view: Box<str>,
    kind: ChildKind,
}

/// Everything of a [`ChildKey`] but the zone and the view.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct ChildKind {
    proto: Proto,
    family: &'static str,
    qtype: &'static str,
    rcode: u16,
    plugin: &'static str,
}

/// A [`ChildKey`] by borrowed zone and view (hashes as `ChildKey` does).
#[derive(Hash)]
struct ChildRef<'a> {
    zone: &'a str,
    view: &'a str,
    kind: ChildKind,
}

impl hashbrown::Equivalent<ChildKey> for ChildRef<'_> {
    fn equivalent(&self, k: &ChildKey) -> bool {
        *k.zone == *self.zone && *k.view == *self.view && k.kind == self.kind
    }
}

fn reply_edns(req_edns: Option<&Edns>) -> Option<Edns> {
    req_edns.map(|e| {
        let mut out = Edns::new();
        out.set_max_payload(e.max_payload().max(512));
        out.set_dnssec_ok(e.flags().dnssec_ok);
        out.set_version(0);
        out
    })
}

/// A record as it is encoded in a reply that does not fit the client's buffer otherwise: an
/// SRV target is compressed like any other name (RFC 2782 says not to, but RFC 3597 §4 asks
/// receivers to decompress SRV, which RFC 2052 required), so fewer records have to be dropped.
struct SrvCompressed<'a>(&'a Record);

impl BinEncodable for SrvCompressed<'_> {
    fn emit(&self, encoder: &mut BinEncoder<'_>) -> Result<(), ProtoError> {
        let r = self.0;
        let RData::SRV(srv) = &r.data else {
            return r.emit(encoder);
        };
        r.name.emit(encoder)?;
        RecordType::SRV.emit(encoder)?;
        r.dns_class.emit(encoder)?;
        encoder.emit_u32(r.ttl)?;
        let place = encoder.place::<u16>()?;
        encoder.emit_u16(srv.priority)?;
        encoder.emit_u16(srv.weight)?;
        encoder.emit_u16(srv.port)?;
        srv.target.emit(encoder)?;
        let len = encoder.len_since_place(&place);
        place.replace(encoder, u16::try_from(len).unwrap_or(u16::MAX))
    }
}

/// [`encode`] with SRV targets compressed too: only for replies that do not fit otherwise.
fn encode_packed(
    question: Option<&Query>,
    md: &Metadata,
    msg: Option<&Message>,
    edns: Option<&Edns>,
) -> Vec<u8> {
    let Some(m) = msg else {
        return encode(question, md, msg, edns);
    };
    fn wrap(rs: &[Record]) -> Vec<SrvCompressed<'_>> {
        rs.iter().map(SrvCompressed).collect()
    }
    let (a, n, d) = (wrap(&m.answers), wrap(&m.authorities), wrap(&m.additionals));
    let mut buf = Vec::with_capacity(512);
    let ok = emit_message_parts(
        md,
        &mut question.into_iter(),
        &mut a.iter(),
        &mut n.iter(),
        &mut d.iter(),
        edns,
        None,
        &mut BinEncoder::new(&mut buf),
    );
    match ok {
        Ok(_) => buf,
        Err(_) => encode(question, md, msg, edns),
    }
}

/// Encodes a reply: header `md`, the question, the sections of `msg`, our OPT record. Names
/// compress against the question and each other, as in CoreDNS's replies.
fn encode(
    question: Option<&Query>,
    md: &Metadata,
    msg: Option<&Message>,
    edns: Option<&Edns>,
) -> Vec<u8> {
    let empty: &[hickory_proto::rr::Record] = &[];
    let (a, n, d) = match msg {
        Some(m) => (&m.answers[..], &m.authorities[..], &m.additionals[..]),
        None => (empty, empty, empty),
    };
    let mut buf = Vec::with_capacity(512);
    let ok = emit_message_parts(
        md,
        &mut question.into_iter(),
        &mut a.iter(),
        &mut n.iter(),
        &mut d.iter(),
        edns,
        None,
        &mut BinEncoder::new(&mut buf),
    );
    if ok.is_err() {
        // Only an unencodable record gets here: answer SERVFAIL rather than nothing.
        let mut md = *md;
        md.response_code = ResponseCode::ServFail;
        buf.clear();
        let _ = emit_message_parts(
            &md,
            &mut question.into_iter(),
            &mut empty.iter(),
            &mut empty.iter(),
            &mut empty.iter(),
            edns,
            None,
            &mut BinEncoder::new(&mut buf),
        );
    }
    buf
}

/// The size of `msg` on the wire with `question` and our OPT record, SRV targets compressed.
/// The header is always 12 bytes, so `msg`'s own flags stand in for the reply's.
fn wire_len(question: &Query, msg: &Message, edns: Option<&Edns>) -> usize {
    encode_packed(Some(question), &msg.metadata, Some(msg), edns).len()
}

/// Fits `msg` into `max` bytes *with* our OPT record (hickory's encoder would drop the OPT),
/// as encoded with SRV targets compressed: keeps as many answer, then authority, then
/// additional records as fit, in order, and sets TC when an answer or authority record had to
/// go (CoreDNS's `Truncate`).
fn fit(question: &Query, msg: &mut Message, edns: Option<&Edns>, max: u16) {
    let max = usize::from(max);
    if wire_len(question, msg, edns) <= max {
        return;
    }
    let cut = |msg: &mut Message,
               section: fn(&mut Message) -> &mut Vec<hickory_proto::rr::Record>|
     -> bool {
        let all = std::mem::take(section(msg));
        let (mut lo, mut hi) = (0usize, all.len());
        while lo < hi {
            let mid = (lo + hi).div_ceil(2);
            *section(msg) = all[..mid].to_vec();
            if wire_len(question, msg, edns) <= max {
                lo = mid
            } else {
                hi = mid - 1
            }
        }
        *section(msg) = all[..lo].to_vec();
        lo < all.len()
    };
    let additionals = std::mem::take(&mut msg.additionals);
    let authorities = std::mem::take(&mut msg.authorities);
    let mut truncated = cut(msg, |m| &mut m.answers);
    if !truncated {
        msg.authorities = authorities;
        truncated = cut(msg, |m| &mut m.authorities);
        if !truncated {
            msg.additionals = additionals;
            cut(msg, |m| &mut m.additionals);
        }
    }
    msg.metadata.truncation |= truncated;
}

/// The reply header: id, opcode, RD and CD from the request; rcode; AA, RA, AD and TC from `msg`.
fn reply_header(request: &HRequest, rcode: ResponseCode, msg: Option<&Message>) -> Metadata {
    let mut md = Metadata::response_from_request(&request.metadata);
    md.response_code = rcode;
    if let Some(m) = msg {
        // A plugin may change RD (`header`); every reply is built from the request, so RD
        // otherwise is the client's.
        md.recursion_desired = m.metadata.recursion_desired;
        md.authoritative = m.metadata.authoritative;
        md.recursion_available = m.metadata.recursion_available;
        md.authentic_data = m.metadata.authentic_data;
        md.truncation = m.metadata.truncation;
    }
    md
}

fn served<'a>(
    req: &'a Request,
    zone: &'a str,
    rcode: ResponseCode,
    plugin: &'static str,
    start: Instant,
) -> Served<'a> {
    Served {
        view: req.view.as_deref().unwrap_or(""),
        proto: req.proto,
        src: req.src,
        qtype: req.qtype(),
        do_bit: req.do_bit(),
        size: req.size,
        zone,
        rcode,
        plugin,
        start,
    }
}

/// What to do with a message before decoding it: CoreDNS's, i.e. miekg/dns's
/// `DefaultMsgAcceptFunc` (acceptfunc.go), which looks at the header alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Accept {
    /// Decode and answer it.
    Yes,
    /// No reply: shorter than a header, or a response (QR set; answering responses can make
    /// two servers bounce a packet between them).
    Drop,
    /// FORMERR, header only: not exactly one question, more than one answer or authority
    /// record, more than two additional records (an OPT and a TSIG).
    FormErr,
    /// NOTIMP, header only: an opcode other than QUERY and NOTIFY.
    NotImp,
}

/// The header checks of [`Accept`]. Rejecting on the counts before decoding also keeps a
/// datagram that claims 65,535 questions from making the decoder reserve room for them.
pub(crate) fn accept(raw: &[u8]) -> Accept {
    let Some(h) = raw.get(..12) else {
        return Accept::Drop;
    };
    if h[2] & 0x80 != 0 {
        return Accept::Drop;
    }
    let opcode = (h[2] >> 3) & 0x0f;
    if opcode != 0 && opcode != 4 {
        return Accept::NotImp;
    }
    let count = |i: usize| u16::from_be_bytes([h[i], h[i + 1]]);
    let (qd, an, ns, ar) = (count(4), count(6), count(8), count(10));
    if qd != 1 || an > 1 || ns > 1 || ar > 2 {
        return Accept::FormErr;
    }
    Accept::Yes
}

/// A header-only reply with `rcode` to a query header: its id, opcode, RD and CD (miekg/dns's
/// `SetRcodeFormatError` on a message it could not unpack). `None` for no query header.
pub(crate) fn header_reply(raw: &[u8], rcode: u8) -> Option<Vec<u8>> {
    if raw.len() < 12 || raw[2] & 0x80 != 0 {
        return None;
    }
    let mut out = vec![0u8; 12];
    out[..2].copy_from_slice(&raw[..2]);
    out[2] = 0x80 | (raw[2] & 0x79);
    out[3] = (raw[3] & 0x10) | (rcode & 0x0f);
    Some(out)
}

/// The reply to a message that does not parse: FORMERR with its id, opcode and RD if it has
/// a query header, else nothing.
pub(crate) fn formerr(raw: &[u8]) -> Option<Vec<u8>> {
    header_reply(raw, 1)
}

/// The messages after the first of a multi-message TCP reply (a zone transfer), encoded as
/// they come with the first one's header and question.
pub(crate) struct Follow {
    rx: tokio::sync::mpsc::Receiver<Message>,
    header: Metadata,
    question: Query,
    edns: Option<Edns>,
}

impl Follow {
    /// The next message, encoded; `None` after the last.
    pub(crate) async fn next(&mut self) -> Option<Vec<u8>> {
        let m = self.rx.recv().await?;
        let mut md = self.header;
        md.response_code = m.metadata.response_code;
        md.authoritative = m.metadata.authoritative;
        Some(encode(
            Some(&self.question),
            &md,
            Some(&m),
            self.edns.as_ref(),
        ))
    }
}

impl Dispatcher {
    /// Logs a panic caught while answering, as CoreDNS does (plus where it happened), and counts
    /// it in `coredns_panics_total`.
    pub(crate) fn recovered(&self, panic: &(dyn std::any::Any + Send)) {
        let what = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".into());
        match super::panics::take_location() {
            Some(at) => {
                tracing::error!(
                    "Recovered from panic in server: \"{}\" {what} at {at}",
                    self.label
                )
            }
            None => tracing::error!("Recovered from panic in server: \"{}\" {what}", self.label),
        }
        self.metrics.panics.inc();
    }

    /// Answers one request with the encoded reply (one message: UDP, DoH); `None` when the
    /// query gets no reply at all (`acl … drop`). A reply of several messages (a zone transfer)
    /// cannot be given this way: REFUSED.
    pub(crate) async fn answer(&self, request: &HRequest) -> Option<Vec<u8>> {
        self.answer_all(request, false).await.map(|(out, _)| out)
    }

    /// Answers one request: the encoded reply and, with `stream` (TCP, TLS), the messages that
    /// follow it (zone transfers); `None` for no reply at all.
    pub(crate) async fn answer_all(
        &self,
        request: &HRequest,
        stream: bool,
    ) -> Option<(Vec<u8>, Option<Box<Follow>>)> {
        let start = Instant::now();
        let proto = match request.protocol() {
            Protocol::Tcp => Proto::Tcp,
            _ => Proto::Udp,
        };
        let edns = request.edns.clone();
        let mut resp_edns = reply_edns(edns.as_ref());
        // Requests the chain never sees.
        let early = if request.metadata.op_code != OpCode::Query {
            Some(ResponseCode::NotImp)
        } else if request.queries.len() != 1 {
            Some(ResponseCode::FormErr)
        } else if edns.as_ref().is_some_and(|e| e.version() != 0) {
            Some(ResponseCode::BADVERS)
        } else {
            None
        };
        let question = request.queries.queries().first().map(|q| q.original());
        if let Some(rcode) = early {
            let md = reply_header(request, rcode, None);
            return Some((encode(question, &md, None, resp_edns.as_ref()), None));
        }

        let lq = &request.queries.queries()[0];
        let src = crate::plugins::request::client_addr(request.src());
        let mut req = Request::with_query(lq.original().clone(), src, proto);
        let qtype = req.qtype();
        // Everything a view's expression may look at is filled in before the block is chosen.
        req.id = request.metadata.id;
        req.op_code = request.metadata.op_code;
        req.recursion_desired = request.metadata.recursion_desired;
        req.checking_disabled = request.metadata.checking_disabled;
        req.authentic_data = request.metadata.authentic_data;
        req.edns = edns;
        req.local = self.local;
        req.size = request.as_slice().len();
        req.server = self.label.clone();
        let router = self.router.load_full();
        let found = if req.qclass() == DNSClass::IN || router.any_class {
            router.find(&req)
        } else {
            None
        };
        let Some((zone, block)) = found else {
            if router.any_metrics {
                let m = &self.metrics;
                m.requests
                    .with_label_values(&[
                        &*self.label,
                        "dropped",
                        "",
                        proto.as_str(),
                        family_label(src.ip()),
                        type_label(qtype),
                    ])
                    .inc();
                m.responses
                    .with_label_values(&[&*self.label, "dropped", "", "REFUSED", ""])
                    .inc();
            }
            let md = reply_header(request, ResponseCode::Refused, None);
            return Some((encode(question, &md, None, resp_edns.as_ref()), None));
        };

        req.zone = zone.clone();
        req.view = block.view.as_ref().map(|v| v.name().clone());
        req.resolver = Some(Resolver(router.clone()));
        if !request.authorities.is_empty() {
            req.authorities = request.authorities.clone();
        }
        let req = req;

        let result = AssertUnwindSafe(super::panics::quiet(block.chain.run(&req)))
            .catch_unwind()
            .await;
        let mut log_line = None;
        let mut more = None;
        let (rcode, mut reply, plugin): (ResponseCode, Option<Reply>, &'static str) = match result {
            // Several messages where only one can go (UDP, DoH): a zone transfer needs a stream.
            Ok(Ok(Response {
                plugin,
                log,
                more: Some(_),
                ..
            })) if !stream => {
                log_line = log;
                (ResponseCode::Refused, None, plugin)
            }
            Ok(Ok(Response {
                msg,
                plugin,
                log,
                more: m,
            })) => {
                log_line = log;
                more = m;
                (msg.rcode(), Some(msg), plugin)
            }
            Ok(Err(HandlerError::Dropped(_))) => {
                // No reply at all; the query is counted, not its (missing) response.
                if block.metrics {
                    self.metrics
                        .requests
                        .with_label_values(&[
                            &*self.label,
                            zone,
                            req.view.as_deref().unwrap_or(""),
                            proto.as_str(),
                            family_label(src.ip()),
                            type_label(qtype),
                        ])
                        .inc();
                }
                return None;
            }
            Ok(Err(e)) => (e.rcode(), None, ""),
            Err(panic) => {
                // The payload is dropped here; should its destructor panic too, the listener's
                // own guard (transport::reply) catches that one.
                self.recovered(&*panic);
                (ResponseCode::ServFail, None, "")
            }
        };

        // An encoded reply (a cache hit) gets the request's header fields and our OPT record.
        // It never carries EDNS options of its own: it has no OPT record (see `Reply`), and a
        // plugin that sets an option changes the message, which drops the encoded form. A
        // multi-message reply is never encoded.
        let wire = match more {
            None => reply.as_mut().and_then(Reply::take_wire),
            Some(_) => None,
        };
        let mut msg = match wire {
            Some(mut out) => {
                let opt = if resp_edns.is_some() { 11 } else { 0 };
                if out.len() + opt <= usize::from(req.max_size()) {
                    let md = &request.metadata;
                    dnswire::set_reply_header(
                        &mut out,
                        md.id,
                        u8::from(md.op_code),
                        md.recursion_desired,
                        md.checking_disabled,
                    );
                    if let Some(e) = &resp_edns {
                        dnswire::push_opt(&mut out, e.max_payload(), e.flags().dnssec_ok);
                    }
                    if let Some(line) = log_line {
                        crate::logging::query_line(&line.finish(out.len()));
                    }
                    self.record(
                        block.metrics,
                        &served(&req, zone, rcode, plugin, start),
                        &out,
                    );
                    return Some((out, None));
                }
                // Too big for the client: fitted below, from the decoded message.
                Some(Reply::from_wire(out).into_message())
            }
            None => reply.map(Reply::into_message),
        };

        // Options a plugin put in the reply (NSID, Extended DNS Errors, an upstream's) go in
        // our OPT record — to clients that sent one.
        if let (Some(out), Some(opts)) = (
            resp_edns.as_mut(),
            msg.as_ref()
                .and_then(|m| m.edns.as_ref())
                .map(|e| e.options()),
        ) {
            for (code, option) in opts.as_ref() {
                out.options_mut().remove(*code);
                out.options_mut().insert(option.clone());
            }
        }

        // Encode once; only a reply too big for the client is fitted and encoded again.
        let md = reply_header(request, rcode, msg.as_ref());
        let mut out = encode(Some(req.query()), &md, msg.as_ref(), resp_edns.as_ref());
        if out.len() > usize::from(req.max_size()) {
            if let Some(m) = msg.as_mut() {
                fit(req.query(), m, resp_edns.as_ref(), req.max_size());
                let md = reply_header(request, rcode, msg.as_ref());
                out = encode_packed(Some(req.query()), &md, msg.as_ref(), resp_edns.as_ref());
            }
        }

        if let Some(line) = log_line {
            crate::logging::query_line(&line.finish(out.len()));
        }
        self.record(
            block.metrics,
            &served(&req, zone, rcode, plugin, start),
            &out,
        );
        let follow = more.and_then(|m| m.take()).map(|rx| {
            Box::new(Follow {
                rx,
                header: Metadata::response_from_request(&request.metadata),
                question: req.query().clone(),
                edns: resp_edns,
            })
        });
        Some((out, follow))
    }

    /// The metrics of a reply `out` as written (if the block has `prometheus`).
    fn record(&self, metrics: bool, q: &Served<'_>, out: &[u8]) {
        if !metrics {
            return;
        }
        let kind = ChildKind {
            proto: q.proto,
            family: family_label(q.src.ip()),
            qtype: type_label(q.qtype),
            rcode: u16::from(q.rcode),
            plugin: q.plugin,
        };
        let key = ChildRef {
            zone: q.zone,
            view: q.view,
            kind,
        };
        let c = match self.children.0.load().get(&key) {
            Some(c) => c.clone(),
            None => self.children_of(q.zone, q.view, kind),
        };
        c.requests.inc();
        if q.do_bit {
            c.do_requests.inc();
        }
        c.request_size.observe(q.size as f64);
        c.response_size.observe(out.len() as f64);
        c.responses.inc();
        c.duration.observe(q.start.elapsed().as_secs_f64());
    }

    /// Looks the children of a new kind of reply up by their labels and keeps them.
    #[cold]
    fn children_of(&self, zone: &str, view: &str, kind: ChildKind) -> Arc<Children> {
        let m = &self.metrics;
        let server = &*self.label;
        let labels3 = [server, zone, view];
        let proto = kind.proto.as_str();
        let c = Arc::new(Children {
            requests: m.requests.with_label_values(&[
                server,
                zone,
                view,
                proto,
                kind.family,
                kind.qtype,
            ]),
            do_requests: m.do_requests.with_label_values(&labels3),
            request_size: m
                .request_size
                .with_label_values(&[server, zone, view, proto]),
            response_size: m
                .response_size
                .with_label_values(&[server, zone, view, proto]),
            responses: m.responses.with_label_values(&[
                server,
                zone,
                view,
                &rcode_label(<ResponseCode as From<u16>>::from(kind.rcode)),
                kind.plugin,
            ]),
            duration: m.duration.with_label_values(&labels3),
        });
        let key = ChildKey {
            zone: zone.into(),
            view: view.into(),
            kind,
        };
        // A bounded map: a client sending every query type cannot make it grow without end.
        self.children.0.rcu(|map| {
            let mut map = if map.len() >= 4096 {
                Default::default()
            } else {
                (**map).clone()
            };
            map.insert(key.clone(), c.clone());
            map
        });
        c
    }

    /// Answers the plain query `raw` on the fast path ([`crate::plugins::fast`]), or `None`
    /// when it needs the general path ([`Dispatcher::answer`]).
    pub(crate) fn answer_fast(&self, raw: &[u8], src: SocketAddr, proto: Proto) -> Option<Vec<u8>> {
        let start = Instant::now();
        // As the general path: a v4-mapped client is IPv4 to every plugin and metric.
        let src = crate::plugins::request::client_addr(src);
        let q = dnswire::Question::parse(raw)?;
        let (sent, lower) = (q.sent(), q.lower());
        let router = self.router.load();
        let qtype = RecordType::from(q.qtype);
        let (zone, block) = router.find_plain(lower, qtype)?;
        let fq = FastQuery {
            q: &q,
            sent,
            lower,
            src,
            local: self.local,
            proto,
            zone,
            server: &self.label,
            start,
        };
        let mut out = Vec::with_capacity(512);
        let plugin = match super::panics::catch_quiet(|| block.chain.run_fast(&fq, &mut out)) {
            Ok(plugin) => plugin?,
            Err(panic) => {
                self.recovered(&*panic);
                let mut w = dnswire::Writer::new(&mut out);
                fq.reply_head(&mut w, 2)?;
                out[2] &= !0x04; // no AA on a SERVFAIL from the server
                fq.push_opt(&mut out);
                ""
            }
        };
        let served = Served {
            view: "",
            proto,
            src,
            qtype,
            do_bit: fq.do_bit(),
            size: raw.len(),
            zone,
            rcode: ResponseCode::from(0, dnswire::Flags::of(&out).rcode),
            plugin,
            start,
        };
        self.record(block.metrics, &served, &out);
        Some(out)
    }
}

/// What the metrics of one answered query need.
struct Served<'a> {
    view: &'a str,
    proto: Proto,
    src: SocketAddr,
    qtype: RecordType,
    do_bit: bool,
    size: usize,
    zone: &'a str,
    rcode: ResponseCode,
    plugin: &'static str,
    start: Instant,
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::MessageType;
    use hickory_proto::rr::rdata::A;
    use hickory_proto::rr::{Name, RData, Record};

    #[test]
    fn fit_keeps_the_opt_record_and_sets_tc() {
        let name = Name::from_ascii("www.big.test.").unwrap();
        let q = Query::query(name.clone(), RecordType::A);
        let mut msg = Message::new(1, MessageType::Response, OpCode::Query);
        for i in 0..100u8 {
            msg.add_answer(Record::from_rdata(
                name.clone(),
                30,
                RData::A(A::new(10, 0, 0, i)),
            ));
        }
        let mut edns = Edns::new();
        edns.set_max_payload(1232);
        let full = wire_len(&q, &msg, Some(&edns));
        assert!(full > 1232, "{full}");
        fit(&q, &mut msg, Some(&edns), 1232);
        assert!(msg.metadata.truncation);
        let len = wire_len(&q, &msg, Some(&edns));
        assert!(len <= 1232 && len > 1200, "{len}");
        let mut small = Message::new(1, MessageType::Response, OpCode::Query);
        small.add_answer(Record::from_rdata(name, 30, RData::A(A::new(10, 0, 0, 1))));
        fit(&q, &mut small, Some(&edns), 512);
        assert!(!small.metadata.truncation);
        assert_eq!(small.answers.len(), 1);
    }

    /// A reply that does not fit compresses its SRV targets before it drops records, and
    /// decodes to the same records.
    #[test]
    fn srv_targets_compress_before_records_are_dropped() {
        use hickory_proto::rr::rdata::SRV;
        let qname = Name::from_ascii("_http._tcp.hdls1.testns.svc.cluster.local.").unwrap();
        let q = Query::query(qname.clone(), RecordType::SRV);
        let mut msg = Message::new(1, MessageType::Response, OpCode::Query);
        for host in [
            "172-0-0-2",
            "172-0-0-3",
            "172-0-0-4",
            "5678-abcd--1",
            "5678-abcd--2",
            "dup-name",
        ] {
            let target =
                Name::from_ascii(format!("{host}.cluster1.hdls1.testns.svc.cluster.local."))
                    .unwrap();
            msg.add_answer(Record::from_rdata(
                qname.clone(),
                5,
                RData::SRV(SRV::new(0, 16, 80, target.clone())),
            ));
            msg.add_additional(Record::from_rdata(
                target,
                5,
                RData::A(A::new(172, 0, 0, 2)),
            ));
        }
        let md = msg.metadata;
        let plain = encode(Some(&q), &md, Some(&msg), None);
        let packed = encode_packed(Some(&q), &md, Some(&msg), None);
        assert!(
            plain.len() > 512 && packed.len() <= 512,
            "{} {}",
            plain.len(),
            packed.len()
        );
        let mut fitted = msg.clone();
        fit(&q, &mut fitted, None, 512);
        assert_eq!(fitted.additionals.len(), 6, "nothing dropped");
        let back = Message::from_vec(&packed).unwrap();
        assert_eq!(back.answers, msg.answers);
        assert_eq!(back.additionals, msg.additionals);
    }
}
