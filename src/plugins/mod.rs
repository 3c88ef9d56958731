//! Plugins: the ORDER list (our `plugin.cfg`), typed configs, and building handlers.
//!
//! Three phases, as DEVELOPERS.md asks: [`parse`] turns a directive's tokens into a
//! [`PluginConfig`] (pure), [`build`] turns a config into a handler plus the process-wide
//! services it needs (HTTP routes, readiness probes), and the server starts those services.

pub mod acl;
pub mod any;
pub mod autopath;
pub mod bind;
pub mod cache;
pub mod chain;
pub mod chaos;
pub mod dns64;
pub mod dnstap;
pub mod errors;
pub mod etcd;
pub mod expression;
pub mod fall;
pub mod fast;
pub mod file;
pub mod forward;
pub mod header;
pub mod health;
pub mod hosts;
pub mod https;
pub mod k8s_external;
pub mod kubernetes;
pub mod loadbalance;
pub mod local;
pub mod log;
pub mod loop_detect;
pub mod metadata;
pub mod minimal;
pub mod nsid;
pub mod prometheus;
pub mod ready;
pub mod reload;
pub mod request;
pub mod response;
pub mod rewrite;
pub mod template;
pub mod timeouts;
pub mod tls;
pub mod transfer;
pub mod view;
pub mod whoami;
pub mod zone_source;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

pub use chain::{Chain, Handler, HandlerError, Next};
pub use fall::{Fall, is_subdomain, origins};
pub use request::{Proto, Request, Response};

use crate::corefile::{Directive, Dispenser, Error, Loc};

/// One entry of [`ORDER`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    /// Directive name.
    pub name: &'static str,
    /// Whether clusterdns implements it yet.
    pub built: bool,
    /// Whether CoreDNS allows it only once per server block.
    pub once: bool,
}

const fn e(name: &'static str, built: bool, once: bool) -> Entry {
    Entry { name, built, once }
}

/// Execution order of the plugins, whatever the Corefile order: CoreDNS's plugin.cfg as shipped
/// from v1.8 to v1.14.5 (what clusters run), i.e. `cache` before `rewrite` and `autopath`.
/// Directives that only configure the server (bind, health, ready, reload, …) sit where CoreDNS
/// has them; they add no handler.
pub const ORDER: &[Entry] = &[
    e("root", false, true),
    e("metadata", true, true),
    e("geoip", false, true),
    e("cancel", false, true),
    e("tls", true, true),
    e("proxyproto", false, true),
    e("quic", false, true),
    e("grpc_server", false, true),
    e("https", true, true),
    e("https3", false, true),
    e("timeouts", true, true),
    e("multisocket", false, true),
    e("reload", true, true),
    e("nsid", true, true),
    e("bufsize", false, true),
    e("bind", true, false),
    e("debug", false, true),
    e("trace", false, true),
    e("ready", true, true),
    e("health", true, true),
    e("pprof", false, true),
    e("shed", false, true),
    e("prometheus", true, true),
    e("errors", true, true),
    e("log", true, false),
    e("dnstap", true, false),
    e("local", true, true),
    e("dns64", true, true),
    e("acl", true, false),
    e("any", true, true),
    e("chaos", true, true),
    e("loadbalance", true, true),
    e("tsig", false, true),
    e("cache", true, true),
    e("rewrite", true, false),
    e("header", true, false),
    e("dnssec", false, true),
    e("autopath", true, true),
    e("minimal", true, true),
    e("template", true, false),
    e("transfer", true, false),
    e("hosts", true, true),
    e("route53", false, false),
    e("azure", false, false),
    e("clouddns", false, false),
    e("k8s_external", true, true),
    e("kubernetes", true, true),
    e("file", true, false),
    e("auto", false, false),
    e("secondary", false, false),
    e("etcd", true, true),
    e("loop", true, true),
    e("forward", true, false),
    e("grpc", false, false),
    e("erratic", false, true),
    e("whoami", true, true),
    e("on", false, false),
    e("sign", false, false),
    e("view", true, true),
    e("nomad", false, true),
];

