//! `acl`: allows, blocks, filters or drops queries by client address and query type
//! (plugin/acl).

mod setup;

use std::net::IpAddr;
use std::sync::Arc;

use hickory_proto::op::ResponseCode;
use prometheus::{IntCounterVec, Opts, Registry};

use crate::plugins::response::{EDE_BLOCKED, EDE_FILTERED, ede, set_option};
use crate::plugins::{Handler, HandlerError, Next, Request, Response, is_subdomain};

pub use setup::{AclConfig, Action, Policy, Rule, parse, parse_net};

/// Directive name.
pub const NAME: &str = "acl";

/// `coredns_acl_*`, registered once per process.
pub struct AclMetrics {
    blocked: IntCounterVec,
    filtered: IntCounterVec,
    allowed: IntCounterVec,
    dropped: IntCounterVec,
}

impl AclMetrics {
    /// Creates and registers the metrics.
    pub fn new(r: &Registry) -> Result<Self, prometheus::Error> {
        let cv = |n: &str, h: &str, l: &[&str]| -> Result<IntCounterVec, prometheus::Error> {
            let c = IntCounterVec::new(Opts::new(n, h), l)?;
            r.register(Box::new(c.clone()))?;
            Ok(c)
        };
        Ok(Self {
            blocked: cv(
                "coredns_acl_blocked_requests_total",
                "Counter of DNS requests being blocked.",
                &["server", "zone", "view"],
            )?,
            filtered: cv(
                "coredns_acl_filtered_requests_total",
                "Counter of DNS requests being filtered.",
                &["server", "zone", "view"],
            )?,
            allowed: cv(
                "coredns_acl_allowed_requests_total",
                "Counter of DNS requests being allowed.",
                &["server", "view"],
            )?,
            dropped: cv(
                "coredns_acl_dropped_requests_total",
                "Counter of DNS requests being dropped.",
                &["server", "zone", "view"],
            )?,
        })
    }
}

/// The handler.
pub struct Acl {
    rules: Vec<Rule>,
    metrics: Arc<AclMetrics>,
}

impl Acl {
    /// A handler for `cfg`, counting into `metrics`.
    pub fn new(cfg: &AclConfig, metrics: Arc<AclMetrics>) -> Self {
        Self {
            rules: cfg.rules.clone(),
            metrics,
        }
    }
}

impl Policy {
    fn matches(&self, ip: IpAddr, qtype: hickory_proto::rr::RecordType) -> bool {
        self.qtypes.as_ref().is_none_or(|t| t.contains(&qtype))
            && self
                .nets
                .as_ref()
                .is_none_or(|n| n.iter().any(|n| n.contains(&ip)))
    }
}

#[async_trait::async_trait]
impl Handler for Acl {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn serve(&self, req: &Request, next: Next<'_>) -> Result<Response, HandlerError> {
        let name = req.qname_lower();
        // A v4 client of a dual-stack listener arrives as ::ffff:a.b.c.d.
        let ip = req.src.ip().to_canonical();
        let (server, view) = (&*req.server, req.view.as_deref().unwrap_or(""));
        for rule in &self.rules {
            let Some(zone) = rule
                .zones
                .iter()
                .filter(|z| is_subdomain(z, name))
                .max_by_key(|z| z.len())
            else {
                continue;
            };
            let action = rule
                .policies
                .iter()
                .find(|p| p.matches(ip, req.qtype()))
                .map(|p| p.action);
            let (rcode, code, counter) = match action {
                None => continue,
                Some(Action::Allow) => break,
                Some(Action::Drop) => {
                    self.metrics
                        .dropped
                        .with_label_values(&[server, zone, view])
                        .inc();
                    return Err(HandlerError::Dropped(NAME));
                }
                Some(Action::Block) => (ResponseCode::Refused, EDE_BLOCKED, &self.metrics.blocked),
                Some(Action::Filter) => {
                    (ResponseCode::NoError, EDE_FILTERED, &self.metrics.filtered)
                }
            };
            counter.with_label_values(&[server, zone, view]).inc();
            let mut msg = req.error_reply(rcode);
            set_option(&mut msg, ede(code, ""));
            return Ok(Response::new(msg, NAME));
        }
        self.metrics
            .allowed
            .with_label_values(&[server, view])
            .inc();
        next.run(req).await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use hickory_proto::op::ResponseCode;
    use hickory_proto::rr::rdata::opt::EdnsOption;
    use hickory_proto::rr::{Name, RecordType};

    use super::*;
    use crate::corefile::Dispenser;
    use crate::corefile::lexer::lex;
    use crate::plugins::{Chain, Proto};

    /// Answers NOERROR with nothing (CoreDNS's `test.NextHandler(RcodeSuccess)`).
    struct Ok;

    #[async_trait::async_trait]
    impl Handler for Ok {
        fn name(&self) -> &'static str {
            "next"
        }
        async fn serve(&self, req: &Request, _: Next<'_>) -> Result<Response, HandlerError> {
            Result::Ok(Response::new(req.reply(), "next"))
        }
    }

