//! `autopath`: walks the client's search path on the server (plugin/autopath), so a pod's
//! `ndots:5` lookup of an external name takes one round trip instead of five or six.

use std::sync::Arc;

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::rdata::CNAME;
use hickory_proto::rr::{Name, RData, Record};
use prometheus::{IntCounterVec, Opts, Registry};

use crate::corefile::{Dispenser, Error};
use crate::plugins::kubernetes::KubeHandle;
use crate::plugins::{
    BuildCtx, Handler, HandlerError, Next, Request, Response, is_subdomain, origins,
};

/// Directive name.
pub const NAME: &str = "autopath";

/// `coredns_autopath_success_total{server}`, registered once per process.
pub struct AutopathMetrics {
    success: IntCounterVec,
}

impl AutopathMetrics {
    /// Creates and registers the metric.
    pub fn new(r: &Registry) -> Result<Self, prometheus::Error> {
        let success = IntCounterVec::new(
            Opts::new(
                "coredns_autopath_success_total",
                "Counter of requests that did autopath.",
            ),
            &["server"],
        )?;
        r.register(Box::new(success.clone()))?;
        Ok(Self { success })
    }
}

/// Where the search path comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SearchSource {
    /// `@kubernetes`: the client pod's namespace (needs `pods verified`).
    Kubernetes,
    /// A resolv.conf file's `search` line.
    File(Vec<String>),
}

/// A parsed `autopath`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AutopathConfig {
    /// Zones whose names are walked.
    pub zones: Vec<String>,
    /// The search path's source.
    pub source: SearchSource,
}

/// The `search` domains of a resolv.conf-style file (lower-case FQDNs).
pub fn resolv_search(path: &std::path::Path) -> std::io::Result<Vec<String>> {
    let text = std::fs::read_to_string(path)?;
    Ok(text
        .lines()
        .filter_map(|l| l.strip_prefix("search"))
        .flat_map(|l| l.split_whitespace())
        .map(|d| crate::corefile::address::fqdn(&d.to_ascii_lowercase()))
        .collect())
}

/// Parses `autopath [ZONES...] RESOLV-CONF|@kubernetes`.
pub fn parse(d: &mut Dispenser<'_>, block_zones: &[String]) -> Result<AutopathConfig, Error> {
    d.next();
    let args = d.remaining_args();
    let Some((last, zones)) = args.split_last() else {
        return Err(d.err("no resolv-conf specified"));
    };
    let source = match last.strip_prefix('@') {
        Some("kubernetes") => SearchSource::Kubernetes,
        Some(other) => return Err(d.err(format!("unknown plugin: {other}"))),
        None => {
            let mut search = resolv_search(std::path::Path::new(last))
                .map_err(|e| d.err(format!("failed to parse \"{last}\": open {last}: {e}")))?;
            search.push(String::new());
            SearchSource::File(search)
        }
    };
    d.expect_no_block()?;
    Ok(AutopathConfig {
        zones: origins(zones, block_zones).map_err(|e| d.err(e))?,
        source,
    })
}

/// The handler.
pub struct Autopath {
    cfg: AutopathConfig,
    kube: Option<KubeHandle>,
    /// The server's own resolv.conf search domains (appended for `@kubernetes`, as CoreDNS).
    own_search: Vec<String>,
    metrics: Arc<AutopathMetrics>,
}

/// Builds the handler (`@kubernetes` needs the kubernetes plugin in the block).
pub fn build(cfg: &AutopathConfig, ctx: &mut BuildCtx<'_>) -> Result<Arc<dyn Handler>, Error> {
    let kube = match cfg.source {
        SearchSource::Kubernetes => Some(ctx.kubernetes.clone().ok_or_else(|| {
            Error::plugin(
                NAME,
                ctx.loc.clone(),
                Error::plain(None, "kubernetes plugin not loaded"),
            )
        })?),
        SearchSource::File(_) => None,
    };
    Ok(Arc::new(Autopath {
        cfg: cfg.clone(),
        kube,
        own_search: resolv_search(std::path::Path::new("/etc/resolv.conf")).unwrap_or_default(),
        metrics: ctx.metrics.autopath.clone(),
    }))
}

fn join(base: &str, domain: &str) -> String {
    if domain.is_empty() || domain == "." {
        format!("{base}.")
    } else {
        format!("{base}.{domain}")
    }
}

impl Autopath {
    /// The client's search path, with the bare name last (as `""`); empty = no autopath.
    fn search(&self, req: &Request, name: &str) -> Vec<String> {
        match &self.cfg.source {
            SearchSource::File(s) => s.clone(),
            SearchSource::Kubernetes => {
                let Some(k) = &self.kube else {
                    return Vec::new();
                };
                let Some(zone) = k
                    .cfg
                    .zones
                    .iter()
                    .filter(|z| is_subdomain(z, name))
                    .max_by_key(|z| z.len())
                else {
                    return Vec::new();
                };
                let idx = k.index.load();
                let Some(ns) = idx.pod_namespace(&req.src.ip().to_canonical()) else {
                    return Vec::new();
                };
                let z = if zone == "." {
                    String::new()
                } else {
                    zone.clone()
                };
                let mut s = vec![
                    format!("{ns}.svc.{z}"),
                    format!("svc.{z}"),
                    if z.is_empty() { ".".into() } else { z },
                ];
                s.extend(self.own_search.iter().cloned());
                s.push(String::new());
                s
            }
        }
    }
}

