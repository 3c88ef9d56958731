//! `bind ADDRESS|IFACE... { except ADDRESS|IFACE... }`; several `bind` lines are merged.

use std::net::IpAddr;

use crate::corefile::{Dispenser, Error};

/// The `bind` configuration, already resolved to addresses.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BindConfig {
    /// Addresses to listen on (interfaces expanded, `except` removed), in order.
    pub addrs: Vec<IpAddr>,
}

/// Resolves an address or interface name to addresses.
fn resolve(arg: &str) -> Result<Vec<IpAddr>, String> {
    if let Ok(ip) = arg.parse::<IpAddr>() {
        return Ok(vec![ip]);
    }
    let addrs: Vec<IpAddr> = if_addrs::get_if_addrs()
        .unwrap_or_default()
        .into_iter()
        .filter(|i| i.name == arg)
        .map(|i| i.ip())
        .collect();
    if addrs.is_empty() {
        return Err(format!(
            "not a valid IP address or interface name: \"{arg}\""
        ));
    }
    Ok(addrs)
}

/// Parses every `bind` occurrence of a block.
pub fn parse(d: &mut Dispenser<'_>) -> Result<BindConfig, Error> {
    let mut out: Vec<IpAddr> = Vec::new();
    while d.next() {
        // `except` applies to the addresses of its own `bind` line, as in CoreDNS.
        let mut addrs = Vec::new();
        let mut except = Vec::new();
        let args = d.remaining_args();
        if args.is_empty() {
            return Err(d.arg_err());
        }
        for a in &args {
            addrs.extend(resolve(a).map_err(|e| d.err(e))?);
        }
        while d.next_block() {
            match d.val() {
                "except" => {
                    let list = d.remaining_args();
                    if list.is_empty() {
                        return Err(d.arg_err());
                    }
                    for a in &list {
                        except.extend(resolve(a).map_err(|e| d.err(e))?);
                    }
                }
                other => return Err(d.err(format!("unknown property '{other}'"))),
            }
        }
        for a in addrs {
            if !except.contains(&a) && !out.contains(&a) {
                out.push(a);
            }
        }
    }
    if out.is_empty() {
        return Err(d.err("no address left to bind after 'except'"));
    }
    Ok(BindConfig { addrs: out })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::corefile::lexer::lex;

    fn run(input: &str) -> Result<BindConfig, Error> {
        let toks = lex(&Arc::from("Corefile"), input);
        parse(&mut Dispenser::new(&toks))
    }

    fn ips(list: &[&str]) -> Vec<IpAddr> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn table() {
        assert_eq!(run("bind 127.0.0.1").unwrap().addrs, ips(&["127.0.0.1"]));
        assert_eq!(
            run("bind 127.0.0.1 ::1\nbind 127.0.0.2").unwrap().addrs,
            ips(&["127.0.0.1", "::1", "127.0.0.2"])
        );
        assert_eq!(
            run("bind 127.0.0.1 127.0.0.2 {\n except 127.0.0.2\n}")
                .unwrap()
                .addrs,
            ips(&["127.0.0.1"])
        );
        // The loopback interface exists on every Linux machine, and carries 127.0.0.1.
        assert!(
            run("bind lo")
                .unwrap()
                .addrs
                .contains(&"127.0.0.1".parse().unwrap())
        );
        let lo = run("bind lo {\n except ::1\n}").unwrap().addrs;
        assert!(!lo.contains(&"::1".parse().unwrap()));
        let bad: &[(&str, &str)] = &[
            ("bind", "Wrong argument count"),
            (
                "bind nosuchif0",
                "not a valid IP address or interface name: \"nosuchif0\"",
            ),
            ("bind 127.0.0.1 {\n except\n}", "Wrong argument count"),
            ("bind 127.0.0.1 {\n except 127.0.0.1\n}", "no address left"),
            ("bind 127.0.0.1 {\n only x\n}", "unknown property 'only'"),
        ];
        for (input, want) in bad {
            let e = run(input).unwrap_err().to_string();
            assert!(e.contains(want), "{input}: {e}");
        }
    }

    // plugin/bind/setup_test.go: TestSetup (input, expected listen addresses; None = error)
    #[test]
    fn coredns_test_setup() {
        let cases: &[(&str, Option<&[&str]>)] = &[
            ("bind 1.2.3.4", Some(&["1.2.3.4"])),
            ("bind", None),
            ("bind 1.2.3.invalid", None),
            ("bind 1.2.3.4 ::5", Some(&["1.2.3.4", "::5"])),
            (
                "bind ::1 1.2.3.4 ::5 127.9.9.0",
                Some(&["::1", "1.2.3.4", "::5", "127.9.9.0"]),
            ),
            ("bind ::1 1.2.3.4 ::5 127.9.9.0 noone", None),
            ("bind 1.2.3.4 lo", Some(&["1.2.3.4", "127.0.0.1", "::1"])),
            ("bind lo {\nexcept 127.0.0.1\n}\n", Some(&["::1"])),
        ];
        for (input, want) in cases {
            match (run(input), want) {
                (Ok(c), Some(w)) => assert_eq!(c.addrs, ips(w), "{input}"),
                (Err(_), None) => {}
                (got, _) => panic!("{input}: {got:?}"),
            }
        }
        // `except` belongs to its own line.
        assert_eq!(
            run("bind 127.0.0.1 {\n except 127.0.0.2\n}\nbind 127.0.0.2")
                .unwrap()
                .addrs,
            ips(&["127.0.0.1", "127.0.0.2"])
        );
    }
}
