//! `log [NAMES...] [FORMAT] { class success|denial|error|all... }`

use crate::corefile::address::fqdn;
use crate::corefile::{Dispenser, Error};

/// CoreDNS's `{common}` format.
pub const COMMON: &str = r#"{remote}:{port} - {>id} "{type} {class} {name} {proto} {size} {>do} {>bufsize}" {rcode} {>rflags} {rsize} {duration}"#;
/// CoreDNS's `{combined}` format.
pub const COMBINED: &str = r#"{remote}:{port} - {>id} "{type} {class} {name} {proto} {size} {>do} {>bufsize}" {rcode} {>rflags} {rsize} {duration} "{>opcode}""#;

/// Which reply classes a rule logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Classes {
    /// NOERROR with data, delegations.
    pub success: bool,
    /// NXDOMAIN and NODATA.
    pub denial: bool,
    /// Everything else.
    pub error: bool,
}

impl Classes {
    /// All classes.
    pub const ALL: Self = Self {
        success: true,
        denial: true,
        error: true,
    };
    const NONE: Self = Self {
        success: false,
        denial: false,
        error: false,
    };
}

/// One `log` line of the Corefile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// Lower-case FQDNs; a query matches when its name is one of them or below.
    pub names: Vec<String>,
    /// Format with `{…}` placeholders.
    pub format: String,
    /// Classes to log.
    pub classes: Classes,
}

/// All `log` rules of a block, in Corefile order (the first matching rule decides).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// The rules.
    pub rules: Vec<Rule>,
}

