//! The immutable index queries read. Each published [`Objects`] view gives a new version made
//! from the previous one and the difference between the two views (only the shards that
//! changed), so an API change costs in proportion to the change; the new version is swapped in
//! whole.

use std::net::IpAddr;
use std::sync::Arc;

use crate::kube::Objects;
use crate::kube::model::{Endpoint, EndpointSlice, Key, Pod, Port, Service, ServiceKind};
use crate::kube::shards::{Few, NsName, Shards};

/// A Service with the slices that belong to it.
#[derive(Debug, Clone, Copy)]
pub struct Svc<'a> {
    /// The Service.
    pub svc: &'a Arc<Service>,
    /// Its EndpointSlices (ready addresses only), sorted by name.
    pub slices: &'a [Arc<EndpointSlice>],
}

impl<'a> Svc<'a> {
    /// Every (address, its slice's ports) pair.
    pub fn endpoints(&self) -> impl Iterator<Item = (&'a Endpoint, &'a [Port])> {
        self.slices
            .iter()
            .flat_map(|s| s.endpoints.iter().map(move |e| (e, s.ports.as_slice())))
    }

    /// Number of ready addresses.
    pub fn ready_count(&self) -> usize {
        self.slices.iter().map(|s| s.endpoints.len()).sum()
    }
}

/// A PTR target for an endpoint address: its slice and its place there (16 bytes, where a
/// copy of the endpoint and its names took 88).
#[derive(Debug, Clone)]
pub struct EpRef {
    slice: Arc<EndpointSlice>,
    i: u32,
}

impl EpRef {
    /// The endpoint.
    pub fn ep(&self) -> &Endpoint {
        &self.slice.endpoints[self.i as usize]
    }
    /// Service name (from the slice's label).
    pub fn service(&self) -> &Arc<str> {
        &self.slice.service
    }
    /// Namespace.
    pub fn namespace(&self) -> &Arc<str> {
        &self.slice.namespace
    }
}

/// A map by IP address as two maps, IPv4 keys in 4 bytes and IPv6 in 16, so an entry takes 32
/// bytes where an `IpAddr` key (17 bytes, padded) took 48 (IPv6: 40).
#[derive(Debug, Clone)]
struct IpMap<V> {
    v4: Shards<u32, V>,
    v6: Shards<[u8; 16], V>,
}

impl<V> Default for IpMap<V> {
    fn default() -> Self {
        Self {
            v4: Shards::default(),
            v6: Shards::default(),
        }
    }
}

impl<V: Clone> IpMap<V> {
    fn get(&self, ip: &IpAddr) -> Option<&V> {
        match ip {
            IpAddr::V4(a) => self.v4.get(&u32::from(*a)),
            IpAddr::V6(a) => self.v6.get(&a.octets()),
        }
    }

    fn update(&mut self, ip: IpAddr, f: impl FnOnce(Option<V>) -> Option<V>) {
        match ip {
            IpAddr::V4(a) => self.v4.update(u32::from(a), f),
            IpAddr::V6(a) => self.v6.update(a.octets(), f),
        }
    }
}

/// Everything the answers need, keyed for lookups without allocation.
#[derive(Debug, Default, Clone)]
pub struct Index {
    /// Whether every watched kind has been listed.
    pub synced: bool,
    /// SOA serial of the cluster zones.
    pub serial: u32,
    /// SOA serial of the multicluster zones.
    pub mc_serial: u32,
    /// The view this version was made from (its maps are shared, not copied).
    objects: Objects,
    /// (namespace, service name) → its slices, sorted by slice name.
    slices: Shards<Key, Few<Arc<EndpointSlice>>>,
    /// ClusterIP → the services holding it, sorted by (namespace, name).
    service_ips: IpMap<Few<Arc<Service>>>,
    /// External IP (`externalIPs`, load-balancer ingress) → its services (`k8s_external` PTR).
    external_ips: IpMap<Few<Arc<Service>>>,
    /// Endpoint IP → the endpoints with that address, sorted by (namespace, slice name).
    endpoint_ips: IpMap<Few<EpRef>>,
    /// Pod IP → the watched pods with that IP, sorted by (namespace, name).
    pod_ips: IpMap<Few<Arc<Pod>>>,
    /// (namespace, ServiceImport name) → its multicluster slices, sorted by slice name (empty
    /// without `multicluster`).
    mc_slices: Shards<Key, Few<Arc<EndpointSlice>>>,
}

