//! The server: build every block's chain (no sockets), then start the HTTP listeners, then the
//! DNS listeners (UDP on a reader thread per CPU, TCP on tokio), and shut down with lameduck on
//! SIGTERM.

mod dispatch;
mod http;
mod limits;
mod transport;

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{Config, Host};
use crate::corefile::Error as ConfigError;
use crate::plugins::prometheus::Metrics;
use crate::plugins::ready::{Monitor, Readiness};
use crate::plugins::{self, BuildCtx, Chain, PluginConfig, Services, StartCtx};
use dispatch::{Block, Dispatcher, Router};
pub use limits::{
    Admission, Admitted, ConnLimits, DEFAULT_MAX_CONNECTIONS, nofile_soft, raise_nofile,
};

/// Errors while starting.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// A block failed to build.
    #[error("{0}")]
    Build(#[from] ConfigError),
    /// A plugin could not start (e.g. no Kubernetes API configuration).
    #[error("{0}")]
    Start(String),
    /// A listener could not be opened.
    #[error("listen {addr}: {source}")]
    Listen {
        /// The address.
        addr: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// The result of the build phase: chains and the services they need, no sockets yet.
pub struct Built {
    listeners: BTreeMap<(Host, u16), ListenerPlan>,
    services: Services,
    monitor: Monitor,
    /// Lines CoreDNS prints at start-up (`.:53`, `example.org.:1053 on 127.0.0.1`).
    pub banner: Vec<String>,
}

struct ListenerPlan {
    zones: HashMap<Arc<str>, Arc<Block>>,
    any_class: bool,
    any_metrics: bool,
    /// TCP limits: CoreDNS's defaults, then each block's `timeouts` in file order (a later
    /// block's setting wins, as in CoreDNS's `NewServer`).
    limits: ConnLimits,
}

/// Builds every block: handlers, chains, listener plan. Fails on the first block that does not
/// build; opens nothing.
pub fn build(config: &Config, metrics: &Arc<Metrics>) -> Result<Built, ConfigError> {
    let mut services = Services::default();
    let mut monitor = Monitor::UntilReady;
    let mut listeners: BTreeMap<(Host, u16), ListenerPlan> = BTreeMap::new();
    let mut banner = Vec::new();
    for b in &config.blocks {
        let zones = b.zones();
        let hosts = b.hosts();
        let kube = b.plugins.iter().find_map(|p| match p {
            PluginConfig::Kubernetes(c) => Some(plugins::kubernetes::KubeHandle::new(c)),
            _ => None,
        });
        let mut handlers = Vec::new();
        for p in &b.plugins {
            if let PluginConfig::Ready(r) = p {
                monitor = r.monitor;
            }
            let mut ctx = BuildCtx {
                zones: &zones,
                hosts: &hosts,
                listener: (
                    hosts.first().copied().unwrap_or(Host::Any),
                    b.keys.first().map_or(53, |k| k.port),
                ),
                kubernetes: kube.clone(),
                loc: Some(b.loc.clone()),
                services: &mut services,
                metrics,
            };
            if let Some(h) = plugins::build(p, &mut ctx)? {
                handlers.push(h);
            }
        }
        let has_metrics = b
            .plugins
            .iter()
            .any(|p| matches!(p, PluginConfig::Prometheus(_)));
        let chain = Chain::new(handlers);
        let timeouts = b.plugins.iter().find_map(|p| match p {
            PluginConfig::Timeouts(t) => Some(t),
            _ => None,
        });
        let block = Arc::new(Block {
            chain: chain.clone(),
            metrics: has_metrics,
        });
        for host in b.hosts() {
            for k in &b.keys {
                let plan = listeners
                    .entry((host, k.port))
                    .or_insert_with(|| ListenerPlan {
                        zones: HashMap::new(),
                        any_class: false,
                        any_metrics: false,
                        limits: ConnLimits::DNS,
                    });
                if let Some(t) = timeouts {
                    plan.limits = plan.limits.with_timeouts(t);
                }
                plan.zones.insert(Arc::from(k.zone.as_str()), block.clone());
                plan.any_metrics |= has_metrics;
                plan.any_class |= chain
                    .names()
                    .iter()
                    .any(|n| *n == "forward" || *n == "chaos");
                let line = match host {
                    Host::Any => format!("{}:{}", k.zone, k.port),
                    Host::Ip(_) => format!("{}:{} on {host}", k.zone, k.port),
                };
                if !banner.contains(&line) {
                    banner.push(line);
                }
                if has_metrics {
                    for name in chain.names() {
                        metrics
                            .plugin_enabled
                            .with_label_values(&[&label(host, k.port), &k.zone, "", name])
                            .set(1);
                    }
                }
            }
        }
    }
    Ok(Built {
        listeners,
        services,
        monitor,
        banner,
    })
}

impl Built {
    /// Replaces the chain that answers `zone` on every listener (for embedding and tests).
    pub fn set_chain(&mut self, zone: &str, chain: Chain) {
        for plan in self.listeners.values_mut() {
            if let Some(b) = plan.zones.get_mut(zone) {
                *b = Arc::new(Block {
                    chain: chain.clone(),
                    metrics: b.metrics,
                });
            }
        }
    }
}

fn label(host: Host, port: u16) -> String {
    format!("dns://{host}:{port}")
}

/// One open DNS listener. Dropping it stops its readers.
struct Listener {
    dispatcher: Arc<Dispatcher>,
    stop: CancellationToken,
    local: SocketAddr,
}

impl Drop for Listener {
    fn drop(&mut self) {
        // UDP readers are threads, not tasks: they outlive a dropped runtime unless told.
        self.stop.cancel();
    }
}

/// A running server.
pub struct Running {
    listeners: BTreeMap<(Host, u16), Listener>,
    tracker: TaskTracker,
    /// Bound DNS addresses, one per listener (UDP and TCP share the port).
    pub dns_addrs: Vec<SocketAddr>,
    /// Bound HTTP addresses by configured address.
    pub http_addrs: BTreeMap<String, SocketAddr>,
    /// The readiness set `/ready` reports.
    pub readiness: Arc<Readiness>,
    /// Lameduck duration (from `health`).
    pub lameduck: Duration,
    http_stop: CancellationToken,
    http_state: http::HttpState,
    metrics: Arc<Metrics>,
    /// Stops the running configuration's background tasks (watches, file checks).
    generation: CancellationToken,
    /// Kubernetes sources, reused by a reload that watches the same objects.
    sources: Arc<crate::kube::Sources>,
}

/// Binds UDP (one socket per reader) and TCP on the same port (an ephemeral port is chosen by
/// UDP first).
fn bind_pair(ip: IpAddr, port: u16) -> std::io::Result<(Vec<std::net::UdpSocket>, TcpListener)> {
    let mut last_err = None;
    for _ in 0..20 {
        let udp = transport::bind_udp(SocketAddr::new(ip, port), transport::udp_readers())?;
        let p = udp[0].local_addr()?.port();
        let tcp = transport::bind_tcp(SocketAddr::new(ip, p))
            .and_then(|t| t.set_nonblocking(true).map(|()| t))
            .and_then(TcpListener::from_std);
        match tcp {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(e) if port == 0 => last_err = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last_err.unwrap_or_else(|| std::io::Error::other("no free port")))
}

/// Starts HTTP listeners, then the plugins' start-up work, then DNS listeners.
pub async fn start(
    built: Built,
    metrics: Arc<Metrics>,
    readiness: Arc<Readiness>,
) -> Result<Running, ServerError> {
    let http_state = http::HttpState {
        readiness: readiness.clone(),
        monitor: built.monitor,
        metrics: metrics.clone(),
    };
    let mut running = Running {
        listeners: BTreeMap::new(),
        tracker: TaskTracker::new(),
        dns_addrs: Vec::new(),
        http_addrs: BTreeMap::new(),
        readiness,
        lameduck: Duration::ZERO,
        http_stop: CancellationToken::new(),
        http_state,
        metrics,
        generation: CancellationToken::new(),
        sources: Arc::default(),
    };
    running.apply(built, false).await?;
    Ok(running)
}

fn router(plan: ListenerPlan) -> Arc<Router> {
    Arc::new(Router {
        zones: plan.zones,
        any_class: plan.any_class,
        any_metrics: plan.any_metrics,
        limits: plan.limits,
    })
}

impl Running {
    /// Makes `built` the running configuration: opens HTTP listeners it adds, runs its
    /// starters (with `staged`, their readiness probes count only once they succeeded), opens
    /// listeners it adds, swaps every kept listener's router atomically, closes listeners it
    /// drops, and stops the previous configuration's background tasks. On error nothing
    /// changes for the running configuration.
    async fn apply(&mut self, mut built: Built, staged: bool) -> Result<(), ServerError> {
        for (addr, routes) in &built.services.http {
            if self.http_addrs.contains_key(addr) {
                continue;
            }
            let local = http::serve(
                addr,
                routes.clone(),
                self.http_state.clone(),
                self.http_stop.clone(),
            )
            .await
            .map_err(|source| ServerError::Listen {
                addr: addr.clone(),
                source,
            })?;
            self.http_addrs.insert(addr.clone(), local);
        }
        // Plugins start (the kubernetes plugin waits for its first sync) before DNS listens.
        let readiness = if staged {
            Arc::new(Readiness::default())
        } else {
            self.readiness.clone()
        };
        let generation = CancellationToken::new();
        let starters = std::mem::take(&mut built.services.starters.0);
        let ctx = StartCtx {
            readiness: readiness.clone(),
            stop: generation.clone(),
            sources: self.sources.clone(),
        };
        if let Err(e) =
            futures_util::future::try_join_all(starters.into_iter().map(|s| s(ctx.clone()))).await
        {
            generation.cancel();
            return Err(ServerError::Start(e));
        }
        // Bind what is new before touching anything that runs.
        let mut opened = BTreeMap::new();
        for &(host, port) in built.listeners.keys() {
            if self.listeners.contains_key(&(host, port)) {
                continue;
            }
            let pair = match host {
                Host::Ip(ip) => bind_pair(ip, port),
                Host::Any => match bind_pair(IpAddr::V6(Ipv6Addr::UNSPECIFIED), port) {
                    Ok(p) => Ok(p),
                    Err(_) => bind_pair(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port),
                },
            };
            let (udp, tcp) = match pair {
                Ok(p) => p,
                Err(source) => {
                    generation.cancel();
                    return Err(ServerError::Listen {
                        addr: format!("{host}:{port}"),
                        source,
                    });
                }
            };
            opened.insert((host, port), (udp, tcp));
        }
        let mut keep = BTreeMap::new();
        for (key, plan) in std::mem::take(&mut built.listeners) {
            let (host, port) = key;
            let router = router(plan);
            if let Some(l) = self.listeners.remove(&key) {
                l.dispatcher.router.store(router);
                keep.insert(key, l);
                continue;
            }
            let Some((udp, tcp)) = opened.remove(&key) else {
                continue;
            };
            let listen_err = |source| ServerError::Listen {
                addr: format!("{host}:{port}"),
                source,
            };
            let local = udp[0].local_addr().map_err(listen_err)?;
            let dispatcher = Arc::new(Dispatcher {
                label: Arc::from(label(host, port)),
                local,
                router: arc_swap::ArcSwap::new(router),
                metrics: self.metrics.clone(),
            });
            let stop = CancellationToken::new();
            transport::serve_udp(udp, dispatcher.clone(), stop.clone(), self.tracker.clone())
                .map_err(listen_err)?;
            transport::serve_tcp(tcp, dispatcher.clone(), stop.clone(), self.tracker.clone());
            keep.insert(
                key,
                Listener {
                    dispatcher,
                    stop,
                    local,
                },
            );
        }
        // Listeners the new configuration no longer names.
        for (_, l) in std::mem::replace(&mut self.listeners, keep) {
            l.stop.cancel();
        }
        self.dns_addrs = self.listeners.values().map(|l| l.local).collect();
        if staged {
            self.readiness.adopt(&readiness);
        }
        self.readiness.serving();
        std::mem::replace(&mut self.generation, generation).cancel();
        self.lameduck = built.services.lameduck;
        for hook in std::mem::take(&mut built.services.on_listen) {
            if let Some(l) = self.listeners.get(&hook.listener) {
                (hook.hook)(l.local);
            }
        }
        Ok(())
    }

    /// Answers one raw query as the first listener would over UDP, without the socket (for
    /// micro-benchmarks of the answer path: bytes in, bytes out). `None` for a datagram that
    /// gets no reply.
    pub async fn answer(&self, raw: Vec<u8>, src: SocketAddr) -> Option<Vec<u8>> {
        let l = self.listeners.values().next()?;
        transport::reply(
            &l.dispatcher,
            raw,
            src,
            hickory_server::net::xfer::Protocol::Udp,
        )
        .await
    }

    /// Serves one DNS-over-TCP connection (length-prefixed messages, the listener's limits) on
    /// any byte stream, as the first listener would: for fuzzing and embedding.
    pub async fn serve_stream<S>(&self, stream: S, src: SocketAddr) -> std::io::Result<()>
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        let Some(l) = self.listeners.values().next() else {
            return Ok(());
        };
        transport::connection(stream, src, &l.dispatcher).await
    }

    /// Swaps in a newly built configuration (the `reload` plugin and SIGUSR1). On error the
    /// running configuration keeps serving.
    pub async fn reload(&mut self, built: Built) -> Result<(), ServerError> {
        self.apply(built, true).await
    }

    /// SIGTERM behaviour: `/ready` goes 503 at once, DNS keeps answering for the lameduck
    /// duration, then the listeners close (in-flight queries get up to 5 s).
    pub async fn shutdown(self) {
        self.readiness.shut_down();
        if !self.lameduck.is_zero() {
            tracing::info!(target: "plugin/health", "Going into lameduck mode for {:?}", self.lameduck);
            tokio::time::sleep(self.lameduck).await;
        }
        // Stop reading; queries already read get up to 5 s to be answered.
        for l in self.listeners.values() {
            l.stop.cancel();
        }
        // Ends the background tasks; the last user of a Kubernetes source stops its watches.
        self.generation.cancel();
        self.tracker.close();
        let _ = tokio::time::timeout(Duration::from_secs(5), self.tracker.wait()).await;
        self.http_stop.cancel();
    }
}