    enum Want {
        Pass,
        Refused,
        Filtered,
        Dropped,
    }

    /// CoreDNS's TestACLServeDNS table: (name, config, block zones, qname, source, qtype, want).
    fn cases() -> Vec<(
        &'static str,
        &'static str,
        &'static str,
        &'static str,
        &'static str,
        RecordType,
        Want,
    )> {
        use RecordType::{A, AAAA};
        use Want::*;
        vec![
            (
                "Blacklist 1 BLOCKED",
                "acl example.org {\n block type A net 192.168.0.0/16\n}",
                "",
                "www.example.org.",
                "192.168.0.2",
                A,
                Refused,
            ),
            (
                "Blacklist 1 ALLOWED",
                "acl example.org {\n block type A net 192.168.0.0/16\n}",
                "",
                "www.example.org.",
                "192.167.0.2",
                A,
                Pass,
            ),
            (
                "Blacklist 2 BLOCKED",
                "acl example.org {\n block type * net 192.168.0.0/16\n}",
                "",
                "www.example.org.",
                "192.168.0.2",
                AAAA,
                Refused,
            ),
            (
                "Blacklist 3 BLOCKED",
                "acl example.org {\n block type A\n}",
                "",
                "www.example.org.",
                "10.1.0.2",
                A,
                Refused,
            ),
            (
                "Blacklist 3 ALLOWED",
                "acl example.org {\n block type A\n}",
                "",
                "www.example.org.",
                "10.1.0.2",
                AAAA,
                Pass,
            ),
            (
                "Blacklist 4 Single IP BLOCKED",
                "acl example.org {\n block type A net 192.168.1.2\n}",
                "",
                "www.example.org.",
                "192.168.1.2",
                A,
                Refused,
            ),
            (
                "Blacklist 4 Single IP ALLOWED",
                "acl example.org {\n block type A net 192.168.1.2\n}",
                "",
                "www.example.org.",
                "192.168.1.3",
                A,
                Pass,
            ),
            (
                "Filter 1 FILTERED",
                "acl example.org {\n filter type A net 192.168.0.0/16\n}",
                "",
                "www.example.org.",
                "192.168.0.2",
                A,
                Filtered,
            ),
            (
                "Filter 1 ALLOWED",
                "acl example.org {\n filter type A net 192.168.0.0/16\n}",
                "",
                "www.example.org.",
                "192.167.0.2",
                A,
                Pass,
            ),
            (
                "Whitelist 1 ALLOWED",
                "acl example.org {\n allow net 192.168.0.0/16\n block\n}",
                "",
                "www.example.org.",
                "192.168.0.2",
                A,
                Pass,
            ),
            (
                "Whitelist 1 REFUSED",
                "acl example.org {\n allow type * net 192.168.0.0/16\n block\n}",
                "",
                "www.example.org.",
                "10.1.0.2",
                A,
                Refused,
            ),
            (
                "Drop 1 DROPPED",
                "acl example.org {\n drop net 192.168.0.0/16\n}",
                "",
                "www.example.org.",
                "192.168.0.2",
                A,
                Dropped,
            ),
            (
                "Subnet-Order 1 REFUSED",
                "acl example.org {\n block net 192.168.1.0/24\n drop net 192.168.0.0/16\n}",
                "",
                "www.example.org.",
                "192.168.1.2",
                A,
                Refused,
            ),
            (
                "Subnet-Order 2 DROPPED",
                "acl example.org {\n drop net 192.168.0.0/16\n block net 192.168.1.0/24\n}",
                "",
                "www.example.org.",
                "192.168.1.1",
                A,
                Dropped,
            ),
            (
                "Drop-Type 1 DROPPED",
                "acl example.org {\n drop type A\n allow net 192.168.0.0/16\n}",
                "",
                "www.example.org.",
                "192.168.1.1",
                A,
                Dropped,
            ),
            (
                "Drop-Type 2 ALLOWED",
                "acl example.org {\n drop type A\n allow net 192.168.0.0/16\n}",
                "",
                "www.example.org.",
                "192.168.1.1",
                AAAA,
                Pass,
            ),
            (
                "Fine-Grained 1 REFUSED",
                "acl a.example.org {\n block type * net 192.168.1.0/24\n}",
                "example.org.",
                "a.example.org.",
                "192.168.1.2",
                A,
                Refused,
            ),
            (
                "Fine-Grained 1 ALLOWED",
                "acl a.example.org {\n block net 192.168.1.0/24\n}",
                "example.org.",
                "www.example.org.",
                "192.168.1.2",
                A,
                Pass,
            ),
            (
                "Fine-Grained 2 REFUSED",
                "acl example.org {\n block net 192.168.1.0/24\n}",
                "example.org.",
                "a.example.org.",
                "192.168.1.2",
                A,
                Refused,
            ),
            (
                "Fine-Grained 2 ALLOWED",
                "acl {\n block net 192.168.1.0/24\n}",
                "example.org.",
                "a.example.com.",
                "192.168.1.2",
                A,
                Pass,
            ),
            (
                "Fine-Grained 3 REFUSED",
                "acl a.example.org {\n block net 192.168.1.0/24\n}\nacl b.example.org {\n block type * net 192.168.2.0/24\n}",
                "example.org.",
                "b.example.org.",
                "192.168.2.2",
                A,
                Refused,
            ),
            (
                "Fine-Grained 3 ALLOWED",
                "acl a.example.org {\n block net 192.168.1.0/24\n}\nacl b.example.org {\n block net 192.168.2.0/24\n}",
                "example.org.",
                "b.example.org.",
                "192.168.1.2",
                A,
                Pass,
            ),
            (
                "Blacklist 1 BLOCKED IPv6",
                "acl example.org {\n block type A net 2001:db8:abcd:0012::0/64\n}",
                "",
                "www.example.org.",
                "2001:db8:abcd:0012::1230",
                A,
                Refused,
            ),
            (
                "Blacklist 1 ALLOWED IPv6",
                "acl example.org {\n block type A net 2001:db8:abcd:0012::0/64\n}",
                "",
                "www.example.org.",
                "2001:db8:abcd:0013::0",
                A,
                Pass,
            ),
            (
                "Blacklist 2 BLOCKED IPv6",
                "acl example.org {\n block type A\n}",
                "",
                "www.example.org.",
                "2001:0db8:85a3:0000:0000:8a2e:0370:7334",
                A,
                Refused,
            ),
            (
                "Blacklist 3 Single IP BLOCKED IPv6",
                "acl example.org {\n block type A net 2001:0db8:85a3:0000:0000:8a2e:0370:7334\n}",
                "",
                "www.example.org.",
                "2001:0db8:85a3:0000:0000:8a2e:0370:7334",
                A,
                Refused,
            ),
            (
                "Blacklist 3 Single IP ALLOWED IPv6",
                "acl example.org {\n block type A net 2001:0db8:85a3:0000:0000:8a2e:0370:7334\n}",
                "",
                "www.example.org.",
                "2001:0db8:85a3:0000:0000:8a2e:0370:7335",
                A,
                Pass,
            ),
            (
                "Fine-Grained 1 REFUSED IPv6",
                "acl a.example.org {\n block type * net 2001:db8:abcd:0012::0/64\n}",
                "example.org.",
                "a.example.org.",
                "2001:db8:abcd:0012:2019::0",
                A,
                Refused,
            ),
            (
                "Fine-Grained 1 ALLOWED IPv6",
                "acl a.example.org {\n block net 2001:db8:abcd:0012::0/64\n}",
                "example.org.",
                "www.example.org.",
                "2001:db8:abcd:0012:2019::0",
                A,
                Pass,
            ),
            (
                "Blacklist Address%ifname",
                "acl example.org {\n block type AAAA net 2001:0db8:85a3:0000:0000:8a2e:0370:7334\n}",
                "",
                "www.example.org.",
                "2001:0db8:85a3:0000:0000:8a2e:0370:7334",
                AAAA,
                Refused,
            ),
            (
                "Drop 1 DROPPED IPV6",
                "acl example.org {\n drop net 2001:0db8:85a3:0000:0000:8a2e:0370:7334\n}",
                "",
                "www.example.org.",
                "2001:0db8:85a3:0000:0000:8a2e:0370:7334",
                AAAA,
                Dropped,
            ),
            (
                "Subnet-Order 1 REFUSED IPv6",
                "acl example.org {\n block net 2001:db8:abcd:0012:8000::/66\n drop net 2001:db8:abcd:0012::0/64\n}",
                "",
                "www.example.org.",
                "2001:db8:abcd:0012:8000::1",
                AAAA,
                Refused,
            ),
            (
                "Subnet-Order 2 DROPPED IPv6",
                "acl example.org {\n drop net 2001:db8:abcd:0012::0/64\n block net 2001:db8:abcd:0012:8000::/66\n}",
                "",
                "www.example.org.",
                "2001:db8:abcd:0012:8000::1",
                AAAA,
                Dropped,
            ),
            (
                "Drop-Type 1 DROPPED IPv6",
                "acl example.org {\n drop type A\n allow net 2001:db8:85a3:0000::0/64\n}",
                "",
                "www.example.org.",
                "2001:0db8:85a3:0000:0000:8a2e:0370:7334",
                A,
                Dropped,
            ),
            (
                "Drop-Type 2 ALLOWED IPv6",
                "acl example.org {\n drop type A\n allow net 2001:db8:85a3:0000::0/64\n}",
                "",
                "www.example.org.",
                "2001:0db8:85a3:0000:0000:8a2e:0370:7334",
                AAAA,
                Pass,
            ),
            // Not in CoreDNS's table: a v4 client of a dual-stack socket is matched as v4.
            (
                "Mapped v4 BLOCKED",
                "acl example.org {\n block net 192.0.2.0/24\n}",
                "",
                "www.example.org.",
                "::ffff:192.0.2.7",
                A,
                Refused,
            ),
        ]
    }

