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
    /// `failover RCODE...`: a reply with one of these rcodes is retried on the next upstream.
    pub failover: Vec<ResponseCode>,
    /// `next_on_nodata`: an empty NOERROR reply is handed to the following `forward` line.
    pub next_on_nodata: bool,
    /// `source_address`: the local address upstream queries are sent from.
    pub source_address: Option<IpAddr>,
    /// `max_connect_attempts` (validated; `None` = not set).
    pub max_connect_attempts: Option<u32>,
    /// `max_idle_conns` (validated; 0 = no limit).
    pub max_idle_conns: u32,
    /// `max_age` (validated; 0 = unlimited).
    pub max_age: Duration,
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
    Err(format!(
        "failed to resolve \"{arg}\": not an IP address or file (host names as upstreams are not built in clusterdns)"
    ))
}

/// Whether `name` (an FQDN) is a valid domain name: labels of 1 to 63 octets, at most 255 in
/// all (miekg/dns `IsDomainName`).
fn valid_name(name: &str) -> bool {
    name == "."
        || (name.len() <= 255
            && name
                .trim_end_matches('.')
                .split('.')
                .all(|l| !l.is_empty() && l.len() <= 63))
}

/// Parses every `forward` line of a block, in Corefile order.
pub fn parse(d: &mut Dispenser<'_>) -> Result<Vec<ForwardConfig>, Error> {
    let mut out = Vec::new();
    while d.next() {
        out.push(parse_one(d)?);
    }
    Ok(out)
}

