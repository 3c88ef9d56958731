//! The `log` handler: times the rest of the chain and writes one line per query.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{DNSClass, RecordType};
use hickory_proto::serialize::binary::BinEncodable;
use tokio::time::Instant;

use super::{LogConfig, NAME, Rule};
use crate::dnswire::{self, Flags};
use crate::plugins::fast::{FastQuery, FastStep};
use crate::plugins::request::{PendingLine, Reply};
use crate::plugins::{Handler, HandlerError, Next, Request, Response};

/// CoreDNS's `response.Typify`: what kind of reply a message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseType {
    /// NOERROR with an answer.
    NoError,
    /// NXDOMAIN.
    NameError,
    /// NOERROR without an answer.
    NoData,
    /// A referral: NS records in authority, no answer.
    Delegation,
    /// Anything else (SERVFAIL, REFUSED, …).
    OtherError,
}

impl ResponseType {
    /// Classifies an encoded reply.
    pub fn of_wire(out: &[u8]) -> Self {
        Self::of_parts(
            ResponseCode::from(0, Flags::of(out).rcode),
            crate::plugins::request::wire_shape(out),
        )
    }

    /// Classifies a reply (encoded replies without decoding them).
    pub fn of(reply: &Reply) -> Self {
        Self::of_parts(reply.rcode(), reply.shape())
    }

    fn of_parts(rcode: ResponseCode, (answers, soa, ns): (usize, bool, bool)) -> Self {
        match rcode {
            ResponseCode::NoError => {
                if answers > 0 {
                    Self::NoError
                } else if ns && !soa {
                    Self::Delegation
                } else {
                    Self::NoData
                }
            }
            ResponseCode::NXDomain => Self::NameError,
            _ => Self::OtherError,
        }
    }

    fn class(self) -> Class {
        match self {
            Self::NoError | Self::Delegation => Class::Success,
            Self::NameError | Self::NoData => Class::Denial,
            Self::OtherError => Class::Error,
        }
    }
}

#[derive(Clone, Copy)]
enum Class {
    Success,
    Denial,
    Error,
}

/// Logs queries matching its rules.
pub struct Log {
    /// Each rule with its format compiled.
    rules: Vec<(Rule, Vec<Token>)>,
}

impl Log {
    /// Builds the handler; each rule's format is compiled once.
    pub fn new(cfg: LogConfig) -> Self {
        Self {
            rules: cfg
                .rules
                .into_iter()
                .map(|r| {
                    let tokens = compile(&r.format);
                    (r, tokens)
                })
                .collect(),
        }
    }

    fn rule_for(&self, qname_lower: &str) -> Option<&(Rule, Vec<Token>)> {
        self.rules
            .iter()
            .find(|(r, _)| r.names.iter().any(|n| is_subdomain(qname_lower, n)))
    }
}

/// One piece of a compiled format: text as written, or a placeholder.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Text(Box<str>),
    Remote,
    Port,
    Local,
    Type,
    Class,
    Name,
    Proto,
    Size,
    Rcode,
    Rsize,
    Duration,
    Id,
    Do,
    Bufsize,
    Opcode,
    Rflags,
    /// `{/LABEL}`: a label the `metadata` plugin collected.
    Meta(Box<str>),
    /// A placeholder we do not know: `-`.
    Unknown,
}

/// Compiles a format's `{…}` placeholders into tokens (an unclosed `{` is text).
fn compile(format: &str) -> Vec<Token> {
    let mut out = Vec::new();
    let mut text = String::new();
    let mut rest = format;
    while let Some(open) = rest.find('{') {
        text.push_str(&rest[..open]);
        let Some(close) = rest[open..].find('}') else {
            text.push_str(&rest[open..]);
            rest = "";
            break;
        };
        let key = &rest[open + 1..open + close];
        rest = &rest[open + close + 1..];
        let t = match key {
            "remote" => Token::Remote,
            "port" => Token::Port,
            "local" => Token::Local,
            "type" => Token::Type,
            "class" => Token::Class,
            "name" => Token::Name,
            "proto" => Token::Proto,
            "size" => Token::Size,
            "rcode" => Token::Rcode,
            "rsize" => Token::Rsize,
            "duration" => Token::Duration,
            ">id" => Token::Id,
            ">do" => Token::Do,
            ">bufsize" => Token::Bufsize,
            ">opcode" => Token::Opcode,
            ">rflags" => Token::Rflags,
            k if k.len() > 1 && k.starts_with('/') => Token::Meta(k[1..].into()),
            _ => Token::Unknown,
        };
        if !text.is_empty() {
            out.push(Token::Text(std::mem::take(&mut text).into_boxed_str()));
        }
        out.push(t);
    }
    text.push_str(rest);
    if !text.is_empty() {
        out.push(Token::Text(text.into_boxed_str()));
    }
    out
}

