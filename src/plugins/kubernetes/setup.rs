//! `kubernetes [ZONES...] { … }` → [`KubernetesConfig`] (CoreDNS's setup.go, same messages).

use std::path::PathBuf;
use std::time::Duration;

use crate::corefile::dispenser::parse_duration;
use crate::corefile::{Dispenser, Error};
use crate::kube::{Connect, LabelSelector, Source, TlsFiles, WatchSpec};
use crate::plugins::{Fall, is_subdomain, origins};

/// `pods disabled|insecure|verified`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PodMode {
    /// No pod records (default).
    Disabled,
    /// Any dashed IP answers, unchecked.
    Insecure,
    /// Only IPs of watched pods in that namespace.
    Verified,
}

/// A parsed `kubernetes` directive.
#[derive(Debug, Clone, PartialEq)]
pub struct KubernetesConfig {
    /// Zones (lower-case FQDNs), in the order given.
    pub zones: Vec<String>,
    /// Index of the first non-reverse zone (PTR targets are built under it).
    pub primary: usize,
    /// What to watch and where.
    pub watch: WatchSpec,
    /// `namespaces`: only these (empty = all).
    pub namespaces: Vec<String>,
    /// `pods`.
    pub pods: PodMode,
    /// `endpoint_pod_names`.
    pub endpoint_pod_names: bool,
    /// `ttl` (default 5).
    pub ttl: u32,
    /// `fallthrough [ZONES]`.
    pub fall: Fall,
    /// `ignore empty_service`.
    pub ignore_empty_service: bool,
    /// `startup_timeout` (default 5 s).
    pub startup_timeout: Duration,
    /// `apiserver_qps`, `apiserver_burst`, `apiserver_max_inflight` (accepted; see README).
    pub api_limits: (f64, u32, u32),
    /// `multicluster ZONES`: the zones answered from ServiceImports (each one of `zones`).
    pub multicluster: Vec<String>,
    /// `zonal`: topology-zone names (`ZONE.pin|prefer._zone.SVC.NS.svc`) for headless services.
    pub zonal: bool,
}

impl KubernetesConfig {
    /// The primary zone.
    pub fn primary_zone(&self) -> &str {
        &self.zones[self.primary]
    }

    /// Whether `zone` (one of `zones`) is answered from ServiceImports (it is within a
    /// `multicluster` zone).
    pub fn is_multicluster(&self, zone: &str) -> bool {
        self.multicluster.iter().any(|m| is_subdomain(m, zone))
    }
}

fn is_reverse(zone: &str) -> bool {
    zone.ends_with("in-addr.arpa.") || zone.ends_with("ip6.arpa.")
}

