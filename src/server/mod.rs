//! The server: build every block's chain (no sockets), then start the HTTP listeners, then the
//! DNS listeners (UDP and TCP on hickory-server), and shut down with lameduck on SIGTERM.

mod dispatch;
mod http;
mod transport;

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, UdpSocket};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{Config, Host};
use crate::corefile::Error as ConfigError;
use crate::plugins::prometheus::Metrics;
use crate::plugins::ready::{Monitor, Readiness};
use crate::plugins::{self, BuildCtx, Chain, PluginConfig, Services};
use dispatch::{Block, Dispatcher, Router};

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
    zones: HashMap<String, Arc<Block>>,
    any_class: bool,
    any_metrics: bool,
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
                    });
                plan.zones.insert(k.zone.clone(), block.clone());
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

/// A running server.
pub struct Running {
    dns_stop: CancellationToken,
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
}

/// Binds UDP and TCP on the same port (an ephemeral port is chosen by UDP first).
async fn bind_pair(ip: IpAddr, port: u16) -> std::io::Result<(UdpSocket, TcpListener)> {
    let mut last_err = None;
    for _ in 0..20 {
        let udp = UdpSocket::bind(SocketAddr::new(ip, port)).await?;
        let p = udp.local_addr()?.port();
        match TcpListener::bind(SocketAddr::new(ip, p)).await {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(e) if port == 0 => last_err = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last_err.unwrap_or_else(|| std::io::Error::other("no free port")))
}

/// Starts HTTP listeners, then DNS listeners.
pub async fn start(
    mut built: Built,
    metrics: Arc<Metrics>,
    readiness: Arc<Readiness>,
) -> Result<Running, ServerError> {
    let http_stop = CancellationToken::new();
    let state = http::HttpState {
        readiness: readiness.clone(),
        monitor: built.monitor,
        metrics: metrics.clone(),
    };
    let mut http_addrs = BTreeMap::new();
    for (addr, routes) in &built.services.http {
        let local = http::serve(addr, routes.clone(), state.clone(), http_stop.clone())
            .await
            .map_err(|source| ServerError::Listen {
                addr: addr.clone(),
                source,
            })?;
        http_addrs.insert(addr.clone(), local);
    }
    // Plugins start (and the kubernetes plugin waits for its first sync) before DNS listens.
    let starters = std::mem::take(&mut built.services.starters.0);
    futures_util::future::try_join_all(starters.into_iter().map(|s| s(readiness.clone())))
        .await
        .map_err(ServerError::Start)?;
    let dns_stop = CancellationToken::new();
    let tracker = TaskTracker::new();
    let mut dns_addrs = Vec::new();
    let mut bound = BTreeMap::new();
    for ((host, port), plan) in built.listeners {
        let pair = match host {
            Host::Ip(ip) => bind_pair(ip, port).await,
            Host::Any => match bind_pair(IpAddr::V6(Ipv6Addr::UNSPECIFIED), port).await {
                Ok(p) => Ok(p),
                Err(_) => bind_pair(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port).await,
            },
        };
        let (udp, tcp) = pair.map_err(|source| ServerError::Listen {
            addr: format!("{host}:{port}"),
            source,
        })?;
        let local = udp.local_addr().map_err(|source| ServerError::Listen {
            addr: format!("{host}:{port}"),
            source,
        })?;
        let dispatcher = Dispatcher {
            label: Arc::from(label(host, port)),
            local,
            router: Arc::new(Router { zones: plan.zones }),
            any_class: plan.any_class,
            metrics: metrics.clone(),
            any_metrics: plan.any_metrics,
        };
        let dispatcher = Arc::new(dispatcher);
        transport::serve_udp(udp, dispatcher.clone(), dns_stop.clone(), tracker.clone());
        transport::serve_tcp(tcp, dispatcher, dns_stop.clone(), tracker.clone());
        dns_addrs.push(local);
        bound.insert((host, port), local);
    }
    for hook in std::mem::take(&mut built.services.on_listen) {
        if let Some(addr) = bound.get(&hook.listener) {
            (hook.hook)(*addr);
        }
    }
    Ok(Running {
        dns_stop,
        tracker,
        dns_addrs,
        http_addrs,
        readiness,
        lameduck: built.services.lameduck,
        http_stop,
    })
}

impl Running {
    /// SIGTERM behaviour: `/ready` goes 503 at once, DNS keeps answering for the lameduck
    /// duration, then the listeners close (in-flight queries get up to 5 s).
    pub async fn shutdown(self) {
        self.readiness.shut_down();
        if !self.lameduck.is_zero() {
            tracing::info!(target: "plugin/health", "Going into lameduck mode for {:?}", self.lameduck);
            tokio::time::sleep(self.lameduck).await;
        }
        // Stop reading; queries already read get up to 5 s to be answered.
        self.dns_stop.cancel();
        self.tracker.close();
        let _ = tokio::time::timeout(Duration::from_secs(5), self.tracker.wait()).await;
        self.http_stop.cancel();
    }
}
