//! `file`: authoritative answers from RFC 1035 zone files (CoreDNS's plugin/file).
//!
//! Each zone is parsed (`crate::zonefile`) into an immutable [`Zone`] behind an `ArcSwap`: a
//! query loads it without a lock, a reload builds a new one and swaps it in only if it parsed,
//! so a broken file never replaces the last good zone. The zones are also a
//! [`ZoneSource`](crate::plugins::zone_source::ZoneSource) for `transfer` (`xfr`): each swap
//! marks it changed, so the secondaries get a NOTIFY.

mod setup;
#[cfg(test)]
mod tests;
mod xfr;
pub mod zone;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwapOption;
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{Name, RecordType};

pub use setup::{FileConfig, ZoneFile, parse};
pub use zone::{Found, Lookup, Outcome, Zone};

use crate::plugins::{
    BuildCtx, Fall, Handler, HandlerError, Next, Request, Response, is_subdomain,
};

/// Directive name.
pub const NAME: &str = "file";

/// One zone the plugin serves and where it comes from.
pub struct Served {
    /// The origin, lower-case FQDN text (how queries are matched).
    pub name: String,
    /// The origin.
    pub origin: Name,
    /// The file.
    pub path: PathBuf,
    /// The zone; `None` until the file could be read.
    pub zone: ArcSwapOption<Zone>,
}

/// The plugin.
pub struct File {
    zones: Vec<Arc<Served>>,
    fall: Fall,
}

impl File {
    /// The zones, for other plugins (zone transfers).
    pub fn zones(&self) -> &[Arc<Served>] {
        &self.zones
    }

    /// The served zone whose origin is the longest suffix of `qname` (lower-case FQDN).
    fn find(&self, qname: &str) -> Option<&Arc<Served>> {
        self.zones
            .iter()
            .filter(|z| is_subdomain(&z.name, qname))
            .max_by_key(|z| z.name.len())
    }
}

/// Reads `path` as zone `origin`, logging what went wrong.
fn load(path: &Path, origin: &Name) -> Result<Zone, zone::Error> {
    Zone::load(path, origin)
}

fn mtime(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// Builds the handler: every zone is read now (a file that does not parse is an error; one that
/// cannot be opened is retried every `reload`, as CoreDNS does, unless `reload` is 0); with
/// `reload`, a starter checks each file on that interval.
pub fn build(
    cfg: &FileConfig,
    ctx: &mut BuildCtx<'_>,
) -> Result<Arc<dyn Handler>, crate::corefile::Error> {
    let err = |msg: String| {
        crate::corefile::Error::plugin(
            NAME,
            ctx.loc.clone(),
            crate::corefile::Error::plain(None, msg),
        )
    };
    let mut zones = Vec::new();
    for f in &cfg.files {
        for z in &f.zones {
            let origin = Name::from_ascii(z).map_err(|e| err(format!("bad zone {z}: {e}")))?;
            let loaded = match load(&f.path, &origin) {
                Ok(zone) => Some(Arc::new(zone)),
                Err(e) if e.line == 0 && !f.path.exists() => {
                    if cfg.reload.is_zero() {
                        return Err(err(e.to_string()));
                    }
                    tracing::warn!(target: "plugin/file", "Failed to open {:?}: trying again in {:?}", e.to_string(), cfg.reload);
                    None
                }
                Err(e) => return Err(err(format!("failed to parse zone {z}: {e}"))),
            };
            zones.push(Arc::new(Served {
                name: z.clone(),
                origin,
                path: f.path.clone(),
                zone: ArcSwapOption::new(loaded),
            }));
        }
    }
    // The zones, for `transfer` (nothing happens unless the block has it).
    let changed = Arc::new(tokio::sync::watch::Sender::new(()));
    ctx.zone_sources.add(Arc::new(xfr::FileZones {
        zones: zones.clone(),
        changed: changed.clone(),
    }));
    if !cfg.reload.is_zero() {
        let (zones, every, by_mtime) = (zones.clone(), cfg.reload, cfg.reload_by_mtime);
        ctx.services.starters.0.push(Box::new(move |start| {
            Box::pin(async move {
                for z in zones {
                    let (stop, changed) = (start.stop.clone(), changed.clone());
                    tokio::spawn(
                        async move { reload_loop(z, every, by_mtime, &changed, stop).await },
                    );
                }
                Ok(())
            })
        }));
    }
    Ok(Arc::new(File {
        zones,
        fall: cfg.fall.clone(),
    }))
}

/// Re-reads a zone every `every` until `stop`: swapped in when its SOA serial changed (or, with
/// `by_mtime`, its file's modification time) and `changed` is marked; a file that does not
/// parse is logged and the zone served so far stays.
async fn reload_loop(
    z: Arc<Served>,
    every: Duration,
    by_mtime: bool,
    changed: &tokio::sync::watch::Sender<()>,
    stop: tokio_util::sync::CancellationToken,
) {
    let mut seen = mtime(&z.path);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        if by_mtime {
            let now = mtime(&z.path);
            if now.is_none() || now == seen {
                continue;
            }
            seen = now;
        }
        let (path, origin) = (z.path.clone(), z.origin.clone());
        let parsed = tokio::task::spawn_blocking(move || load(&path, &origin)).await;
        let zone = match parsed {
            Ok(Ok(zone)) => zone,
            Ok(Err(e)) => {
                tracing::error!(target: "plugin/file", "Parsing zone {:?}: {e}", z.name);
                continue;
            }
            Err(_) => continue,
        };
        let old = z.zone.load();
        if !by_mtime && old.as_ref().is_some_and(|o| o.serial() == zone.serial()) {
            continue;
        }
        tracing::info!(target: "plugin/file", "Successfully reloaded zone {:?} in {:?} with {} SOA serial", z.name, z.path.display().to_string(), zone.serial());
        z.zone.store(Some(Arc::new(zone)));
        changed.send_replace(());
    }
}