/// The ORDER entry of a directive name.
pub fn entry(name: &str) -> Option<&'static Entry> {
    ORDER.iter().find(|e| e.name == name)
}

/// Whether `name` is a directive the Corefile may use (built or not, plus `import`).
pub fn is_directive(name: &str) -> bool {
    name == "import" || entry(name).is_some()
}

/// Plugins clusterdns implements, in chain order (`-plugins`).
pub fn built() -> impl Iterator<Item = &'static str> {
    ORDER.iter().filter(|e| e.built).map(|e| e.name)
}

/// A parsed directive: one variant per implemented plugin.
#[derive(Debug, Clone, PartialEq)]
pub enum PluginConfig {
    /// `bind`
    Bind(bind::BindConfig),
    /// `ready`
    Ready(ready::ReadyConfig),
    /// `health`
    Health(health::HealthConfig),
    /// `prometheus`
    Prometheus(prometheus::PrometheusConfig),
    /// `errors`
    Errors(errors::ErrorsConfig),
    /// `log`
    Log(log::LogConfig),
    /// `dns64`
    Dns64(dns64::Dns64Config),
    /// `any`
    Any,
    /// `loadbalance`
    LoadBalance(loadbalance::LoadBalanceConfig),
    /// `reload`
    Reload(reload::ReloadConfig),
    /// `loop`
    Loop,
    /// `cache`
    Cache(cache::CacheConfig),
    /// `forward` (every line of the block)
    Forward(Vec<forward::ForwardConfig>),
    /// `rewrite` (every line of the block)
    Rewrite(Vec<rewrite::RewriteRule>),
    /// `autopath`
    Autopath(autopath::AutopathConfig),
    /// `template` (every line of the block)
    Template(Vec<template::TemplateConfig>),
    /// `hosts`
    Hosts(hosts::HostsConfig),
    /// `k8s_external`
    K8sExternal(k8s_external::ExternalConfig),
    /// `kubernetes`
    Kubernetes(Box<kubernetes::KubernetesConfig>),
    /// `whoami`
    Whoami,
    /// `timeouts`
    Timeouts(timeouts::TimeoutsConfig),
    /// `acl` (every line of the block)
    Acl(acl::AclConfig),
    /// `header`
    Header(header::HeaderConfig),
    /// `local`
    Local(local::LocalConfig),
    /// `minimal`
    Minimal,
    /// `nsid`
    Nsid(nsid::NsidConfig),
    /// `chaos`
    Chaos(chaos::ChaosConfig),
    /// `metadata`
    Metadata(metadata::MetadataConfig),
    /// `view`
    View(view::ViewConfig),
    /// `tls`
    Tls(tls::TlsConfig),
    /// `dnstap` (every line of the block)
    Dnstap(Vec<dnstap::DnstapConfig>),
    /// `https`
    Https(https::HttpsConfig),
    /// `file` (every line of the block)
    File(file::FileConfig),
    /// `etcd`
    Etcd(Box<etcd::EtcdConfig>),
    /// `transfer` (every directive of the block)
    Transfer(Vec<transfer::XfrConfig>),
}

