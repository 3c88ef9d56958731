//! The Kubernetes side: connect, watch, trim, publish. No DNS here — `plugins/kubernetes`
//! turns the published [`Objects`] into its index.
//!
//! A source ([`start`]) is either the API (kube-rs watchers for Services, EndpointSlices,
//! Namespaces and, when asked, Pods, ServiceImports and multicluster EndpointSlices) or a
//! snapshot file. Either way one task owns a [`Store`]
//! and publishes an immutable [`Objects`] after each batch of changes on a watch channel.

mod backoff;
pub mod metrics;
pub mod model;
mod selector;
pub mod shards;
pub(crate) mod snapshot;
pub mod store;
mod watch;

use std::path::PathBuf;
use std::sync::Arc;

pub use metrics::KubeMetrics;
pub use selector::LabelSelector;
pub use store::{Kind, Objects, Store};

/// Errors of the API side.
#[derive(Debug, thiserror::Error)]
pub enum KubeError {
    /// The client could not be configured.
    #[error("{0}")]
    Config(String),
    /// The snapshot file could not be read.
    #[error("snapshot {0}")]
    Snapshot(String),
}

/// Client certificate, key and CA for `tls CERT KEY CACERT`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TlsFiles {
    /// Client certificate (PEM).
    pub cert: PathBuf,
    /// Client key (PEM).
    pub key: PathBuf,
    /// CA bundle (PEM).
    pub ca: PathBuf,
}

/// How to reach the API.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Connect {
    /// kube-rs inference: in-cluster service account, then `KUBECONFIG`/`~/.kube/config`.
    Infer,
    /// `endpoint URL` (+ `tls`).
    Endpoint {
        /// The API server URL.
        url: String,
        /// Client TLS files.
        tls: Option<TlsFiles>,
    },
    /// `kubeconfig PATH [CONTEXT]`.
    Kubeconfig {
        /// The kubeconfig file.
        path: PathBuf,
        /// The context (default: current-context).
        context: Option<String>,
    },
}

/// Where objects come from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Source {
    /// A Kubernetes API server.
    Api(Connect),
    /// A YAML/JSON dump, re-read when it changes.
    Snapshot(PathBuf),
}

/// What to watch, and how.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct WatchSpec {
    /// The source.
    pub source: Source,
    /// `labels`: selects Services, EndpointSlices and Pods.
    pub labels: Option<LabelSelector>,
    /// `namespace_labels`: selects Namespaces.
    pub namespace_labels: Option<LabelSelector>,
    /// Watch EndpointSlices (not with `noendpoints`).
    pub endpoints: bool,
    /// Watch Pods (`pods verified`).
    pub pods: bool,
    /// Keep endpoints' pod names (only `endpoint_pod_names` answers with them).
    pub pod_names: bool,
    /// Keep endpoints' topology zones (only `zonal` answers with them).
    pub zones: bool,
    /// Watch ServiceImports and multicluster EndpointSlices (`multicluster`).
    pub multicluster: bool,
}

impl WatchSpec {
    /// The kinds this spec watches.
    pub fn kinds(&self) -> Vec<Kind> {
        let mut k = vec![Kind::Service, Kind::Namespace];
        if self.endpoints {
            k.push(Kind::EndpointSlice);
        }
        if self.pods {
            k.push(Kind::Pod);
        }
        if self.multicluster {
            k.push(Kind::ServiceImport);
            k.push(Kind::McSlice);
        }
        k
    }

    /// What to keep of each EndpointSlice.
    pub fn slice_opts(&self) -> model::SliceOpts {
        model::SliceOpts {
            pod_names: self.pod_names,
            zones: self.zones,
        }
    }
}

