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
            watch::spawn(client, &api, spec, metrics, tx, stop);
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

/// Gives the memory the allocator holds free back to the system: glibc keeps what a large load
/// freed (the API objects parsed and trimmed, tables outgrown) in its arenas, one per thread
/// that allocated, where no other thread reuses it. Called when the index of a new list (the
/// first, or a relist) is built. Elsewhere (musl) a no-op.
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only reads and updates glibc's own allocator state, under its locks;
    // it may be called at any time from any thread. Measured reason (bench/k8s_scale.py
    // --memory, RSS one second after ready): 100k Services with 5 endpoints each 181 -> 125
    // MiB, 10k 27.3 -> 22.9 MiB.
    unsafe {
        libc::malloc_trim(0);
    }
}