/// Whether `name` is the first search domain or under it.
fn first_in_search_path(name: &str, search: &[String]) -> bool {
    search
        .first()
        .is_some_and(|first| first == "." || is_subdomain(first, name))
}

/// Prefixes the answer with `original CNAME <owner of the first answer>` unless that owner is
/// the original name; the question is the client's anyway.
fn cnamer(msg: &mut Message, original: &Name) {
    if let Some(first) = msg.answers.iter().find(|r| r.name != *original) {
        let cname = Record::from_rdata(
            original.clone(),
            first.ttl,
            RData::CNAME(CNAME(first.name.clone())),
        );
        msg.answers.insert(0, cname);
    }
}

#[async_trait::async_trait]
impl Handler for Autopath {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn serve(&self, req: &Request, next: Next<'_>) -> Result<Response, HandlerError> {
        let name = req.qname_lower();
        if !self.cfg.zones.iter().any(|z| is_subdomain(z, name)) {
            return next.run(req).await;
        }
        let search = self.search(req, name);
        let Some(first) = search.first() else {
            return next.run(req).await;
        };
        // CoreDNS's firstInSearchPath also lets the search domain itself through, and then
        // fails to trim it (SERVFAIL); here that name is passed on unchanged.
        if !first_in_search_path(name, &search) || name == *first {
            return next.run(req).await;
        }
        let base = &name[..name.len() - first.len() - 1];
        let mut first_reply: Option<Response> = None;
        for (i, domain) in search.iter().enumerate() {
            let qname = Name::from_ascii(join(base, domain))
                .map_err(|e| HandlerError::Internal(format!("plugin/autopath: {e}")))?;
            let mut r = req.clone();
            r.set_qname(qname);
            // An error ends the walk, as in CoreDNS; NXDOMAIN tries the next domain.
            let mut resp = next.clone().run(&r).await?;
            if resp.rcode() != ResponseCode::NXDomain {
                cnamer(&mut resp.msg, req.qname());
                self.metrics.success.with_label_values(&[&req.server]).inc();
                return Ok(resp);
            }
            if i == 0 {
                first_reply = Some(resp);
            }
        }
        // Every name was NXDOMAIN: the first reply, so the client walks its own path.
        first_reply
            .ok_or_else(|| HandlerError::Internal("plugin/autopath: empty search path".into()))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::corefile::lexer::lex;

    // plugin/autopath/autopath_test.go: TestInSearchPath
    #[test]
    fn coredns_test_in_search_path() {
        let search: Vec<String> = [
            "default.svc.cluster.local.",
            "svc.cluster.local.",
            "cluster.local.",
        ]
        .map(String::from)
        .to_vec();
        for (qname, want) in [
            ("google.com", false),
            ("default.svc.cluster.local.", true),
            ("a.default.svc.cluster.local.", true),
            ("a.b.svc.cluster.local.", false),
        ] {
            assert_eq!(first_in_search_path(qname, &search), want, "{qname}");
        }
    }

    // plugin/autopath/setup_test.go: TestSetupAutoPath
    #[test]
    fn coredns_test_setup_autopath() {
        let dir = tempfile::tempdir().unwrap();
        let resolv = dir.path().join("resolv.conf");
        std::fs::write(
            &resolv,
            "nameserver 1.2.3.4\ndomain foo.com\nsearch bar.com baz.com\noptions ndots:5\n",
        )
        .unwrap();
        let run = |s: &str| {
            let toks = lex(&Arc::from("Corefile"), s);
            parse(&mut Dispenser::new(&toks), &[])
        };
        let c = run("autopath @kubernetes").unwrap();
        assert_eq!((c.zones.len(), c.source), (0, SearchSource::Kubernetes));
        let c = run("autopath example.org @kubernetes").unwrap();
        assert_eq!(c.zones, ["example.org."]);
        let c = run("autopath 10.0.0.0/8 @kubernetes").unwrap();
        assert_eq!(c.zones[0], "10.in-addr.arpa.");
        let c = run(&format!("autopath {}", resolv.display())).unwrap();
        assert_eq!(
            c.source,
            SearchSource::File(vec!["bar.com.".into(), "baz.com.".into(), String::new()])
        );
        for (input, want) in [
            ("autopath kubernetes", "open kubernetes:"),
            ("autopath", "no resolv-conf"),
            ("autopath \"\"", "failed to parse"),
        ] {
            let e = run(input).unwrap_err().to_string();
            assert!(e.contains(want), "{input}: {e}");
        }
    }
}
