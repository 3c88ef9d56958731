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
    let mut level = Level::Error;
    let mut show_first = false;
    for a in &args[2..] {
        match a.as_str() {
            "warning" => level = Level::Warning,
            "error" => level = Level::Error,
            "info" => level = Level::Info,
            "debug" => level = Level::Debug,
            "show_first" => show_first = true,
            other => {
                return Err(d.err(format!(
                    "unknown log level argument in consolidate: {other}"
                )));
            }
        }
    }
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
            ("errors {\n consolidate 1m .* loud\n}", "unknown log level"),
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
}
