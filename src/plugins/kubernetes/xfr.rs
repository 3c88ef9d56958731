//! The cluster zones as [`ZoneSource`]s for `transfer` (CoreDNS's xfr.go): every name a query
//! could be answered with, from one immutable index, pods excepted.

use std::net::IpAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use hickory_proto::rr::rdata::{CNAME, NS, SRV};
use hickory_proto::rr::{RData, Record};

use super::handler::{addr_record, endpoint_hostname, exposed, join, name, ns_addrs, record, soa};
use super::index::{Index, Svc};
use super::setup::KubernetesConfig;
use crate::kube::model::ServiceKind;
use crate::plugins::zone_source::{SnapshotError, ZoneSnapshot, ZoneSource};

/// A block's kubernetes zones, transferable.
pub(crate) struct KubeZones {
    pub(crate) cfg: Arc<KubernetesConfig>,
    pub(crate) index: Arc<ArcSwap<Index>>,
    pub(crate) local_ips: Vec<IpAddr>,
    /// Sent after every new index.
    pub(crate) changed: Arc<tokio::sync::watch::Sender<()>>,
}

fn is_reverse(zone: &str) -> bool {
    zone.ends_with("in-addr.arpa.") || zone.ends_with("ip6.arpa.")
}

impl ZoneSource for KubeZones {
    /// The plugin's zones but the reverse ones (they hold PTRs computed per query, no zone).
    fn zones(&self) -> Vec<String> {
        self.cfg
            .zones
            .iter()
            .filter(|z| !is_reverse(z))
            .cloned()
            .collect()
    }

    fn snapshot(&self, zone: &str) -> Result<Box<dyn ZoneSnapshot>, SnapshotError> {
        if is_reverse(zone) || !self.cfg.zones.iter().any(|z| z == zone) {
            return Err(SnapshotError::NotAuthoritative);
        }
        let idx = self.index.load_full();
        if !idx.synced {
            return Err(SnapshotError::NotReady(
                "the Kubernetes API has not been listed yet".into(),
            ));
        }
        Ok(Box::new(KubeSnapshot {
            mc: self.cfg.is_multicluster(zone),
            cfg: self.cfg.clone(),
            idx,
            local_ips: self.local_ips.clone(),
            zone: zone.to_string(),
        }))
    }

    fn changes(&self) -> tokio::sync::watch::Receiver<()> {
        self.changed.subscribe()
    }
}

/// One version of a cluster zone.
struct KubeSnapshot {
    cfg: Arc<KubernetesConfig>,
    idx: Arc<Index>,
    local_ips: Vec<IpAddr>,
    zone: String,
    mc: bool,
}

/// `floor(100 / n)`, at least 1 (CoreDNS's `calcSRVWeight`).
fn srv_weight(n: usize) -> u16 {
    u16::try_from(100 / n.max(1)).unwrap_or(1).max(1)
}

impl ZoneSnapshot for KubeSnapshot {
    fn soa(&self) -> Record {
        soa(&self.cfg, &self.idx, &self.zone, self.mc)
    }

    fn records(&self, emit: &mut dyn FnMut(Record) -> bool) {
        let (cfg, zone, ttl) = (&*self.cfg, self.zone.as_str(), self.cfg.ttl);
        // One NS per name server, then their addresses. A server with no address to publish
        // (it listens on loopback only) still names `ns.dns.ZONE`: a zone without NS is not
        // one a secondary loads.
        let ns = ns_addrs(cfg, &self.idx, &self.local_ips, zone);
        let mut hosts: Vec<&str> = Vec::new();
        for (host, _) in &ns {
            if !hosts.contains(&host.as_str()) {
                hosts.push(host);
            }
        }
        let fallback = join("ns.dns", zone);
        if hosts.is_empty() {
            hosts.push(&fallback);
        }
        for host in hosts {
            if !emit(record(name(zone), ttl, RData::NS(NS(name(host))))) {
                return;
            }
        }
        for (host, ip) in &ns {
            if !emit(addr_record(name(host), ttl, *ip)) {
                return;
            }
        }
        let mut all: Vec<Svc<'_>> = self
            .idx
            .all(self.mc)
            .filter(|s| exposed(cfg, &self.idx, &s.svc.namespace))
            .collect();
        all.sort_unstable_by(|a, b| {
            (&a.svc.name, &a.svc.namespace).cmp(&(&b.svc.name, &b.svc.namespace))
        });
        for s in all {
            if !service(cfg, zone, &s, emit) {
                return;
            }
        }
    }
}

/// The records of one Service (or ServiceImport); false when `emit` asked to stop.
fn service(
    cfg: &KubernetesConfig,
    zone: &str,
    s: &Svc<'_>,
    emit: &mut dyn FnMut(Record) -> bool,
) -> bool {
    let ttl = cfg.ttl;
    let svc = s.svc;
    let base = join(&format!("{}.{}.svc", svc.name, svc.namespace), zone);
    let srv = |owner: &str, weight: u16, port: i32, target: &str| {
        record(
            name(owner),
            ttl,
            RData::SRV(SRV::new(
                0,
                weight,
                u16::try_from(port).unwrap_or(0),
                name(target),
            )),
        )
    };
    let named = |p: &crate::kube::model::Port| {
        format!(
            "_{}._{}.{base}",
            p.name.to_ascii_lowercase(),
            p.protocol.to_ascii_lowercase()
        )
    };
    match &svc.kind {
        ServiceKind::ClusterIp(ips) if !ips.is_empty() => {
            for ip in ips {
                if !emit(addr_record(name(&base), ttl, *ip)) {
                    return false;
                }
            }
            // The Service's own name gets an SRV per port (peer-finder relies on it), named
            // ports one under `_NAME._PROTO` as well.
            for p in svc.ports.iter().filter(|p| p.port != -1) {
                if !emit(srv(&base, 100, p.port, &base)) {
                    return false;
                }
                if !p.name.is_empty() && !emit(srv(&named(p), 100, p.port, &base)) {
                    return false;
                }
            }
        }
        ServiceKind::ClusterIp(_) | ServiceKind::Headless => {
            // Each slice weighs its SRV records by its own number of addresses. Multicluster
            // endpoints are named without their cluster, as CoreDNS transfers them.
            for slice in s.slices {
                let weight = srv_weight(slice.endpoints.len());
                for ep in &slice.endpoints {
                    let host = format!("{}.{base}", endpoint_hostname(ep, cfg.endpoint_pod_names));
                    if !emit(addr_record(name(&base), ttl, ep.ip))
                        || !emit(addr_record(name(&host), ttl, ep.ip))
                    {
                        return false;
                    }
                    for p in slice.ports.iter().filter(|p| !p.name.is_empty()) {
                        if !emit(srv(&named(p), weight, p.port, &host)) {
                            return false;
                        }
                    }
                }
            }
        }
        ServiceKind::ExternalName(target) => {
            if !target.is_empty() && target.parse::<IpAddr>().is_err() {
                let target = crate::corefile::address::fqdn(target);
                return emit(record(name(&base), ttl, RData::CNAME(CNAME(name(&target)))));
            }
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn srv_weights_per_slice() {
        assert_eq!(srv_weight(1), 100);
        assert_eq!(srv_weight(4), 25);
        assert_eq!(srv_weight(6), 16);
        assert_eq!(srv_weight(200), 1);
    }
}