impl std::hash::Hash for LabelSelector {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

/// Starts the source; every new view arrives on the returned receiver (the first one, empty
/// and unsynced for the API, at once).
/// The source's tasks end when `stop` is cancelled.
pub async fn start(
    spec: &WatchSpec,
    metrics: Arc<KubeMetrics>,
    stop: tokio_util::sync::CancellationToken,
) -> Result<tokio::sync::watch::Receiver<Arc<Objects>>, KubeError> {
    let (tx, rx) = tokio::sync::watch::channel(Arc::new(Objects::default()));
    match &spec.source {
        Source::Snapshot(path) => snapshot::spawn(path.clone(), spec, metrics, tx, stop).await?,
        Source::Api(connect) => {
            let (client, api) = watch::client(connect, metrics.clone()).await?;
            start_api(client, api, spec, metrics, tx, stop);
        }
    }
    Ok(rx)
}

/// The API source's store task, kept running: see [`supervise`].
fn start_api(
    client: kube::Client,
    api: String,
    spec: &WatchSpec,
    metrics: Arc<KubeMetrics>,
    tx: tokio::sync::watch::Sender<Arc<Objects>>,
    stop: tokio_util::sync::CancellationToken,
) {
    let spec = spec.clone();
    let panics = metrics.panics.clone();
    supervise(
        move || {
            watch::spawn(
                client.clone(),
                &api,
                &spec,
                metrics.clone(),
                tx.clone(),
                stop.clone(),
            )
        },
        panics,
    );
}

/// The first wait before a task that panicked is started again; it doubles with each panic in
/// a row, up to [`RESTART_MAX`].
const RESTART_FIRST: std::time::Duration = std::time::Duration::from_millis(500);
const RESTART_MAX: std::time::Duration = std::time::Duration::from_secs(30);

/// Runs the task `spawn` starts and, when it ends in a panic (a bug in trimming an object, in
/// the store or in kube-runtime), logs it, counts it in `coredns_panics_total` and starts it
/// again: for the API source that is new watchers relisting every kind into a store that
/// starts from the last published view, so answers never stop and nothing the panic lost
/// stays lost. A task that ends without a panic (stopped, or nobody reads) is not restarted.
fn supervise(
    mut spawn: impl FnMut() -> tokio::task::JoinHandle<()> + Send + 'static,
    panics: prometheus::IntCounter,
) {
    tokio::spawn(async move {
        let mut wait = RESTART_FIRST;
        loop {
            let started = tokio::time::Instant::now();
            match spawn().await {
                Err(e) if e.is_panic() => {
                    let p = e.into_panic();
                    let what = p
                        .downcast_ref::<&str>()
                        .map(|s| s.to_string())
                        .or_else(|| p.downcast_ref::<String>().cloned())
                        .unwrap_or_else(|| "unknown panic".into());
                    std::mem::forget(p);
                    tracing::error!(target: "plugin/kubernetes", "Recovered from panic in the watch task: {what}; restarting it");
                    panics.inc();
                    // A panic after a good while of work is not part of a streak.
                    if started.elapsed() > RESTART_MAX * 2 {
                        wait = RESTART_FIRST;
                    }
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(RESTART_MAX);
                }
                _ => return,
            }
        }
    });
}

/// A running source, shared by every configuration that watches the same thing. Its tasks stop
/// when the last user drops it.
pub struct Shared {
    /// The published views.
    pub rx: tokio::sync::watch::Receiver<Arc<Objects>>,
    stop: tokio_util::sync::CancellationToken,
}

impl Drop for Shared {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// The sources of the process, by what they watch: a reload whose `kubernetes` block watches
/// the same objects gets the running source (and its synced objects) instead of a new one.
#[derive(Default)]
pub struct Sources {
    running: std::sync::Mutex<std::collections::HashMap<WatchSpec, std::sync::Weak<Shared>>>,
}

impl Sources {
    /// The running source for `spec`, or a new one.
    pub async fn get_or_start(
        &self,
        spec: &WatchSpec,
        metrics: Arc<KubeMetrics>,
    ) -> Result<Arc<Shared>, KubeError> {
        if let Some(s) = self
            .running
            .lock()
            .expect("sources lock")
            .get(spec)
            .and_then(std::sync::Weak::upgrade)
        {
            return Ok(s);
        }
        let stop = tokio_util::sync::CancellationToken::new();
        let rx = start(spec, metrics, stop.clone()).await?;
        let shared = Arc::new(Shared { rx, stop });
        let mut running = self.running.lock().expect("sources lock");
        running.retain(|_, w| w.strong_count() > 0);
        running.insert(spec.clone(), Arc::downgrade(&shared));
        Ok(shared)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    use bytes::Bytes;
    use futures_util::future::BoxFuture;
    use http_body_util::Full;

    use super::*;

    /// The API server as kube's client sees it, inside the client's own transport (its tower
    /// service): lists Services and Namespaces, and answers a watch once a Service is added. When
    /// armed, the response future of the next Service watch panics — polled, as every response
    /// future is, by the watch task itself.
    #[derive(Clone, Default)]
    struct FakeApi {
        services: Arc<Mutex<Vec<(String, String)>>>,
        version: Arc<tokio::sync::watch::Sender<u64>>,
        panic_next_watch: Arc<AtomicBool>,
    }

    fn service(name: &str, ip: &str, rv: u64) -> serde_json::Value {
        serde_json::json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": "ns1", "resourceVersion": rv.to_string()},
            "spec": {"type": "ClusterIP", "clusterIP": ip, "clusterIPs": [ip],
                     "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}
        })
    }

