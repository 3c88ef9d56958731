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
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client, Config};
use tokio::sync::watch;

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

/// Connects (no request is made yet) with the request metrics layer.
pub async fn client(connect: &Connect, metrics: Arc<KubeMetrics>) -> Result<Client, KubeError> {
    let mut cfg = config(connect).await?;
    let host: Arc<str> = Arc::from(cfg.cluster_url.authority().map_or("", |a| a.as_str()));
    cfg.read_timeout = None; // watches are long-lived; the server ends them (timeoutSeconds)
    let builder =
        kube::client::ClientBuilder::try_from(cfg).map_err(|e| KubeError::Config(e.to_string()))?;
    Ok(builder.with_layer(&MetricsLayer { metrics, host }).build())
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
            tracing::warn!(target: "plugin/kubernetes", "watch {}: {e}", kind.as_str());
            None
        }
    }))
}

fn key(ns: &Arc<str>, name: &Arc<str>) -> model::Key {
    (ns.clone(), name.clone())
}

/// Starts the watches and the store task; the receiver gets every new view. The store starts
/// from the view `tx` holds, so a task started again after a panic keeps answering from the last
/// view while its new watchers relist.
pub fn spawn(
    client: Client,
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
    if spec.endpoints {
        let pod_names = spec.pod_names;
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
                model::endpoint_slice(e, pod_names)
                    .map(|e| Obj::Slice(key(&e.namespace, &e.name), Arc::new(e)))
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
    tokio::spawn(async move {
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
