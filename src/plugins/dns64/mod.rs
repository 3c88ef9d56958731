//! `dns64`: synthesizes AAAA records from A records for IPv6-only clients (RFC 6147, plugin/dns64).

use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::rdata::AAAA;
use hickory_proto::rr::{DNSClass, RData, Record, RecordType};

use prometheus::{IntCounterVec, Opts, Registry};

use crate::corefile::{Dispenser, Error};
use crate::plugins::{Handler, HandlerError, Next, Request, Response};

/// Directive name.
pub const NAME: &str = "dns64";

/// A parsed `dns64`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dns64Config {
    /// The translation prefix (default 64:ff9b::/96).
    pub prefix: Ipv6Addr,
    /// Its length: a multiple of 8 from 32 to 96.
    pub len: u8,
    /// Synthesize even when real AAAA records exist.
    pub translate_all: bool,
    /// Also for clients that asked over IPv4.
    pub allow_ipv4: bool,
}

/// CoreDNS's parsePrefix: an IPv6 CIDR (host bits are cleared, as Go's `net.ParseCIDR` does)
/// whose length is a multiple of 8 from 32 to 96.
fn parse_prefix(d: &Dispenser<'_>, s: &str) -> Result<(Ipv6Addr, u8), Error> {
    let bad = || d.err(format!("invalid CIDR address: {s}"));
    let (ip, len) = s.split_once('/').ok_or_else(bad)?;
    let len: u8 = len.parse().map_err(|_| bad())?;
    let ip: Ipv6Addr = match ip.parse::<std::net::IpAddr>().map_err(|_| bad())? {
        std::net::IpAddr::V6(ip) if len <= 128 => ip,
        std::net::IpAddr::V4(_) if len <= 32 => {
            return Err(d.err(format!("invalid netmask 32 IPv6 address: \"{s}\"")));
        }
        _ => return Err(bad()),
    };
    if !len.is_multiple_of(8) || !(32..=96).contains(&len) {
        return Err(d.err(format!("invalid prefix length \"{s}\"")));
    }
    let net = u128::from(ip) & !(u128::MAX >> len);
    Ok((Ipv6Addr::from(net), len))
}

/// Parses `dns64 [PREFIX] { prefix PREFIX; translate_all; allow_ipv4 }`.
pub fn parse(d: &mut Dispenser<'_>) -> Result<Dns64Config, Error> {
    let mut c = Dns64Config {
        prefix: "64:ff9b::".parse().expect("literal"),
        len: 96,
        translate_all: false,
        allow_ipv4: false,
    };
    while d.next() {
        let args = d.remaining_args();
        match args.as_slice() {
            [] => {}
            // As CoreDNS: a PREFIX argument leaves a block unread.
            [p] => {
                (c.prefix, c.len) = parse_prefix(d, p)?;
                continue;
            }
            _ => return Err(d.arg_err()),
        }
        while d.next_block() {
            match d.val() {
                "prefix" => {
                    if !d.next_arg() {
                        return Err(d.arg_err());
                    }
                    let p = d.val().to_string();
                    (c.prefix, c.len) = parse_prefix(d, &p)?;
                }
                "translate_all" => c.translate_all = true,
                "allow_ipv4" => c.allow_ipv4 = true,
                other => return Err(d.err(format!("unknown property '{other}'"))),
            }
        }
    }
    Ok(c)
}

/// Embeds `v4` in `prefix/len` as RFC 6052 §2.2 says (bits 64–71 stay zero).
pub fn embed(prefix: Ipv6Addr, len: u8, v4: Ipv4Addr) -> Ipv6Addr {
    let mut b = prefix.octets();
    let v = v4.octets();
    let start = usize::from(len / 8);
    let mut i = start;
    for octet in v {
        if i == 8 {
            i += 1; // the u-octet
        }
        b[i] = octet;
        i += 1;
    }
    Ipv6Addr::from(b)
}

/// `coredns_dns64_requests_translated_total{server}`, registered once per process.
pub struct Dns64Metrics {
    translated: IntCounterVec,
}

impl Dns64Metrics {
    /// Creates and registers the metric.
    pub fn new(r: &Registry) -> Result<Self, prometheus::Error> {
        let translated = IntCounterVec::new(
            Opts::new(
                "coredns_dns64_requests_translated_total",
                "Counter of DNS requests translated by dns64.",
            ),
            &["server"],
        )?;
        r.register(Box::new(translated.clone()))?;
        Ok(Self { translated })
    }
}