impl PluginConfig {
    /// The directive name.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Bind(_) => bind::NAME,
            Self::Ready(_) => ready::NAME,
            Self::Health(_) => health::NAME,
            Self::Prometheus(_) => prometheus::NAME,
            Self::Errors(_) => errors::NAME,
            Self::Log(_) => log::NAME,
            Self::Kubernetes(_) => kubernetes::NAME,
            Self::K8sExternal(_) => k8s_external::NAME,
            Self::Hosts(_) => hosts::NAME,
            Self::Template(_) => template::NAME,
            Self::Autopath(_) => autopath::NAME,
            Self::Rewrite(_) => rewrite::NAME,
            Self::Forward(_) => forward::NAME,
            Self::Cache(_) => cache::NAME,
            Self::LoadBalance(_) => loadbalance::NAME,
            Self::Any => any::NAME,
            Self::Dns64(_) => dns64::NAME,
            Self::Reload(_) => reload::NAME,
            Self::Loop => loop_detect::NAME,
            Self::Whoami => whoami::NAME,
            Self::Timeouts(_) => timeouts::NAME,
            Self::Acl(_) => acl::NAME,
            Self::Header(_) => header::NAME,
            Self::Local(_) => local::NAME,
            Self::Minimal => minimal::NAME,
            Self::Nsid(_) => nsid::NAME,
            Self::Chaos(_) => chaos::NAME,
            Self::Metadata(_) => metadata::NAME,
            Self::View(_) => view::NAME,
            Self::Tls(_) => tls::NAME,
            Self::Dnstap(_) => dnstap::NAME,
            Self::Https(_) => https::NAME,
            Self::File(_) => file::NAME,
            Self::Etcd(_) => etcd::NAME,
            Self::Transfer(_) => transfer::NAME,
        }
    }

    /// Position in [`ORDER`].
    pub fn rank(&self) -> usize {
        let name = self.name();
        ORDER
            .iter()
            .position(|e| e.name == name)
            .expect("every config is in ORDER")
    }
}

/// Parses one directive of a block whose zones are `zones` (setup, CoreDNS-style errors).
pub fn parse(dir: &Directive, zones: &[String]) -> Result<PluginConfig, Error> {
    let loc = dir.tokens.first().map(|t| t.loc.clone());
    let wrap = |e: Error| Error::plugin(&dir.name, loc.clone(), e);
    let Some(entry) = entry(&dir.name) else {
        return Err(Error::parse(
            loc,
            format!("Unknown directive '{}'", dir.name),
        ));
    };
    let occurrences = dir
        .tokens
        .iter()
        .filter(|t| t.text == dir.name && is_first(t, dir))
        .count();
    if entry.once && occurrences > 1 {
        let second = dir
            .tokens
            .iter()
            .filter(|t| is_first(t, dir))
            .nth(1)
            .map(|t| t.loc.clone());
        return Err(Error::plugin(
            &dir.name,
            second.or(loc),
            Error::plain(None, "this plugin can only be used once per Server Block"),
        ));
    }
    if !entry.built {
        return Err(wrap(Error::plain(None, "not built yet in clusterdns")));
    }
    let mut d = Dispenser::new(&dir.tokens);
    let cfg = match entry.name {
        bind::NAME => PluginConfig::Bind(bind::parse(&mut d).map_err(wrap)?),
        ready::NAME => PluginConfig::Ready(ready::parse(&mut d).map_err(wrap)?),
        health::NAME => PluginConfig::Health(health::parse(&mut d).map_err(wrap)?),
        prometheus::NAME => PluginConfig::Prometheus(prometheus::parse(&mut d).map_err(wrap)?),
        errors::NAME => PluginConfig::Errors(errors::parse(&mut d).map_err(wrap)?),
        log::NAME => PluginConfig::Log(log::parse(&mut d, zones).map_err(wrap)?),
        reload::NAME => PluginConfig::Reload(reload::parse(&mut d).map_err(wrap)?),
        dns64::NAME => PluginConfig::Dns64(dns64::parse(&mut d).map_err(wrap)?),
        any::NAME => {
            any::parse(&mut d).map_err(wrap)?;
            PluginConfig::Any
        }
        loadbalance::NAME => PluginConfig::LoadBalance(loadbalance::parse(&mut d).map_err(wrap)?),
        loop_detect::NAME => {
            loop_detect::parse(&mut d).map_err(wrap)?;
            PluginConfig::Loop
        }
        cache::NAME => PluginConfig::Cache(cache::parse(&mut d, zones).map_err(wrap)?),
        forward::NAME => PluginConfig::Forward(forward::parse(&mut d).map_err(wrap)?),
        rewrite::NAME => PluginConfig::Rewrite(rewrite::parse(&mut d).map_err(wrap)?),
        autopath::NAME => PluginConfig::Autopath(autopath::parse(&mut d, zones).map_err(wrap)?),
        template::NAME => PluginConfig::Template(template::parse(&mut d, zones).map_err(wrap)?),
        hosts::NAME => PluginConfig::Hosts(hosts::parse(&mut d, zones).map_err(wrap)?),
        k8s_external::NAME => {
            PluginConfig::K8sExternal(k8s_external::parse(&mut d, zones).map_err(wrap)?)
        }
        kubernetes::NAME => {
            PluginConfig::Kubernetes(Box::new(kubernetes::parse(&mut d, zones).map_err(wrap)?))
        }
        whoami::NAME => {
            whoami::parse(&mut d).map_err(wrap)?;
            PluginConfig::Whoami
        }
        timeouts::NAME => PluginConfig::Timeouts(timeouts::parse(&mut d).map_err(wrap)?),
        acl::NAME => PluginConfig::Acl(acl::parse(&mut d, zones).map_err(wrap)?),
        header::NAME => PluginConfig::Header(header::parse(&mut d).map_err(wrap)?),
        local::NAME => PluginConfig::Local(local::parse(&mut d).map_err(wrap)?),
        minimal::NAME => {
            minimal::parse(&mut d).map_err(wrap)?;
            PluginConfig::Minimal
        }
        nsid::NAME => PluginConfig::Nsid(nsid::parse(&mut d).map_err(wrap)?),
        chaos::NAME => PluginConfig::Chaos(chaos::parse(&mut d).map_err(wrap)?),
        metadata::NAME => PluginConfig::Metadata(metadata::parse(&mut d, zones).map_err(wrap)?),
        view::NAME => PluginConfig::View(view::parse(&mut d).map_err(wrap)?),
        tls::NAME => PluginConfig::Tls(tls::parse(&mut d).map_err(wrap)?),
        dnstap::NAME => PluginConfig::Dnstap(dnstap::parse(&mut d).map_err(wrap)?),
        https::NAME => PluginConfig::Https(https::parse(&mut d).map_err(wrap)?),
        file::NAME => PluginConfig::File(file::parse(&mut d, zones).map_err(wrap)?),
        etcd::NAME => PluginConfig::Etcd(Box::new(etcd::parse(&mut d, zones).map_err(wrap)?)),
        transfer::NAME => PluginConfig::Transfer(transfer::parse(&mut d, zones).map_err(wrap)?),
        other => unreachable!("built plugin {other} has no parse arm"),
    };
    Ok(cfg)
}

