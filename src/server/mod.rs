//! The server: build every block's chain (no sockets), then start the HTTP listeners, then the
//! DNS listeners (UDP on a reader thread per CPU, TCP on tokio), and shut down with lameduck on
//! SIGTERM.

mod dispatch;
mod encrypted;
mod http;
mod limits;
pub(crate) mod panics;
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
use crate::corefile::Transport;
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
    listeners: BTreeMap<ListenKey, ListenerPlan>,
    services: Services,
    monitor: Monitor,
    /// Lines CoreDNS prints at start-up (`.:53`, `example.org.:1053 on 127.0.0.1`).
    pub banner: Vec<String>,
}

/// A listener: transport (scheme), host, port.
type ListenKey = (Transport, Host, u16);

struct ListenerPlan {
    /// Zone → its blocks in Corefile order (several only with `view`).
    zones: HashMap<Arc<str>, Vec<Arc<Block>>>,
    any_class: bool,
    any_metrics: bool,
    /// TCP limits: CoreDNS's defaults, then each block's `timeouts` in file order (a later
    /// block's setting wins, as in CoreDNS's `NewServer`).
    limits: ConnLimits,
    /// The `tls` of the blocks on a `tls://` or `https://` listener (CoreDNS: the last one's).
    tls: Option<Arc<rustls::ServerConfig>>,
    /// `https { max_connections }` of a DoH listener (0: unbounded).
    max_connections: usize,
}