#[async_trait::async_trait]
impl Handler for File {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn serve(&self, req: &Request, next: Next<'_>) -> Result<Response, HandlerError> {
        let Some(served) = self.find(req.qname_lower()) else {
            return next.run(req).await;
        };
        let Some(zone) = served.zone.load_full() else {
            return Err(HandlerError::Internal(format!(
                "plugin/file: zone {} is not loaded",
                served.name
            )));
        };
        let qtype = req.qtype();
        // Transfers are the transfer plugin's (before this one in the chain); without it, no.
        if matches!(qtype, RecordType::AXFR | RecordType::IXFR) {
            return Err(HandlerError::Refused(format!(
                "plugin/file: no transfer of {} allowed",
                served.name
            )));
        }
        let dnssec = req.do_bit();
        let found = zone.lookup(req.qname(), qtype, dnssec);
        let lookup = match found {
            Found::Done(l) => l,
            Found::Chase { chain, target } => {
                let upstream = match req.lookup(target, qtype).await {
                    Ok(m) => Some((m.metadata.response_code, m.answers)),
                    Err(_) => None,
                };
                zone.finish_chase(chain, qtype, upstream, dnssec)
            }
        };
        if lookup.answer.is_empty()
            && lookup.outcome == Outcome::NameError
            && self.fall.through(req.qname_lower())
        {
            return next.run(req).await;
        }
        let mut msg = req.reply();
        msg.metadata.authoritative = true;
        msg.metadata.response_code = match lookup.outcome {
            Outcome::Success | Outcome::NoData => ResponseCode::NoError,
            Outcome::NameError => ResponseCode::NXDomain,
            Outcome::YxDomain => ResponseCode::YXDomain,
            Outcome::Delegation => {
                // A referral is not authoritative; an alias before it is.
                msg.metadata.authoritative = !lookup.answer.is_empty();
                ResponseCode::NoError
            }
            Outcome::ServerFailure => {
                if lookup.answer.is_empty() {
                    return Err(HandlerError::Internal(format!(
                        "plugin/file: no answer for {} in {}",
                        req.qname_sent(),
                        served.name
                    )));
                }
                ResponseCode::ServFail
            }
        };
        msg.answers = lookup.answer;
        msg.authorities = lookup.ns;
        msg.additionals = lookup.extra;
        Ok(Response::new(msg, NAME))
    }
}