/// `slices` (keyed by their service) after the changes from `old` to `new`.
fn index_slices(
    slices: &mut Shards<Key, Few<Arc<EndpointSlice>>>,
    old: Option<&Arc<EndpointSlice>>,
    new: Option<&Arc<EndpointSlice>>,
) {
    if let Some(o) = old {
        let key = (o.namespace.clone(), o.service.clone());
        slices.update(key, |f| Few::remove(f, |s| Arc::ptr_eq(s, o)));
    }
    if let Some(n) = new {
        let key = (n.namespace.clone(), n.service.clone());
        slices.update(key, |f| Few::insert(f, n.clone(), |a, b| a.name < b.name));
    }
}

fn cluster_ips(s: &Service) -> &[IpAddr] {
    match &s.kind {
        ServiceKind::ClusterIp(ips) => ips,
        _ => &[],
    }
}

impl Index {
    /// The index of `objects`, made from nothing.
    pub fn build(objects: &Objects) -> Self {
        Self::default().update(objects)
    }

    /// The index of `new`, made from this one: only what differs between the view this version
    /// was made from and `new` is looked at.
    pub fn update(&self, new: &Objects) -> Self {
        let mut next = self.clone();
        let old = &self.objects;
        next.synced = new.synced;
        next.serial = new.serial;
        next.mc_serial = new.mc_serial;
        next.objects = new.clone();

        for (_, o, n) in new.services.diff(&old.services, Arc::ptr_eq) {
            if let Some(o) = o {
                for ip in cluster_ips(o) {
                    next.service_ips
                        .update(*ip, |f| Few::remove(f, |s| Arc::ptr_eq(s, o)));
                }
                for ip in &o.external_ips {
                    next.external_ips
                        .update(*ip, |f| Few::remove(f, |s| Arc::ptr_eq(s, o)));
                }
            }
            if let Some(n) = n {
                for ip in cluster_ips(n) {
                    next.service_ips.update(*ip, |f| {
                        Few::insert(f, n.clone(), |a, b| {
                            (&a.namespace, &a.name) < (&b.namespace, &b.name)
                        })
                    });
                }
                for ip in &n.external_ips {
                    next.external_ips.update(*ip, |f| {
                        Few::insert(f, n.clone(), |a, b| {
                            (&a.namespace, &a.name) < (&b.namespace, &b.name)
                        })
                    });
                }
            }
        }

        for (_, o, n) in new.mc_slices.diff(&old.mc_slices, Arc::ptr_eq) {
            index_slices(&mut next.mc_slices, o, n);
        }

        for (_, o, n) in new.slices.diff(&old.slices, Arc::ptr_eq) {
            index_slices(&mut next.slices, o, n);
            if let Some(o) = o {
                for ep in &o.endpoints {
                    next.endpoint_ips
                        .update(ep.ip, |f| Few::remove(f, |r| Arc::ptr_eq(&r.slice, o)));
                }
            }
            if let Some(n) = n {
                for (i, ep) in n.endpoints.iter().enumerate() {
                    let r = EpRef {
                        slice: n.clone(),
                        i: i as u32,
                    };
                    next.endpoint_ips.update(ep.ip, |f| {
                        Few::insert(f, r, |a, b| {
                            (&a.slice.namespace, &a.slice.name, a.i)
                                < (&b.slice.namespace, &b.slice.name, b.i)
                        })
                    });
                }
            }
        }

        for (_, o, n) in new.pods.diff(&old.pods, Arc::ptr_eq) {
            if let Some(o) = o {
                if let Ok(ip) = o.ip.parse::<IpAddr>() {
                    next.pod_ips
                        .update(ip, |f| Few::remove(f, |p| Arc::ptr_eq(p, o)));
                }
            }
            if let Some(n) = n {
                if let Ok(ip) = n.ip.parse::<IpAddr>() {
                    next.pod_ips.update(ip, |f| {
                        Few::insert(f, n.clone(), |a, b| {
                            (&a.namespace, &a.name) < (&b.namespace, &b.name)
                        })
                    });
                }
            }
        }
        next
    }

