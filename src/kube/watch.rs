//! The API source: one kube-runtime watcher per kind, merged into one store task.
//!
//! kube-runtime's watcher lists, then watches from the list's resourceVersion; on 410 Gone or a
//! broken stream it relists (after the back-off in [`super::backoff`]), which arrives here as
//! `Init … InitDone` and replaces the kind's map atomically in the [`Store`].

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use futures_util::future::BoxFuture;
use futures_util::{FutureExt, Stream, StreamExt, stream};
use k8s_openapi::api::core::v1 as core;
use k8s_openapi::api::discovery::v1 as discovery;
use kube::api::{ApiResource, DynamicObject};
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client, Config};
use tokio::sync::watch;
use tracing::Instrument;

use super::backoff::{self, Revive};
use super::metrics::KubeMetrics;
use super::model;
use super::store::{Change, Kind, Obj, Objects, Store};
use super::{Connect, KubeError, WatchSpec};

/// Builds the client configuration for `connect`.
async fn config(connect: &Connect) -> Result<Config, KubeError> {
    match connect {
        Connect::Infer => Config::infer().await.map_err(|e| {
            KubeError::Config(format!(
                "unable to load in-cluster configuration, KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT must be defined ({e})"
            ))
        }),
        Connect::Endpoint { url, tls } => {
            let uri = url
                .parse()
                .map_err(|e| KubeError::Config(format!("invalid endpoint {url}: {e}")))?;
            let mut c = Config::new(uri);
            if let Some(t) = tls {
                c.auth_info.client_certificate = Some(t.cert.display().to_string());
                c.auth_info.client_key = Some(t.key.display().to_string());
                c.root_cert = Some(pem_certs(&t.ca)?);
                c.root_cert_file = Some(t.ca.clone());
            }
            Ok(c)
        }
        Connect::Kubeconfig { path, context } => {
            let kc = kube::config::Kubeconfig::read_from(path)
                .map_err(|e| KubeError::Config(format!("kubeconfig {}: {e}", path.display())))?;
            let opts = kube::config::KubeConfigOptions {
                context: context.clone(),
                ..Default::default()
            };
            Config::from_custom_kubeconfig(kc, &opts)
                .await
                .map_err(|e| KubeError::Config(format!("kubeconfig {}: {e}", path.display())))
        }
    }
}

/// The DER certificates of a PEM CA bundle.
fn pem_certs(path: &std::path::Path) -> Result<Vec<Vec<u8>>, KubeError> {
    use rustls_pki_types::pem::PemObject;
    let certs = rustls_pki_types::CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| KubeError::Config(format!("CA {}: {e}", path.display())))?;
    Ok(certs.into_iter().map(|c| c.to_vec()).collect())
}

/// Connects (no request is made yet) with the request metrics layer; also returns the API's URL.
pub async fn client(
    connect: &Connect,
    metrics: Arc<KubeMetrics>,
) -> Result<(Client, String), KubeError> {
    let mut cfg = config(connect).await?;
    // The API's CA comes from the kubeconfig, the service account or `tls`; with none (a plain
    // HTTP API, or a kubeconfig that skips verification) kube-client would load the system's
    // roots for TLS it never does, and fail in an image without a CA bundle ("No CA
    // certificates were loaded from the system"). An empty root store builds without them.
    if cfg.root_cert.is_none()
        && (cfg.accept_invalid_certs || cfg.cluster_url.scheme_str() == Some("http"))
    {
        cfg.root_cert = Some(Vec::new());
    }
    let url = cfg.cluster_url.to_string();
    let host: Arc<str> = Arc::from(cfg.cluster_url.authority().map_or("", |a| a.as_str()));
    cfg.read_timeout = None; // watches are long-lived; the server ends them (timeoutSeconds)
    let builder =
        kube::client::ClientBuilder::try_from(cfg).map_err(|e| KubeError::Config(e.to_string()))?;
    Ok((
        builder.with_layer(&MetricsLayer { metrics, host }).build(),
        url.trim_end_matches('/').to_string(),
    ))
}

type ChangeStream = Pin<Box<dyn Stream<Item = Option<Change>> + Send>>;

fn lift<K, F>(
    kind: Kind,
    events: impl Stream<Item = watcher::Result<Event<K>>> + Send + 'static,
    trim: F,
) -> ChangeStream
where
    K: Send + 'static,
    F: Fn(&K) -> Option<Obj> + Send + 'static,
{
    Box::pin(events.map(move |ev| match ev {
        Ok(Event::Init) => Some(Change::Init(kind)),
        Ok(Event::InitDone) => Some(Change::InitDone(kind)),
        Ok(Event::InitApply(o)) => trim(&o).map(Change::InitApply),
        Ok(Event::Apply(o)) => trim(&o).map(Change::Apply),
        Ok(Event::Delete(o)) => trim(&o).map(Change::Delete),
        Err(e) => {
            report(kind, &e);
            None
        }
    }))
}

