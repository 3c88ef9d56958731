//! Slim copies of the API objects: only the fields DNS answers need. Every object is trimmed at
//! ingest (watch event or snapshot file), so no full k8s-openapi object outlives its event.

use std::net::IpAddr;
use std::sync::Arc;

use k8s_openapi::api::core::v1 as core;
use k8s_openapi::api::discovery::v1 as discovery;
use k8s_openapi::jiff::Timestamp;

/// `namespace/name` of an object (namespaces: `name` only, namespace empty).
pub type Key = (Arc<str>, Arc<str>);

/// A port of a Service or an EndpointSlice. `port` is `-1` for an object with no ports (CoreDNS's
/// sentinel: A records work, SRV records do not).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Port {
    /// Port name (may be empty).
    pub name: Arc<str>,
    /// `TCP`, `UDP` or `SCTP` as in the API.
    pub protocol: Arc<str>,
    /// Port number, or -1.
    pub port: i32,
}

impl Port {
    fn sentinel() -> Self {
        Self {
            name: Arc::from(""),
            protocol: Arc::from(""),
            port: -1,
        }
    }
}

/// What kind of Service it is, as far as DNS cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServiceKind {
    /// ClusterIP, NodePort or LoadBalancer with cluster IPs.
    ClusterIp(Vec<IpAddr>),
    /// `clusterIP: None`: answered from its endpoints.
    Headless,
    /// `type: ExternalName` (the name as written in the object).
    ExternalName(Arc<str>),
}

/// A v1 Service, trimmed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    /// Namespace.
    pub namespace: Arc<str>,
    /// Name.
    pub name: Arc<str>,
    /// Kind and addresses.
    pub kind: ServiceKind,
    /// Ports (one sentinel port when the Service has none), shared with every object that has
    /// the same.
    pub ports: Arc<[Port]>,
    /// `spec.externalIPs` plus load-balancer ingress IPs (for `k8s_external`).
    pub external_ips: Vec<IpAddr>,
}

/// One ready address of an EndpointSlice: 32 bytes, the names (which most endpoints lack) behind
/// a pointer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// The address.
    pub ip: IpAddr,
    names: Option<Box<EndpointNames>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct EndpointNames {
    hostname: Option<Arc<str>>,
    pod_name: Option<Arc<str>>,
}

impl Endpoint {
    /// An endpoint at `ip` with its `hostname` and pod name.
    pub fn new(ip: IpAddr, hostname: Option<Arc<str>>, pod_name: Option<Arc<str>>) -> Self {
        let names = (hostname.is_some() || pod_name.is_some())
            .then(|| Box::new(EndpointNames { hostname, pod_name }));
        Self { ip, names }
    }

    /// `hostname`, if set.
    pub fn hostname(&self) -> Option<&str> {
        self.names.as_ref()?.hostname.as_deref()
    }

    /// `targetRef.name` when it is shorter than 64 characters (kept for `endpoint_pod_names`).
    pub fn pod_name(&self) -> Option<&str> {
        self.names.as_ref()?.pod_name.as_deref()
    }
}

/// Values many objects share as one allocation each, used at ingest only (a lock is fine
/// there); values no object holds any more are dropped when the table has doubled.
struct Interned<T: ?Sized> {
    set: std::collections::HashSet<Arc<T>>,
    sweep_at: usize,
}

impl<T: ?Sized + std::hash::Hash + Eq> Interned<T> {
    fn new() -> Self {
        Self {
            set: std::collections::HashSet::new(),
            sweep_at: 1024,
        }
    }

    fn get(&mut self, v: &T, make: impl FnOnce(&T) -> Arc<T>) -> Arc<T> {
        if let Some(a) = self.set.get(v) {
            return a.clone();
        }
        if self.set.len() >= self.sweep_at {
            self.set.retain(|a| Arc::strong_count(a) > 1);
            self.set.shrink_to_fit();
            self.sweep_at = (self.set.len() * 2).max(1024);
        }
        let a = make(v);
        self.set.insert(a.clone());
        a
    }
}

