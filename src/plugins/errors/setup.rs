//! `errors [stdout] { stacktrace; consolidate DURATION REGEXP [LEVEL] [show_first] }`

use std::time::Duration;

use crate::corefile::{Dispenser, Error, parse_duration};

/// Log level of a consolidated summary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// `[WARNING]`
    Warning,
    /// `[ERROR]` (default)
    Error,
    /// `[INFO]`
    Info,
    /// `[DEBUG]`
    Debug,
}

/// One `consolidate` rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Consolidate {
    /// Summary period.
    pub period: Duration,
    /// The pattern errors are matched against.
    pub pattern: String,
    /// Level of the summary line.
    pub level: Level,
    /// Log the first matching error at once.
    pub show_first: bool,
}

/// The `errors` configuration.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ErrorsConfig {
    /// `stacktrace`: accepted; panics are always logged with their message.
    pub stacktrace: bool,
    /// Consolidation rules, first match wins.
    pub consolidate: Vec<Consolidate>,
}

/// Parses the `errors` directive.
pub fn parse(d: &mut Dispenser<'_>) -> Result<ErrorsConfig, Error> {
    let mut cfg = ErrorsConfig::default();
    while d.next() {
        let args = d.remaining_args();
        match args.as_slice() {
            [] => {}
            [s] if s == "stdout" => {}
            _ => return Err(d.arg_err()),
        }
        while d.next_block() {
            match d.val() {
                "stacktrace" => {
                    d.expect_no_more_args()?;
                    cfg.stacktrace = true;
                }
                "consolidate" => cfg.consolidate.push(consolidate(d)?),
                other => {
                    return Err(d.syntax_err(&format!("Unknown field {other}")));
                }
            }
        }
    }
    Ok(cfg)
}