/// The handler.
pub struct Dns64 {
    cfg: Dns64Config,
    metrics: Arc<Dns64Metrics>,
}

impl Dns64 {
    /// A handler for `cfg` counting its translations in `metrics`.
    pub fn handler(cfg: Dns64Config, metrics: Arc<Dns64Metrics>) -> Arc<dyn Handler> {
        Arc::new(Self { cfg, metrics })
    }
}

#[async_trait::async_trait]
impl Handler for Dns64 {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn serve(&self, req: &Request, next: Next<'_>) -> Result<Response, HandlerError> {
        // RFC 6147 5.1: AAAA queries of class IN, from IPv6 clients unless allow_ipv4.
        let from_v4 = req.src.ip().to_canonical().is_ipv4();
        if (from_v4 && !self.cfg.allow_ipv4)
            || req.qtype() != RecordType::AAAA
            || req.qclass() != DNSClass::IN
        {
            return next.run(req).await;
        }
        let resp = next.run(req).await?;
        if !self.should_translate(&resp.msg) {
            return Ok(resp);
        }
        // The A query goes through this server; when it cannot be asked the client gets
        // SERVFAIL, as in CoreDNS.
        let a = req.lookup(req.qname().clone(), RecordType::A).await?;
        self.metrics
            .translated
            .with_label_values(&[&req.server])
            .inc();
        Ok(Response::new(self.synthesize(req, &resp.msg, a), NAME))
    }
}

impl Dns64 {
    /// RFC 6147 5.1.1/5.1.2 as CoreDNS reads them: any reply but NXDOMAIN (errors count as
    /// empty) without AAAA records, or any reply but NXDOMAIN with `translate_all`.
    fn should_translate(&self, m: &Message) -> bool {
        m.metadata.response_code != ResponseCode::NXDomain
            && (self.cfg.translate_all
                || !m
                    .answers
                    .iter()
                    .any(|r| r.record_type() == RecordType::AAAA))
    }

