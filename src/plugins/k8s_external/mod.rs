//! `k8s_external`: Services' external addresses (externalIPs, load-balancer ingress IPs and
//! hostnames) under a public zone, and PTR records for external IPs, from the kubernetes
//! plugin's index (plugin/k8s_external).

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::Arc;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::rdata::{CNAME, PTR, SOA, SRV};
use hickory_proto::rr::{Name, RData, Record, RecordType};

use crate::corefile::{Dispenser, Error};
use crate::kube::model::ServiceKind;
use crate::plugins::kubernetes::KubeHandle;
use crate::plugins::kubernetes::address_from_reverse;
use crate::plugins::kubernetes::handler::{
    addr_record, endpoint_hostname, exposed, join, match_port, name, record, srv_records,
};
use crate::plugins::{
    BuildCtx, Fall, Handler, HandlerError, Next, Request, Response, is_subdomain, origins,
};

/// Directive name.
pub const NAME: &str = "k8s_external";

/// A parsed `k8s_external`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalConfig {
    /// Zones served.
    pub zones: Vec<String>,
    /// The apex label (default `dns`): SOA `ns1.APEX.ZONE`, `hostmaster.APEX.ZONE`.
    pub apex: String,
    /// TTL (default 5, 0–3600).
    pub ttl: u32,
    /// Headless services without external IPs answer with their endpoints.
    pub headless: bool,
    /// `fallthrough [ZONES]`.
    pub fall: Fall,
}

/// Parses the directive (once per block).
pub fn parse(d: &mut Dispenser<'_>, block_zones: &[String]) -> Result<ExternalConfig, Error> {
    d.next();
    let args = d.remaining_args();
    let mut c = ExternalConfig {
        zones: origins(&args, block_zones).map_err(|e| d.err(e))?,
        apex: "dns".into(),
        ttl: 5,
        headless: false,
        fall: Fall::none(),
    };
    while d.next_block() {
        match d.val() {
            "apex" => {
                let v = d.single_arg()?;
                c.apex = v.trim_end_matches('.').to_ascii_lowercase();
            }
            "ttl" => {
                let v = d.single_arg()?;
                let t: i64 = v
                    .parse()
                    .map_err(|_| d.err(format!("ttl must be an integer: {v}")))?;
                if !(0..=3600).contains(&t) {
                    return Err(d.err(format!("ttl must be in range [0, 3600]: {t}")));
                }
                c.ttl = t as u32;
            }
            "headless" => {
                d.expect_no_more_args()?;
                c.headless = true;
            }
            "fallthrough" => c.fall = Fall::parse(&d.remaining_args()),
            other => return Err(d.err(format!("unknown property '{other}'"))),
        }
    }
    Ok(c)
}

/// The handler.
pub struct External {
    cfg: ExternalConfig,
    kube: KubeHandle,
}

/// Builds the handler; the block must have the kubernetes plugin.
pub fn build(cfg: &ExternalConfig, ctx: &mut BuildCtx<'_>) -> Result<Arc<dyn Handler>, Error> {
    let Some(kube) = ctx.kubernetes.clone() else {
        return Err(Error::plugin(
            NAME,
            ctx.loc.clone(),
            Error::plain(None, "kubernetes plugin not loaded"),
        ));
    };
    Ok(Arc::new(External {
        cfg: cfg.clone(),
        kube,
    }))
}

/// Where a found item points: an address, or a load-balancer hostname (answered as a CNAME).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Target {
    Ip(IpAddr),
    Host(Arc<str>),
}

struct Found {
    target: Target,
    port: i32,
    owner: String,
}

impl External {
    fn soa(&self, zone_q: &str, serial: u32) -> Record {
        let apex = join(&self.cfg.apex, zone_q);
        record(
            name(zone_q),
            self.cfg.ttl,
            RData::SOA(SOA::new(
                name(&join("ns1", &apex)),
                name(&join("hostmaster", &apex)),
                serial,
                7200,
                1800,
                86400,
                self.cfg.ttl,
            )),
        )
    }