/// Strings many objects share — namespaces, Service names (an EndpointSlice's label names its
/// Service), port names, protocols, hostnames — as one allocation each.
pub fn intern(s: &str) -> Arc<str> {
    static TABLE: std::sync::LazyLock<std::sync::Mutex<Interned<str>>> =
        std::sync::LazyLock::new(|| std::sync::Mutex::new(Interned::new()));
    TABLE
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(s, |v| Arc::from(v))
}

/// Port lists (Services of one kind, and their slices, mostly have the same) as one allocation
/// each.
fn intern_ports(ports: Vec<Port>) -> Arc<[Port]> {
    static TABLE: std::sync::LazyLock<std::sync::Mutex<Interned<[Port]>>> =
        std::sync::LazyLock::new(|| std::sync::Mutex::new(Interned::new()));
    TABLE
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&ports, |v| Arc::from(v))
}

/// A discovery/v1 EndpointSlice, trimmed to its ready addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointSlice {
    /// Namespace.
    pub namespace: Arc<str>,
    /// Name.
    pub name: Arc<str>,
    /// The Service it belongs to (label `kubernetes.io/service-name`).
    pub service: Arc<str>,
    /// Ports (one sentinel port when the slice has none), shared with every object that has the
    /// same.
    pub ports: Arc<[Port]>,
    /// Addresses whose `conditions.ready` is not false.
    pub endpoints: Vec<Endpoint>,
    /// Annotation `endpoints.kubernetes.io/last-change-trigger-time`.
    pub trigger_time: Option<Timestamp>,
}

/// A v1 Pod, trimmed (only kept for `pods verified`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pod {
    /// Namespace.
    pub namespace: Arc<str>,
    /// Name.
    pub name: Arc<str>,
    /// `status.podIP` as written (CoreDNS compares it as a string).
    pub ip: Arc<str>,
}

/// The label that ties an EndpointSlice to its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// The EndpointSlice annotation behind `coredns_kubernetes_dns_programming_duration_seconds`.
pub const TRIGGER_TIME_ANNOTATION: &str = "endpoints.kubernetes.io/last-change-trigger-time";