/// multicluster.x-k8s.io/v1alpha1 ServiceImport (MCS API).
pub fn service_import_resource() -> ApiResource {
    ApiResource {
        group: "multicluster.x-k8s.io".into(),
        version: "v1alpha1".into(),
        api_version: "multicluster.x-k8s.io/v1alpha1".into(),
        kind: "ServiceImport".into(),
        plural: "serviceimports".into(),
    }
}

/// Logs a failed list or watch as client-go's reflector words it (CoreDNS's lines), with the
/// whole cause chain; the span the source runs in adds the API's URL, and the log formatter
/// holds back repeats faster than the back-off.
fn report(kind: Kind, e: &watcher::Error) {
    let what = match kind {
        Kind::Service => "*v1.Service",
        Kind::EndpointSlice => "*v1.EndpointSlice",
        Kind::Namespace => "*v1.Namespace",
        Kind::Pod => "*v1.Pod",
        Kind::ServiceImport => "*v1alpha1.ServiceImport",
        Kind::McSlice => "*v1.EndpointSlice",
    };
    let cause = crate::logging::chain(e);
    match e {
        watcher::Error::WatchError(_) | watcher::Error::WatchFailed(_) => {
            tracing::warn!(target: "plugin/kubernetes", "watch of {what} ended with: {cause}")
        }
        _ => tracing::error!(target: "plugin/kubernetes", "Failed to watch {what}: {cause}"),
    }
}

fn key(ns: &Arc<str>, name: &Arc<str>) -> model::Key {
    (ns.clone(), name.clone())
}

/// Starts the watches and the store task; the receiver gets every new view. The store starts
/// from the view `tx` holds, so a task started again after a panic keeps answering from the last
/// view while its new watchers relist. The task runs in a `plugin/kubernetes` span naming the
/// API (`api`): every line it logs, ours or kube's, hyper's and rustls's while it polls their
/// requests, is the kubernetes plugin's and names the API.
pub fn spawn(
    client: Client,
    api: &str,
    spec: &WatchSpec,
    metrics: Arc<KubeMetrics>,
    tx: watch::Sender<Arc<Objects>>,
    stop: tokio_util::sync::CancellationToken,
) -> tokio::task::JoinHandle<()> {
    let mut cfg = watcher::Config::default();
    if let Some(l) = &spec.labels {
        cfg = cfg.labels(l.as_str());
    }
    // One back-off shared by the kinds: when one watcher hears from the API again, all retry.
    let revive = Revive::new();
    let mut kinds = vec![Kind::Service, Kind::Namespace];
    let mut streams: Vec<ChangeStream> = Vec::new();
    streams.push(lift(
        Kind::Service,
        backoff::bounded(
            watcher::watcher(Api::<core::Service>::all(client.clone()), cfg.clone()),
            &revive,
        ),
        |s| model::service(s).map(|s| Obj::Service(key(&s.namespace, &s.name), Arc::new(s))),
    ));
    let mut ns_cfg = watcher::Config::default();
    if let Some(l) = &spec.namespace_labels {
        ns_cfg = ns_cfg.labels(l.as_str());
    }
    streams.push(lift(
        Kind::Namespace,
        backoff::bounded(
            watcher::watcher(Api::<core::Namespace>::all(client.clone()), ns_cfg),
            &revive,
        ),
        |n| model::namespace(n).map(|n| Obj::Namespace((Arc::from(""), n))),
    ));
    let opts = spec.slice_opts();
    if spec.endpoints {
        kinds.push(Kind::EndpointSlice);
        streams.push(lift(
            Kind::EndpointSlice,
            backoff::bounded(
                watcher::watcher(
                    Api::<discovery::EndpointSlice>::all(client.clone()),
                    cfg.clone(),
                ),
                &revive,
            ),
            move |e| {
                model::endpoint_slice(e, opts)
                    .map(|e| Obj::Slice(key(&e.namespace, &e.name), Arc::new(e)))
            },
        ));
    }
    if spec.multicluster {
        // Only started with `multicluster`: the ServiceImports (a CRD of the MCS API, read as
        // dynamic objects) and the EndpointSlices that carry the multicluster service label.
        kinds.push(Kind::ServiceImport);
        kinds.push(Kind::McSlice);
        let imports = Api::<DynamicObject>::all_with(client.clone(), &service_import_resource());
        streams.push(lift(
            Kind::ServiceImport,
            backoff::bounded(watcher::watcher(imports, cfg.clone()), &revive),
            |o| {
                model::service_import(o)
                    .map(|s| Obj::Import(key(&s.namespace, &s.name), Arc::new(s)))
            },
        ));
        let mc_label = match &spec.labels {
            Some(l) => format!("{},{}", l.as_str(), model::MC_SERVICE_NAME_LABEL),
            None => model::MC_SERVICE_NAME_LABEL.to_string(),
        };
        streams.push(lift(
            Kind::McSlice,
            backoff::bounded(
                watcher::watcher(
                    Api::<discovery::EndpointSlice>::all(client.clone()),
                    watcher::Config::default().labels(&mc_label),
                ),
                &revive,
            ),
            move |e| {
                model::mc_endpoint_slice(e, opts)
                    .map(|e| Obj::McSlice(key(&e.namespace, &e.name), Arc::new(e)))
            },
        ));
    }
    if spec.pods {
        kinds.push(Kind::Pod);
        let pod_cfg = cfg
            .clone()
            .fields("status.phase!=Succeeded,status.phase!=Failed,status.phase!=Unknown");
        streams.push(lift(
            Kind::Pod,
            backoff::bounded(
                watcher::watcher(Api::<core::Pod>::all(client), pod_cfg),
                &revive,
            ),
            // A pod that starts terminating, or loses its IP, leaves the view.
            |p| match model::pod(p) {
                Some(p) => Some(Obj::Pod(key(&p.namespace, &p.name), Arc::new(p))),
                None => {
                    let ns = Arc::from(p.metadata.namespace.as_deref().unwrap_or(""));
                    let name = Arc::from(p.metadata.name.as_deref()?);
                    Some(Obj::Pod(
                        (Arc::clone(&ns), Arc::clone(&name)),
                        Arc::new(model::Pod {
                            namespace: ns,
                            name,
                            ip: Arc::from(""),
                        }),
                    ))
                }
            },
        ));
    }
    let mut store = Store::resume(&kinds, Some(metrics), &tx.borrow());
    spawn_in(api, async move {
        let mut merged = stream::select_all(streams);
        loop {
            let first = tokio::select! {
                _ = stop.cancelled() => return,
                next = merged.next() => match next {
                    Some(c) => c,
                    None => return,
                },
            };
            let mut changed = apply(&mut store, first);
            // Take whatever else is ready now, then publish once.
            while let Some(Some(next)) = merged.next().now_or_never() {
                changed |= apply(&mut store, next);
            }
            if changed && tx.send(Arc::new(store.objects().clone())).is_err() {
                return; // nobody reads any more (the plugin was dropped)
            }
        }
    })
}