    /// CoreDNS's Synthesize: a fresh reply (AA and RA clear, NOERROR) with the A reply's
    /// authority and additional sections and TC bit, each A record turned into an AAAA record
    /// whose TTL is at most the AAAA reply's SOA record TTL (600 without one).
    fn synthesize(&self, req: &Request, aaaa: &Message, a: Message) -> Message {
        let soa_ttl = aaaa
            .authorities
            .iter()
            .rev()
            .find(|r| r.record_type() == RecordType::SOA)
            .map_or(600, |r| r.ttl);
        let mut msg = req.reply();
        msg.metadata.truncation = a.metadata.truncation;
        msg.authorities = a.authorities;
        msg.additionals = a.additionals;
        msg.answers = a
            .answers
            .into_iter()
            .map(|r| match &r.data {
                RData::A(v4) => {
                    let mut out = Record::from_rdata(
                        r.name.clone(),
                        r.ttl.min(soa_ttl),
                        RData::AAAA(AAAA(embed(self.cfg.prefix, self.cfg.len, v4.0))),
                    );
                    out.dns_class = r.dns_class;
                    out
                }
                _ => r,
            })
            .collect();
        msg
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc as StdArc;

    use hickory_proto::op::{MessageType, OpCode};
    use hickory_proto::rr::Name;

    use super::*;
    use crate::corefile::lexer::lex;
    use crate::plugins::{Chain, Proto};

    #[test]
    fn rfc6052_embedding() {
        let v4: Ipv4Addr = "192.0.2.33".parse().unwrap();
        let cases = [
            ("2001:db8::", 32, "2001:db8:c000:221::"),
            ("2001:db8:100::", 40, "2001:db8:1c0:2:21::"),
            ("2001:db8:122::", 48, "2001:db8:122:c000:2:2100::"),
            ("2001:db8:122:300::", 56, "2001:db8:122:3c0:0:221::"),
            ("2001:db8:122:344::", 64, "2001:db8:122:344:c0:2:2100:0"),
            ("64:ff9b::", 96, "64:ff9b::c000:221"),
        ];
        for (p, len, want) in cases {
            assert_eq!(
                embed(p.parse().unwrap(), len, v4).to_string(),
                want,
                "/{len}"
            );
        }
    }

    #[test]
    fn coredns_setup_table() {
        // plugin/dns64/setup_test.go: TestSetupDns64 — (Corefile, fails, prefix, allow_ipv4).
        for (corefile, fails, prefix, allow) in [
            ("dns64", false, "64:ff9b::/96", false),
            ("dns64 64:dead::/96", false, "64:dead::/96", false),
            ("dns64 {\n translate_all\n}", false, "64:ff9b::/96", false),
            ("dns64", false, "64:ff9b::/96", false),
            (
                "dns64 {\n prefix 64:ff9b::/96\n}",
                false,
                "64:ff9b::/96",
                false,
            ),
            (
                "dns64 {\n prefix 64:ff9b::/32\n}",
                false,
                "64:ff9b::/32",
                false,
            ),
            ("dns64 {\n prefix 64:ff9b::/52\n}", true, "", false),
            ("dns64 {\n prefix 64:ff9b::/104\n}", true, "", false),
            ("dns64 {\n prefix 8.8.8.8/24\n}", true, "", false),
            (
                "dns64 {\n prefix 64:ff9b::/96\n}",
                false,
                "64:ff9b::/96",
                false,
            ),
            (
                "dns64 {\n prefix 2002:ac12:b083::/96\n}",
                false,
                "2002:ac12:b083::/96",
                false,
            ),
            (
                "dns64 {\n prefix 2002:c0a8:a88a::/48\n}",
                false,
                "2002:c0a8:a88a::/48",
                false,
            ),
            ("dns64 foobar {\n prefix 64:ff9b::/96\n}", true, "", false),
            ("dns64 foobar", true, "", false),
            ("dns64 {\n foobar\n}", true, "", false),
            ("dns64 {\n allow_ipv4\n}", false, "64:ff9b::/96", true),
        ] {
            let toks = lex(&StdArc::from("Corefile"), corefile);
            match parse(&mut Dispenser::new(&toks)) {
                Ok(c) => {
                    assert!(!fails, "{corefile}");
                    assert_eq!(format!("{}/{}", c.prefix, c.len), prefix, "{corefile}");
                    assert_eq!(c.allow_ipv4, allow, "{corefile}");
                }
                Err(e) => assert!(fails, "{corefile}: {e}"),
            }
        }
        // Go's net.ParseCIDR clears host bits; 72, 80 and 88 are accepted lengths too.
        let toks = lex(&StdArc::from("Corefile"), "dns64 2001:db8::1/80");
        let c = parse(&mut Dispenser::new(&toks)).unwrap();
        assert_eq!(format!("{}/{}", c.prefix, c.len), "2001:db8::/80");
    }

    #[test]
    fn coredns_to6() {
        // plugin/dns64/dns64_test.go: TestTo6.
        let v4: Ipv4Addr = "64.64.64.64".parse().unwrap();
        for (p, len, want) in [
            ("64:ff9b::", 96, "64:ff9b::4040:4040"),
            ("64:ff9b::", 64, "64:ff9b::40:4040:4000:0"),
            ("64:ff9b::", 56, "64:ff9b:0:40:40:4040::"),
            ("64::", 32, "64:0:4040:4040::"),
        ] {
            assert_eq!(embed(p.parse().unwrap(), len, v4).to_string(), want);
        }
    }

    fn cfg(translate_all: bool, allow_ipv4: bool) -> Dns64Config {
        Dns64Config {
            prefix: "64:ff9b::".parse().unwrap(),
            len: 96,
            translate_all,
            allow_ipv4,
        }
    }

    fn rr(s: &str) -> Record {
        crate::zonefile::parse_str(s, std::path::Path::new("t"), &Name::root())
            .unwrap()
            .remove(0)
            .record
    }

    fn msg(rcode: ResponseCode, answer: &[&str], ns: &[&str], tc: bool) -> Message {
        let mut m = Message::new(43, MessageType::Response, OpCode::Query);
        m.metadata.response_code = rcode;
        m.metadata.truncation = tc;
        m.metadata.recursion_desired = true;
        // Authoritative, so that a synthesized reply shows it clears AA.
        m.metadata.authoritative = true;
        m.answers = answer.iter().map(|s| rr(s)).collect();
        m.authorities = ns.iter().map(|s| rr(s)).collect();
        m
    }

    #[test]
    fn coredns_response_should() {
        // plugin/dns64/dns64_test.go: TestResponseShould.
        let soa = "example.com. 3600 IN SOA foo bar 1 1 1 1 1";
        let aaaa = "example.com. 3600 IN AAAA ::1";
        for (m, all, want) in [
            (
                msg(ResponseCode::NoError, &[aaaa], &[], false),
                false,
                false,
            ),
            (msg(ResponseCode::NoError, &[], &[soa], false), false, true),
            (msg(ResponseCode::NotImp, &[], &[soa], false), false, true),
            (
                msg(ResponseCode::NXDomain, &[], &[soa], false),
                false,
                false,
            ),
            (msg(ResponseCode::NoError, &[aaaa], &[], false), true, true),
        ] {
            let d = Dns64 {
                cfg: cfg(all, false),
                metrics: metrics().0,
            };
            assert_eq!(d.should_translate(&m), want, "{m:?}");
        }
    }

    /// The next plugin: answers with a fixed message (CoreDNS's fakeHandler).
    struct Fixed(Message);

    #[async_trait::async_trait]
    impl Handler for Fixed {
        fn name(&self) -> &'static str {
            "fake"
        }
        async fn serve(&self, req: &Request, _: Next<'_>) -> Result<Response, HandlerError> {
            let mut m = self.0.clone();
            m.metadata.id = req.id;
            m.add_query(req.query().clone());
            Ok(Response::new(m, "fake"))
        }
    }