    impl tower::Service<http::Request<kube::client::Body>> for FakeApi {
        type Response = http::Response<Full<Bytes>>;
        type Error = std::convert::Infallible;
        type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

        fn poll_ready(
            &mut self,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Result<(), Self::Error>> {
            std::task::Poll::Ready(Ok(()))
        }

        fn call(&mut self, req: http::Request<kube::client::Body>) -> Self::Future {
            let api = self.clone();
            let path = req.uri().path().to_string();
            let watch = req.uri().query().is_some_and(|q| q.contains("watch=true"));
            Box::pin(async move {
                let rv = *api.version.borrow();
                let body = match (path.as_str(), watch) {
                    ("/api/v1/services", false) => {
                        let items: Vec<_> = api
                            .services
                            .lock()
                            .unwrap()
                            .iter()
                            .map(|(n, ip)| service(n, ip, rv))
                            .collect();
                        serde_json::json!({"apiVersion": "v1", "kind": "ServiceList",
                            "metadata": {"resourceVersion": rv.to_string()}, "items": items})
                        .to_string()
                    }
                    ("/api/v1/namespaces", false) => serde_json::json!({
                        "apiVersion": "v1", "kind": "NamespaceList",
                        "metadata": {"resourceVersion": rv.to_string()},
                        "items": [{"apiVersion": "v1", "kind": "Namespace",
                                   "metadata": {"name": "ns1", "resourceVersion": "1"}}]})
                    .to_string(),
                    ("/api/v1/services", true) => {
                        // Wait for the next change, then send it as one ADDED event.
                        let mut rx = api.version.subscribe();
                        let _ = tokio::time::timeout(Duration::from_secs(30), rx.changed()).await;
                        if api.panic_next_watch.swap(false, Ordering::SeqCst) {
                            panic!("injected: a panic in the watch task");
                        }
                        let rv = *rx.borrow();
                        let last = api.services.lock().unwrap().last().cloned();
                        let (n, ip) = last.unwrap_or_default();
                        format!(
                            "{}\n",
                            serde_json::json!({"type": "ADDED", "object": service(&n, &ip, rv)})
                        )
                    }
                    _ => {
                        // Nothing else changes: hold the watch open.
                        tokio::time::sleep(Duration::from_secs(30)).await;
                        String::new()
                    }
                };
                Ok(http::Response::new(Full::new(Bytes::from(body))))
            })
        }
    }

    fn has(o: &Objects, name: &str) -> bool {
        o.services
            .contains_key(&(Arc::from("ns1"), Arc::from(name)))
    }

