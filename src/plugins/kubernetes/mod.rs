//! `kubernetes`: the Kubernetes DNS specification from the objects `crate::kube` watches.
//!
//! Build creates the handler over an empty, unsynced index; the start phase starts the source,
//! updates the index from every published view (off the async workers: a new version from the
//! previous one and what changed) and swaps it in whole,
//! then waits up to `startup_timeout` for the first sync before the DNS listeners open.

pub(crate) mod handler;
mod index;
mod setup;
mod xfr;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;

pub use handler::{DNS_SCHEMA_VERSION, Kubernetes, address_from_reverse};
pub use index::Index;
pub use setup::{KubernetesConfig, PodMode, parse};

use crate::config::Host;
use crate::plugins::{BuildCtx, Handler};

/// Directive name.
pub const NAME: &str = "kubernetes";

/// The non-loopback addresses a block serves on: its `bind` addresses, or every interface's.
fn local_ips(hosts: &[Host]) -> Vec<IpAddr> {
    let mut ips: Vec<IpAddr> = if hosts.iter().any(|h| matches!(h, Host::Any)) {
        if_addrs::get_if_addrs()
            .map(|v| v.into_iter().map(|i| i.ip()).collect())
            .unwrap_or_default()
    } else {
        hosts
            .iter()
            .filter_map(|h| match h {
                Host::Ip(ip) => Some(*ip),
                Host::Any => None,
            })
            .collect()
    };
    ips.retain(|ip| !ip.is_loopback());
    ips.sort();
    ips.dedup();
    ips
}

/// A block's kubernetes configuration and index, made before its handlers so that other
/// plugins of the block (`k8s_external`) can read the same index.
#[derive(Clone)]
pub struct KubeHandle {
    /// The configuration.
    pub cfg: Arc<KubernetesConfig>,
    /// The current index.
    pub index: Arc<ArcSwap<Index>>,
    /// Sent after every new index (zone transfers' NOTIFY listens).
    pub changed: Arc<tokio::sync::watch::Sender<()>>,
}

impl KubeHandle {
    /// A handle with an empty, unsynced index.
    pub fn new(cfg: &KubernetesConfig) -> Self {
        Self {
            cfg: Arc::new(cfg.clone()),
            index: Arc::new(ArcSwap::from_pointee(Index::default())),
            changed: Arc::new(tokio::sync::watch::Sender::new(())),
        }
    }
}

/// Builds the handler and registers its starter.
pub fn build(cfg: &KubernetesConfig, ctx: &mut BuildCtx<'_>) -> Arc<dyn Handler> {
    let handle = ctx
        .kubernetes
        .clone()
        .unwrap_or_else(|| KubeHandle::new(cfg));
    let (cfg, index, changed) = (handle.cfg, handle.index, handle.changed);
    let ips = local_ips(ctx.hosts);
    // The zones, for `transfer` (nothing happens unless the block has it).
    ctx.zone_sources.add(Arc::new(xfr::KubeZones {
        cfg: cfg.clone(),
        index: index.clone(),
        local_ips: ips.clone(),
        changed: changed.clone(),
    }));
    let handler = Kubernetes::new(cfg.clone(), index.clone(), ips);
    let metrics = ctx.metrics.kubernetes.clone();
    ctx.services.starters.0.push(Box::new(move |start| {
        Box::pin(async move {
            // A reload that watches the same objects shares the running source: its objects are
            // already synced, so the new index is complete at once.
            let source = start
                .sources
                .get_or_start(&cfg.watch, metrics)
                .await
                .map_err(|e| format!("plugin/kubernetes: {e}"))?;
            let mut rx = source.rx.clone();
            rx.mark_changed();
            // One thread per plugin builds every index: builds are CPU work that must not
            // stall the async workers, and a single thread keeps them in one malloc arena
            // (spawn_blocking's pool spread them over many and RSS grew with every change).
            let swap = index.clone();
            let stop = start.stop.clone();
            let runtime = tokio::runtime::Handle::current();
            std::thread::Builder::new()
                .name("kubernetes-index".into())
                .spawn(move || {
                    runtime.block_on(async move {
                        // Holding the source keeps its watches running.
                        let _source = source;
                        let mut index = Arc::new(Index::default());
                        loop {
                            let objects = rx.borrow_and_update().clone();
                            // From the previous version and what changed since.
                            index = Arc::new(index.update(&objects));
                            swap.store(index.clone());
                            changed.send_replace(());
                            drop(objects);
                            tokio::select! {
                                _ = stop.cancelled() => return,
                                r = rx.changed() => if r.is_err() { return },
                            }
                        }
                    })
                })
                .map_err(|e| format!("plugin/kubernetes: index thread: {e}"))?;
            let probe = index.clone();
            start
                .readiness
                .register(NAME, Arc::new(move || probe.load().synced));
            wait_for_sync(&index, cfg.startup_timeout).await;
            Ok(())
        })
    }));
    Arc::new(handler)
}

/// CoreDNS's start-up wait: poll every 100 ms, log every 500 ms, give up after `timeout`.
async fn wait_for_sync(index: &ArcSwap<Index>, timeout: Duration) {
    let start = Instant::now();
    let mut logged = start;
    while !index.load().synced {
        if start.elapsed() >= timeout {
            tracing::warn!(target: "plugin/kubernetes", "starting server with unsynced Kubernetes API");
            return;
        }
        if logged.elapsed() >= Duration::from_millis(500) {
            tracing::info!(target: "plugin/kubernetes", "waiting for Kubernetes API before starting server");
            logged = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
