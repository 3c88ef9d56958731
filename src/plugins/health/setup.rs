//! `health [ADDRESS] { lameduck DURATION }`

use std::time::Duration;

use crate::corefile::{Dispenser, Error, parse_duration};

/// The `health` configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthConfig {
    /// Listen address, `HOST:PORT` (`:8080` by default: every address).
    pub addr: String,
    /// How long DNS keeps being served after SIGTERM.
    pub lameduck: Duration,
}

impl Default for HealthConfig {
    fn default() -> Self {
        Self {
            addr: ":8080".into(),
            lameduck: Duration::ZERO,
        }
    }
}

/// Checks that `addr` is `[HOST]:PORT`, as Go's `net.SplitHostPort` wants.
pub fn check_http_addr(addr: &str) -> Result<(), String> {
    let Some((host, port)) = addr.rsplit_once(':') else {
        return Err(format!("address {addr}: missing port in address"));
    };
    if host.contains(':') && !(host.starts_with('[') && host.ends_with(']')) {
        return Err(format!("address {addr}: too many colons in address"));
    }
    port.parse::<u16>()
        .map_err(|_| format!("address {addr}: invalid port \"{port}\""))?;
    Ok(())
}

/// Reads the optional `[ADDRESS]` argument of `health`, `ready` and `prometheus` into `addr`.
pub fn address_arg(d: &mut Dispenser<'_>, addr: &mut String) -> Result<(), Error> {
    let args = d.remaining_args();
    match args.as_slice() {
        [] => Ok(()),
        [a] => {
            check_http_addr(a).map_err(|e| d.err(e))?;
            a.clone_into(addr);
            Ok(())
        }
        _ => Err(d.arg_err()),
    }
}

/// Parses the `health` directive.
pub fn parse(d: &mut Dispenser<'_>) -> Result<HealthConfig, Error> {
    let mut cfg = HealthConfig::default();
    while d.next() {
        address_arg(d, &mut cfg.addr)?;
        while d.next_block() {
            match d.val() {
                "lameduck" => {
                    let v = d.expect_arg()?;
                    cfg.lameduck = parse_duration(v).ok_or_else(|| {
                        d.err(format!("unable to parse lameduck duration value: '{v}'"))
                    })?;
                    d.expect_no_more_args()?;
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

    fn run(input: &str) -> Result<HealthConfig, Error> {
        let toks = lex(&Arc::from("Corefile"), input);
        parse(&mut Dispenser::new(&toks))
    }

    #[test]
    fn table() {
        let ok: &[(&str, &str, u64)] = &[
            ("health", ":8080", 0),
            ("health localhost:8091", "localhost:8091", 0),
            ("health [::1]:8080", "[::1]:8080", 0),
            ("health {\n lameduck 5s\n}", ":8080", 5),
            ("health :9000 {\n    lameduck 10s\n      }", ":9000", 10),
        ];
        for (input, addr, secs) in ok {
            let c = run(input).unwrap();
            assert_eq!(
                (c.addr.as_str(), c.lameduck.as_secs()),
                (*addr, *secs),
                "{input}"
            );
        }
        let bad: &[(&str, &str)] = &[
            ("health a b", "Wrong argument count"),
            ("health localhost", "missing port"),
            ("health :http", "invalid port"),
            (
                "health {\n lameduck\n}",
                "Wrong argument count or unexpected line ending after 'lameduck'",
            ),
            (
                "health {\n lameduck soon\n}",
                "unable to parse lameduck duration value: 'soon'",
            ),
            ("health {\n lameduck 5s 6s\n}", "Wrong argument count"),
            ("health {\n deadline 5s\n}", "unknown property 'deadline'"),
        ];
        for (input, want) in bad {
            let e = run(input).unwrap_err().to_string();
            assert!(e.contains(want), "{input}: {e}");
        }
    }
}