/// Parses the directive (once per block).
pub fn parse(d: &mut Dispenser<'_>, block_zones: &[String]) -> Result<KubernetesConfig, Error> {
    d.next();
    let args = d.remaining_args();
    let zones = origins(&args, block_zones).map_err(|e| d.err(e))?;
    let Some(primary) = zones.iter().position(|z| !is_reverse(z)) else {
        return Err(d.err("non-reverse zone name must be used"));
    };
    let mut endpoint: Option<String> = None;
    let mut tls: Option<TlsFiles> = None;
    let mut kubeconfig: Option<(PathBuf, Option<String>)> = None;
    let mut snapshot: Option<PathBuf> = None;
    let mut cfg = KubernetesConfig {
        zones: zones.clone(),
        primary,
        watch: WatchSpec {
            source: Source::Api(Connect::Infer),
            labels: None,
            namespace_labels: None,
            endpoints: true,
            pods: false,
            pod_names: false,
            zones: false,
            multicluster: false,
        },
        namespaces: Vec::new(),
        pods: PodMode::Disabled,
        endpoint_pod_names: false,
        ttl: 5,
        fall: Fall::none(),
        ignore_empty_service: false,
        startup_timeout: Duration::from_secs(5),
        api_limits: (0.0, 0, 0),
        multicluster: Vec::new(),
        zonal: false,
    };
    while d.next_block() {
        let opt = d.val();
        match opt {
            "endpoint_pod_names" => {
                d.expect_no_more_args()?;
                cfg.endpoint_pod_names = true;
                cfg.watch.pod_names = true;
            }
            "noendpoints" => {
                d.expect_no_more_args()?;
                cfg.watch.endpoints = false;
            }
            "pods" => {
                let v = d.single_arg()?;
                cfg.pods = match v.as_str() {
                    "disabled" => PodMode::Disabled,
                    "insecure" => PodMode::Insecure,
                    "verified" => PodMode::Verified,
                    _ => {
                        return Err(d.err(format!(
                            "wrong value for pods: {v},  must be one of: disabled, verified, insecure"
                        )));
                    }
                };
            }
            "namespaces" => {
                let args = d.remaining_args();
                if args.is_empty() {
                    return Err(d.arg_err());
                }
                cfg.namespaces.extend(args);
            }
            "endpoint" => {
                let args = d.remaining_args();
                if args.is_empty() {
                    return Err(d.arg_err());
                }
                if args.len() > 1 {
                    tracing::warn!(target: "plugin/kubernetes", "Multiple endpoints have been deprecated, please specify only one: {}", args.join(" "));
                }
                endpoint = Some(args[0].clone());
            }
            "tls" => {
                let args = d.remaining_args();
                let [cert, key, ca] = args.as_slice() else {
                    return Err(d.arg_err());
                };
                tls = Some(TlsFiles {
                    cert: cert.into(),
                    key: key.into(),
                    ca: ca.into(),
                });
            }
            "kubeconfig" => {
                let args = d.remaining_args();
                match args.as_slice() {
                    [path] => kubeconfig = Some((path.into(), None)),
                    [path, ctx] => kubeconfig = Some((path.into(), Some(ctx.clone()))),
                    _ => return Err(d.arg_err()),
                }
            }
            "snapshot" => snapshot = Some(d.single_arg()?.into()),
            "labels" => cfg.watch.labels = Some(selector(d, "label")?),
            "namespace_labels" => {
                cfg.watch.namespace_labels = Some(selector(d, "namespace_label")?)
            }
            "fallthrough" => cfg.fall = Fall::parse(&d.remaining_args()),
            "ttl" => {
                let v = d.single_arg()?;
                let ttl: i64 = v
                    .parse()
                    .map_err(|_| d.err(format!("ttl must be an integer: {v}")))?;
                if !(0..=3600).contains(&ttl) {
                    return Err(d.err(format!("ttl must be in range [0, 3600]: {ttl}")));
                }
                cfg.ttl = ttl as u32;
            }
            "ignore" => {
                let args = d.remaining_args();
                if let Some(first) = args.first() {
                    if first != "empty_service" {
                        return Err(d.err(format!("unable to parse ignore value: '{first}'")));
                    }
                    cfg.ignore_empty_service = true;
                }
            }
            "upstream" => {
                // Removed from CoreDNS in 1.7; old Corefiles still carry it.
                d.remaining_args();
                tracing::warn!(target: "plugin/kubernetes", "upstream is deprecated and ignored: ExternalName targets are resolved through this server");
            }
            "startup_timeout" => {
                let v = d.single_arg()?;
                cfg.startup_timeout = parse_duration(&v).ok_or_else(|| {
                    d.err(format!(
                        "failed to parse startup_timeout: time: invalid duration \"{v}\""
                    ))
                })?;
            }
            "apiserver_qps" => {
                let v = d.single_arg()?;
                let q: f64 = v
                    .parse()
                    .map_err(|e| d.err(format!("invalid apiserver_qps \"{v}\": {e}")))?;
                if q < 0.0 || q.is_nan() {
                    return Err(d.err("apiserver_qps must be >= 0"));
                }
                cfg.api_limits.0 = q;
            }
            "apiserver_burst" | "apiserver_max_inflight" => {
                let v = d.single_arg()?;
                let n: i64 = v
                    .parse()
                    .map_err(|e| d.err(format!("invalid {opt} \"{v}\": {e}")))?;
                if n < 0 {
                    return Err(d.err(format!("{opt} must be >= 0")));
                }
                let n = u32::try_from(n).unwrap_or(u32::MAX);
                if opt == "apiserver_burst" {
                    cfg.api_limits.1 = n;
                } else {
                    cfg.api_limits.2 = n;
                }
            }
            "multicluster" => {
                cfg.multicluster = origins(&d.remaining_args(), &[]).map_err(|e| d.err(e))?;
            }
            "zonal" => {
                d.expect_no_more_args()?;
                cfg.zonal = true;
            }
            other => return Err(d.err(format!("unknown property '{other}'"))),
        }
    }
    if !cfg.namespaces.is_empty() && cfg.watch.namespace_labels.is_some() {
        return Err(d.err("namespaces and namespace_labels cannot both be set"));
    }
    if let Some(z) = cfg.multicluster.iter().find(|z| !cfg.zones.contains(z)) {
        return Err(d.err(format!(
            "is not authoritative for the multicluster zone {z} (authoritative zones: [{}])",
            cfg.zones.join(" ")
        )));
    }
    if cfg.zonal && !cfg.watch.endpoints {
        // Zone-scoped names are answered from the endpoints; without them every zonal name
        // would contradict `noendpoints` (NXDOMAIN for all headless names).
        return Err(d.err("zonal requires the endpoint cache; remove noendpoints"));
    }
    cfg.watch.multicluster = !cfg.multicluster.is_empty();
    cfg.watch.zones = cfg.zonal;
    cfg.watch.pods = cfg.pods == PodMode::Verified;
    cfg.watch.source = match (snapshot, kubeconfig, endpoint) {
        (Some(path), None, None) => Source::Snapshot(path),
        (Some(_), _, _) => {
            return Err(d.err("snapshot cannot be combined with endpoint or kubeconfig"));
        }
        (None, Some((path, context)), _) => Source::Api(Connect::Kubeconfig { path, context }),
        (None, None, Some(url)) => Source::Api(Connect::Endpoint { url, tls }),
        (None, None, None) => Source::Api(Connect::Infer),
    };
    Ok(cfg)
}

