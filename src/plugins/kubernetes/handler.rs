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
    /// Multicluster zones: the cluster of `ENDPOINT.CLUSTER.SVC.NS.svc`.
    cluster: &'a str,
    /// `zonal`: the topology zone of `ZONE.pin|prefer._zone.SVC.NS.svc` (may span labels).
    zone: &'a str,
    /// `prefer` (an empty zone falls back to every endpoint) rather than `pin` (NODATA).
    zone_prefer: bool,
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

/// The position of the last dot of `s` (a plain loop: labels are short, a search call costs
/// more than it saves).
fn last_dot(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    let mut i = b.len();
    while i > 0 {
        i -= 1;
        if b[i] == b'.' {
            return Some(i);
        }
    }
    None
}

/// Takes the last label of `rest`, leaving the labels before it (`None` once all are taken).
fn pop_label<'a>(rest: &mut Option<&'a str>) -> Option<&'a str> {
    let s = (*rest)?;
    match last_dot(s) {
        Some(i) => {
            *rest = Some(&s[..i]);
            Some(&s[i + 1..])
        }
        None => {
            *rest = None;
            Some(s)
        }
    }
}

/// The label of zone-scoped names (`ZONE.pin._zone.SVC.NS.svc`, CoreDNS after 1.14.7).
const ZONE_LABEL: &str = "_zone";

/// parse.go's `parseRequest`: the labels left of `zone`, read from the right. Inlined into
/// the answer path (the metadata provider is its second caller).
#[inline(always)]
fn parse_request<'a>(
    name: &'a str,
    zone: &str,
    multicluster: bool,
    zonal: bool,
) -> Result<Parsed<'a>, NotFound> {
    let base = trim_zone(name, zone);
    let mut r = Parsed::default();
    if base.is_empty() || base == "svc" || base == "pod" {
        return Ok(r);
    }
    let mut rest = Some(base);
    r.pod_or_svc = pop_label(&mut rest).unwrap_or_default();
    if r.pod_or_svc != "svc" && r.pod_or_svc != "pod" {
        return Err(NotFound);
    }
    let Some(namespace) = pop_label(&mut rest) else {
        return Ok(r);
    };
    r.namespace = namespace;
    let Some(service) = pop_label(&mut rest) else {
        return Ok(r);
    };
    r.service = service;
    // What is left of the service: an endpoint; a port and protocol (or, in a multicluster
    // zone, an endpoint and its cluster); with `zonal`, a zone-scoped name; else too long.
    let Some(left) = rest else {
        return Ok(r);
    };
    let Some(i) = last_dot(left) else {
        r.endpoint = left;
        return Ok(r);
    };
    let (front, next) = (&left[..i], &left[i + 1..]);
    let Some(j) = last_dot(front) else {
        if !multicluster || next.starts_with('_') || front.starts_with('_') {
            r.protocol = strip_underscore(next);
            r.port = strip_underscore(front);
        } else {
            r.cluster = next;
            r.endpoint = front;
        }
        return Ok(r);
    };
    if !zonal || multicluster || next != ZONE_LABEL || r.pod_or_svc != "svc" {
        return Err(NotFound);
    }
    match &front[j + 1..] {
        "pin" => {}
        "prefer" => r.zone_prefer = true,
        _ => return Err(NotFound),
    }
    r.zone = &front[..j];
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

