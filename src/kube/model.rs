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
#[derive(Debug, Clone, PartialEq, Eq)]
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
    /// Ports (one sentinel port when the Service has none).
    pub ports: Vec<Port>,
    /// `spec.externalIPs` plus load-balancer ingress IPs (for `k8s_external`).
    pub external_ips: Vec<IpAddr>,
    /// Load-balancer ingress hostnames of entries without an IP (for `k8s_external`).
    pub external_hostnames: Box<[Arc<str>]>,
}

/// One ready address of an EndpointSlice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// The address.
    pub ip: IpAddr,
    /// `hostname`, if set.
    pub hostname: Option<Arc<str>>,
    /// `targetRef.name` when it is shorter than 64 characters (`endpoint_pod_names`).
    pub pod_name: Option<Arc<str>>,
}

/// A discovery/v1 EndpointSlice, trimmed to its ready addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointSlice {
    /// Namespace.
    pub namespace: Arc<str>,
    /// Name.
    pub name: Arc<str>,
    /// The Service it belongs to (label `kubernetes.io/service-name`), or for a multicluster
    /// slice its ServiceImport (label `multicluster.kubernetes.io/service-name`).
    pub service: Arc<str>,
    /// Ports (one sentinel port when the slice has none).
    pub ports: Vec<Port>,
    /// Addresses whose `conditions.ready` is not false.
    pub endpoints: Box<[Endpoint]>,
    /// Annotation `endpoints.kubernetes.io/last-change-trigger-time`.
    pub trigger_time: Option<Timestamp>,
    /// What only `multicluster` and `zonal` need; `None` (8 bytes, no allocation) otherwise.
    pub extra: Option<Box<SliceExtra>>,
}

/// The parts of an EndpointSlice kept only when an option asks for them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SliceExtra {
    /// Multicluster slices: label `multicluster.kubernetes.io/source-cluster` (may be empty).
    pub cluster: Option<Arc<str>>,
    /// `zonal`: the topology zone of each endpoint (same order as `endpoints`); empty when no
    /// endpoint names one.
    pub zones: Box<[Option<Arc<str>>]>,
}

impl EndpointSlice {
    /// The source cluster of a multicluster slice (empty for other slices).
    pub fn cluster(&self) -> &str {
        self.extra
            .as_ref()
            .and_then(|x| x.cluster.as_deref())
            .unwrap_or("")
    }