/// Whether `t` starts an occurrence of the directive (its name token, first on its line).
fn is_first(t: &crate::corefile::Token, dir: &Directive) -> bool {
    if t.text != dir.name {
        return false;
    }
    let i = dir
        .tokens
        .iter()
        .position(|x| std::ptr::eq(x, t))
        .unwrap_or(0);
    i == 0 || {
        let prev = &dir.tokens[i - 1];
        prev.loc.file != t.loc.file || prev.loc.line + prev.text.matches('\n').count() < t.loc.line
    }
}

/// An HTTP endpoint a plugin asks the process to serve.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Route {
    /// `/health` → 200 OK.
    Health,
    /// `/ready` → 200 or 503.
    Ready,
    /// `/metrics` → Prometheus text format.
    Metrics,
}

/// Something a plugin starts in the start phase, before the DNS listeners open (e.g. the
/// kubernetes watches, which also wait for the first sync). An error stops the process.
pub type Starter = Box<
    dyn FnOnce(StartCtx) -> futures_util::future::BoxFuture<'static, Result<(), String>> + Send,
>;

/// What a starter gets.
#[derive(Clone)]
pub struct StartCtx {
    /// Where to register readiness probes.
    pub readiness: Arc<ready::Readiness>,
    /// Cancelled when this configuration is replaced (reload) or the process stops: background
    /// tasks end with it.
    pub stop: tokio_util::sync::CancellationToken,
    /// Tasks that must finish their work after `stop` (a dnstap writer draining its queue):
    /// a server shutting down waits for them (up to 5 s) before it returns.
    pub tracker: tokio_util::task::TaskTracker,
    /// The process's Kubernetes sources, shared across reloads.
    pub sources: Arc<crate::kube::Sources>,
}