    /// CoreDNS's fakeUpstream: the A reply, for the asked name only.
    struct Upstream(Option<Message>);

    #[async_trait::async_trait]
    impl crate::plugins::request::Resolve for Upstream {
        async fn resolve(&self, req: &Request) -> Result<Message, HandlerError> {
            let m = self.0.clone().expect("unexpected A lookup");
            assert_eq!(req.qname_lower(), "example.com.");
            assert_eq!(req.qtype(), RecordType::A);
            Ok(m)
        }
    }

    fn metrics() -> (Arc<Dns64Metrics>, Registry) {
        let r = Registry::new();
        (Arc::new(Dns64Metrics::new(&r).unwrap()), r)
    }

    async fn run(
        cfg: Dns64Config,
        src: &str,
        qtype: RecordType,
        first: Message,
        a: Option<Message>,
    ) -> Message {
        let chain = Chain::new(vec![
            Dns64::handler(cfg, metrics().0),
            StdArc::new(Fixed(first)),
        ]);
        let mut req = Request::new(
            Name::from_ascii("example.com.").unwrap(),
            qtype,
            src.parse().unwrap(),
            Proto::Udp,
        );
        req.id = 42;
        req.resolver = Some(crate::plugins::request::Resolver(StdArc::new(Upstream(a))));
        chain.run(&req).await.unwrap().msg
    }

    fn lines(rrs: &[Record]) -> Vec<String> {
        rrs.iter()
            .map(|r| format!("{} {} {} {}", r.name, r.ttl, r.record_type(), r.data))
            .collect()
    }

    #[tokio::test]
    async fn coredns_request_should_intercept() {
        // plugin/dns64/dns64_test.go: TestRequestShouldIntercept — (allow_ipv4, client, type,
        // intercepted). An intercepted AAAA query with an empty reply gets synthesized.
        let empty = msg(ResponseCode::NoError, &[], &[], false);
        let a = msg(
            ResponseCode::NoError,
            &["example.com. 60 IN A 192.0.2.42"],
            &[],
            false,
        );
        for (allow, src, t, want) in [
            (true, "[::1]:53", RecordType::AAAA, true),
            (true, "127.0.0.1:53", RecordType::AAAA, true),
            (false, "127.0.0.1:53", RecordType::AAAA, false),
            (false, "[::1]:53", RecordType::A, false),
        ] {
            let m = run(cfg(false, allow), src, t, empty.clone(), Some(a.clone())).await;
            assert_eq!(!m.answers.is_empty(), want, "{allow} {src} {t}");
        }
    }