    fn ede_code(r: &Response) -> Option<u16> {
        let opts = r.msg.edns.as_ref()?.options().as_ref().to_vec();
        opts.iter().find_map(|(_, o)| match o {
            EdnsOption::Unknown(15, d) if d.len() >= 2 => Some(u16::from_be_bytes([d[0], d[1]])),
            _ => None,
        })
    }

    #[tokio::test]
    async fn coredns_serve_table() {
        let metrics = Arc::new(AclMetrics::new(&Registry::new()).unwrap());
        for (name, config, zone, qname, src, qtype, want) in cases() {
            let toks = lex(&Arc::from("Corefile"), config);
            let zones = if zone.is_empty() {
                vec![]
            } else {
                vec![zone.to_string()]
            };
            let cfg = parse(&mut Dispenser::new(&toks), &zones).unwrap();
            let chain = Chain::new(vec![
                Arc::new(Acl::new(&cfg, metrics.clone())),
                Arc::new(Ok),
            ]);
            let ip: IpAddr = src.parse().unwrap();
            let req = Request::new(
                Name::from_ascii(qname).unwrap(),
                qtype,
                std::net::SocketAddr::new(ip, 40212),
                Proto::Udp,
            );
            let got = chain.run(&req).await;
            match want {
                Want::Pass => {
                    let r = got.unwrap();
                    assert_eq!(
                        (r.plugin, r.rcode()),
                        ("next", ResponseCode::NoError),
                        "{name}"
                    );
                }
                Want::Refused => {
                    let r = got.unwrap();
                    assert_eq!(r.rcode(), ResponseCode::Refused, "{name}");
                    assert_eq!(ede_code(&r), Some(EDE_BLOCKED), "{name}");
                }
                Want::Filtered => {
                    let r = got.unwrap();
                    assert_eq!(
                        (r.plugin, r.rcode()),
                        (NAME, ResponseCode::NoError),
                        "{name}"
                    );
                    assert!(r.msg.answers.is_empty(), "{name}");
                    assert_eq!(ede_code(&r), Some(EDE_FILTERED), "{name}");
                }
                Want::Dropped => {
                    assert!(
                        matches!(got, Err(HandlerError::Dropped(NAME))),
                        "{name}: {got:?}"
                    );
                }
            }
        }
        let n = |c: &IntCounterVec| {
            c.with_label_values(&["dns://:53", "example.org.", ""])
                .get()
        };
        assert_eq!(n(&metrics.dropped), 6);
        assert_eq!(n(&metrics.filtered), 1);
        assert!(metrics.allowed.with_label_values(&["dns://:53", ""]).get() >= 12);
    }
}