/// The starters of every block, in block order.
#[derive(Default)]
pub struct Starters(pub Vec<Starter>);

impl std::fmt::Debug for Starters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} starters", self.0.len())
    }
}

/// Called with the bound address of a block's first listener once it is open.
pub struct OnListen {
    /// The listener (host, port) as configured.
    pub listener: (crate::config::Host, u16),
    /// The hook.
    pub hook: Box<dyn FnOnce(std::net::SocketAddr) + Send>,
}

impl std::fmt::Debug for OnListen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "OnListen({:?})", self.listener)
    }
}

/// Process-wide things the blocks ask for; started only once every block has built.
#[derive(Debug, Default)]
pub struct Services {
    /// Run once the DNS listeners are open.
    pub on_listen: Vec<OnListen>,
    /// Run before the DNS listeners open.
    pub starters: Starters,
    /// HTTP listeners: address → routes (blocks naming the same address share one listener).
    pub http: BTreeMap<String, Vec<Route>>,
    /// How long to keep serving DNS after SIGTERM (largest `health … lameduck`).
    pub lameduck: Duration,
    /// HTTP listeners served over TLS (`prometheus { tls … }`): address → configuration.
    pub http_tls: BTreeMap<String, Arc<rustls::ServerConfig>>,
}

impl Services {
    /// Adds `route` to the listener on `addr`.
    pub fn add_route(&mut self, addr: &str, route: Route) {
        let routes = self.http.entry(addr.to_string()).or_default();
        if !routes.contains(&route) {
            routes.push(route);
        }
    }
}

/// What `build` may use: the block's zones, the process's registry and services.
pub struct BuildCtx<'a> {
    /// The block's zones.
    pub zones: &'a [String],
    /// The hosts the block listens on.
    pub hosts: &'a [crate::config::Host],
    /// The block's first listener (host, port).
    pub listener: (crate::config::Host, u16),
    /// The block's kubernetes index, when it has the plugin.
    pub kubernetes: Option<kubernetes::KubeHandle>,
    /// Where the block's directive starts (for error messages).
    pub loc: Option<Loc>,
    /// Process-wide services to start.
    pub services: &'a mut Services,
    /// The metrics of the process (one registry).
    pub metrics: &'a Arc<prometheus::Metrics>,
    /// The block's `dnstap` sinks, once built (`forward` taps its exchanges to them).
    pub dnstap: &'a mut Option<dnstap::Taps>,
    /// The block's transferable zones: plugins holding zone data add theirs, `transfer` reads.
    pub zone_sources: zone_source::ZoneSources,
}

