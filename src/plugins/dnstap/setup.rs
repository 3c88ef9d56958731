//! `dnstap SOCKET [full] [WRITEBUFFER] [QUEUE] { identity ID; version V; extra EXTRA;
//! skipverify }` — one config per line; a block may tap to several sinks.

use std::path::PathBuf;

use crate::corefile::{Dispenser, Error};

/// Largest `WRITEBUFFER` (MiB) and `QUEUE` (× 10,000 messages), as CoreDNS.
const MAX_WRITE_BUFFER: u32 = 1024;
const MAX_QUEUE: u32 = 4096;

/// Where the dnstap frames go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// `unix:///path` or a bare path.
    Unix(PathBuf),
    /// `tcp://HOST:PORT`.
    Tcp(String),
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Unix(p) => write!(f, "unix://{}", p.display()),
            Self::Tcp(a) => write!(f, "tcp://{a}"),
        }
    }
}

/// One `dnstap` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnstapConfig {
    /// The sink.
    pub endpoint: Endpoint,
    /// `full`: include the wire-format messages.
    pub full: bool,
    /// TCP send buffer in MiB (1–1024, default 1).
    pub write_buffer: u32,
    /// Queue length in units of 10,000 messages (1–4096, default 1).
    pub queue: u32,
    /// `identity` (default: the host name).
    pub identity: Option<String>,
    /// `version` (default: `clusterdns-VERSION`).
    pub version: Option<String>,
    /// `extra`, with the `log` plugin's placeholders.
    pub extra: Option<String>,
}

fn multiple(d: &Dispenser<'_>, v: &str, what: &str, unit: &str, max: u32) -> Result<u32, Error> {
    let n: i64 = v
        .parse()
        .map_err(|e| d.err(format!("dnstap: invalid {what} {v:?}: {e}")))?;
    if n < 1 || n > i64::from(max) {
        return Err(d.err(format!(
            "dnstap: {what} must be between 1 and {max} ({unit}): {n}"
        )));
    }
    Ok(n as u32)
}

