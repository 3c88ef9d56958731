//! The object store behind a source: owned by one task, published as immutable [`Objects`].
//!
//! Each kind keeps its live map plus, during a (re)list, a pending map that replaces the live one
//! only when the list is complete — a relist after 410 Gone never publishes a half-built view.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use super::metrics::KubeMetrics;
use super::model::{EndpointSlice, Key, Pod, Service, ServiceKind};
use super::shards::Shards;

/// One kind's objects: versions share unchanged shards (see [`Shards`]).
pub type Map<T> = Shards<Key, Arc<T>>;

/// An immutable view of everything watched. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Objects {
    /// Services by (namespace, name).
    pub services: Map<Service>,
    /// EndpointSlices by (namespace, name).
    pub slices: Map<EndpointSlice>,
    /// Namespaces by ("", name).
    pub namespaces: Map<()>,
    /// Pods by (namespace, name); empty unless pods are watched.
    pub pods: Map<Pod>,
    /// ServiceImports by (namespace, name), trimmed to the Service shape; empty unless
    /// `multicluster`.
    pub imports: Map<Service>,
    /// Multicluster EndpointSlices by (namespace, name); empty unless `multicluster`.
    pub mc_slices: Map<EndpointSlice>,
    /// Whether every watched kind has completed its first list.
    pub synced: bool,
    /// The SOA serial of the cluster zones: Unix time (seconds) of the last change that can
    /// alter an answer, and always greater than the previous serial.
    pub serial: u32,
    /// The SOA serial of the multicluster zones (ServiceImports, their slices, namespaces).
    pub mc_serial: u32,
}

/// Which kinds a source watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// v1 Service.
    Service,
    /// discovery.k8s.io/v1 EndpointSlice.
    EndpointSlice,
    /// v1 Namespace.
    Namespace,
    /// v1 Pod.
    Pod,
    /// multicluster.x-k8s.io/v1alpha1 ServiceImport.
    ServiceImport,
    /// discovery.k8s.io/v1 EndpointSlice of a ServiceImport.
    McSlice,
}

impl Kind {
    /// Label value for metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Service => "service",
            Self::EndpointSlice => "endpointslice",
            Self::Namespace => "namespace",
            Self::Pod => "pod",
            Self::ServiceImport => "serviceimport",
            Self::McSlice => "mcendpointslice",
        }
    }

    /// Whether a change of this kind alters the cluster zones, the multicluster zones.
    fn zones(self) -> (bool, bool) {
        match self {
            Self::Service | Self::EndpointSlice | Self::Pod => (true, false),
            Self::Namespace => (true, true),
            Self::ServiceImport | Self::McSlice => (false, true),
        }
    }
}

/// A trimmed object of some kind.
#[derive(Debug, Clone)]
pub enum Obj {
    /// A Service.
    Service(Key, Arc<Service>),
    /// An EndpointSlice.
    Slice(Key, Arc<EndpointSlice>),
    /// A Namespace.
    Namespace(Key),
    /// A Pod.
    Pod(Key, Arc<Pod>),
    /// A ServiceImport (in the Service shape).
    Import(Key, Arc<Service>),
    /// A multicluster EndpointSlice.
    McSlice(Key, Arc<EndpointSlice>),
}

impl Obj {
    fn kind(&self) -> Kind {
        match self {
            Self::Service(..) => Kind::Service,
            Self::Slice(..) => Kind::EndpointSlice,
            Self::Namespace(_) => Kind::Namespace,
            Self::Pod(..) => Kind::Pod,
            Self::Import(..) => Kind::ServiceImport,
            Self::McSlice(..) => Kind::McSlice,
        }
    }
}

/// What a source reports.
#[derive(Debug, Clone)]
pub enum Change {
    /// A (re)list of `Kind` begins.
    Init(Kind),
    /// An object of the running (re)list.
    InitApply(Obj),
    /// The (re)list of `Kind` is complete.
    InitDone(Kind),
    /// Added or modified.
    Apply(Obj),
    /// Deleted (only the key matters).
    Delete(Obj),
}

#[derive(Default)]
struct Pending {
    services: HashMap<Key, Arc<Service>>,
    slices: HashMap<Key, Arc<EndpointSlice>>,
    namespaces: HashMap<Key, Arc<()>>,
    pods: HashMap<Key, Arc<Pod>>,
    imports: HashMap<Key, Arc<Service>>,
    mc_slices: HashMap<Key, Arc<EndpointSlice>>,
}

