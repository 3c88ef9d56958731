//! `local`: answers the names that must never leave the host — `localhost.`, names under it,
//! and the loopback, "this host" and broadcast reverse zones (RFC 6761, RFC 6303)
//! (plugin/local).

use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::rdata::{A, AAAA, NS, PTR, SOA};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use prometheus::{IntCounter, Registry};

use crate::corefile::{Dispenser, Error};
use crate::plugins::{Handler, HandlerError, Next, Request, Response, is_subdomain};

/// Directive name.
pub const NAME: &str = "local";

/// TTL of every record (a week, as CoreDNS).
const TTL: u32 = 604_800;

/// The zones answered: CoreDNS's four, plus the IPv6 loopback and unspecified address zones of
/// RFC 6303 §4.3/§4.4 (CoreDNS lists them as a bug: not intercepted).
const ZONES: &[&str] = &[
    "localhost.",
    "0.in-addr.arpa.",
    "127.in-addr.arpa.",
    "255.in-addr.arpa.",
    IP6_LOOPBACK,
    IP6_UNSPECIFIED,
];
const IP6_LOOPBACK: &str =
    "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.ip6.arpa.";
const IP6_UNSPECIFIED: &str =
    "0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.ip6.arpa.";

/// `coredns_local_localhost_requests_total`.
pub struct LocalMetrics {
    localhost: IntCounter,
}

impl LocalMetrics {
    /// Creates and registers the metric.
    pub fn new(r: &Registry) -> Result<Self, prometheus::Error> {
        let localhost = IntCounter::new(
            "coredns_local_localhost_requests_total",
            "Counter of special localhost subdomain requests.",
        )?;
        r.register(Box::new(localhost.clone()))?;
        Ok(Self { localhost })
    }
}

/// A parsed `local`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalConfig {
    /// `localhost_prefix on` (default): `localhost.DOMAIN` answers like `localhost.`.
    pub localhost_prefix: bool,
}

/// Parses `local [{ localhost_prefix on|off }]`.
pub fn parse(d: &mut Dispenser<'_>) -> Result<LocalConfig, Error> {
    let mut c = LocalConfig {
        localhost_prefix: true,
    };
    while d.next() {
        if !d.remaining_args().is_empty() {
            return Err(d.arg_err());
        }
        while d.next_block() {
            match d.val() {
                "localhost_prefix" => {
                    let v = d.single_arg()?;
                    c.localhost_prefix = match v.as_str() {
                        "on" => true,
                        "off" => false,
                        other => {
                            return Err(d.err(format!(
                                "localhost_prefix expects 'on' or 'off', got \"{other}\""
                            )));
                        }
                    };
                }
                other => return Err(d.err(format!("unknown property '{other}'"))),
            }
        }
    }
    Ok(c)
}

/// The handler.
pub struct Local {
    cfg: LocalConfig,
    metrics: Arc<LocalMetrics>,
}

impl Local {
    /// A handler for `cfg`, counting into `metrics`.
    pub fn new(cfg: LocalConfig, metrics: Arc<LocalMetrics>) -> Self {
        Self { cfg, metrics }
    }
}

fn name(s: &str) -> Name {
    Name::from_ascii(s).expect("a valid name")
}

fn soa(owner: &str) -> Record {
    Record::from_rdata(
        name(owner),
        TTL,
        RData::SOA(SOA::new(
            name("localhost."),
            name("root.localhost."),
            1,
            0,
            0,
            0,
            TTL,
        )),
    )
}

fn loopback(qname: &Name, qtype: RecordType) -> Option<Record> {
    let data = match qtype {
        RecordType::A => RData::A(A(Ipv4Addr::LOCALHOST)),
        RecordType::AAAA => RData::AAAA(AAAA(Ipv6Addr::LOCALHOST)),
        _ => return None,
    };
    Some(Record::from_rdata(qname.clone(), TTL, data))
}