/// Whether `name` equals `zone` or is below it (both lower-case FQDNs).
pub(crate) fn is_subdomain(name: &str, zone: &str) -> bool {
    zone == "."
        || name == zone
        || (name.len() > zone.len()
            && name.ends_with(zone)
            && name.as_bytes()[name.len() - zone.len() - 1] == b'.')
}

#[async_trait::async_trait]
impl Handler for Log {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn serve(&self, req: &Request, next: Next<'_>) -> Result<Response, HandlerError> {
        let qname = req.qname_lower();
        let Some((rule, tokens)) = self.rule_for(qname) else {
            return next.run(req).await;
        };
        let start = Instant::now();
        let mut result = next.run(req).await;
        let elapsed = start.elapsed();
        let (rcode, reply) = match &result {
            Ok(r) => (r.rcode(), Some(&r.msg)),
            // Nothing is written for a dropped query: CoreDNS's recorder then shows NOERROR.
            Err(HandlerError::Dropped(_)) => (ResponseCode::NoError, None),
            Err(e) => (e.rcode(), None),
        };
        let class = match reply {
            Some(m) => ResponseType::of(m).class(),
            None => Class::Error,
        };
        let wanted = match class {
            Class::Success => rule.classes.success,
            Class::Denial => rule.classes.denial,
            Class::Error => rule.classes.error,
        };
        if wanted {
            let flags = reply.map(|r| r.flags());
            let facts = Facts::of(req);
            let line = render_tokens(tokens, &facts, rcode, flags, elapsed.as_secs_f64());
            match &mut result {
                // `{rsize}` is filled in by the server once the reply is encoded.
                Ok(resp) => resp.log = Some(line),
                Err(HandlerError::Dropped(_)) => {
                    crate::logging::query_line(&line.finish(0));
                }
                Err(_) => {
                    // The server answers an error with the question and our OPT record.
                    let size = 12
                        + req.query().to_bytes().map_or(0, |q| q.len())
                        + if req.edns.is_some() { 11 } else { 0 };
                    crate::logging::query_line(&line.finish(size));
                }
            }
        }
        result
    }

    fn fast(&self, _: &FastQuery<'_>, _: &mut Vec<u8>) -> FastStep {
        FastStep::Pass
    }

    /// The line `serve` writes, for a reply made on the fast path (`out` is final: the
    /// handlers after this one have had their say).
    fn fast_after(&self, q: &FastQuery<'_>, out: &mut Vec<u8>) {
        let Some((rule, tokens)) = self.rule_for(q.lower) else {
            return;
        };
        let flags = dnswire::Flags::of(out);
        let rcode = ResponseCode::from(0, flags.rcode);
        let wanted = match ResponseType::of_wire(out).class() {
            Class::Success => rule.classes.success,
            Class::Denial => rule.classes.denial,
            Class::Error => rule.classes.error,
        };
        if wanted {
            let secs = q.start.elapsed().as_secs_f64();
            let line = render_tokens(tokens, &Facts::of_fast(q), rcode, Some(flags), secs);
            crate::logging::query_line(&line.finish(out.len()));
        }
    }
}

/// What a line says about the query: from a `Request`, or from a plain query on the fast path.
struct Facts<'a> {
    src: SocketAddr,
    local: SocketAddr,
    qtype: RecordType,
    qclass: DNSClass,
    /// Lower-case, with the trailing dot.
    qname: &'a str,
    proto: &'static str,
    size: usize,
    id: u16,
    do_bit: bool,
    bufsize: u16,
    opcode: u8,
    meta: Option<&'a crate::plugins::metadata::Meta>,
}

