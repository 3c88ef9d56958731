//! The `kubernetes` handler: CoreDNS's handler.go, kubernetes.go and backend_lookup.go as one
//! lookup over the immutable [`Index`].

use std::borrow::Cow;
use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use arc_swap::ArcSwap;
use futures_util::future::BoxFuture;
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, CNAME, NS, PTR, SOA, SRV, TXT};
use hickory_proto::rr::{Name, RData, Record, RecordType};

use super::NAME;
use super::index::Index;
use super::setup::{KubernetesConfig, PodMode};
use crate::kube::model::{Endpoint, ServiceKind};
use crate::plugins::{Handler, HandlerError, Next, Request, Response, is_subdomain};

/// The schema version served at `dns-version.ZONE`.
pub const DNS_SCHEMA_VERSION: &str = "1.1.0";

/// Answers the cluster zones from the current index.
pub struct Kubernetes {
    cfg: Arc<KubernetesConfig>,
    index: Arc<ArcSwap<Index>>,
    local_ips: Vec<IpAddr>,
}

impl Kubernetes {
    /// A handler over `index`; `local_ips` are the addresses the block serves on (apex NS).
    pub fn new(
        cfg: Arc<KubernetesConfig>,
        index: Arc<ArcSwap<Index>>,
        local_ips: Vec<IpAddr>,
    ) -> Self {
        Self {
            cfg,
            index,
            local_ips,
        }
    }
}

/// What a name holds (CoreDNS's `msg.Service`).
#[derive(Debug, Clone)]
enum Target {
    Ip(IpAddr),
    Name(Arc<str>),
    Text,
}

#[derive(Debug, Clone)]
struct Item {
    target: Target,
    port: i32,
    /// The name the item lives at (SRV/NS target), zone in the query's case.
    owner: String,
}

/// "Not found": NXDOMAIN, fallthrough, or SERVFAIL while unsynced.
#[derive(Debug)]
struct NotFound;

type Found = Result<Vec<Item>, NotFound>;

/// A parsed cluster name (parse.go's `recordRequest`).
#[derive(Debug, Default)]
struct Parsed<'a> {
    port: &'a str,
    protocol: &'a str,
    endpoint: &'a str,
    service: &'a str,
    namespace: &'a str,
    pod_or_svc: &'a str,
}

fn strip_underscore(s: &str) -> &str {
    s.strip_prefix('_').unwrap_or(s)
}

/// `name` relative to `zone` (both lower-case FQDNs), without the joining dot.
fn trim_zone<'a>(name: &'a str, zone: &str) -> &'a str {
    if zone == "." {
        return name.strip_suffix('.').unwrap_or(name);
    }
    if name.len() <= zone.len() {
        return "";
    }
    &name[..name.len() - zone.len() - 1]
}

// Inlined into the answer path (it was before the metadata provider became its second caller).
#[inline(always)]
fn parse_request<'a>(name: &'a str, zone: &str) -> Result<Parsed<'a>, NotFound> {
    let base = trim_zone(name, zone);
    let mut r = Parsed::default();
    if base.is_empty() || base == "svc" || base == "pod" {
        return Ok(r);
    }
    // At most port.protocol.service.namespace.svc (or endpoint.service.namespace.svc).
    let mut segs = [""; 5];
    let mut n = 0;
    // A byte loop rather than `split('.')`: the answer path keeps it inlined whatever else in
    // the crate splits on a char.
    let bytes = base.as_bytes();
    let mut start = 0;
    for i in 0..=bytes.len() {
        if i < bytes.len() && bytes[i] != b'.' {
            continue;
        }
        if n == segs.len() {
            return Err(NotFound);
        }
        segs[n] = &base[start..i];
        n += 1;
        start = i + 1;
    }
    let mut last = n - 1;
    r.pod_or_svc = segs[last];
    if r.pod_or_svc != "svc" && r.pod_or_svc != "pod" {
        return Err(NotFound);
    }
    let Some(l) = last.checked_sub(1) else {
        return Ok(r);
    };
    last = l;
    r.namespace = segs[last];
    let Some(l) = last.checked_sub(1) else {
        return Ok(r);
    };
    last = l;
    r.service = segs[last];
    match last {
        0 => {}
        1 => r.endpoint = segs[0],
        2 => {
            r.protocol = strip_underscore(segs[1]);
            r.port = strip_underscore(segs[0]);
        }
        _ => return Err(NotFound),
    }
    Ok(r)
}