fn name_of(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> Option<Key> {
    Some((
        intern(meta.namespace.as_deref().unwrap_or("")),
        Arc::from(meta.name.as_deref()?),
    ))
}

/// `TCP`, `UDP` and `SCTP` as one shared allocation each, not one per port.
fn protocol_name(p: &str) -> Arc<str> {
    static KNOWN: std::sync::OnceLock<[Arc<str>; 3]> = std::sync::OnceLock::new();
    let known = KNOWN.get_or_init(|| [Arc::from("TCP"), Arc::from("UDP"), Arc::from("SCTP")]);
    known
        .iter()
        .find(|k| ***k == *p)
        .cloned()
        .unwrap_or_else(|| intern(p))
}

fn ports<I: Iterator<Item = (Option<String>, Option<String>, Option<i32>)>>(it: I) -> Arc<[Port]> {
    let mut out: Vec<Port> = it
        .map(|(name, protocol, port)| Port {
            name: intern(name.as_deref().unwrap_or_default()),
            protocol: protocol_name(protocol.as_deref().unwrap_or("TCP")),
            port: port.unwrap_or(-1),
        })
        .collect();
    if out.is_empty() {
        out.push(Port::sentinel());
    }
    intern_ports(out)
}

/// Trims a Service; `None` if it has no name.
pub fn service(svc: &core::Service) -> Option<Service> {
    let (namespace, name) = name_of(&svc.metadata)?;
    // An EndpointSlice names its Service in a label: the same allocation for both.
    let name = intern(&name);
    let spec = svc.spec.clone().unwrap_or_default();
    let kind = if spec.type_.as_deref() == Some("ExternalName") {
        ServiceKind::ExternalName(Arc::from(spec.external_name.unwrap_or_default()))
    } else {
        let raw: Vec<String> = match spec.cluster_ips {
            Some(ips) if !ips.is_empty() => ips,
            _ => spec.cluster_ip.into_iter().collect(),
        };
        if raw.iter().any(|ip| ip == "None") {
            ServiceKind::Headless
        } else {
            let mut ips: Vec<IpAddr> = raw.iter().filter_map(|ip| ip.parse().ok()).collect();
            ips.dedup();
            ServiceKind::ClusterIp(ips)
        }
    };
    let mut external_ips: Vec<IpAddr> = spec
        .external_ips
        .unwrap_or_default()
        .iter()
        .filter_map(|ip| ip.parse().ok())
        .collect();
    if let Some(ingress) = svc
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
    {
        external_ips.extend(
            ingress
                .iter()
                .filter_map(|i| i.ip.as_deref()?.parse::<IpAddr>().ok()),
        );
    }
    Some(Service {
        namespace,
        name,
        kind,
        ports: ports(
            spec.ports
                .unwrap_or_default()
                .into_iter()
                .map(|p| (p.name, p.protocol, Some(p.port))),
        ),
        external_ips,
    })
}

/// Trims an EndpointSlice; `None` if it has no name or no service-name label. Pod names are kept
/// only with `pod_names` (a name per endpoint is a fifth of a large cluster's index).
pub fn endpoint_slice(es: &discovery::EndpointSlice, pod_names: bool) -> Option<EndpointSlice> {
    let (namespace, name) = name_of(&es.metadata)?;
    let service = es.metadata.labels.as_ref()?.get(SERVICE_NAME_LABEL)?;
    let mut endpoints = Vec::new();
    for ep in &es.endpoints {
        if ep.conditions.as_ref().and_then(|c| c.ready) == Some(false) {
            continue;
        }
        let pod_name = ep
            .target_ref
            .as_ref()
            .filter(|_| pod_names)
            .and_then(|t| t.name.as_deref())
            .filter(|n| n.len() < 64)
            .map(Arc::from);
        let hostname = ep.hostname.as_deref().map(intern);
        for addr in &ep.addresses {
            if let Ok(ip) = addr.parse() {
                endpoints.push(Endpoint::new(ip, hostname.clone(), pod_name.clone()));
            }
        }
    }
    endpoints.shrink_to_fit();
    let trigger_time = es
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(TRIGGER_TIME_ANNOTATION))
        .and_then(|t| t.parse().ok());
    Some(EndpointSlice {
        namespace,
        name,
        service: intern(service),
        ports: ports(
            es.ports
                .iter()
                .flatten()
                .map(|p| (p.name.clone(), p.protocol.clone(), p.port)),
        ),
        endpoints,
        trigger_time,
    })
}

/// Trims a Namespace to its name.
pub fn namespace(ns: &core::Namespace) -> Option<Arc<str>> {
    ns.metadata.name.as_deref().map(intern)
}