impl<'a> Facts<'a> {
    fn of(req: &'a Request) -> Self {
        Self {
            src: req.src,
            local: req.local,
            qtype: req.qtype(),
            qclass: req.qclass(),
            qname: req.qname_lower(),
            proto: req.proto.as_str(),
            size: req.size,
            id: req.id,
            do_bit: req.do_bit(),
            bufsize: req.max_size(),
            opcode: u8::from(req.op_code),
            meta: req.meta.as_deref(),
        }
    }

    fn of_fast(q: &'a FastQuery<'a>) -> Self {
        Self {
            src: q.src,
            local: q.local,
            qtype: q.qtype(),
            qclass: q.qclass(),
            qname: q.lower,
            proto: q.proto.as_str(),
            size: q.q.raw.len(),
            id: q.q.id,
            do_bit: q.do_bit(),
            bufsize: q.max_size(),
            opcode: 0,
            meta: None,
        }
    }
}

/// Fills a format's `{…}` placeholders (unknown ones become `-`) for `req` (its name given
/// lower-case as `qname`), leaving the places of `{rsize}` to be filled in when the reply's
/// size is known (for `dnstap`'s `extra`).
pub(crate) fn render(
    format: &str,
    req: &Request,
    qname: &str,
    rcode: ResponseCode,
    flags: Option<Flags>,
    secs: f64,
) -> PendingLine {
    let mut facts = Facts::of(req);
    facts.qname = qname;
    render_tokens(&compile(format), &facts, rcode, flags, secs)
}

/// Writes a line from compiled `tokens`, leaving the places of `{rsize}` to be filled in when
/// the reply's size is known.
fn render_tokens(
    tokens: &[Token],
    req: &Facts<'_>,
    rcode: ResponseCode,
    flags: Option<Flags>,
    secs: f64,
) -> PendingLine {
    let mut rsize_at = Vec::new();
    let mut out = String::with_capacity(128 + req.qname.len());
    for t in tokens {
        match t {
            Token::Text(s) => out.push_str(s),
            Token::Remote => push_ip(&mut out, req.src.ip()),
            Token::Port => push_num(&mut out, req.src.port().into()),
            Token::Local => push_ip(&mut out, req.local.ip()),
            Token::Type => out.push_str(<&str>::from(req.qtype)),
            Token::Class => out.push_str(<&str>::from(req.qclass)),
            Token::Name => out.push_str(req.qname),
            Token::Proto => out.push_str(req.proto),
            Token::Size => push_num(&mut out, req.size as u64),
            Token::Rcode => out.push_str(&rcode_name(rcode)),
            Token::Rsize => rsize_at.push(out.len()),
            Token::Duration => {
                let _ = write!(out, "{secs}s");
            }
            Token::Id => push_num(&mut out, req.id.into()),
            Token::Do => out.push_str(if req.do_bit { "true" } else { "false" }),
            Token::Bufsize => push_num(&mut out, req.bufsize.into()),
            Token::Opcode => push_num(&mut out, req.opcode.into()),
            Token::Rflags => {
                if let Some(f) = flags {
                    push_rflags(&mut out, f);
                }
            }
            // `{/LABEL}`: metadata collected by the `metadata` plugin.
            Token::Meta(label) => out.push_str(
                req.meta
                    .and_then(|m| m.get(label))
                    .filter(|v| !v.is_empty())
                    .unwrap_or("-"),
            ),
            Token::Unknown => out.push('-'),
        }
    }
    PendingLine {
        text: out,
        rsize_at,
    }
}

fn push_num(out: &mut String, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.push_str(std::str::from_utf8(&digits[i..]).unwrap_or("0"));
}

fn push_ip(out: &mut String, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            for (i, o) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push('.');
                }
                push_num(out, o.into());
            }
        }
        IpAddr::V6(v6) => {
            let _ = write!(out, "[{v6}]");
        }
    }
}

