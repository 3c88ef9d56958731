//! `transfer [ZONES...] { to ADDRESS... | *; source ADDRESS }` → [`XfrConfig`]s (CoreDNS's
//! plugin/transfer/setup.go, same messages).

use std::net::{IpAddr, SocketAddr};

use crate::corefile::{Dispenser, Error};
use crate::plugins::origins;

/// One `transfer` directive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XfrConfig {
    /// Zones (lower-case FQDNs) whose transfers it answers (default: the block's).
    pub zones: Vec<String>,
    /// `to`: `*` or `HOST:PORT` (port 53 when not given), as written by CoreDNS
    /// (`1.2.3.4:53`, `[1::2]:34`, `[fe80::1%eth0]:53`).
    pub to: Vec<String>,
    /// `source`: the local address NOTIFY messages are sent from.
    pub source: Option<IpAddr>,
}

/// `HOST[:PORT]` with an IP address as HOST, as `HOST:PORT` (CoreDNS's `parse.HostPort`).
fn host_port(s: &str, default_port: u16) -> Result<String, String> {
    let ip_ok = |h: &str| {
        let h = h.split('%').next().unwrap_or(h);
        h.parse::<IpAddr>().is_ok()
    };
    if ip_ok(s) {
        return Ok(join_host_port(s, default_port));
    }
    // [v6]:port, [v6], v4:port
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        match rest.split_once(']') {
            Some((h, "")) => (h, None),
            Some((h, p)) => (h, Some(p.strip_prefix(':').ok_or_else(|| bad(s))?)),
            None => return Err(bad(s)),
        }
    } else {
        match s.rsplit_once(':') {
            Some((h, p)) if !h.contains(':') => (h, Some(p)),
            _ => (s, None),
        }
    };
    if !ip_ok(host) {
        return Err(format!("must specify an IP address: `{host}'"));
    }
    let port = match port {
        Some(p) => p.parse::<u16>().map_err(|_| bad(s))?,
        None => default_port,
    };
    Ok(join_host_port(host, port))
}

fn bad(s: &str) -> String {
    format!("must specify an IP address: `{s}'")
}

fn join_host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

impl XfrConfig {
    /// Whether a client at `ip` may transfer (`to *`, or one of the `to` hosts).
    pub fn allowed(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.to.iter().any(|t| {
            t == "*"
                || host_of(t)
                    .and_then(|h| h.parse::<IpAddr>().ok())
                    .is_some_and(|h| h == ip)
        })
    }

    /// The `to` addresses NOTIFY goes to (every one but `*`). A link-local address's scope
    /// (`%eth0`) is resolved now; one that does not resolve is left out.
    pub fn notify_targets(&self) -> Vec<SocketAddr> {
        self.to
            .iter()
            .filter(|t| *t != "*")
            .filter_map(|t| resolve(t))
            .collect()
    }
}

/// The host of `HOST:PORT` or `[HOST]:PORT`, without a scope.
fn host_of(t: &str) -> Option<&str> {
    let host = match t.strip_prefix('[') {
        Some(rest) => rest.split_once(']')?.0,
        None => t.rsplit_once(':')?.0,
    };
    Some(host.split('%').next().unwrap_or(host))
}

fn resolve(t: &str) -> Option<SocketAddr> {
    if let Ok(a) = t.parse() {
        return Some(a);
    }
    // `[fe80::1%eth0]:53`: the scope by interface name.
    let rest = t.strip_prefix('[')?;
    let (host, port) = rest.split_once("]:")?;
    let (ip, scope) = host.split_once('%')?;
    let ip: std::net::Ipv6Addr = ip.parse().ok()?;
    let scope = match scope.parse() {
        Ok(n) => n,
        Err(_) => nix::net::if_::if_nametoindex(scope).ok()?,
    };
    Some(SocketAddr::V6(std::net::SocketAddrV6::new(
        ip,
        port.parse().ok()?,
        0,
        scope,
    )))
}