    /// CoreDNS's `Kubernetes.External`: Ok(items), or Err(()) for "no such name".
    fn lookup(&self, base: &str, zone_q: &str) -> Result<Vec<Found>, ()> {
        let idx = self.kube.index.load();
        let segs: Vec<&str> = if base.is_empty() {
            Vec::new()
        } else {
            base.split('.').collect()
        };
        let Some(mut last) = segs.len().checked_sub(1) else {
            return Ok(Vec::new());
        };
        let namespace = segs[last];
        if !exposed(&self.kube.cfg, &idx, namespace) {
            return Err(());
        }
        let Some(l) = last.checked_sub(1) else {
            return Ok(Vec::new());
        };
        last = l;
        let service = segs[last];
        let mut remaining = last as isize - 1;
        let (mut port, mut proto) = ("", "");
        if remaining == 1 {
            proto = segs[1].trim_start_matches('_');
            port = segs[0].trim_start_matches('_');
            remaining -= 2;
        }
        let mut endpoint = "";
        if self.cfg.headless && remaining == 0 {
            endpoint = segs[0];
            remaining -= 1;
        }
        if remaining != -1 {
            return Err(());
        }
        let Some(entry) = idx.service(namespace, service) else {
            return Err(());
        };
        let svc = entry.svc;
        let base = join(&format!("{}.{}", svc.name, svc.namespace), zone_q);
        let mut out = Vec::new();
        let mut found = false;
        let targets = svc.external_ips.iter().map(|ip| Target::Ip(*ip)).chain(
            svc.external_hostnames
                .iter()
                .map(|h| Target::Host(h.clone())),
        );
        if self.cfg.headless
            && svc.external_ips.is_empty()
            && svc.external_hostnames.is_empty()
            && svc.kind == ServiceKind::Headless
        {
            for (ep, ports) in entry.endpoints() {
                let host = endpoint_hostname(ep, self.kube.cfg.endpoint_pod_names);
                if !endpoint.is_empty() && !endpoint.eq_ignore_ascii_case(&host) {
                    continue;
                }
                for p in ports {
                    if !match_port(port, &p.name, proto, &p.protocol) {
                        continue;
                    }
                    found = true;
                    out.push(Found {
                        target: Target::Ip(ep.ip),
                        port: p.port,
                        owner: format!("{host}.{base}"),
                    });
                }
            }
        } else {
            for target in targets {
                for p in &svc.ports {
                    if !match_port(port, &p.name, proto, &p.protocol) {
                        continue;
                    }
                    found = true;
                    out.push(Found {
                        target: target.clone(),
                        port: p.port,
                        owner: base.clone(),
                    });
                }
            }
        }
        if found { Ok(out) } else { Err(()) }
    }
}

impl External {
    /// SRV records when some targets are load-balancer hostnames: the hostname is the SRV
    /// target and its addresses (looked up through this server) the additional records.
    async fn srv_with_hostnames(
        &self,
        req: &Request,
        items: &[Found],
    ) -> (Vec<Record>, Vec<Record>) {
        let ttl = self.cfg.ttl;
        let items: Vec<&Found> = items.iter().filter(|f| f.port != -1).collect();
        let weight = ((100.0 / (100.0 * items.len() as f64) * 100.0).floor() as u16).max(1);
        let (mut answer, mut extra) = (Vec::new(), Vec::new());
        let mut srv_seen = HashSet::new();
        let mut extra_seen = HashSet::new();
        for f in items {
            let target = match &f.target {
                Target::Ip(_) => name(&f.owner),
                Target::Host(h) => match Name::from_ascii(crate::corefile::address::fqdn(h)) {
                    Ok(n) => n,
                    Err(_) => continue,
                },
            };
            let port = u16::try_from(f.port).unwrap_or(0);
            if srv_seen.insert((target.to_ascii().to_ascii_lowercase(), port)) {
                answer.push(record(
                    req.qname().clone(),
                    ttl,
                    RData::SRV(SRV::new(0, weight, port, target.clone())),
                ));
            }
            if !extra_seen.insert((target.to_ascii().to_ascii_lowercase(), f.target.clone())) {
                continue;
            }
            match &f.target {
                Target::Ip(ip) => extra.push(addr_record(target, ttl, *ip)),
                Target::Host(_) => {
                    for t in [RecordType::A, RecordType::AAAA] {
                        if let Ok(up) = req.lookup(target.clone(), t).await {
                            extra.extend(up.answers);
                        }
                    }
                }
            }
        }
        (answer, extra)
    }
}

