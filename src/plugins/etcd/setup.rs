//! `etcd [ZONES...] { fallthrough; path; endpoint; credentials; tls; min-lease-ttl;
//! max-lease-ttl }` → [`EtcdConfig`] (CoreDNS's plugin/etcd/setup.go).

use std::path::PathBuf;

use crate::corefile::{Dispenser, Error};
use crate::plugins::{Fall, origins};

use super::client::Endpoint;

/// A parsed `etcd` directive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdConfig {
    /// Zones answered (default: the block's).
    pub zones: Vec<String>,
    /// `fallthrough [ZONES]`.
    pub fall: Fall,
    /// The key prefix (default `/skydns`), without its slashes.
    pub path: String,
    /// Endpoints (default `http://localhost:2379`).
    pub endpoints: Vec<Endpoint>,
    /// `credentials USER PASSWORD`.
    pub credentials: Option<(String, String)>,
    /// `tls [CERT KEY [CACERT]] | [CACERT]`: (cert, key, ca).
    pub tls: Option<(Option<PathBuf>, Option<PathBuf>, Option<PathBuf>)>,
    /// Bounds of TTLs taken from leases (default 30s and 24h).
    pub min_lease_ttl: u32,
    /// See `min_lease_ttl`.
    pub max_lease_ttl: u32,
}

/// CoreDNS's `parseTTL`: seconds, or a Go duration (`30s`, `5m`, `2h30m`).
fn lease_ttl(d: &Dispenser<'_>, v: &str, what: &str) -> Result<u32, Error> {
    let bad = || {
        d.err(format!(
            "invalid {what} value: invalid TTL format, use format like '30', '30s', '5m', '1h', or '2h30m'"
        ))
    };
    if let Ok(n) = v.parse::<u64>() {
        return u32::try_from(n).map_err(|_| bad());
    }
    let dur = crate::corefile::dispenser::parse_duration(v).ok_or_else(bad)?;
    u32::try_from(dur.as_secs()).map_err(|_| bad())
}

/// Parses the directive (once per block).
pub fn parse(d: &mut Dispenser<'_>, block_zones: &[String]) -> Result<EtcdConfig, Error> {
    d.next();
    let zones = origins(&d.remaining_args(), block_zones).map_err(|e| d.err(e))?;
    let mut c = EtcdConfig {
        zones,
        fall: Fall::none(),
        path: "skydns".into(),
        endpoints: vec![Endpoint::parse("http://localhost:2379").expect("default endpoint")],
        credentials: None,
        tls: None,
        min_lease_ttl: 30,
        max_lease_ttl: 86400,
    };
    while d.next_block() {
        match d.val() {
            "fallthrough" => c.fall = Fall::parse(&d.remaining_args()),
            // Accepted and ignored, as CoreDNS does.
            "stubzones" | "debug" => {}
            "upstream" => {
                d.remaining_args();
            }
            "path" => {
                let v = d.expect_arg()?.to_string();
                c.path = v.trim_matches('/').to_string();
            }
            "endpoint" => {
                let args = d.remaining_args();
                if args.is_empty() {
                    return Err(d.arg_err());
                }
                c.endpoints = args
                    .iter()
                    .map(|a| Endpoint::parse(a).map_err(|e| d.err(e)))
                    .collect::<Result<_, _>>()?;
            }
            "credentials" => {
                let args = d.remaining_args();
                if args.is_empty() {
                    return Err(d.arg_err());
                }
                if args.len() != 2 {
                    return Err(d.err("credentials requires 2 arguments, username and password"));
                }
                c.credentials = Some((args[0].clone(), args[1].clone()));
            }
            "tls" => {
                let a: Vec<PathBuf> = d.remaining_args().into_iter().map(PathBuf::from).collect();
                c.tls = Some(match a.as_slice() {
                    [] => (None, None, None),
                    [ca] => (None, None, Some(ca.clone())),
                    [cert, key] => (Some(cert.clone()), Some(key.clone()), None),
                    [cert, key, ca] => (Some(cert.clone()), Some(key.clone()), Some(ca.clone())),
                    _ => return Err(d.err("maximum of three arguments allowed for TLS config")),
                });
            }
            "min-lease-ttl" => {
                let v = d.expect_arg()?.to_string();
                c.min_lease_ttl = lease_ttl(d, &v, "min-lease-ttl")?;
            }
            "max-lease-ttl" => {
                let v = d.expect_arg()?.to_string();
                c.max_lease_ttl = lease_ttl(d, &v, "max-lease-ttl")?;
            }
            other => return Err(d.err(format!("unknown property '{other}'"))),
        }
    }
    Ok(c)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::corefile::lexer::lex;

    fn run(s: &str) -> Result<EtcdConfig, Error> {
        let toks = lex(&Arc::from("Corefile"), s);
        parse(&mut Dispenser::new(&toks), &["skydns.local.".to_string()])
    }

    // CoreDNS's setup_test.go TestSetupEtcd and TestParseTTL, plus error cases.
    #[test]
    fn table() {
        let c = run("etcd").unwrap();
        assert_eq!(c.zones, ["skydns.local."]);
        assert_eq!(c.path, "skydns");
        assert_eq!(
            c.endpoints,
            [Endpoint::parse("http://localhost:2379").unwrap()]
        );
        assert_eq!((c.min_lease_ttl, c.max_lease_ttl), (30, 86400));
        let c = run("etcd skydns.local {\n endpoint http://localhost:2379 http://localhost:4001\n path /skydns/\n fallthrough\n stubzones\n upstream 8.8.8.8\n}").unwrap();
        assert_eq!(c.endpoints.len(), 2);
        assert_eq!(c.path, "skydns");
        assert!(c.fall.through("x.skydns.local."));
        let c = run("etcd {\n credentials username password\n}").unwrap();
        assert_eq!(c.credentials, Some(("username".into(), "password".into())));
        let c =
            run("etcd {\n tls cert.pem key.pem ca.pem\n min-lease-ttl 1m\n max-lease-ttl 2h30m\n}")
                .unwrap();
        assert_eq!(
            c.tls,
            Some((
                Some("cert.pem".into()),
                Some("key.pem".into()),
                Some("ca.pem".into())
            ))
        );
        assert_eq!((c.min_lease_ttl, c.max_lease_ttl), (60, 9000));
        assert_eq!(
            run("etcd {\n tls ca.pem\n}").unwrap().tls,
            Some((None, None, Some("ca.pem".into())))
        );
        assert_eq!(
            run("etcd {\n min-lease-ttl 45\n}").unwrap().min_lease_ttl,
            45
        );
        for (bad, want) in [
            ("etcd {\n endpoint\n}", "Wrong argument count"),
            (
                "etcd {\n endpoint localhost:2379\n}",
                "must start with http:// or https://",
            ),
            (
                "etcd {\n credentials username\n}",
                "credentials requires 2 arguments",
            ),
            ("etcd {\n credentials\n}", "Wrong argument count"),
            ("etcd {\n path\n}", "Wrong argument count"),
            ("etcd {\n tls a b c d\n}", "maximum of three arguments"),
            (
                "etcd {\n min-lease-ttl soon\n}",
                "invalid min-lease-ttl value",
            ),
            (
                "etcd {\n max-lease-ttl -5\n}",
                "invalid max-lease-ttl value",
            ),
            ("etcd {\n bogus\n}", "unknown property 'bogus'"),
        ] {
            let e = run(bad).unwrap_err().to_string();
            assert!(e.contains(want), "{bad}: {e}");
        }
    }
}