    #[tokio::test]
    async fn coredns_dns64_table() {
        // plugin/dns64/dns64_test.go: TestDNS64 — (name, first reply, A reply, expected reply:
        // rcode, TC, answer, authority). The reply is a fresh one: id 42, RD, AA clear.
        let soa70 = "example.com. 70 IN SOA foo bar 1 1 1 1 1";
        let soa = "example.com. 3600 IN SOA foo bar 1 7200 900 1209600 86400";
        let a2 = [
            "example.com. 60 IN A 192.0.2.42",
            "example.com. 5000 IN A 192.0.2.43",
        ];
        let synth = |second_ttl: u32| {
            vec![
                "example.com. 60 AAAA 64:ff9b::c000:22a".to_string(),
                format!("example.com. {second_ttl} AAAA 64:ff9b::c000:22b"),
            ]
        };
        type Row = (
            &'static str,
            Message,
            Option<Message>,
            ResponseCode,
            bool,
            Vec<String>,
            Vec<String>,
        );
        let rows: Vec<Row> = vec![
            (
                "standard flow",
                msg(ResponseCode::NoError, &[], &[soa70], false),
                Some(msg(ResponseCode::NoError, &a2, &[], false)),
                ResponseCode::NoError,
                false,
                synth(70),
                vec![],
            ),
            (
                "a empty",
                msg(ResponseCode::NoError, &[], &[soa], false),
                Some(msg(ResponseCode::NoError, &[], &[soa], false)),
                ResponseCode::NoError,
                false,
                vec![],
                vec![format!("example.com. 3600 SOA {}", rr(soa).data)],
            ),
            (
                "non-nxdomain error",
                msg(ResponseCode::Refused, &[], &[], false),
                Some(msg(ResponseCode::NoError, &a2, &[], false)),
                ResponseCode::NoError,
                false,
                synth(600),
                vec![],
            ),
            (
                "nxdomain",
                msg(ResponseCode::NXDomain, &[], &[soa], false),
                None,
                ResponseCode::NXDomain,
                false,
                vec![],
                vec![format!("example.com. 3600 SOA {}", rr(soa).data)],
            ),
            (
                "AAAA record",
                msg(
                    ResponseCode::NoError,
                    &[
                        "example.com. 60 IN AAAA ::1",
                        "example.com. 5000 IN AAAA ::2",
                    ],
                    &[],
                    false,
                ),
                None,
                ResponseCode::NoError,
                false,
                vec![
                    "example.com. 60 AAAA ::1".to_string(),
                    "example.com. 5000 AAAA ::2".to_string(),
                ],
                vec![],
            ),
            (
                "truncated A response",
                msg(ResponseCode::NoError, &[], &[soa70], false),
                Some(msg(ResponseCode::NoError, &a2, &[], true)),
                ResponseCode::NoError,
                true,
                synth(70),
                vec![],
            ),
        ];
        for (name, first, a, rcode, tc, answer, ns) in rows {
            let m = run(cfg(false, false), "[::1]:53", RecordType::AAAA, first, a).await;
            assert_eq!(m.metadata.id, 42, "{name}");
            assert!(m.metadata.recursion_desired, "{name}");
            let passed_on = m.metadata.response_code == ResponseCode::NXDomain
                || m.answers.iter().any(|r| r.data.to_string() == "::1");
            assert_eq!(m.metadata.authoritative, passed_on, "{name}");
            assert_eq!(m.metadata.response_code, rcode, "{name}");
            assert_eq!(m.metadata.truncation, tc, "{name}");
            assert_eq!(lines(&m.answers), answer, "{name}");
            assert_eq!(lines(&m.authorities), ns, "{name}");
            assert_eq!(m.queries[0].query_type(), RecordType::AAAA, "{name}");
        }
        // An A lookup that cannot be made: SERVFAIL (CoreDNS returns the lookup's error).
        let (m, registry) = metrics();
        let chain = Chain::new(vec![
            Dns64::handler(cfg(false, false), m.clone()),
            StdArc::new(Fixed(msg(ResponseCode::NoError, &[], &[], false))),
        ]);
        let req = Request::new(
            Name::from_ascii("example.com.").unwrap(),
            RecordType::AAAA,
            "[::1]:53".parse().unwrap(),
            Proto::Udp,
        );
        assert_eq!(
            chain.run(&req).await.unwrap_err().rcode(),
            ResponseCode::ServFail
        );
        // Only a translation counts (CoreDNS's RequestsTranslatedCount).
        let count = |r: &Registry| {
            r.gather()
                .iter()
                .filter(|f| f.name() == "coredns_dns64_requests_translated_total")
                .flat_map(|f| f.get_metric().iter().map(|m| m.get_counter().get_value()))
                .sum::<f64>()
        };
        assert_eq!(count(&registry), 0.0);
        let a = msg(
            ResponseCode::NoError,
            &["example.com. 60 IN A 192.0.2.42"],
            &[],
            false,
        );
        let chain = Chain::new(vec![
            Dns64::handler(cfg(false, false), m),
            StdArc::new(Fixed(msg(ResponseCode::NoError, &[], &[], false))),
        ]);
        let mut req = req;
        req.resolver = Some(crate::plugins::request::Resolver(StdArc::new(Upstream(
            Some(a),
        ))));
        chain.run(&req).await.unwrap();
        assert_eq!(count(&registry), 1.0);
    }
}
