//! `forward FROM TO... { … }` → [`ForwardConfig`] (CoreDNS's plugin/forward/setup.go).

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use hickory_proto::op::ResponseCode;

use crate::corefile::address::fqdn;
use crate::corefile::dispenser::parse_duration;
use crate::corefile::{Dispenser, Error};
use crate::plugins::log::rcode_from_name;
use crate::plugins::origins;

/// CoreDNS's limit on upstreams per `forward`.
pub const MAX_UPSTREAMS: usize = 15;

/// How upstreams are ordered for each query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// A random permutation per query (default).
    Random,
    /// Rotate the list by one per query.
    RoundRobin,
    /// Configured order.
    Sequential,
}

/// Where `TO` came from: an address, or a resolv.conf-style file (re-read when it changes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum To {
    /// `IP[:PORT]` or `dns://IP[:PORT]`.
    Addr(SocketAddr),
    /// `tls://IP[%SERVERNAME][:PORT]`: DNS over TLS (port 853 by default).
    Tls(SocketAddr, Option<String>),
    /// A resolv.conf-style file: its `nameserver` lines, port 53.
    File(PathBuf),
}

/// One `forward` line.
#[derive(Debug, Clone, PartialEq)]
pub struct ForwardConfig {
    /// `FROM` (lower-case FQDN; `.` = everything).
    pub from: String,
    /// `except` names.
    pub except: Vec<String>,
    /// Upstreams as written.
    pub to: Vec<To>,
    /// `force_tcp`.
    pub force_tcp: bool,
    /// `prefer_udp`.
    pub prefer_udp: bool,
    /// `expire` (accepted; connections are not pooled yet).
    pub expire: Duration,
    /// `max_fails` (0 = never mark an upstream down).
    pub max_fails: u32,
    /// `health_check` interval.
    pub health_check: Duration,
    /// `health_check … no_rec`: probe with RD=0.
    pub health_check_no_rec: bool,
    /// `health_check … domain NAME`.
    pub health_check_domain: String,
    /// `read_timeout`.
    pub read_timeout: Duration,
    /// `policy`.
    pub policy: Policy,
    /// `max_concurrent` (0 = unlimited).
    pub max_concurrent: u32,
    /// `next RCODE...`: pass these on to a following `forward`.
    pub next: Vec<ResponseCode>,
    /// `failfast_all_unhealthy_upstreams`.
    pub failfast: bool,
    /// `tls [CERT KEY [CA]] | [CA]`: client certificate and CA for `tls://` upstreams.
    pub tls: TlsOptions,
    /// `tls_servername`: the name `tls://` upstreams' certificates must carry.
    pub tls_servername: Option<String>,
}

/// Files of the `tls` option.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsOptions {
    /// Client certificate (PEM).
    pub cert: Option<PathBuf>,
    /// Client key (PEM).
    pub key: Option<PathBuf>,
    /// CA bundle (PEM); the system's roots when absent.
    pub ca: Option<PathBuf>,
}

/// The resolver addresses in a resolv.conf-style file.
pub fn resolv_conf(path: &std::path::Path) -> std::io::Result<Vec<SocketAddr>> {
    let text = std::fs::read_to_string(path)?;
    Ok(text
        .lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            (w.next() == Some("nameserver"))
                .then(|| w.next())
                .flatten()
                .and_then(|ip| ip.split('%').next()?.parse::<IpAddr>().ok())
                .map(|ip| SocketAddr::new(ip, 53))
        })
        .collect())
}

