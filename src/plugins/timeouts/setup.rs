//! `timeouts { read D; write D; idle D; maxtcpqueries N }` (CoreDNS's plugin/timeouts/timeouts.go).

use std::time::Duration;

use crate::corefile::{Dispenser, Error, parse_duration};

/// What a `timeouts` block sets; `None` keeps the server type's default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TimeoutsConfig {
    /// Time to read the first query of a connection.
    pub read: Option<Duration>,
    /// Time to write one reply.
    pub write: Option<Duration>,
    /// Time to wait for the next query on an open connection.
    pub idle: Option<Duration>,
    /// Queries served on one connection before it is closed: `Some(None)` is CoreDNS's `-1`
    /// (unlimited), `Some(Some(n))` a bound.
    pub max_queries: Option<Option<u32>>,
}

/// CoreDNS's `durations.NewDurationFromArg`: a Go duration, or a bare integer as seconds.
fn duration_arg(arg: &str) -> Option<Duration> {
    if arg.parse::<i64>().is_ok() {
        return parse_duration(&format!("{arg}s"));
    }
    parse_duration(arg)
}

/// Go's `time.Duration.String` for the values the error messages show (`0s`, `500ms`, `48h0m0s`).
fn go_duration(d: Duration) -> String {
    if d.is_zero() {
        return "0s".into();
    }
    if d < Duration::from_secs(1) {
        return format!("{}ms", d.as_millis());
    }
    let secs = d.as_secs();
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    let frac = d.subsec_nanos();
    let s = if frac == 0 {
        format!("{s}s")
    } else {
        let f = format!("{:09}", frac);
        format!("{s}.{}s", f.trim_end_matches('0'))
    };
    match (h, m) {
        (0, 0) => s,
        (0, m) => format!("{m}m{s}"),
        (h, m) => format!("{h}h{m}m{s}"),
    }
}