#[async_trait::async_trait]
impl Handler for Local {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn serve(&self, req: &Request, next: Next<'_>) -> Result<Response, HandlerError> {
        const LOCALHOST: &str = "localhost.";
        let lower = req.qname_lower();
        let sent = req.qname_sent();
        let long = lower.len() > LOCALHOST.len();
        let under = long && lower.ends_with(".localhost.");
        let legacy = long && self.cfg.localhost_prefix && lower.starts_with(LOCALHOST);
        let mut msg = req.reply();
        if under || legacy {
            // RFC 6761 §6.3 (and the legacy `localhost.DOMAIN`): loopback addresses.
            self.metrics.localhost.inc();
            match loopback(req.qname(), req.qtype()) {
                Some(r) => {
                    msg.add_answer(r);
                }
                None => {
                    msg.add_authority(soa(sent));
                }
            }
            return Ok(Response::new(msg, NAME));
        }
        let Some(zone) = ZONES
            .iter()
            .filter(|z| is_subdomain(z, lower))
            .max_by_key(|z| z.len())
        else {
            return next.run(req).await;
        };
        // The zone as the client wrote it.
        let zone_sent = &sent[sent.len() - zone.len()..];
        let qtype = req.qtype();
        if lower == *zone {
            match qtype {
                RecordType::SOA => {
                    msg.add_answer(soa(sent));
                }
                RecordType::NS => {
                    msg.add_answer(Record::from_rdata(
                        req.qname().clone(),
                        TTL,
                        RData::NS(NS(name(LOCALHOST))),
                    ));
                }
                RecordType::PTR if *zone == IP6_LOOPBACK => {
                    msg.add_answer(Record::from_rdata(
                        req.qname().clone(),
                        TTL,
                        RData::PTR(PTR(name(LOCALHOST))),
                    ));
                }
                _ => match loopback(req.qname(), qtype).filter(|_| *zone == LOCALHOST) {
                    Some(r) => {
                        msg.add_answer(r);
                    }
                    None => {
                        msg.add_authority(soa(sent));
                    }
                },
            }
        } else if lower == "1.0.0.127.in-addr.arpa." {
            if qtype == RecordType::PTR {
                msg.add_answer(Record::from_rdata(
                    req.qname().clone(),
                    TTL,
                    RData::PTR(PTR(name(LOCALHOST))),
                ));
            } else {
                msg.add_authority(soa(zone_sent));
            }
        }
        if msg.answers.is_empty() && msg.authorities.is_empty() {
            msg.metadata.response_code = ResponseCode::NXDomain;
            msg.add_authority(soa(zone_sent));
        }
        Ok(Response::new(msg, NAME))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::corefile::lexer::lex;
    use crate::plugins::{Chain, Proto};

    fn setup(input: &str) -> Result<LocalConfig, Error> {
        let toks = lex(&Arc::from("Corefile"), input);
        parse(&mut Dispenser::new(&toks))
    }

    #[test]
    fn setup_table() {
        // CoreDNS's setup_test.go.
        assert!(setup("local").unwrap().localhost_prefix);
        assert!(setup("local example.org").is_err());
        assert!(setup("local { foo }").is_err());
        assert!(
            !setup("local {\n localhost_prefix off\n}")
                .unwrap()
                .localhost_prefix
        );
        let e = setup("local {\n localhost_prefix maybe\n}")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("localhost_prefix expects 'on' or 'off', got \"maybe\""),
            "{e}"
        );
        assert!(setup("local {\n localhost_prefix\n}").is_err());
        assert!(
            setup("local {\n bogus\n}")
                .unwrap_err()
                .to_string()
                .contains("unknown property 'bogus'")
        );
    }

    /// Answers A 192.0.2.1 for anything (the next plugin).
    struct Next1;

