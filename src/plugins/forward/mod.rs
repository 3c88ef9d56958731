//! `forward`: sends queries to upstream resolvers (plugin/forward).

mod handler;
pub mod metrics;
mod proxy;
mod setup;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

pub use handler::{Forward, Instance};
pub use metrics::ForwardMetrics;
pub use proxy::{ExchangeError, Proxy, Transport};
pub use setup::{ForwardConfig, Policy, To, parse, resolv_conf};

use crate::corefile::Error;
use crate::plugins::{BuildCtx, Handler};

/// Directive name.
pub const NAME: &str = "forward";

/// How often resolv.conf-style upstream files are checked for changes.
const FILE_POLL: Duration = Duration::from_secs(2);

fn proxies(to: &[To]) -> Result<Vec<Arc<Proxy>>, String> {
    let mut out = Vec::new();
    for t in to {
        match t {
            To::Addr(a) => out.push(Arc::new(Proxy::new(*a))),
            To::File(p) => {
                let addrs = resolv_conf(p).map_err(|e| format!("{}: {e}", p.display()))?;
                if addrs.is_empty() {
                    return Err(format!("no nameservers found in {}", p.display()));
                }
                out.extend(addrs.into_iter().map(|a| Arc::new(Proxy::new(a))));
            }
        }
    }
    Ok(out)
}

fn mtimes(to: &[To]) -> Vec<Option<SystemTime>> {
    to.iter()
        .map(|t| match t {
            To::File(p) => std::fs::metadata(p).and_then(|m| m.modified()).ok(),
            To::Addr(_) => None,
        })
        .collect()
}

/// Builds the block's `forward` handler (all its lines) and, for resolv.conf-style upstreams,
/// a starter that re-reads them when they change.
pub fn build(cfgs: &[ForwardConfig], ctx: &mut BuildCtx<'_>) -> Result<Arc<dyn Handler>, Error> {
    let mut instances = Vec::new();
    for c in cfgs {
        let list = proxies(&c.to)
            .map_err(|e| Error::plugin(NAME, ctx.loc.clone(), Error::plain(None, e)))?;
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
                tokio::spawn(async move {
                    let mut seen: Vec<_> = watched.iter().map(|i| mtimes(&i.cfg.to)).collect();
                    loop {
                        tokio::select! {
                            _ = start.stop.cancelled() => return,
                            _ = tokio::time::sleep(FILE_POLL) => {}
                        }
                        for (inst, seen) in watched.iter().zip(seen.iter_mut()) {
                            let now = mtimes(&inst.cfg.to);
                            if now == *seen {
                                continue;
                            }
                            *seen = now;
                            match proxies(&inst.cfg.to) {
                                Ok(list) => {
                                    tracing::info!(target: "plugin/forward", "upstreams now {}", list.iter().map(|p| p.label.as_str()).collect::<Vec<_>>().join(" "));
                                    inst.proxies.store(Arc::new(list));
                                }
                                Err(e) => tracing::error!(target: "plugin/forward", "{e}; keeping the previous upstreams"),
                            }
                        }
                    }
                });
                Ok(())
            })
        }));
    }
    Ok(Arc::new(Forward { instances }))
}
