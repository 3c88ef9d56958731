//! The request every handler sees (CoreDNS's `request.Request`) and the response it returns.

use std::net::SocketAddr;
use std::sync::Arc;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, Record, RecordType};

/// `name` as lower-case text with a trailing dot.
pub fn lower_fqdn(name: &Name) -> String {
    let mut s = name.to_ascii().to_ascii_lowercase();
    if !s.ends_with('.') {
        s.push('.');
    }
    s
}

/// The client's address as plugins see it: an IPv4 client of a dual-stack (`[::]`) socket
/// arrives as `::ffff:a.b.c.d` and is `a.b.c.d` here, as in CoreDNS (whose `state.IP()` and
/// family are those of `net.IP.To4()`), so `log {remote}`, template `.Remote`, `whoami`, `acl`
/// and `view` all see the IPv4 address.
pub fn client_addr(src: SocketAddr) -> SocketAddr {
    match src {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::from((v4, v6.port())),
            None => src,
        },
        SocketAddr::V4(_) => src,
    }
}

/// Transport the query arrived on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Proto {
    /// UDP.
    Udp,
    /// TCP.
    Tcp,
}

impl Proto {
    /// `udp` or `tcp`, as in CoreDNS's metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Udp => "udp",
            Self::Tcp => "tcp",
        }
    }
}

/// One DNS query, decoded once by the server.
#[derive(Debug, Clone)]
pub struct Request {
    /// Message id.
    pub id: u16,
    /// Opcode (always `Query` once it reaches a chain).
    pub op_code: OpCode,
    /// RD flag.
    pub recursion_desired: bool,
    /// CD flag.
    pub checking_disabled: bool,
    /// AD flag.
    pub authentic_data: bool,
    /// The question, letter case as sent (set it with `set_qname`/`set_query`, which keep the
    /// cached text forms below in step).
    query: Query,
    /// The query name as text with its trailing dot: as sent, and lower-case. Made once per
    /// request instead of once per plugin that compares names.
    qname_text: Arc<QnameText>,
    /// The client's OPT record, if any.
    pub edns: Option<Edns>,
    /// Client address.
    pub src: SocketAddr,
    /// Local address of the listener.
    pub local: SocketAddr,
    /// Transport.
    pub proto: Proto,
    /// Size of the request in bytes.
    pub size: usize,
    /// The zone of the server block that took the query (lower-case FQDN).
    pub zone: Arc<str>,
    /// The listener label, e.g. `dns://:53`.
    pub server: std::sync::Arc<str>,
    /// This server, for lookups through its own chains (CoreDNS's `upstream`).
    pub resolver: Option<Resolver>,
    /// How many internal lookups led to this request (loop guard).
    pub depth: u8,
    /// The name of the `view` whose block took the query (metrics' `view` label).
    pub view: Option<Arc<str>>,
    /// Metadata the `metadata` plugin collected for this request (`None` without it).
    pub meta: Option<Arc<super::metadata::Meta>>,
    /// The request's authority section (an IXFR's SOA); empty for ordinary queries.
    pub authorities: Vec<Record>,
}

/// Runs a request through a server's zones and chains, as if a client had sent it.
#[async_trait::async_trait]
pub trait Resolve: Send + Sync + 'static {
    /// Answers `req` (the block is chosen by its name).
    async fn resolve(&self, req: &Request) -> Result<Message, super::HandlerError>;
}

/// A handle on the server that took a request.
#[derive(Clone)]
pub struct Resolver(pub std::sync::Arc<dyn Resolve>);

impl std::fmt::Debug for Resolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Resolver")
    }
}

/// Internal lookups deeper than this fail (a CNAME loop through several plugins).
pub const MAX_LOOKUP_DEPTH: u8 = 8;

/// Placeholders `with_query` starts from; shared, so the server's requests (which replace them)
/// allocate nothing for them.
static DEFAULT_ZONE: std::sync::LazyLock<Arc<str>> = std::sync::LazyLock::new(|| Arc::from("."));
static DEFAULT_SERVER: std::sync::LazyLock<Arc<str>> =
    std::sync::LazyLock::new(|| Arc::from("dns://:53"));

/// The name as sent and lower-case, each with its trailing dot, in one allocation.
#[derive(Debug)]
struct QnameText {
    both: Box<str>,
    split: usize,
}