    /// The service `name` in `namespace` (lower-case).
    pub fn service(&self, namespace: &str, name: &str) -> Option<Svc<'_>> {
        let key = NsName(namespace, name);
        let svc = self.objects.services.get(&key)?;
        let slices = self.slices.get(&key).map_or(&[][..], Few::as_slice);
        Some(Svc { svc, slices })
    }

    /// The ServiceImport `name` in `namespace` (lower-case) with its multicluster slices.
    pub fn import(&self, namespace: &str, name: &str) -> Option<Svc<'_>> {
        let key = NsName(namespace, name);
        let svc = self.objects.imports.get(&key)?;
        let slices = self.mc_slices.get(&key).map_or(&[][..], Few::as_slice);
        Some(Svc { svc, slices })
    }

    /// Every Service (`multicluster`: every ServiceImport) with its slices, in no order.
    pub fn all(&self, multicluster: bool) -> impl Iterator<Item = Svc<'_>> {
        let (services, slices) = if multicluster {
            (&self.objects.imports, &self.mc_slices)
        } else {
            (&self.objects.services, &self.slices)
        };
        services.iter().map(move |(k, svc)| Svc {
            svc,
            slices: slices
                .get(&NsName(&k.0, &k.1))
                .map_or(&[][..], Few::as_slice),
        })
    }

    /// Whether namespace `ns` exists (after the `namespace_labels` filter).
    pub fn has_namespace(&self, ns: &str) -> bool {
        self.objects.namespaces.contains_key(&NsName("", ns))
    }

    /// The services whose ClusterIPs include `ip`, sorted by (namespace, name).
    pub fn services_at(&self, ip: &IpAddr) -> &[Arc<Service>] {
        self.service_ips.get(ip).map_or(&[], Few::as_slice)
    }

    /// The services with external address `ip`, sorted by (namespace, name).
    pub fn services_with_external_ip(&self, ip: &IpAddr) -> &[Arc<Service>] {
        self.external_ips.get(ip).map_or(&[], Few::as_slice)
    }

    /// The ready endpoints with address `ip`, sorted by (namespace, slice name).
    pub fn endpoints_at(&self, ip: &IpAddr) -> &[EpRef] {
        self.endpoint_ips.get(ip).map_or(&[], Few::as_slice)
    }

    /// `pods verified`: whether a watched pod in `namespace` has the IP written as `ip_text`.
    pub fn pod_exists(&self, namespace: &str, ip: &IpAddr, ip_text: &str) -> bool {
        self.pod_ips.get(ip).is_some_and(|f| {
            f.as_slice()
                .iter()
                .any(|p| &*p.namespace == namespace && &*p.ip == ip_text)
        })
    }

    /// The namespace of the first pod (by namespace and name) with address `ip`, for
    /// `autopath @kubernetes`.
    pub fn pod_namespace(&self, ip: &IpAddr) -> Option<&Arc<str>> {
        self.pod_at(ip).map(|p| &p.namespace)
    }

    /// The first pod (by namespace and name) with address `ip` (metadata's client pod).
    pub fn pod_at(&self, ip: &IpAddr) -> Option<&Arc<Pod>> {
        self.pod_ips.get(ip)?.as_slice().first()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kube::model::Endpoint;
    use crate::kube::store::{Change, Kind, Obj, Store};

    fn svc(ns: &str, name: &str, ip: &str) -> Obj {
        Obj::Service(
            (Arc::from(ns), Arc::from(name)),
            Arc::new(Service {
                namespace: Arc::from(ns),
                name: Arc::from(name),
                kind: ServiceKind::ClusterIp(vec![ip.parse().unwrap()]),
                ports: vec![],
                external_ips: vec![],
                external_hostnames: Box::default(),
            }),
        )
    }

    fn slice(ns: &str, name: &str, service: &str, ips: &[&str]) -> Obj {
        Obj::Slice(
            (Arc::from(ns), Arc::from(name)),
            Arc::new(EndpointSlice {
                namespace: Arc::from(ns),
                name: Arc::from(name),
                service: Arc::from(service),
                ports: vec![],
                endpoints: ips
                    .iter()
                    .map(|ip| Endpoint {
                        ip: ip.parse().unwrap(),
                        hostname: None,
                        pod_name: None,
                    })
                    .collect(),
                trigger_time: None,
                extra: None,
            }),
        )
    }

    /// Every lookup of `idx` as text, to compare an updated index with one built afresh.
    fn dump(idx: &Index, names: &[(&str, &str)], ips: &[&str]) -> Vec<String> {
        let mut out = vec![format!("synced={}", idx.synced)];
        for (ns, name) in names {
            if let Some(s) = idx.service(ns, name) {
                let eps: Vec<String> = s.endpoints().map(|(e, _)| e.ip.to_string()).collect();
                out.push(format!("{ns}/{name}: {:?} {eps:?}", s.svc.kind));
            }
        }
        for ip in ips {
            let ip: IpAddr = ip.parse().unwrap();
            let svcs: Vec<String> = idx
                .services_at(&ip)
                .iter()
                .map(|s| format!("{}/{}", s.namespace, s.name))
                .collect();
            let eps: Vec<String> = idx
                .endpoints_at(&ip)
                .iter()
                .map(|e| format!("{}/{}", e.namespace(), e.service()))
                .collect();
            out.push(format!("{ip}: {svcs:?} {eps:?}"));
        }
        out
    }

    #[test]
    fn updating_gives_the_same_index_as_building_afresh() {
        let mut store = Store::new(&[Kind::Service, Kind::EndpointSlice], None);
        for kind in [Kind::Service, Kind::EndpointSlice] {
            store.apply(Change::Init(kind));
            store.apply(Change::InitDone(kind));
        }
        let names = [("a", "web"), ("b", "web"), ("a", "db")];
        let ips = ["10.0.0.1", "10.0.0.2", "10.1.0.1", "10.1.0.2", "10.1.0.3"];
        let mut idx = Index::build(store.objects());
        let steps = [
            Change::Apply(svc("b", "web", "10.0.0.1")),
            Change::Apply(svc("a", "web", "10.0.0.1")),
            Change::Apply(slice("a", "web-2", "web", &["10.1.0.2"])),
            Change::Apply(slice("a", "web-1", "web", &["10.1.0.1", "10.1.0.2"])),
            Change::Apply(slice("b", "web-1", "web", &["10.1.0.2"])),
            Change::Apply(svc("a", "db", "10.0.0.2")),
            Change::Apply(svc("a", "web", "10.0.0.2")),
            Change::Apply(slice("a", "web-1", "web", &["10.1.0.3"])),
            Change::Delete(svc("b", "web", "0.0.0.0")),
            Change::Delete(slice("a", "web-2", "", &[])),
        ];
        for step in steps {
            store.apply(step);
            idx = idx.update(store.objects());
            let fresh = Index::build(store.objects());
            assert_eq!(dump(&idx, &names, &ips), dump(&fresh, &names, &ips));
        }
        let a_web = idx.service("a", "web").unwrap();
        assert_eq!(a_web.slices.len(), 1);
        assert_eq!(idx.services_at(&"10.0.0.2".parse().unwrap()).len(), 2);
        assert!(idx.services_at(&"10.0.0.1".parse().unwrap()).is_empty());
        assert!(idx.endpoints_at(&"10.1.0.2".parse().unwrap()).len() == 1);
    }
}
