//! `ready [ADDRESS] { monitor until-ready|continuously }`

use crate::corefile::{Dispenser, Error};
use crate::plugins::health::address_arg;

/// How often plugins are asked once they were ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Monitor {
    /// A plugin that was ready once is not asked again (default).
    #[default]
    UntilReady,
    /// Every request asks every plugin.
    Continuously,
}

/// The `ready` configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadyConfig {
    /// Listen address (default `:8181`).
    pub addr: String,
    /// Monitoring mode.
    pub monitor: Monitor,
}

impl Default for ReadyConfig {
    fn default() -> Self {
        Self {
            addr: ":8181".into(),
            monitor: Monitor::UntilReady,
        }
    }
}

/// Parses the `ready` directive.
pub fn parse(d: &mut Dispenser<'_>) -> Result<ReadyConfig, Error> {
    let mut cfg = ReadyConfig::default();
    while d.next() {
        address_arg(d, &mut cfg.addr)?;
        while d.next_block() {
            match d.val() {
                "monitor" => {
                    cfg.monitor = match d.expect_arg()? {
                        "until-ready" => Monitor::UntilReady,
                        "continuously" => Monitor::Continuously,
                        other => return Err(d.err(format!("monitor type '{other}' not supported"))),
                    };
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

    fn run(input: &str) -> Result<ReadyConfig, Error> {
        let toks = lex(&Arc::from("Corefile"), input);
        parse(&mut Dispenser::new(&toks))
    }

    #[test]
    fn table() {
        assert_eq!(run("ready").unwrap(), ReadyConfig::default());
        assert_eq!(run("ready 127.0.0.1:8282").unwrap().addr, "127.0.0.1:8282");
        assert_eq!(
            run("ready {\n monitor continuously\n}").unwrap().monitor,
            Monitor::Continuously
        );
        let bad: &[(&str, &str)] = &[
            ("ready a b", "Wrong argument count"),
            ("ready 8181", "missing port"),
            (
                "ready {\n monitor sometimes\n}",
                "monitor type 'sometimes' not supported",
            ),
            ("ready {\n wait\n}", "unknown property 'wait'"),
        ];
        for (input, want) in bad {
            let e = run(input).unwrap_err().to_string();
            assert!(e.contains(want), "{input}: {e}");
        }
    }
}