fn consolidate(d: &mut Dispenser<'_>) -> Result<Consolidate, Error> {
    let args = d.remaining_args();
    if args.len() < 2 || args.len() > 4 {
        return Err(d.arg_err());
    }
    let period = parse_duration(&args[0])
        .filter(|p| !p.is_zero())
        .ok_or_else(|| d.err(format!("invalid duration '{}'", args[0])))?;
    let pattern = args[1].clone();
    if pattern.len() > 10_000 {
        return Err(d.err("regex pattern too long: at most 10000 characters"));
    }
    regex::Regex::new(&pattern).map_err(|e| d.err(format!("invalid regexp '{pattern}': {e}")))?;
    // CoreDNS's parseOptionalParams: at most one level, before `show_first`.
    let mut level = None;
    let mut show_first = false;
    for a in &args[2..] {
        let l = match a.as_str() {
            "warning" => Level::Warning,
            "error" => Level::Error,
            "info" => Level::Info,
            "debug" => Level::Debug,
            "show_first" => {
                show_first = true;
                continue;
            }
            other => {
                return Err(d.err(format!("unknown option in consolidate: {other}")));
            }
        };
        if level.is_some() {
            return Err(d.err("multiple log levels specified in consolidate"));
        }
        if show_first {
            return Err(d.err("log level must come before show_first in consolidate"));
        }
        level = Some(l);
    }
    let level = level.unwrap_or(Level::Error);
    Ok(Consolidate {
        period,
        pattern,
        level,
        show_first,
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::corefile::lexer::lex;

    fn run(input: &str) -> Result<ErrorsConfig, Error> {
        let toks = lex(&Arc::from("Corefile"), input);
        parse(&mut Dispenser::new(&toks))
    }

    #[test]
    fn good() {
        assert_eq!(run("errors").unwrap(), ErrorsConfig::default());
        assert_eq!(run("errors stdout").unwrap(), ErrorsConfig::default());
        let c = run("errors {\n stacktrace\n consolidate 5m \".* i/o timeout$\" warning show_first\n consolidate 30s ^Failed\n}")
            .unwrap();
        assert!(c.stacktrace);
        assert_eq!(
            c.consolidate,
            vec![
                Consolidate {
                    period: Duration::from_secs(300),
                    pattern: ".* i/o timeout$".into(),
                    level: Level::Warning,
                    show_first: true
                },
                Consolidate {
                    period: Duration::from_secs(30),
                    pattern: "^Failed".into(),
                    level: Level::Error,
                    show_first: false
                },
            ]
        );
    }

    #[test]
    fn bad() {
        let cases: &[(&str, &str)] = &[
            ("errors a b", "Wrong argument count"),
            ("errors foo", "Wrong argument count"),
            ("errors {\n consolidate 1m\n}", "Wrong argument count"),
            ("errors {\n consolidate x .*\n}", "invalid duration 'x'"),
            ("errors {\n consolidate 1m ( \n}", "invalid regexp"),
            (
                "errors {\n consolidate 1m .* loud\n}",
                "unknown option in consolidate: loud",
            ),
            (
                "errors {\n frobnicate\n}",
                "Unexpected token 'frobnicate', expecting 'Unknown field frobnicate'",
            ),
        ];
        for (input, want) in cases {
            let e = run(input).unwrap_err().to_string();
            assert!(e.contains(want), "{input}: {e}");
            assert!(e.starts_with("Corefile:"), "{e}");
        }
    }

    // plugin/errors/setup_test.go: TestErrorsParse (27 cases; the twice-in-a-block case
    // through the loader) and TestShowFirstOption (5 cases).
    #[test]
    fn test_errors_parse() {
        let cases: &[(&str, Option<(usize, bool)>)] = &[
            ("errors", Some((0, false))),
            ("errors stdout", Some((0, false))),
            ("errors errors.txt", None),
            ("errors visible", None),
            ("errors { log visible }", None),
            ("errors a b", None),
            ("errors {\n consolidate\n}", None),
            ("errors {\n consolidate 1m\n}", None),
            ("errors {\n consolidate 1m .* extra\n}", None),
            ("errors {\n consolidate abc .*\n}", None),
            ("errors {\n consolidate 1 .*\n}", None),
            ("errors {\n consolidate 1m ())\n}", None),
            ("errors {\n stacktrace\n}", Some((0, true))),
            (
                "errors {\n stacktrace\n consolidate 1m ^exact$\n}",
                Some((1, true)),
            ),
            ("errors {\n consolidate 1m ^exact$\n}", Some((1, false))),
            ("errors {\n consolidate 1m error\n}", Some((1, false))),
            (
                "errors {\n consolidate 1m \"format error\"\n}",
                Some((1, false)),
            ),
            (
                "errors {\n consolidate 1m error1\n consolidate 5s error2\n}",
                Some((2, false)),
            ),
            (
                "errors {\n consolidate 1m error show_first\n}",
                Some((1, false)),
            ),
            (
                "errors {\n consolidate 1m error warning show_first\n}",
                Some((1, false)),
            ),
            ("errors {\n consolidate 1m error invalid_option\n}", None),
            ("errors {\n consolidate 1m error warning error\n}", None),
            ("errors {\n consolidate 1m error info debug\n}", None),
            (
                "errors {\n consolidate 1m error show_first warning\n}",
                None,
            ),
            ("errors {\n consolidate 1m error show_first info\n}", None),
        ];
        for (input, want) in cases {
            match (run(input), want) {
                (Ok(c), Some((n, stack))) => {
                    assert_eq!((c.consolidate.len(), c.stacktrace), (*n, *stack), "{input}")
                }
                (Err(_), None) => {}
                (got, _) => panic!("{input}: {got:?}"),
            }
        }
        assert!(
            crate::config::load("Corefile", ".:53 {\n errors\n errors\n}\n", 53).is_err(),
            "errors twice in a block"
        );
        for (input, show_first, level) in [
            (
                "errors {\n consolidate 1m .* show_first\n}",
                true,
                Level::Error,
            ),
            (
                "errors {\n consolidate 1m .* warning show_first\n}",
                true,
                Level::Warning,
            ),
            (
                "errors {\n consolidate 1m .* error show_first\n}",
                true,
                Level::Error,
            ),
            ("errors {\n consolidate 1m .*\n}", false, Level::Error),
            ("errors {\n consolidate 1m .* info\n}", false, Level::Info),
        ] {
            let c = run(input).unwrap();
            assert_eq!(c.consolidate.len(), 1, "{input}");
            assert_eq!(
                (c.consolidate[0].show_first, c.consolidate[0].level),
                (show_first, level),
                "{input}"
            );
        }
    }
}
