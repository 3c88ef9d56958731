//! `hosts`: answers from an /etc/hosts-style file and inline entries (plugin/hosts).

mod setup;

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use hickory_proto::rr::rdata::PTR;
use hickory_proto::rr::{Name, RData, Record, RecordType};
use prometheus::{Gauge, IntGaugeVec, Opts, Registry};

pub use setup::{HostsConfig, parse};

use crate::plugins::kubernetes::address_from_reverse;
use crate::plugins::{BuildCtx, Handler, HandlerError, Next, Request, Response, is_subdomain};

/// Directive name.
pub const NAME: &str = "hosts";

/// `coredns_hosts_*`, registered once per process.
pub struct HostsMetrics {
    entries: IntGaugeVec,
    reload: Gauge,
}

impl HostsMetrics {
    /// Creates and registers the metrics.
    pub fn new(r: &Registry) -> Result<Self, prometheus::Error> {
        let entries = IntGaugeVec::new(
            Opts::new(
                "coredns_hosts_entries",
                "The combined number of entries in hosts and Corefile.",
            ),
            &["hostsfile"],
        )?;
        let reload = Gauge::new(
            "coredns_hosts_reload_timestamp_seconds",
            "The timestamp of the last reload of hosts file.",
        )?;
        r.register(Box::new(entries.clone()))?;
        r.register(Box::new(reload.clone()))?;
        Ok(Self { entries, reload })
    }
}

/// Names and addresses of one source (the file, or the inline lines).
#[derive(Debug, Default, Clone)]
pub struct Table {
    by_name: HashMap<String, Vec<IpAddr>>,
    by_addr: HashMap<IpAddr, Vec<String>>,
}

impl Table {
    /// Parses hosts-file text: `IP NAME...` per line, `#` comments.
    pub fn parse(text: &str) -> Self {
        let mut t = Table::default();
        for line in text.lines() {
            let line = line.split('#').next().unwrap_or_default();
            let mut words = line.split_whitespace();
            let Some(ip) = words
                .next()
                .and_then(|w| w.split('%').next()?.parse::<IpAddr>().ok())
            else {
                continue;
            };
            for name in words {
                let name = crate::corefile::address::fqdn(&name.to_ascii_lowercase());
                let ips = t.by_name.entry(name.clone()).or_default();
                if !ips.contains(&ip) {
                    ips.push(ip);
                }
                if !name.starts_with("*.") {
                    let names = t.by_addr.entry(ip).or_default();
                    if !names.contains(&name) {
                        names.push(name);
                    }
                }
            }
        }
        t
    }

    fn lookup(&self, name: &str) -> Option<&Vec<IpAddr>> {
        if let Some(ips) = self.by_name.get(name) {
            return Some(ips);
        }
        // A leftmost `*` matches exactly one label.
        let (_, parent) = name.split_once('.')?;
        if parent.is_empty() {
            return None;
        }
        self.by_name.get(&format!("*.{parent}"))
    }

    fn len(&self) -> usize {
        self.by_name.len()
    }
}

/// The plugin.
pub struct Hosts {
    cfg: HostsConfig,
    inline: Table,
    file: Arc<ArcSwap<Table>>,
}

impl Hosts {
    fn addresses(&self, name: &str) -> Option<Vec<IpAddr>> {
        self.inline
            .lookup(name)
            .cloned()
            .or_else(|| self.file.load().lookup(name).cloned())
    }

    fn names(&self, ip: IpAddr) -> Vec<String> {
        let mut out = self.inline.by_addr.get(&ip).cloned().unwrap_or_default();
        for n in self.file.load().by_addr.get(&ip).into_iter().flatten() {
            if !out.contains(n) {
                out.push(n.clone());
            }
        }
        out
    }
}

fn read(path: &Path) -> Option<Table> {
    let text = std::fs::read_to_string(path).ok()?;
    Some(Table::parse(&text))
}