fn parse_to(arg: &str) -> Result<To, String> {
    let (scheme, rest) = match arg.split_once("://") {
        Some((s, r)) => (s.to_ascii_lowercase(), r),
        None => ("dns".to_string(), arg),
    };
    match scheme.as_str() {
        "dns" => {}
        "tls" => {
            // IP, IP:PORT, [V6]:PORT, with an optional %SERVERNAME after the address.
            let (host, port) = match rest.rsplit_once(':') {
                Some((h, p))
                    if !h.is_empty()
                        && p.parse::<u16>().is_ok()
                        && (h.starts_with('[') || !h.contains(':')) =>
                {
                    (
                        h.trim_start_matches('[').trim_end_matches(']'),
                        p.parse().unwrap_or(853),
                    )
                }
                _ => (rest.trim_start_matches('[').trim_end_matches(']'), 853),
            };
            let (ip, name) = match host.split_once('%') {
                Some((ip, name)) => (ip, Some(name.to_string())),
                None => (host, None),
            };
            let ip: IpAddr = ip
                .parse()
                .map_err(|_| format!("not an IP address: \"{arg}\""))?;
            return Ok(To::Tls(SocketAddr::new(ip, port), name));
        }
        "https" => {
            return Err(format!(
                "'{scheme}' upstreams are not built yet in clusterdns"
            ));
        }
        other => {
            return Err(format!(
                "'{other}' is not supported as a destination protocol in forward: {arg}"
            ));
        }
    }
    if let Ok(ip) = rest.parse::<IpAddr>() {
        return Ok(To::Addr(SocketAddr::new(ip, 53)));
    }
    if let Ok(sa) = rest.parse::<SocketAddr>() {
        return Ok(To::Addr(sa));
    }
    if scheme == "dns" && arg == rest && std::path::Path::new(rest).is_file() {
        return Ok(To::File(PathBuf::from(rest)));
    }
    Err(format!("not an IP address or file: \"{arg}\""))
}

/// Parses every `forward` line of a block, in Corefile order.
pub fn parse(d: &mut Dispenser<'_>) -> Result<Vec<ForwardConfig>, Error> {
    let mut out = Vec::new();
    while d.next() {
        out.push(parse_one(d)?);
    }
    Ok(out)
}

fn one_duration(d: &mut Dispenser<'_>) -> Result<Duration, Error> {
    let v = d.single_arg()?;
    parse_duration(&v).ok_or_else(|| d.err(format!("time: invalid duration \"{v}\"")))
}

fn one_int(d: &mut Dispenser<'_>) -> Result<i64, Error> {
    let v = d.single_arg()?;
    v.parse()
        .map_err(|_| d.err(format!("strconv.Atoi: parsing \"{v}\": invalid syntax")))
}