fn is_reverse(name: &str) -> bool {
    name.ends_with(".in-addr.arpa.") || name.ends_with(".ip6.arpa.")
}

/// The address of a complete reverse name (4 octets or 32 nibbles), else `None`.
pub fn address_from_reverse(name: &str) -> Option<IpAddr> {
    if let Some(body) = name.strip_suffix(".in-addr.arpa.") {
        let mut octets: Vec<u8> = body
            .split('.')
            .map(|l| {
                if l.is_empty() || l.len() > 3 || (l.len() > 1 && l.starts_with('0')) {
                    None
                } else {
                    l.parse().ok()
                }
            })
            .collect::<Option<_>>()?;
        if octets.len() != 4 {
            return None;
        }
        octets.reverse();
        return Some(IpAddr::V4(Ipv4Addr::new(
            octets[0], octets[1], octets[2], octets[3],
        )));
    }
    let body = name.strip_suffix(".ip6.arpa.")?;
    let nibbles: Vec<u8> = body
        .split('.')
        .map(|l| {
            let mut c = l.chars();
            match (c.next(), c.next()) {
                (Some(ch), None) => ch.to_digit(16).map(|d| d as u8),
                _ => None,
            }
        })
        .collect::<Option<_>>()?;
    if nibbles.len() != 32 {
        return None;
    }
    let mut bytes = [0u8; 16];
    for (i, pair) in nibbles.rchunks(2).enumerate() {
        // rchunks walks from the end: the last two labels are the first byte.
        bytes[i] = (pair[1] << 4) | pair[0];
    }
    Some(IpAddr::V6(Ipv6Addr::from(bytes)))
}

/// The hostname of an endpoint (CoreDNS's `endpointHostname`).
pub(crate) fn endpoint_hostname(ep: &Endpoint, pod_names: bool) -> Cow<'_, str> {
    if let Some(h) = ep.hostname.as_deref().filter(|h| !h.is_empty()) {
        return Cow::Borrowed(h);
    }
    if pod_names {
        if let Some(p) = ep.pod_name.as_deref().filter(|p| !p.is_empty()) {
            return Cow::Borrowed(p);
        }
    }
    match ep.ip {
        IpAddr::V4(v4) => Cow::Owned(v4.to_string().replace('.', "-")),
        IpAddr::V6(v6) => {
            let mut s = v6.to_string().replace(':', "-");
            if s.ends_with('-') {
                s.push('0');
            }
            Cow::Owned(s)
        }
    }
}

pub(crate) fn match_port(want_port: &str, port: &str, want_proto: &str, proto: &str) -> bool {
    (want_port.is_empty() || want_port.eq_ignore_ascii_case(port))
        && (want_proto.is_empty() || want_proto.eq_ignore_ascii_case(proto))
}

/// `prefix.zone` for a zone that may be the root.
pub(crate) fn join(prefix: &str, zone: &str) -> String {
    if zone == "." {
        format!("{prefix}.")
    } else {
        format!("{prefix}.{zone}")
    }
}

pub(crate) fn name(s: &str) -> Name {
    Name::from_ascii(s).unwrap_or_else(|_| Name::root())
}

pub(crate) fn record(owner: Name, ttl: u32, data: RData) -> Record {
    Record::from_rdata(owner, ttl, data)
}

pub(crate) fn addr_record(owner: Name, ttl: u32, ip: IpAddr) -> Record {
    match ip {
        IpAddr::V4(v4) => record(owner, ttl, RData::A(A(v4))),
        IpAddr::V6(v6) => record(owner, ttl, RData::AAAA(AAAA(v6))),
    }
}