fn qname_text(name: &Name) -> Arc<QnameText> {
    let mut both = name.to_ascii();
    if !both.ends_with('.') {
        both.push('.');
    }
    let split = both.len();
    both.extend_from_within(..);
    both[split..].make_ascii_lowercase();
    Arc::new(QnameText {
        both: both.into_boxed_str(),
        split,
    })
}

impl Request {
    /// Builds a request for tests and internal probes.
    pub fn new(name: Name, qtype: RecordType, src: SocketAddr, proto: Proto) -> Self {
        let mut query = Query::query(name, qtype);
        query.set_query_class(DNSClass::IN);
        Self::with_query(query, src, proto)
    }

    /// A request for `query` from `src`, with defaults for the rest (id 1, RD, no EDNS).
    pub fn with_query(query: Query, src: SocketAddr, proto: Proto) -> Self {
        Self {
            qname_text: qname_text(query.name()),
            id: 1,
            op_code: OpCode::Query,
            recursion_desired: true,
            checking_disabled: false,
            authentic_data: false,
            query,
            edns: None,
            src: client_addr(src),
            local: src,
            proto,
            size: 0,
            zone: DEFAULT_ZONE.clone(),
            server: DEFAULT_SERVER.clone(),
            resolver: None,
            depth: 0,
            view: None,
            meta: None,
            authorities: Vec::new(),
        }
    }

    /// Looks `name`/`qtype` up through this server's own chains (for ExternalName targets and
    /// the like): same client, transport and EDNS, recursion desired.
    pub async fn lookup(
        &self,
        name: Name,
        qtype: RecordType,
    ) -> Result<Message, super::HandlerError> {
        let Some(resolver) = &self.resolver else {
            return Err(super::HandlerError::Internal(
                "no server to look up through".into(),
            ));
        };
        if self.depth >= MAX_LOOKUP_DEPTH {
            return Err(super::HandlerError::Internal(format!(
                "lookup of {name} exceeds {MAX_LOOKUP_DEPTH} nested lookups"
            )));
        }
        let mut query = Query::query(name, qtype);
        query.set_query_class(DNSClass::IN);
        let mut req = self.clone();
        req.set_query(query);
        req.recursion_desired = true;
        req.depth = self.depth + 1;
        resolver.0.resolve(&req).await
    }

    /// The query name, as sent.
    pub fn qname(&self) -> &Name {
        self.query.name()
    }

    /// The question.
    pub fn query(&self) -> &Query {
        &self.query
    }

    /// Replaces the question.
    pub fn set_query(&mut self, query: Query) {
        if !query.name().eq_case(self.query.name()) {
            self.qname_text = qname_text(query.name());
        }
        self.query = query;
    }

    /// Replaces the query name.
    pub fn set_qname(&mut self, name: Name) {
        let mut q = self.query.clone();
        q.set_name(name);
        self.set_query(q);
    }

    /// Replaces the query type.
    pub fn set_qtype(&mut self, qtype: RecordType) {
        self.query.set_query_type(qtype);
    }

    /// Replaces the query class.
    pub fn set_qclass(&mut self, class: DNSClass) {
        self.query.set_query_class(class);
    }

    /// The query name, lower-case, with its trailing dot (how zones and rules compare it).
    pub fn qname_lower(&self) -> &str {
        &self.qname_text.both[self.qname_text.split..]
    }

    /// The query name as sent, with its trailing dot.
    pub fn qname_sent(&self) -> &str {
        &self.qname_text.both[..self.qname_text.split]
    }

    /// The query type.
    pub fn qtype(&self) -> RecordType {
        self.query.query_type()
    }

    /// The query class.
    pub fn qclass(&self) -> DNSClass {
        self.query.query_class()
    }

    /// The value of metadata `label` (`plugin/NAME`), when the `metadata` plugin collected it.
    pub fn meta(&self, label: &str) -> Option<&str> {
        self.meta.as_deref().and_then(|m| m.get(label))
    }

    /// The DO bit of the client's OPT record.
    pub fn do_bit(&self) -> bool {
        self.edns.as_ref().is_some_and(|e| e.flags().dnssec_ok)
    }

