//! The Kubernetes side: connect, watch, trim, publish. No DNS here — `plugins/kubernetes`
//! turns the published [`Objects`] into its index.
//!
//! A source ([`start`]) is either the API (kube-rs watchers for Services, EndpointSlices,
//! Namespaces and, when asked, Pods) or a snapshot file. Either way one task owns a [`Store`]
//! and publishes an immutable [`Objects`] after each batch of changes on a watch channel.

mod backoff;
pub mod metrics;
pub mod model;
mod selector;
pub mod shards;
mod snapshot;
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
        k
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
            let client = watch::client(connect, metrics.clone()).await?;
            watch::spawn(client, spec, metrics, tx, stop);
        }
    }
    Ok(rx)
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
