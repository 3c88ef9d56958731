//! `https`: tunes a block's DNS-over-HTTPS listeners (plugin/https): `max_connections`.
//! Configures the server only; it adds no handler.

use crate::corefile::{Dispenser, Error};

/// Directive name.
pub const NAME: &str = "https";

/// CoreDNS's `DefaultHTTPSMaxConnections`.
pub const DEFAULT_MAX_CONNECTIONS: usize = 200;

/// The `https` configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpsConfig {
    /// Concurrent connections at most; 0 is unbounded.
    pub max_connections: usize,
}

impl Default for HttpsConfig {
    fn default() -> Self {
        Self {
            max_connections: DEFAULT_MAX_CONNECTIONS,
        }
    }
}

/// Parses `https { max_connections N }`.
pub fn parse(d: &mut Dispenser<'_>) -> Result<HttpsConfig, Error> {
    let mut cfg = HttpsConfig::default();
    let mut seen = false;
    while d.next() {
        if !d.remaining_args().is_empty() {
            return Err(d.arg_err());
        }
        while d.next_block() {
            match d.val() {
                "max_connections" => {
                    let v = d.single_arg()?;
                    let n: i64 = v
                        .parse()
                        .map_err(|e| d.err(format!("invalid max_connections value '{v}': {e}")))?;
                    if n < 0 {
                        return Err(d.err(format!(
                            "max_connections must be a non-negative integer: {n}"
                        )));
                    }
                    if seen {
                        return Err(d.err("max_connections already defined for this server block"));
                    }
                    seen = true;
                    cfg.max_connections = usize::try_from(n).unwrap_or(usize::MAX);
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

    fn run(input: &str) -> Result<HttpsConfig, Error> {
        let toks = lex(&Arc::from("Corefile"), input);
        parse(&mut Dispenser::new(&toks))
    }

    /// CoreDNS's plugin/https/setup_test.go.
    #[test]
    fn table() {
        assert_eq!(run("https").unwrap().max_connections, 200);
        assert_eq!(run("https {\n}").unwrap().max_connections, 200);
        let c = run("https {\n max_connections 100\n}").unwrap();
        assert_eq!(c.max_connections, 100);
        assert_eq!(
            run("https {\n max_connections 0\n}")
                .unwrap()
                .max_connections,
            0
        );
        let bad: &[(&str, &str)] = &[
            ("https arg", "Wrong argument count"),
            ("https {\n max_connections\n}", "Wrong argument count"),
            ("https {\n max_connections 1 2\n}", "Wrong argument count"),
            (
                "https {\n max_connections abc\n}",
                "invalid max_connections value 'abc'",
            ),
            (
                "https {\n max_connections -1\n}",
                "must be a non-negative integer: -1",
            ),
            (
                "https {\n max_connections 1\n max_connections 2\n}",
                "max_connections already defined",
            ),
            ("https {\n unknown 1\n}", "unknown property 'unknown'"),
        ];
        for (input, want) in bad {
            let e = run(input).unwrap_err().to_string();
            assert!(e.contains(want), "{input}: {e}");
        }
    }
}