#[async_trait::async_trait]
impl Handler for External {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn serve(&self, req: &Request, next: Next<'_>) -> Result<Response, HandlerError> {
        let mut sent = req.qname().to_ascii();
        if !sent.ends_with('.') {
            sent.push('.');
        }
        let lower = sent.to_ascii_lowercase();
        let Some(zone) = self
            .cfg
            .zones
            .iter()
            .filter(|z| is_subdomain(z, &lower))
            .max_by_key(|z| z.len())
        else {
            return next.run(req).await;
        };
        let zone_q = &sent[sent.len() - zone.len()..];
        let serial = self.kube.index.load().serial;
        let base = if lower == *zone {
            ""
        } else {
            &lower[..lower.len() - zone.len() - 1]
        };
        let qtype = req.qtype();
        let mut msg = req.reply();
        msg.metadata.authoritative = true;
        let ttl = self.cfg.ttl;
        // The apex and the names under APEX.ZONE (the server's own).
        let apex = self.cfg.apex.as_str();
        if base.is_empty() || base == apex || base.ends_with(&format!(".{apex}")) {
            if base.is_empty() && qtype == RecordType::SOA {
                msg.add_answer(self.soa(zone_q, serial));
            } else if base.is_empty() && qtype == RecordType::NS {
                // CoreDNS's serveApex: `ZONE NS ns1.APEX.ZONE` (its glue: see README).
                let apex = join(&self.cfg.apex, zone_q);
                msg.add_answer(record(
                    name(zone_q),
                    ttl,
                    RData::NS(hickory_proto::rr::rdata::NS(name(&join("ns1", &apex)))),
                ));
            } else if !base.is_empty() && base != apex && base != format!("ns1.{apex}") {
                msg.metadata.response_code = ResponseCode::NXDomain;
                msg.add_authority(self.soa(zone_q, serial));
            } else {
                msg.add_authority(self.soa(zone_q, serial));
            }
            return Ok(Response::new(msg, NAME));
        }
        if qtype == RecordType::PTR {
            if let Some(ip) = address_from_reverse(&lower) {
                // CoreDNS's ExternalReverse: the services with this external IP.
                let idx = self.kube.index.load();
                let ns = &self.kube.cfg.namespaces;
                let mut seen = HashSet::new();
                for svc in idx.services_with_external_ip(&ip) {
                    if !ns.is_empty() && !exposed(&self.kube.cfg, &idx, &svc.namespace) {
                        continue;
                    }
                    let target = join(
                        &format!("{}.{}", svc.name, svc.namespace),
                        &self.cfg.zones[0],
                    );
                    if seen.insert(target.clone()) {
                        msg.add_answer(record(
                            req.qname().clone(),
                            ttl,
                            RData::PTR(PTR(name(&target))),
                        ));
                    }
                }
                if msg.answers.is_empty() {
                    if self.cfg.fall.through(&lower) {
                        return next.run(req).await;
                    }
                    msg.metadata.response_code = ResponseCode::NXDomain;
                    msg.add_authority(self.soa(zone_q, serial));
                }
                return Ok(Response::new(msg, NAME));
            }
        }
        let Ok(items) = self.lookup(base, zone_q) else {
            if self.cfg.fall.through(&lower) {
                return next.run(req).await;
            }
            msg.metadata.response_code = ResponseCode::NXDomain;
            msg.add_authority(self.soa(zone_q, serial));
            return Ok(Response::new(msg, NAME));
        };
        match qtype {
            RecordType::A | RecordType::AAAA => {
                let mut seen = HashSet::new();
                for f in &items {
                    match &f.target {
                        Target::Ip(ip) => {
                            if (qtype == RecordType::A) == ip.is_ipv4()
                                && seen.insert(f.target.clone())
                            {
                                msg.add_answer(addr_record(req.qname().clone(), ttl, *ip));
                            }
                        }
                        Target::Host(h) => {
                            // A load-balancer hostname: a CNAME to it, and its addresses
                            // looked up through this server (once per hostname).
                            if !seen.insert(f.target.clone()) {
                                continue;
                            }
                            let Ok(target) = Name::from_ascii(crate::corefile::address::fqdn(h))
                            else {
                                continue;
                            };
                            msg.add_answer(record(
                                req.qname().clone(),
                                self.kube.cfg.ttl,
                                RData::CNAME(CNAME(target.clone())),
                            ));
                            if let Ok(up) = req.lookup(target, qtype).await {
                                msg.metadata.truncation |= up.metadata.truncation;
                                msg.add_answers(up.answers);
                            }
                        }
                    }
                }
            }
            RecordType::SRV if items.iter().all(|f| matches!(f.target, Target::Ip(_))) => {
                let candidates: Vec<(&str, IpAddr, i32)> = items
                    .iter()
                    .filter_map(|f| match f.target {
                        Target::Ip(ip) => Some((f.owner.as_str(), ip, f.port)),
                        Target::Host(_) => None,
                    })
                    .collect();
                let (answer, extra) = srv_records(req.qname(), ttl, &candidates);
                msg.add_answers(answer);
                msg.add_additionals(extra);
            }
            RecordType::SRV => {
                let (answer, extra) = self.srv_with_hostnames(req, &items).await;
                msg.add_answers(answer);
                msg.add_additionals(extra);
            }
            _ => {}
        }
        if msg.answers.is_empty() {
            msg.add_authority(self.soa(zone_q, serial));
        }
        Ok(Response::new(msg, NAME))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc as StdArc;

    use super::*;
    use crate::corefile::lexer::lex;

    #[test]
    fn setup() {
        let run = |s: &str| {
            let toks = lex(&StdArc::from("Corefile"), s);
            parse(&mut Dispenser::new(&toks), &["example.org.".to_string()])
        };
        let c = run("k8s_external").unwrap();
        assert_eq!(
            (c.zones[0].as_str(), c.apex.as_str(), c.ttl, c.headless),
            ("example.org.", "dns", 5, false)
        );
        let c = run("k8s_external example.com {\n apex ns\n ttl 30\n headless\n fallthrough\n}")
            .unwrap();
        assert_eq!(
            (c.zones[0].as_str(), c.apex.as_str(), c.ttl, c.headless),
            ("example.com.", "ns", 30, true)
        );
        assert!(
            run("k8s_external {\n ttl 4000\n}")
                .unwrap_err()
                .to_string()
                .contains("ttl must be in range")
        );
        assert!(
            run("k8s_external {\n bogus\n}")
                .unwrap_err()
                .to_string()
                .contains("unknown property")
        );
    }

    // plugin/k8s_external/setup_test.go: TestSetup
    // (input, zone, apex, headless, fallthrough zones; None = no fallthrough)
    #[test]
    fn coredns_test_setup() {
        let run = |s: &str| {
            let toks = lex(&StdArc::from("Corefile"), s);
            parse(&mut Dispenser::new(&toks), &[])
        };
        let s = |v: &[&str]| -> Vec<String> { v.iter().map(|x| x.to_string()).collect() };
        type Row<'a> = (&'a str, &'a str, &'a str, bool, Option<&'a [&'a str]>);
        let cases: &[Row<'_>] = &[
            ("k8s_external", "", "dns", false, None),
            (
                "k8s_external example.org",
                "example.org.",
                "dns",
                false,
                None,
            ),
            (
                "k8s_external example.org {\n\t\t\tapex testdns\n}",
                "example.org.",
                "testdns",
                false,
                None,
            ),
            (
                "k8s_external example.org {\n\theadless\n}",
                "example.org.",
                "dns",
                true,
                None,
            ),
            (
                "k8s_external example.org {\n\tfallthrough\n}",
                "example.org.",
                "dns",
                false,
                Some(&[]),
            ),
            (
                "k8s_external example.org {\n\tfallthrough ip6.arpa inaddr.arpa foo.com\n}",
                "example.org.",
                "dns",
                false,
                Some(&["ip6.arpa.", "inaddr.arpa.", "foo.com."]),
            ),
        ];
        for (input, zone, apex, headless, fall) in cases {
            let c = run(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            if !zone.is_empty() {
                assert_eq!(c.zones[0], *zone, "{input}");
            }
            assert_eq!((c.apex.as_str(), c.headless), (*apex, *headless), "{input}");
            let want = match fall {
                None => Fall::none(),
                Some(z) => Fall::parse(&s(z)),
            };
            assert_eq!(c.fall, want, "{input}");
        }
        assert_eq!(
            run("k8s_external example.org {\n\tfallthrough\n}")
                .unwrap()
                .fall,
            Fall::parse(&[])
        );
    }
}