/// SRV answers for `candidates` (target name, its address, port), as CoreDNS's `plugin.SRV`:
/// priority 0, weight floor(100 / candidates) (at least 1), port -1 skipped, SRV records
/// deduplicated by (target, port), and the targets' addresses (deduplicated by name and address)
/// for the additional section.
pub(crate) fn srv_records(
    qname: &Name,
    ttl: u32,
    candidates: &[(&str, IpAddr, i32)],
) -> (Vec<Record>, Vec<Record>) {
    let (mut answer, mut extra) = (Vec::new(), Vec::new());
    let weight = ((100.0 / (100.0 * candidates.len() as f64) * 100.0).floor() as u16).max(1);
    let mut dup: HashSet<(String, Option<IpAddr>, i32)> = HashSet::new();
    for &(owner, ip, port) in candidates.iter().filter(|c| c.2 != -1) {
        let target = name(owner);
        if dup.insert((owner.to_ascii_lowercase(), None, port)) {
            answer.push(record(
                qname.clone(),
                ttl,
                RData::SRV(SRV::new(
                    0,
                    weight,
                    u16::try_from(port).unwrap_or(0),
                    target.clone(),
                )),
            ));
        }
        if dup.insert((owner.to_ascii_lowercase(), Some(ip), 0)) {
            extra.push(addr_record(target, ttl, ip));
        }
    }
    (answer, extra)
}

/// Namespace exposure: in `namespaces` (when set) and present (namespace_labels filter them).
pub(crate) fn exposed(cfg: &KubernetesConfig, idx: &Index, ns: &str) -> bool {
    (cfg.namespaces.is_empty() || cfg.namespaces.iter().any(|n| n == ns)) && idx.has_namespace(ns)
}

/// One query's view: the index, the matched zone (lower-case and as sent).
struct Query<'a> {
    k: &'a Kubernetes,
    idx: &'a Index,
    zone: &'a str,
    zone_q: &'a str,
    /// Whether items need their owner names (SRV targets, NS names); A and AAAA answers are
    /// owned by the question, so the hot path builds no names.
    owners: bool,
}