    /// The topology zone of endpoint `i` (kept only with `zonal`).
    pub fn zone(&self, i: usize) -> Option<&str> {
        self.extra.as_ref()?.zones.get(i)?.as_deref()
    }
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
/// The label that ties a multicluster EndpointSlice to its ServiceImport (MCS API).
pub const MC_SERVICE_NAME_LABEL: &str = "multicluster.kubernetes.io/service-name";
/// The label naming the cluster a multicluster EndpointSlice comes from (MCS API).
pub const MC_SOURCE_CLUSTER_LABEL: &str = "multicluster.kubernetes.io/source-cluster";
/// The EndpointSlice annotation behind `coredns_kubernetes_dns_programming_duration_seconds`.
pub const TRIGGER_TIME_ANNOTATION: &str = "endpoints.kubernetes.io/last-change-trigger-time";

fn name_of(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> Option<Key> {
    Some((
        Arc::from(meta.namespace.as_deref().unwrap_or("")),
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
        .unwrap_or_else(|| Arc::from(p))
}

fn ports<I: Iterator<Item = (Option<String>, Option<String>, Option<i32>)>>(it: I) -> Vec<Port> {
    let mut out: Vec<Port> = it
        .map(|(name, protocol, port)| Port {
            name: Arc::from(name.unwrap_or_default()),
            protocol: protocol_name(protocol.as_deref().unwrap_or("TCP")),
            port: port.unwrap_or(-1),
        })
        .collect();
    if out.is_empty() {
        out.push(Port::sentinel());
    }
    out
}

/// Trims a Service; `None` if it has no name.
pub fn service(svc: &core::Service) -> Option<Service> {
    let (namespace, name) = name_of(&svc.metadata)?;
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
    let mut external_hostnames = Vec::new();
    if let Some(ingress) = svc
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
    {
        for i in ingress {
            match (
                i.ip.as_deref().filter(|ip| !ip.is_empty()),
                i.hostname.as_deref(),
            ) {
                (Some(ip), _) => external_ips.extend(ip.parse::<IpAddr>().ok()),
                (None, Some(h)) if !h.is_empty() => external_hostnames.push(Arc::from(h)),
                _ => {}
            }
        }
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
        external_hostnames: external_hostnames.into(),
    })
}

/// What to keep of an EndpointSlice's optional parts.
#[derive(Debug, Clone, Copy, Default)]
pub struct SliceOpts {
    /// Endpoints' pod names (`endpoint_pod_names`).
    pub pod_names: bool,
    /// Endpoints' topology zones (`zonal`).
    pub zones: bool,
}

/// Trims an EndpointSlice; `None` if it has no name or no service-name label. Pod names and
/// zones are kept only when asked (a name per endpoint is a fifth of a large cluster's index).
pub fn endpoint_slice(es: &discovery::EndpointSlice, opts: SliceOpts) -> Option<EndpointSlice> {
    trim_slice(es, SERVICE_NAME_LABEL, None, opts)
}

/// Trims a multicluster EndpointSlice (label `multicluster.kubernetes.io/service-name`, cluster
/// from `multicluster.kubernetes.io/source-cluster`); `None` without the label.
pub fn mc_endpoint_slice(es: &discovery::EndpointSlice, opts: SliceOpts) -> Option<EndpointSlice> {
    let cluster = es
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(MC_SOURCE_CLUSTER_LABEL))
        .map_or_else(|| Arc::from(""), |c| Arc::from(c.as_str()));
    trim_slice(es, MC_SERVICE_NAME_LABEL, Some(cluster), opts)
}

fn trim_slice(
    es: &discovery::EndpointSlice,
    label: &str,
    cluster: Option<Arc<str>>,
    opts: SliceOpts,
) -> Option<EndpointSlice> {
    let (namespace, name) = name_of(&es.metadata)?;
    let service = es.metadata.labels.as_ref()?.get(label)?;
    let mut endpoints = Vec::new();
    let mut zones = Vec::new();
    for ep in &es.endpoints {
        if ep.conditions.as_ref().and_then(|c| c.ready) == Some(false) {
            continue;
        }
        let pod_name = ep
            .target_ref
            .as_ref()
            .filter(|_| opts.pod_names)
            .and_then(|t| t.name.as_deref())
            .filter(|n| n.len() < 64)
            .map(Arc::from);
        let hostname = ep.hostname.as_deref().map(Arc::from);
        let zone: Option<Arc<str>> = ep.zone.as_deref().filter(|_| opts.zones).map(Arc::from);
        for addr in &ep.addresses {
            if let Ok(ip) = addr.parse() {
                endpoints.push(Endpoint {
                    ip,
                    hostname: hostname.clone(),
                    pod_name: pod_name.clone(),
                });
                zones.push(zone.clone());
            }
        }
    }
    let trigger_time = es
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(TRIGGER_TIME_ANNOTATION))
        .and_then(|t| t.parse().ok());
    if zones.iter().all(Option::is_none) {
        zones.clear();
    }
    let extra = (cluster.is_some() || !zones.is_empty()).then(|| {
        Box::new(SliceExtra {
            cluster,
            zones: zones.into_boxed_slice(),
        })
    });
    Some(EndpointSlice {
        namespace,
        name,
        service: Arc::from(service.as_str()),
        ports: ports(
            es.ports
                .iter()
                .flatten()
                .map(|p| (p.name.clone(), p.protocol.clone(), p.port)),
        ),
        endpoints: endpoints.into_boxed_slice(),
        trigger_time,
        extra,
    })
}

/// Trims a multicluster.x-k8s.io/v1alpha1 ServiceImport to the Service shape the answers use:
/// type `Headless` is headless, anything else (`ClusterSetIP`) has `spec.ips` as its cluster
/// IPs. `None` if it has no name.
pub fn service_import(obj: &kube::api::DynamicObject) -> Option<Service> {
    let (namespace, name) = name_of(&obj.metadata)?;
    let spec = obj.data.get("spec");
    let field = |k: &str| spec.and_then(|s| s.get(k));
    let kind = if field("type").and_then(|t| t.as_str()) == Some("Headless") {
        ServiceKind::Headless
    } else {
        let mut ips: Vec<IpAddr> = field("ips")
            .and_then(|v| v.as_array())
            .into_iter()
            .flatten()
            .filter_map(|ip| ip.as_str()?.parse().ok())
            .collect();
        ips.dedup();
        ServiceKind::ClusterIp(ips)
    };
    let text = |p: &serde_json::Value, k: &str| p.get(k).and_then(|v| v.as_str()).map(String::from);
    let ports = ports(
        field("ports")
            .and_then(|v| v.as_array())
            .into_iter()
            .flatten()
            .map(|p| {
                let port = p
                    .get("port")
                    .and_then(serde_json::Value::as_i64)
                    .and_then(|n| i32::try_from(n).ok());
                (text(p, "name"), text(p, "protocol"), port)
            }),
    );
    Some(Service {
        namespace,
        name,
        kind,
        ports,
        external_ips: Vec::new(),
        external_hostnames: Box::default(),
    })
}

/// Trims a Namespace to its name.
pub fn namespace(ns: &core::Namespace) -> Option<Arc<str>> {
    ns.metadata.name.as_deref().map(Arc::from)
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
        assert_eq!(h.ports, vec![Port::sentinel()]);
        let ext: core::Service = from_yaml(
            "metadata: {name: e, namespace: ns1}\nspec: {type: ExternalName, externalName: www.example.com}\n",
        );
        assert_eq!(
            service(&ext).unwrap().kind,
            ServiceKind::ExternalName(Arc::from("www.example.com"))
        );
        // Load-balancer ingress: IPs join the external IPs, hostnames are kept apart.
        let lb: core::Service = from_yaml(
            "metadata: {name: lb, namespace: ns1}\nspec: {type: LoadBalancer, externalIPs: [192.0.2.1]}\nstatus: {loadBalancer: {ingress: [{ip: 192.0.2.2}, {hostname: lb.example.net}, {ip: '', hostname: x.example.net}]}}\n",
        );
        let s = service(&lb).unwrap();
        let ips: Vec<String> = s.external_ips.iter().map(ToString::to_string).collect();
        assert_eq!(ips, ["192.0.2.1", "192.0.2.2"]);
        let hosts: Vec<&str> = s.external_hostnames.iter().map(|h| &**h).collect();
        assert_eq!(hosts, ["lb.example.net", "x.example.net"]);
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
        let names = SliceOpts {
            pod_names: true,
            zones: false,
        };
        let s = endpoint_slice(&es, names).unwrap();
        assert_eq!(
            endpoint_slice(&es, SliceOpts::default()).unwrap().endpoints[1].pod_name,
            None
        );
        assert!(s.extra.is_none(), "nothing optional kept");
        assert_eq!(&*s.service, "web");
        let ips: Vec<String> = s.endpoints.iter().map(|e| e.ip.to_string()).collect();
        assert_eq!(ips, ["10.1.0.1", "10.1.0.3"]);
        assert_eq!(s.endpoints[1].hostname.as_deref(), Some("h3"));
        assert_eq!(s.endpoints[1].pod_name.as_deref(), Some("web-0"));
        assert_eq!(s.ports[0].port, 8080);
        let unlabelled: discovery::EndpointSlice =
            from_yaml("metadata: {name: x, namespace: ns1}\naddressType: IPv4\nendpoints: []\n");
        assert!(endpoint_slice(&unlabelled, names).is_none());
    }

