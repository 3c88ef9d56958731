//! The `log` handler: times the rest of the chain and writes one line per query.

use std::fmt::Write as _;
use std::net::IpAddr;

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType;
use hickory_proto::serialize::binary::BinEncodable;
use tokio::time::Instant;

use super::{LogConfig, NAME, Rule};
use crate::plugins::request::PendingLine;
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
    /// Classifies a reply.
    pub fn of(msg: &Message) -> Self {
        match msg.metadata.response_code {
            ResponseCode::NoError if !msg.answers.is_empty() => Self::NoError,
            ResponseCode::NoError => {
                let soa = msg
                    .authorities
                    .iter()
                    .any(|r| r.record_type() == RecordType::SOA);
                let ns = msg
                    .authorities
                    .iter()
                    .any(|r| r.record_type() == RecordType::NS);
                if ns && !soa {
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
    cfg: LogConfig,
}

impl Log {
    /// Builds the handler.
    pub fn new(cfg: LogConfig) -> Self {
        Self { cfg }
    }

    fn rule_for(&self, qname_lower: &str) -> Option<&Rule> {
        self.cfg
            .rules
            .iter()
            .find(|r| r.names.iter().any(|n| is_subdomain(qname_lower, n)))
    }
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
        let Some(rule) = self.rule_for(qname) else {
            return next.run(req).await;
        };
        let start = Instant::now();
        let mut result = next.run(req).await;
        let elapsed = start.elapsed();
        let (rcode, msg) = match &result {
            Ok(r) => (r.rcode(), Some(&r.msg)),
            // Nothing is written for a dropped query: CoreDNS's recorder then shows NOERROR.
            Err(HandlerError::Dropped(_)) => (ResponseCode::NoError, None),
            Err(e) => (e.rcode(), None),
        };
        let class = match msg {
            Some(m) => ResponseType::of(m).class(),
            None => Class::Error,
        };
        let wanted = match class {
            Class::Success => rule.classes.success,
            Class::Denial => rule.classes.denial,
            Class::Error => rule.classes.error,
        };
        if wanted {
            let line = render(&rule.format, req, qname, rcode, msg, elapsed.as_secs_f64());
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
}

/// Fills a format's `{…}` placeholders (unknown ones become `-`), leaving the places of
/// `{rsize}` to be filled in when the reply's size is known.
pub(crate) fn render(
    format: &str,
    req: &Request,
    qname: &str,
    rcode: ResponseCode,
    msg: Option<&Message>,
    secs: f64,
) -> PendingLine {
    let mut rsize_at = Vec::new();
    let mut out = String::with_capacity(format.len() + 64);
    let mut rest = format;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let Some(close) = rest[open..].find('}') else {
            out.push_str(&rest[open..]);
            return PendingLine {
                text: out,
                rsize_at,
            };
        };
        let key = &rest[open + 1..open + close];
        rest = &rest[open + close + 1..];
        let _ = match key {
            "remote" => write!(out, "{}", ip(req.src.ip())),
            "port" => write!(out, "{}", req.src.port()),
            "local" => write!(out, "{}", ip(req.local.ip())),
            "type" => write!(out, "{}", req.qtype()),
            "class" => write!(out, "{}", req.qclass()),
            "name" => write!(out, "{qname}"),
            "proto" => write!(out, "{}", req.proto.as_str()),
            "size" => write!(out, "{}", req.size),
            "rcode" => write!(out, "{}", rcode_name(rcode)),
            "rsize" => {
                rsize_at.push(out.len());
                Ok(())
            }
            "duration" => write!(out, "{secs}s"),
            ">id" => write!(out, "{}", req.id),
            ">do" => write!(out, "{}", req.do_bit()),
            ">bufsize" => write!(out, "{}", req.max_size()),
            ">opcode" => write!(out, "{}", u8::from(req.op_code)),
            ">rflags" => write!(out, "{}", msg.map_or_else(String::new, rflags)),
            // `{/LABEL}`: metadata collected by the `metadata` plugin.
            k if k.len() > 1 && k.starts_with('/') => {
                write!(
                    out,
                    "{}",
                    req.meta(&k[1..]).filter(|v| !v.is_empty()).unwrap_or("-")
                )
            }
            _ => write!(out, "-"),
        };
    }
    out.push_str(rest);
    PendingLine {
        text: out,
        rsize_at,
    }
}

fn ip(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    }
}

/// The rcode's name as CoreDNS prints it (`NOERROR`, `NXDOMAIN`, …, else the number).
pub fn rcode_name(rcode: ResponseCode) -> String {
    match rcode {
        ResponseCode::NoError => "NOERROR".into(),
        ResponseCode::FormErr => "FORMERR".into(),
        ResponseCode::ServFail => "SERVFAIL".into(),
        ResponseCode::NXDomain => "NXDOMAIN".into(),
        ResponseCode::NotImp => "NOTIMP".into(),
        ResponseCode::Refused => "REFUSED".into(),
        ResponseCode::YXDomain => "YXDOMAIN".into(),
        ResponseCode::YXRRSet => "YXRRSET".into(),
        ResponseCode::NXRRSet => "NXRRSET".into(),
        ResponseCode::NotAuth => "NOTAUTH".into(),
        ResponseCode::NotZone => "NOTZONE".into(),
        ResponseCode::BADVERS => "BADVERS".into(),
        other => format!("RCODE{}", u16::from(other)),
    }
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

fn rflags(m: &Message) -> String {
    let md = &m.metadata;
    let flags = [
        (
            md.message_type == hickory_proto::op::MessageType::Response,
            "qr",
        ),
        (md.authoritative, "aa"),
        (md.truncation, "tc"),
        (md.recursion_desired, "rd"),
        (md.recursion_available, "ra"),
        (md.authentic_data, "ad"),
        (md.checking_disabled, "cd"),
    ];
    flags
        .iter()
        .filter(|(on, _)| *on)
        .map(|(_, n)| *n)
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::log::COMMON;
    use crate::plugins::{Chain, Proto, whoami::Whoami};
    use hickory_proto::rr::Name;
    use std::sync::Arc;

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
        let line = render(
            COMMON,
            &req,
            "svc1.ns.svc.cluster.local.",
            ResponseCode::NoError,
            Some(&msg),
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
            render(
                "{remote} {>bufsize} {nope}",
                &v6,
                ".",
                ResponseCode::Refused,
                None,
                0.0
            )
            .finish(0),
            "[2001:db8::1] 65535 -"
        );
        let two = render(
            "{rsize}/{rsize} end",
            &v6,
            ".",
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
    fn classifies() {
        let req = Request::new(
            Name::root(),
            RecordType::A,
            "127.0.0.1:1".parse().unwrap(),
            Proto::Udp,
        );
        let mut m = req.reply();
        assert_eq!(ResponseType::of(&m), ResponseType::NoData);
        m.metadata.response_code = ResponseCode::NXDomain;
        assert_eq!(ResponseType::of(&m), ResponseType::NameError);
        m.metadata.response_code = ResponseCode::ServFail;
        assert_eq!(ResponseType::of(&m), ResponseType::OtherError);
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