    /// The largest reply the client takes: 65535 over TCP, else its EDNS size (at least 512).
    pub fn max_size(&self) -> u16 {
        match (self.proto, &self.edns) {
            (Proto::Tcp, _) => u16::MAX,
            (Proto::Udp, Some(e)) => e.max_payload().max(512),
            (Proto::Udp, None) => 512,
        }
    }

    /// An empty reply to this request: id, opcode, RD/CD echoed, question copied.
    pub fn reply(&self) -> Message {
        let mut msg = Message::new(self.id, MessageType::Response, self.op_code);
        msg.metadata.recursion_desired = self.recursion_desired;
        msg.metadata.checking_disabled = self.checking_disabled;
        msg.add_query(self.query.clone());
        msg
    }

    /// A bare reply with `rcode`.
    pub fn error_reply(&self, rcode: ResponseCode) -> Message {
        let mut msg = self.reply();
        msg.metadata.response_code = rcode;
        msg
    }
}

/// What a handler answers: the message and the name of the plugin that made it.
#[derive(Debug, Clone)]
pub struct Response {
    /// The reply (its id and question are fixed up by the server).
    pub msg: Reply,
    /// The plugin that wrote the reply (`plugin` label of `coredns_dns_responses_total`).
    pub plugin: &'static str,
    /// A `log` line that waits for the size of the reply as written.
    pub log: Option<PendingLine>,
    /// The messages that follow `msg` in a multi-message TCP reply (a zone transfer).
    pub more: Option<More>,
}

/// The rest of a multi-message reply, in order; the producer stops when this is dropped.
#[derive(Clone)]
pub struct More(Arc<std::sync::Mutex<Option<tokio::sync::mpsc::Receiver<Message>>>>);

impl More {
    /// The messages `rx` delivers.
    pub fn new(rx: tokio::sync::mpsc::Receiver<Message>) -> Self {
        Self(Arc::new(std::sync::Mutex::new(Some(rx))))
    }

    /// The receiver (once: clones share it).
    pub fn take(&self) -> Option<tokio::sync::mpsc::Receiver<Message>> {
        self.0.lock().ok()?.take()
    }
}

impl std::fmt::Debug for More {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("More")
    }
}

/// A reply as a handler returns it: a [`Message`], or a whole message already encoded (a cache
/// hit: stored bytes with id, flags, TTLs and question patched in) that the server writes as it
/// is. The encoded form is decoded only when a plugin looks into it: `Reply` dereferences to
/// the `Message`, decoding on first use, and a mutable borrow drops the bytes (the server then
/// encodes the changed message). Plugins on the hot path read [`Reply::rcode`] and
/// [`Reply::flags`], which need no decoding.
#[derive(Debug, Clone)]
pub struct Reply {
    msg: std::sync::OnceLock<Message>,
    /// A whole message: header, question, records, no OPT record.
    wire: Option<Vec<u8>>,
}

impl Reply {
    /// An encoded reply (header, question, records; no OPT record: the server adds its own).
    pub fn from_wire(bytes: Vec<u8>) -> Self {
        Self {
            msg: std::sync::OnceLock::new(),
            wire: Some(bytes),
        }
    }

    /// The encoded form, while nobody has changed the message.
    pub fn wire(&self) -> Option<&[u8]> {
        self.wire.as_deref()
    }

    /// The encoded form to change in place (for edits that keep it valid, e.g. shuffling
    /// records); forgets a decoded copy.
    pub fn wire_mut(&mut self) -> Option<&mut Vec<u8>> {
        if self.wire.is_some() {
            self.msg = std::sync::OnceLock::new();
        }
        self.wire.as_mut()
    }

    /// Takes the encoded form out (the reply is then empty), if it is one.
    pub fn take_wire(&mut self) -> Option<Vec<u8>> {
        self.wire.take()
    }

    /// The message, decoded if needed.
    pub fn into_message(mut self) -> Message {
        self.decoded();
        self.msg
            .take()
            .unwrap_or_else(|| Message::new(0, MessageType::Response, OpCode::Query))
    }

    /// The rcode (from the header alone when encoded; an encoded reply's rcode fits in it).
    pub fn rcode(&self) -> ResponseCode {
        match (&self.wire, self.msg.get()) {
            (_, Some(m)) => m.metadata.response_code,
            (Some(w), None) => ResponseCode::from(0, crate::dnswire::Flags::of(w).rcode),
            (None, None) => ResponseCode::NoError,
        }
    }