impl Query<'_> {
    fn ttl(&self) -> u32 {
        self.k.cfg.ttl
    }

    fn exposed(&self, ns: &str) -> bool {
        exposed(&self.k.cfg, self.idx, ns)
    }

    /// `kubernetes.Records`: the items of a cluster name.
    fn records(&self, name: &str) -> Found {
        let r = parse_request(name, self.zone)?;
        if r.pod_or_svc.is_empty() {
            return Ok(Vec::new());
        }
        if is_reverse(name) {
            return Err(NotFound);
        }
        if !self.exposed(r.namespace) {
            return Err(NotFound);
        }
        if r.pod_or_svc == "pod" {
            self.find_pods(&r)
        } else {
            self.find_services(&r)
        }
    }

    fn find_pods(&self, r: &Parsed<'_>) -> Found {
        let cfg = &self.k.cfg;
        if cfg.pods == PodMode::Disabled {
            return Err(NotFound);
        }
        let pod = r.service;
        if pod.is_empty() {
            return Ok(Vec::new());
        }
        let ip_text = if pod.matches('-').count() == 3 && !pod.contains("--") {
            pod.replace('-', ".")
        } else {
            pod.replace('-', ":")
        };
        let Ok(ip) = ip_text.parse::<IpAddr>() else {
            return Err(NotFound);
        };
        if cfg.pods == PodMode::Verified && !self.idx.pod_exists(r.namespace, &ip, &ip_text) {
            return Err(NotFound);
        }
        let owner = join(&format!("{pod}.{}.pod", r.namespace), self.zone_q);
        Ok(vec![Item {
            target: Target::Ip(ip),
            port: 0,
            owner,
        }])
    }

    fn find_services(&self, r: &Parsed<'_>) -> Found {
        if r.service.is_empty() {
            return Ok(Vec::new());
        }
        let Some(entry) = self.idx.service(r.namespace, r.service) else {
            return Err(NotFound);
        };
        let svc = entry.svc;
        let cfg = &self.k.cfg;
        let base = if self.owners {
            join(&format!("{}.{}.svc", svc.name, svc.namespace), self.zone_q)
        } else {
            String::new()
        };
        if cfg.ignore_empty_service
            && matches!(svc.kind, ServiceKind::ClusterIp(_))
            && entry.ready_count() == 0
        {
            return Err(NotFound);
        }
        match &svc.kind {
            ServiceKind::ExternalName(ext) => {
                if !r.endpoint.is_empty() || !r.port.is_empty() || !r.protocol.is_empty() {
                    return Err(NotFound);
                }
                if ext.is_empty() || ext.parse::<IpAddr>().is_ok() {
                    return Err(NotFound);
                }
                Ok(vec![Item {
                    target: Target::Name(ext.clone()),
                    port: 0,
                    owner: base,
                }])
            }
            kind if matches!(kind, ServiceKind::Headless) || !r.endpoint.is_empty() => {
                let mut items = Vec::new();
                let mut found = false;
                for (ep, ports) in entry.endpoints() {
                    let host = endpoint_hostname(ep, cfg.endpoint_pod_names);
                    if !r.endpoint.is_empty() && !r.endpoint.eq_ignore_ascii_case(&host) {
                        continue;
                    }
                    for p in ports {
                        if !match_port(r.port, &p.name, r.protocol, &p.protocol) {
                            continue;
                        }
                        found = true;
                        items.push(Item {
                            target: Target::Ip(ep.ip),
                            port: p.port,
                            owner: if self.owners {
                                format!("{host}.{base}")
                            } else {
                                String::new()
                            },
                        });
                    }
                }
                if found { Ok(items) } else { Err(NotFound) }
            }
            ServiceKind::ClusterIp(ips) => {
                let mut items = Vec::new();
                let mut found = false;
                for p in &svc.ports {
                    if !match_port(r.port, &p.name, r.protocol, &p.protocol) {
                        continue;
                    }
                    found = true;
                    for ip in ips {
                        items.push(Item {
                            target: Target::Ip(*ip),
                            port: p.port,
                            owner: base.clone(),
                        });
                    }
                }
                if found { Ok(items) } else { Err(NotFound) }
            }
            ServiceKind::Headless => unreachable!("handled above"),
        }
    }

    /// The apex NS names and their addresses (`nsAddrs`).
    fn ns_addrs(&self) -> Vec<(String, IpAddr)> {
        let mut out = Vec::new();
        let mut found = false;
        for ip in &self.k.local_ips {
            for e in self.idx.endpoints_at(ip) {
                found = true;
                let Some(entry) = self.idx.service(e.namespace(), e.service()) else {
                    continue;
                };
                let svc = entry.svc;
                let base = join(&format!("{}.{}.svc", svc.name, svc.namespace), self.zone_q);
                match &svc.kind {
                    ServiceKind::Headless => {
                        for (ep, _) in entry.endpoints() {
                            let host = endpoint_hostname(ep, self.k.cfg.endpoint_pod_names);
                            out.push((format!("{host}.{base}"), ep.ip));
                        }
                    }
                    ServiceKind::ClusterIp(ips) => {
                        out.extend(ips.iter().map(|ip| (base.clone(), *ip)));
                    }
                    ServiceKind::ExternalName(_) => {}
                }
            }
        }
        if !found {
            let ns = join("ns.dns", self.zone_q);
            out.extend(self.k.local_ips.iter().map(|ip| (ns.clone(), *ip)));
        }
        out
    }

    /// `kubernetes.Services`.
    fn services(&self, name: &str, qtype: RecordType) -> Found {
        match qtype {
            RecordType::TXT => {
                if trim_zone(name, self.zone) == "dns-version" {
                    return Ok(vec![Item {
                        target: Target::Text,
                        port: 0,
                        owner: String::new(),
                    }]);
                }
                match self.records(name) {
                    Ok(items) if !items.is_empty() => Ok(Vec::new()),
                    _ => Err(NotFound),
                }
            }
            RecordType::NS => Ok(self
                .ns_addrs()
                .into_iter()
                .map(|(owner, ip)| Item {
                    target: Target::Ip(ip),
                    port: 0,
                    owner,
                })
                .collect()),
            _ if trim_zone(name, self.zone) == "ns.dns" => {
                let want_v4 = qtype == RecordType::A;
                let want_v6 = qtype == RecordType::AAAA;
                Ok(self
                    .ns_addrs()
                    .into_iter()
                    .filter(|(_, ip)| (ip.is_ipv4() && want_v4) || (ip.is_ipv6() && want_v6))
                    .map(|(_, ip)| Item {
                        target: Target::Ip(ip),
                        port: 0,
                        owner: String::new(),
                    })
                    .collect())
            }
            RecordType::SRV => {
                let items = self.records(name)?;
                Ok(items
                    .into_iter()
                    .filter(|i| !matches!(i.target, Target::Name(_)))
                    .collect())
            }
            _ => self.records(name),
        }
    }

    /// `plugin.A` / `plugin.AAAA`, chasing ExternalName targets.
    fn addresses<'b>(
        &'b self,
        req: &'b Request,
        qname: Name,
        lower: Cow<'b, str>,
        qtype: RecordType,
        previous: Vec<Record>,
    ) -> BoxFuture<'b, Result<(Vec<Record>, bool), NotFound>> {
        Box::pin(async move {
            let items = self.services(&lower, qtype)?;
            let mut records = Vec::new();
            let mut truncated = false;
            let mut seen = HashSet::new();
            for item in items {
                match item.target {
                    Target::Name(target) => {
                        let target = crate::corefile::address::fqdn(&target);
                        let target_lower = target.to_ascii_lowercase();
                        if target_lower == lower || previous.len() > 7 {
                            continue;
                        }
                        let cname = record(
                            qname.clone(),
                            self.ttl(),
                            RData::CNAME(CNAME(name(&target))),
                        );
                        if previous
                            .iter()
                            .any(|r| r.data == cname.data && r.name == cname.name)
                        {
                            continue;
                        }
                        if is_subdomain(self.zone, &target_lower) {
                            let mut chain = previous.clone();
                            chain.push(cname.clone());
                            if let Ok((next, tc)) = self
                                .addresses(
                                    req,
                                    name(&target),
                                    Cow::Owned(target_lower),
                                    qtype,
                                    chain,
                                )
                                .await
                            {
                                if !next.is_empty() {
                                    records.push(cname);
                                    records.extend(next);
                                }
                                truncated |= tc;
                            }
                            continue;
                        }
                        let Ok(m) = req.lookup(name(&target), qtype).await else {
                            continue;
                        };
                        truncated |= m.metadata.truncation;
                        records.push(cname);
                        records.extend(m.answers);
                    }
                    Target::Ip(ip) => {
                        let wanted = match qtype {
                            RecordType::A => ip.is_ipv4(),
                            RecordType::AAAA => ip.is_ipv6(),
                            _ => false,
                        };
                        if wanted && seen.insert(ip) {
                            records.push(addr_record(qname.clone(), self.ttl(), ip));
                        }
                    }
                    Target::Text => {}
                }
            }
            Ok((records, truncated))
        })
    }

    fn srv(&self, qname: &Name, lower: &str) -> Result<(Vec<Record>, Vec<Record>), NotFound> {
        let items = self.services(lower, RecordType::SRV)?;
        let candidates: Vec<(&str, IpAddr, i32)> = items
            .iter()
            .filter_map(|i| match i.target {
                Target::Ip(ip) => Some((i.owner.as_str(), ip, i.port)),
                _ => None,
            })
            .collect();
        Ok(srv_records(qname, self.ttl(), &candidates))
    }

    fn ptr(&self, qname: &Name, lower: &str) -> Result<Vec<Record>, NotFound> {
        let Some(ip) = address_from_reverse(lower) else {
            self.records(lower)?;
            return Ok(Vec::new());
        };
        let primary = self.k.cfg.primary_zone();
        let mut targets: Vec<String> = Vec::new();
        let filter = !self.k.cfg.namespaces.is_empty();
        if let Some(svc) = self
            .idx
            .services_at(&ip)
            .iter()
            .find(|s| !filter || self.exposed(&s.namespace))
        {
            targets.push(join(
                &format!("{}.{}.svc", svc.name, svc.namespace),
                primary,
            ));
        } else {
            for e in self.idx.endpoints_at(&ip) {
                if filter && !self.exposed(e.namespace()) {
                    continue;
                }
                let host = endpoint_hostname(e.ep(), self.k.cfg.endpoint_pod_names);
                let t = join(
                    &format!("{host}.{}.{}.svc", e.service(), e.namespace()),
                    primary,
                );
                if !targets.contains(&t) {
                    targets.push(t);
                }
            }
        }
        if targets.is_empty() {
            return Err(NotFound);
        }
        Ok(targets
            .iter()
            .map(|t| record(qname.clone(), self.ttl(), RData::PTR(PTR(name(t)))))
            .collect())
    }

    fn soa(&self) -> Record {
        let zone = name(self.zone_q);
        let ttl = self.ttl();
        record(
            zone,
            ttl.min(300),
            RData::SOA(SOA::new(
                name(&join("ns.dns", self.zone_q)),
                name(&join("hostmaster", self.zone_q)),
                self.idx.serial,
                7200,
                1800,
                86400,
                ttl,
            )),
        )
    }
}