    /// A panic in the watch task (here in the API client's response future, which that task
    /// polls) is counted, the last view keeps being served, and the task starts again: its new
    /// watchers relist and the change the panic swallowed arrives.
    #[tokio::test]
    async fn a_panic_in_the_watch_task_is_counted_and_the_source_recovers() {
        let api = FakeApi::default();
        api.services
            .lock()
            .unwrap()
            .push(("a".into(), "10.96.0.5".into()));
        let client = kube::Client::new(api.clone(), "default");
        let registry = prometheus::Registry::new();
        let panics = prometheus::IntCounter::new("coredns_panics_total", "panics").unwrap();
        let metrics = Arc::new(KubeMetrics::new(&registry, panics.clone()).unwrap());
        let spec = WatchSpec {
            source: Source::Api(Connect::Infer),
            labels: None,
            namespace_labels: None,
            endpoints: false,
            pods: false,
            pod_names: false,
            zones: false,
            multicluster: false,
        };
        let (tx, mut rx) = tokio::sync::watch::channel(Arc::new(Objects::default()));
        let stop = tokio_util::sync::CancellationToken::new();
        start_api(
            client,
            "http://fake".into(),
            &spec,
            metrics,
            tx,
            stop.clone(),
        );
        let first = tokio::time::timeout(
            Duration::from_secs(10),
            rx.wait_for(|o| o.synced && has(o, "a")),
        )
        .await
        .expect("first sync")
        .unwrap()
        .clone();
        drop(first);

        api.panic_next_watch.store(true, Ordering::SeqCst);
        api.services
            .lock()
            .unwrap()
            .push(("b".into(), "10.96.0.6".into()));
        api.version.send_modify(|v| *v += 1);
        // Every view published from now on is whole: synced, with `a`; `b` arrives through the
        // restarted task's relist.
        let last = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                rx.changed().await.unwrap();
                let o = rx.borrow_and_update().clone();
                assert!(o.synced && has(&o, "a"), "a partial view was published");
                if has(&o, "b") {
                    return o;
                }
            }
        })
        .await
        .expect("the restarted watch task never published the new Service");
        assert_eq!(last.services.len(), 2);
        assert_eq!(panics.get(), 1);
        stop.cancel();
    }

    #[test]
    fn a_resumed_store_keeps_a_synced_view_through_its_relist() {
        use super::model::{Port, Service, ServiceKind};
        use super::store::{Change, Obj};
        let svc = |name: &str| {
            Obj::Service(
                (Arc::from("ns1"), Arc::from(name)),
                Arc::new(Service {
                    namespace: Arc::from("ns1"),
                    name: Arc::from(name),
                    kind: ServiceKind::ClusterIp(vec!["10.96.0.5".parse().unwrap()]),
                    ports: vec![Port {
                        name: Arc::from(""),
                        protocol: Arc::from("TCP"),
                        port: 80,
                    }],
                    external_ips: vec![],
                    external_hostnames: Box::default(),
                }),
            )
        };
        let kinds = [Kind::Service, Kind::Namespace];
        let mut s = Store::new(&kinds, None);
        for k in kinds {
            s.apply(Change::Init(k));
        }
        s.apply(Change::InitApply(svc("a")));
        for k in kinds {
            s.apply(Change::InitDone(k));
        }
        assert!(s.objects().synced);
        let mut r = Store::resume(&kinds, None, s.objects());
        assert!(r.objects().synced && r.objects().services.len() == 1);
        r.apply(Change::Init(Kind::Service));
        r.apply(Change::InitApply(svc("b")));
        assert_eq!(r.objects().services.len(), 1, "the old view until InitDone");
        assert!(r.apply(Change::InitDone(Kind::Service)));
        assert!(r.objects().synced);
        assert!(
            r.objects()
                .services
                .contains_key(&(Arc::from("ns1"), Arc::from("b")))
        );
        let fresh = Store::resume(&kinds, None, &Objects::default());
        assert!(!fresh.objects().synced);
    }
}