fn parse_one(d: &mut Dispenser<'_>) -> Result<ForwardConfig, Error> {
    let args = d.remaining_args();
    let Some((from, tos)) = args.split_first() else {
        return Err(d.arg_err());
    };
    if tos.is_empty() {
        return Err(d.arg_err());
    }
    let from = origins(std::slice::from_ref(from), &[])
        .map_err(|e| d.err(e))?
        .into_iter()
        .next()
        .unwrap_or_else(|| ".".into());
    let to = tos
        .iter()
        .map(|t| parse_to(t))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| d.err(e))?;
    if to.len() > MAX_UPSTREAMS {
        return Err(d.err(format!(
            "more than {MAX_UPSTREAMS} TOs configured: {}",
            to.len()
        )));
    }
    let mut c = ForwardConfig {
        from,
        except: Vec::new(),
        to,
        force_tcp: false,
        prefer_udp: false,
        expire: Duration::from_secs(10),
        max_fails: 2,
        health_check: Duration::from_millis(500),
        health_check_no_rec: false,
        health_check_domain: ".".into(),
        read_timeout: Duration::from_secs(2),
        policy: Policy::Random,
        max_concurrent: 0,
        next: Vec::new(),
        failfast: false,
        tls: TlsOptions::default(),
        tls_servername: None,
    };
    while d.next_block() {
        match d.val() {
            "except" => {
                let names = d.remaining_args();
                if names.is_empty() {
                    return Err(d.arg_err());
                }
                c.except
                    .extend(names.iter().map(|n| fqdn(&n.to_ascii_lowercase())));
            }
            "force_tcp" => {
                d.expect_no_more_args()?;
                c.force_tcp = true;
            }
            "prefer_udp" => {
                d.expect_no_more_args()?;
                c.prefer_udp = true;
            }
            "failfast_all_unhealthy_upstreams" => {
                d.expect_no_more_args()?;
                c.failfast = true;
            }
            "expire" => c.expire = one_duration(d)?,
            "read_timeout" => {
                c.read_timeout = one_duration(d)?;
                if c.read_timeout.is_zero() {
                    return Err(d.err("read_timeout must be greater than 0"));
                }
            }
            "max_fails" => {
                let n = one_int(d)?;
                if n < 0 {
                    return Err(d.err("max_fails can't be negative: ".to_string() + &n.to_string()));
                }
                c.max_fails = u32::try_from(n).unwrap_or(u32::MAX);
            }
            "max_concurrent" => {
                let n = one_int(d)?;
                if n < 0 {
                    return Err(d.err(format!("max_concurrent can't be negative: {n}")));
                }
                c.max_concurrent = u32::try_from(n).unwrap_or(u32::MAX);
            }
            "health_check" => {
                let args = d.remaining_args();
                let Some((dur, rest)) = args.split_first() else {
                    return Err(d.arg_err());
                };
                c.health_check = parse_duration(dur)
                    .ok_or_else(|| d.err(format!("time: invalid duration \"{dur}\"")))?;
                let mut it = rest.iter();
                while let Some(a) = it.next() {
                    match a.as_str() {
                        "no_rec" => c.health_check_no_rec = true,
                        "domain" => {
                            let Some(n) = it.next() else {
                                return Err(d.arg_err());
                            };
                            c.health_check_domain = fqdn(&n.to_ascii_lowercase());
                        }
                        other => {
                            return Err(d.err(format!("health_check: unknown option {other}")));
                        }
                    }
                }
            }
            "policy" => {
                let p = d.single_arg()?;
                c.policy = match p.as_str() {
                    "random" => Policy::Random,
                    "round_robin" => Policy::RoundRobin,
                    "sequential" => Policy::Sequential,
                    other => return Err(d.err(format!("unknown policy '{other}'"))),
                };
            }
            "next" => {
                let args = d.remaining_args();
                if args.is_empty() {
                    return Err(d.arg_err());
                }
                for a in args {
                    c.next.push(
                        rcode_from_name(&a)
                            .ok_or_else(|| d.err(format!("'{a}' is not a valid rcode")))?,
                    );
                }
            }
            "max_age" | "max_idle_conns" | "max_connect_attempts" | "source_address" => {
                // Connection-pool and source settings: accepted, see README.
                if d.remaining_args().is_empty() {
                    return Err(d.arg_err());
                }
            }
            "tls" => {
                let a = d.remaining_args();
                c.tls = match a.as_slice() {
                    [] => TlsOptions::default(),
                    [ca] => TlsOptions {
                        ca: Some(ca.into()),
                        ..TlsOptions::default()
                    },
                    [cert, key] => TlsOptions {
                        cert: Some(cert.into()),
                        key: Some(key.into()),
                        ca: None,
                    },
                    [cert, key, ca] => TlsOptions {
                        cert: Some(cert.into()),
                        key: Some(key.into()),
                        ca: Some(ca.into()),
                    },
                    _ => return Err(d.arg_err()),
                };
            }
            "tls_servername" => {
                let name = d.single_arg()?;
                c.tls_servername = Some(name.clone());
            }
            opt @ ("doh_method" | "failover" | "next_on_nodata" | "resolver") => {
                return Err(d.err(format!("{opt} is not built yet in clusterdns")));
            }
            other => return Err(d.err(format!("unknown property '{other}'"))),
        }
    }
    if c.tls_servername.is_some() && c.to.iter().any(|t| matches!(t, To::Tls(_, Some(_)))) {
        return Err(
            d.err("both forward ('tls_servername') and proxy level TLS servernames are set")
        );
    }
    if c.force_tcp && c.prefer_udp {
        return Err(d.err("force_tcp and prefer_udp can not be used together"));
    }
    Ok(c)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::corefile::lexer::lex;

    fn run(input: &str) -> Result<Vec<ForwardConfig>, Error> {
        let toks = lex(&Arc::from("Corefile"), input);
        parse(&mut Dispenser::new(&toks))
    }

    #[test]
    fn good() {
        let c = &run("forward . 127.0.0.1 dns://[::1]:5353 10.0.0.1:53").unwrap()[0];
        assert_eq!(c.from, ".");
        assert_eq!(
            c.to,
            [
                To::Addr("127.0.0.1:53".parse().unwrap()),
                To::Addr("[::1]:5353".parse().unwrap()),
                To::Addr("10.0.0.1:53".parse().unwrap())
            ]
        );
        assert_eq!((c.max_fails, c.policy), (2, Policy::Random));
        let dir = tempfile::tempdir().unwrap();
        let resolv = dir.path().join("resolv.conf");
        std::fs::write(
            &resolv,
            "search x\nnameserver 10.0.0.2\nnameserver fe80::1%eth0\n",
        )
        .unwrap();
        let c = &run(&format!(
            "forward Example.ORG {} {{\n except a.example.org\n max_concurrent 1000\n policy sequential\n health_check 5s no_rec domain example.net\n next NXDOMAIN\n prefer_udp\n}}",
            resolv.display()
        ))
        .unwrap()[0];
        assert_eq!(c.from, "example.org.");
        assert_eq!(c.to, [To::File(resolv.clone())]);
        assert_eq!(
            resolv_conf(&resolv).unwrap(),
            [
                "10.0.0.2:53".parse().unwrap(),
                "[fe80::1]:53".parse().unwrap()
            ]
        );
        assert_eq!(c.except, ["a.example.org."]);
        assert_eq!(c.max_concurrent, 1000);
        assert_eq!(c.health_check, Duration::from_secs(5));
        assert!(c.health_check_no_rec && c.prefer_udp);
        assert_eq!(c.next, [ResponseCode::NXDomain]);
        assert_eq!(
            run("forward . 1.1.1.1\nforward example.org 2.2.2.2")
                .unwrap()
                .len(),
            2
        );
        let c = &run("forward . tls://1.1.1.1 tls://[2606:4700::1111]:8853 tls://9.9.9.9%dns.quad9.net {\n tls /ca.pem\n}").unwrap()[0];
        assert_eq!(
            c.to,
            [
                To::Tls("1.1.1.1:853".parse().unwrap(), None),
                To::Tls("[2606:4700::1111]:8853".parse().unwrap(), None),
                To::Tls("9.9.9.9:853".parse().unwrap(), Some("dns.quad9.net".into())),
            ]
        );
        assert_eq!(c.tls.ca.as_deref(), Some(std::path::Path::new("/ca.pem")));
    }

    #[test]
    fn bad() {
        let cases = [
            ("forward", "Wrong argument count"),
            ("forward .", "Wrong argument count"),
            (
                "forward . nonsense",
                "not an IP address or file: \"nonsense\"",
            ),
            (
                "forward . udp://1.1.1.1",
                "'udp' is not supported as a destination protocol",
            ),
            (
                "forward . 1.1.1.1 {\n policy fastest\n}",
                "unknown policy 'fastest'",
            ),
            (
                "forward . 1.1.1.1 {\n max_fails -1\n}",
                "max_fails can't be negative",
            ),
            (
                "forward . 1.1.1.1 {\n force_tcp\n prefer_udp\n}",
                "can not be used together",
            ),
            ("forward . 1.1.1.1 {\n bogus\n}", "unknown property 'bogus'"),
            (
                "forward . 1.1.1.1 {\n next MAYBE\n}",
                "'MAYBE' is not a valid rcode",
            ),
            ("forward . 1.1.1.1 {\n expire\n}", "Wrong argument count"),
            (
                "forward . tls://1.1.1.1%a {\n tls_servername b\n}",
                "TLS servernames are set",
            ),
            ("forward . tls://one.one", "not an IP address"),
        ];
        for (input, want) in cases {
            let err = run(input).expect_err(input).to_string();
            assert!(err.contains(want), "{input}: {err}");
        }
        let many = format!("forward . {}", vec!["1.1.1.1"; 16].join(" "));
        assert!(
            run(&many)
                .unwrap_err()
                .to_string()
                .contains("more than 15 TOs")
        );
    }
}
