//! Splits Corefile text into tokens, as caddy's lexer does (caddyfile/lexer.go).
//!
//! Whitespace separates tokens; `"` opens a quoted token only at the start of a token and may
//! span lines (`\"` is the only escape); `#` starts a comment anywhere, even mid-word; braces are
//! ordinary characters, structural only as whole tokens. A leading BOM and every `\r` are dropped.

use std::sync::Arc;

use super::error::Loc;

/// One token with its origin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    /// The token text (quotes removed).
    pub text: String,
    /// File and line where the token starts.
    pub loc: Loc,
    /// Whether the token was written in quotes (a quoted `{` is not a brace).
    pub quoted: bool,
}

impl Token {
    /// Whether this is the structural open brace.
    pub fn is_open(&self) -> bool {
        !self.quoted && self.text == "{"
    }

    /// Whether this is the structural close brace.
    pub fn is_close(&self) -> bool {
        !self.quoted && self.text == "}"
    }
}

/// Lexes `input` (the contents of `file`) into tokens.
pub fn lex(file: &Arc<str>, input: &str) -> Vec<Token> {
    let input = input.strip_prefix('\u{feff}').unwrap_or(input);
    let mut tokens = Vec::new();
    let mut line = 1usize;
    let mut chars = input.chars().filter(|&c| c != '\r').peekable();
    let mut cur = String::new();
    let mut start_line = 1usize;
    let mut quoted = false;
    let mut in_quotes = false;
    let mut in_comment = false;
    let push = |tokens: &mut Vec<Token>, cur: &mut String, start: usize, quoted: bool| {
        tokens.push(Token {
            text: std::mem::take(cur),
            loc: Loc {
                file: file.clone(),
                line: start,
            },
            quoted,
        });
    };

    while let Some(c) = chars.next() {
        if in_comment {
            if c == '\n' {
                in_comment = false;
                line += 1;
            }
            continue;
        }
        if in_quotes {
            match c {
                '\\' if chars.peek() == Some(&'"') => {
                    chars.next();
                    cur.push('"');
                }
                '"' => {
                    in_quotes = false;
                    push(&mut tokens, &mut cur, start_line, true);
                    quoted = false;
                }
                '\n' => {
                    line += 1;
                    cur.push(c);
                }
                _ => cur.push(c),
            }
            continue;
        }
        match c {
            '#' => {
                if !cur.is_empty() {
                    push(&mut tokens, &mut cur, start_line, quoted);
                }
                in_comment = true;
            }
            c if c.is_whitespace() => {
                if !cur.is_empty() {
                    push(&mut tokens, &mut cur, start_line, quoted);
                }
                if c == '\n' {
                    line += 1;
                }
            }
            '"' if cur.is_empty() => {
                in_quotes = true;
                quoted = true;
                start_line = line;
            }
            _ => {
                if cur.is_empty() {
                    start_line = line;
                }
                cur.push(c);
            }
        }
    }
    if in_quotes || !cur.is_empty() {
        push(&mut tokens, &mut cur, start_line, quoted);
    }
    tokens
}

/// Replaces `{%NAME%}` and then `{$NAME}` with the environment variable (unset → empty).
pub fn substitute_env(text: &str) -> String {
    if !text.contains('{') {
        return text.to_string();
    }
    let once = replace_between(text, "{%", "%}");
    replace_between(&once, "{$", "}")
}

fn replace_between(text: &str, open: &str, close: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find(open) {
        let after = &rest[start + open.len()..];
        let Some(end) = after.find(close) else { break };
        out.push_str(&rest[..start]);
        let name = &after[..end];
        out.push_str(&std::env::var(name).unwrap_or_default());
        rest = &after[end + close.len()..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(input: &str) -> Vec<(String, usize)> {
        lex(&Arc::from("Corefile"), input)
            .into_iter()
            .map(|t| (t.text, t.loc.line))
            .collect()
    }

    #[test]
    fn table() {
        let cases: &[(&str, &[(&str, usize)])] = &[
            ("", &[]),
            (
                ".:53 {\n whoami\n}",
                &[(".:53", 1), ("{", 1), ("whoami", 2), ("}", 3)],
            ),
            ("a  \t b", &[("a", 1), ("b", 1)]),
            ("foo#bar baz\nqux", &[("foo", 1), ("qux", 2)]),
            ("\"a b\" c", &[("a b", 1), ("c", 1)]),
            ("\"a\\\"b\"", &[("a\"b", 1)]),
            ("\"a\\b\"", &[("a\\b", 1)]),
            ("\"\"", &[("", 1)]),
            ("a\"b\"", &[("a\"b\"", 1)]),
            ("\"x\ny\" z", &[("x\ny", 1), ("z", 2)]),
            ("8.8.8.8{", &[("8.8.8.8{", 1)]),
            ("\u{feff}a\r\nb", &[("a", 1), ("b", 2)]),
            ("\"{4,}\"", &[("{4,}", 1)]),
            ("a # c \"d\n\"e f\"", &[("a", 1), ("e f", 2)]),
        ];
        for (i, (input, want)) in cases.iter().enumerate() {
            let got = texts(input);
            let want: Vec<(String, usize)> =
                want.iter().map(|(t, l)| (t.to_string(), *l)).collect();
            assert_eq!(got, want, "case {i}: {input:?}");
        }
    }

    #[test]
    fn quoted_brace_is_not_structural() {
        let t = lex(&Arc::from("C"), "\"{\" {");
        assert!(!t[0].is_open());
        assert!(t[1].is_open());
    }

    #[test]
    fn env() {
        // PATH and HOME are set in any test environment; an unset name becomes empty.
        let path = std::env::var("PATH").unwrap_or_default();
        assert_eq!(substitute_env("x{$PATH}y"), format!("x{path}y"));
        assert_eq!(substitute_env("{%PATH%}"), path);
        assert_eq!(substitute_env("{$CLUSTERDNS_SURELY_UNSET_VAR}"), "");
        assert_eq!(substitute_env("{{ .Name }}"), "{{ .Name }}");
        assert_eq!(substitute_env("{$unterminated"), "{$unterminated");
    }
}