/// The rest of the line as a label selector (`labels`, `namespace_labels`).
fn selector(d: &mut Dispenser<'_>, what: &str) -> Result<LabelSelector, Error> {
    let args = d.remaining_args();
    if args.is_empty() {
        return Err(d.arg_err());
    }
    let text = args.join(" ");
    LabelSelector::parse(&text).map_err(|e| {
        d.err(format!(
            "unable to parse {what} selector value: '{text}': {e}"
        ))
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::corefile::lexer::lex;

    fn run(input: &str) -> Result<KubernetesConfig, Error> {
        let toks = lex(&Arc::from("Corefile"), input);
        parse(&mut Dispenser::new(&toks), &["cluster.local.".to_string()])
    }

    #[test]
    fn defaults_and_options() {
        let c = run("kubernetes").unwrap();
        assert_eq!(c.zones, ["cluster.local."]);
        assert_eq!(c.ttl, 5);
        assert_eq!(c.pods, PodMode::Disabled);
        assert_eq!(c.watch.source, Source::Api(Connect::Infer));
        assert!(c.watch.endpoints && !c.watch.pods);

        let c = run("kubernetes cluster.local 10.0.0.0/16 ip6.arpa {\n pods verified\n ttl 30\n fallthrough in-addr.arpa ip6.arpa\n endpoint http://127.0.0.1:8001\n namespaces a b\n upstream\n ignore empty_service\n noendpoints\n endpoint_pod_names\n startup_timeout 2s\n}").unwrap();
        assert_eq!(
            c.zones,
            ["cluster.local.", "0.10.in-addr.arpa.", "ip6.arpa."]
        );
        assert_eq!(c.primary_zone(), "cluster.local.");
        assert_eq!(c.ttl, 30);
        assert!(c.watch.pods && !c.watch.endpoints);
        assert!(c.fall.through("1.0.0.10.in-addr.arpa."));
        assert!(!c.fall.through("x.cluster.local."));
        assert_eq!(c.namespaces, ["a", "b"]);
        assert!(c.ignore_empty_service && c.endpoint_pod_names);
        assert_eq!(c.startup_timeout, Duration::from_secs(2));
        assert!(matches!(
            c.watch.source,
            Source::Api(Connect::Endpoint { .. })
        ));

        let c = run("kubernetes {\n kubeconfig /k ctx\n endpoint http://x\n}").unwrap();
        assert!(matches!(
            c.watch.source,
            Source::Api(Connect::Kubeconfig {
                context: Some(_),
                ..
            })
        ));
        let c = run("kubernetes {\n zonal\n}").unwrap();
        assert!(c.zonal && c.watch.zones && !c.watch.multicluster);
        assert!(!run("kubernetes").unwrap().zonal);
        let c = run("kubernetes {\n snapshot deploy/demo/cluster.yaml\n}").unwrap();
        assert_eq!(
            c.watch.source,
            Source::Snapshot("deploy/demo/cluster.yaml".into())
        );
    }

    /// setup_test.go TestKubernetesParseMulticluster.
    #[test]
    fn multicluster_zones() {
        let cases: [(&str, Result<&[&str], &str>); 4] = [
            (
                "kubernetes coredns.local clusterset.local {\n multicluster clusterset.local\n}",
                Ok(&["clusterset.local."]),
            ),
            (
                "kubernetes coredns.local {\n multicluster clusterset.local\n}",
                Err(
                    "is not authoritative for the multicluster zone clusterset.local. (authoritative zones: [coredns.local.])",
                ),
            ),
            (
                "kubernetes coredns.local clusterset.local {\n multicluster clusterset.local test.local\n}",
                Err("is not authoritative for the multicluster zone test.local."),
            ),
            ("kubernetes coredns.local {\n multicluster\n}", Ok(&[])),
        ];
        for (input, want) in cases {
            match (run(input), want) {
                (Ok(c), Ok(zones)) => {
                    assert_eq!(c.multicluster, zones, "{input}");
                    assert_eq!(c.watch.multicluster, !zones.is_empty(), "{input}");
                }
                (Err(e), Err(text)) => assert!(e.to_string().contains(text), "{input}: {e}"),
                (got, _) => panic!("{input}: {got:?}"),
            }
        }
        let c =
            run("kubernetes cluster.local clusterset.local {\n multicluster clusterset.local\n}")
                .unwrap();
        assert!(c.is_multicluster("clusterset.local."));
        assert!(!c.is_multicluster("cluster.local."));
    }

    #[test]
    fn errors() {
        let cases = [
            (
                "kubernetes in-addr.arpa",
                "non-reverse zone name must be used",
            ),
            (
                "kubernetes {\n pods giant_seed\n}",
                "wrong value for pods: giant_seed,  must be one of: disabled, verified, insecure",
            ),
            ("kubernetes {\n endpoint\n}", "Wrong argument count"),
            ("kubernetes {\n labels\n}", "Wrong argument count"),
            ("kubernetes {\n tls a b\n}", "Wrong argument count"),
            (
                "kubernetes {\n ttl 3601\n}",
                "ttl must be in range [0, 3600]: 3601",
            ),
            (
                "kubernetes {\n ttl -1\n}",
                "ttl must be in range [0, 3600]: -1",
            ),
            ("kubernetes {\n ttl x\n}", "ttl must be an integer: x"),
            ("kubernetes {\n noendpoints x\n}", "Wrong argument count"),
            (
                "kubernetes {\n labels a b c\n}",
                "unable to parse label selector value: 'a b c'",
            ),
            (
                "kubernetes {\n namespace_labels in\n namespaces a\n}",
                "namespaces and namespace_labels cannot both be set",
            ),
            (
                "kubernetes {\n ignore something\n}",
                "unable to parse ignore value: 'something'",
            ),
            (
                "kubernetes {\n startup_timeout forever\n}",
                "failed to parse startup_timeout",
            ),
            (
                "kubernetes {\n apiserver_qps -1\n}",
                "apiserver_qps must be >= 0",
            ),
            (
                "kubernetes {\n apiserver_qps x\n}",
                "invalid apiserver_qps \"x\"",
            ),
            ("kubernetes {\n bogus\n}", "unknown property 'bogus'"),
            (
                "kubernetes {\n snapshot a\n endpoint http://x\n}",
                "snapshot cannot be combined",
            ),
            // setup_test.go TestKubernetesParseZonal.
            ("kubernetes {\n zonal us-west-2a\n}", "Wrong argument count"),
            (
                "kubernetes {\n zonal\n noendpoints\n}",
                "zonal requires the endpoint cache; remove noendpoints",
            ),
        ];
        for (input, want) in cases {
            let err = run(input).expect_err(input).to_string();
            assert!(err.contains(want), "{input}: {err}");
        }
    }
}