/// `tokio::spawn` in a `plugin/kubernetes` span naming the API.
fn spawn_in<F>(api: &str, task: F) -> tokio::task::JoinHandle<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    tokio::spawn(task.instrument(tracing::error_span!(
        target: "plugin/kubernetes",
        "plugin/kubernetes",
        api = %api
    )))
}

fn apply(store: &mut Store, change: Option<Change>) -> bool {
    match change {
        // A pod without an IP is removed rather than kept with an empty one.
        Some(Change::Apply(Obj::Pod(k, p))) if p.ip.is_empty() => {
            store.apply(Change::Delete(Obj::Pod(k, p)))
        }
        Some(Change::InitApply(Obj::Pod(_, p))) if p.ip.is_empty() => false,
        Some(c) => store.apply(c),
        None => false,
    }
}

/// Counts API requests by status code, method and host (CoreDNS's client-go metrics).
#[derive(Clone)]
struct MetricsLayer {
    metrics: Arc<KubeMetrics>,
    host: Arc<str>,
}

impl<S> tower::Layer<S> for MetricsLayer {
    type Service = MetricsService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        MetricsService {
            inner,
            metrics: self.metrics.clone(),
            host: self.host.clone(),
        }
    }
}

#[derive(Clone)]
struct MetricsService<S> {
    inner: S,
    metrics: Arc<KubeMetrics>,
    host: Arc<str>,
}

impl<S, B, RB> tower::Service<http::Request<B>> for MetricsService<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<RB>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let method = req.method().to_string();
        let verb = if req.uri().query().is_some_and(|q| q.contains("watch=")) {
            "WATCH"
        } else {
            method.as_str()
        }
        .to_string();
        let (metrics, host) = (self.metrics.clone(), self.host.clone());
        let start = Instant::now();
        let fut = self.inner.call(req);
        Box::pin(async move {
            let res = fut.await;
            let code = match &res {
                Ok(r) => r.status().as_u16().to_string(),
                Err(_) => "<error>".to_string(),
            };
            metrics
                .requests
                .with_label_values(&[code.as_str(), method.as_str(), &host])
                .inc();
            metrics
                .request_duration
                .with_label_values(&[verb.as_str(), &host])
                .observe(start.elapsed().as_secs_f64());
            res
        })
    }
}