/// The answer sections of a successful lookup.
#[derive(Default)]
struct Answer {
    records: Vec<Record>,
    extra: Vec<Record>,
    truncated: bool,
}

impl Kubernetes {
    /// CoreDNS's kubernetes metadata: the client's pod (watched with `pods verified`), and the
    /// parts of a cluster name.
    fn provide(&self, req: &Request, meta: &mut crate::plugins::metadata::Meta) {
        let idx = self.index.load();
        if let Some(pod) = idx.pod_at(&req.src.ip().to_canonical()) {
            meta.set("kubernetes/client-namespace", pod.namespace.to_string());
            meta.set("kubernetes/client-pod-name", pod.name.to_string());
        }
        let lower = req.qname_lower();
        let Some(zone) = self
            .cfg
            .zones
            .iter()
            .filter(|z| is_subdomain(z, lower))
            .max_by_key(|z| z.len())
        else {
            return;
        };
        match parse_request(lower, zone) {
            Err(NotFound) => meta.set("kubernetes/parse-error", "invalid query name"),
            Ok(r) => {
                meta.set("kubernetes/port-name", r.port);
                meta.set("kubernetes/protocol", r.protocol);
                meta.set("kubernetes/endpoint", r.endpoint);
                meta.set("kubernetes/service", r.service);
                meta.set("kubernetes/namespace", r.namespace);
                meta.set("kubernetes/kind", r.pod_or_svc);
            }
        }
    }
}