/// The rcode's name as CoreDNS prints it (`NOERROR`, `NXDOMAIN`, …, else the number).
pub fn rcode_name(rcode: ResponseCode) -> Cow<'static, str> {
    Cow::Borrowed(match rcode {
        ResponseCode::NoError => "NOERROR",
        ResponseCode::FormErr => "FORMERR",
        ResponseCode::ServFail => "SERVFAIL",
        ResponseCode::NXDomain => "NXDOMAIN",
        ResponseCode::NotImp => "NOTIMP",
        ResponseCode::Refused => "REFUSED",
        ResponseCode::YXDomain => "YXDOMAIN",
        ResponseCode::YXRRSet => "YXRRSET",
        ResponseCode::NXRRSet => "NXRRSET",
        ResponseCode::NotAuth => "NOTAUTH",
        ResponseCode::NotZone => "NOTZONE",
        ResponseCode::BADVERS => "BADVERS",
        other => return Cow::Owned(format!("RCODE{}", u16::from(other))),
    })
}

/// The rcode a Corefile names (`NOERROR`, `SERVFAIL`, …; any case), for `forward`'s `next`
/// and `template`'s `rcode`.
pub fn rcode_from_name(name: &str) -> Option<ResponseCode> {
    [
        ResponseCode::NoError,
        ResponseCode::FormErr,
        ResponseCode::ServFail,
        ResponseCode::NXDomain,
        ResponseCode::NotImp,
        ResponseCode::Refused,
    ]
    .into_iter()
    .find(|c| rcode_name(*c).eq_ignore_ascii_case(name))
}