/// A Go `time.ParseDuration` value that may carry a sign: `(negative, magnitude)`.
fn signed_duration(d: &mut Dispenser<'_>) -> Result<(bool, Duration), Error> {
    let v = d.single_arg()?;
    let (neg, mag) = match v.strip_prefix('-') {
        Some(m) => (true, m),
        None => (false, v.strip_prefix('+').unwrap_or(&v)),
    };
    let dur =
        parse_duration(mag).ok_or_else(|| d.err(format!("time: invalid duration \"{v}\"")))?;
    Ok((neg && !dur.is_zero(), dur))
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
        .ok()
        .and_then(|z| z.into_iter().next())
        .filter(|z| valid_name(z))
        .ok_or_else(|| d.err(format!("unable to normalize '{from}'")))?;
    for t in tos {
        if let Some(rest) = t.strip_prefix("https://")
            && rest.contains('/')
        {
            return Err(d.err(format!("paths are not allowed in HTTPS upstream addresses (the /dns-query path is used by default): {t}")));
        }
    }
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
        failover: Vec::new(),
        next_on_nodata: false,
        source_address: None,
        max_connect_attempts: None,
        max_idle_conns: 0,
        max_age: Duration::ZERO,
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
            "expire" => {
                let (neg, v) = signed_duration(d)?;
                if neg {
                    return Err(d.err(format!("expire can't be negative: -{v:?}")));
                }
                c.expire = v;
            }
            "max_age" => {
                let (neg, v) = signed_duration(d)?;
                if neg {
                    return Err(d.err(format!("max_age can't be negative: -{v:?}")));
                }
                c.max_age = v;
            }
            "read_timeout" => {
                let (neg, v) = signed_duration(d)?;
                if neg || v.is_zero() {
                    let sign = if neg { "-" } else { "" };
                    return Err(d.err(format!("read_timeout must be positive: {sign}{v:?}")));
                }
                c.read_timeout = v;
            }
            "max_connect_attempts" => {
                let v = d.single_arg()?;
                let n: u32 = v.parse().map_err(|_| {
                    d.err(format!(
                        "strconv.ParseUint: parsing \"{v}\": invalid syntax"
                    ))
                })?;
                c.max_connect_attempts = Some(n);
            }
            "max_idle_conns" => {
                let n = one_int(d)?;
                if n < 0 {
                    return Err(d.err(format!("max_idle_conns can't be negative: {n}")));
                }
                c.max_idle_conns = u32::try_from(n).unwrap_or(u32::MAX);
            }
            "source_address" => {
                let v = d.single_arg()?;
                let ip: IpAddr = v
                    .parse()
                    .map_err(|_| d.err(format!("invalid IP address: {v}")))?;
                c.source_address = Some(ip.to_canonical());
            }
            "next_on_nodata" => {
                d.expect_no_more_args()?;
                c.next_on_nodata = true;
            }
            "failover" => {
                let args = d.remaining_args();
                if args.is_empty() {
                    return Err(d.arg_err());
                }
                for a in args {
                    let rc = rcode_from_name(&a)
                        .ok_or_else(|| d.err(format!("{a} is not a valid rcode")))?;
                    if rc == ResponseCode::NoError {
                        return Err(d.err("NoError cannot be used in failover"));
                    }
                    c.failover.push(rc);
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
                let neg = dur.starts_with('-');
                c.health_check = parse_duration(dur.trim_start_matches('-'))
                    .ok_or_else(|| d.err(format!("time: invalid duration \"{dur}\"")))?;
                if neg && !c.health_check.is_zero() {
                    return Err(d.err(format!("health_check can't be negative: {dur}")));
                }
                c.health_check_domain = ".".into();
                let mut it = rest.iter();
                while let Some(a) = it.next() {
                    match a.as_str() {
                        "no_rec" => c.health_check_no_rec = true,
                        "domain" => {
                            let Some(n) = it.next() else {
                                return Err(d.err(
                                    "Wrong argument count or unexpected line ending after 'domain'",
                                ));
                            };
                            let name = fqdn(&n.to_ascii_lowercase());
                            if !valid_name(&name) {
                                return Err(d.err(format!("health_check: invalid domain name {n}")));
                            }
                            c.health_check_domain = name;
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
            opt @ ("doh_method" | "resolver") => {
                return Err(d.err(format!("{opt} is not built yet in clusterdns")));
            }
            other => return Err(d.err(format!("unknown property '{other}'"))),
        }
    }
    if let Some(forward_name) = &c.tls_servername {
        for t in &c.to {
            if let To::Tls(addr, Some(name)) = t {
                return Err(d.err(format!("both forward ('{forward_name}') and proxy level ('{name}') TLS servernames are set for upstream proxy 'tls://{addr}'")));
            }
        }
    }
    let found: usize =
        c.to.iter()
            .map(|t| match t {
                To::File(p) => resolv_conf(p).map(|a| a.len()).unwrap_or(0),
                _ => 1,
            })
            .sum();
    if found == 0 {
        return Err(d.err("no valid upstream addresses found"));
    }
    if c.max_age > Duration::ZERO && c.max_age < c.expire {
        return Err(d.err(format!(
            "max_age ({:?}) must not be less than expire ({:?})",
            c.max_age, c.expire
        )));
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
                "failed to resolve \"nonsense\": not an IP address or file",
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
            ("forward . 1.1.1.1 {\n bogus\n}", "unknown property 'bogus'"),
            (
                "forward . 1.1.1.1 {\n next MAYBE\n}",
                "'MAYBE' is not a valid rcode",
            ),
            ("forward . 1.1.1.1 {\n expire\n}", "Wrong argument count"),
            (
                "forward . tls://1.1.1.1%a {\n tls_servername b\n}",
                "both forward ('b') and proxy level ('a') TLS servernames are set for upstream proxy 'tls://1.1.1.1:853'",
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

    /// Runs `input`; `Ok(first line)` or the error text.
    fn first(input: &str) -> Result<ForwardConfig, String> {
        run(input)
            .map(|mut v| v.remove(0))
            .map_err(|e| e.to_string())
    }

    /// Asserts that `input` fails with an error containing `want`.
    fn fails(input: &str, want: &str) {
        match first(input) {
            Ok(c) => panic!("{input}: expected an error containing {want:?}, got {c:?}"),
            Err(e) => assert!(e.contains(want), "{input}: {e} lacks {want:?}"),
        }
    }

    // plugin/forward/setup_test.go: TestSetup
    // (input, from, max_fails, force_tcp, prefer_udp, health-check RD, health-check domain)
    #[test]
    fn coredns_test_setup() {
        let good: &[(&str, &str, u32, bool, bool, bool, &str)] = &[
            ("forward . 127.0.0.1", ".", 2, false, false, true, "."),
            (
                "forward . 127.0.0.1 {\nhealth_check 0.5s domain example.org\n}\n",
                ".",
                2,
                false,
                false,
                true,
                "example.org.",
            ),
            (
                "forward . 127.0.0.1 {\nexcept miek.nl\n}\n",
                ".",
                2,
                false,
                false,
                true,
                ".",
            ),
            (
                "forward . 127.0.0.1 {\nmax_fails 3\n}\n",
                ".",
                3,
                false,
                false,
                true,
                ".",
            ),
            (
                "forward . 127.0.0.1 {\nforce_tcp\n}\n",
                ".",
                2,
                true,
                false,
                true,
                ".",
            ),
            (
                "forward . 127.0.0.1 {\nprefer_udp\n}\n",
                ".",
                2,
                false,
                true,
                true,
                ".",
            ),
            (
                "forward . 127.0.0.1 {\nforce_tcp\nprefer_udp\n}\n",
                ".",
                2,
                true,
                true,
                true,
                ".",
            ),
            ("forward . 127.0.0.1:53", ".", 2, false, false, true, "."),
            ("forward . 127.0.0.1:8080", ".", 2, false, false, true, "."),
            ("forward . [::1]:53", ".", 2, false, false, true, "."),
            ("forward . [2003::1]:53", ".", 2, false, false, true, "."),
            ("forward . 127.0.0.1 \n", ".", 2, false, false, true, "."),
            (
                "forward 10.9.3.0/18 127.0.0.1",
                "0.9.10.in-addr.arpa.",
                2,
                false,
                false,
                true,
                ".",
            ),
            (
                "forward . ::1\n\t\tforward com ::2",
                ".",
                2,
                false,
                false,
                true,
                ".",
            ),
            (
                "forward . tls://[2400:3200::1%dns.alidns.com]:853 {\ntls\n}\n",
                ".",
                2,
                false,
                false,
                true,
                ".",
            ),
        ];
        for &(input, from, fails_, tcp, udp, rd, domain) in good {
            let c = first(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(c.from, from, "{input}");
            assert_eq!(c.max_fails, fails_, "{input}");
            assert_eq!((c.force_tcp, c.prefer_udp), (tcp, udp), "{input}");
            assert_eq!(!c.health_check_no_rec, rd, "{input}");
            assert_eq!(c.health_check_domain, domain, "{input}");
        }
        assert_eq!(
            first("forward . 127.0.0.1 {\nexcept miek.nl\n}\n")
                .unwrap()
                .except,
            ["miek.nl."]
        );
        // `forward . https://127.0.0.1` (DoH upstream) is not built: see README, Compatibility.
        fails("forward . https://127.0.0.1 \n", "not built");
        let bad: &[(&str, &str)] = &[
            (
                "forward . https://1.1.1.1/ \n",
                "paths are not allowed in HTTPS upstream addresses",
            ),
            ("forward . a27.0.0.1", "failed to resolve"),
            ("forward . 127.0.0.1 {\nblaatl\n}\n", "unknown property"),
            (
                "forward . 127.0.0.1 {\nhealth_check 0.5s domain\n}\n",
                "Wrong argument count or unexpected line ending after 'domain'",
            ),
            (
                "forward xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx 127.0.0.1 \n",
                "unable to normalize 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx'",
            ),
        ];
        for (input, want) in bad {
            fails(input, want);
        }
    }

    // plugin/forward/setup_test.go: TestSourceAddress
    #[test]
    fn coredns_test_source_address() {
        let ok: &[(&str, &str)] = &[
            (
                "forward . 127.0.0.1 {\nsource_address 192.0.2.1\n}\n",
                "192.0.2.1",
            ),
            (
                "forward . 127.0.0.1 {\nsource_address 2001:0db8:85a3:0000:1319:8a2e:0370:7344\n}\n",
                "2001:0db8:85a3:0000:1319:8a2e:0370:7344",
            ),
            (
                "forward . 127.0.0.1 {\nsource_address ::ffff:192.0.2.1\n}\n",
                "192.0.2.1",
            ),
        ];
        for (input, want) in ok {
            let want: IpAddr = want.parse().unwrap();
            assert_eq!(first(input).unwrap().source_address, Some(want), "{input}");
        }
        fails(
            "forward . 127.0.0.1 {\nsource_address not-an-ip\n}\n",
            "invalid IP address",
        );
        fails(
            "forward . 127.0.0.1 {\nsource_address \n}\n",
            "Error during parsing: Wrong argument count or unexpected line ending after 'source_address'",
        );
    }

    // plugin/forward/setup_test.go: TestSplitZone, through the upstreams it yields
    // (input, address, server name).
    #[test]
    fn coredns_test_split_zone() {
        let cases: &[(&str, &str, Option<&str>)] = &[
            (
                "tls://127.0.0.1%example.net:854",
                "127.0.0.1:854",
                Some("example.net"),
            ),
            (
                "tls://127.0.0.1%example.net",
                "127.0.0.1:853",
                Some("example.net"),
            ),
            ("tls://127.0.0.1:854", "127.0.0.1:854", None),
            (
                "tls://[::1%example.net]:853",
                "[::1]:853",
                Some("example.net"),
            ),
        ];
        for (to, addr, name) in cases {
            let c = first(&format!("forward . {to}")).unwrap();
            assert_eq!(
                c.to,
                [To::Tls(addr.parse().unwrap(), name.map(String::from))],
                "{to}"
            );
        }
        let c = first("forward . dns://127.0.0.1").unwrap();
        assert_eq!(c.to, [To::Addr("127.0.0.1:53".parse().unwrap())]);
    }

    // plugin/forward/setup_test.go: TestSetupTLS (input, server name of the first upstream)
    #[test]
    fn coredns_test_setup_tls() {
        let name = |c: &ForwardConfig| match &c.to[0] {
            To::Tls(_, Some(n)) => Some(n.clone()),
            _ => c.tls_servername.clone(),
        };
        let ok: &[(&str, Option<&str>)] = &[
            (
                "forward . tls://127.0.0.1 {\n\t\t\t\ttls_servername dns\n\t\t\t}",
                Some("dns"),
            ),
            (
                "forward . tls://127.0.0.1%example.net {\n\t\t\t\ttls\n\t\t\t}",
                Some("example.net"),
            ),
            (
                "forward . tls://127.0.0.1%example.net:854 tls://127.0.0.2%example.net tls://fe80::1%example.com {\n\t\t\t\ttls\n\t\t\t}",
                Some("example.net"),
            ),
            (
                "forward . tls://127.0.0.1%example.net:854 {\n\t\t\t\ttls\n\t\t\t}",
                Some("example.net"),
            ),
            (
                "forward . 127.0.0.1 {\n\t\t\t\ttls_servername dns\n\t\t\t}",
                Some("dns"),
            ),
            ("forward . 127.0.0.1 {\n\t\t\t\ttls\n\t\t\t}", None),
            ("forward . tls://127.0.0.1", None),
            (
                "forward . tls://[2400:3200::1%dns.alidns.com]:853 {\n\t\t\t\ttls\n\t\t\t}",
                Some("dns.alidns.com"),
            ),
            (
                "forward . tls://[2400:3200::1]:853 {\n\t\t\t\ttls\n\t\t\t\ttls_servername dns.alidns.com\n\t\t\t}",
                Some("dns.alidns.com"),
            ),
        ];
        for (input, want) in ok {
            let c = first(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(name(&c).as_deref(), *want, "{input}");
        }
        let c = first("forward . tls://127.0.0.1%example.net:854 tls://127.0.0.2%example.net tls://fe80::1%example.com {\n tls\n}").unwrap();
        assert_eq!(
            c.to[2],
            To::Tls("[fe80::1]:853".parse().unwrap(), Some("example.com".into()))
        );
        fails(
            "forward . tls://127.0.0.1%example.net:854 {\n\t\t\t\ttls_servername foo\n\t\t\t}",
            "both forward ('foo') and proxy level ('example.net') TLS servernames are set for upstream proxy 'tls://127.0.0.1:854'",
        );
    }

    // plugin/forward/setup_test.go: TestSetupResolvconf
    #[test]
    fn coredns_test_setup_resolvconf() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, text: &str| {
            let p = dir.path().join(name);
            std::fs::write(&p, text).unwrap();
            p.display().to_string()
        };
        let resolv = write(
            "resolv.conf",
            "nameserver 10.10.255.252\nnameserver 10.10.255.253",
        );
        let v6 = write(
            "resolv-ipv6.conf",
            "nameserver 0388:d254:7aec:6892:9f7f:e93b:5806:1b0f%en0",
        );
        let empty = write("empty.conf", "# nameserver 1.1.1.1\n# nameserver 1.0.0.1");
        let null = write("null.conf", "");
        let addrs = |c: &ForwardConfig| -> Vec<SocketAddr> {
            c.to.iter()
                .flat_map(|t| match t {
                    To::File(p) => resolv_conf(p).unwrap(),
                    To::Addr(a) | To::Tls(a, _) => vec![*a],
                })
                .collect()
        };
        let sa = |v: &[&str]| -> Vec<SocketAddr> { v.iter().map(|s| s.parse().unwrap()).collect() };
        let c = first(&format!("forward . {resolv}")).unwrap();
        assert_eq!(addrs(&c), sa(&["10.10.255.252:53", "10.10.255.253:53"]));
        fails(
            &format!("forward . {null}"),
            "no valid upstream addresses found",
        );
        let c = first(&format!("forward . {v6}")).unwrap();
        assert_eq!(
            addrs(&c),
            sa(&["[0388:d254:7aec:6892:9f7f:e93b:5806:1b0f]:53"])
        );
        let c = first(&format!("forward . {empty} 127.0.0.1")).unwrap();
        assert_eq!(addrs(&c), sa(&["127.0.0.1:53"]));
    }

    // plugin/forward/setup_test.go: TestSetupMaxConcurrent, TestSetupMaxConnectAttempts,
    // TestSetupMaxIdleConns, TestSetupMaxAge, TestSetupReadTimeout
    #[test]
    fn coredns_test_setup_numbers() {
        let c = |o: &str| first(&format!("forward . 127.0.0.1 {{\n{o}\n}}\n"));
        assert_eq!(c("max_concurrent 1000").unwrap().max_concurrent, 1000);
        fails("forward . 127.0.0.1 {\nmax_concurrent many\n}\n", "invalid");
        fails("forward . 127.0.0.1 {\nmax_concurrent -4\n}\n", "negative");

        assert_eq!(c("").unwrap().max_connect_attempts, None);
        assert_eq!(
            c("max_connect_attempts 0").unwrap().max_connect_attempts,
            Some(0)
        );
        assert_eq!(
            c("max_connect_attempts 5").unwrap().max_connect_attempts,
            Some(5)
        );
        fails(
            "forward . 127.0.0.1 {\nmax_connect_attempts many\n}\n",
            "invalid",
        );
        fails(
            "forward . 127.0.0.1 {\nmax_connect_attempts -4\n}\n",
            "invalid",
        );

        assert_eq!(first("forward . 127.0.0.1\n").unwrap().max_idle_conns, 0);
        assert_eq!(c("max_idle_conns 10").unwrap().max_idle_conns, 10);
        assert_eq!(c("max_idle_conns 0").unwrap().max_idle_conns, 0);
        fails("forward . 127.0.0.1 {\nmax_idle_conns many\n}\n", "invalid");
        fails("forward . 127.0.0.1 {\nmax_idle_conns -1\n}\n", "negative");

        assert_eq!(
            first("forward . 127.0.0.1\n").unwrap().max_age,
            Duration::ZERO
        );
        assert_eq!(c("max_age 30s").unwrap().max_age, Duration::from_secs(30));
        assert_eq!(
            c("expire 10s\nmax_age 10s").unwrap().max_age,
            Duration::from_secs(10)
        );
        assert_eq!(c("max_age 0s").unwrap().max_age, Duration::ZERO);
        fails("forward . 127.0.0.1 {\nmax_age -1s\n}\n", "negative");
        fails("forward . 127.0.0.1 {\nmax_age invalid\n}\n", "invalid");
        fails(
            "forward . 127.0.0.1 {\nexpire 30s\nmax_age 10s\n}\n",
            "max_age",
        );

        // defaultReadTimeout is 2s in plugin/forward.
        assert_eq!(
            first("forward . 127.0.0.1\n").unwrap().read_timeout,
            Duration::from_secs(2)
        );
        assert_eq!(
            c("read_timeout 5s").unwrap().read_timeout,
            Duration::from_secs(5)
        );
        assert_eq!(
            c("read_timeout 500ms").unwrap().read_timeout,
            Duration::from_millis(500)
        );
        fails("forward . 127.0.0.1 {\nread_timeout 0s\n}\n", "positive");
        fails("forward . 127.0.0.1 {\nread_timeout -1s\n}\n", "positive");
        fails(
            "forward . 127.0.0.1 {\nread_timeout invalid\n}\n",
            "invalid",
        );
        assert!(c("read_timeout").is_err());
    }

    // plugin/forward/setup_test.go: TestSetupHealthCheck (input, RD, domain)
    #[test]
    fn coredns_test_setup_health_check() {
        let ok: &[(&str, bool, &str)] = &[
            ("forward . 127.0.0.1\n", true, "."),
            ("forward . 127.0.0.1 {\nhealth_check 0.5s\n}\n", true, "."),
            (
                "forward . 127.0.0.1 {\nhealth_check 0.5s no_rec\n}\n",
                false,
                ".",
            ),
            (
                "forward . 127.0.0.1 {\nhealth_check 0.5s no_rec domain example.org\n}\n",
                false,
                "example.org.",
            ),
            (
                "forward . 127.0.0.1 {\nhealth_check 0.5s domain example.org\n}\n",
                true,
                "example.org.",
            ),
            (
                "forward . 127.0.0.1 {\nhealth_check 0.5s domain .\n}\n",
                true,
                ".",
            ),
            (
                "forward . 127.0.0.1 {\nhealth_check 0.5s domain example.org.\n}\n",
                true,
                "example.org.",
            ),
        ];
        for (input, rd, domain) in ok {
            let c = first(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(
                (!c.health_check_no_rec, c.health_check_domain.as_str()),
                (*rd, *domain),
                "{input}"
            );
        }
        let bad: &[(&str, &str)] = &[
            (
                "forward . 127.0.0.1 {\nhealth_check no_rec\n}\n",
                "time: invalid duration",
            ),
            (
                "forward . 127.0.0.1 {\nhealth_check domain example.org\n}\n",
                "time: invalid duration",
            ),
            (
                "forward . 127.0.0.1 {\nhealth_check 0.5s rec\n}\n",
                "health_check: unknown option rec",
            ),
            (
                "forward . 127.0.0.1 {\nhealth_check 0.5s domain\n}\n",
                "Wrong argument count or unexpected line ending after 'domain'",
            ),
            (
                "forward . 127.0.0.1 {\nhealth_check 0.5s domain example..org\n}\n",
                "health_check: invalid domain name",
            ),
        ];
        for (input, want) in bad {
            fails(input, want);
        }
    }

    // plugin/forward/setup_test.go: TestMultiForward (the lines, in order)
    #[test]
    fn coredns_test_multi_forward() {
        let all = run("\n      forward 1st.example.org 10.0.0.1\n      forward 2nd.example.org 10.0.0.2\n      forward 3rd.example.org 10.0.0.3\n    ").unwrap();
        let froms: Vec<&str> = all.iter().map(|c| c.from.as_str()).collect();
        assert_eq!(
            froms,
            ["1st.example.org.", "2nd.example.org.", "3rd.example.org."]
        );
    }

    // plugin/forward/setup_test.go: TestNextAlternate, TestFailfastAllUnhealthyUpstreams,
    // TestFailoverValidation; setup_policy_test.go: TestSetupPolicy
    #[test]
    fn coredns_test_next_failover_policy() {
        use ResponseCode::{NXDomain, Refused, ServFail};
        let ok: &[(&str, &[ResponseCode])] = &[
            ("forward . 127.0.0.1 {\nnext NXDOMAIN\n}\n", &[NXDomain]),
            ("forward . 127.0.0.1 {\nnext SERVFAIL\n}\n", &[ServFail]),
            (
                "forward . 127.0.0.1 {\nnext NXDOMAIN SERVFAIL\n}\n",
                &[NXDomain, ServFail],
            ),
            (
                "forward . 127.0.0.1 {\nnext NXDOMAIN SERVFAIL REFUSED\n}\n",
                &[NXDomain, ServFail, Refused],
            ),
        ];
        for (input, want) in ok {
            assert_eq!(first(input).unwrap().next, *want, "{input}");
        }
        for input in [
            "forward . 127.0.0.1 {\nnext\n}\n",
            "forward . 127.0.0.1 {\nnext INVALID\n}\n",
            "forward . 127.0.0.1 {\nnext NXDOMAIN INVALID\n}\n",
        ] {
            assert!(first(input).is_err(), "{input}");
        }
        assert!(!first("forward . 127.0.0.1\n").unwrap().failfast);
        assert!(
            first("forward . 127.0.0.1 {\nfailfast_all_unhealthy_upstreams\n}\n")
                .unwrap()
                .failfast
        );
        fails(
            "forward . 127.0.0.1 {\nfailfast_all_unhealthy_upstreams false\n}\n",
            "Wrong argument count",
        );
        fails(
            "forward . 127.0.0.1 {\n\t\tfailover NOERROR\n\t}",
            "NoError cannot be used in failover",
        );
        fails(
            "forward . 127.0.0.1 {\n\t\tfailover NOT_A_VALID_RCODE\n\t}",
            "not a valid rcode",
        );
        assert_eq!(
            first("forward . 127.0.0.1 {\nfailover ServFail Refused\n}")
                .unwrap()
                .failover,
            [ServFail, Refused]
        );
        for (p, want) in [
            ("random", Policy::Random),
            ("round_robin", Policy::RoundRobin),
            ("sequential", Policy::Sequential),
        ] {
            assert_eq!(
                first(&format!("forward . 127.0.0.1 {{\npolicy {p}\n}}\n"))
                    .unwrap()
                    .policy,
                want
            );
        }
        fails(
            "forward . 127.0.0.1 {\npolicy random2\n}\n",
            "unknown policy",
        );
        assert!(
            first("forward . 127.0.0.1 {\nnext_on_nodata\n}\nforward . 127.0.0.2")
                .unwrap()
                .next_on_nodata
        );
    }
}