/// The mutable store one source task owns.
pub struct Store {
    objects: Objects,
    pending: HashMap<Kind, Pending>,
    synced: HashMap<Kind, bool>,
    metrics: Option<Arc<KubeMetrics>>,
    started: std::time::Instant,
}

fn now_serial() -> u32 {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    u32::try_from(secs).unwrap_or(u32::MAX)
}

/// The serial after `prev`: the time of the change, or `prev + 1` when that is not later (two
/// changes in one second, a clock set back), so a secondary sees every change as newer
/// (RFC 1982 arithmetic: `now` counts as later when it is ahead by less than 2^31).
fn next_serial(prev: u32, now: u32) -> u32 {
    let ahead = now.wrapping_sub(prev);
    if ahead != 0 && ahead < 1 << 31 {
        now
    } else {
        prev.wrapping_add(1)
    }
}

trait InsertKept<T> {
    fn insert_kept(&mut self, live: &Map<T>, k: Key, v: Arc<T>) -> Option<Arc<T>>;
}

impl<T: PartialEq> InsertKept<T> for HashMap<Key, Arc<T>> {
    fn insert_kept(&mut self, live: &Map<T>, k: Key, v: Arc<T>) -> Option<Arc<T>> {
        match live.get_key_value(&k) {
            Some((lk, lv)) if *lv == v => self.insert(lk.clone(), lv.clone()),
            _ => self.insert(k, v),
        }
    }
}

/// Replaces `map` with `new` and reports whether anything differs. `new` was filled by
/// `insert_kept`, so an object equal to the live one is the live allocation and comparing
/// allocations is comparing values.
fn replace<T>(map: &mut Map<T>, new: HashMap<Key, Arc<T>>) -> bool {
    let same = map.len() == new.len()
        && new
            .iter()
            .all(|(k, v)| map.get(k).is_some_and(|old| Arc::ptr_eq(old, v)));
    *map = new.into_iter().collect();
    !same
}

fn upsert<T: PartialEq>(map: &mut Map<T>, key: Key, v: Arc<T>) -> bool {
    if map.get(&key).is_some_and(|old| *old == v) {
        return false;
    }
    map.insert(key, v);
    true
}

fn remove<T>(map: &mut Map<T>, key: &Key) -> bool {
    map.remove(key).is_some()
}

impl Store {
    /// A store that waits for the given kinds to sync.
    pub fn new(kinds: &[Kind], metrics: Option<Arc<KubeMetrics>>) -> Self {
        Self {
            objects: Objects {
                serial: now_serial(),
                mc_serial: now_serial(),
                ..Objects::default()
            },
            pending: HashMap::new(),
            synced: kinds.iter().map(|k| (*k, false)).collect(),
            metrics,
            started: std::time::Instant::now(),
        }
    }

    /// A store that starts from `last`, the view a previous store of the same source published:
    /// while the new watchers relist, `last` stays the view (a relist replaces a kind's map only
    /// when complete), and a synced view stays synced. From an unsynced view, as [`Store::new`].
    pub fn resume(kinds: &[Kind], metrics: Option<Arc<KubeMetrics>>, last: &Objects) -> Self {
        let mut store = Self::new(kinds, metrics);
        if last.synced {
            store.objects = last.clone();
            store.synced.values_mut().for_each(|s| *s = true);
        }
        store
    }

    /// The current view.
    pub fn objects(&self) -> &Objects {
        &self.objects
    }