    /// The header flags.
    pub fn flags(&self) -> crate::dnswire::Flags {
        if let (Some(w), None) = (&self.wire, self.msg.get()) {
            return crate::dnswire::Flags::of(w);
        }
        flags_of(&self.metadata)
    }

    /// The number of answer records, and whether the authority section has an SOA and an NS
    /// record (what tells NOERROR, NODATA, NXDOMAIN and referrals apart).
    pub fn shape(&self) -> (usize, bool, bool) {
        if let (Some(w), None) = (&self.wire, self.msg.get()) {
            return wire_shape(w);
        }
        let has = |t: RecordType| self.authorities.iter().any(|r| r.record_type() == t);
        (
            self.answers.len(),
            has(RecordType::SOA),
            has(RecordType::NS),
        )
    }

    fn decoded(&self) -> &Message {
        self.msg.get_or_init(|| {
            let w = self.wire.as_deref().unwrap_or_default();
            Message::from_vec(w).unwrap_or_else(|_| {
                // Our own encoding always decodes; answer SERVFAIL rather than panic if not.
                let mut m = Message::new(0, MessageType::Response, OpCode::Query);
                m.metadata.response_code = ResponseCode::ServFail;
                m
            })
        })
    }
}

/// The header flags of a message's metadata.
pub fn flags_of(md: &hickory_proto::op::Metadata) -> crate::dnswire::Flags {
    crate::dnswire::Flags {
        response: md.message_type == MessageType::Response,
        authoritative: md.authoritative,
        truncation: md.truncation,
        recursion_desired: md.recursion_desired,
        recursion_available: md.recursion_available,
        authentic_data: md.authentic_data,
        checking_disabled: md.checking_disabled,
        rcode: md.response_code.low(),
    }
}

/// [`Reply::shape`] of an encoded message.
pub fn wire_shape(w: &[u8]) -> (usize, bool, bool) {
    let answers = crate::dnswire::u16_at(w, 6).map_or(0, usize::from);
    let (mut soa, mut ns) = (false, false);
    for rr in crate::dnswire::records(w).into_iter().flatten().flatten() {
        if rr.section == crate::dnswire::Section::Authority {
            soa |= rr.rtype == crate::dnswire::TYPE_SOA;
            ns |= rr.rtype == crate::dnswire::TYPE_NS;
        }
    }
    (answers, soa, ns)
}

impl From<Message> for Reply {
    fn from(msg: Message) -> Self {
        Self {
            msg: std::sync::OnceLock::from(msg),
            wire: None,
        }
    }
}

impl std::ops::Deref for Reply {
    type Target = Message;

    fn deref(&self) -> &Message {
        self.decoded()
    }
}

impl std::ops::DerefMut for Reply {
    fn deref_mut(&mut self) -> &mut Message {
        self.decoded();
        self.wire = None;
        self.msg.get_mut().expect("decoded above")
    }
}

/// A `log` line with the places where `{rsize}` goes, filled in by whoever writes the reply.
#[derive(Debug, Clone, Default)]
pub struct PendingLine {
    /// The line without the sizes.
    pub text: String,
    /// Byte offsets in `text` where the size goes, ascending.
    pub rsize_at: Vec<usize>,
}

impl PendingLine {
    /// The line with `rsize` in its places.
    pub fn finish(mut self, rsize: usize) -> String {
        let n = rsize.to_string();
        for &at in self.rsize_at.iter().rev() {
            self.text.insert_str(at, &n);
        }
        self.text
    }
}

impl Response {
    /// A response written by `plugin`.
    pub fn new(msg: Message, plugin: &'static str) -> Self {
        Self {
            msg: msg.into(),
            plugin,
            log: None,
            more: None,
        }
    }

    /// A response written by `plugin` as a whole encoded message ([`Reply::from_wire`]).
    pub fn from_wire(bytes: Vec<u8>, plugin: &'static str) -> Self {
        Self {
            msg: Reply::from_wire(bytes),
            plugin,
            log: None,
            more: None,
        }
    }

    /// The reply's rcode.
    pub fn rcode(&self) -> ResponseCode {
        self.msg.rcode()
    }
}