/// Turns a config into its handler (`None` for plugins outside the query path).
pub fn build(
    cfg: &PluginConfig,
    ctx: &mut BuildCtx<'_>,
) -> Result<Option<Arc<dyn Handler>>, Error> {
    Ok(match cfg {
        PluginConfig::Bind(_) => None,
        PluginConfig::Ready(c) => {
            ctx.services.add_route(&c.addr, Route::Ready);
            None
        }
        PluginConfig::Health(c) => {
            ctx.services.add_route(&c.addr, Route::Health);
            ctx.services.lameduck = ctx.services.lameduck.max(c.lameduck);
            None
        }
        PluginConfig::Prometheus(c) => {
            ctx.services.add_route(&c.addr, Route::Metrics);
            if let Some(path) = &c.tls {
                let err = |e: String| {
                    Error::plugin(prometheus::NAME, ctx.loc.clone(), Error::plain(None, e))
                };
                if let Some(t) = prometheus::webconfig::load(path).map_err(err)? {
                    let cfg = crate::tls::server_config(&t).map_err(err)?;
                    ctx.services.http_tls.insert(c.addr.clone(), Arc::new(cfg));
                }
            }
            // Metrics are recorded by the server after the reply is encoded (sizes, rcode);
            // the handler only marks the chain position, as CoreDNS's `prometheus` does.
            Some(Arc::new(prometheus::Marker))
        }
        PluginConfig::Errors(c) => Some(Arc::new(errors::Errors::new(c.clone()))),
        PluginConfig::Log(c) => Some(Arc::new(log::Log::new(c.clone()))),
        PluginConfig::Kubernetes(c) => Some(kubernetes::build(c, ctx)),
        PluginConfig::K8sExternal(c) => Some(k8s_external::build(c, ctx)?),
        PluginConfig::Hosts(c) => Some(hosts::build(c, ctx)),
        PluginConfig::Template(c) => Some(template::build(c, ctx)),
        PluginConfig::Autopath(c) => Some(autopath::build(c, ctx)?),
        PluginConfig::Rewrite(c) => Some(rewrite::Rewrite::handler(c.clone())),
        PluginConfig::Reload(_) => None,
        PluginConfig::Dns64(c) => Some(dns64::Dns64::handler(*c, ctx.metrics.dns64.clone())),
        PluginConfig::Any => Some(Arc::new(any::Any)),
        PluginConfig::LoadBalance(c) => Some(loadbalance::build(c, ctx)?),
        PluginConfig::Loop => {
            let zone = ctx.zones.first().cloned().unwrap_or_else(|| ".".into());
            let l = Arc::new(loop_detect::Loop::new(&zone));
            let probe = l.clone();
            ctx.services.on_listen.push(OnListen {
                listener: ctx.listener,
                hook: Box::new(move |addr| {
                    tokio::spawn(probe.probe(addr));
                }),
            });
            Some(l)
        }
        PluginConfig::Cache(c) => Some(Arc::new(cache::Cache::new(
            c.clone(),
            ctx.metrics.cache.clone(),
        ))),
        PluginConfig::Forward(c) => Some(forward::build(c, ctx)?),
        PluginConfig::Whoami => Some(Arc::new(whoami::Whoami)),
        // Applied by the server to the listener's connection limits.
        PluginConfig::Timeouts(_) => None,
        PluginConfig::Acl(c) => Some(Arc::new(acl::Acl::new(c, ctx.metrics.acl.clone()))),
        PluginConfig::Header(c) => Some(Arc::new(header::Header::new(c.clone()))),
        PluginConfig::Local(c) => Some(Arc::new(local::Local::new(*c, ctx.metrics.local.clone()))),
        PluginConfig::Minimal => Some(Arc::new(minimal::Minimal)),
        PluginConfig::Nsid(c) => Some(Arc::new(nsid::Nsid::new(c))),
        PluginConfig::Chaos(c) => Some(Arc::new(chaos::Chaos::new(c.clone()))),
        PluginConfig::Metadata(c) => Some(Arc::new(metadata::Metadata::new(c))),
        PluginConfig::View(c) => Some(Arc::new(view::View::new(c))),
        // The server reads it when it opens the block's tls:// and https:// listeners.
        PluginConfig::Tls(_) | PluginConfig::Https(_) => None,
        PluginConfig::Dnstap(c) => {
            let taps = dnstap::taps(c, ctx);
            *ctx.dnstap = Some(taps.clone());
            Some(Arc::new(dnstap::Dnstap::new(taps)))
        }
        PluginConfig::File(c) => Some(file::build(c, ctx)?),
        PluginConfig::Etcd(c) => Some(etcd::build(c, ctx)?),
        PluginConfig::Transfer(c) => Some(transfer::build(c, ctx)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_has_unique_names_and_built_plugins_have_readmes() {
        let mut names: Vec<_> = ORDER.iter().map(|e| e.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), ORDER.len());
        for name in built() {
            let dir = if name == "loop" { "loop_detect" } else { name };
            let readme = format!("{}/src/plugins/{dir}/README.md", env!("CARGO_MANIFEST_DIR"));
            let text = std::fs::read_to_string(&readme).unwrap_or_else(|_| panic!("{readme}"));
            for section in [
                "## Name",
                "## Description",
                "## Syntax",
                "## Examples",
                "## Compatibility",
            ] {
                assert!(text.contains(section), "{readme} lacks {section}");
            }
        }
    }

    /// The README's plugin table names every directive of ORDER (CoreDNS's plugin.cfg) in its
    /// first column, with a status.
    #[test]
    fn readme_plugin_table_lists_every_plugin() {
        let readme =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
        let table = readme
            .split("## Plugins")
            .nth(1)
            .and_then(|t| t.split("\n## ").next())
            .unwrap();
        let mut listed = Vec::new();
        for row in table.lines().filter(|l| l.starts_with("| ")) {
            let first = row.split('|').nth(1).unwrap_or("");
            let first = first.split("](").next().unwrap_or(first);
            listed.extend(
                first
                    .split(|c: char| c == ',' || c == '[' || c.is_whitespace())
                    .filter(|w| !w.is_empty())
                    .map(str::to_string),
            );
        }
        for e in ORDER {
            assert!(
                listed.iter().any(|n| n == e.name),
                "README plugin table lacks {}",
                e.name
            );
        }
    }

    /// The plugin table's last column agrees with each plugin README's "CoreDNS's tests:" line
    /// (issue 19): "ported (N cases), all pass" or "ported (N cases); deliberate differences: …",
    /// and every plugin issue 19 names has its tests ported.
    #[test]
    fn readme_plugin_table_says_what_of_coredns_s_tests_passes() {
        let root = env!("CARGO_MANIFEST_DIR");
        let readme = std::fs::read_to_string(format!("{root}/README.md")).unwrap();
        let table = readme.split("## Plugins").nth(1).unwrap();
        let table = table.split("\n## ").next().unwrap();
        let mut checked = Vec::new();
        for row in table.lines().filter(|l| l.starts_with("| [")) {
            let Some(name) = row
                .split("](src/plugins/")
                .nth(1)
                .and_then(|r| r.split('/').next())
            else {
                continue;
            };
            let cell = row.trim_end_matches('|').rsplit('|').next().unwrap().trim();
            let own = std::fs::read_to_string(format!("{root}/src/plugins/{name}/README.md"))
                .unwrap_or_default();
            let Some(line) = own.lines().find(|l| l.starts_with("CoreDNS's tests:")) else {
                assert_eq!(cell, "—", "{name}: no CoreDNS's tests line in its README");
                continue;
            };
            let n = line
                .split(" cases")
                .next()
                .and_then(|h| h.rsplit('(').next())
                .unwrap();
            let n: usize = n
                .parse()
                .unwrap_or_else(|_| panic!("{name}: case count in {line}"));
            assert!(n > 0, "{name}");
            if line.trim_end().ends_with("all pass.") {
                assert_eq!(cell, format!("ported ({n} cases), all pass"), "{name}");
            } else {
                assert!(
                    line.contains("deliberate differences:")
                        && cell
                            .starts_with(&format!("ported ({n} cases); deliberate differences: ")),
                    "{name}: README line `{line}` vs table cell `{cell}`"
                );
            }
            checked.push(name.to_string());
        }
        for p in [
            "hosts",
            "template",
            "rewrite",
            "dns64",
            "any",
            "cache",
            "loadbalance",
            "forward",
            "errors",
            "log",
            "whoami",
            "autopath",
            "k8s_external",
            "bind",
        ] {
            assert!(
                checked.iter().any(|c| c == p),
                "{p}: CoreDNS's tests not ported"
            );
        }
    }

    #[test]
    fn order_matches_coredns_1_14_5_for_the_chain() {
        let pos = |n: &str| ORDER.iter().position(|e| e.name == n).unwrap();
        let chain = [
            "prometheus",
            "errors",
            "log",
            "loadbalance",
            "cache",
            "rewrite",
            "autopath",
            "template",
            "transfer",
            "hosts",
            "k8s_external",
            "kubernetes",
            "loop",
            "forward",
            "whoami",
        ];
        for w in chain.windows(2) {
            assert!(pos(w[0]) < pos(w[1]), "{} before {}", w[0], w[1]);
        }
    }
}