/// The apex NS names and their addresses (`nsAddrs`): this server's own Service (the one
/// whose endpoints hold `local_ips`), else `ns.dns.ZONE` with `local_ips`.
pub(crate) fn ns_addrs(
    cfg: &KubernetesConfig,
    idx: &Index,
    local_ips: &[IpAddr],
    zone_q: &str,
) -> Vec<(String, IpAddr)> {
    let mut out = Vec::new();
    let mut found = false;
    for ip in local_ips {
        for e in idx.endpoints_at(ip) {
            found = true;
            let Some(entry) = idx.service(e.namespace(), e.service()) else {
                continue;
            };
            let svc = entry.svc;
            let base = join(&format!("{}.{}.svc", svc.name, svc.namespace), zone_q);
            match &svc.kind {
                ServiceKind::Headless => {
                    for (ep, _) in entry.endpoints() {
                        let host = endpoint_hostname(ep, cfg.endpoint_pod_names);
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
        let ns = join("ns.dns", zone_q);
        out.extend(local_ips.iter().map(|ip| (ns.clone(), *ip)));
    }
    out
}

/// The zone's SOA: `ZONE min(ttl,300) SOA ns.dns.ZONE hostmaster.ZONE SERIAL 7200 1800 86400
/// ttl`, the serial of the cluster or (`mc`) the multicluster objects.
pub(crate) fn soa(cfg: &KubernetesConfig, idx: &Index, zone_q: &str, mc: bool) -> Record {
    let ttl = cfg.ttl;
    record(
        name(zone_q),
        ttl.min(300),
        RData::SOA(SOA::new(
            name(&join("ns.dns", zone_q)),
            name(&join("hostmaster", zone_q)),
            if mc { idx.mc_serial } else { idx.serial },
            7200,
            1800,
            86400,
            ttl,
        )),
    )
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
    /// Whether the zone is answered from ServiceImports (`multicluster`).
    mc: bool,
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
    fn parse<'n>(&self, name: &'n str) -> Result<Parsed<'n>, NotFound> {
        parse_request(name, self.zone, self.mc, self.k.cfg.zonal)
    }

    fn records(&self, name: &str) -> Found {
        let r = self.parse(name)?;
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
        } else if self.mc {
            self.find_mc_services(&r)
        } else {
            self.find_services(&r)
        }
    }

    /// `findMultiClusterServices`: a ServiceImport; its endpoints are named
    /// `HOST.CLUSTER.SVC.NS.svc.ZONE`.
    fn find_mc_services(&self, r: &Parsed<'_>) -> Found {
        if r.service.is_empty() {
            return Ok(Vec::new());
        }
        let Some(entry) = self.idx.import(r.namespace, r.service) else {
            return Err(NotFound);
        };
        let svc = entry.svc;
        let cfg = &self.k.cfg;
        let headless = matches!(svc.kind, ServiceKind::Headless);
        if cfg.ignore_empty_service && !headless && entry.ready_count() == 0 {
            return Err(NotFound);
        }
        let base = if self.owners {
            join(&format!("{}.{}.svc", svc.name, svc.namespace), self.zone_q)
        } else {
            String::new()
        };
        let mut items = Vec::new();
        let mut found = false;
        if headless || !r.endpoint.is_empty() {
            for slice in entry.slices {
                let cluster = slice.cluster();
                for ep in &slice.endpoints {
                    let host = endpoint_hostname(ep, cfg.endpoint_pod_names);
                    if !r.endpoint.is_empty()
                        && (!r.cluster.eq_ignore_ascii_case(cluster)
                            || !r.endpoint.eq_ignore_ascii_case(&host))
                    {
                        continue;
                    }
                    for p in &slice.ports {
                        if !match_port(r.port, &p.name, r.protocol, &p.protocol) {
                            continue;
                        }
                        found = true;
                        items.push(Item {
                            target: Target::Ip(ep.ip),
                            port: p.port,
                            owner: match (self.owners, cluster.is_empty()) {
                                (false, _) => String::new(),
                                (true, true) => format!("{host}.{base}"),
                                (true, false) => format!("{host}.{cluster}.{base}"),
                            },
                        });
                    }
                }
            }
        } else if let ServiceKind::ClusterIp(ips) = &svc.kind {
            for p in &svc.ports {
                if !match_port(r.port, &p.name, r.protocol, &p.protocol) {
                    continue;
                }
                found = true;
                items.extend(ips.iter().map(|ip| Item {
                    target: Target::Ip(*ip),
                    port: p.port,
                    owner: base.clone(),
                }));
            }
        }
        if found { Ok(items) } else { Err(NotFound) }
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
        // Zone-scoped names exist for headless services only (a ClusterIP has no zone).
        if !r.zone.is_empty() && !matches!(svc.kind, ServiceKind::Headless) {
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
                // A zone-scoped name exists whether or not an endpoint is in that zone.
                let mut found = !r.zone.is_empty();
                let mut add = |zone: &str| {
                    let before = items.len();
                    for slice in entry.slices {
                        for (i, ep) in slice.endpoints.iter().enumerate() {
                            if !zone.is_empty() && slice.zone(i) != Some(zone) {
                                continue;
                            }
                            let host = endpoint_hostname(ep, cfg.endpoint_pod_names);
                            if !r.endpoint.is_empty() && !r.endpoint.eq_ignore_ascii_case(&host) {
                                continue;
                            }
                            for p in &slice.ports {
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
                    }
                    items.len() - before
                };
                // `prefer` falls back to every endpoint when the zone has none; `pin` does not.
                if add(r.zone) == 0 && r.zone_prefer {
                    add("");
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
        ns_addrs(&self.k.cfg, self.idx, &self.k.local_ips, self.zone_q)
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
                    // An existing zone-scoped name with no endpoints is NODATA for every type.
                    Ok(_)
                        if self.k.cfg.zonal
                            && self.parse(name).is_ok_and(|r| !r.zone.is_empty()) =>
                    {
                        Ok(Vec::new())
                    }
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
        soa(&self.k.cfg, self.idx, self.zone_q, self.mc)
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
        let mc = !self.cfg.multicluster.is_empty() && self.cfg.is_multicluster(zone);
        match parse_request(lower, zone, mc, self.cfg.zonal) {
            Err(NotFound) => meta.set("kubernetes/parse-error", "invalid query name"),
            Ok(r) => {
                meta.set("kubernetes/port-name", r.port);
                meta.set("kubernetes/protocol", r.protocol);
                meta.set("kubernetes/endpoint", r.endpoint);
                if mc {
                    meta.set("kubernetes/cluster", r.cluster);
                }
                if self.cfg.zonal {
                    meta.set("kubernetes/zone", r.zone);
                }
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
            mc: !self.cfg.multicluster.is_empty() && self.cfg.is_multicluster(zone),
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

    /// parse.go's `recordRequest.String()`.
    fn text(r: &Parsed<'_>) -> String {
        [
            r.port,
            r.protocol,
            r.endpoint,
            r.cluster,
            r.service,
            r.namespace,
            r.pod_or_svc,
        ]
        .join(".")
    }

    /// parse_test.go TestParseRequest: (query, recordRequest.String(), multicluster, zonal, zone).
    #[test]
    fn parses_cluster_names() {
        let z = "inter.webs.tests.";
        let cases = [
            (
                "_http._tcp.webs.mynamespace.svc.inter.webs.tests.",
                "http.tcp...webs.mynamespace.svc",
                false,
                false,
                "",
            ),
            (
                "1-2-3-4.webs.mynamespace.svc.inter.webs.tests.",
                "..1-2-3-4..webs.mynamespace.svc",
                false,
                false,
                "",
            ),
            ("inter.webs.tests.", "......", false, false, ""),
            ("svc.inter.webs.tests.", "......", false, false, ""),
            ("pod.inter.webs.tests.", "......", false, false, ""),
            (
                "..webs.mynamespace.svc.inter.webs.tests.",
                "....webs.mynamespace.svc",
                false,
                false,
                "",
            ),
            (
                "1-2-3-4.cluster1.webs.mynamespace.svc.inter.webs.tests.",
                "..1-2-3-4.cluster1.webs.mynamespace.svc",
                true,
                false,
                "",
            ),
            (
                "us-west-2a.pin._zone.webs.mynamespace.svc.inter.webs.tests.",
                "....webs.mynamespace.svc",
                false,
                true,
                "us-west-2a",
            ),
            (
                "us-west-2a.prefer._zone.webs.mynamespace.svc.inter.webs.tests.",
                "....webs.mynamespace.svc",
                false,
                true,
                "us-west-2a",
            ),
            (
                "corp.example.com.pin._zone.webs.mynamespace.svc.inter.webs.tests.",
                "....webs.mynamespace.svc",
                false,
                true,
                "corp.example.com",
            ),
            (
                "us-west-2a._zone.webs.mynamespace.svc.inter.webs.tests.",
                "us-west-2a.zone...webs.mynamespace.svc",
                false,
                true,
                "",
            ),
            // A multicluster zone still reads a label with `_` as port/protocol.
            (
                "_http._tcp.webs.mynamespace.svc.inter.webs.tests.",
                "http.tcp...webs.mynamespace.svc",
                true,
                false,
                "",
            ),
        ];
        for (query, want, mc, zonal, zone) in cases {
            let r = parse_request(query, z, mc, zonal).unwrap_or_else(|_| panic!("{query}"));
            assert_eq!(text(&r), want, "{query}");
            assert_eq!(r.zone, zone, "{query}");
        }
        let r = parse_request(
            "a.prefer._zone.webs.ns.svc.inter.webs.tests.",
            z,
            false,
            true,
        )
        .unwrap();
        assert!(r.zone_prefer);
    }

    /// parse_test.go TestParseInvalidRequest.
    #[test]
    fn rejects_invalid_cluster_names() {
        let z = "inter.webs.tests.";
        for query in [
            "webs.mynamespace.pood.inter.webs.test.",
            "too.long.for.what.I.am.trying.to.pod.inter.webs.tests.",
            "us-west-2a.pin._zone.webs.mynamespace.svc.inter.webs.tests.",
        ] {
            assert!(parse_request(query, z, false, false).is_err(), "{query}");
        }
        for (query, mc) in [
            (
                "us-west-2a.pin._zone.webs.mynamespace.pod.inter.webs.tests.",
                false,
            ),
            (
                "us-west-2a.florp._zone.webs.mynamespace.svc.inter.webs.tests.",
                false,
            ),
            (
                "us-west-2a.pin._zone.webs.mynamespace.svc.inter.webs.tests.",
                true,
            ),
        ] {
            assert!(parse_request(query, z, mc, true).is_err(), "{query}");
        }
    }

    /// metadata.go: `kubernetes/cluster` in multicluster zones, `kubernetes/zone` with `zonal`.
    #[test]
    fn metadata_of_multicluster_and_zonal_names() {
        let toks = crate::corefile::lexer::lex(
            &Arc::from("Corefile"),
            "kubernetes cluster.local clusterset.local {\n multicluster clusterset.local\n zonal\n}",
        );
        let cfg = super::super::parse(&mut crate::corefile::Dispenser::new(&toks), &[]).unwrap();
        let k = Kubernetes::new(
            Arc::new(cfg),
            Arc::new(ArcSwap::from_pointee(Index::default())),
            Vec::new(),
        );
        let meta = |name: &str| {
            let req = Request::new(
                Name::from_ascii(name).unwrap(),
                RecordType::A,
                "192.0.2.1:5353".parse().unwrap(),
                crate::plugins::Proto::Udp,
            );
            let mut m = crate::plugins::metadata::Meta::default();
            k.provide(&req, &mut m);
            m
        };
        let m = meta("ep1.cluster1.svc1.ns1.svc.clusterset.local.");
        assert_eq!(m.get("kubernetes/cluster"), Some("cluster1"));
        assert_eq!(m.get("kubernetes/endpoint"), Some("ep1"));
        assert_eq!(m.get("kubernetes/zone"), Some(""));
        let m = meta("us-west-2a.pin._zone.hdls.ns1.svc.cluster.local.");
        assert_eq!(m.get("kubernetes/zone"), Some("us-west-2a"));
        assert_eq!(m.get("kubernetes/service"), Some("hdls"));
        assert_eq!(m.get("kubernetes/cluster"), None, "not a multicluster zone");
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