/// Parses every `transfer` directive of a block.
pub fn parse(d: &mut Dispenser<'_>, block_zones: &[String]) -> Result<Vec<XfrConfig>, Error> {
    let mut out = Vec::new();
    while d.next() {
        let args = d.remaining_args();
        let zones = origins(&args, block_zones).map_err(|e| d.err(e))?;
        let mut x = XfrConfig {
            zones,
            to: Vec::new(),
            source: None,
        };
        while d.next_block() {
            match d.val() {
                "to" => {
                    let args = d.remaining_args();
                    if args.is_empty() {
                        return Err(d.arg_err());
                    }
                    for host in args {
                        if host == "*" {
                            x.to.push(host);
                            continue;
                        }
                        x.to.push(host_port(&host, 53).map_err(|e| d.err(e))?);
                    }
                }
                "source" => {
                    let args = d.remaining_args();
                    let [a] = args.as_slice() else {
                        return Err(d.arg_err());
                    };
                    if x.source.is_some() {
                        return Err(d.err("source already specified"));
                    }
                    x.source = Some(
                        a.parse()
                            .map_err(|_| d.err(format!("invalid source address \"{a}\"")))?,
                    );
                }
                other => return Err(d.err(format!("unknown property \"{other}\""))),
            }
        }
        if x.to.is_empty() {
            return Err(d.err("'to' is required"));
        }
        out.push(x);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::corefile::lexer::lex;

    fn run(input: &str, block: &[&str]) -> Result<Vec<XfrConfig>, Error> {
        let toks = lex(&Arc::from("Corefile"), input);
        let zones: Vec<String> = block.iter().map(|z| z.to_string()).collect();
        parse(&mut Dispenser::new(&toks), &zones)
    }

    /// setup_test.go TestParse, the accepted inputs.
    #[test]
    fn parses_zones_addresses_and_source() {
        let got = run(
            "transfer example.net example.org {\n to 1.2.3.4 5.6.7.8:1053 [1::2]:34 [fe80::1%eth0]:53\n source 2001:db8::53\n}\ntransfer example.com example.edu {\n to * 1.2.3.4\n}\n",
            &[],
        )
        .unwrap();
        assert_eq!(
            got,
            [
                XfrConfig {
                    zones: vec!["example.net.".into(), "example.org.".into()],
                    to: vec![
                        "1.2.3.4:53".into(),
                        "5.6.7.8:1053".into(),
                        "[1::2]:34".into(),
                        "[fe80::1%eth0]:53".into()
                    ],
                    source: Some("2001:db8::53".parse().unwrap()),
                },
                XfrConfig {
                    zones: vec!["example.com.".into(), "example.edu.".into()],
                    to: vec!["*".into(), "1.2.3.4:53".into()],
                    source: None,
                },
            ]
        );
        let got = run(
            "transfer {\n to 1.2.3.4 5.6.7.8:1053 [1::2]:34 ::1\n}",
            &["."],
        )
        .unwrap();
        assert_eq!(got[0].zones, ["."]);
        assert_eq!(
            got[0].to,
            ["1.2.3.4:53", "5.6.7.8:1053", "[1::2]:34", "[::1]:53"]
        );
    }

    /// setup_test.go TestParse, the rejected inputs, and TestSetup's bare `transfer`.
    #[test]
    fn errors() {
        let cases = [
            ("transfer", "'to' is required"),
            ("transfer example.net example.org {\n}", "'to' is required"),
            (
                "transfer example.net example.org {\n invalid option\n}",
                "unknown property \"invalid\"",
            ),
            (
                "transfer example.net example.org {\n to 1.2.3.4\n source example.org\n}",
                "invalid source address \"example.org\"",
            ),
            (
                "transfer example.net example.org {\n to 1.2.3.4\n source 192.0.2.53\n source 2001:db8::53\n}",
                "source already specified",
            ),
            (
                "transfer example.com example.edu {\n to example.com 1.2.3.4\n}",
                "must specify an IP address: `example.com'",
            ),
            ("transfer {\n to 1.2.3.4:x\n}", "must specify an IP address"),
            ("transfer {\n to\n}", "Wrong argument count"),
            (
                "transfer {\n to 1.2.3.4\n source\n}",
                "Wrong argument count",
            ),
        ];
        for (input, want) in cases {
            let err = run(input, &["."]).expect_err(input).to_string();
            assert!(err.contains(want), "{input}: {err}");
        }
    }

    #[test]
    fn allowed_clients_and_notify_targets() {
        let x = &run(
            "transfer {\n to 192.0.2.1 [2001:db8::1]:5300 127.0.0.1:5301\n}",
            &["."],
        )
        .unwrap()[0];
        assert!(x.allowed("192.0.2.1".parse().unwrap()));
        assert!(x.allowed("::ffff:192.0.2.1".parse().unwrap()), "mapped v4");
        assert!(x.allowed("2001:db8::1".parse().unwrap()));
        assert!(!x.allowed("192.0.2.2".parse().unwrap()));
        assert_eq!(
            x.notify_targets(),
            [
                "192.0.2.1:53".parse::<SocketAddr>().unwrap(),
                "[2001:db8::1]:5300".parse().unwrap(),
                "127.0.0.1:5301".parse().unwrap()
            ]
        );
        let any = &run("transfer {\n to *\n}", &["."]).unwrap()[0];
        assert!(any.allowed("203.0.113.9".parse().unwrap()));
        assert!(any.notify_targets().is_empty());
    }
}