    #[test]
    fn multicluster_slices_and_zones() {
        let es: discovery::EndpointSlice = from_yaml(
            r#"
metadata:
  name: web-mc
  namespace: ns1
  labels:
    multicluster.kubernetes.io/service-name: web
    multicluster.kubernetes.io/source-cluster: cluster1
addressType: IPv4
endpoints:
- addresses: [10.1.0.1]
  zone: us-west-2a
- addresses: [10.1.0.2]
"#,
        );
        assert!(
            endpoint_slice(&es, SliceOpts::default()).is_none(),
            "no service label"
        );
        let mc = mc_endpoint_slice(&es, SliceOpts::default()).unwrap();
        assert_eq!((&*mc.service, mc.cluster()), ("web", "cluster1"));
        assert_eq!(mc.zone(0), None, "zones only with zonal");
        let zonal = SliceOpts {
            pod_names: false,
            zones: true,
        };
        let mc = mc_endpoint_slice(&es, zonal).unwrap();
        assert_eq!((mc.zone(0), mc.zone(1)), (Some("us-west-2a"), None));
    }

    #[test]
    fn service_imports_take_the_service_shape() {
        let imp: kube::api::DynamicObject = from_yaml(
            "apiVersion: multicluster.x-k8s.io/v1alpha1\nkind: ServiceImport\nmetadata: {name: web, namespace: ns1}\nspec: {type: ClusterSetIP, ips: [10.0.0.1, 'fd00::1', bogus], ports: [{name: http, protocol: TCP, port: 80}]}\n",
        );
        let s = service_import(&imp).unwrap();
        assert_eq!(
            s.kind,
            ServiceKind::ClusterIp(vec![
                "10.0.0.1".parse().unwrap(),
                "fd00::1".parse().unwrap()
            ])
        );
        assert_eq!((&*s.ports[0].name, s.ports[0].port), ("http", 80));
        let headless: kube::api::DynamicObject = from_yaml(
            "apiVersion: multicluster.x-k8s.io/v1alpha1\nkind: ServiceImport\nmetadata: {name: h, namespace: ns1}\nspec: {type: Headless, ports: []}\n",
        );
        let h = service_import(&headless).unwrap();
        assert_eq!(h.kind, ServiceKind::Headless);
        assert_eq!(h.ports, vec![Port::sentinel()]);
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