    /// Applies one change; true if the view changed (and should be published).
    pub fn apply(&mut self, change: Change) -> bool {
        let changed = match change {
            Change::Init(kind) => {
                self.pending.insert(kind, Pending::default());
                None
            }
            Change::InitApply(obj) => {
                // An object equal to the live one keeps the live allocation (key and value), so
                // a relist holds one copy of what did not change, not two.
                let p = self.pending.entry(obj.kind()).or_default();
                let o = &self.objects;
                match obj {
                    Obj::Service(k, v) => drop(p.services.insert_kept(&o.services, k, v)),
                    Obj::Slice(k, v) => drop(p.slices.insert_kept(&o.slices, k, v)),
                    Obj::Namespace(k) => {
                        drop(p.namespaces.insert_kept(&o.namespaces, k, Arc::new(())))
                    }
                    Obj::Pod(k, v) => drop(p.pods.insert_kept(&o.pods, k, v)),
                    Obj::Import(k, v) => drop(p.imports.insert_kept(&o.imports, k, v)),
                    Obj::McSlice(k, v) => drop(p.mc_slices.insert_kept(&o.mc_slices, k, v)),
                }
                None
            }
            Change::InitDone(kind) => {
                let p = self.pending.remove(&kind).unwrap_or_default();
                let o = &mut self.objects;
                let changed = match kind {
                    Kind::Service => replace(&mut o.services, p.services),
                    Kind::EndpointSlice => replace(&mut o.slices, p.slices),
                    Kind::Namespace => replace(&mut o.namespaces, p.namespaces),
                    Kind::Pod => replace(&mut o.pods, p.pods),
                    Kind::ServiceImport => replace(&mut o.imports, p.imports),
                    Kind::McSlice => replace(&mut o.mc_slices, p.mc_slices),
                };
                let was_synced = self.objects.synced;
                self.synced.insert(kind, true);
                self.objects.synced = self.synced.values().all(|s| *s);
                if self.objects.synced && !was_synced {
                    if let Some(m) = &self.metrics {
                        m.sync_seconds.set(self.started.elapsed().as_secs_f64());
                    }
                }
                (changed || self.objects.synced != was_synced).then_some(kind)
            }
            Change::Apply(obj) => {
                self.observe_programming(&obj);
                let kind = obj.kind();
                let o = &mut self.objects;
                let changed = match obj {
                    Obj::Service(k, v) => upsert(&mut o.services, k, v),
                    Obj::Slice(k, v) => upsert(&mut o.slices, k, v),
                    Obj::Namespace(k) => upsert(&mut o.namespaces, k, Arc::new(())),
                    Obj::Pod(k, v) => upsert(&mut o.pods, k, v),
                    Obj::Import(k, v) => upsert(&mut o.imports, k, v),
                    Obj::McSlice(k, v) => upsert(&mut o.mc_slices, k, v),
                };
                changed.then_some(kind)
            }
            Change::Delete(obj) => {
                let o = &mut self.objects;
                let changed = match &obj {
                    Obj::Service(k, _) => remove(&mut o.services, k),
                    Obj::Slice(k, _) => remove(&mut o.slices, k),
                    Obj::Namespace(k) => remove(&mut o.namespaces, k),
                    Obj::Pod(k, _) => remove(&mut o.pods, k),
                    Obj::Import(k, _) => remove(&mut o.imports, k),
                    Obj::McSlice(k, _) => remove(&mut o.mc_slices, k),
                };
                changed.then_some(obj.kind())
            }
        };
        let Some(kind) = changed else {
            return false;
        };
        let now = now_serial();
        let (cluster, mc) = kind.zones();
        if cluster {
            self.objects.serial = next_serial(self.objects.serial, now);
        }
        if mc {
            self.objects.mc_serial = next_serial(self.objects.mc_serial, now);
        }
        if let Some(m) = &self.metrics {
            let o = &self.objects;
            let mut counts = vec![
                (Kind::Service, o.services.len()),
                (Kind::EndpointSlice, o.slices.len()),
                (Kind::Namespace, o.namespaces.len()),
                (Kind::Pod, o.pods.len()),
            ];
            // The multicluster kinds only where they are watched.
            if self.synced.contains_key(&Kind::ServiceImport) {
                counts.push((Kind::ServiceImport, o.imports.len()));
                counts.push((Kind::McSlice, o.mc_slices.len()));
            }
            for (kind, n) in counts {
                m.objects
                    .with_label_values(&[kind.as_str()])
                    .set(i64::try_from(n).unwrap_or(i64::MAX));
            }
        }
        true
    }