/// Parses the `timeouts` directive: at least one option; each timeout between 1 second and
/// 24 hours; `maxtcpqueries` -1 or positive.
pub fn parse(d: &mut Dispenser<'_>) -> Result<TimeoutsConfig, Error> {
    let mut cfg = TimeoutsConfig::default();
    while d.next() {
        if !d.remaining_args().is_empty() {
            return Err(d.arg_err());
        }
        let mut set = 0;
        while d.next_block() {
            let option = d.val();
            let args = d.remaining_args();
            let [arg] = args.as_slice() else {
                return Err(d.arg_err());
            };
            if option == "maxtcpqueries" {
                let n: i64 = arg.parse().map_err(|_| {
                    d.err(format!(
                        "invalid value for maxtcpqueries '{arg}': strconv.Atoi: parsing \"{arg}\": invalid syntax"
                    ))
                })?;
                cfg.max_queries = Some(match n {
                    -1 => None,
                    n if n > 0 => Some(u32::try_from(n).unwrap_or(u32::MAX)),
                    n => {
                        return Err(d.err(format!(
                            "maxtcpqueries provided '{n}' needs to be -1 (unlimited) or a positive integer"
                        )));
                    }
                });
                set += 1;
                continue;
            }
            let shown = if arg.parse::<i64>().is_ok() {
                format!("{arg}s")
            } else {
                arg.clone()
            };
            let t = duration_arg(arg)
                .ok_or_else(|| d.err(format!("failed to parse duration '{shown}'")))?;
            if t < Duration::from_secs(1) || t > Duration::from_secs(24 * 3600) {
                return Err(d.err(format!(
                    "timeout provided '{}' needs to be between 1 second and 24 hours",
                    go_duration(t)
                )));
            }
            match option {
                "read" => cfg.read = Some(t),
                "write" => cfg.write = Some(t),
                "idle" => cfg.idle = Some(t),
                other => return Err(d.err(format!("unknown option: '{other}'"))),
            }
            set += 1;
        }
        if set == 0 {
            return Err(d.err("timeouts block with no timeouts specified"));
        }
    }
    Ok(cfg)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::corefile::lexer::lex;

    fn run(input: &str) -> Result<TimeoutsConfig, Error> {
        let toks = lex(&Arc::from("Corefile"), input);
        parse(&mut Dispenser::new(&toks))
    }

    const fn secs(n: u64) -> Option<Duration> {
        Some(Duration::from_secs(n))
    }

    /// CoreDNS's TestTimeouts (plugin/timeouts/timeouts_test.go), with the values each
    /// accepted input sets.
    #[test]
    fn table() {
        let ok: &[(&str, TimeoutsConfig)] = &[
            (
                "timeouts {\n read 30s\n}",
                TimeoutsConfig {
                    read: secs(30),
                    ..Default::default()
                },
            ),
            (
                "timeouts {\n read 1m\n write 2m\n}",
                TimeoutsConfig {
                    read: secs(60),
                    write: secs(120),
                    ..Default::default()
                },
            ),
            (
                " timeouts {\n idle 1h\n}",
                TimeoutsConfig {
                    idle: secs(3600),
                    ..Default::default()
                },
            ),
            (
                "timeouts {\n read 10\n write 20\n idle 60\n}",
                TimeoutsConfig {
                    read: secs(10),
                    write: secs(20),
                    idle: secs(60),
                    max_queries: None,
                },
            ),
            (
                "timeouts {\n maxtcpqueries 128\n}",
                TimeoutsConfig {
                    max_queries: Some(Some(128)),
                    ..Default::default()
                },
            ),
            (
                "timeouts {\n maxtcpqueries -1\n}",
                TimeoutsConfig {
                    max_queries: Some(None),
                    ..Default::default()
                },
            ),
            (
                "timeouts {\n read 10s\n maxtcpqueries 128\n}",
                TimeoutsConfig {
                    read: secs(10),
                    max_queries: Some(Some(128)),
                    ..Default::default()
                },
            ),
            (
                "timeouts {\n read 1s\n idle 24h\n}",
                TimeoutsConfig {
                    read: secs(1),
                    idle: secs(86_400),
                    ..Default::default()
                },
            ),
        ];
        for (input, want) in ok {
            assert_eq!(run(input).unwrap(), *want, "{input}");
        }
        let bad: &[(&str, &str)] = &[
            ("timeouts", "block with no timeouts specified"),
            ("timeouts {\n}", "block with no timeouts specified"),
            ("timeouts {\n read 10s\n giraffe 30s\n}", "unknown option"),
            ("timeouts {\n read 10s 20s\n write 30s\n}", "Wrong argument"),
            ("timeouts {\n write snake\n}", "failed to parse duration"),
            ("timeouts {\n idle 0s\n}", "needs to be between"),
            ("timeouts {\n read 48h\n}", "needs to be between"),
            ("timeouts {\n maxtcpqueries 0\n}", "needs to be -1"),
            ("timeouts {\n maxtcpqueries -2\n}", "needs to be -1"),
            (
                "timeouts {\n maxtcpqueries snake\n}",
                "invalid value for maxtcpqueries",
            ),
            // Ours beyond CoreDNS's table: arguments on the directive line, an option
            // without a value, sub-second values.
            ("timeouts 5s {\n read 1s\n}", "Wrong argument"),
            ("timeouts {\n read\n}", "Wrong argument"),
            ("timeouts {\n write 500ms\n}", "'500ms' needs to be between"),
        ];
        for (input, want) in bad {
            let e = run(input).unwrap_err().to_string();
            assert!(e.contains(want), "{input}: {e}");
        }
        assert_eq!(
            run("timeouts {\n read 48h\n}").unwrap_err().to_string(),
            "Corefile:2 - Error during parsing: timeout provided '48h0m0s' needs to be between 1 second and 24 hours"
        );
    }

    #[test]
    fn go_durations() {
        assert_eq!(go_duration(Duration::ZERO), "0s");
        assert_eq!(go_duration(Duration::from_millis(500)), "500ms");
        assert_eq!(go_duration(Duration::from_secs(90)), "1m30s");
        assert_eq!(go_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(go_duration(Duration::from_secs(48 * 3600)), "48h0m0s");
    }
}
