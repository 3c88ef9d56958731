//! The immutable index queries read: built from a published [`Objects`] view, swapped in whole.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;

use crate::kube::Objects;
use crate::kube::model::{Endpoint, EndpointSlice, Port, Service};

/// A Service with the slices that belong to it.
#[derive(Debug)]
pub struct Svc {
    /// The Service.
    pub svc: Arc<Service>,
    /// Its EndpointSlices (ready addresses only), sorted by name.
    pub slices: Vec<Arc<EndpointSlice>>,
}

impl Svc {
    /// Every (address, its slice's ports) pair.
    pub fn endpoints(&self) -> impl Iterator<Item = (&Endpoint, &[Port])> {
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

/// Everything the answers need, keyed for lookups without allocation.
#[derive(Debug, Default)]
pub struct Index {
    /// Whether every watched kind has been listed.
    pub synced: bool,
    /// SOA serial.
    pub serial: u32,
    /// Namespaces that exist (already filtered by `namespace_labels`).
    pub namespaces: HashSet<Arc<str>>,
    /// namespace → service name → service.
    pub services: HashMap<Arc<str>, HashMap<Arc<str>, Svc>>,
    /// ClusterIP → services holding it, sorted by (namespace, name).
    pub service_ips: HashMap<IpAddr, Vec<Arc<Service>>>,
    /// Endpoint IP → the endpoints with that address (nearly always one: an exact-size slice).
    pub endpoint_ips: HashMap<IpAddr, Box<[EpRef]>>,
    /// (namespace, pod IP as written) of watched pods (`pods verified`).
    pub pods: HashSet<(Arc<str>, Arc<str>)>,
    /// Pod IP → its namespace (the first pod with that IP), for `autopath @kubernetes`.
    pub pod_namespaces: HashMap<IpAddr, Arc<str>>,
}

impl Index {
    /// Builds the index of `objects`.
    pub fn build(objects: &Objects) -> Self {
        let mut services: HashMap<Arc<str>, HashMap<Arc<str>, Svc>> = HashMap::new();
        let mut service_ips: HashMap<IpAddr, Vec<Arc<Service>>> = HashMap::new();
        for s in objects.services.values() {
            if let crate::kube::model::ServiceKind::ClusterIp(ips) = &s.kind {
                for ip in ips {
                    service_ips.entry(*ip).or_default().push(s.clone());
                }
            }
            services.entry(s.namespace.clone()).or_default().insert(
                s.name.clone(),
                Svc {
                    svc: s.clone(),
                    slices: Vec::new(),
                },
            );
        }
        for v in service_ips.values_mut() {
            v.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        }
        let n_eps = objects.slices.values().map(|s| s.endpoints.len()).sum();
        let mut endpoint_ips: HashMap<IpAddr, Box<[EpRef]>> = HashMap::with_capacity(n_eps);
        let mut slices: Vec<&Arc<EndpointSlice>> = objects.slices.values().collect();
        slices.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        for es in slices {
            for (i, ep) in es.endpoints.iter().enumerate() {
                let r = EpRef {
                    slice: es.clone(),
                    i: i as u32,
                };
                endpoint_ips
                    .entry(ep.ip)
                    .and_modify(|v| *v = v.iter().cloned().chain([r.clone()]).collect())
                    .or_insert_with(|| Box::new([r]));
            }
            if let Some(svc) = services
                .get_mut(&es.namespace)
                .and_then(|m| m.get_mut(&es.service))
            {
                svc.slices.push(es.clone());
            }
        }
        for svc in services.values_mut().flat_map(|m| m.values_mut()) {
            svc.slices.shrink_to_fit();
        }
        let mut pod_namespaces = HashMap::new();
        let mut pods: Vec<_> = objects.pods.values().collect();
        pods.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        for p in pods {
            if let Ok(ip) = p.ip.parse::<IpAddr>() {
                pod_namespaces
                    .entry(ip)
                    .or_insert_with(|| p.namespace.clone());
            }
        }
        Self {
            pod_namespaces,
            synced: objects.synced,
            serial: objects.serial,
            namespaces: objects.namespaces.keys().map(|k| k.1.clone()).collect(),
            services,
            service_ips,
            endpoint_ips,
            pods: objects
                .pods
                .values()
                .map(|p| (p.namespace.clone(), p.ip.clone()))
                .collect(),
        }
    }

    /// The service `name` in `namespace` (lower-case).
    pub fn service(&self, namespace: &str, name: &str) -> Option<&Svc> {
        self.services.get(namespace)?.get(name)
    }
}