    #[async_trait::async_trait]
    impl Handler for Next1 {
        fn name(&self) -> &'static str {
            "next"
        }
        async fn serve(&self, req: &Request, _: Next<'_>) -> Result<Response, HandlerError> {
            let mut m = req.reply();
            m.add_answer(Record::from_rdata(
                req.qname().clone(),
                5,
                RData::A(A(Ipv4Addr::new(192, 0, 2, 1))),
            ));
            Ok(Response::new(m, "next"))
        }
    }

    fn chain(cfg: LocalConfig) -> Chain {
        let m = Arc::new(LocalMetrics::new(&Registry::new()).unwrap());
        Chain::new(vec![Arc::new(Local::new(cfg, m)), Arc::new(Next1)])
    }

    async fn ask(c: &Chain, q: &str, t: RecordType) -> Response {
        let req = Request::new(
            Name::from_ascii(q).unwrap(),
            t,
            "127.0.0.1:1".parse().unwrap(),
            Proto::Udp,
        );
        c.run(&req).await.unwrap()
    }

    #[tokio::test]
    async fn coredns_table() {
        use RecordType::*;
        let c = chain(LocalConfig {
            localhost_prefix: true,
        });
        // CoreDNS's local_test.go: (question, type, rcode, answer "NAME TYPE", authority "NAME TYPE").
        type Row<'a> = (
            &'a str,
            RecordType,
            ResponseCode,
            Option<&'a str>,
            Option<&'a str>,
        );
        let table: &[Row<'_>] = &[
            (
                "localhost.",
                A,
                ResponseCode::NoError,
                Some("localhost. A"),
                None,
            ),
            (
                "localHOst.",
                A,
                ResponseCode::NoError,
                Some("localHOst. A"),
                None,
            ),
            (
                "localhost.",
                AAAA,
                ResponseCode::NoError,
                Some("localhost. AAAA"),
                None,
            ),
            (
                "localhost.",
                NS,
                ResponseCode::NoError,
                Some("localhost. NS"),
                None,
            ),
            (
                "localhost.",
                SOA,
                ResponseCode::NoError,
                Some("localhost. SOA"),
                None,
            ),
            (
                "127.in-addr.arpa.",
                A,
                ResponseCode::NoError,
                None,
                Some("127.in-addr.arpa. SOA"),
            ),
            (
                "localhost.",
                MX,
                ResponseCode::NoError,
                None,
                Some("localhost. SOA"),
            ),
            (
                "a.localhost.",
                A,
                ResponseCode::NoError,
                Some("a.localhost. A"),
                None,
            ),
            (
                "a.localhost.",
                AAAA,
                ResponseCode::NoError,
                Some("a.localhost. AAAA"),
                None,
            ),
            (
                "a.localhost.",
                MX,
                ResponseCode::NoError,
                None,
                Some("a.localhost. SOA"),
            ),
            (
                "1.0.0.127.in-addr.arpa.",
                PTR,
                ResponseCode::NoError,
                Some("1.0.0.127.in-addr.arpa. PTR"),
                None,
            ),
            (
                "1.0.0.127.in-addr.arpa.",
                MX,
                ResponseCode::NoError,
                None,
                Some("127.in-addr.arpa. SOA"),
            ),
            (
                "2.0.0.127.in-addr.arpa.",
                PTR,
                ResponseCode::NXDomain,
                None,
                Some("127.in-addr.arpa. SOA"),
            ),
            // TestLocalInterceptsLocalhostPrefixByDefault.
            (
                "localhost.example.net.",
                A,
                ResponseCode::NoError,
                Some("localhost.example.net. A"),
                None,
            ),
            // Not in CoreDNS: the IPv6 loopback reverse name (RFC 6303 §4.4).
            (
                IP6_LOOPBACK,
                PTR,
                ResponseCode::NoError,
                Some(
                    "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.ip6.arpa. PTR",
                ),
                None,
            ),
            (
                IP6_UNSPECIFIED,
                PTR,
                ResponseCode::NoError,
                None,
                Some(
                    "0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.ip6.arpa. SOA",
                ),
            ),
            (
                "x.0.in-addr.arpa.",
                A,
                ResponseCode::NXDomain,
                None,
                Some("0.in-addr.arpa. SOA"),
            ),
        ];
        for (q, t, rcode, answer, auth) in table {
            let r = ask(&c, q, *t).await;
            let show = |rs: &[Record]| {
                rs.first()
                    .map(|r| format!("{} {}", r.name, r.record_type()))
            };
            assert_eq!(r.rcode(), *rcode, "{q} {t}");
            assert_eq!(show(&r.msg.answers).as_deref(), *answer, "{q} {t}");
            assert_eq!(show(&r.msg.authorities).as_deref(), *auth, "{q} {t}");
            assert_eq!(r.plugin, NAME);
        }
        let r = ask(&c, "localhost.", A).await;
        assert_eq!(
            (r.msg.answers[0].ttl, r.msg.answers[0].data.to_string()),
            (TTL, "127.0.0.1".into())
        );
        let r = ask(&c, "localhost.", SOA).await;
        assert_eq!(
            r.msg.answers[0].data.to_string(),
            "localhost. root.localhost. 1 0 0 0 604800"
        );
        // Other names go on.
        assert_eq!(ask(&c, "example.org.", A).await.plugin, "next");
        // TestLocalDoesNotInterceptLocalhostPrefixWhenDisabled.
        let c = chain(LocalConfig {
            localhost_prefix: false,
        });
        let r = ask(&c, "localhost.example.net.", A).await;
        assert_eq!(
            (r.plugin, r.msg.answers[0].data.to_string()),
            ("next", "192.0.2.1".into())
        );
    }
}