/// `qr,aa,rd,…`: the reply's flags as CoreDNS's `{>rflags}` lists them.
fn push_rflags(out: &mut String, f: Flags) {
    let flags = [
        (f.response, "qr"),
        (f.authoritative, "aa"),
        (f.truncation, "tc"),
        (f.recursion_desired, "rd"),
        (f.recursion_available, "ra"),
        (f.authentic_data, "ad"),
        (f.checking_disabled, "cd"),
    ];
    let mut first = true;
    for (on, name) in flags {
        if on {
            if !first {
                out.push(',');
            }
            out.push_str(name);
            first = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::log::{COMBINED, COMMON};
    use crate::plugins::{Chain, Proto, whoami::Whoami};
    use hickory_proto::rr::{Name, RecordType};
    use std::sync::Arc;

    #[test]
    fn formats_compile_once_into_tokens() {
        assert_eq!(
            compile("{name} {rcode}x{nope}"),
            [
                Token::Name,
                Token::Text(" ".into()),
                Token::Rcode,
                Token::Text("x".into()),
                Token::Unknown
            ]
        );
        assert_eq!(compile("a {b"), [Token::Text("a {b".into())]);
        assert_eq!(compile(""), []);
    }

    #[test]
    fn common_format() {
        let mut req = Request::new(
            Name::from_ascii("Svc1.NS.svc.cluster.local.").unwrap(),
            RecordType::A,
            "10.244.0.5:53011".parse().unwrap(),
            Proto::Udp,
        );
        req.id = 4212;
        req.size = 46;
        let mut msg = req.reply();
        msg.metadata.authoritative = true;
        let line = render_tokens(
            &compile(COMMON),
            &Facts::of(&req),
            ResponseCode::NoError,
            Some(Reply::from(msg).flags()),
            0.000179,
        )
        .finish(77);
        assert!(
            line.starts_with(
                "10.244.0.5:53011 - 4212 \"A IN svc1.ns.svc.cluster.local. udp 46 false 512\" NOERROR qr,aa,rd "
            ),
            "{line}"
        );
        assert!(line.ends_with(" 77 0.000179s"), "{line}");
        let v6 = Request::new(
            Name::root(),
            RecordType::A,
            "[2001:db8::1]:5".parse().unwrap(),
            Proto::Tcp,
        );
        assert_eq!(
            render_tokens(
                &compile("{remote} {>bufsize} {nope}"),
                &Facts::of(&v6),
                ResponseCode::Refused,
                None,
                0.0
            )
            .finish(0),
            "[2001:db8::1] 65535 -"
        );
        let two = render_tokens(
            &compile("{rsize}/{rsize} end"),
            &Facts::of(&v6),
            ResponseCode::Refused,
            None,
            0.0,
        );
        assert_eq!(two.finish(123), "123/123 end");
        // Metadata placeholders: the value, or `-` without one.
        let mut with_meta = v6.clone();
        let mut meta = crate::plugins::metadata::Meta::default();
        meta.set("kubernetes/namespace", "ns1");
        meta.set("test/empty", "");
        with_meta.meta = Some(std::sync::Arc::new(meta));
        let line = render(
            "{/kubernetes/namespace} {/test/empty} {/nope/x}",
            &with_meta,
            ".",
            ResponseCode::NoError,
            None,
            0.0,
        );
        assert_eq!(line.finish(0), "ns1 - -");
    }

    #[test]
    fn fast_path_lines_are_the_general_paths() {
        let name = Name::from_ascii("Svc1.NS.svc.cluster.local.").unwrap();
        let mut m = hickory_proto::op::Message::new(
            4212,
            hickory_proto::op::MessageType::Query,
            hickory_proto::op::OpCode::Query,
        );
        m.add_query(hickory_proto::op::Query::query(
            name.clone(),
            RecordType::AAAA,
        ));
        let mut e = hickory_proto::op::Edns::new();
        e.set_max_payload(1232);
        e.set_dnssec_ok(true);
        m.set_edns(e.clone());
        let raw = m.to_vec().unwrap();
        let (src, local) = (
            "10.244.0.5:53011".parse().unwrap(),
            "10.96.0.10:53".parse().unwrap(),
        );
        let q = dnswire::Question::parse(&raw).unwrap();
        let server: Arc<str> = Arc::from("dns://:53");
        let fq = FastQuery {
            q: &q,
            sent: q.sent(),
            lower: q.lower(),
            src,
            local,
            proto: Proto::Udp,
            zone: ".",
            server: &server,
            start: Instant::now(),
        };
        let mut req = Request::new(name, RecordType::AAAA, src, Proto::Udp);
        req.id = 4212;
        req.size = raw.len();
        req.edns = Some(e);
        req.local = local;
        let toks = compile(&format!("{COMBINED} {{local}} {{class}}"));
        let flags = Some(Flags::of(&raw));
        let general = render_tokens(&toks, &Facts::of(&req), ResponseCode::NXDomain, flags, 0.5);
        let fast = render_tokens(
            &toks,
            &Facts::of_fast(&fq),
            ResponseCode::NXDomain,
            flags,
            0.5,
        );
        assert_eq!(general.finish(99), fast.finish(99));
    }

    #[test]
    fn classifies() {
        let req = Request::new(
            Name::root(),
            RecordType::A,
            "127.0.0.1:1".parse().unwrap(),
            Proto::Udp,
        );
        let mut m = Reply::from(req.reply());
        assert_eq!(ResponseType::of(&m), ResponseType::NoData);
        m.metadata.response_code = ResponseCode::NXDomain;
        assert_eq!(ResponseType::of(&m), ResponseType::NameError);
        m.metadata.response_code = ResponseCode::ServFail;
        assert_eq!(ResponseType::of(&m), ResponseType::OtherError);
        // The same from the encoded reply, without decoding it.
        let mut m = req.reply();
        m.add_answer(hickory_proto::rr::Record::from_rdata(
            Name::root(),
            5,
            hickory_proto::rr::RData::A(hickory_proto::rr::rdata::A::new(192, 0, 2, 1)),
        ));
        let wire = Reply::from_wire(m.to_vec().unwrap());
        assert_eq!(ResponseType::of(&wire), ResponseType::NoError);
        assert_eq!(wire.flags(), Reply::from(m).flags());
    }

    #[test]
    fn subdomains() {
        assert!(is_subdomain("a.example.org.", "example.org."));
        assert!(is_subdomain("example.org.", "example.org."));
        assert!(!is_subdomain("aexample.org.", "example.org."));
        assert!(is_subdomain("anything.", "."));
    }

    #[tokio::test]
    async fn passes_the_reply_through() {
        let cfg = super::super::LogConfig {
            rules: vec![super::super::Rule {
                names: vec!["example.org.".into()],
                format: COMMON.into(),
                classes: super::super::Classes::ALL,
            }],
        };
        let chain = Chain::new(vec![Arc::new(Log::new(cfg)), Arc::new(Whoami)]);
        for q in ["a.example.org.", "other.net."] {
            let req = Request::new(
                Name::from_ascii(q).unwrap(),
                RecordType::A,
                "127.0.0.1:9".parse().unwrap(),
                Proto::Udp,
            );
            assert_eq!(chain.run(&req).await.unwrap().plugin, "whoami");
        }
    }
}