    /// `coredns_kubernetes_dns_programming_duration_seconds`: from the slice's trigger time to
    /// now, for slices of exactly one known Service.
    fn observe_programming(&self, obj: &Obj) {
        let (Some(m), Obj::Slice(_, es)) = (&self.metrics, obj) else {
            return;
        };
        let Some(t) = es.trigger_time else { return };
        let key = (es.namespace.clone(), es.service.clone());
        let Some(svc) = self.objects.services.get(&key) else {
            return;
        };
        let kind = match svc.kind {
            ServiceKind::Headless => "headless_with_selector",
            ServiceKind::ClusterIp(_) => "cluster_ip",
            ServiceKind::ExternalName(_) => return,
        };
        let now = k8s_openapi::jiff::Timestamp::now();
        if let Ok(d) = now.duration_since(t).try_into() {
            let d: std::time::Duration = d;
            m.programming
                .with_label_values(&[kind])
                .observe(d.as_secs_f64());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kube::model::Port;

    fn svc(name: &str, ip: &str) -> Obj {
        let key: Key = (Arc::from("ns1"), Arc::from(name));
        Obj::Service(
            key,
            Arc::new(Service {
                namespace: Arc::from("ns1"),
                name: Arc::from(name),
                kind: ServiceKind::ClusterIp(vec![ip.parse().unwrap()]),
                ports: vec![Port {
                    name: Arc::from(""),
                    protocol: Arc::from(""),
                    port: -1,
                }],
                external_ips: vec![],
                external_hostnames: Box::default(),
            }),
        )
    }

    #[test]
    fn relist_replaces_atomically_and_sync_waits_for_every_kind() {
        let mut s = Store::new(&[Kind::Service, Kind::Namespace], None);
        assert!(!s.apply(Change::Init(Kind::Service)));
        assert!(!s.apply(Change::InitApply(svc("a", "10.0.0.1"))));
        assert!(s.objects().services.is_empty(), "nothing before InitDone");
        assert!(s.apply(Change::InitDone(Kind::Service)));
        assert_eq!(s.objects().services.len(), 1);
        assert!(!s.objects().synced);
        s.apply(Change::Init(Kind::Namespace));
        assert!(s.apply(Change::InitDone(Kind::Namespace)));
        assert!(s.objects().synced);

        // A relist that drops `a` and adds `b`: the old view stays until InitDone.
        s.apply(Change::Init(Kind::Service));
        s.apply(Change::InitApply(svc("b", "10.0.0.2")));
        assert!(
            s.objects()
                .services
                .contains_key(&(Arc::from("ns1"), Arc::from("a")))
        );
        assert!(s.apply(Change::InitDone(Kind::Service)));
        let keys: Vec<_> = s.objects().services.keys().map(|k| k.1.clone()).collect();
        assert_eq!(keys, [Arc::from("b")]);

        // The same object again is not a change; a modified one is.
        assert!(!s.apply(Change::Apply(svc("b", "10.0.0.2"))));
        assert!(s.apply(Change::Apply(svc("b", "10.0.0.3"))));
        assert!(s.apply(Change::Delete(svc("b", "0.0.0.0"))));
        assert!(!s.apply(Change::Delete(svc("b", "0.0.0.0"))));
    }

    #[test]
    fn every_change_makes_a_newer_serial_of_its_zones() {
        let mut s = Store::new(&[Kind::Service, Kind::ServiceImport], None);
        let (serial, mc) = (s.objects().serial, s.objects().mc_serial);
        // Three changes within one second: each serial is newer than the one before.
        assert!(s.apply(Change::Apply(svc("a", "10.0.0.1"))));
        assert!(s.apply(Change::Apply(svc("a", "10.0.0.2"))));
        assert!(s.apply(Change::Apply(svc("a", "10.0.0.3"))));
        assert!(s.objects().serial.wrapping_sub(serial) >= 3);
        assert_eq!(
            s.objects().mc_serial,
            mc,
            "a Service is not in the multicluster zones"
        );
        let imp = match svc("a", "10.0.0.1") {
            Obj::Service(k, v) => Obj::Import(k, v),
            _ => unreachable!(),
        };
        let before = s.objects().serial;
        assert!(s.apply(Change::Apply(imp)));
        assert_eq!(s.objects().serial, before);
        assert_ne!(s.objects().mc_serial, mc);
        // Serial arithmetic (RFC 1982): a clock far behind, or a wrap, still moves forward.
        assert_eq!(next_serial(100, 50), 101);
        assert_eq!(next_serial(100, 100), 101);
        assert_eq!(next_serial(100, 200), 200);
        assert_eq!(next_serial(u32::MAX, 5), 5);
        assert_eq!(next_serial(u32::MAX, u32::MAX), 0);
    }
}