/// Parses every `log` occurrence of a block.
pub fn parse(d: &mut Dispenser<'_>, _zones: &[String]) -> Result<LogConfig, Error> {
    let mut rules = Vec::new();
    while d.next() {
        let mut args = d.remaining_args();
        let format = match args.len() {
            0 | 1 => COMMON.to_string(),
            _ if args.last().is_some_and(|a| a.contains('{')) => args
                .pop()
                .expect("len >= 2")
                .replace("{common}", COMMON)
                .replace("{combined}", COMBINED),
            _ => COMMON.to_string(),
        };
        if args.is_empty() {
            args.push(".".to_string());
        }
        let names = args.iter().map(|a| fqdn(&a.to_ascii_lowercase())).collect();
        let mut classes = Classes::NONE;
        let mut any_class = false;
        while d.next_block() {
            match d.val() {
                "class" => {
                    let list = d.remaining_args();
                    if list.is_empty() {
                        return Err(d.arg_err());
                    }
                    for c in list {
                        any_class = true;
                        match c.as_str() {
                            "all" => classes = Classes::ALL,
                            "success" => classes.success = true,
                            "denial" => classes.denial = true,
                            "error" => classes.error = true,
                            other => return Err(d.err(format!("unknown class '{other}'"))),
                        }
                    }
                }
                other => return Err(d.err(format!("unknown property '{other}'"))),
            }
        }
        if !any_class {
            classes = Classes::ALL;
        }
        rules.push(Rule {
            names,
            format,
            classes,
        });
    }
    Ok(LogConfig { rules })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::corefile::lexer::lex;

    fn run(input: &str) -> Result<LogConfig, Error> {
        let toks = lex(&Arc::from("Corefile"), input);
        parse(&mut Dispenser::new(&toks), &[".".into()])
    }

    fn rule(names: &[&str], format: &str, classes: Classes) -> Rule {
        Rule {
            names: names.iter().map(|s| s.to_string()).collect(),
            format: format.into(),
            classes,
        }
    }

    #[test]
    fn good() {
        let denial = Classes {
            success: false,
            denial: true,
            error: false,
        };
        let cases: Vec<(&str, Vec<Rule>)> = vec![
            ("log", vec![rule(&["."], COMMON, Classes::ALL)]),
            (
                "log example.org",
                vec![rule(&["example.org."], COMMON, Classes::ALL)],
            ),
            (
                "log a.org {combined}",
                vec![rule(&["a.org."], COMBINED, Classes::ALL)],
            ),
            (
                "log a.org b.org",
                vec![rule(&["a.org.", "b.org."], COMMON, Classes::ALL)],
            ),
            (
                "log . \"{name} {rcode}\"",
                vec![rule(&["."], "{name} {rcode}", Classes::ALL)],
            ),
            (
                "log {\n class denial\n}",
                vec![rule(&["."], COMMON, denial)],
            ),
            (
                "log {\n class denial error\n}",
                vec![rule(
                    &["."],
                    COMMON,
                    Classes {
                        success: false,
                        denial: true,
                        error: true,
                    },
                )],
            ),
            (
                "log a.org\nlog b.org {\n class all\n}",
                vec![
                    rule(&["a.org."], COMMON, Classes::ALL),
                    rule(&["b.org."], COMMON, Classes::ALL),
                ],
            ),
        ];
        for (input, want) in cases {
            assert_eq!(run(input).unwrap().rules, want, "{input}");
        }
    }

    #[test]
    fn bad() {
        let cases: &[(&str, &str)] = &[
            (
                "log {\n class\n}",
                "Wrong argument count or unexpected line ending after 'class'",
            ),
            ("log {\n class loud\n}", "unknown class 'loud'"),
            ("log {\n format x\n}", "unknown property 'format'"),
        ];
        for (input, want) in cases {
            let e = run(input).unwrap_err().to_string();
            assert!(e.contains(want), "{input}: {e}");
        }
    }

    // plugin/log/setup_test.go: TestLogParse (22 cases) and TestLogParseUnknownProperty; a
    // rule of several names is CoreDNS's one rule per name, compared flattened.
    #[test]
    fn test_log_parse() {
        let all = Classes::ALL;
        let denial = Classes {
            denial: true,
            ..Classes::NONE
        };
        let denial_error = Classes {
            denial: true,
            error: true,
            ..Classes::NONE
        };
        type Want<'a> = Option<&'a [(&'a str, String, Classes)]>;
        let cases: &[(&str, Want<'_>)] = &[
            ("log", Some(&[(".", COMMON.into(), all)])),
            (
                "log example.org",
                Some(&[("example.org.", COMMON.into(), all)]),
            ),
            (
                "log example.org. {common}",
                Some(&[("example.org.", COMMON.into(), all)]),
            ),
            (
                "log example.org {combined}",
                Some(&[("example.org.", COMBINED.into(), all)]),
            ),
            (
                "log example.org.\nlog example.net {combined}",
                Some(&[
                    ("example.org.", COMMON.into(), all),
                    ("example.net.", COMBINED.into(), all),
                ]),
            ),
            (
                "log example.org {host}\nlog example.org {when}",
                Some(&[
                    ("example.org.", "{host}".into(), all),
                    ("example.org.", "{when}".into(), all),
                ]),
            ),
            (
                "log example.org example.net",
                Some(&[
                    ("example.org.", COMMON.into(), all),
                    ("example.net.", COMMON.into(), all),
                ]),
            ),
            (
                "log example.org example.net {host}",
                Some(&[
                    ("example.org.", "{host}".into(), all),
                    ("example.net.", "{host}".into(), all),
                ]),
            ),
            (
                "log example.org example.net {when} {\n class denial\n}",
                Some(&[
                    ("example.org.", "{when}".into(), denial),
                    ("example.net.", "{when}".into(), denial),
                ]),
            ),
            (
                "log example.org {\n class all\n}",
                Some(&[("example.org.", COMMON.into(), all)]),
            ),
            (
                "log example.org {\n class denial\n}",
                Some(&[("example.org.", COMMON.into(), denial)]),
            ),
            (
                "log {\n class denial\n}",
                Some(&[(".", COMMON.into(), denial)]),
            ),
            (
                "log {\n class denial error\n}",
                Some(&[(".", COMMON.into(), denial_error)]),
            ),
            (
                "log {\n class denial\n class error\n}",
                Some(&[(".", COMMON.into(), denial_error)]),
            ),
            ("log {\n class abracadabra\n}", None),
            ("log {\n class\n}", None),
            ("log {\n unknown\n}", None),
            (
                "log example.org \"{combined} {/forward/upstream}\"",
                Some(&[(
                    "example.org.",
                    format!("{COMBINED} {{/forward/upstream}}"),
                    all,
                )]),
            ),
            (
                "log example.org \"{common} {/forward/upstream}\"",
                Some(&[(
                    "example.org.",
                    format!("{COMMON} {{/forward/upstream}}"),
                    all,
                )]),
            ),
            (
                "log example.org \"{when} {combined} {/forward/upstream}\"",
                Some(&[(
                    "example.org.",
                    format!("{{when}} {COMBINED} {{/forward/upstream}}"),
                    all,
                )]),
            ),
            (
                "log example.org \"{when} {common} {/forward/upstream}\"",
                Some(&[(
                    "example.org.",
                    format!("{{when}} {COMMON} {{/forward/upstream}}"),
                    all,
                )]),
            ),
        ];
        for (input, want) in cases {
            match (run(input), want) {
                (Ok(cfg), Some(want)) => {
                    let got: Vec<(String, String, Classes)> = cfg
                        .rules
                        .iter()
                        .flat_map(|r| {
                            r.names
                                .iter()
                                .map(|n| (n.clone(), r.format.clone(), r.classes))
                        })
                        .collect();
                    let want: Vec<(String, String, Classes)> = want
                        .iter()
                        .map(|(n, f, c)| (n.to_string(), f.clone(), *c))
                        .collect();
                    assert_eq!(got, want, "{input}");
                }
                (Err(_), None) => {}
                (got, _) => panic!("{input}: {got:?}"),
            }
        }
        let e = run("log { unknown }").unwrap_err().to_string();
        assert!(e.contains("unknown property"), "{e}");
    }
}
