//! `forward`: sends queries to upstream resolvers (plugin/forward).

mod handler;
pub mod metrics;
mod proxy;
mod setup;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub use handler::{Forward, Instance};
pub use metrics::ForwardMetrics;
pub use proxy::{ExchangeError, Proxy, Transport};
pub use setup::{ForwardConfig, Policy, TlsOptions, To, parse, resolv_conf};

use crate::corefile::Error;
use crate::fswatch::{FileWatch, mtimes};
use crate::plugins::{BuildCtx, Handler};

/// Directive name.
pub const NAME: &str = "forward";

/// How often resolv.conf-style upstream files are checked for changes.
const FILE_POLL: Duration = Duration::from_secs(2);

/// The rustls client configuration of a `forward` line: its CA file or the system's roots, and
/// its client certificate if any.
fn tls_config(c: &ForwardConfig) -> Result<Arc<rustls::ClientConfig>, String> {
    let cert_key = match (&c.tls.cert, &c.tls.key) {
        (Some(cert), Some(key)) => Some((cert.as_path(), key.as_path())),
        _ => None,
    };
    crate::tls::client_config(c.tls.ca.as_deref(), cert_key)
}

fn proxies(c: &ForwardConfig) -> Result<Vec<Arc<Proxy>>, String> {
    let mut out = Vec::new();
    let mut tls: Option<Arc<rustls::ClientConfig>> = None;
    for t in &c.to {
        match t {
            To::Addr(a) => out.push(Arc::new(
                Proxy::new(*a, None, c.expire).with_source(c.source_address),
            )),
            To::Tls(a, name) => {
                let cfg = match &tls {
                    Some(cfg) => cfg.clone(),
                    None => tls.insert(tls_config(c)?).clone(),
                };
                let name = match name.as_ref().or(c.tls_servername.as_ref()) {
                    Some(n) => rustls_pki_types::ServerName::try_from(n.clone())
                        .map_err(|e| format!("invalid TLS server name {n}: {e}"))?,
                    None => rustls_pki_types::ServerName::IpAddress(a.ip().into()),
                };
                let setup = proxy::TlsSetup {
                    connector: tokio_rustls::TlsConnector::from(cfg),
                    name,
                };
                out.push(Arc::new(
                    Proxy::new(*a, Some(Arc::new(setup)), c.expire).with_source(c.source_address),
                ));
            }
            To::File(p) => {
                let addrs = resolv_conf(p).map_err(|e| format!("{}: {e}", p.display()))?;
                out.extend(addrs.into_iter().map(|a| {
                    Arc::new(Proxy::new(a, None, c.expire).with_source(c.source_address))
                }));
            }
        }
    }
    if out.is_empty() {
        return Err("no valid upstream addresses found".into());
    }
    Ok(out)
}

/// Builds the block's `forward` handler (all its lines) and, for resolv.conf-style upstreams,
/// a starter that re-reads them when they change.
pub fn build(cfgs: &[ForwardConfig], ctx: &mut BuildCtx<'_>) -> Result<Arc<dyn Handler>, Error> {
    let mut instances = Vec::new();
    for c in cfgs {
        let list =
            proxies(c).map_err(|e| Error::plugin(NAME, ctx.loc.clone(), Error::plain(None, e)))?;
        instances.push(Arc::new(Instance::new(
            c.clone(),
            list,
            ctx.metrics.forward.clone(),
        )));
    }
    let watched: Vec<Arc<Instance>> = instances
        .iter()
        .filter(|i| i.cfg.to.iter().any(|t| matches!(t, To::File(_))))
        .cloned()
        .collect();
    if !watched.is_empty() {
        ctx.services.starters.0.push(Box::new(move |start| {
            Box::pin(async move {
                for inst in watched {
                    let files: Vec<PathBuf> = inst
                        .cfg
                        .to
                        .iter()
                        .filter_map(|t| match t {
                            To::File(p) => Some(p.clone()),
                            _ => None,
                        })
                        .collect();
                    let seen = mtimes(&files);
                    let mut watch = FileWatch::new(files, seen, FILE_POLL);
                    let stop = start.stop.clone();
                    tokio::spawn(async move {
                        while watch.changed(&stop).await {
                            match proxies(&inst.cfg) {
                                Ok(list) => {
                                    tracing::info!(target: "plugin/forward", "upstreams now {}", list.iter().map(|p| p.label.as_str()).collect::<Vec<_>>().join(" "));
                                    inst.proxies.store(Arc::new(list));
                                }
                                Err(e) => tracing::error!(target: "plugin/forward", "{e}; keeping the previous upstreams"),
                            }
                        }
                    });
                }
                Ok(())
            })
        }));
    }
    Ok(Arc::new(Forward {
        instances,
        taps: ctx.dnstap.clone(),
    }))
}