/// Parses every `dnstap` line of a block.
pub fn parse(d: &mut Dispenser<'_>) -> Result<Vec<DnstapConfig>, Error> {
    let mut out = Vec::new();
    while d.next() {
        let args = d.remaining_args();
        let Some(first) = args.first() else {
            return Err(d.arg_err());
        };
        if first == "listen" {
            return Err(d.err(
                "dnstap listen (sinks connecting to the server) is not built in clusterdns: name the sink's socket",
            ));
        }
        let endpoint = if let Some(rest) = first.strip_prefix("tcp://") {
            let ok = rest
                .rsplit_once(':')
                .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok());
            if !ok {
                return Err(d.err(format!("dnstap: tcp endpoint '{first}' needs HOST:PORT")));
            }
            Endpoint::Tcp(rest.to_string())
        } else if first.starts_with("tls://") {
            return Err(
                d.err("dnstap to a tls:// sink is not built in clusterdns: use unix:// or tcp://")
            );
        } else {
            let path = first.strip_prefix("unix://").unwrap_or(first);
            if path.is_empty() {
                return Err(d.arg_err());
            }
            Endpoint::Unix(PathBuf::from(path))
        };
        let write_buffer = match args.get(2) {
            Some(v) => multiple(d, v, "MultipleTcpWriteBuf", "MiB units", MAX_WRITE_BUFFER)?,
            None => 1,
        };
        let queue = match args.get(3) {
            Some(v) => multiple(d, v, "MultipleQueue", "x10k messages", MAX_QUEUE)?,
            None => 1,
        };
        if args.len() > 4 {
            return Err(d.arg_err());
        }
        let mut cfg = DnstapConfig {
            endpoint,
            full: args.get(1).is_some_and(|a| a == "full"),
            write_buffer,
            queue,
            identity: None,
            version: None,
            extra: None,
        };
        while d.next_block() {
            match d.val() {
                "identity" => cfg.identity = Some(d.single_arg()?),
                "version" => cfg.version = Some(d.single_arg()?),
                "extra" => cfg.extra = Some(d.single_arg()?),
                // Only meaningful for tls:// sinks, which are refused above.
                "skipverify" => d.expect_no_more_args()?,
                "tls" => return Err(d.err("tls directive only valid for listeners")),
                other => return Err(d.err(format!("unknown property '{other}'"))),
            }
        }
        out.push(cfg);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::corefile::lexer::lex;

    fn run(input: &str) -> Result<Vec<DnstapConfig>, Error> {
        let toks = lex(&Arc::from("Corefile"), input);
        parse(&mut Dispenser::new(&toks))
    }

    /// CoreDNS's plugin/dnstap/setup_test.go, less `listen` and tls:// (not built).
    #[test]
    fn table() {
        type Want = (
            Endpoint,
            bool,
            u32,
            u32,
            Option<&'static str>,
            Option<&'static str>,
            Option<&'static str>,
        );
        let unix = |p: &str| Endpoint::Unix(PathBuf::from(p));
        let ok: Vec<(&str, Vec<Want>)> = vec![
            (
                "dnstap /tmp/dnstap.sock full",
                vec![(unix("/tmp/dnstap.sock"), true, 1, 1, None, None, None)],
            ),
            (
                "dnstap unix:///tmp/dnstap.sock",
                vec![(unix("/tmp/dnstap.sock"), false, 1, 1, None, None, None)],
            ),
            (
                "dnstap tcp://127.0.0.1:6000",
                vec![(
                    Endpoint::Tcp("127.0.0.1:6000".into()),
                    false,
                    1,
                    1,
                    None,
                    None,
                    None,
                )],
            ),
            (
                "dnstap tcp://[::1]:6000 full",
                vec![(
                    Endpoint::Tcp("[::1]:6000".into()),
                    true,
                    1,
                    1,
                    None,
                    None,
                    None,
                )],
            ),
            (
                "dnstap tcp://example.com:6000",
                vec![(
                    Endpoint::Tcp("example.com:6000".into()),
                    false,
                    1,
                    1,
                    None,
                    None,
                    None,
                )],
            ),
            (
                "dnstap /tmp/dnstap.sock full 1024 2048",
                vec![(unix("/tmp/dnstap.sock"), true, 1024, 2048, None, None, None)],
            ),
            (
                "dnstap /tmp/dnstap.sock none 4",
                vec![(unix("/tmp/dnstap.sock"), false, 4, 1, None, None, None)],
            ),
            (
                "dnstap /tmp/dnstap.sock {\n identity NAME\n version VER\n}",
                vec![(
                    unix("/tmp/dnstap.sock"),
                    false,
                    1,
                    1,
                    Some("NAME"),
                    Some("VER"),
                    None,
                )],
            ),
            (
                "dnstap /tmp/dnstap.sock full {\n identity NAME\n version VER\n extra EXTRA\n}",
                vec![(
                    unix("/tmp/dnstap.sock"),
                    true,
                    1,
                    1,
                    Some("NAME"),
                    Some("VER"),
                    Some("EXTRA"),
                )],
            ),
            ("dnstap {\n identity NAME\n}", vec![]),
            (
                "dnstap /a.sock full\ndnstap tcp://127.0.0.1:6000 {\n identity X\n skipverify\n}",
                vec![
                    (unix("/a.sock"), true, 1, 1, None, None, None),
                    (
                        Endpoint::Tcp("127.0.0.1:6000".into()),
                        false,
                        1,
                        1,
                        Some("X"),
                        None,
                        None,
                    ),
                ],
            ),
        ];
        for (input, want) in ok {
            if want.is_empty() {
                assert!(run(input).is_err(), "{input}");
                continue;
            }
            let got = run(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            let got: Vec<Want> = got
                .into_iter()
                .zip(&want)
                .map(|(c, w)| {
                    let leak = |s: Option<String>, w: Option<&'static str>| {
                        assert_eq!(s.as_deref(), w, "{input}");
                        w
                    };
                    (
                        c.endpoint,
                        c.full,
                        c.write_buffer,
                        c.queue,
                        leak(c.identity, w.4),
                        leak(c.version, w.5),
                        leak(c.extra, w.6),
                    )
                })
                .collect();
            assert_eq!(got, want, "{input}");
        }
        let bad: &[(&str, &str)] = &[
            ("dnstap", "Wrong argument count"),
            (
                "dnstap /tmp/dnstap.sock full 0",
                "MultipleTcpWriteBuf must be between 1 and 1024 (MiB units): 0",
            ),
            (
                "dnstap /tmp/dnstap.sock full 1025",
                "MultipleTcpWriteBuf must be between 1 and 1024",
            ),
            (
                "dnstap /tmp/dnstap.sock full x",
                "invalid MultipleTcpWriteBuf \"x\"",
            ),
            (
                "dnstap /tmp/dnstap.sock full 1 4097",
                "MultipleQueue must be between 1 and 4096 (x10k messages): 4097",
            ),
            (
                "dnstap /tmp/dnstap.sock full 1 -1",
                "MultipleQueue must be between 1 and 4096",
            ),
            ("dnstap /tmp/dnstap.sock full 1 1 1", "Wrong argument count"),
            (
                "dnstap /tmp/dnstap.sock {\n identity\n}",
                "Wrong argument count",
            ),
            (
                "dnstap /tmp/dnstap.sock {\n version\n}",
                "Wrong argument count",
            ),
            (
                "dnstap /tmp/dnstap.sock {\n extra\n}",
                "Wrong argument count",
            ),
            (
                "dnstap /tmp/dnstap.sock {\n tls a b\n}",
                "tls directive only valid for listeners",
            ),
            (
                "dnstap /tmp/dnstap.sock {\n foo\n}",
                "unknown property 'foo'",
            ),
            ("dnstap tcp://127.0.0.1", "needs HOST:PORT"),
            ("dnstap listen /tmp/dnstap.sock", "dnstap listen"),
            ("dnstap tls://127.0.0.1:6000", "tls:// sink is not built"),
        ];
        for (input, want) in bad {
            let e = run(input).unwrap_err().to_string();
            assert!(e.contains(want), "{input}: {e}");
        }
    }
}
