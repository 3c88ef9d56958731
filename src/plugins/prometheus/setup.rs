//! `prometheus [ADDRESS] { runtime_metrics | tls CONFIGFILE }`

use crate::corefile::{Dispenser, Error};
use crate::plugins::health::address_arg;

/// The `prometheus` configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrometheusConfig {
    /// Listen address (default `localhost:9153`).
    pub addr: String,
    /// `tls CONFIGFILE`: a Prometheus web configuration file (read at build time).
    pub tls: Option<std::path::PathBuf>,
}

impl Default for PrometheusConfig {
    fn default() -> Self {
        Self {
            addr: "localhost:9153".into(),
            tls: None,
        }
    }
}

/// Parses the `prometheus` directive.
pub fn parse(d: &mut Dispenser<'_>) -> Result<PrometheusConfig, Error> {
    let mut cfg = PrometheusConfig::default();
    while d.next() {
        address_arg(d, &mut cfg.addr)?;
        while d.next_block() {
            match d.val() {
                // Go runtime metrics have no Rust counterpart; accepted so Corefiles load.
                "runtime_metrics" => d.expect_no_more_args()?,
                "tls" => {
                    if cfg.tls.is_some() {
                        return Err(d.err("tls block already specified"));
                    }
                    cfg.tls = Some(d.single_arg()?.into());
                }
                other => return Err(d.err(format!("unknown property '{other}'"))),
            }
        }
    }
    Ok(cfg)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::corefile::lexer::lex;

    fn run(input: &str) -> Result<PrometheusConfig, Error> {
        let toks = lex(&Arc::from("Corefile"), input);
        parse(&mut Dispenser::new(&toks))
    }

    #[test]
    fn table() {
        assert_eq!(run("prometheus").unwrap().addr, "localhost:9153");
        assert_eq!(run("prometheus :9153").unwrap().addr, ":9153");
        assert_eq!(run("prometheus 0.0.0.0:9153").unwrap().addr, "0.0.0.0:9153");
        assert!(run("prometheus {\n runtime_metrics\n}").is_ok());
        let c = run("prometheus :9153 {\n tls /etc/coredns/web.yml\n}").unwrap();
        assert_eq!(c.tls, Some("/etc/coredns/web.yml".into()));
        let bad: &[(&str, &str)] = &[
            ("prometheus a:1 b:2", "Wrong argument count"),
            ("prometheus 9153", "missing port"),
            ("prometheus {\n tls\n}", "Wrong argument count"),
            ("prometheus {\n tls a.yml b.yml\n}", "Wrong argument count"),
            (
                "prometheus {\n tls a.yml\n tls b.yml\n}",
                "tls block already specified",
            ),
            ("prometheus {\n path /m\n}", "unknown property 'path'"),
        ];
        for (input, want) in bad {
            let e = run(input).unwrap_err().to_string();
            assert!(e.contains(want), "{input}: {e}");
        }
    }
}