/// Trims a Pod; `None` for pods without an IP, being deleted, or finished.
pub fn pod(p: &core::Pod) -> Option<Pod> {
    if p.metadata.deletion_timestamp.is_some() {
        return None;
    }
    let status = p.status.as_ref()?;
    if matches!(
        status.phase.as_deref(),
        Some("Succeeded" | "Failed" | "Unknown")
    ) {
        return None;
    }
    let (namespace, name) = name_of(&p.metadata)?;
    Some(Pod {
        namespace,
        name,
        ip: Arc::from(status.pod_ip.as_deref()?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from_yaml<T: serde::de::DeserializeOwned>(text: &str) -> T {
        serde_saphyr::from_str(text).unwrap()
    }

    #[test]
    fn services_trim_to_kind_and_ports() {
        let svc: core::Service = from_yaml(
            "metadata: {name: web, namespace: ns1}\nspec:\n  clusterIP: 10.0.0.1\n  clusterIPs: [10.0.0.1, 'fd00::1']\n  ports: [{name: http, port: 80}]\n",
        );
        let s = service(&svc).unwrap();
        assert_eq!(
            s.kind,
            ServiceKind::ClusterIp(vec![
                "10.0.0.1".parse().unwrap(),
                "fd00::1".parse().unwrap()
            ])
        );
        assert_eq!(&*s.ports[0].protocol, "TCP");
        let headless: core::Service =
            from_yaml("metadata: {name: h, namespace: ns1}\nspec: {clusterIP: None}\n");
        let h = service(&headless).unwrap();
        assert_eq!(h.kind, ServiceKind::Headless);
        assert_eq!(&*h.ports, [Port::sentinel()]);
        let ext: core::Service = from_yaml(
            "metadata: {name: e, namespace: ns1}\nspec: {type: ExternalName, externalName: www.example.com}\n",
        );
        assert_eq!(
            service(&ext).unwrap().kind,
            ServiceKind::ExternalName(Arc::from("www.example.com"))
        );
    }

    #[test]
    fn slices_keep_ready_addresses_only() {
        let es: discovery::EndpointSlice = from_yaml(
            r#"
metadata:
  name: web-1
  namespace: ns1
  labels: {kubernetes.io/service-name: web}
addressType: IPv4
endpoints:
- addresses: [10.1.0.1]
- addresses: [10.1.0.2]
  conditions: {ready: false}
- addresses: [10.1.0.3]
  hostname: h3
  targetRef: {kind: Pod, name: web-0}
  conditions: {ready: true}
ports: [{name: http, port: 8080, protocol: TCP}]
"#,
        );
        let s = endpoint_slice(&es, true).unwrap();
        assert_eq!(
            endpoint_slice(&es, false).unwrap().endpoints[1].pod_name(),
            None
        );
        assert_eq!(&*s.service, "web");
        let ips: Vec<String> = s.endpoints.iter().map(|e| e.ip.to_string()).collect();
        assert_eq!(ips, ["10.1.0.1", "10.1.0.3"]);
        assert_eq!(s.endpoints[1].hostname(), Some("h3"));
        assert_eq!(s.endpoints[1].pod_name(), Some("web-0"));
        assert_eq!(std::mem::size_of::<Endpoint>(), 32);
        // Shared strings: the namespace of every object, the Service name of its slices.
        let svc: core::Service = from_yaml(
            "metadata: {name: web, namespace: ns1}\nspec: {clusterIP: 10.0.0.1, ports: [{name: http, port: 80}]}\n",
        );
        let svc = service(&svc).unwrap();
        assert!(Arc::ptr_eq(&svc.namespace, &s.namespace));
        assert!(Arc::ptr_eq(&svc.name, &s.service));
        assert!(Arc::ptr_eq(&svc.ports[0].name, &intern("http")));
        let other: core::Service = from_yaml(
            "metadata: {name: web2, namespace: ns2}\nspec: {clusterIP: 10.0.0.2, ports: [{name: http, port: 80}]}\n",
        );
        assert!(Arc::ptr_eq(&service(&other).unwrap().ports, &svc.ports));
        assert_eq!(s.ports[0].port, 8080);
        let unlabelled: discovery::EndpointSlice =
            from_yaml("metadata: {name: x, namespace: ns1}\naddressType: IPv4\nendpoints: []\n");
        assert!(endpoint_slice(&unlabelled, true).is_none());
    }

    #[test]
    fn finished_pods_are_dropped() {
        let p: core::Pod = from_yaml(
            "metadata: {name: p, namespace: ns1}\nstatus: {phase: Running, podIP: 10.2.0.1}\n",
        );
        assert_eq!(&*pod(&p).unwrap().ip, "10.2.0.1");
        let done: core::Pod = from_yaml(
            "metadata: {name: p, namespace: ns1}\nstatus: {phase: Succeeded, podIP: 10.2.0.1}\n",
        );
        assert!(pod(&done).is_none());
    }
}