#[async_trait::async_trait]
impl Handler for Kubernetes {
    fn name(&self) -> &'static str {
        NAME
    }

    fn metadata(&self, req: &Request, meta: &mut crate::plugins::metadata::Meta) {
        self.provide(req, meta);
    }

    async fn serve(&self, req: &Request, next: Next<'_>) -> Result<Response, HandlerError> {
        let qname = req.qname();
        let sent = req.qname_sent();
        let lower = req.qname_lower();
        let Some(zone) = self
            .cfg
            .zones
            .iter()
            .filter(|z| is_subdomain(z, lower))
            .max_by_key(|z| z.len())
        else {
            return next.run(req).await;
        };
        let zone_q = &sent[sent.len() - zone.len()..];
        let idx = self.index.load();
        let q = Query {
            k: self,
            idx: &idx,
            zone,
            zone_q,
            owners: !matches!(req.qtype(), RecordType::A | RecordType::AAAA),
        };
        let qtype = req.qtype();
        let at_apex = lower == *zone;
        let result: Result<Answer, NotFound> = match qtype {
            RecordType::AXFR | RecordType::IXFR => {
                return Err(HandlerError::Refused(
                    "plugin/kubernetes: zone transfers need the transfer plugin".into(),
                ));
            }
            RecordType::A | RecordType::AAAA => q
                .addresses(req, qname.clone(), Cow::Borrowed(lower), qtype, Vec::new())
                .await
                .map(|(records, truncated)| Answer {
                    records,
                    truncated,
                    ..Answer::default()
                }),
            RecordType::TXT => q.services(lower, qtype).map(|items| Answer {
                records: items
                    .iter()
                    .filter(|i| matches!(i.target, Target::Text))
                    .take(1)
                    .map(|_| {
                        record(
                            qname.clone(),
                            28800,
                            RData::TXT(TXT::new(vec![DNS_SCHEMA_VERSION.to_string()])),
                        )
                    })
                    .collect(),
                ..Answer::default()
            }),
            RecordType::CNAME => q.services(lower, qtype).map(|items| Answer {
                records: match items.first().map(|i| &i.target) {
                    Some(Target::Name(t)) => vec![record(
                        qname.clone(),
                        q.ttl(),
                        RData::CNAME(CNAME(name(&crate::corefile::address::fqdn(t)))),
                    )],
                    _ => Vec::new(),
                },
                ..Answer::default()
            }),
            RecordType::PTR => q.ptr(qname, lower).map(|records| Answer {
                records,
                ..Answer::default()
            }),
            RecordType::MX => q.services(lower, qtype).map(|_| Answer::default()),
            RecordType::SRV => q.srv(qname, lower).map(|(records, extra)| Answer {
                records,
                extra,
                truncated: false,
            }),
            RecordType::SOA => Ok(Answer {
                records: if at_apex { vec![q.soa()] } else { Vec::new() },
                ..Answer::default()
            }),
            RecordType::NS if at_apex => q.services(lower, qtype).map(|items| {
                let mut a = Answer::default();
                let mut seen = HashSet::new();
                for i in items {
                    let Target::Ip(ip) = i.target else { continue };
                    let target = name(&i.owner);
                    a.extra.push(addr_record(target.clone(), q.ttl(), ip));
                    if seen.insert(i.owner.to_ascii_lowercase()) {
                        a.records
                            .push(record(qname.clone(), q.ttl(), RData::NS(NS(target))));
                    }
                }
                a
            }),
            // Anything else: a fake A lookup tells NODATA from NXDOMAIN.
            _ => q.services(lower, RecordType::A).map(|_| Answer::default()),
        };
        let mut msg: Message = req.reply();
        msg.metadata.authoritative = true;
        match result {
            Err(NotFound) => {
                if self.cfg.fall.through(lower) {
                    return next.run(req).await;
                }
                msg.metadata.response_code = if idx.synced {
                    ResponseCode::NXDomain
                } else {
                    ResponseCode::ServFail
                };
                msg.add_authority(q.soa());
            }
            Ok(a) if a.records.is_empty() => {
                msg.add_authority(q.soa());
            }
            Ok(a) => {
                msg.metadata.truncation = a.truncated;
                msg.add_answers(a.records);
                msg.add_additionals(a.extra);
            }
        }
        Ok(Response::new(msg, NAME))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cluster_names() {
        let z = "cluster.local.";
        let r = parse_request("_http._tcp.web.ns1.svc.cluster.local.", z).unwrap();
        assert_eq!(
            (r.port, r.protocol, r.service, r.namespace, r.pod_or_svc),
            ("http", "tcp", "web", "ns1", "svc")
        );
        let r = parse_request("h1.web.ns1.svc.cluster.local.", z).unwrap();
        assert_eq!((r.endpoint, r.service), ("h1", "web"));
        assert!(parse_request("a.b.c.d.e.svc.cluster.local.", z).is_err());
        assert!(parse_request("web.ns1.cluster.local.", z).is_err());
        assert_eq!(
            parse_request("svc.cluster.local.", z).unwrap().pod_or_svc,
            ""
        );
        assert_eq!(parse_request("cluster.local.", z).unwrap().pod_or_svc, "");
    }

    #[test]
    fn reverse_names() {
        assert_eq!(
            address_from_reverse("1.10.96.10.in-addr.arpa."),
            Some("10.96.10.1".parse().unwrap())
        );
        assert_eq!(address_from_reverse("10.96.10.in-addr.arpa."), None);
        assert_eq!(address_from_reverse("01.10.96.10.in-addr.arpa."), None);
        let v6 = "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa.";
        assert_eq!(
            address_from_reverse(v6),
            Some("2001:db8::1".parse().unwrap())
        );
        assert_eq!(address_from_reverse("8.b.d.0.1.0.0.2.ip6.arpa."), None);
    }

    #[test]
    fn endpoint_hostnames() {
        let ep = |ip: &str, host: Option<&str>, pod: Option<&str>| Endpoint {
            ip: ip.parse().unwrap(),
            hostname: host.map(Arc::from),
            pod_name: pod.map(Arc::from),
        };
        assert_eq!(
            endpoint_hostname(&ep("10.0.0.1", None, None), false),
            "10-0-0-1"
        );
        assert_eq!(
            endpoint_hostname(&ep("2001:db8::", None, None), false),
            "2001-db8--0"
        );
        assert_eq!(
            endpoint_hostname(&ep("5678:abcd::1", None, None), false),
            "5678-abcd--1"
        );
        assert_eq!(
            endpoint_hostname(&ep("10.0.0.1", Some("h"), Some("p")), true),
            "h"
        );
        assert_eq!(
            endpoint_hostname(&ep("10.0.0.1", None, Some("p")), true),
            "p"
        );
        assert_eq!(
            endpoint_hostname(&ep("10.0.0.1", None, Some("p")), false),
            "10-0-0-1"
        );
    }
}