/// Builds every block: handlers, chains, listener plan. Fails on the first block that does not
/// build; opens nothing.
pub fn build(config: &Config, metrics: &Arc<Metrics>) -> Result<Built, ConfigError> {
    let mut services = Services::default();
    let mut monitor = Monitor::UntilReady;
    let mut listeners: BTreeMap<ListenKey, ListenerPlan> = BTreeMap::new();
    let mut banner = Vec::new();
    for b in &config.blocks {
        let zones = b.zones();
        let hosts = b.hosts();
        let kube = b.plugins.iter().find_map(|p| match p {
            PluginConfig::Kubernetes(c) => Some(plugins::kubernetes::KubeHandle::new(c)),
            _ => None,
        });
        let tls = b
            .plugins
            .iter()
            .find_map(|p| match p {
                PluginConfig::Tls(c) => Some(plugins::tls::server_config(c, Some(b.loc.clone()))),
                _ => None,
            })
            .transpose()?;
        let https = b.plugins.iter().find_map(|p| match p {
            PluginConfig::Https(h) => Some(*h),
            _ => None,
        });
        let mut handlers = Vec::new();
        let mut dnstap = None;
        let zone_sources = plugins::zone_source::ZoneSources::default();
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
                dnstap: &mut dnstap,
                zone_sources: zone_sources.clone(),
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
        let view = b.plugins.iter().find_map(|p| match p {
            PluginConfig::View(v) => Some(Arc::new(plugins::view::ViewFilter::new(v))),
            _ => None,
        });
        let block = Arc::new(Block {
            chain: chain.clone(),
            metrics: has_metrics,
            view,
            or_else: None,
        });
        for host in b.hosts() {
            for k in &b.keys {
                let plan = listeners
                    .entry((k.transport, host, k.port))
                    .or_insert_with(|| ListenerPlan {
                        zones: HashMap::new(),
                        any_class: false,
                        any_metrics: false,
                        limits: ConnLimits::DNS,
                        tls: None,
                        max_connections: plugins::https::DEFAULT_MAX_CONNECTIONS,
                    });
                if let Some(t) = timeouts {
                    plan.limits = plan.limits.with_timeouts(t);
                }
                if let Some(h) = https {
                    plan.max_connections = h.max_connections;
                }
                if let Some(cfg) = &tls {
                    plan.tls = listener_tls(k.transport, cfg);
                }
                plan.zones
                    .entry(Arc::from(k.zone.as_str()))
                    .or_default()
                    .push(block.clone());
                plan.any_metrics |= has_metrics;
                plan.any_class |= chain
                    .names()
                    .iter()
                    .any(|n| *n == "forward" || *n == "chaos");
                let scheme = match k.transport {
                    Transport::Dns => String::new(),
                    t => format!("{t}://"),
                };
                let line = match host {
                    Host::Any => format!("{scheme}{}:{}", k.zone, k.port),
                    Host::Ip(_) => format!("{scheme}{}:{} on {host}", k.zone, k.port),
                };
                if !banner.contains(&line) {
                    banner.push(line);
                }
                if has_metrics {
                    for name in chain.names() {
                        metrics
                            .plugin_enabled
                            .with_label_values(&[
                                &label(k.transport, host, k.port),
                                &k.zone,
                                "",
                                name,
                            ])
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
            for b in plan.zones.get_mut(zone).into_iter().flatten() {
                *b = Arc::new(Block {
                    chain: chain.clone(),
                    ..(**b).clone()
                });
            }
        }
    }
}

/// The `server` metric label: `SCHEME://[HOST]:PORT`, e.g. `dns://:53`, `tls://127.0.0.1:853`.
fn label(transport: Transport, host: Host, port: u16) -> String {
    format!("{transport}://{host}:{port}")
}

/// A block's TLS configuration as a listener of `transport` serves it: DoH offers HTTP/2 and
/// HTTP/1.1 by ALPN (CoreDNS's `NextProtos`); plain DNS listeners take none.
fn listener_tls(
    transport: Transport,
    cfg: &rustls::ServerConfig,
) -> Option<Arc<rustls::ServerConfig>> {
    match transport {
        Transport::Dns => None,
        Transport::Tls => Some(Arc::new(cfg.clone())),
        Transport::Https => {
            let mut cfg = cfg.clone();
            cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
            Some(Arc::new(cfg))
        }
    }
}

/// One open DNS listener. Dropping it stops its readers.
struct Listener {
    dispatcher: Arc<Dispatcher>,
    stop: CancellationToken,
    local: SocketAddr,
    /// The TLS configuration of a `tls://`/`https://` listener (swapped by a reload).
    tls: encrypted::TlsSlot,
}

impl Drop for Listener {
    fn drop(&mut self) {
        // UDP readers are threads, not tasks: they outlive a dropped runtime unless told.
        self.stop.cancel();
    }
}

/// A running server.
pub struct Running {
    listeners: BTreeMap<ListenKey, Listener>,
    tracker: TaskTracker,
    /// Bound plain DNS addresses, one per `dns://` listener (UDP and TCP share the port).
    pub dns_addrs: Vec<SocketAddr>,
    /// Every bound listener with its transport (`dns://`, `tls://`, `https://`).
    pub addrs: Vec<(Transport, SocketAddr)>,
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

/// Binds TCP alone (`tls://`, `https://`).
fn bind_stream(ip: IpAddr, port: u16) -> std::io::Result<TcpListener> {
    let tcp = std::net::TcpListener::bind(SocketAddr::new(ip, port))?;
    tcp.set_nonblocking(true)?;
    TcpListener::from_std(tcp)
}

/// The sockets of one new listener.
enum Opened {
    /// UDP readers' sockets and TCP.
    Dns(Vec<std::net::UdpSocket>, TcpListener),
    /// TCP for an encrypted transport.
    Stream(TcpListener),
}

fn open(transport: Transport, ip: IpAddr, port: u16) -> std::io::Result<Opened> {
    match transport {
        Transport::Dns => bind_pair(ip, port).map(|(u, t)| Opened::Dns(u, t)),
        Transport::Tls | Transport::Https => bind_stream(ip, port).map(Opened::Stream),
    }
}

/// Starts HTTP listeners, then the plugins' start-up work, then DNS listeners.
pub async fn start(
    built: Built,
    metrics: Arc<Metrics>,
    readiness: Arc<Readiness>,
) -> Result<Running, ServerError> {
    // Panics the listeners catch are reported by them, without the standard hook's backtrace.
    panics::install();
    let http_state = http::HttpState {
        readiness: readiness.clone(),
        monitor: built.monitor,
        metrics: metrics.clone(),
    };
    let mut running = Running {
        listeners: BTreeMap::new(),
        tracker: TaskTracker::new(),
        dns_addrs: Vec::new(),
        addrs: Vec::new(),
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
    // A zone's blocks become a list the dispatcher walks: each block with a view points to the
    // next one for the zone.
    let zones: HashMap<Arc<str>, Arc<Block>> = plan
        .zones
        .into_iter()
        .filter_map(|(zone, blocks)| {
            let first = blocks.into_iter().rev().fold(None, |rest, b| {
                Some(match rest {
                    None => b,
                    rest => Arc::new(Block {
                        or_else: rest,
                        ..(*b).clone()
                    }),
                })
            })?;
            Some((zone, first))
        })
        .collect();
    let views = zones
        .values()
        .any(|b| b.view.is_some() || b.or_else.is_some());
    Arc::new(Router {
        zones,
        any_class: plan.any_class,
        any_metrics: plan.any_metrics,
        views,
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
                built.services.http_tls.get(addr).cloned(),
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
            tracker: self.tracker.clone(),
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
        for &(transport, host, port) in built.listeners.keys() {
            if self.listeners.contains_key(&(transport, host, port)) {
                continue;
            }
            let sockets = match host {
                Host::Ip(ip) => open(transport, ip, port),
                Host::Any => match open(transport, IpAddr::V6(Ipv6Addr::UNSPECIFIED), port) {
                    Ok(p) => Ok(p),
                    Err(_) => open(transport, IpAddr::V4(Ipv4Addr::UNSPECIFIED), port),
                },
            };
            let sockets = match sockets {
                Ok(p) => p,
                Err(source) => {
                    generation.cancel();
                    return Err(ServerError::Listen {
                        addr: format!("{host}:{port}"),
                        source,
                    });
                }
            };
            opened.insert((transport, host, port), sockets);
        }
        let mut keep = BTreeMap::new();
        for (key, mut plan) in std::mem::take(&mut built.listeners) {
            let (scheme, host, port) = key;
            if scheme != Transport::Dns && plan.tls.is_none() {
                tracing::warn!(
                    "{scheme}://{host}:{port} has no 'tls' directive: serving it unencrypted"
                );
            }
            let tls = plan.tls.take();
            let max_connections = plan.max_connections;
            let router = router(plan);
            if let Some(l) = self.listeners.remove(&key) {
                l.dispatcher.router.store(router);
                l.tls.store(tls);
                keep.insert(key, l);
                continue;
            }
            let Some(sockets) = opened.remove(&key) else {
                continue;
            };
            let listen_err = |source| ServerError::Listen {
                addr: format!("{host}:{port}"),
                source,
            };
            let local = match &sockets {
                Opened::Dns(udp, _) => udp[0].local_addr(),
                Opened::Stream(tcp) => tcp.local_addr(),
            }
            .map_err(listen_err)?;
            let dispatcher = Arc::new(Dispatcher {
                label: Arc::from(label(scheme, host, port)),
                local,
                router: arc_swap::ArcSwap::new(router),
                metrics: self.metrics.clone(),
                children: Default::default(),
            });
            let stop = CancellationToken::new();
            let tls: encrypted::TlsSlot = Arc::new(arc_swap::ArcSwapOption::new(tls));
            let (d, t) = (dispatcher.clone(), self.tracker.clone());
            match (scheme, sockets) {
                (_, Opened::Dns(udp, tcp)) => {
                    transport::serve_udp(udp, d.clone(), stop.clone(), t.clone())
                        .map_err(listen_err)?;
                    transport::serve_tcp(tcp, d, stop.clone(), t);
                }
                (Transport::Https, Opened::Stream(tcp)) => {
                    let max = (max_connections > 0).then_some(max_connections);
                    encrypted::serve_https(tcp, d, tls.clone(), max, stop.clone(), t);
                }
                (_, Opened::Stream(tcp)) => {
                    encrypted::serve_tls(tcp, d, tls.clone(), stop.clone(), t);
                }
            }
            keep.insert(
                key,
                Listener {
                    dispatcher,
                    stop,
                    local,
                    tls,
                },
            );
        }
        // Listeners the new configuration no longer names.
        for (_, l) in std::mem::replace(&mut self.listeners, keep) {
            l.stop.cancel();
        }
        self.dns_addrs = self
            .listeners
            .iter()
            .filter(|(k, _)| k.0 == Transport::Dns)
            .map(|(_, l)| l.local)
            .collect();
        self.addrs = self.listeners.iter().map(|(k, l)| (k.0, l.local)).collect();
        if staged {
            self.readiness.adopt(&readiness);
        }
        self.readiness.serving();
        std::mem::replace(&mut self.generation, generation).cancel();
        self.lameduck = built.services.lameduck;
        for hook in std::mem::take(&mut built.services.on_listen) {
            let (host, port) = hook.listener;
            if let Some(l) = self.listeners.get(&(Transport::Dns, host, port)) {
                (hook.hook)(l.local);
            }
        }
        Ok(())
    }

    /// Answers one raw query as the first listener would over UDP, without the socket (for
    /// micro-benchmarks of the answer path: bytes in, bytes out). `None` for a datagram that
    /// gets no reply.
    pub async fn answer(&self, raw: Vec<u8>, src: SocketAddr) -> Option<Vec<u8>> {
        let l = self
            .listeners
            .iter()
            .find(|(k, _)| k.0 == Transport::Dns)
            .map(|(_, l)| l)?;
        transport::reply(
            &l.dispatcher,
            raw,
            src,
            hickory_server::net::xfer::Protocol::Udp,
        )
        .await
    }

    /// [`Running::answer`] on the fast path only (`crate::plugins::fast`): `None` when the
    /// query needs the general path. For tests and benchmarks.
    pub fn answer_fast(&self, raw: &[u8], src: SocketAddr) -> Option<Vec<u8>> {
        let l = self.listeners.values().next()?;
        transport::reply_fast(&l.dispatcher, raw, src)
    }

    /// [`Running::answer`] without the fast path (`crate::plugins::fast`): every query
    /// decoded and answered by the chains' handlers, for tests and benchmarks that compare the
    /// two.
    pub async fn answer_general(&self, raw: Vec<u8>, src: SocketAddr) -> Option<Vec<u8>> {
        let l = self.listeners.values().next()?;
        transport::reply_general(
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