/// Builds the handler; with `reload`, a starter re-reads the file when it changes.
pub fn build(cfg: &HostsConfig, ctx: &mut BuildCtx<'_>) -> Arc<dyn Handler> {
    let seen = crate::fswatch::mtimes(std::slice::from_ref(&cfg.file));
    let table = read(&cfg.file).unwrap_or_else(|| {
        tracing::warn!(target: "plugin/hosts", "File does not exist: {}", cfg.file.display());
        Table::default()
    });
    let inline = Table::parse(&cfg.inline.join("\n"));
    let metrics = ctx.metrics.hosts.clone();
    let label = cfg.file.display().to_string();
    metrics
        .entries
        .with_label_values(&[&label])
        .set((table.len() + inline.len()) as i64);
    let file = Arc::new(ArcSwap::from_pointee(table));
    if !cfg.reload.is_zero() {
        let (file, path, every, inline_len) =
            (file.clone(), cfg.file.clone(), cfg.reload, inline.len());
        ctx.services.starters.0.push(Box::new(move |start| {
            Box::pin(async move {
                let mut watch = crate::fswatch::FileWatch::new(vec![path.clone()], seen, every);
                tokio::spawn(async move {
                    while watch.changed(&start.stop).await {
                        let table = read(&path).unwrap_or_default();
                        metrics
                            .entries
                            .with_label_values(&[&label])
                            .set((table.len() + inline_len) as i64);
                        metrics.reload.set(
                            SystemTime::now()
                                .duration_since(UNIX_EPOCH)
                                .unwrap_or(Duration::ZERO)
                                .as_secs_f64(),
                        );
                        file.store(Arc::new(table));
                    }
                });
                Ok(())
            })
        }));
    }
    Arc::new(Hosts {
        cfg: cfg.clone(),
        inline,
        file,
    })
}

#[async_trait::async_trait]
impl Handler for Hosts {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn serve(&self, req: &Request, next: Next<'_>) -> Result<Response, HandlerError> {
        let name = req.qname_lower();
        let qtype = req.qtype();
        if qtype == RecordType::PTR {
            if self.cfg.no_reverse {
                return next.run(req).await;
            }
            let names = address_from_reverse(name)
                .map(|ip| self.names(ip))
                .unwrap_or_default();
            if names.is_empty() {
                return next.run(req).await;
            }
            let mut msg = req.reply();
            msg.metadata.authoritative = true;
            for n in names {
                let target =
                    Name::from_ascii(&n).map_err(|e| HandlerError::Internal(e.to_string()))?;
                msg.add_answer(Record::from_rdata(
                    req.qname().clone(),
                    self.cfg.ttl,
                    RData::PTR(PTR(target)),
                ));
            }
            return Ok(Response::new(msg, NAME));
        }
        if !self.cfg.zones.iter().any(|z| is_subdomain(z, name)) {
            return next.run(req).await;
        }
        let ips = self.addresses(name);
        let answers: Vec<IpAddr> = ips
            .iter()
            .flatten()
            .copied()
            .filter(|ip| match qtype {
                RecordType::A => ip.is_ipv4(),
                RecordType::AAAA => ip.is_ipv6(),
                _ => false,
            })
            .collect();
        let fall = self.cfg.fall.through(name);
        if answers.is_empty() {
            let exists = ips.is_some();
            let supported = matches!(qtype, RecordType::A | RecordType::AAAA);
            if fall && (!exists || (!supported && self.cfg.fallthrough_unsupported)) {
                return next.run(req).await;
            }
            if !exists {
                // No SOA to make an NXDOMAIN with: SERVFAIL, as CoreDNS.
                return Err(HandlerError::Internal(format!(
                    "plugin/hosts: no entry for {name}"
                )));
            }
        }
        let mut msg = req.reply();
        msg.metadata.authoritative = true;
        for ip in answers {
            let data = match ip {
                IpAddr::V4(v4) => RData::A(v4.into()),
                IpAddr::V6(v6) => RData::AAAA(v6.into()),
            };
            msg.add_answer(Record::from_rdata(req.qname().clone(), self.cfg.ttl, data));
        }
        Ok(Response::new(msg, NAME))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_hosts_files() {
        let t = Table::parse(
            "# comment\n127.0.0.1 localhost\n10.0.0.1 a.example.org b # x\n::1 localhost\n10.0.0.9 *.wild.org\nbad line\n",
        );
        assert_eq!(t.lookup("localhost.").unwrap().len(), 2);
        assert_eq!(
            t.lookup("b.").unwrap(),
            &vec!["10.0.0.1".parse::<IpAddr>().unwrap()]
        );
        assert!(t.lookup("x.a.wild.org.").is_none(), "one label only");
        assert!(t.lookup("x.wild.org.").is_some());
        assert!(t.lookup("wild.org.").is_none());
        assert_eq!(
            t.by_addr[&"10.0.0.1".parse::<IpAddr>().unwrap()],
            ["a.example.org.", "b."]
        );
        assert!(
            !t.by_addr
                .contains_key(&"10.0.0.9".parse::<IpAddr>().unwrap())
        );
    }
}
