//! `hosts [FILE [ZONES...]] { … }` → [`HostsConfig`] (CoreDNS's plugin/hosts/setup.go).

use std::path::PathBuf;
use std::time::Duration;

use crate::corefile::dispenser::parse_duration;
use crate::corefile::{Dispenser, Error};
use crate::plugins::{Fall, origins};

/// A parsed `hosts` directive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostsConfig {
    /// The hosts file (default /etc/hosts; a missing file is a warning).
    pub file: PathBuf,
    /// Zones answered (default: the block's).
    pub zones: Vec<String>,
    /// Inline entries (hosts-file lines).
    pub inline: Vec<String>,
    /// TTL of the answers (default 3600).
    pub ttl: u32,
    /// No PTR records.
    pub no_reverse: bool,
    /// How often the file is checked (default 5s; 0 = never).
    pub reload: Duration,
    /// `fallthrough [ZONES]`.
    pub fall: Fall,
    /// `fallthrough_unsupported`: existing names with other types go on too.
    pub fallthrough_unsupported: bool,
}

/// Parses the directive (once per block).
pub fn parse(d: &mut Dispenser<'_>, block_zones: &[String]) -> Result<HostsConfig, Error> {
    d.next();
    let args = d.remaining_args();
    let (file, zones) = match args.split_first() {
        Some((f, z)) => (
            PathBuf::from(f),
            origins(z, block_zones).map_err(|e| d.err(e))?,
        ),
        None => (PathBuf::from("/etc/hosts"), block_zones.to_vec()),
    };
    let mut c = HostsConfig {
        file,
        zones,
        inline: Vec::new(),
        ttl: 3600,
        no_reverse: false,
        reload: Duration::from_secs(5),
        fall: Fall::none(),
        fallthrough_unsupported: false,
    };
    while d.next_block() {
        match d.val() {
            "fallthrough" => c.fall = Fall::parse(&d.remaining_args()),
            "fallthrough_unsupported" => {
                d.expect_no_more_args()?;
                c.fallthrough_unsupported = true;
            }
            "no_reverse" => {
                d.expect_no_more_args()?;
                c.no_reverse = true;
            }
            "ttl" => {
                let v = d.single_arg()?;
                let t: i64 = v
                    .parse()
                    .map_err(|_| d.err(format!("ttl must be a number: {v}")))?;
                if !(1..=65535).contains(&t) {
                    return Err(d.err(format!("ttl provided is invalid: {t}")));
                }
                c.ttl = t as u32;
            }
            "reload" => {
                let v = d.single_arg()?;
                c.reload = parse_duration(&v)
                    .ok_or_else(|| d.err(format!("invalid duration for reload '{v}'")))?;
            }
            first if c.fall.is_enabled() => {
                // CoreDNS: inline entries only before `fallthrough`.
                return Err(d.err(format!("unknown property '{first}'")));
            }
            first => {
                // Anything else is an inline hosts line: `IP NAME...`.
                let mut line = vec![first.to_string()];
                line.extend(d.remaining_args());
                if line.len() < 2
                    || line[0]
                        .split('%')
                        .next()
                        .and_then(|ip| ip.parse::<std::net::IpAddr>().ok())
                        .is_none()
                {
                    return Err(d.err(format!("unknown property '{first}'")));
                }
                c.inline.push(line.join(" "));
            }
        }
    }
    if c.fallthrough_unsupported && !c.fall.is_enabled() {
        return Err(d.err("fallthrough_unsupported requires fallthrough"));
    }
    Ok(c)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::corefile::lexer::lex;

    fn run(s: &str) -> Result<HostsConfig, Error> {
        let toks = lex(&Arc::from("Corefile"), s);
        parse(&mut Dispenser::new(&toks), &[".".to_string()])
    }

    #[test]
    fn table() {
        let c = run("hosts").unwrap();
        assert_eq!(
            (c.file.to_str().unwrap(), c.ttl, c.reload),
            ("/etc/hosts", 3600, Duration::from_secs(5))
        );
        // k3s's NodeHosts block.
        let c =
            run("hosts /etc/coredns/NodeHosts {\n ttl 60\n reload 15s\n fallthrough\n}").unwrap();
        assert_eq!((c.ttl, c.reload), (60, Duration::from_secs(15)));
        assert!(c.fall.through("x.example."));
        let c = run("hosts example.hosts example.org {\n 10.0.0.1 a.example.org\n no_reverse\n}")
            .unwrap();
        assert_eq!(c.zones, ["example.org."]);
        assert_eq!(c.inline, ["10.0.0.1 a.example.org"]);
        assert!(c.no_reverse);
        for (bad, want) in [
            ("hosts {\n ttl 0\n}", "ttl provided is invalid: 0"),
            ("hosts {\n ttl x\n}", "ttl must be a number"),
            ("hosts {\n reload soon\n}", "invalid duration for reload"),
            ("hosts {\n bogus\n}", "unknown property 'bogus'"),
        ] {
            let e = run(bad).unwrap_err().to_string();
            assert!(e.contains(want), "{bad}: {e}");
        }
    }

    // plugin/hosts/setup_test.go: TestHostsParse (9 cases; server block keys none, so the
    // origins default to the block's `.`).
    #[test]
    fn test_hosts_parse() {
        let root = || vec![".".to_string()];
        for (input, file, zones, fall) in [
            ("hosts\n", "/etc/hosts", root(), false),
            ("hosts /tmp", "/tmp", root(), false),
            (
                "hosts /etc/hosts miek.nl.",
                "/etc/hosts",
                vec!["miek.nl.".into()],
                false,
            ),
            (
                "hosts /etc/hosts miek.nl. pun.gent.",
                "/etc/hosts",
                vec!["miek.nl.".into(), "pun.gent.".into()],
                false,
            ),
            ("hosts {\n fallthrough\n}", "/etc/hosts", root(), true),
            ("hosts /tmp {\n fallthrough\n}", "/tmp", root(), true),
            (
                "hosts /etc/hosts miek.nl. {\n fallthrough\n}",
                "/etc/hosts",
                vec!["miek.nl.".into()],
                true,
            ),
            (
                "hosts /etc/hosts miek.nl 10.0.0.9/8 {\n fallthrough\n}",
                "/etc/hosts",
                vec!["miek.nl.".into(), "10.in-addr.arpa.".into()],
                true,
            ),
        ] {
            let c = run(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(c.file.to_str().unwrap(), file, "{input}");
            assert_eq!(c.zones, zones, "{input}");
            assert_eq!(c.fall.through("x.miek.nl."), fall, "{input}");
        }
        // Twice in one block.
        let e = crate::config::load(
            "Corefile",
            ".:53 {\n hosts /etc/hosts {\n  fallthrough\n }\n hosts /etc/hosts {\n  fallthrough\n }\n}\n",
            53,
        )
        .unwrap_err();
        assert!(
            e[0].to_string()
                .contains("can only be used once per Server Block"),
            "{e:?}"
        );
    }

    // plugin/hosts/setup_test.go: TestHostsInlineParse (3 cases).
    #[test]
    fn test_hosts_inline_parse() {
        let c = run("hosts highly_unlikely_to_exist_hosts_file example.org {\n 10.0.0.1 example.org\n fallthrough\n}").unwrap();
        assert_eq!(c.inline, ["10.0.0.1 example.org"]);
        assert!(c.fall.through("example.org."));
        let table = super::super::Table::parse(&c.inline.join("\n"), &c.zones, true);
        assert_eq!(
            table.by_addr[&"10.0.0.1".parse::<std::net::IpAddr>().unwrap()],
            ["example.org."]
        );
        let c = run(
            "hosts highly_unlikely_to_exist_hosts_file example.org {\n 10.0.0.1 example.org\n}",
        )
        .unwrap();
        assert_eq!(c.inline, ["10.0.0.1 example.org"]);
        assert!(!c.fall.through("example.org."));
        assert!(
            run("hosts highly_unlikely_to_exist_hosts_file example.org {\n fallthrough\n 10.0.0.1 example.org\n}")
                .is_err()
        );
    }

    // plugin/hosts/setup_test.go: TestHostsParseFallthroughUnsupported (4 cases).
    #[test]
    fn test_hosts_parse_fallthrough_unsupported() {
        for (input, ok) in [
            ("hosts {\n fallthrough\n fallthrough_unsupported\n}", true),
            (
                "hosts {\n fallthrough_unsupported\n fallthrough example.org\n}",
                true,
            ),
            ("hosts {\n fallthrough_unsupported\n}", false),
            (
                "hosts {\n fallthrough\n fallthrough_unsupported example.org\n}",
                false,
            ),
        ] {
            match run(input) {
                Ok(c) => {
                    assert!(ok, "{input}");
                    assert!(c.fallthrough_unsupported, "{input}");
                }
                Err(_) => assert!(!ok, "{input}"),
            }
        }
    }
}
